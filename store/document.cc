// The desired-state document: parsing, validation and the derived forms (YAML, canonical JSON, diff,
// stored objects).
//
// Parsing goes through event/SAX interfaces rather than yaml-cpp's Node tree so that we see every key of a
// mapping (the Node API silently keeps duplicates), can refuse or bound aliases (a "billion laughs" document
// would otherwise expand without limit when copied into Json), and resolve scalars ourselves by the YAML 1.2
// core schema instead of yaml-cpp's YAML 1.1-flavoured conversions. Nothing here uses std::regex: libstdc++'s
// matcher recurses per character and can overflow the stack on long operator-supplied strings.
#include "starling/store/document.h"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <limits>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>

namespace starling::store {
namespace {

// ----------------------------------------------------------------------------------------------------
// Character classes and name rules.

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
bool IsAlpha(char c) { return IsLower(c) || (c >= 'A' && c <= 'Z'); }
bool IsAlnum(char c) { return IsAlpha(c) || IsDigit(c); }
bool IsLowerHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f'); }
bool IsHex(char c) { return IsLowerHex(c) || (c >= 'A' && c <= 'F'); }

// ^[a-z0-9][a-z0-9._-]{0,62}$ : package, service and role names.
bool IsItemName(std::string_view s) {
  if (s.empty() || s.size() > 63 || !(IsLower(s[0]) || IsDigit(s[0]))) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return IsLower(c) || IsDigit(c) || c == '.' || c == '_' || c == '-'; });
}

// ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ : node names and hook names. Starting with an alphanumeric keeps "." and
// ".." out, so a hook name can never climb out of the hooks directory.
bool IsNodeOrHookName(std::string_view s) {
  if (s.empty() || s.size() > 128 || !IsAlnum(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return IsAlnum(c) || c == '.' || c == '_' || c == '-'; });
}

// ^[A-Za-z_][A-Za-z0-9_]*$ : param and output names (they become environment variable names).
bool IsIdentifier(std::string_view s) {
  if (s.empty() || !(IsAlpha(s[0]) || s[0] == '_')) return false;
  return std::all_of(s.begin() + 1, s.end(), [](char c) { return IsAlnum(c) || c == '_'; });
}

bool IsVersion(std::string_view s) {
  if (s.empty() || s.size() > 64 || !IsAlnum(s[0])) return false;
  for (char c : s) {
    if (!(IsAlnum(c) || c == '.' || c == '+' || c == '~' || c == '_' || c == '-')) return false;
  }
  return std::any_of(s.begin(), s.end(), IsDigit) && s.find("..") == std::string_view::npos &&
         s.back() != '.' && s.back() != '-';
}

bool IsDigest(std::string_view s) {
  constexpr std::string_view kPrefix = "sha256:";
  return s.size() == kPrefix.size() + 64 && s.substr(0, kPrefix.size()) == kPrefix &&
         std::all_of(s.begin() + kPrefix.size(), s.end(), IsLowerHex);
}

// ^([1-9][0-9]?|100)%$
bool IsPercent(std::string_view s) {
  if (s.size() < 2 || s.back() != '%') return false;
  std::string_view n = s.substr(0, s.size() - 1);
  if (n == "100") return true;
  return n.size() <= 2 && n[0] != '0' && std::all_of(n.begin(), n.end(), IsDigit);
}

constexpr std::string_view kItemNameRule =
    "(expected lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 "
    "characters)";
constexpr std::string_view kNodeNameRule =
    "(expected letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128 characters)";
constexpr std::string_view kIdentifierRule = "(expected letters, digits and '_', not starting with a digit)";

// ----------------------------------------------------------------------------------------------------
// UTF-8.

// Length of the well-formed UTF-8 sequence at s[i] (storing its code point), or 0 if it is not well formed.
size_t DecodeUtf8(std::string_view s, size_t i, char32_t* cp) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  unsigned char c = b(i);
  if (c < 0x80) {
    *cp = c;
    return 1;
  }
  size_t len;
  char32_t v, min;
  if ((c & 0xE0) == 0xC0) {
    len = 2, v = c & 0x1F, min = 0x80;
  } else if ((c & 0xF0) == 0xE0) {
    len = 3, v = c & 0x0F, min = 0x800;
  } else if ((c & 0xF8) == 0xF0) {
    len = 4, v = c & 0x07, min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (size_t k = 1; k < len; ++k) {
    if ((b(i + k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(i + k) & 0x3F);
  }
  // Overlong forms, surrogates and values past U+10FFFF are not UTF-8 even when the bit pattern fits.
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return len;
}

bool ValidUtf8(std::string_view s) {
  char32_t cp;
  for (size_t i = 0; i < s.size();) {
    size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// ----------------------------------------------------------------------------------------------------
// Showing operator text inside messages.

// Control bytes are escaped so that one problem always stays one line of the message; long text is cut (on a
// character boundary) because a message is for reading, not for reproducing the input.
std::string Printable(std::string_view s) {
  constexpr size_t kMaxBytes = 100;
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (out.size() >= kMaxBytes && (c & 0xC0) != 0x80) {
      out += "...";
      break;
    }
    if (c < 0x20 || c == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string Quoted(std::string_view s) { return "'" + Printable(s) + "'"; }

std::string Describe(const Json& j) {
  switch (j.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::boolean:
      return "a boolean";
    case Json::value_t::string:
      return "a string";
    case Json::value_t::array:
      return "a list";
    case Json::value_t::object:
      return "a mapping";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return "a number";
    default:
      return "an unsupported value";
  }
}

// The value itself when it is short to show, its kind otherwise.
std::string ShowValue(const Json& j) {
  if (j.is_string()) return Quoted(j.get_ref<const std::string&>());
  if (j.is_primitive()) return j.dump(-1, ' ', false, Json::error_handler_t::replace);
  return Describe(j);
}

std::string JoinPath(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string JoinComma(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// ----------------------------------------------------------------------------------------------------
// Scalar resolution: the YAML 1.2 core schema.

enum class PlainKind { kNull, kBool, kInt, kFloat, kNonFinite, kString };

bool AllOf(std::string_view s, bool (*pred)(char)) {
  return !s.empty() && std::all_of(s.begin(), s.end(), pred);
}
bool IsOctalDigit(char c) { return c >= '0' && c <= '7'; }

// [-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?
bool IsCoreFloat(std::string_view s) {
  size_t i = 0, n = s.size();
  if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_start = i;
  while (i < n && IsDigit(s[i])) ++i;
  bool int_digits = i > int_start;
  bool frac_digits = false;
  if (i < n && s[i] == '.') {
    ++i;
    size_t frac_start = i;
    while (i < n && IsDigit(s[i])) ++i;
    frac_digits = i > frac_start;
  }
  if (!int_digits && !frac_digits) return false;
  if (i < n && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < n && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_start = i;
    while (i < n && IsDigit(s[i])) ++i;
    if (i == exp_start) return false;
  }
  return i == n;
}

PlainKind ClassifyPlain(std::string_view s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return PlainKind::kNull;
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE") {
    return PlainKind::kBool;
  }
  std::string_view unsigned_part = (s[0] == '-' || s[0] == '+') ? s.substr(1) : s;
  if (AllOf(unsigned_part, IsDigit)) return PlainKind::kInt;
  if (s.size() > 2 && s[0] == '0' && s[1] == 'x' && AllOf(s.substr(2), IsHex)) return PlainKind::kInt;
  if (s.size() > 2 && s[0] == '0' && s[1] == 'o' && AllOf(s.substr(2), IsOctalDigit)) return PlainKind::kInt;
  if (IsCoreFloat(s)) return PlainKind::kFloat;
  std::string_view u = unsigned_part;
  if (u == ".inf" || u == ".Inf" || u == ".INF" || s == ".nan" || s == ".NaN" || s == ".NAN") {
    return PlainKind::kNonFinite;
  }
  return PlainKind::kString;
}

// 1-based; line 0 means "no position known".
struct Position {
  int line = 0;
  int column = 0;
};

Position FromMark(const YAML::Mark& m) {
  if (m.is_null()) return {};
  return {m.line + 1, m.column + 1};
}

std::string Located(Position p, std::string_view what) {
  if (p.line <= 0) return std::string(what);
  return "line " + std::to_string(p.line) + ", column " + std::to_string(p.column) + ": " + std::string(what);
}

// Thrown from inside the parsers' callbacks (which cannot return a Status) and caught in ParseDocument.
class ParseFailure : public std::runtime_error {
 public:
  ParseFailure(Position pos, const std::string& what) : std::runtime_error(what), pos_(pos) {}
  Position pos() const { return pos_; }

 private:
  Position pos_;
};

Json ParseInteger(std::string_view s, Position pos) {
  int base = 10;
  std::string_view digits = s;
  bool negative = false;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    base = s[1] == 'x' ? 16 : 8;
    digits = s.substr(2);
  } else if (s[0] == '+' || s[0] == '-') {
    negative = s[0] == '-';
    digits = s.substr(1);
  }
  // Parse the magnitude unsigned so that both int64 and the upper half of uint64 are reachable.
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec != std::errc() || end != digits.data() + digits.size()) {
    throw ParseFailure(pos, "integer " + Quoted(s) + " is out of range");
  }
  constexpr auto kMaxInt = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
  if (!negative) {
    if (magnitude <= kMaxInt) return Json(static_cast<int64_t>(magnitude));
    return Json(magnitude);
  }
  if (magnitude <= kMaxInt) return Json(-static_cast<int64_t>(magnitude));
  if (magnitude == kMaxInt + 1) return Json(std::numeric_limits<int64_t>::min());
  throw ParseFailure(pos, "integer " + Quoted(s) + " is out of range");
}

Json ParseFloat(std::string_view s, Position pos) {
  std::string_view t = (!s.empty() && s[0] == '+') ? s.substr(1) : s;
  double v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc() || end != t.data() + t.size() || !std::isfinite(v)) {
    throw ParseFailure(pos, "number " + Quoted(s) + " is out of range");
  }
  return Json(v);
}

Json ResolvePlain(std::string_view s, Position pos) {
  switch (ClassifyPlain(s)) {
    case PlainKind::kNull:
      return Json(nullptr);
    case PlainKind::kBool:
      return Json(s[0] == 't' || s[0] == 'T');
    case PlainKind::kInt:
      return ParseInteger(s, pos);
    case PlainKind::kFloat:
      return ParseFloat(s, pos);
    case PlainKind::kNonFinite:
      throw ParseFailure(pos, "infinite and NaN numbers are not supported (JSON cannot hold them)");
    case PlainKind::kString:
      break;
  }
  return Json(std::string(s));
}

constexpr std::string_view kCoreTagPrefix = "tag:yaml.org,2002:";

// yaml-cpp reports "?" for plain scalars with no tag and "!" for quoted ones (or an explicit "!").
Json ResolveScalar(const std::string& tag, const std::string& value, Position pos) {
  if (tag == "!") return Json(value);
  if (tag == "?") return ResolvePlain(value, pos);
  if (tag.compare(0, kCoreTagPrefix.size(), kCoreTagPrefix) == 0) {
    std::string_view kind = std::string_view(tag).substr(kCoreTagPrefix.size());
    if (kind == "str") return Json(value);
    if (kind == "null" || kind == "bool" || kind == "int" || kind == "float") {
      Json j = ResolvePlain(value, pos);
      if (kind == "null" && j.is_null()) return j;
      if (kind == "bool" && j.is_boolean()) return j;
      if (kind == "int" && j.is_number_integer()) return j;
      if (kind == "float" && j.is_number_float()) return j;
      if (kind == "float" && j.is_number_integer()) return Json(j.get<double>());
      throw ParseFailure(pos, Quoted(value) + " is not a valid !!" + std::string(kind));
    }
  }
  throw ParseFailure(pos, "unsupported tag " + Quoted(tag));
}

void CheckContainerTag(const std::string& tag, std::string_view core_kind, Position pos) {
  if (tag == "?" || tag == "!" || tag == std::string(kCoreTagPrefix) + std::string(core_kind)) return;
  throw ParseFailure(pos, "unsupported tag " + Quoted(tag));
}

// ----------------------------------------------------------------------------------------------------
// Building Json from parser events (shared by the YAML and JSON paths).

class JsonBuilder {
 public:
  // Alias expansion copies values, so a small text can describe a huge document; this bounds the copy.
  static constexpr size_t kMaxValues = size_t{1} << 20;

  // Real documents nest about five deep; the bound keeps every recursive consumer of the Json (dump, ToYaml,
  // Diff) far from the stack limit.
  static constexpr size_t kMaxDepth = 100;

  bool done() const { return done_; }
  bool Full() const { return stack_.size() >= kMaxDepth; }
  bool HasKey(const std::string& key) const { return stack_.back().value.contains(key); }
  bool ExpectingKey() const { return !stack_.empty() && stack_.back().is_map && !stack_.back().have_key; }

  void Key(std::string key, Position pos) {
    Frame& top = stack_.back();
    if (top.value.contains(key)) throw ParseFailure(pos, "duplicate key " + Quoted(key));
    top.key = std::move(key);
    top.have_key = true;
  }

  void Scalar(Json value, Position pos, YAML::anchor_t anchor = 0) {
    Count(1, pos);
    if (anchor != 0) anchors_[anchor] = {value, 1};
    Attach(std::move(value));
  }

  void Start(bool is_map, Position pos, YAML::anchor_t anchor = 0) {
    if (Full()) throw TooDeep(pos);
    Count(1, pos);
    stack_.push_back({is_map ? Json::object() : Json::array(), is_map, false, {}, anchor, count_});
  }

  void End() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.is_map && f.have_key) f.value[f.key] = nullptr;
    if (f.anchor != 0) anchors_[f.anchor] = {f.value, count_ - f.count_at_start + 1};
    Attach(std::move(f.value));
  }

  void Alias(YAML::anchor_t anchor, Position pos) {
    auto it = anchors_.find(anchor);
    if (it == anchors_.end())
      throw ParseFailure(pos, "an alias cannot refer to a collection that contains it");
    Count(it->second.second, pos);
    Attach(it->second.first);
  }

  Json Take() { return std::move(root_); }

  static ParseFailure TooDeep(Position pos) {
    return ParseFailure(pos, "nesting is deeper than " + std::to_string(kMaxDepth) + " levels");
  }

 private:
  struct Frame {
    Json value;
    bool is_map;
    bool have_key;
    std::string key;
    YAML::anchor_t anchor;
    size_t count_at_start;
  };

  void Count(size_t n, Position pos) {
    count_ += n;
    if (count_ > kMaxValues) {
      throw ParseFailure(pos, "the document is too large (more than " + std::to_string(kMaxValues) +
                                  " values after expanding aliases)");
    }
  }

  void Attach(Json v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      done_ = true;
      return;
    }
    Frame& top = stack_.back();
    if (top.is_map) {
      top.value[top.key] = std::move(v);
      top.have_key = false;
    } else {
      top.value.push_back(std::move(v));
    }
  }

  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, std::pair<Json, size_t>> anchors_;
  Json root_;
  bool done_ = false;
  size_t count_ = 0;
};

class YamlHandler : public YAML::EventHandler {
 public:
  explicit YamlHandler(JsonBuilder* b) : b_(b) {}

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (started_) throw ParseFailure(FromMark(mark), "expected one document, found another");
    started_ = true;
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (b_->ExpectingKey()) throw ParseFailure(FromMark(mark), "a mapping key must not be empty");
    b_->Scalar(nullptr, FromMark(mark), anchor);
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (b_->ExpectingKey()) throw ParseFailure(FromMark(mark), "an alias cannot be a mapping key");
    b_->Alias(anchor, FromMark(mark));
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    Position pos = FromMark(mark);
    if (!ValidUtf8(value)) throw ParseFailure(pos, "invalid UTF-8");
    if (b_->ExpectingKey()) {
      // Keys stay the text as written: JSON keys are strings, and `1:` and `"1":` are the same key. An
      // explicit tag is still checked, so that `!!int x:` is not silently accepted.
      if (tag != "?" && tag != "!") ResolveScalar(tag, value, pos);
      if (anchor != 0) throw ParseFailure(pos, "anchors on mapping keys are not supported");
      b_->Key(value, pos);
      return;
    }
    b_->Scalar(ResolveScalar(tag, value, pos), pos, anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    StartContainer(false, mark, tag, anchor);
  }
  void OnSequenceEnd() override { b_->End(); }

  void OnMapStart(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    StartContainer(true, mark, tag, anchor);
  }
  void OnMapEnd() override { b_->End(); }

 private:
  void StartContainer(bool is_map, const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor) {
    Position pos = FromMark(mark);
    if (b_->ExpectingKey()) throw ParseFailure(pos, "mapping keys must be scalars");
    CheckContainerTag(tag, is_map ? "map" : "seq", pos);
    b_->Start(is_map, pos, anchor);
  }

  JsonBuilder* b_;
  bool started_ = false;
};

struct Attempt {
  std::optional<Json> value;
  Position pos;
  std::string error;
};

Attempt ParseYaml(std::string_view text) {
  JsonBuilder builder;
  YamlHandler handler(&builder);
  try {
    std::istringstream in{std::string(text)};
    YAML::Parser parser(in);
    if (parser.HandleNextDocument(handler))
      parser.HandleNextDocument(handler);  // the handler refuses a second
  } catch (const ParseFailure& e) {
    return {std::nullopt, e.pos(), e.what()};
  } catch (const YAML::Exception& e) {
    return {std::nullopt, FromMark(e.mark), e.msg};
  }
  if (!builder.done()) return {Json(nullptr), {}, {}};
  return {builder.Take(), {}, {}};
}

Position PositionAt(std::string_view text, size_t offset) {
  offset = std::min(offset, text.size());
  Position p{1, 1};
  for (size_t i = 0; i < offset; ++i) {
    if (text[i] == '\n') {
      ++p.line;
      p.column = 1;
    } else {
      ++p.column;
    }
  }
  return p;
}

// nlohmann's SAX interface does not say where a key is, so the input iterator records how far the lexer has
// read; right after a key's closing quote is exactly where the parser reports the key.
class TrackingIterator {
 public:
  using iterator_category = std::input_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  TrackingIterator(const char* p, const char** cursor) : p_(p), cursor_(cursor) {}
  reference operator*() const { return *p_; }
  TrackingIterator& operator++() {
    *cursor_ = ++p_;
    return *this;
  }
  TrackingIterator operator++(int) {
    TrackingIterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const TrackingIterator& o) const { return p_ == o.p_; }
  bool operator!=(const TrackingIterator& o) const { return p_ != o.p_; }

 private:
  const char* p_;
  const char** cursor_;
};

class JsonSax : public Json::json_sax_t {
 public:
  JsonSax(JsonBuilder* b, std::string_view text, const char** cursor) : b_(b), text_(text), cursor_(cursor) {}

  bool null() override { return Add(nullptr); }
  bool boolean(bool v) override { return Add(v); }
  bool number_integer(number_integer_t v) override { return Add(v); }
  bool number_unsigned(number_unsigned_t v) override { return Add(v); }
  bool number_float(number_float_t v, const string_t& s) override {
    if (!std::isfinite(v)) {
      size_t at = text_.rfind(s, Offset());
      throw ParseFailure(PositionAt(text_, at == std::string_view::npos ? Offset() : at),
                         "number " + Quoted(s) + " is out of range");
    }
    return Add(v);
  }
  bool string(string_t& v) override { return Add(std::move(v)); }
  bool binary(binary_t&) override { return false; }  // JSON text has no binary values
  // Positions are computed only on failure: PositionAt scans from the start of the text.
  bool start_object(std::size_t) override { return Start(true); }
  bool key(string_t& k) override {
    if (b_->HasKey(k)) throw ParseFailure(PositionAt(text_, KeyStart()), "duplicate key " + Quoted(k));
    b_->Key(std::move(k), {});
    return true;
  }
  bool end_object() override {
    b_->End();
    return true;
  }
  bool start_array(std::size_t) override { return Start(false); }
  bool end_array() override {
    b_->End();
    return true;
  }
  bool parse_error(std::size_t byte, const std::string& token, const Json::exception& ex) override {
    error_pos_ = PositionAt(text_, byte > 0 ? byte - 1 : 0);
    constexpr int kNumberOverflow = 406;
    if (ex.id == kNumberOverflow) {
      error_ = "number " + Quoted(token) + " is out of range";
      size_t at = text_.rfind(token, Offset());
      if (at != std::string_view::npos) error_pos_ = PositionAt(text_, at);
      return false;
    }
    // nlohmann's text is "[json.exception.parse_error.101] parse error at line L, column C: <what>"; we want
    // only <what>, positioned our way.
    std::string what = ex.what();
    size_t col = what.find("column ");
    size_t colon = col == std::string::npos ? std::string::npos : what.find(": ", col);
    if (colon != std::string::npos) {
      what = what.substr(colon + 2);
    } else if (size_t bracket = what.find("] ");
               what.rfind("[json.exception.", 0) == 0 && bracket != std::string::npos) {
      what = what.substr(bracket + 2);
    }
    error_ = what;
    return false;
  }

  Position error_pos() const { return error_pos_; }
  const std::string& error() const { return error_; }

 private:
  bool Add(Json v) {
    b_->Scalar(std::move(v), {});
    return true;
  }
  bool Start(bool is_map) {
    if (b_->Full()) throw JsonBuilder::TooDeep(PositionAt(text_, Offset() > 0 ? Offset() - 1 : 0));
    b_->Start(is_map, {});
    return true;
  }
  size_t Offset() const { return static_cast<size_t>(*cursor_ - text_.data()); }

  // The opening quote of the key just read: the nearest '"' before the closing one that is not escaped.
  size_t KeyStart() const {
    size_t close = Offset() > 0 ? Offset() - 1 : 0;
    for (size_t i = close; i > 0;) {
      --i;
      if (text_[i] != '"') continue;
      size_t backslashes = 0;
      for (size_t j = i; j > 0 && text_[j - 1] == '\\'; --j) ++backslashes;
      if (backslashes % 2 == 0) return i;
    }
    return close;
  }

  JsonBuilder* b_;
  std::string_view text_;
  const char** cursor_;
  Position error_pos_;
  std::string error_;
};

Attempt ParseJson(std::string_view text) {
  JsonBuilder builder;
  const char* cursor = text.data();
  JsonSax sax(&builder, text, &cursor);
  TrackingIterator first(text.data(), &cursor), last(text.data() + text.size(), &cursor);
  if (!Json::sax_parse(first, last, &sax)) return {std::nullopt, sax.error_pos(), sax.error()};
  return {builder.Take(), {}, {}};
}

// ----------------------------------------------------------------------------------------------------
// Durations and references.

constexpr std::string_view kDurationHint = "(expected e.g. 250ms, 10s, 5m or 1h30m)";

struct Reference {
  std::string text;  // "${service.output}"
  std::string service;
  std::string output;
};

// Every "${" opens a reference. There is deliberately no escape: what an operator sees is what is checked.
void ScanReferences(std::string_view s, std::vector<Reference>* refs, std::vector<std::string>* errors) {
  constexpr std::string_view kForm = " (expected ${service.output})";
  for (size_t i = s.find("${"); i != std::string_view::npos; i = s.find("${", i)) {
    size_t close = s.find('}', i + 2);
    if (close == std::string_view::npos) {
      if (errors) errors->push_back("unterminated reference " + Quoted(s.substr(i)) + std::string(kForm));
      return;
    }
    std::string_view text = s.substr(i, close - i + 1);
    std::string_view inner = s.substr(i + 2, close - i - 2);
    i = close + 1;
    if (inner.empty()) {
      if (errors) errors->push_back("empty reference '${}'" + std::string(kForm));
      continue;
    }
    // Service names may contain '.', output names may not: the last '.' separates them.
    size_t dot = inner.rfind('.');
    if (dot == std::string_view::npos && IsIdentifier(inner)) {
      if (errors)
        errors->push_back(std::string(text) + " has no value: give one when applying, with --set " +
                          std::string(inner) + "=VALUE");
      continue;
    }
    if (dot == std::string_view::npos || !IsItemName(inner.substr(0, dot)) ||
        !IsIdentifier(inner.substr(dot + 1))) {
      if (errors) errors->push_back("malformed reference " + Quoted(text) + std::string(kForm));
      continue;
    }
    refs->push_back(
        {std::string(text), std::string(inner.substr(0, dot)), std::string(inner.substr(dot + 1))});
  }
}

// service -> services it depends on; `known` (when given) drops targets that are not services.
std::map<std::string, std::set<std::string>> DependencyMap(const Json& doc,
                                                           const std::set<std::string>* known) {
  std::map<std::string, std::set<std::string>> deps;
  if (!doc.is_object()) return deps;
  auto services = doc.find("services");
  if (services == doc.end() || !services->is_object()) return deps;
  for (auto it = services->begin(); it != services->end(); ++it) {
    const Json& svc = it.value();
    if (!svc.is_object()) continue;
    auto& out = deps[it.key()];
    auto add = [&](const std::string& target) {
      if (!known || known->count(target)) out.insert(target);
    };
    if (auto params = svc.find("params"); params != svc.end() && params->is_object()) {
      for (const Json& v : *params) {
        if (!v.is_string()) continue;
        std::vector<Reference> refs;
        ScanReferences(v.get_ref<const std::string&>(), &refs, nullptr);
        for (const auto& r : refs) add(r.service);
      }
    }
    if (auto after = svc.find("after"); after != svc.end() && after->is_array()) {
      for (const Json& v : *after) {
        if (v.is_string()) add(v.get<std::string>());
      }
    }
  }
  return deps;
}

// Johnson's algorithm, iterative (service graphs come from operator input, so no recursion on its shape).
// Each elementary cycle is found exactly once, from its smallest vertex, which is what the report wants.
std::vector<std::vector<int>> ElementaryCycles(const std::vector<std::vector<int>>& adj, size_t limit,
                                               bool* truncated) {
  std::vector<std::vector<int>> cycles;
  const int n = static_cast<int>(adj.size());
  std::vector<bool> blocked;
  std::vector<std::vector<int>> blocked_by;
  auto unblock = [&](int u) {
    std::vector<int> work{u};
    while (!work.empty()) {
      int x = work.back();
      work.pop_back();
      if (!blocked[x]) continue;
      blocked[x] = false;
      for (int w : blocked_by[x]) work.push_back(w);
      blocked_by[x].clear();
    }
  };
  struct Frame {
    int v;
    size_t next;
    bool found;
  };
  for (int s = 0; s < n; ++s) {
    blocked.assign(n, false);
    blocked_by.assign(n, {});
    std::vector<int> path{s};
    std::vector<Frame> frames{{s, 0, false}};
    blocked[s] = true;
    while (!frames.empty()) {
      Frame& f = frames.back();
      if (f.next < adj[f.v].size()) {
        int w = adj[f.v][f.next++];
        if (w < s) continue;
        if (w == s) {
          f.found = true;
          cycles.push_back(path);
          cycles.back().push_back(s);
          if (cycles.size() >= limit) {
            *truncated = true;
            return cycles;
          }
        } else if (!blocked[w]) {
          blocked[w] = true;
          path.push_back(w);
          frames.push_back({w, 0, false});
        }
        continue;
      }
      int v = f.v;
      bool found = f.found;
      if (found) {
        unblock(v);
      } else {
        for (int w : adj[v]) {
          if (w < s) continue;
          auto& list = blocked_by[w];
          if (std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
        }
      }
      frames.pop_back();
      path.pop_back();
      if (found && !frames.empty()) frames.back().found = true;
    }
  }
  return cycles;
}

// ----------------------------------------------------------------------------------------------------
// Validation.

class Validator {
 public:
  explicit Validator(const Json& doc) : doc_(doc) {}

  std::vector<std::string> Run() {
    CheckUnknownSections();
    CheckRoles();
    CheckPackages();
    CheckServices();
    CheckNodes();
    CheckPolicy();
    CheckSwitches();
    if (const Json* f = Section("freeze")) CheckFreeze(*f);
    CheckVoters();
    return std::move(problems_);
  }

 private:
  void Problem(const std::string& path, const std::string& what) { problems_.push_back(path + ": " + what); }

  const Json* Section(std::string_view name) const {
    auto it = doc_.find(std::string(name));
    return it == doc_.end() ? nullptr : &*it;
  }

  bool ExpectObject(const std::string& path, const Json& j) {
    if (j.is_object()) return true;
    Problem(path, "expected a mapping, got " + Describe(j));
    return false;
  }

  // false, true, or {reason: TEXT, by: NODE} (what `starling freeze` writes).
  void CheckFreeze(const Json& f) {
    if (f.is_boolean()) return;
    if (!f.is_object()) {
      Problem("freeze", "expected true, false or a mapping with a reason, got " + ShowValue(f));
      return;
    }
    CheckFields("freeze", f, {"reason", "by"});
    auto r = f.find("reason");
    if (r == f.end() || !r->is_string() || r->get<std::string>().empty())
      Problem("freeze.reason", "a freeze needs a non-empty reason");
    if (auto b = f.find("by"); b != f.end() && !b->is_string()) Problem("freeze.by", "expected a node name");
  }

  void ExpectBool(const std::string& path, const Json& j) {
    if (!j.is_boolean()) Problem(path, "expected true or false, got " + ShowValue(j));
  }

  void CheckFields(const std::string& path, const Json& obj,
                   std::initializer_list<std::string_view> allowed) {
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      if (std::find(allowed.begin(), allowed.end(), it.key()) == allowed.end()) {
        Problem(path, "unknown field " + Quoted(it.key()));
      }
    }
  }

  // The strings of a list, reporting anything that is not a list of strings.
  std::vector<std::string> StringList(const std::string& path, const Json& j) {
    std::vector<std::string> out;
    if (!j.is_array()) {
      Problem(path, "expected a list, got " + ShowValue(j));
      return out;
    }
    for (const Json& e : j) {
      if (e.is_string()) {
        out.push_back(e.get<std::string>());
      } else {
        Problem(path, "expected a list of strings, found " + ShowValue(e));
      }
    }
    return out;
  }

  void CheckNoDuplicates(const std::string& path, const std::vector<std::string>& items,
                         std::string_view what) {
    std::set<std::string> seen;
    for (const auto& s : items) {
      if (!seen.insert(s).second) Problem(path, "duplicate " + std::string(what) + " " + Quoted(s));
    }
  }

  void CheckRoleList(const std::string& path, const Json& j) {
    std::vector<std::string> list = StringList(path, j);
    CheckNoDuplicates(path, list, "role");
    for (const auto& r : list) {
      if (roles_.count(r)) continue;
      std::string declared =
          roles_.empty()
              ? "(no roles are declared)"
              : "(declared roles: " + JoinComma(std::vector<std::string>(roles_.begin(), roles_.end())) + ")";
      Problem(path, "unknown role " + Quoted(r) + " " + declared);
    }
  }

  void CheckHooks(const std::string& path, const Json& j, std::initializer_list<std::string_view> kinds,
                  std::string_view expected) {
    if (!ExpectObject(path, j)) return;
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (std::find(kinds.begin(), kinds.end(), it.key()) == kinds.end()) {
        Problem(path, "unknown hook " + Quoted(it.key()) + " (expected " + std::string(expected) + ")");
        continue;
      }
      std::string hp = JoinPath(path, Printable(it.key()));
      if (!it.value().is_string()) {
        Problem(hp, "expected a hook name, got " + ShowValue(it.value()));
      } else if (!IsNodeOrHookName(it.value().get_ref<const std::string&>())) {
        Problem(hp, Quoted(it.value().get_ref<const std::string&>()) +
                        " is not a hook name (a file name in the hooks directory, not a command line)");
      }
    }
  }

  void CheckDuration(const std::string& path, const Json& j, bool allow_zero) {
    if (!j.is_string()) {
      Problem(path, "expected a duration such as \"10s\", got " + ShowValue(j));
      return;
    }
    auto d = ParseDuration(j.get_ref<const std::string&>());
    if (!d.ok()) {
      Problem(path, d.status().message());
    } else if (!allow_zero && d->count() == 0) {
      Problem(path, "must be longer than 0s");
    }
  }

  void CheckUnknownSections() {
    for (auto it = doc_.begin(); it != doc_.end(); ++it) {
      if (std::find(kSections.begin(), kSections.end(), it.key()) != kSections.end()) continue;
      std::string expected;
      for (auto s : kSections) expected += (expected.empty() ? "" : ", ") + std::string(s);
      Problem(Printable(it.key()), "unknown section (expected one of " + expected + ")");
    }
  }

  void CheckRoles() {
    const Json* roles = Section("roles");
    if (!roles) return;
    std::vector<std::string> list = StringList("roles", *roles);
    for (const auto& r : list) {
      if (!IsItemName(r))
        Problem("roles", Quoted(r) + " is not a valid role name " + std::string(kItemNameRule));
      // Even a malformed role counts as declared, so that one typo is reported once, not at every use.
      roles_.insert(r);
    }
    CheckNoDuplicates("roles", list, "role");
  }

  void CheckPackages() {
    const Json* packages = Section("packages");
    if (!packages || !ExpectObject("packages", *packages)) return;
    for (auto it = packages->begin(); it != packages->end(); ++it) {
      const std::string path = "packages." + Printable(it.key());
      const Json& pkg = it.value();
      if (!IsItemName(it.key())) Problem(path, "invalid package name " + std::string(kItemNameRule));
      if (!ExpectObject(path, pkg)) continue;
      CheckFields(path, pkg, {"version", "artifact", "roles", "hooks", "restart"});
      if (auto v = pkg.find("version"); v == pkg.end()) {
        Problem(path, "missing required field 'version'");
      } else if (v->is_number()) {
        // YAML reads 1.2 as a number, which is never what an operator writing a version meant.
        Problem(path + ".version", "expected a string, got " + ShowValue(*v) + " (quote it, e.g. \"1.2\")");
      } else if (!v->is_string()) {
        Problem(path + ".version", "expected a string, got " + ShowValue(*v));
      } else if (!IsVersion(v->get_ref<const std::string&>())) {
        Problem(path + ".version", "malformed version " + Quoted(v->get_ref<const std::string&>()));
      }
      if (auto a = pkg.find("artifact"); a != pkg.end()) {
        if (!a->is_string() || !IsDigest(a->get_ref<const std::string&>())) {
          std::string shown = a->is_string() ? Quoted(a->get_ref<const std::string&>()) : ShowValue(*a);
          Problem(path + ".artifact",
                  "malformed digest " + shown + " (expected sha256: and 64 lowercase hex digits)");
        }
      }
      if (auto r = pkg.find("roles"); r != pkg.end()) CheckRoleList(path + ".roles", *r);
      if (auto h = pkg.find("hooks"); h != pkg.end()) {
        CheckHooks(path + ".hooks", *h, {"install", "verify", "remove"}, "install, verify or remove");
      }
      if (auto r = pkg.find("restart"); r != pkg.end()) ExpectBool(path + ".restart", *r);
    }
  }

  void CheckServices() {
    const Json* services = Section("services");
    if (!services || !ExpectObject("services", *services)) return;
    std::set<std::string> packages;
    if (const Json* p = Section("packages"); p && p->is_object()) {
      for (auto it = p->begin(); it != p->end(); ++it) packages.insert(it.key());
    }
    // Outputs first: a reference may point at a service sorted after the one holding it.
    std::set<std::string> names;
    std::map<std::string, std::set<std::string>> outputs;
    for (auto it = services->begin(); it != services->end(); ++it) {
      names.insert(it.key());
      auto& declared = outputs[it.key()];
      if (!it.value().is_object()) continue;
      if (auto o = it.value().find("outputs"); o != it.value().end() && o->is_array()) {
        for (const Json& e : *o) {
          if (e.is_string()) declared.insert(e.get<std::string>());
        }
      }
    }
    for (auto it = services->begin(); it != services->end(); ++it) {
      const std::string path = "services." + Printable(it.key());
      const Json& svc = it.value();
      if (!IsItemName(it.key())) Problem(path, "invalid service name " + std::string(kItemNameRule));
      if (!ExpectObject(path, svc)) continue;
      CheckFields(path, svc, {"package", "roles", "hooks", "params", "outputs", "after", "start_deadline"});
      if (auto p = svc.find("package"); p != svc.end()) {
        if (!p->is_string()) {
          Problem(path + ".package", "expected a package name, got " + ShowValue(*p));
        } else if (!packages.count(p->get<std::string>())) {
          Problem(path + ".package", "unknown package " + Quoted(p->get_ref<const std::string&>()));
        }
      }
      if (auto r = svc.find("roles"); r != svc.end()) CheckRoleList(path + ".roles", *r);
      if (auto h = svc.find("hooks"); h != svc.end()) {
        CheckHooks(path + ".hooks", *h, {"start", "stop", "health"}, "start, stop or health");
      }
      if (auto p = svc.find("params"); p != svc.end()) CheckParams(path + ".params", *p, names, outputs);
      if (auto o = svc.find("outputs"); o != svc.end()) {
        std::vector<std::string> list = StringList(path + ".outputs", *o);
        for (const auto& s : list) {
          if (!IsIdentifier(s)) {
            Problem(path + ".outputs",
                    Quoted(s) + " is not a valid output name " + std::string(kIdentifierRule));
          }
        }
        CheckNoDuplicates(path + ".outputs", list, "output");
      }
      if (auto a = svc.find("after"); a != svc.end()) {
        std::vector<std::string> list = StringList(path + ".after", *a);
        for (const auto& s : list) {
          if (!names.count(s)) Problem(path + ".after", "unknown service " + Quoted(s));
        }
        CheckNoDuplicates(path + ".after", list, "service");
      }
      if (auto d = svc.find("start_deadline"); d != svc.end())
        CheckDuration(path + ".start_deadline", *d, false);
    }
    CheckCycles(names);
  }

  void CheckParams(const std::string& path, const Json& params, const std::set<std::string>& services,
                   const std::map<std::string, std::set<std::string>>& outputs) {
    if (!ExpectObject(path, params)) return;
    for (auto it = params.begin(); it != params.end(); ++it) {
      const std::string pp = JoinPath(path, Printable(it.key()));
      if (!IsIdentifier(it.key())) {
        Problem(path, Quoted(it.key()) + " is not a valid parameter name " + std::string(kIdentifierRule));
      }
      const Json& v = it.value();
      if (v.is_number() || v.is_boolean()) continue;
      if (!v.is_string()) {
        Problem(pp, "expected a string, number or boolean, got " + Describe(v));
        continue;
      }
      const std::string& s = v.get_ref<const std::string&>();
      if (!ValidUtf8(s)) {
        Problem(pp, "not valid UTF-8");
        continue;
      }
      std::vector<Reference> refs;
      std::vector<std::string> errors;
      ScanReferences(s, &refs, &errors);
      for (const auto& e : errors) Problem(pp, e);
      for (const auto& r : refs) {
        if (!services.count(r.service)) {
          Problem(pp, r.text + " refers to unknown service " + Quoted(r.service));
          continue;
        }
        const auto& declared = outputs.at(r.service);
        if (declared.count(r.output)) continue;
        std::string list =
            declared.empty()
                ? "it declares no outputs"
                : "it declares: " + JoinComma(std::vector<std::string>(declared.begin(), declared.end()));
        Problem(pp, r.text + " refers to output " + Quoted(r.output) + " that service " + Quoted(r.service) +
                        " does not declare (" + list + ")");
      }
    }
  }

  void CheckCycles(const std::set<std::string>& names) {
    constexpr size_t kMaxCycles = 20;
    std::vector<std::string> index(names.begin(), names.end());
    auto id = [&](const std::string& s) {
      return static_cast<int>(std::lower_bound(index.begin(), index.end(), s) - index.begin());
    };
    std::vector<std::vector<int>> adj(index.size());
    for (const auto& [from, tos] : DependencyMap(doc_, &names)) {
      for (const auto& to : tos) adj[id(from)].push_back(id(to));
    }
    bool truncated = false;
    auto cycles = ElementaryCycles(adj, kMaxCycles, &truncated);
    std::sort(cycles.begin(), cycles.end());
    for (const auto& c : cycles) {
      std::string text;
      for (int v : c) text += (text.empty() ? "" : " -> ") + Printable(index[v]);
      Problem("services", "dependency cycle: " + text);
    }
    if (truncated)
      Problem("services", "more dependency cycles not listed (showing " + std::to_string(kMaxCycles) + ")");
  }

  void CheckNodes() {
    const Json* nodes = Section("nodes");
    if (!nodes || !ExpectObject("nodes", *nodes)) return;
    for (auto it = nodes->begin(); it != nodes->end(); ++it) {
      const std::string path = "nodes." + Printable(it.key());
      const Json& node = it.value();
      if (!IsNodeOrHookName(it.key())) Problem(path, "invalid node name " + std::string(kNodeNameRule));
      if (!ExpectObject(path, node)) continue;
      CheckFields(path, node, {"lifecycle", "roles"});
      if (auto l = node.find("lifecycle"); l == node.end()) {
        Problem(path, "missing required field 'lifecycle'");
      } else if (!l->is_string() || (*l != "commissioned" && *l != "decommissioned")) {
        Problem(path + ".lifecycle",
                "unknown lifecycle " + ShowValue(*l) + " (expected commissioned or decommissioned)");
      }
      if (auto r = node.find("roles"); r != node.end()) CheckRoleList(path + ".roles", *r);
    }
  }

  void CheckPolicy() {
    const Json* policy = Section("policy");
    if (!policy || !ExpectObject("policy", *policy)) return;
    const Json& p = *policy;
    CheckFields("policy", p,
                {"batch", "role_order", "health_gate", "min_healthy", "node_deadline", "progress_deadline",
                 "failure_threshold", "auto_revert"});
    if (auto b = p.find("batch"); b != p.end()) CheckBatch(*b);
    if (auto r = p.find("role_order"); r != p.end()) CheckRoleList("policy.role_order", *r);
    if (auto h = p.find("health_gate"); h != p.end()) ExpectBool("policy.health_gate", *h);
    if (auto d = p.find("min_healthy"); d != p.end()) CheckDuration("policy.min_healthy", *d, true);
    if (auto d = p.find("node_deadline"); d != p.end()) CheckDuration("policy.node_deadline", *d, false);
    if (auto d = p.find("progress_deadline"); d != p.end())
      CheckDuration("policy.progress_deadline", *d, false);
    if (auto f = p.find("failure_threshold"); f != p.end()) {
      bool ok = f->is_number_unsigned() || (f->is_number_integer() && f->get<int64_t>() >= 0);
      if (!ok) Problem("policy.failure_threshold", "expected a whole number >= 0, got " + ShowValue(*f));
    }
    if (auto a = p.find("auto_revert"); a != p.end()) ExpectBool("policy.auto_revert", *a);
  }

  void CheckBatch(const Json& b) {
    constexpr std::string_view kRule =
        "(expected a count >= 1, a percentage from '1%' to '100%', or a non-empty list of those)";
    auto step_ok = [](const Json& s) {
      if (s.is_number_unsigned()) return s.get<uint64_t>() >= 1;
      if (s.is_number_integer()) return s.get<int64_t>() >= 1;
      return s.is_string() && IsPercent(s.get_ref<const std::string&>());
    };
    if (b.is_array()) {
      if (b.empty()) Problem("policy.batch", "empty ramp list " + std::string(kRule));
      for (const Json& s : b) {
        if (!step_ok(s))
          Problem("policy.batch", ShowValue(s) + " is not a valid batch size " + std::string(kRule));
      }
    } else if (!step_ok(b)) {
      Problem("policy.batch", ShowValue(b) + " is not a valid batch size " + std::string(kRule));
    }
  }

  void CheckSwitches() {
    const Json* switches = Section("switches");
    if (!switches || !ExpectObject("switches", *switches)) return;
    CheckFields("switches", *switches, {"auto_commission", "auto_upgrade"});
    for (std::string_view name : {"auto_commission", "auto_upgrade"}) {
      if (auto s = switches->find(std::string(name)); s != switches->end()) {
        ExpectBool("switches." + std::string(name), *s);
      }
    }
  }

  void CheckVoters() {
    const Json* voters = Section("voters");
    if (!voters) return;
    std::vector<std::string> list = StringList("voters", *voters);
    if (voters->is_array() && (voters->empty() || voters->size() > 5)) {
      Problem("voters", "expected 1 to 5 node names, got " + std::to_string(voters->size()));
    }
    const Json* nodes = Section("nodes");
    for (const auto& v : list) {
      if (!IsNodeOrHookName(v)) {
        Problem("voters", Quoted(v) + " is not a valid node name " + std::string(kNodeNameRule));
        continue;
      }
      // A decommissioned node is on its way out; making it a voter contradicts the same document.
      if (nodes && nodes->is_object()) {
        auto n = nodes->find(v);
        if (n != nodes->end() && n->is_object() && n->value("lifecycle", Json()) == "decommissioned") {
          Problem("voters", "node " + Quoted(v) + " is decommissioned");
        }
      }
    }
    CheckNoDuplicates("voters", list, "node");
  }

  const Json& doc_;
  std::set<std::string> roles_;
  std::vector<std::string> problems_;
};

// ----------------------------------------------------------------------------------------------------
// YAML output.

// Plain only when unmistakably a string for us and for YAML 1.1 readers (yes/no/on/off), with a character set
// small enough that no indicator, comment or flow character can appear; everything else is double-quoted.
bool CanBePlain(std::string_view s) {
  if (s.empty() || !(IsAlnum(s[0]) || s[0] == '_' || s[0] == '/')) return false;
  constexpr std::string_view kAllowed = "_./+~-:";
  for (char c : s) {
    if (!IsAlnum(c) && kAllowed.find(c) == std::string_view::npos) return false;
  }
  if (s.back() == ':') return false;
  std::string lower(s);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](char c) { return IsAlpha(c) ? static_cast<char>(c | 0x20) : c; });
  if (lower == "yes" || lower == "no" || lower == "on" || lower == "off" || lower == "y" || lower == "n") {
    return false;
  }
  return ClassifyPlain(s) == PlainKind::kString;
}

std::string DoubleQuoted(std::string_view s) {
  std::string out = "\"";
  char buf[16];
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    size_t n = DecodeUtf8(s, i, &cp);
    if (n == 0) {  // not UTF-8: emit the byte as a code point, the closest YAML can say
      std::snprintf(buf, sizeof buf, "\\x%02x", static_cast<unsigned char>(s[i]));
      out += buf;
      ++i;
      continue;
    }
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        // YAML's non-printable set, plus the characters some readers treat as line breaks or a BOM.
        if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F) || cp == 0x2028 || cp == 0x2029 || cp == 0xFEFF ||
            cp == 0xFFFE || cp == 0xFFFF) {
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(cp));
          out += buf;
        } else {
          out.append(s.substr(i, n));
        }
    }
    i += n;
  }
  return out + "\"";
}

std::string YamlScalar(const Json& j) {
  switch (j.type()) {
    case Json::value_t::string: {
      const std::string& s = j.get_ref<const std::string&>();
      return CanBePlain(s) ? s : DoubleQuoted(s);
    }
    case Json::value_t::object:
      return "{}";
    case Json::value_t::array:
      return "[]";
    case Json::value_t::number_float: {
      double d = j.get<double>();
      if (std::isnan(d)) return ".nan";
      if (std::isinf(d)) return d > 0 ? ".inf" : "-.inf";
      return j.dump();
    }
    default:
      return j.dump();
  }
}

bool IsBlock(const Json& j) { return (j.is_object() || j.is_array()) && !j.empty(); }

void EmitBlock(const Json& j, int indent, std::string* out);

void EmitAfterIndicator(const Json& v, int indent, std::string* out) {
  if (IsBlock(v)) {
    *out += "\n";
    EmitBlock(v, indent + 2, out);
  } else {
    *out += " " + YamlScalar(v) + "\n";
  }
}

void EmitBlock(const Json& j, int indent, std::string* out) {
  const std::string pad(indent, ' ');
  // YAML limits implicit keys to 1024 characters (yaml-cpp enforces it); longer keys need the explicit form.
  constexpr size_t kMaxImplicitKey = 1000;
  if (j.is_object()) {
    for (auto it = j.begin(); it != j.end(); ++it) {
      std::string key = CanBePlain(it.key()) ? it.key() : DoubleQuoted(it.key());
      if (key.size() > kMaxImplicitKey) {
        *out += pad + "? " + key + "\n" + pad + ":";
      } else {
        *out += pad + key + ":";
      }
      EmitAfterIndicator(it.value(), indent, out);
    }
    return;
  }
  for (const Json& v : j) {
    if (!IsBlock(v)) {
      *out += pad + "- " + YamlScalar(v) + "\n";
      continue;
    }
    // Compact form ("- a: 1" / "- - 1"): render the child one level deeper, then put the dash in its indent.
    std::string child;
    EmitBlock(v, indent + 2, &child);
    child.replace(0, pad.size() + 2, pad + "- ");
    *out += child;
  }
}

bool IsMapSection(std::string_view s) { return s == "packages" || s == "services" || s == "nodes"; }

void DiffInto(const Json& a, const Json& b, const std::string& path, std::vector<Change>* out) {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      auto other = b.find(it.key());
      std::string p = JoinPath(path, it.key());
      if (other == b.end()) {
        out->push_back({p, "removed", it.value(), Json()});
      } else {
        DiffInto(it.value(), *other, p, out);
      }
    }
    for (auto it = b.begin(); it != b.end(); ++it) {
      if (!a.contains(it.key())) out->push_back({JoinPath(path, it.key()), "added", Json(), it.value()});
    }
    return;
  }
  if (CanonicalJson(a) != CanonicalJson(b)) out->push_back({path, "changed", a, b});
}

}  // namespace

// ----------------------------------------------------------------------------------------------------

Result<Json> ParseDocument(std::string_view text) {
  try {
    size_t start = text.substr(0, 3) == "\xEF\xBB\xBF" ? 3 : 0;
    while (start < text.size() &&
           (text[start] == ' ' || text[start] == '\t' || text[start] == '\n' || text[start] == '\r')) {
      ++start;
    }
    // "{" followed by a quoted key (or "}") can only be meant as JSON, so it gets a strict JSON parser: that
    // handles JSON's escapes (surrogate pairs) that yaml-cpp refuses, and keeps yaml-cpp's flow-style
    // leniency (trailing commas, empty entries) from silently accepting broken JSON. "{key: ...}" is YAML
    // flow style.
    size_t next = start + 1;
    while (next < text.size() &&
           (text[next] == ' ' || text[next] == '\t' || text[next] == '\n' || text[next] == '\r')) {
      ++next;
    }
    bool json = start < text.size() && text[start] == '{' && next < text.size() &&
                (text[next] == '"' || text[next] == '}');
    Attempt result = json ? ParseJson(text) : ParseYaml(text);
    if (!result.value) return Status::InvalidArgument(Located(result.pos, result.error));
    if (!result.value->is_object())
      return Status::InvalidArgument("the document must be a mapping of sections");
    return std::move(*result.value);
  } catch (const ParseFailure& e) {
    return Status::InvalidArgument(Located(e.pos(), e.what()));
  } catch (const YAML::Exception& e) {
    return Status::InvalidArgument(Located(FromMark(e.mark), e.msg));
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(e.what());
  } catch (const std::exception& e) {
    return Status::Internal(std::string("parsing the document: ") + e.what());
  }
}

Status ValidateDocument(const Json& doc) {
  if (!doc.is_object()) return Status::InvalidArgument("the document must be a mapping of sections");
  try {
    std::vector<std::string> problems = Validator(doc).Run();
    if (problems.empty()) return Status::Ok();
    std::string message;
    for (const auto& p : problems) message += (message.empty() ? "" : "\n") + p;
    return Status::InvalidArgument(std::move(message));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("validating the document: ") + e.what());
  }
}

Status FillSettings(Json& doc, const std::map<std::string, std::string>& values) {
  constexpr size_t kMaxValueBytes = 4096;
  for (const auto& [name, value] : values) {
    if (!IsIdentifier(name))
      return Status::InvalidArgument("--set " + Printable(name) + ": not a valid setting name " +
                                     std::string(kIdentifierRule));
    if (value.size() > kMaxValueBytes)
      return Status::InvalidArgument("--set " + name + ": the value is longer than " +
                                     std::to_string(kMaxValueBytes) + " bytes");
    if (!ValidUtf8(value)) return Status::InvalidArgument("--set " + name + ": the value is not valid UTF-8");
    // A value is text, never a reference: it must not open one.
    if (value.find("${") != std::string::npos)
      return Status::InvalidArgument("--set " + name + ": a value may not contain '${'");
  }
  std::set<std::string> used;
  Json filled = doc;  // `doc` changes only when every setting is good
  auto services = filled.is_object() ? filled.find("services") : filled.end();
  if (services != filled.end() && services->is_object()) {
    for (auto& svc : *services) {
      if (!svc.is_object()) continue;
      auto params = svc.find("params");
      if (params == svc.end() || !params->is_object()) continue;
      for (auto& v : *params) {
        if (!v.is_string()) continue;
        const std::string& s = v.get_ref<const std::string&>();
        std::string out;
        size_t pos = 0;
        for (size_t open = s.find("${"); open != std::string::npos; open = s.find("${", pos)) {
          size_t close = s.find('}', open + 2);
          if (close == std::string::npos) break;
          const std::string name = s.substr(open + 2, close - open - 2);
          out += s.substr(pos, open - pos);
          auto it = values.find(name);
          out += it != values.end() ? it->second : s.substr(open, close - open + 1);
          if (it != values.end()) used.insert(name);
          pos = close + 1;
        }
        out += s.substr(pos);
        v = out;
      }
    }
  }
  for (const auto& [name, _] : values)
    if (!used.count(name))
      return Status::InvalidArgument("--set " + name + ": no service parameter of the document uses ${" + name + "}");
  doc = std::move(filled);
  return Status::Ok();
}

std::vector<std::pair<std::string, std::string>> ServiceEdges(const Json& doc) {
  std::vector<std::pair<std::string, std::string>> edges;
  for (const auto& [from, tos] : DependencyMap(doc, nullptr)) {
    for (const auto& to : tos) edges.emplace_back(from, to);
  }
  return edges;  // already sorted: both levels are ordered sets
}

std::string ToYaml(const Json& doc) {
  if (!IsBlock(doc)) return YamlScalar(doc) + "\n";
  std::string out;
  EmitBlock(doc, 0, &out);
  return out;
}

std::string CanonicalJson(const Json& doc) {
  return doc.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::vector<Change> Diff(const Json& from, const Json& to) {
  const Json empty = Json::object();
  std::vector<Change> changes;
  DiffInto(from.is_null() ? empty : from, to.is_null() ? empty : to, "", &changes);
  std::stable_sort(changes.begin(), changes.end(),
                   [](const Change& a, const Change& b) { return a.path < b.path; });
  return changes;
}

Result<std::chrono::microseconds> ParseDuration(std::string_view text) {
  auto malformed = [&] {
    return Status::InvalidArgument("malformed duration " + Quoted(text) + " " + std::string(kDurationHint));
  };
  if (text.empty()) return malformed();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  int64_t total = 0;
  int last_rank = 5;  // units must go strictly down: h (4), m (3), s (2), ms (1)
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    while (i < text.size() && IsDigit(text[i])) ++i;
    if (i == start || i == text.size()) return malformed();
    std::string_view digits = text.substr(start, i - start);
    int rank;
    int64_t unit_us;
    if (text[i] == 'h') {
      rank = 4, unit_us = int64_t{3600} * 1000000, i += 1;
    } else if (text[i] == 'm' && i + 1 < text.size() && text[i + 1] == 's') {
      rank = 1, unit_us = 1000, i += 2;
    } else if (text[i] == 'm') {
      rank = 3, unit_us = int64_t{60} * 1000000, i += 1;
    } else if (text[i] == 's') {
      rank = 2, unit_us = 1000000, i += 1;
    } else {
      return malformed();
    }
    if (rank >= last_rank) return malformed();
    last_rank = rank;
    uint64_t v = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), v);
    if (ec != std::errc() || v > static_cast<uint64_t>((kMax - total) / unit_us)) {
      return Status::InvalidArgument("duration " + Quoted(text) + " is too long");
    }
    total += static_cast<int64_t>(v) * unit_us;
  }
  return std::chrono::microseconds(total);
}

std::map<std::string, Json> SplitObjects(const Json& doc) {
  std::map<std::string, Json> objects;
  if (!doc.is_object()) return objects;
  for (auto it = doc.begin(); it != doc.end(); ++it) {
    if (IsMapSection(it.key()) && it.value().is_object()) {
      for (auto item = it.value().begin(); item != it.value().end(); ++item) {
        objects[it.key() + "/" + item.key()] = item.value();
      }
    } else {
      objects[it.key()] = it.value();
    }
  }
  return objects;
}

Json JoinObjects(const std::map<std::string, Json>& objects) {
  Json doc = Json::object();
  for (const auto& [key, value] : objects) {
    size_t slash = key.find('/');
    std::string section = key.substr(0, slash);
    if (slash == std::string::npos || !IsMapSection(section)) {
      doc[key] = value;
      continue;
    }
    Json& target = doc[section];
    if (!target.is_object()) target = Json::object();
    target[key.substr(slash + 1)] = value;
  }
  return doc;
}

bool SectionOwns(const Json& doc, std::string_view object_key) {
  if (!doc.is_object()) return false;
  std::string_view section = object_key.substr(0, object_key.find('/'));
  if (std::find(kSections.begin(), kSections.end(), section) == kSections.end()) return false;
  return doc.contains(std::string(section));
}

}  // namespace starling::store

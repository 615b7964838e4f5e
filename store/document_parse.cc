// Parsing: YAML or JSON text -> Json.
//
// Parsing goes through event/SAX interfaces rather than yaml-cpp's Node tree so that we see every key of a
// mapping (the Node API silently keeps duplicates), can refuse or bound aliases (a "billion laughs" document
// would otherwise expand without limit when copied into Json), and resolve scalars ourselves by the YAML 1.2
// core schema instead of yaml-cpp's YAML 1.1-flavoured conversions.
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "document_internal.h"
#include "starling/store/document.h"

namespace starling::store {

using internal::ClassifyPlain;
using internal::IsDigit;
using internal::IsHex;
using internal::PlainKind;
using internal::Quoted;
using internal::ValidUtf8;

namespace {

// ----------------------------------------------------------------------------------------------------
// Scalar resolution: the YAML 1.2 core schema.

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

}  // namespace

PlainKind internal::ClassifyPlain(std::string_view s) {
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

namespace {

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
  // Alias expansion copies values, so a small text can describe a huge document; this bounds the copy, both
  // in values and in bytes (an alias of a long string copies the string: counting values alone let 2,000
  // aliases of one 512 KiB string expand to 1 GiB). kMaxBytes is the API's request limit: a document
  // without aliases cannot be larger than the text that was sent.
  static constexpr size_t kMaxValues = size_t{1} << 20;
  static constexpr size_t kMaxBytes = size_t{8} << 20;

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
    Count({0, key.size()}, pos);
    top.key = std::move(key);
    top.have_key = true;
  }

  void Scalar(Json value, Position pos, YAML::anchor_t anchor = 0) {
    const Cost cost{1, value.is_string() ? value.get_ref<const std::string&>().size() : 8};
    Count(cost, pos);
    if (anchor != 0) anchors_[anchor] = {value, cost};
    Attach(std::move(value));
  }

  void Start(bool is_map, Position pos, YAML::anchor_t anchor = 0) {
    if (Full()) throw TooDeep(pos);
    Count({1, 8}, pos);
    stack_.push_back({is_map ? Json::object() : Json::array(), is_map, false, {}, anchor, spent_});
  }

  void End() {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (f.is_map && f.have_key) f.value[f.key] = nullptr;
    if (f.anchor != 0)
      anchors_[f.anchor] = {f.value, {spent_.values - f.spent_before.values + 1, spent_.bytes - f.spent_before.bytes + 8}};
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
  // What a value costs to build: values, and bytes of strings and keys (8 for
  // any other value).
  struct Cost {
    size_t values = 0;
    size_t bytes = 0;
  };
  struct Frame {
    Json value;
    bool is_map;
    bool have_key;
    std::string key;
    YAML::anchor_t anchor;
    Cost spent_before;  // what the document had cost before this collection
  };

  // Before the copy: an alias is charged its whole cost up front.
  void Count(Cost c, Position pos) {
    spent_.values += c.values;
    spent_.bytes += c.bytes;
    if (spent_.values > kMaxValues)
      throw ParseFailure(pos, "the document is too large (more than " + std::to_string(kMaxValues) +
                                  " values after expanding aliases)");
    if (spent_.bytes > kMaxBytes)
      throw ParseFailure(pos, "the document is too large (more than " + std::to_string(kMaxBytes >> 20) +
                                  " MiB of keys and values after expanding aliases)");
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
  std::map<YAML::anchor_t, std::pair<Json, Cost>> anchors_;
  Json root_;
  bool done_ = false;
  Cost spent_;
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

}  // namespace

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

}  // namespace starling::store

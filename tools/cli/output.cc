#include "output.h"

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "call.h"
#include "starling/text.h"

namespace starling::cli {

namespace {

// Holds a line, then writes it printable; a flush writes what it holds. A
// line is never split inside a UTF-8 sequence, so Printable sees whole ones.
class PrintableBuf final : public std::streambuf {
 public:
  explicit PrintableBuf(std::streambuf* out) : out_(out) {}

 protected:
  int_type overflow(int_type c) override {
    if (traits_type::eq_int_type(c, traits_type::eof())) return traits_type::not_eof(c);
    line_ += traits_type::to_char_type(c);
    if (c == '\n' || line_.size() >= 1 << 16) Emit();
    return c;
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    for (std::streamsize i = 0; i < n; ++i) overflow(traits_type::to_int_type(s[i]));
    return n;
  }
  int sync() override {
    Emit();
    return out_->pubsync();
  }

 private:
  void Emit() {
    if (line_.empty()) return;
    const std::string shown = text::Printable(line_);
    out_->sputn(shown.data(), static_cast<std::streamsize>(shown.size()));
    line_.clear();
  }
  std::streambuf* out_;
  std::string line_;
};

}  // namespace

void MakeOutputPrintable() {
  // Static, and put back at exit before they go: the streams are flushed
  // again after every static object is destroyed.
  struct Wrapped {
    PrintableBuf out{std::cout.rdbuf()}, err{std::cerr.rdbuf()};
    std::streambuf* cout_was = std::cout.rdbuf(&out);
    std::streambuf* cerr_was = std::cerr.rdbuf(&err);
    ~Wrapped() {
      std::cout.flush();
      std::cerr.flush();
      std::cout.rdbuf(cout_was);
      std::cerr.rdbuf(cerr_was);
    }
  };
  static Wrapped wrapped;
}

void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  // Cells hold what members and hooks wrote: shown escaped, one line each,
  // and measured in characters so that non-ASCII text keeps the columns.
  std::vector<std::vector<std::string>> shown;
  std::vector<size_t> width;
  for (const auto& row : rows) {
    auto& cells = shown.emplace_back();
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) {
      cells.push_back(text::Printable(row[i], true));
      width[i] = std::max(width[i], text::Width(cells.back()));
    }
  }
  for (const auto& row : shown) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - text::Width(row[i]) + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

void PrintJson(const json& value) { std::cout << value.dump(2) << "\n"; }

std::string TagText(const std::map<std::string, std::string>& tags) {
  std::string out;
  for (const auto& [k, v] : tags) {
    if (!out.empty()) out += ",";
    out += k + "=" + v;
  }
  return out;
}

std::string OneLine(const json& value) {
  if (!value.is_string()) return value.dump();
  const std::string& s = value.get_ref<const std::string&>();
  return s.find_first_of("\n\r") == std::string::npos ? s : value.dump();
}

int PrintWrite(const json& r, const std::string& format) {
  for (const auto& w : r.value("warnings", json::array()))
    std::cerr << "starling: warning: " << w.get<std::string>() << "\n";
  if (format == "json") {
    PrintJson(r);
  } else if (!r.value("changed", false)) {
    std::cout << "no change: the desired state already matches revision " << r.value("revision", "") << "\n";
  } else {
    std::string previous = r.value("previous", "");
    std::cout << "revision " << r.value("revision", "") << " (was " << (previous.empty() ? "empty" : previous)
              << "), " << r.value("objects", 0) << " object(s) changed\n";
  }
  return kExitOk;
}

namespace {

// A value as the lines a unified view shows: a string's own lines, anything
// else as indented JSON; null (no value) as none.
std::vector<std::string> ValueLines(const json& value) {
  std::vector<std::string> lines;
  if (value.is_null()) return lines;
  const std::string text = value.is_string() ? value.get<std::string>() : value.dump(2);
  size_t start = 0;
  for (size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1)
    lines.push_back(text.substr(start, nl - start));
  if (start < text.size() || lines.empty()) lines.push_back(text.substr(start));
  return lines;
}

// The lines of `a` and `b` marked ' ' (in both), '-' (only in a) or '+'
// (only in b), in order: a longest common subsequence, as diff -u shows.
std::vector<std::pair<char, std::string>> LineDiff(const std::vector<std::string>& a,
                                                   const std::vector<std::string>& b) {
  std::vector<std::vector<size_t>> common(a.size() + 1, std::vector<size_t>(b.size() + 1, 0));
  for (size_t i = a.size(); i-- > 0;)
    for (size_t j = b.size(); j-- > 0;)
      common[i][j] = a[i] == b[j] ? common[i + 1][j + 1] + 1 : std::max(common[i + 1][j], common[i][j + 1]);
  std::vector<std::pair<char, std::string>> out;
  size_t i = 0, j = 0;
  while (i < a.size() || j < b.size()) {
    if (i < a.size() && j < b.size() && a[i] == b[j]) {
      out.emplace_back(' ', a[i++]);
      ++j;
    } else if (i < a.size() && (j == b.size() || common[i + 1][j] >= common[i][j + 1])) {
      out.emplace_back('-', a[i++]);
    } else {
      out.emplace_back('+', b[j++]);
    }
  }
  return out;
}

}  // namespace

void PrintDiff(const json& changes, bool full) {
  if (changes.empty()) std::cout << "no differences\n";
  for (const auto& c : changes) {
    const std::string kind = c.value("kind", "");
    const std::string path = c.value("path", "");
    const char mark = kind == "added" ? '+' : kind == "removed" ? '-' : '~';
    if (full) {
      std::cout << mark << " " << path << ":\n";
      for (const auto& [sign, line] : LineDiff(ValueLines(c.value("before", json())), ValueLines(c.value("after", json()))))
        std::cout << "    " << sign << " " << line << "\n";
    } else if (kind == "added") {
      std::cout << "+ " << path << ": " << OneLine(c["after"]) << "\n";
    } else if (kind == "removed") {
      std::cout << "- " << path << ": " << OneLine(c["before"]) << "\n";
    } else {
      std::cout << "~ " << path << ": " << OneLine(c["before"]) << " -> " << OneLine(c["after"]) << "\n";
    }
  }
}

}  // namespace starling::cli

// What text from the network or disk may contain before it is kept. Names
// and texts end up in JSON replies, metrics labels, log lines and hook
// environments, and are re-encoded for other nodes: invalid UTF-8 would make
// the JSON writer throw, and an embedded NUL would be cut off on the way out
// (the encoders pass C strings), so both are refused at the decoder.
#pragma once

#include <utf8.h>  // utfcpp

#include <algorithm>
#include <cstdio>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

namespace starling::text {

inline bool IsUtf8(std::string_view s) { return utf8::is_valid(s.begin(), s.end()); }

// Member, node, service and object names, addresses, tag keys: UTF-8
// without control characters (NUL, newlines, escapes included).
inline bool IsCleanName(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return IsUtf8(s);
}

// Free text (notes, details, tag values): UTF-8 without NUL.
inline bool IsCleanText(std::string_view s) { return s.find('\0') == std::string_view::npos && IsUtf8(s); }

// Bytes another program or node wrote (hook output, a peer's detail or tag),
// made fit to show a person and to put in JSON: invalid UTF-8 becomes U+FFFD,
// and control characters other than newline and tab (escape sequences,
// carriage returns, C1 controls) are written as \xNN or \u{NN}, so that they
// can neither break the JSON writer nor drive the reader's terminal. With
// one_line, newline and tab are escaped too (a table cell, a log field).
inline std::string Printable(std::string_view s, bool one_line = false) {
  std::string valid;
  if (!IsUtf8(s)) {
    utf8::replace_invalid(s.begin(), s.end(), std::back_inserter(valid));
    s = valid;
  }
  std::string out;
  out.reserve(s.size());
  char esc[12];
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if ((c < 0x20 && (one_line || (c != '\n' && c != '\t'))) || c == 0x7f) {
      std::snprintf(esc, sizeof esc, "\\x%02x", c);
      out += esc;
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xa0) {
      // U+0080..U+009F (C1 controls, CSI among them) are 0xC2 0x80..0x9F.
      std::snprintf(esc, sizeof esc, "\\u{%02x}", static_cast<unsigned char>(s[i + 1]));
      out += esc;
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

// Characters (code points) in valid UTF-8 text, for lining up columns.
inline size_t Width(std::string_view s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xc0) != 0x80;
  return n;
}

// At most the last `n` bytes of s, cut where a character starts, with "..."
// in front when anything was cut.
inline std::string TailChars(std::string_view s, size_t n) {
  if (s.size() <= n) return std::string(s);
  size_t from = s.size() - n;
  while (from < s.size() && (static_cast<unsigned char>(s[from]) & 0xc0) == 0x80) ++from;
  return "..." + std::string(s.substr(from));
}

// At most the first `n` bytes of s, cut where a character starts.
inline std::string HeadChars(std::string_view s, size_t n) {
  if (s.size() <= n) return std::string(s);
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80) --n;
  return std::string(s.substr(0, n));
}

// Levenshtein distance in bytes: insertions, deletions and substitutions.
inline size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// For "did you mean ...?": the known name nearest to `typed` (the one it
// begins, "a or b" when it begins two, else one at most two edits away), or
// "" when none is near enough to suggest.
inline std::string NearestName(std::string_view typed, const std::vector<std::string>& names) {
  std::vector<std::string> prefixed;
  for (const std::string& n : names)
    if (!typed.empty() && n.rfind(typed, 0) == 0) prefixed.push_back(n);
  if (prefixed.size() == 1) return prefixed.front();
  if (prefixed.size() == 2) return prefixed[0] + " or " + prefixed[1];
  std::string best;
  size_t best_distance = 3;
  for (const std::string& n : names) {
    const size_t d = EditDistance(typed, n);
    if (d < best_distance && d < std::max<size_t>(n.size(), 2)) {
      best = n;
      best_distance = d;
    }
  }
  return best;
}

}  // namespace starling::text

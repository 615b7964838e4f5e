// What text from the network or disk may contain before it is kept. Names
// and texts end up in JSON replies, metrics labels, log lines and hook
// environments, and are re-encoded for other nodes: invalid UTF-8 would make
// the JSON writer throw, and an embedded NUL would be cut off on the way out
// (the encoders pass C strings), so both are refused at the decoder.
#pragma once

#include <utf8.h>  // utfcpp

#include <string_view>

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

}  // namespace starling::text

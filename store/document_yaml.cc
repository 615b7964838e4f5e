// YAML output: block-style YAML that ParseDocument reads back to the same Json.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <string_view>

#include "document_internal.h"
#include "starling/store/document.h"

namespace starling::store {

using internal::ClassifyPlain;
using internal::DecodeUtf8;
using internal::IsAlnum;
using internal::IsAlpha;
using internal::PlainKind;

namespace {

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
    // Appended piece by piece: GCC 12 warns falsely (-Wrestrict) on " " + ... once it is inlined.
    *out += " ";
    *out += YamlScalar(v);
    *out += "\n";
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

}  // namespace

std::string ToYaml(const Json& doc) {
  if (!IsBlock(doc)) return YamlScalar(doc) + "\n";
  std::string out;
  EmitBlock(doc, 0, &out);
  return out;
}

}  // namespace starling::store

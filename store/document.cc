// The desired-state document's derived forms (canonical JSON, diff, stored objects, service edges) and
// apply-time settings; and the character, name, UTF-8 and message rules that the other document files share
// through document_internal.h. Parsing is in document_parse.cc, validation in document_validate.cc, YAML
// output in document_yaml.cc and durations in duration.cc.
#include "starling/store/document.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "document_internal.h"

namespace starling::store {
namespace internal {

// ----------------------------------------------------------------------------------------------------
// Character classes and name rules.

bool IsItemName(std::string_view s) {
  if (s.empty() || s.size() > 63 || !(IsLower(s[0]) || IsDigit(s[0]))) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return IsLower(c) || IsDigit(c) || c == '.' || c == '_' || c == '-'; });
}

bool IsNodeOrHookName(std::string_view s) {
  if (s.empty() || s.size() > 128 || !IsAlnum(s[0])) return false;
  return std::all_of(s.begin() + 1, s.end(),
                     [](char c) { return IsAlnum(c) || c == '.' || c == '_' || c == '-'; });
}

bool IsIdentifier(std::string_view s) {
  if (s.empty() || !(IsAlpha(s[0]) || s[0] == '_')) return false;
  return std::all_of(s.begin() + 1, s.end(), [](char c) { return IsAlnum(c) || c == '_'; });
}

// ----------------------------------------------------------------------------------------------------
// UTF-8.

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

std::string Quoted(std::string_view s) {
  // Appended rather than "'" + ...: GCC 12 warns falsely (-Wrestrict) on that form once it is inlined.
  std::string out = "'";
  out += Printable(s);
  out += "'";
  return out;
}

std::string JoinPath(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

}  // namespace internal

using internal::DependencyMap;
using internal::IsIdentifier;
using internal::JoinPath;
using internal::kIdentifierRule;
using internal::Printable;
using internal::ValidUtf8;

namespace {

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
      return Status::InvalidArgument("--set " + name + ": no service parameter of the document uses ${" +
                                     name + "}");
  doc = std::move(filled);
  return Status::Ok();
}

Json HideParams(Json doc) {
  auto services = doc.is_object() ? doc.find("services") : doc.end();
  if (services == doc.end() || !services->is_object()) return doc;
  for (auto& svc : *services) {
    if (!svc.is_object()) continue;
    auto params = svc.find("params");
    if (params == svc.end() || !params->is_object()) continue;
    for (auto& v : *params) v = std::string(kHiddenParam);
  }
  return doc;
}

std::vector<std::pair<std::string, std::string>> ServiceEdges(const Json& doc) {
  std::vector<std::pair<std::string, std::string>> edges;
  for (const auto& [from, tos] : DependencyMap(doc, nullptr)) {
    for (const auto& to : tos) edges.emplace_back(from, to);
  }
  return edges;  // already sorted: both levels are ordered sets
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

Json DiffJson(const Json& from, const Json& to) {
  Json out = Json::array();
  for (const auto& c : Diff(from, to))
    out.push_back(Json{{"path", c.path}, {"kind", c.kind}, {"before", c.before}, {"after", c.after}});
  return out;
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

bool TrueAt(const Json& obj, std::string_view key) {
  if (!obj.is_object()) return false;
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

std::string TextAt(const Json& obj, std::string_view key, std::string_view fallback) {
  if (obj.is_object())
    if (auto it = obj.find(key); it != obj.end() && it->is_string()) return it->get<std::string>();
  return std::string(fallback);
}

}  // namespace starling::store

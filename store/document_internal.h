// What the document's source files share: the character and name rules, UTF-8, showing operator text inside
// messages, and the few pieces of one file that another needs. Private to store/ (not under include/).
//
// Nothing in these files uses std::regex: libstdc++'s matcher recurses per character and can overflow the
// stack on long operator-supplied strings.
#pragma once

#include <cstddef>
#include <map>
#include <set>
#include <string>
#include <string_view>

#include "starling/store/document.h"

namespace starling::store::internal {

// ----------------------------------------------------------------------------------------------------
// Character classes and name rules (document.cc).

inline bool IsDigit(char c) { return c >= '0' && c <= '9'; }
inline bool IsLower(char c) { return c >= 'a' && c <= 'z'; }
inline bool IsAlpha(char c) { return IsLower(c) || (c >= 'A' && c <= 'Z'); }
inline bool IsAlnum(char c) { return IsAlpha(c) || IsDigit(c); }
inline bool IsLowerHex(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f'); }
inline bool IsHex(char c) { return IsLowerHex(c) || (c >= 'A' && c <= 'F'); }

// ^[a-z0-9][a-z0-9._-]{0,62}$ : package, service and role names.
bool IsItemName(std::string_view s);

// ^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$ : node names and hook names. Starting with an alphanumeric keeps "." and
// ".." out, so a hook name can never climb out of the hooks directory.
bool IsNodeOrHookName(std::string_view s);

// ^[A-Za-z_][A-Za-z0-9_]*$ : param and output names (they become environment variable names).
bool IsIdentifier(std::string_view s);

inline constexpr std::string_view kItemNameRule =
    "(expected lowercase letters, digits, '.', '_' or '-', starting with a letter or digit, at most 63 "
    "characters)";
inline constexpr std::string_view kNodeNameRule =
    "(expected letters, digits, '.', '_' or '-', starting with a letter or digit, at most 128 characters)";
inline constexpr std::string_view kIdentifierRule =
    "(expected letters, digits and '_', not starting with a digit)";

// ----------------------------------------------------------------------------------------------------
// UTF-8 (document.cc).

// Length of the well-formed UTF-8 sequence at s[i] (storing its code point), or 0 if it is not well formed.
size_t DecodeUtf8(std::string_view s, size_t i, char32_t* cp);

bool ValidUtf8(std::string_view s);

// ----------------------------------------------------------------------------------------------------
// Showing operator text inside messages (document.cc).

// Control bytes are escaped so that one problem always stays one line of the message; long text is cut (on a
// character boundary) because a message is for reading, not for reproducing the input.
std::string Printable(std::string_view s);

std::string Quoted(std::string_view s);

std::string JoinPath(const std::string& path, std::string_view key);

// ----------------------------------------------------------------------------------------------------
// Scalar resolution by the YAML 1.2 core schema (document_parse.cc): the emitter must quote any string that
// a plain scalar would read back as something else.

enum class PlainKind { kNull, kBool, kInt, kFloat, kNonFinite, kString };

PlainKind ClassifyPlain(std::string_view s);

// ----------------------------------------------------------------------------------------------------
// The service graph (document_validate.cc), which ServiceEdges also lists.

// service -> services it depends on; `known` (when given) drops targets that are not services.
std::map<std::string, std::set<std::string>> DependencyMap(const Json& doc,
                                                           const std::set<std::string>* known);

}  // namespace starling::store::internal

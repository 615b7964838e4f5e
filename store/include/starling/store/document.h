// The desired-state document: the one YAML or JSON document an operator applies.
//
// Contract
//  * ParseDocument turns text into Json and nothing more; ValidateDocument decides whether that Json is a
//    document we accept. Every other function takes the Json form, so JSON and YAML input behave alike.
//  * No function throws. Failures are a Status (kInvalidArgument for bad input); the functions returning
//    plain values never fail on a valid document and stay defined (never crash) on an invalid one.
//  * Everything is deterministic: the same input gives byte-identical output (messages, YAML, canonical
//    JSON, edge and change lists), because these end up in hashes, tests and operator diffs.
//  * Paths in messages and in Diff join object keys with '.'; a key that itself contains '.' (allowed in
//    item names, e.g. "web.v2") therefore reads ambiguously in a path, accepted for readability.
//  * Nothing here substitutes ${service.output} references; it only checks that they can be resolved.
//    Apply-time values (${NAME}, no '.') are substituted by FillSettings before a document is stored.
//    There is no escape for a literal "${" in a param value: every "${" opens a reference.
#pragma once

#include <array>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "starling/status.h"
#include "starling/store/duration.h"  // ParseDuration, for the durations a document holds

namespace starling::store {

using Json = nlohmann::json;

inline constexpr std::array<std::string_view, 9> kSections = {"roles",  "packages", "services", "nodes", "policy",
                                                              "switches", "freeze", "voters",   "agent"};

// Parses YAML or JSON text. The top level must be a mapping. YAML scalars follow the YAML 1.2 core schema
// (plain true/false, integers incl. 0x/0o, floats, null/~ are typed; anything quoted stays a string); the
// standard !!str/!!int/!!float/!!bool/!!null tags are honoured and other tags refused. Text that opens with
// '{' followed by '"' or '}' is JSON and gets a strict JSON parser (so JSON escapes such as surrogate pairs
// work and broken JSON is not rescued by YAML's leniency); "{key: ...}" is YAML flow style. Refused, as
// kInvalidArgument "line L, column C: <what>" (1-based): syntax errors, duplicate keys in one mapping (naming
// the key), non-scalar keys, invalid UTF-8, infinite/NaN or out-of-range numbers, more than one document, and
// alias expansions past a size limit. A non-mapping top level (including empty text) gives "the document must
// be a mapping of sections".
Result<Json> ParseDocument(std::string_view text);

// Checks a whole document against the desired-state shape. On failure: kInvalidArgument whose message lists
// every problem found, one per line, each starting with the path of the offending item
// ("packages.web.version: malformed version '1..2'"). Order is stable: unknown sections first, then sections
// in kSections order, items by name, fields in a fixed order within an item.
Status ValidateDocument(const Json& doc);

// Apply-time values. A service parameter may hold ${NAME} (an identifier, no '.'): a value the operator gives
// when applying (`starling apply -f FILE --set NAME=VALUE`). FillSettings substitutes `values` into the
// params of doc's services; the result is what gets stored, so a value is part of the revision (history,
// diff and rollback see it). kInvalidArgument names a setting that is not an identifier, is not valid UTF-8,
// is longer than 4096 bytes, contains "${", or that no parameter uses (and leaves `doc` as it was). A ${NAME}
// left without a value is refused by ValidateDocument ("${NAME} has no value: give one when applying, with --set NAME=VALUE").
Status FillSettings(Json& doc, const std::map<std::string, std::string>& values);

// Every service dependency edge (service -> a service it depends on, from ${service.output} references in its
// params and from its `after` list), sorted and without duplicates. Meant for valid documents; on an invalid
// one it lists whatever well-formed edges it finds.
std::vector<std::pair<std::string, std::string>> ServiceEdges(const Json& doc);

// Service params may hold secrets (a DB_PASSWORD). HideParams replaces the value of every param of every
// service with kHiddenParam, for what is shown to anyone who did not ask for the values: HTTP always,
// `starling get` without --show-params. ValidateDocument refuses kHiddenParam as a value, so a hidden copy
// applied back cannot overwrite the real values.
inline constexpr std::string_view kHiddenParam = "(hidden: starling get --show-params)";
Json HideParams(Json doc);

// Block-style YAML that ParseDocument reads back to the same Json. Keys come out sorted; strings are left
// plain only when they are unmistakably strings, otherwise double-quoted with escapes. Strings must be valid
// UTF-8 (anything ParseDocument produced is).
std::string ToYaml(const Json& doc);

// The one canonical serialization used for hashing: compact JSON, object keys sorted, no insignificant
// whitespace, UTF-8 left unescaped. (Invalid UTF-8, which ParseDocument never produces, is replaced by U+FFFD
// rather than throwing.)
std::string CanonicalJson(const Json& doc);

// A difference between two documents. Objects present on both sides are recursed into (path segments joined
// with '.'); anything else (arrays, scalars, or a key present on one side only) is reported whole, so adding
// a package is one "added" change at "packages.<name>" carrying the whole package. Values compare by their
// canonical JSON, so 1 and 1.0 differ. A null document counts as an empty mapping (Diff(nullptr, doc) lists
// every section as added). `before` is null Json when added, `after` is null Json when removed.
struct Change {
  std::string path;
  std::string kind;  // "added", "removed" or "changed"
  Json before, after;
};
// Sorted by path.
std::vector<Change> Diff(const Json& from, const Json& to);
// Diff as replies carry it: [{"path", "kind", "before", "after"}, ...].
Json DiffJson(const Json& from, const Json& to);

// The desired state is stored as independent objects so that concurrent writers touching different things do
// not overwrite each other: map sections are split per item ("packages/<name>", "services/<name>",
// "nodes/<name>") and the other sections are one object each ("roles", "policy", "switches", "freeze",
// "voters"). JoinObjects(SplitObjects(d)) == d for any valid d, except that an empty map section (`packages:
// {}`) yields no objects and so is dropped by the round trip; it means the same as an absent one. On an
// invalid document a map section that is not a mapping is kept whole under its section name, and JoinObjects
// lets per-item objects win over such a value.
std::map<std::string, Json> SplitObjects(const Json& doc);
Json JoinObjects(const std::map<std::string, Json>& objects);

// Whether `object_key` belongs to a section that `doc` names: a key "<section>" or "<section>/<anything>"
// where <section> is one of kSections and present in `doc`. Used to compute deletions when a document
// replaces the sections it names (an absent section is left alone; a present one replaces all of its
// objects).
bool SectionOwns(const Json& doc, std::string_view object_key);

// One field of a document that may not be valid yet (an apply's input before it is validated, an object a
// peer wrote): absent, not an object, or a field of another type reads as false or the fallback, where
// Json::value would throw on the type.
bool TrueAt(const Json& obj, std::string_view key);
std::string TextAt(const Json& obj, std::string_view key, std::string_view fallback = {});

}  // namespace starling::store

// How commands print: human tables by default, the daemon's JSON as it is
// with `--format json`.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "schema/api.capnp.h"
#include "starling/api_json.h"

namespace starling::cli {

using json = nlohmann::json;

// Everything the CLI writes to stdout and stderr goes through text::Printable
// line by line (std::cout and std::cerr are wrapped; nothing here uses
// stdio), so that what members, hooks and peers wrote (a tag, a hook's
// output, an artifact version, an error naming them) cannot drive the
// reader's terminal. JSON is unchanged by it: its writer escapes them first.
// Call once, first thing in main.
void MakeOutputPrintable();

// Columns padded to their widest cell, two spaces apart, like `serf members`.
void PrintTable(const std::vector<std::vector<std::string>>& rows);

// `--format json`: indented by two, one trailing newline.
void PrintJson(const json& value);

using api_json::TagMap;

// key=value,key=value in key order, as one table cell.
std::string TagText(const std::map<std::string, std::string>& tags);

// A whole value on one line, for a line of a diff: a string as it is
// (JSON-quoted when it holds a line break), anything else as compact JSON.
std::string OneLine(const json& value);
// A diff (store::Diff as JSON), one line per change with whole values:
// + added, - removed, ~ changed. `full`: each change as a unified diff of
// its values, indented, one value line per line (for big sections).
void PrintDiff(const json& changes, bool full = false);

// Prints the result of a desired-state write (apply, rollback, freeze,
// lifecycle, voters); warnings go to stderr. Returns the exit code.
int PrintWrite(const json& r, const std::string& format);

}  // namespace starling::cli

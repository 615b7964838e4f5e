// What `starling` says when the command line itself is wrong: a mistyped
// command gets the nearest real one, every usage error one stable exit code.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

namespace starling::cli {

// Prints what is wrong with `args` (argv without the program name) for the
// error `e` that app.parse threw, and returns the exit code: 0 for --help and
// --version (CLI11 prints those), kExitUsage for everything else.
int ReportParseError(const CLI::App& app, const CLI::ParseError& e, const std::vector<std::string>& args);

}  // namespace starling::cli

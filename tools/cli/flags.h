// Flags that several commands share in the same shape.
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <utility>
#include <vector>

namespace starling::cli {

// Adds `--format` with its choices and shows the default in the help.
CLI::Option* AddFormatOption(CLI::App& cmd, std::string& format,
                             std::vector<std::string> choices = {"table", "json"},
                             const std::string& help = "Output format");

// Checks that a flag's value is an ECMAScript regular expression (after the
// first '=' when `after_eq`, for KEY=REGEX): a bad one is a usage error,
// named before anything is asked.
CLI::Validator RegexCheck(bool after_eq);

// Every key=value of a repeatable flag. Throws CLI::ValidationError for the
// first bad one, so that, thrown from a callback, it fails the command as a
// usage error like a flag that fails its check.
std::vector<std::pair<std::string, std::string>> SplitTags(const std::vector<std::string>& texts,
                                                           const char* flag);

}  // namespace starling::cli

#include "flags.h"

#include <regex>

#include "starling/status.h"

namespace starling::cli {
namespace {

Result<std::pair<std::string, std::string>> SplitTag(const std::string& text, const char* flag) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return Status::InvalidArgument(std::string(flag) + " '" + text +
                                   "' must be key=value with a non-empty key");
  }
  return std::make_pair(text.substr(0, eq), text.substr(eq + 1));
}

}  // namespace

CLI::Option* AddFormatOption(CLI::App& cmd, std::string& format, std::vector<std::string> choices,
                             const std::string& help) {
  return cmd.add_option("--format", format, help)
      ->check(CLI::IsMember(std::move(choices)))
      ->capture_default_str();
}

std::vector<std::pair<std::string, std::string>> SplitTags(const std::vector<std::string>& texts,
                                                           const char* flag) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& t : texts) {
    auto kv = SplitTag(t, flag);
    if (!kv.ok()) throw CLI::ValidationError(kv.status().message());
    out.push_back(*kv);
  }
  return out;
}

CLI::Validator RegexCheck(bool after_eq) {
  return CLI::Validator(
      [after_eq](std::string& text) -> std::string {
        const std::string re = after_eq && text.find('=') != std::string::npos ? text.substr(text.find('=') + 1) : text;
        try {
          std::regex check(re, std::regex::ECMAScript);
        } catch (const std::regex_error& e) {
          return "'" + re + "' is not a regular expression: " + e.what();
        }
        return "";
      },
      "REGEX");
}

}  // namespace starling::cli

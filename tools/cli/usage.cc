#include "usage.h"

#include <algorithm>
#include <iostream>

#include "call.h"
#include "starling/text.h"

namespace starling::cli {
namespace {

std::vector<std::string> SubcommandNames(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; })) names.push_back(sub->get_name());
  return names;
}

std::string Joined(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

// "starling keys": the command path shown in messages.
std::string PathOf(const CLI::App& app) {
  std::string path = app.get_name();
  for (const CLI::App* p = app.get_parent(); p != nullptr; p = p->get_parent()) path = p->get_name() + " " + path;
  return path;
}

// Follows the words of the command line down the command tree, as CLI11
// does: the command they stop at, and the first word that names no command
// where one was expected (empty when every word did).
struct Walk {
  const CLI::App* at;
  std::string unknown;
};

Walk WalkCommands(const CLI::App& app, const std::vector<std::string>& args) {
  Walk w{&app, ""};
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& word = args[i];
    if (word == "--") break;
    if (word.size() > 1 && word[0] == '-') {
      // An option that takes a value takes the next word too, unless given as --name=value.
      if (word.find('=') != std::string::npos) continue;
      const CLI::Option* opt = w.at->get_option_no_throw(word);
      if (opt != nullptr && opt->get_expected_max() > 0) ++i;
      continue;
    }
    if (w.at->get_subcommands([](const CLI::App*) { return true; }).empty()) break;
    const CLI::App* sub = nullptr;
    for (const CLI::App* s : w.at->get_subcommands([](const CLI::App*) { return true; }))
      if (s->check_name(word)) sub = s;
    if (sub == nullptr) {
      w.unknown = word;
      break;
    }
    w.at = sub;
  }
  return w;
}

}  // namespace

int ReportParseError(const CLI::App& app, const CLI::ParseError& e, const std::vector<std::string>& args) {
  if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return app.exit(e);
  const Walk w = WalkCommands(app, args);
  const std::string path = PathOf(*w.at);
  if (!w.unknown.empty()) {
    const std::string near = text::NearestName(w.unknown, SubcommandNames(*w.at));
    std::cerr << "starling: unknown command \"" << w.unknown << "\""
              << (w.at == &app ? "" : " for \"" + path + "\"")
              << (near.empty() ? "" : " (did you mean " + near + "?)") << "\n"
              << "Run '" << path << " --help' for the commands.\n";
    return kExitUsage;
  }
  const std::vector<std::string> subs = SubcommandNames(*w.at);
  if (!subs.empty() && w.at->get_require_subcommand_min() > 0 && dynamic_cast<const CLI::RequiredError*>(&e)) {
    std::cerr << "starling: " << (w.at == &app ? "a command is required" : "\"" + path + "\" needs a command")
              << ": " << Joined(subs) << "\n"
              << "Run '" << path << " --help' for what each does.\n";
    return kExitUsage;
  }
  std::cerr << "starling: " << e.what() << "\n"
            << "Run '" << path << " --help' for its options.\n";
  return kExitUsage;
}

const char* ExitCodesText() {
  return "Exit codes (stable; scripts may rely on them):\n"
         "  0   done (also --help and --version)\n"
         "  1   starlingd refused or failed the request, a member did not do its part of a `keys` command,\n"
         "      or the command failed here (a file it cannot read); the reason is on stderr\n"
         "  2   starlingd could not be reached, did not answer in time, or answered garbage\n"
         "  3   `rollout status --watch`: the rollout failed or was reverted\n"
         "  4   `rollout status --watch`: the rollout ended incomplete (nodes down or failed are not on it)\n"
         "  64  the command line is wrong: an unknown command or flag, a missing or invalid argument\n"
         "      (nothing was asked of the daemon)";
}

}  // namespace starling::cli

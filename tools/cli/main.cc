// starling: the command-line client of the local starlingd.
//
// Exit codes: call.h (kExit*), listed at the end of `starling --help`.
//
// This file holds the global options; the subcommands live in cmd_*.cc.
#include <CLI/CLI.hpp>

#include "commands.h"
#include "output.h"
#include "schema/api.capnp.h"
#include "starling/version.h"
#include "usage.h"

namespace starling::cli {
namespace {

int Main(int argc, char** argv) {
  MakeOutputPrintable();
  CLI::App app{"starling: talk to the local starlingd over its Unix socket.", "starling"};
  app.require_subcommand(1);
  app.set_version_flag("--version", VersionLine("starling", "api", api::API_VERSION, api::API_VERSION),
                       "Print the release, the build (commit) and the local API version spoken, and exit");
  Context ctx;
  app.add_option("--socket", ctx.globals.socket, "The daemon's API socket")
      ->envname("STARLING_SOCKET")
      ->capture_default_str();
  app.add_option("--socket-owner", ctx.globals.socket_owner,
                 "The user starlingd runs as (name or uid), when neither root, you, nor the `starling` system "
                 "user the package runs it as: the CLI talks to no socket served by anyone else")
      ->envname("STARLING_SOCKET_OWNER");
  app.add_option("--timeout", ctx.globals.timeout_seconds, "Seconds to wait for the daemon's reply")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();

  // `starling --help` lists the subcommands in the order they are added.
  AddMembershipCommands(app, ctx);  // members join leave force-leave tags info
  AddStateCommands(app, ctx);       // apply get history diff rollback
  AddLifecycleCommands(app, ctx);   // lease nodes freeze unfreeze commission decommission
  AddRolloutCommands(app, ctx);     // rollout
  AddMonitorCommand(app, ctx);      // monitor
  AddEventCommands(app, ctx);       // event query reachability rtt
  AddKeyCommands(app, ctx);         // keys keygen
  AddArtifactCommands(app, ctx);    // artifact
  AddGraphCommand(app, ctx);        // graph
  AddVotersCommand(app, ctx);       // voters
  AddAgentCommands(app, ctx);       // agent
  AddUiCommands(app, ctx);          // ui
  // After the subcommands, which would copy it into their own --help.
  app.footer(ExitCodesText());

  // The command runs from its callback during parse() and leaves its exit
  // code in ctx.
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return ReportParseError(app, e, std::vector<std::string>(argv + 1, argv + argc));
  }
  return ctx.exit_code;
}

}  // namespace
}  // namespace starling::cli

int main(int argc, char** argv) { return starling::cli::Main(argc, argv); }

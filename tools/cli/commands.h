// The groups of `starling` subcommands. Each Add*Commands function adds its
// subcommands to the app in the order `starling --help` lists them; main
// calls the groups in that order too.
#pragma once

#include <CLI/CLI.hpp>

#include "call.h"

namespace starling::cli {

// What every callback shares with main: the global options, parsed before
// any callback runs, and the exit code the command that ran leaves behind.
struct Context {
  Globals globals;
  int exit_code = kExitOk;
};

// cmd_members.cc: members, join, leave, force-leave, tags, info.
void AddMembershipCommands(CLI::App& app, Context& ctx);
// cmd_members.cc: monitor.
void AddMonitorCommand(CLI::App& app, Context& ctx);

// cmd_events.cc: event, query, reachability, rtt.
void AddEventCommands(CLI::App& app, Context& ctx);

// cmd_state.cc: apply, get, history, diff, rollback.
void AddStateCommands(CLI::App& app, Context& ctx);
// cmd_state.cc: graph.
void AddGraphCommand(CLI::App& app, Context& ctx);

// cmd_rollout.cc: lease, nodes, freeze, unfreeze, commission, decommission.
void AddLifecycleCommands(CLI::App& app, Context& ctx);
// cmd_rollout.cc: rollout start|status|pause|resume|abort.
void AddRolloutCommands(CLI::App& app, Context& ctx);
// cmd_rollout.cc: voters.
void AddVotersCommand(CLI::App& app, Context& ctx);

// cmd_ops.cc: keys list|install|use|remove, keygen.
void AddKeyCommands(CLI::App& app, Context& ctx);
// cmd_ops.cc: artifact add|ls.
void AddArtifactCommands(CLI::App& app, Context& ctx);
// cmd_ops.cc: what `artifact add FILE` does, its reply in `out`; the exit code.
int AddArtifactFile(Context& ctx, const std::string& file, const std::string& name, const std::string& version,
                    nlohmann::json* out);
// cmd_state.cc: ui token|url.
void AddUiCommands(CLI::App& app, Context& ctx);
// cmd_agent.cc: agent upgrade|status.
void AddAgentCommands(CLI::App& app, Context& ctx);

}  // namespace starling::cli

// The coordinator's work: the lease that elects it (lease, voters), which
// nodes take part (nodes, commission, decommission, freeze, unfreeze), and
// rolling a revision out across them (rollout).
#include <chrono>
#include <ctime>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "call.h"
#include "commands.h"
#include "flags.h"
#include "output.h"

namespace starling::cli {
namespace {

void PrintLease(const json& v) {
  std::string voters;
  for (const auto& n : v.value("voters", json::array()))
    voters += (voters.empty() ? "" : ", ") + n.get<std::string>();
  PrintTable(
      {{"holder:", v["holder"].is_string() ? v["holder"].get<std::string>() : "(none)"},
       {"ballot:", std::to_string(v.value("ballot", 0))},
       {"expires in:", std::to_string(v.value("expires_in_ms", 0)) + " ms"},
       {"voters:", voters.empty() ? "(not chosen yet)" : voters},
       {"quarantined:", v.value("quarantined", false) ? "yes (restarted within one lease period)" : "no"}});
}

void AddLease(CLI::App& app, Context& ctx) {
  auto format = std::make_shared<std::string>("table");
  CLI::App* cmd = app.add_subcommand(
      "lease",
      "Show the coordinator lease: who holds it (as this node knows), its ballot, time left, the voters");
  AddFormatOption(*cmd, *format);
  cmd->callback([&ctx, format] {
    ctx.exit_code = StateCall(
        ctx.globals, [](api::Request::Builder r) { r.setLease(); },
        [&](const json& v) {
          if (*format == "json") {
            PrintJson(v);
          } else {
            PrintLease(v);
          }
          return kExitOk;
        });
  });
}

// A cell of `nodes`: "-" for what is not known yet.
std::string NodeCell(const json& v) {
  if (v.is_null()) return std::string("-");
  if (v.is_boolean()) return std::string(v.get<bool>() ? "yes" : "no");
  std::string s = v.get<std::string>();
  return s.empty() ? std::string("-") : s;
}

void PrintNodes(const json& rows) {
  std::vector<std::vector<std::string>> table = {
      {"NAME", "LIFECYCLE", "STATUS", "VERSION", "APPLIED", "HEALTHY", "PHASE"}};
  for (const auto& r : rows)
    table.push_back({r.value("name", ""), r.value("lifecycle", ""), r.value("status", ""), NodeCell(r["version"]),
                     NodeCell(r["applied_revision"]), NodeCell(r["healthy"]), NodeCell(r["phase"])});
  PrintTable(table);
}

void AddNodes(CLI::App& app, Context& ctx) {
  auto format = std::make_shared<std::string>("table");
  CLI::App* cmd = app.add_subcommand(
      "nodes",
      "List every node (members and nodes the desired state names) with its lifecycle (discovered, "
      "commissioned, upgrading, decommissioned), membership status, applied revision and health");
  AddFormatOption(*cmd, *format);
  cmd->callback([&ctx, format] {
    ctx.exit_code = StateCall(
        ctx.globals, [](api::Request::Builder r) { r.setNodes(); },
        [&](const json& rows) {
          if (*format == "json") {
            PrintJson(rows);
          } else {
            PrintNodes(rows);
          }
          return kExitOk;
        });
  });
}

void AddFreeze(CLI::App& app, Context& ctx) {
  auto reason = std::make_shared<std::string>();
  CLI::App* freeze = app.add_subcommand(
      "freeze",
      "Stop new rollouts and lifecycle changes cluster-wide; they are refused with the reason until "
      "unfreeze");
  freeze->add_option("--reason", *reason, "Why (shown to whoever is refused)")->required();
  freeze->callback([&ctx, reason] {
    ctx.exit_code = StateCall(
        ctx.globals, [&](api::Request::Builder r) { r.setFreeze(*reason); },
        [](const json& r) { return PrintWrite(r, "table"); });
  });
  CLI::App* unfreeze = app.add_subcommand("unfreeze", "Lift a freeze");
  unfreeze->callback([&ctx] {
    ctx.exit_code = StateCall(
        ctx.globals, [](api::Request::Builder r) { r.setUnfreeze(); },
        [](const json& r) { return PrintWrite(r, "table"); });
  });
}

void AddCommission(CLI::App& app, Context& ctx) {
  for (const char* to : {"commissioned", "decommissioned"}) {
    auto nodes = std::make_shared<std::vector<std::string>>();
    auto force = std::make_shared<bool>(false);
    const std::string verb = std::string(to) == "commissioned" ? "commission" : "decommission";
    CLI::App* cmd = app.add_subcommand(
        verb, verb == "commission"
                  ? "Commission nodes (one change for the batch): they take part in rollouts"
                  : "Decommission nodes (one change for the batch): out of rollouts and of the lease voters");
    cmd->add_option("node", *nodes, "Node names")->required();
    cmd->add_flag("--force", *force, "Accept names that are no member yet (nodes that have not joined)");
    cmd->callback([&ctx, nodes, to, force] {
      ctx.exit_code = StateCall(
          ctx.globals,
          [&](api::Request::Builder r) {
            r.setForce(*force);
            auto l = r.initLifecycle();
            auto list = l.initNodes(static_cast<unsigned>(nodes->size()));
            for (unsigned i = 0; i < nodes->size(); ++i) list.set(i, (*nodes)[i]);
            l.setTo(to);
          },
          [](const json& r) { return PrintWrite(r, "table"); });
    });
  }
}

// `rollout status` as a heading and a table of nodes.
void PrintRollout(const json& r) {
  std::string state = r.value("state", "");
  if (state == "idle") {
    std::cout << "no rollout yet";
  } else {
    std::cout << "rollout " << r.value("id", 0) << " of revision " << r.value("revision", "") << ": "
              << state;
    if (r.value("reverting", false))
      std::cout << (state == "reverted" ? " (back on " : " (reverting to ") << r.value("from", "") << ")";
    std::string batch;
    for (const auto& n : r.value("batch", json::array()))
      batch += (batch.empty() ? "" : ", ") + n.get<std::string>();
    if (!batch.empty()) std::cout << "; batch " << r.value("batch_no", 0) << ": " << batch;
    std::string only;
    for (const auto& n : r.value("only", json::array())) only += (only.empty() ? "" : ", ") + n.get<std::string>();
    if (!only.empty()) std::cout << "; only on " << only;
  }
  if (r.contains("requested"))
    std::cout << "; requested: revision " << r["requested"].value("revision", "")
              << " (waiting for the coordinator)";
  std::cout << "\n";
  if (!r.value("reason", "").empty()) std::cout << "  " << r.value("reason", "") << "\n";
  std::vector<std::vector<std::string>> table = {{"NAME", "PHASE", "APPLIED", "HEALTHY", "AGENT", "DETAIL"}};
  for (const auto& n : r.value("nodes", json::array())) {
    std::string applied = n.value("applied_revision", "");
    std::string detail = n.value("detail", "");
    if (detail.size() > 60) detail = detail.substr(0, 57) + "...";
    table.push_back({n.value("name", ""), n.value("phase", ""), applied.empty() ? "-" : applied,
                     n.value("healthy", false) ? "yes" : "no", n.value("agent_phase", ""), detail});
  }
  if (table.size() > 1) PrintTable(table);
}

// One line of `rollout status --watch`: the state and every node's phase.
std::string RolloutLine(const json& r) {
  std::ostringstream out;
  out << r.value("state", "");
  if (r.value("reverting", false)) out << " (revert to " << r.value("from", "") << ")";
  if (r.contains("requested")) out << " (requested " << r["requested"].value("revision", "") << ")";
  if (!r.value("batch", json::array()).empty()) out << ", batch " << r.value("batch_no", 0);
  out << ":";
  for (const auto& n : r.value("nodes", json::array())) {
    out << " " << n.value("name", "") << "=" << n.value("phase", "");
    std::string agent = n.value("agent_phase", "");
    if (!agent.empty() && agent != "idle") out << "(" << agent << ")";
  }
  return out.str();
}

// `rollout start --dry-run`: the changes, then the batches.
void PrintPlan(const json& r) {
  const std::string revision = r.value("revision", ""), current = r.value("current", "");
  std::cout << "rollout of revision " << revision
            << (revision == current ? " (the current one)" : " (not the current one, " + current + "; needs --yes)")
            << ", nothing started\n";
  std::cout << "changes against the desired state:\n";
  PrintDiff(r.value("diff", json::array()));
  int n = 0;
  for (const auto& b : r.value("batches", json::array())) {
    std::string names;
    for (const auto& name : b) names += (names.empty() ? "" : ", ") + name.get<std::string>();
    std::cout << "batch " << ++n << ": " << names << "\n";
  }
  if (n == 0) std::cout << "no node has anything to change\n";
  for (const char* key : {"unchanged", "down"}) {
    std::string names;
    for (const auto& name : r.value(key, json::array())) names += (names.empty() ? "" : ", ") + name.get<std::string>();
    if (!names.empty())
      std::cout << (std::string(key) == "down" ? "down, not batched: " : "nothing to change: ") << names << "\n";
  }
}

void AddRolloutStart(CLI::App& rollout, Context& ctx) {
  struct Options {
    std::string revision, format = "table", batch;
    std::vector<std::string> nodes;
    bool yes = false, dry_run = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = rollout.add_subcommand(
      "start",
      "Ask the coordinator to roll out a revision (the current one unless --revision). A revision that is not the "
      "current one is refused, with the changes it would make, unless --yes");
  cmd->add_option("--revision", o->revision, "Revision id or unique prefix");
  cmd->add_flag("--yes", o->yes, "Go ahead with a revision that is not the current one");
  cmd->add_flag("--dry-run", o->dry_run,
                "Only show what the start would do: the changes, and the batches if every node stays in service");
  cmd->add_option("--nodes", o->nodes,
                  "Move only these commissioned nodes (comma-separated or repeated); the others keep what they run")
      ->delimiter(',');
  cmd->add_option("--batch", o->batch,
                  "Batch size for this rollout instead of the policy's: a count (2), a percentage (25%) or a ramp "
                  "(1,50%)");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    ctx.exit_code = StateCall(
        ctx.globals,
        [&](api::Request::Builder r) {
          r.setYes(o->yes);
          r.setDryRun(o->dry_run);
          r.setRolloutStart(o->revision);
          auto only = r.initOnly(static_cast<unsigned>(o->nodes.size()));
          for (unsigned i = 0; i < o->nodes.size(); ++i) only.set(i, o->nodes[i]);
          r.setBatch(o->batch);
        },
        [&](const json& r) {
          if (o->format == "json") {
            PrintJson(r);
          } else if (r.value("dry_run", false)) {
            PrintPlan(r);
          } else {
            std::string only;
            for (const auto& n : r.value("only", json::array())) only += (only.empty() ? "" : ", ") + n.get<std::string>();
            std::cout << "rollout " << r.value("id", 0) << " of revision " << r.value("revision", "")
                      << (only.empty() ? "" : " on " + only)
                      << " requested; follow it with `starling rollout status --watch`\n";
            for (const auto& w : r.value("warnings", json::array())) std::cerr << "warning: " << w.get<std::string>() << "\n";
          }
          return kExitOk;
        });
  });
}

struct StatusOptions {
  bool watch = false;
  std::string format = "table";
};

// Prints one status reply, unless (watching) it would show what `last`
// showed. Sets `state` to the rollout's state, or to "requested" while a
// request still waits for the coordinator.
int PrintStatus(const json& r, const StatusOptions& o, std::string& last, std::string& state) {
  state = r.value("state", "");
  // Settled only counts once no request waits for the coordinator.
  if (r.contains("requested")) state = "requested";
  const bool settled = state == "succeeded" || state == "incomplete" || state == "failed" || state == "reverted" ||
                       state == "idle";
  const bool line = o.format != "json" && o.watch && !settled;
  // Watching, print only what changed in what is shown.
  std::string shown = line ? RolloutLine(r) : r.dump();
  if (shown == last) return kExitOk;
  last = shown;
  if (o.format == "json") {
    std::cout << (o.watch ? r.dump() : r.dump(2)) << "\n";
  } else if (line) {
    std::time_t now = std::time(nullptr);
    char clock[16];
    std::strftime(clock, sizeof clock, "%H:%M:%S", std::localtime(&now));
    std::cout << clock << "  " << shown << "\n";
  } else {
    PrintRollout(r);
  }
  std::cout.flush();
  return kExitOk;
}

// `rollout status`: once, or with --watch polled until the rollout settles.
int RolloutStatus(const Globals& globals, const StatusOptions& o) {
  std::string last;
  for (;;) {
    std::string state;
    const int code = StateCall(
        globals, [](api::Request::Builder r) { r.setRolloutStatus(); },
        [&](const json& r) { return PrintStatus(r, o, last, state); });
    if (!o.watch || code != kExitOk) return code;
    if (state == "succeeded" || state == "idle") return kExitOk;
    if (state == "failed" || state == "reverted") return kExitRolloutFailed;
    if (state == "incomplete") return kExitRolloutIncomplete;
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
  }
}

void AddRolloutStatus(CLI::App& rollout, Context& ctx) {
  auto o = std::make_shared<StatusOptions>();
  CLI::App* cmd = rollout.add_subcommand(
      "status",
      "Show the rollout: its state (idle, running, paused, succeeded, incomplete, failed, reverted), revision "
      "and every node's phase. incomplete: it ran through, but nodes that were down or failed are not on the "
      "revision. With --watch, print each change until the rollout settles; the exit status is then 0 for "
      "succeeded, 3 for failed or reverted and 4 for incomplete");
  cmd->add_flag("--watch", o->watch, "Follow the rollout until it settles");
  AddFormatOption(*cmd, o->format, {"table", "json"},
                  "Output format (with --watch: one JSON object per line)");
  cmd->callback([&ctx, o] { ctx.exit_code = RolloutStatus(ctx.globals, *o); });
}

void AddRolloutControl(CLI::App& rollout, Context& ctx) {
  for (const char* action : {"pause", "resume", "abort"}) {
    CLI::App* cmd = rollout.add_subcommand(
        action, std::string(action) == "pause"    ? "Start no new batch (the batch in flight finishes)"
                : std::string(action) == "resume" ? "Continue a paused rollout"
                                                  : "End the rollout now as failed, without reverting");
    cmd->callback([&ctx, action] {
      ctx.exit_code = StateCall(
          ctx.globals, [&](api::Request::Builder r) { r.setRolloutControl(action); },
          [action](const json& r) {
            std::cout << action << ": rollout " << r.value("id", 0) << "\n";
            return kExitOk;
          });
    });
  }
}

// "a,b,,c" -> a, b, c: empty names are dropped.
std::vector<std::string> SplitNames(const std::string& text) {
  std::vector<std::string> names;
  for (size_t start = 0; start <= text.size();) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    if (comma > start) names.push_back(text.substr(start, comma - start));
    start = comma + 1;
  }
  return names;
}

}  // namespace

void AddLifecycleCommands(CLI::App& app, Context& ctx) {
  AddLease(app, ctx);
  AddNodes(app, ctx);
  AddFreeze(app, ctx);
  AddCommission(app, ctx);
}

void AddRolloutCommands(CLI::App& app, Context& ctx) {
  CLI::App* rollout = app.add_subcommand(
      "rollout",
      "Roll a revision out across the commissioned nodes, batch by batch, health-gated (see README)");
  rollout->require_subcommand(1);
  AddRolloutStart(*rollout, ctx);
  AddRolloutStatus(*rollout, ctx);
  AddRolloutControl(*rollout, ctx);
}

void AddVotersCommand(CLI::App& app, Context& ctx) {
  auto force_set = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand(
      "voters",
      "Override the lease voters. Only for when a majority of voters is lost at once: the new set must not "
      "leave two groups of nodes that each believe in a different set, or two coordinators can run at once");
  cmd->add_option("--force-set", *force_set, "The new voters, comma-separated node names (1 to 5)")
      ->required();
  auto force = std::make_shared<bool>(false);
  cmd->add_flag("--force", *force, "Accept names that are no member yet (nodes that have not joined)");
  cmd->callback([&ctx, force_set, force] {
    const std::vector<std::string> names = SplitNames(*force_set);
    ctx.exit_code = StateCall(
        ctx.globals,
        [&](api::Request::Builder r) {
          r.setForce(*force);
          auto list = r.initVotersForceSet(static_cast<unsigned>(names.size()));
          for (unsigned i = 0; i < names.size(); ++i) list.set(i, names[i]);
        },
        [](const json& r) { return PrintWrite(r, "table"); });
  });
}

}  // namespace starling::cli

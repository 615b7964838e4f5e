// Membership commands: who is in the cluster, joining and leaving it, this
// node's tags and identity, and its event stream.
#include <algorithm>
#include <iostream>
#include <memory>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "call.h"
#include "commands.h"
#include "flags.h"
#include "output.h"
#include "starling/api_json.h"
#include "starling/membership/config.h"

namespace starling::cli {
namespace {

// "2 (1-3)": the version spoken, then the range understood.
std::string ProtocolText(api::Member::Reader m) {
  return std::to_string(m.getProtocolCur()) + " (" + membership::RangeText(m.getProtocolMin(), m.getProtocolMax()) + ")";
}

// Who this node is, what it runs and who coordinates come first; the
// protocol counters only on request (`info --counters`).
void PrintInfoTable(api::Info::Reader info, bool counters) {
  std::vector<std::vector<std::string>> rows = {
      {"name:", info.getName().cStr()},
      {"addr:", info.getAddr().cStr()},
      {"cluster:", info.getCluster().cStr()},
      {"revision:", info.getRevision().size() ? info.getRevision().cStr() : "(none)"},
      {"lease holder:", info.getLeaseHolder().size()
                            ? std::string(info.getLeaseHolder().cStr()) + " (ballot " +
                                  std::to_string(info.getLeaseBallot()) + ")"
                            : "(none)"},
      {"members:", "alive " + std::to_string(info.getMembersAlive()) + ", suspect " +
                       std::to_string(info.getMembersSuspect()) + ", failed " +
                       std::to_string(info.getMembersFailed()) + ", left " +
                       std::to_string(info.getMembersLeft())},
      {"version:", std::string(info.getVersion().cStr()) +
                       (info.getBuild().size() ? " (build " + std::string(info.getBuild().cStr()) + ")" : "")},
      {"protocol:", std::to_string(info.getProtocolVersion()) + " (understands " +
                        membership::RangeText(info.getProtocolMin(), info.getProtocolMax()) + ")"},
      {"profile:", info.getProfile().cStr()},
      {"tags:", TagText(TagMap(info.getTags()))},
      {"digest:", info.getDigest().cStr()},
      {"entries:", std::to_string(info.getEntries())},
      {"incarnation:", std::to_string(info.getIncarnation())},
      {"health score:", std::to_string(info.getHealthScore())},
      {"data dir:", info.getDataDir().cStr()},
      {"http:", info.getHttp().size() ? info.getHttp().cStr() : "(off)"},
      {"uptime:", std::to_string(info.getUptimeSeconds()) + "s"},
  };
  PrintTable(rows);
  if (!counters) return;
  std::cout << "counters:\n";
  std::vector<std::vector<std::string>> table;
  for (auto c : info.getCounters())
    table.push_back({"  " + std::string(c.getName().cStr()), std::to_string(c.getValue())});
  PrintTable(table);
}

void AddMembers(CLI::App& app, Context& ctx) {
  struct Options {
    std::string status, name, format = "table";
    std::vector<std::string> tags;
    bool detailed = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand("members",
                                     "List the members this node knows (itself included) with address, "
                                     "status (alive, suspect, failed, left) "
                                     "and tags");
  cmd->add_option("--status", o->status, "Only members with this status")
      ->check(CLI::IsMember({"alive", "suspect", "failed", "left"}));
  cmd->add_option("--name", o->name, "Only members whose whole name matches this regular expression (as Serf's)")
      ->check(RegexCheck(false));
  cmd->add_option("--tag", o->tags,
                  "Only members with tag KEY whose whole value matches the regular expression after '=' "
                  "(key=value; repeatable, all must match)")
      ->check(RegexCheck(true));
  cmd->add_flag("--detailed", o->detailed,
                "Also show each member's release, the gossip protocol version it speaks and the range it "
                "understands, and its incarnation (the JSON always has them)");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    const auto filters = SplitTags(o->tags, "--tag");
    // Whole matches, as Serf's: `--tag role=web` does not take role=webcache.
    // The flags' checks made sure each compiles.
    std::optional<std::regex> name_re;
    if (!o->name.empty()) name_re.emplace(o->name, std::regex::ECMAScript);
    std::vector<std::pair<std::string, std::regex>> tag_res;
    for (const auto& [key, value] : filters) tag_res.emplace_back(key, std::regex(value, std::regex::ECMAScript));
    ctx.exit_code = Call(
        ctx.globals, [](api::Request::Builder r) { r.setMembers(); },
        [&](api::Reply::Reader reply) {
          if (!reply.isMembers()) return Unexpected();
          json out = json::array();
          std::vector<std::vector<std::string>> rows = {{"NAME", "ADDRESS", "STATUS", "TAGS"}};
          if (o->detailed) rows = {{"NAME", "ADDRESS", "STATUS", "VERSION", "PROTOCOL", "INCARNATION", "TAGS"}};
          for (auto m : reply.getMembers()) {
            std::string status = m.getStatus().cStr();
            if (!o->status.empty() && status != o->status) continue;
            if (name_re && !std::regex_match(std::string(m.getName().cStr()), *name_re)) continue;
            auto tags = TagMap(m.getTags());
            bool match = std::all_of(tag_res.begin(), tag_res.end(), [&](const auto& f) {
              auto it = tags.find(f.first);
              return it != tags.end() && std::regex_match(it->second, f.second);
            });
            if (!match) continue;
            out.push_back(api_json::Member(m));
            if (o->detailed) {
              rows.push_back({m.getName().cStr(), m.getAddr().cStr(), status,
                              m.getVersion().size() ? m.getVersion().cStr() : "-", ProtocolText(m),
                              std::to_string(m.getIncarnation()), TagText(tags)});
            } else {
              rows.push_back({m.getName().cStr(), m.getAddr().cStr(), status, TagText(tags)});
            }
          }
          if (o->format == "json") {
            PrintJson(out);
          } else {
            PrintTable(rows);
          }
          return kExitOk;
        });
  });
}

void AddJoin(CLI::App& app, Context& ctx) {
  auto addrs = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = app.add_subcommand(
      "join", "Join the cluster through one or more members' addresses (HOST or HOST:PORT; the port defaults to "
              "7946, as Serf's does)");
  cmd->add_option("addr", *addrs, "Addresses (HOST[:PORT]) of members to contact")->required();
  cmd->callback([&ctx, addrs] {
    ctx.exit_code = Call(
        ctx.globals,
        [&](api::Request::Builder r) {
          auto list = r.initJoin(static_cast<unsigned>(addrs->size()));
          for (unsigned i = 0; i < addrs->size(); ++i) list.set(i, (*addrs)[i]);
        },
        [](api::Reply::Reader reply) {
          if (!reply.isJoined()) return Unexpected();
          std::cout << "Joined the cluster: " << reply.getJoined() << " node(s) answered\n";
          return kExitOk;
        });
  });
}

void AddLeave(CLI::App& app, Context& ctx) {
  CLI::App* cmd = app.add_subcommand(
      "leave",
      "Leave the cluster gracefully; the daemon announces it, then exits (other members show it `left`)");
  cmd->callback([&ctx] {
    ctx.exit_code = Call(
        ctx.globals, [](api::Request::Builder r) { r.setLeave(); },
        [](api::Reply::Reader) {
          std::cout << "Left the cluster; starlingd is shutting down\n";
          return kExitOk;
        });
  });
}

void AddForceLeave(CLI::App& app, Context& ctx) {
  struct Options {
    std::string name, format = "table";
    bool prune = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "force-leave", "Mark a failed member as left on every node (it stops being reconnected to)");
  cmd->add_option("name", o->name, "The failed member's name")->required();
  cmd->add_flag("--prune", o->prune, "Erase the member from every node's list instead of keeping it as left");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    ctx.exit_code = Call(
        ctx.globals,
        [&](api::Request::Builder r) {
          auto fl = r.initForceLeave();
          fl.setName(o->name);
          fl.setPrune(o->prune);
        },
        [&](api::Reply::Reader reply) {
          // A daemon older than this CLI answers with nothing to show.
          json done = reply.isText() ? json::parse(reply.getText().cStr(), nullptr, false) : json();
          if (!done.is_object()) done = {{"name", o->name}, {"was", ""}, {"now", o->prune ? "pruned" : "left"}};
          if (o->format == "json") {
            PrintJson(done);
            return kExitOk;
          }
          const std::string was = done.value("was", "");
          std::cout << "force-leave: " << done.value("name", o->name) << (was.empty() ? "" : " (was " + was + ")")
                    << (done.value("now", "") == "pruned" ? " erased from the member list"
                                                          : " marked left")
                    << " here; every member hears it by gossip and stops reconnecting to it\n";
          return kExitOk;
        });
  });
}

void AddTags(CLI::App& app, Context& ctx) {
  struct Options {
    std::vector<std::string> set, del;
    std::string format = "table";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "tags", "Show this node's tags, or change them with --set and --delete (gossiped to the cluster)");
  cmd->add_option("--set", o->set, "Set tag key=value (repeatable)");
  cmd->add_option("--delete", o->del, "Delete tag key (repeatable)");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    const auto set = SplitTags(o->set, "--set");
    ctx.exit_code = Call(
        ctx.globals,
        [&](api::Request::Builder r) {
          auto change = r.initTags();
          auto s = change.initSet(static_cast<unsigned>(set.size()));
          for (unsigned i = 0; i < set.size(); ++i) {
            s[i].setKey(set[i].first);
            s[i].setValue(set[i].second);
          }
          auto d = change.initDelete(static_cast<unsigned>(o->del.size()));
          for (unsigned i = 0; i < o->del.size(); ++i) d.set(i, o->del[i]);
        },
        [&](api::Reply::Reader reply) {
          if (!reply.isInfo()) return Unexpected();
          auto current = TagMap(reply.getInfo().getTags());
          if (o->format == "json") {
            PrintJson(json(current));
          } else {
            for (const auto& [k, v] : current) std::cout << k << "=" << v << "\n";
          }
          return kExitOk;
        });
  });
}

void AddInfo(CLI::App& app, Context& ctx) {
  struct Options {
    std::string format = "table";
    bool counters = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "info",
      "Show this node's identity, revision and lease holder, then its release, member counts and health "
      "score; the protocol counters with --counters (the JSON always has them)");
  cmd->add_flag("--counters", o->counters, "Also list the protocol counters (messages, bad packets, ...)");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    ctx.exit_code = Call(
        ctx.globals, [](api::Request::Builder r) { r.setInfo(); },
        [&](api::Reply::Reader reply) {
          if (!reply.isInfo()) return Unexpected();
          if (o->format == "json") {
            PrintJson(api_json::Info(reply.getInfo()));
          } else {
            PrintInfoTable(reply.getInfo(), o->counters);
          }
          return kExitOk;
        });
  });
}

}  // namespace

void AddMembershipCommands(CLI::App& app, Context& ctx) {
  AddMembers(app, ctx);
  AddJoin(app, ctx);
  AddLeave(app, ctx);
  AddForceLeave(app, ctx);
  AddTags(app, ctx);
  AddInfo(app, ctx);
}

void AddMonitorCommand(CLI::App& app, Context& ctx) {
  struct Options {
    std::string level = "info", format = "table";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "monitor", "Stream the daemon's events and log lines until Ctrl-C (or until the daemon goes away)");
  cmd->add_option("--log-level", o->level, "The least severe lines to show")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  AddFormatOption(*cmd, o->format, {"table", "json"},
                  "table: time, level, message; json: one object per line");
  cmd->callback([&ctx, o] {
    ctx.exit_code = StreamCall(
        ctx.globals, [&](api::Request::Builder r) { r.setMonitor(o->level); },
        [&](api::Reply::Reader reply) {
          if (!reply.isText()) return Unexpected();
          // Flushed line by line: whoever watches wants each line as it comes.
          if (o->format == "json") {
            std::cout << reply.getText().cStr() << std::endl;
            return kExitOk;
          }
          json line = json::parse(reply.getText().cStr(), nullptr, false);
          if (!line.is_object()) return Unexpected();
          std::string time = line.value("time", "");
          std::cout << (time.empty() ? std::string(23, ' ') : time) << " " << line.value("level", "") << " "
                    << line.value("msg", "") << std::endl;
          return kExitOk;
        });
  });
}

}  // namespace starling::cli

// starling: the command-line client of the local starlingd.
//
// Exit codes: 0 success; 1 the daemon refused or failed the request (its
// message on stderr); 2 the daemon could not be reached or answered
// garbage; CLI11's own codes for usage errors.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <CLI/CLI.hpp>
#include <climits>
#include <cstdlib>
#include <algorithm>
#include <cstdio>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <iostream>
#include <sstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "api_client.h"
#include "graph_dot.h"
#include "schema/api.capnp.h"
#include "starling/membership/keyring.h"

namespace starling::cli {
namespace {

using json = nlohmann::json;

constexpr int kExitDaemonError = 1;
constexpr int kExitUnreachable = 2;

struct Globals {
  std::string socket = "/var/lib/starling/starlingd.sock";
  double timeout_seconds = 30;
};

int Complain(int code, const std::string& message) {
  std::fprintf(stderr, "starling: %s\n", message.c_str());
  return code;
}

std::vector<uint8_t> BuildRequest(const std::function<void(api::Request::Builder)>& build) {
  capnp::MallocMessageBuilder builder;
  api::Request::Builder request = builder.initRoot<api::Request>();
  request.setVersion(api::API_VERSION);
  build(request);
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

// Hands a non-error reply to `use`; complains about the rest.
int UseReply(const std::vector<uint64_t>& reply, const std::function<int(api::Reply::Reader)>& use) {
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = reply.size() * 2 + 1024;
    capnp::FlatArrayMessageReader reader(
        kj::ArrayPtr<const capnp::word>(reinterpret_cast<const capnp::word*>(reply.data()), reply.size()),
        options);
    api::Reply::Reader r = reader.getRoot<api::Reply>();
    if (r.getError().size() > 0) return Complain(kExitDaemonError, r.getError().cStr());
    return use(r);
  } catch (const kj::Exception& e) {
    return Complain(kExitUnreachable,
                    std::string("malformed reply from starlingd: ") + e.getDescription().cStr());
  }
}

std::chrono::milliseconds TimeoutOf(const Globals& g) {
  return std::chrono::milliseconds(static_cast<int64_t>(g.timeout_seconds * 1000));
}

// Builds a request, exchanges it and hands a non-error reply to `use`.
int Call(const Globals& g, const std::function<void(api::Request::Builder)>& build,
         const std::function<int(api::Reply::Reader)>& use) {
  Result<std::vector<uint64_t>> reply = Exchange(g.socket, BuildRequest(build), TimeoutOf(g));
  if (!reply.ok()) return Complain(kExitUnreachable, reply.status().message());
  return UseReply(*reply, use);
}

// A streamed reply: `use` for every frame until the daemon hangs up or `use`
// returns non-zero.
int StreamCall(const Globals& g, const std::function<void(api::Request::Builder)>& build,
               const std::function<int(api::Reply::Reader)>& use) {
  int code = 0;
  Status s = Stream(g.socket, BuildRequest(build), TimeoutOf(g), [&](std::vector<uint64_t> frame) {
    code = UseReply(frame, use);
    return code == 0;
  });
  if (!s.ok()) return Complain(kExitUnreachable, s.message());
  return code;
}

int Unexpected() { return Complain(kExitUnreachable, "starlingd sent a reply of an unexpected kind"); }

std::map<std::string, std::string> TagMap(capnp::List<api::Tag>::Reader tags) {
  std::map<std::string, std::string> out;
  for (auto t : tags) out[t.getKey().cStr()] = t.getValue().cStr();
  return out;
}

std::string TagText(const std::map<std::string, std::string>& tags) {
  std::string out;
  for (const auto& [k, v] : tags) {
    if (!out.empty()) out += ",";
    out += k + "=" + v;
  }
  return out;
}

Result<std::pair<std::string, std::string>> SplitTag(const std::string& text, const char* flag) {
  size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return Status::InvalidArgument(std::string(flag) + " '" + text +
                                   "' must be key=value with a non-empty key");
  }
  return std::make_pair(text.substr(0, eq), text.substr(eq + 1));
}

// Every key=value of a repeatable flag; the first bad one fails the command.
std::vector<std::pair<std::string, std::string>> SplitTags(const std::vector<std::string>& texts, const char* flag) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const std::string& t : texts) {
    auto kv = SplitTag(t, flag);
    if (!kv.ok()) throw CLI::ValidationError(kv.status().message());
    out.push_back(*kv);
  }
  return out;
}

// Columns padded to their widest cell, two spaces apart, like `serf members`.
void PrintTable(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::cout << line << "\n";
  }
}

json InfoJson(api::Info::Reader info) {
  json counters = json::object();
  for (auto c : info.getCounters()) counters[c.getName().cStr()] = c.getValue();
  return json{
      {"name", info.getName().cStr()},
      {"addr", info.getAddr().cStr()},
      {"cluster", info.getCluster().cStr()},
      {"profile", info.getProfile().cStr()},
      {"incarnation", info.getIncarnation()},
      {"health_score", info.getHealthScore()},
      {"protocol_version", info.getProtocolVersion()},
      {"version", info.getVersion().cStr()},
      {"members",
       {{"alive", info.getMembersAlive()},
        {"suspect", info.getMembersSuspect()},
        {"failed", info.getMembersFailed()},
        {"left", info.getMembersLeft()}}},
      {"counters", counters},
      {"tags", TagMap(info.getTags())},
      {"data_dir", info.getDataDir().cStr()},
      {"uptime_seconds", info.getUptimeSeconds()},
      {"revision", info.getRevision().cStr()},
      {"digest", info.getDigest().cStr()},
      {"entries", info.getEntries()},
      {"lease",
       {{"holder", info.getLeaseHolder().size() ? json(info.getLeaseHolder().cStr()) : json(nullptr)},
        {"ballot", info.getLeaseBallot()}}},
      {"http", info.getHttp().cStr()},
  };
}

void PrintInfoTable(api::Info::Reader info) {
  std::vector<std::vector<std::string>> rows = {
      {"name:", info.getName().cStr()},
      {"addr:", info.getAddr().cStr()},
      {"cluster:", info.getCluster().cStr()},
      {"profile:", info.getProfile().cStr()},
      {"version:", info.getVersion().cStr()},
      {"protocol:", std::to_string(info.getProtocolVersion())},
      {"incarnation:", std::to_string(info.getIncarnation())},
      {"health score:", std::to_string(info.getHealthScore())},
      {"members:", "alive " + std::to_string(info.getMembersAlive()) + ", suspect " +
                       std::to_string(info.getMembersSuspect()) + ", failed " +
                       std::to_string(info.getMembersFailed()) + ", left " +
                       std::to_string(info.getMembersLeft())},
      {"tags:", TagText(TagMap(info.getTags()))},
      {"data dir:", info.getDataDir().cStr()},
      {"uptime:", std::to_string(info.getUptimeSeconds()) + "s"},
      {"revision:", info.getRevision().size() ? info.getRevision().cStr() : "(none)"},
      {"digest:", info.getDigest().cStr()},
      {"entries:", std::to_string(info.getEntries())},
      {"lease holder:", info.getLeaseHolder().size()
                            ? std::string(info.getLeaseHolder().cStr()) + " (ballot " +
                                  std::to_string(info.getLeaseBallot()) + ")"
                            : "(none)"},
      {"http:", info.getHttp().size() ? info.getHttp().cStr() : "(off)"},
  };
  PrintTable(rows);
  std::cout << "counters:\n";
  std::vector<std::vector<std::string>> counters;
  for (auto c : info.getCounters())
    counters.push_back({"  " + std::string(c.getName().cStr()), std::to_string(c.getValue())});
  PrintTable(counters);
}

// Reads FILE, or standard input for "-".
Result<std::string> ReadInput(const std::string& path) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) return Status::NotFound("cannot read " + path + ": " + std::strerror(errno));
    in = &file;
  }
  std::ostringstream text;
  text << in->rdbuf();
  if (in->bad()) return Status::IoError("reading " + path + " failed");
  return text.str();
}

// A desired-state reply: JSON text, or an error when the daemon sent
// something else.
Result<json> TextJson(api::Reply::Reader reply) {
  if (!reply.isText()) return Status::Corruption("starlingd sent a reply of an unexpected kind");
  json out = json::parse(reply.getText().cStr(), nullptr, false);
  if (out.is_discarded()) return Status::Corruption("starlingd sent a reply that is not JSON");
  return out;
}

// Prints an apply or rollback result; warnings go to stderr.
int PrintWrite(const json& r, const std::string& format) {
  for (const auto& w : r.value("warnings", json::array()))
    std::fprintf(stderr, "starling: warning: %s\n", w.get<std::string>().c_str());
  if (format == "json") {
    std::cout << r.dump(2) << "\n";
  } else if (!r.value("changed", false)) {
    std::cout << "no change: the desired state already matches revision " << r.value("revision", "") << "\n";
  } else {
    std::string previous = r.value("previous", "");
    std::cout << "revision " << r.value("revision", "") << " (was " << (previous.empty() ? "empty" : previous)
              << "), " << r.value("objects", 0) << " object(s) changed\n";
  }
  return 0;
}

// `rollout status` as a heading and a table of nodes.
void PrintRollout(const json& r) {
  std::string state = r.value("state", "");
  if (state == "idle") {
    std::cout << "no rollout yet";
  } else {
    std::cout << "rollout " << r.value("id", 0) << " of revision " << r.value("revision", "") << ": " << state;
    if (r.value("reverting", false))
      std::cout << (state == "reverted" ? " (back on " : " (reverting to ") << r.value("from", "") << ")";
    std::string batch;
    for (const auto& n : r.value("batch", json::array())) batch += (batch.empty() ? "" : ", ") + n.get<std::string>();
    if (!batch.empty()) std::cout << "; batch " << r.value("batch_no", 0) << ": " << batch;
  }
  if (r.contains("requested"))
    std::cout << "; requested: revision " << r["requested"].value("revision", "") << " (waiting for the coordinator)";
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

std::string Brief(const json& v) {
  std::string s = v.is_string() ? v.get<std::string>() : v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

}  // namespace
}  // namespace starling::cli

int main(int argc, char** argv) {
  using namespace starling;
  using namespace starling::cli;

  CLI::App app{"starling: talk to the local starlingd over its Unix socket.", "starling"};
  app.require_subcommand(1);
  Globals g;
  app.add_option("--socket", g.socket, "The daemon's API socket")
      ->envname("STARLING_SOCKET")
      ->capture_default_str();
  app.add_option("--timeout", g.timeout_seconds, "Seconds to wait for the daemon's reply")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  const std::vector<std::string> kFormats = {"table", "json"};
  int code = 0;

  // members
  std::string members_status, members_format = "table";
  std::vector<std::string> members_tags;
  CLI::App* members = app.add_subcommand("members",
                                         "List the members this node knows (itself included) with address, "
                                         "status (alive, suspect, failed, left) "
                                         "and tags");
  members->add_option("--status", members_status, "Only members with this status")
      ->check(CLI::IsMember({"alive", "suspect", "failed", "left"}));
  members->add_option("--tag", members_tags, "Only members with tag key=value (repeatable; all must match)");
  members->add_option("--format", members_format, "Output format")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  members->callback([&] {
    const auto filters = SplitTags(members_tags, "--tag");
    code = Call(
        g, [](api::Request::Builder r) { r.setMembers(); },
        [&](api::Reply::Reader reply) {
          if (!reply.isMembers()) return Unexpected();
          json out = json::array();
          std::vector<std::vector<std::string>> rows = {{"NAME", "ADDRESS", "STATUS", "TAGS"}};
          for (auto m : reply.getMembers()) {
            std::string status = m.getStatus().cStr();
            if (!members_status.empty() && status != members_status) continue;
            auto tags = TagMap(m.getTags());
            bool match = std::all_of(filters.begin(), filters.end(), [&](const auto& f) {
              auto it = tags.find(f.first);
              return it != tags.end() && it->second == f.second;
            });
            if (!match) continue;
            out.push_back({{"name", m.getName().cStr()},
                           {"addr", m.getAddr().cStr()},
                           {"status", status},
                           {"tags", tags},
                           {"incarnation", m.getIncarnation()},
                           {"protocol", {{"min", m.getProtocolMin()}, {"max", m.getProtocolMax()}}}});
            rows.push_back({m.getName().cStr(), m.getAddr().cStr(), status, TagText(tags)});
          }
          if (members_format == "json") {
            std::cout << out.dump(2) << "\n";
          } else {
            PrintTable(rows);
          }
          return 0;
        });
  });

  // join
  std::vector<std::string> join_addrs;
  CLI::App* join =
      app.add_subcommand("join", "Join the cluster through one or more members' HOST:PORT addresses");
  join->add_option("addr", join_addrs, "Addresses (HOST:PORT) of members to contact")->required();
  join->callback([&] {
    code = Call(
        g,
        [&](api::Request::Builder r) {
          auto list = r.initJoin(static_cast<unsigned>(join_addrs.size()));
          for (unsigned i = 0; i < join_addrs.size(); ++i) list.set(i, join_addrs[i]);
        },
        [](api::Reply::Reader reply) {
          if (!reply.isJoined()) return Unexpected();
          std::cout << "Joined the cluster: " << reply.getJoined() << " node(s) answered\n";
          return 0;
        });
  });

  // leave
  CLI::App* leave = app.add_subcommand(
      "leave",
      "Leave the cluster gracefully; the daemon announces it, then exits (other members show it `left`)");
  leave->callback([&] {
    code = Call(
        g, [](api::Request::Builder r) { r.setLeave(); },
        [](api::Reply::Reader) {
          std::cout << "Left the cluster; starlingd is shutting down\n";
          return 0;
        });
  });

  // force-leave
  std::string fl_name;
  bool fl_prune = false;
  CLI::App* force_leave = app.add_subcommand(
      "force-leave", "Mark a failed member as left on every node (it stops being reconnected to)");
  force_leave->add_option("name", fl_name, "The failed member's name")->required();
  force_leave->add_flag("--prune", fl_prune,
                        "Erase the member from every node's list instead of keeping it as left");
  force_leave->callback([&] {
    code = Call(
        g,
        [&](api::Request::Builder r) {
          auto fl = r.initForceLeave();
          fl.setName(fl_name);
          fl.setPrune(fl_prune);
        },
        [](api::Reply::Reader) { return 0; });
  });

  // tags
  std::vector<std::string> tag_set, tag_delete;
  std::string tags_format = "table";
  CLI::App* tags = app.add_subcommand(
      "tags", "Show this node's tags, or change them with --set and --delete (gossiped to the cluster)");
  tags->add_option("--set", tag_set, "Set tag key=value (repeatable)");
  tags->add_option("--delete", tag_delete, "Delete tag key (repeatable)");
  tags->add_option("--format", tags_format, "Output format")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  tags->callback([&] {
    const auto set = SplitTags(tag_set, "--set");
    code = Call(
        g,
        [&](api::Request::Builder r) {
          auto change = r.initTags();
          auto s = change.initSet(static_cast<unsigned>(set.size()));
          for (unsigned i = 0; i < set.size(); ++i) {
            s[i].setKey(set[i].first);
            s[i].setValue(set[i].second);
          }
          auto d = change.initDelete(static_cast<unsigned>(tag_delete.size()));
          for (unsigned i = 0; i < tag_delete.size(); ++i) d.set(i, tag_delete[i]);
        },
        [&](api::Reply::Reader reply) {
          if (!reply.isInfo()) return Unexpected();
          auto current = TagMap(reply.getInfo().getTags());
          if (tags_format == "json") {
            std::cout << json(current).dump(2) << "\n";
          } else {
            for (const auto& [k, v] : current) std::cout << k << "=" << v << "\n";
          }
          return 0;
        });
  });

  // info
  std::string info_format = "table";
  CLI::App* info = app.add_subcommand(
      "info",
      "Show this node's identity, cluster, profile, member counts, health score and protocol counters");
  info->add_option("--format", info_format, "Output format")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  info->callback([&] {
    code = Call(
        g, [](api::Request::Builder r) { r.setInfo(); },
        [&](api::Reply::Reader reply) {
          if (!reply.isInfo()) return Unexpected();
          if (info_format == "json") {
            std::cout << InfoJson(reply.getInfo()).dump(2) << "\n";
          } else {
            PrintInfoTable(reply.getInfo());
          }
          return 0;
        });
  });

  // Desired-state commands share one shape: build a request, then print the
  // JSON reply as a table or as it is.
  auto state_call = [&](const std::function<void(api::Request::Builder)>& build,
                        const std::function<int(const json&)>& print) {
    code = Call(g, build, [&](api::Reply::Reader reply) {
      auto r = TextJson(reply);
      if (!r.ok()) return Complain(kExitUnreachable, r.status().message());
      return print(*r);
    });
  };

  // apply
  std::string apply_file, apply_base, apply_format = "table";
  CLI::App* apply = app.add_subcommand(
      "apply",
      "Change the desired state from a YAML or JSON document: its sections replace the same sections of the "
      "current state (a section set to null is removed), the rest stays. Prints the new revision; durable on "
      "this node before it returns, then gossiped to every node");
  apply->add_option("-f,--file", apply_file, "The document (- for standard input)")->required();
  apply->add_option("--base", apply_base,
                    "The revision you edited: warns when another change landed since (the change still applies)");
  std::vector<std::string> apply_settings;
  apply->add_option("--set", apply_settings,
                    "A value given now for ${NAME} in service params: NAME=VALUE (repeatable). The value becomes "
                    "part of the stored revision");
  apply->add_option("--format", apply_format, "Output format")->check(CLI::IsMember(kFormats))->capture_default_str();
  apply->callback([&] {
    const auto settings = SplitTags(apply_settings, "--set");
    auto text = ReadInput(apply_file);
    if (!text.ok()) {
      code = Complain(kExitDaemonError, "apply: " + text.status().message());
      return;
    }
    state_call(
        [&](api::Request::Builder r) {
          auto a = r.initApply();
          a.setDocument(*text);
          a.setSource(apply_file == "-" ? "standard input" : apply_file);
          a.setBase(apply_base);
          auto list = a.initSettings(static_cast<unsigned>(settings.size()));
          for (unsigned i = 0; i < settings.size(); ++i) {
            list[i].setKey(settings[i].first);
            list[i].setValue(settings[i].second);
          }
        },
        [&](const json& r) { return PrintWrite(r, apply_format); });
  });

  // get
  std::string get_revision, get_format = "yaml";
  CLI::App* get = app.add_subcommand("get", "Print the desired state (the current revision unless --revision)");
  get->add_option("--revision", get_revision, "A revision id or unique prefix (at least 4 hex digits)");
  get->add_option("--format", get_format, "Output format")
      ->check(CLI::IsMember({"yaml", "json"}))
      ->capture_default_str();
  get->callback([&] {
    code = Call(
        g,
        [&](api::Request::Builder r) {
          auto q = r.initGet();
          q.setRevision(get_revision);
          q.setFormat(get_format);
        },
        [](api::Reply::Reader reply) {
          if (!reply.isText()) return Unexpected();
          std::cout << reply.getText().cStr();
          return 0;
        });
  });

  // history
  std::string history_format = "table";
  CLI::App* history = app.add_subcommand(
      "history",
      "List the desired-state changes in order, oldest first, with the revision each made; a change that lost "
      "to a concurrent one is marked in CONFLICT");
  history->add_option("--format", history_format, "Output format")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  history->callback([&] {
    state_call([](api::Request::Builder r) { r.setHistory(); },
               [&](const json& rows) {
                 if (history_format == "json") {
                   std::cout << rows.dump(2) << "\n";
                   return 0;
                 }
                 std::vector<std::vector<std::string>> table = {{"", "REVISION", "TIME", "ORIGIN", "NOTE", "CONFLICT"}};
                 for (const auto& row : rows) {
                   std::string rev = row.value("revision", "");
                   if (!row.value("changed", true)) rev = "(no change)";
                   table.push_back({row.value("current", false) ? "*" : "", rev, row.value("time", ""),
                                    row.value("origin", "") + "#" + std::to_string(row.value("seq", 0)),
                                    row.value("note", ""), row.value("conflict", "")});
                 }
                 PrintTable(table);
                 return 0;
               });
  });

  // diff
  std::string diff_from, diff_to, diff_format = "table";
  CLI::App* diff = app.add_subcommand("diff", "Show what changed between two revisions (R2 defaults to the current)");
  diff->add_option("r1", diff_from, "The older revision")->required();
  diff->add_option("r2", diff_to, "The newer revision");
  diff->add_option("--format", diff_format, "Output format")->check(CLI::IsMember(kFormats))->capture_default_str();
  diff->callback([&] {
    state_call(
        [&](api::Request::Builder r) {
          auto d = r.initDiff();
          d.setFrom(diff_from);
          d.setTo(diff_to);
        },
        [&](const json& changes) {
          if (diff_format == "json") {
            std::cout << changes.dump(2) << "\n";
            return 0;
          }
          if (changes.empty()) std::cout << "no differences\n";
          for (const auto& c : changes) {
            const std::string kind = c.value("kind", "");
            const std::string path = c.value("path", "");
            if (kind == "added") {
              std::cout << "+ " << path << ": " << Brief(c["after"]) << "\n";
            } else if (kind == "removed") {
              std::cout << "- " << path << ": " << Brief(c["before"]) << "\n";
            } else {
              std::cout << "~ " << path << ": " << Brief(c["before"]) << " -> " << Brief(c["after"]) << "\n";
            }
          }
          return 0;
        });
  });

  // rollback
  std::string rollback_to, rollback_format = "table";
  CLI::App* rollback = app.add_subcommand(
      "rollback",
      "Write a new revision whose content equals an earlier one (by default the revision before the current)");
  rollback->add_option("--to", rollback_to, "The revision to return to");
  rollback->add_option("--format", rollback_format, "Output format")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  rollback->callback([&] {
    state_call([&](api::Request::Builder r) { r.initRollback().setTo(rollback_to); },
               [&](const json& r) {
                 if (rollback_format != "json") std::cout << "rolled back to the content of " << r.value("to", "") << ": ";
                 return PrintWrite(r, rollback_format);
               });
  });

  // lease
  std::string lease_format = "table";
  CLI::App* lease = app.add_subcommand(
      "lease", "Show the coordinator lease: who holds it (as this node knows), its ballot, time left, the voters");
  lease->add_option("--format", lease_format, "Output format")->check(CLI::IsMember(kFormats))->capture_default_str();
  lease->callback([&] {
    state_call([](api::Request::Builder r) { r.setLease(); },
               [&](const json& v) {
                 if (lease_format == "json") {
                   std::cout << v.dump(2) << "\n";
                   return 0;
                 }
                 std::string voters;
                 for (const auto& n : v.value("voters", json::array())) voters += (voters.empty() ? "" : ", ") + n.get<std::string>();
                 PrintTable({{"holder:", v["holder"].is_string() ? v["holder"].get<std::string>() : "(none)"},
                             {"ballot:", std::to_string(v.value("ballot", 0))},
                             {"expires in:", std::to_string(v.value("expires_in_ms", 0)) + " ms"},
                             {"voters:", voters.empty() ? "(not chosen yet)" : voters},
                             {"quarantined:", v.value("quarantined", false) ? "yes (restarted within one lease period)" : "no"}});
                 return 0;
               });
  });

  // nodes
  std::string nodes_format = "table";
  CLI::App* nodes = app.add_subcommand(
      "nodes",
      "List every node (members and nodes the desired state names) with its lifecycle (discovered, "
      "commissioned, upgrading, decommissioned), membership status, applied revision and health");
  nodes->add_option("--format", nodes_format, "Output format")->check(CLI::IsMember(kFormats))->capture_default_str();
  nodes->callback([&] {
    state_call([](api::Request::Builder r) { r.setNodes(); },
               [&](const json& rows) {
                 if (nodes_format == "json") {
                   std::cout << rows.dump(2) << "\n";
                   return 0;
                 }
                 std::vector<std::vector<std::string>> table = {
                     {"NAME", "LIFECYCLE", "STATUS", "APPLIED", "HEALTHY", "PHASE"}};
                 auto text = [](const json& v) {
                   if (v.is_null()) return std::string("-");
                   if (v.is_boolean()) return std::string(v.get<bool>() ? "yes" : "no");
                   std::string s = v.get<std::string>();
                   return s.empty() ? std::string("-") : s;
                 };
                 for (const auto& r : rows)
                   table.push_back({r.value("name", ""), r.value("lifecycle", ""), r.value("status", ""),
                                    text(r["applied_revision"]), text(r["healthy"]), text(r["phase"])});
                 PrintTable(table);
                 return 0;
               });
  });

  // freeze / unfreeze
  std::string freeze_reason;
  CLI::App* freeze = app.add_subcommand(
      "freeze", "Stop new rollouts and lifecycle changes cluster-wide; they are refused with the reason until unfreeze");
  freeze->add_option("--reason", freeze_reason, "Why (shown to whoever is refused)")->required();
  freeze->callback([&] {
    state_call([&](api::Request::Builder r) { r.setFreeze(freeze_reason); },
               [](const json& r) { return PrintWrite(r, "table"); });
  });
  CLI::App* unfreeze = app.add_subcommand("unfreeze", "Lift a freeze");
  unfreeze->callback([&] {
    state_call([](api::Request::Builder r) { r.setUnfreeze(); }, [](const json& r) { return PrintWrite(r, "table"); });
  });

  // commission / decommission
  std::vector<std::string> lifecycle_nodes;
  for (const char* to : {"commissioned", "decommissioned"}) {
    const std::string verb = std::string(to) == "commissioned" ? "commission" : "decommission";
    CLI::App* cmd = app.add_subcommand(
        verb, verb == "commission"
                  ? "Commission nodes (one change for the batch): they take part in rollouts"
                  : "Decommission nodes (one change for the batch): out of rollouts and of the lease voters");
    cmd->add_option("node", lifecycle_nodes, "Node names")->required();
    cmd->callback([&, to] {
      state_call(
          [&](api::Request::Builder r) {
            auto l = r.initLifecycle();
            auto list = l.initNodes(static_cast<unsigned>(lifecycle_nodes.size()));
            for (unsigned i = 0; i < lifecycle_nodes.size(); ++i) list.set(i, lifecycle_nodes[i]);
            l.setTo(to);
          },
          [](const json& r) { return PrintWrite(r, "table"); });
    });
  }

  // rollout
  CLI::App* rollout = app.add_subcommand(
      "rollout", "Roll a revision out across the commissioned nodes, batch by batch, health-gated (see README)");
  rollout->require_subcommand(1);
  std::string rollout_revision, rollout_format = "table";
  CLI::App* rollout_start = rollout->add_subcommand(
      "start", "Ask the coordinator to roll out a revision (the current one unless --revision)");
  rollout_start->add_option("--revision", rollout_revision, "Revision id or unique prefix");
  rollout_start->add_option("--format", rollout_format, "Output format")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  rollout_start->callback([&] {
    state_call([&](api::Request::Builder r) { r.setRolloutStart(rollout_revision); },
               [&](const json& r) {
                 if (rollout_format == "json") {
                   std::cout << r.dump(2) << "\n";
                 } else {
                   std::cout << "rollout " << r.value("id", 0) << " of revision " << r.value("revision", "")
                             << " requested; follow it with `starling rollout status --watch`\n";
                 }
                 return 0;
               });
  });
  bool rollout_watch = false;
  std::string status_format = "table";
  CLI::App* rollout_status = rollout->add_subcommand(
      "status",
      "Show the rollout: its state (idle, running, paused, succeeded, failed, reverted), revision and every "
      "node's phase. With --watch, print each change until the rollout settles; the exit status is then 0 "
      "for succeeded and 3 for failed or reverted");
  rollout_status->add_flag("--watch", rollout_watch, "Follow the rollout until it settles");
  rollout_status->add_option("--format", status_format, "Output format (with --watch: one JSON object per line)")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  rollout_status->callback([&] {
    std::string last;
    for (;;) {
      std::string state;
      state_call([](api::Request::Builder r) { r.setRolloutStatus(); },
                 [&](const json& r) {
                   state = r.value("state", "");
                   // Settled only counts once no request waits for the coordinator.
                   if (r.contains("requested")) state = "requested";
                   const bool settled = state == "succeeded" || state == "failed" || state == "reverted" ||
                                        state == "idle";
                   const bool line = status_format != "json" && rollout_watch && !settled;
                   // Watching, print only what changed in what is shown.
                   std::string shown = line ? RolloutLine(r) : r.dump();
                   if (shown == last) return 0;
                   last = shown;
                   if (status_format == "json") {
                     std::cout << (rollout_watch ? r.dump() : r.dump(2)) << "\n";
                   } else if (line) {
                     std::time_t now = std::time(nullptr);
                     char clock[16];
                     std::strftime(clock, sizeof clock, "%H:%M:%S", std::localtime(&now));
                     std::cout << clock << "  " << shown << "\n";
                   } else {
                     PrintRollout(r);
                   }
                   std::cout.flush();
                   return 0;
                 });
      if (!rollout_watch || code != 0) return;
      if (state == "succeeded" || state == "idle") return;
      if (state == "failed" || state == "reverted") {
        code = 3;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  });
  for (const char* action : {"pause", "resume", "abort"}) {
    CLI::App* cmd = rollout->add_subcommand(
        action, std::string(action) == "pause"    ? "Start no new batch (the batch in flight finishes)"
                : std::string(action) == "resume" ? "Continue a paused rollout"
                                                  : "End the rollout now as failed, without reverting");
    cmd->callback([&, action] {
      state_call([&](api::Request::Builder r) { r.setRolloutControl(action); },
                 [action](const json& r) {
                   std::cout << action << ": rollout " << r.value("id", 0) << "\n";
                   return 0;
                 });
    });
  }

  // monitor
  std::string monitor_level = "info", monitor_format = "table";
  CLI::App* monitor = app.add_subcommand(
      "monitor", "Stream the daemon's events and log lines until Ctrl-C (or until the daemon goes away)");
  monitor->add_option("--log-level", monitor_level, "The least severe lines to show")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  monitor->add_option("--format", monitor_format, "table: time, level, message; json: one object per line")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  monitor->callback([&] {
    code = StreamCall(
        g, [&](api::Request::Builder r) { r.setMonitor(monitor_level); },
        [&](api::Reply::Reader reply) {
          if (!reply.isText()) return Unexpected();
          if (monitor_format == "json") {
            std::cout << reply.getText().cStr() << std::endl;
            return 0;
          }
          json line = json::parse(reply.getText().cStr(), nullptr, false);
          if (!line.is_object()) return Unexpected();
          std::string time = line.value("time", "");
          std::cout << (time.empty() ? std::string(23, ' ') : time) << " " << line.value("level", "") << " "
                    << line.value("msg", "") << std::endl;
          return 0;
        });
  });

  // keys / keygen
  CLI::App* keys = app.add_subcommand(
      "keys",
      "Manage the cluster keys on every live member at once. Rotate without downtime: `install NEW`, then "
      "`use NEW`, then `remove OLD` (see SECURITY.md). Exits 1 when a member did not do it (repeat the "
      "command once it is back: every keys command can be repeated)");
  keys->require_subcommand(1);
  std::string keys_format = "table", keys_key;
  auto keys_call = [&](const std::string& op) {
    state_call(
        [&](api::Request::Builder r) {
          auto k = r.initKeys();
          k.setOp(op);
          k.setKey(keys_key);
        },
        [&](const json& r) {
          const json errors = r.value("errors", json::object());
          if (keys_format == "json") {
            std::cout << r.dump(2) << "\n";
          } else {
            const int members = r.value("members", 0);
            std::cout << op << ": " << r.value("responded", 0) << " of " << members << " members answered\n";
            std::vector<std::vector<std::string>> table = {{"KEY", "MEMBERS", "PRIMARY"}};
            for (const auto& k : r.value("keys", json::array()))
              table.push_back({k.value("key", ""), std::to_string(k.value("members", 0)) + "/" + std::to_string(members),
                               std::to_string(k.value("primary", 0))});
            PrintTable(table);
          }
          for (const auto& [name, why] : errors.items())
            std::fprintf(stderr, "starling: %s: %s\n", name.c_str(), why.get<std::string>().c_str());
          return errors.empty() ? 0 : kExitDaemonError;
        });
  };
  CLI::App* keys_list = keys->add_subcommand(
      "list", "Show every key held in the cluster and how many members hold it, and use it as primary");
  keys_list->add_option("--format", keys_format, "Output format")->check(CLI::IsMember(kFormats))->capture_default_str();
  keys_list->callback([&] { keys_call("list"); });
  for (const char* op : {"install", "use", "remove"}) {
    CLI::App* cmd = keys->add_subcommand(
        op, std::string(op) == "install" ? "Add KEY to every member's keyring (accepted from then on; not yet used)"
            : std::string(op) == "use"   ? "Make KEY, already installed, the key every member encrypts with"
                                         : "Drop KEY from every member's keyring (refused where it is primary)");
    cmd->add_option("KEY", keys_key, "The key, base64 of 32 bytes (from `starling keygen`)")->required();
    cmd->add_option("--format", keys_format, "Output format")->check(CLI::IsMember(kFormats))->capture_default_str();
    cmd->callback([&, op] { keys_call(op); });
  }
  CLI::App* keygen = app.add_subcommand(
      "keygen", "Print a new random cluster key (base64 of 32 bytes) for --encrypt or `keys install`");
  keygen->callback([&] { std::cout << membership::Keyring::FormatKey(membership::Keyring::Generate()) << "\n"; });

  // artifact
  CLI::App* artifact = app.add_subcommand(
      "artifact",
      "Package files, distributed peer to peer: stored by SHA-256 in each node's data dir, fetched in chunks from "
      "every node that has them, checked against the digest, handed to install hooks as STARLING_ARTIFACT_PATH");
  artifact->require_subcommand(1);
  std::string artifact_file, artifact_name, artifact_version, artifact_format = "table";
  CLI::App* artifact_add = artifact->add_subcommand(
      "add",
      "Store FILE on this node and announce it; prints its digest, for a package's `artifact:`. The daemon reads "
      "the file, so it must be readable by the daemon's user; waits up to 10 min (or --timeout) for the copy");
  artifact_add->add_option("FILE", artifact_file, "The file")->required()->check(CLI::ExistingFile);
  artifact_add->add_option("--name", artifact_name, "A name for people (default: the file's name)");
  artifact_add->add_option("--version", artifact_version, "A version for people");
  artifact_add->add_option("--format", artifact_format, "Output format")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  artifact_add->callback([&] {
    // The daemon copies and hashes the whole file before it answers.
    g.timeout_seconds = std::max(g.timeout_seconds, 600.0);
    char resolved[PATH_MAX];
    if (!realpath(artifact_file.c_str(), resolved)) {
      code = Complain(kExitDaemonError, "artifact add: " + artifact_file + ": " + std::strerror(errno));
      return;
    }
    state_call(
        [&](api::Request::Builder r) {
          auto a = r.initArtifact();
          a.setOp("add");
          a.setPath(resolved);
          a.setName(artifact_name);
          a.setVersion(artifact_version);
        },
        [&](const json& r) {
          if (artifact_format == "json") {
            std::cout << r.dump(2) << "\n";
          } else {
            std::cout << r.value("digest", "") << "  " << r.value("name", "") << " " << r.value("version", "") << "  "
                      << r.value("size", 0) << " bytes, " << r.value("chunks", 0) << " chunks"
                      << (r.value("new", false) ? "" : " (already known)") << "\n";
          }
          return 0;
        });
  });
  CLI::App* artifact_ls = artifact->add_subcommand(
      "ls", "List the artifacts the cluster knows, this node's copy of each and which live members hold it");
  artifact_ls->add_option("--format", artifact_format, "Output format")
      ->check(CLI::IsMember(kFormats))
      ->capture_default_str();
  artifact_ls->callback([&] {
    state_call(
        [&](api::Request::Builder r) { r.initArtifact().setOp("ls"); },
        [&](const json& r) {
          if (artifact_format == "json") {
            std::cout << r.dump(2) << "\n";
            return 0;
          }
          std::vector<std::vector<std::string>> table = {
              {"DIGEST", "NAME", "VERSION", "SIZE", "HERE", "HOLDERS", "REFERENCED"}};
          for (const auto& a : r.value("artifacts", json::array())) {
            const std::string here = a.value("local", "");
            table.push_back({a.value("digest", "").substr(0, 19), a.value("name", ""), a.value("version", ""),
                             std::to_string(a.value("size", uint64_t{0})),
                             here == "partial" ? "partial " + a.value("progress", "") : here,
                             std::to_string(a.value("holders", json::array()).size()),
                             a.value("referenced", false) ? "yes" : "no"});
          }
          PrintTable(table);
          std::cout << "this node served " << r.value("bytes_served", uint64_t{0}) << " bytes, fetched "
                    << r.value("bytes_fetched", uint64_t{0}) << "\n";
          return 0;
        });
  });

  // graph
  std::string graph_format = "dot";
  CLI::App* graph = app.add_subcommand(
      "graph",
      "Draw the services, the nodes they run on and their dependency edges (service -> the service whose "
      "output or start it needs). DOT always; SVG through Graphviz's `dot` when installed: "
      "`starling graph --format svg > graph.svg`");
  graph->add_option("--format", graph_format, "Output format")
      ->check(CLI::IsMember({"dot", "svg", "json"}))
      ->capture_default_str();
  graph->callback([&] {
    state_call([](api::Request::Builder r) { r.setGraph(); },
               [&](const json& g) {
                 if (graph_format == "json") {
                   std::cout << g.dump(2) << "\n";
                   return 0;
                 }
                 const std::string dot = cli::GraphDot(g);
                 if (graph_format == "dot") {
                   std::cout << dot;
                   return 0;
                 }
                 auto svg = cli::DotToSvg(dot);
                 if (!svg.ok()) return Complain(kExitDaemonError, svg.status().message());
                 std::cout << *svg;
                 return 0;
               });
  });

  // voters
  std::string force_set;
  CLI::App* voters = app.add_subcommand(
      "voters",
      "Override the lease voters. Only for when a majority of voters is lost at once: the new set must not "
      "leave two groups of nodes that each believe in a different set, or two coordinators can run at once");
  voters->add_option("--force-set", force_set, "The new voters, comma-separated node names (1 to 5)")->required();
  voters->callback([&] {
    std::vector<std::string> names;
    for (size_t start = 0; start <= force_set.size();) {
      size_t comma = force_set.find(',', start);
      if (comma == std::string::npos) comma = force_set.size();
      if (comma > start) names.push_back(force_set.substr(start, comma - start));
      start = comma + 1;
    }
    state_call(
        [&](api::Request::Builder r) {
          auto list = r.initVotersForceSet(static_cast<unsigned>(names.size()));
          for (unsigned i = 0; i < names.size(); ++i) list.set(i, names[i]);
        },
        [](const json& r) { return PrintWrite(r, "table"); });
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return code;
}

// Serf's integration commands: user events, queries, reachability.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "call.h"
#include "commands.h"
#include "flags.h"
#include "output.h"
#include "starling/store/duration.h"

namespace starling::cli {
namespace {

// The stream's frames are done; the command exits 0 unless it says otherwise.
constexpr int kStreamDone = -1;

void AddEvent(CLI::App& app, Context& ctx) {
  struct Options {
    std::string name, payload, format = "table";
    bool coalesce = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "event",
      "Send a user event to every live member: their event handlers (--event-handler user or user:NAME) get "
      "it, with the payload on stdin, and `starling monitor` shows it. Name and payload are at most 512 bytes");
  cmd->add_option("name", o->name, "The event's name")->required();
  cmd->add_option("payload", o->payload, "What the handlers read on stdin (default: nothing)");
  cmd->add_flag("--coalesce", o->coalesce,
                "Handlers may see only the newest event of this name among several sent close together");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    ctx.exit_code = StateCall(
        ctx.globals,
        [&](api::Request::Builder r) {
          auto e = r.initEvent();
          e.setName(o->name);
          e.setPayload(capnp::Data::Reader(reinterpret_cast<const uint8_t*>(o->payload.data()), o->payload.size()));
          e.setCoalesce(o->coalesce);
        },
        [&](const json& out) {
          if (o->format == "json") {
            PrintJson(out);
          } else {
            std::cout << "event " << out.value("name", "") << " sent at ltime " << out.value("ltime", 0)
                      << (o->coalesce ? " (coalesce)" : "") << "\n";
          }
          return kExitOk;
        });
  });
}

struct QueryOptions {
  std::string name, payload, timeout, format = "table";
  std::vector<std::string> nodes, tags;
  bool no_ack = false;
  int relay_factor = 0;
};

// Sends the query and hands each frame to `frame` (ack, response, done);
// `frame` returns kStreamDone after the summary.
int RunQuery(Context& ctx, const QueryOptions& o, const std::function<int(const json&)>& frame) {
  uint32_t timeout_ms = 0;
  if (!o.timeout.empty()) {
    auto d = store::ParseDuration(o.timeout);
    if (!d.ok()) return Complain(kExitDaemonError, "--timeout: " + d.status().message());
    timeout_ms = static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(*d).count());
  }
  const auto filters = SplitTags(o.tags, "--tag");
  Globals globals = ctx.globals;
  // The first frame may be the summary itself: wait for the whole timeout.
  globals.timeout_seconds = std::max(globals.timeout_seconds, timeout_ms / 1000.0 + 60);
  int code = StreamCall(
      globals,
      [&](api::Request::Builder r) {
        auto q = r.initQuery();
        q.setName(o.name);
        q.setPayload(capnp::Data::Reader(reinterpret_cast<const uint8_t*>(o.payload.data()), o.payload.size()));
        auto nodes = q.initNodes(static_cast<unsigned>(o.nodes.size()));
        for (unsigned i = 0; i < nodes.size(); ++i) nodes.set(i, o.nodes[i]);
        auto tags = q.initTags(static_cast<unsigned>(filters.size()));
        for (unsigned i = 0; i < tags.size(); ++i) {
          tags[i].setKey(filters[i].first);
          tags[i].setValue(filters[i].second);
        }
        q.setTimeoutMs(timeout_ms);
        q.setNoAck(o.no_ack);
        q.setRelayFactor(static_cast<uint8_t>(o.relay_factor));
      },
      [&](api::Reply::Reader reply) {
        if (!reply.isText()) return Unexpected();
        json f = json::parse(reply.getText().cStr(), nullptr, false);
        if (!f.is_object()) return Unexpected();
        return frame(f);
      });
  return code == kStreamDone ? kExitOk : code;
}

void AddQueryOptions(CLI::App& cmd, QueryOptions& o) {
  cmd.add_option("--node", o.nodes, "Only this member answers (repeatable)");
  cmd.add_option("--tag", o.tags,
                 "Only members with tag KEY whose whole value matches the regular expression after '=' answer "
                 "(KEY=REGEX; repeatable, all must match)")
      ->check(RegexCheck(true));
  cmd.add_option("--timeout", o.timeout,
                 "How long to collect answers (e.g. 5s, 500ms; default: 16 gossip intervals times "
                 "log10 of the cluster's size, as Serf's)");
}

void AddQuery(CLI::App& app, Context& ctx) {
  auto o = std::make_shared<QueryOptions>();
  CLI::App* cmd = app.add_subcommand(
      "query",
      "Ask the members a question: those that match the filters ack and hand it to their query handlers "
      "(--event-handler query or query:NAME), whose output is the answer. Acks and answers print as they "
      "arrive, then who acked, who answered and which matching members stayed silent. The query is sent "
      "again at a third and two thirds of the timeout to those not heard from");
  cmd->add_option("name", o->name, "The query's name")->required();
  cmd->add_option("payload", o->payload, "What the handlers read on stdin (default: nothing)");
  AddQueryOptions(*cmd, *o);
  cmd->add_flag("--no-ack", o->no_ack, "Members send no ack, only their answer");
  cmd->add_option("--relay-factor", o->relay_factor,
                  "Each answer also comes back through this many other members (0-5), for lossy paths")
      ->check(CLI::Range(0, 5))
      ->capture_default_str();
  AddFormatOption(*cmd, o->format, {"table", "json"},
                  "table: each ack and answer as it comes, then a summary; json: one object at the end");
  cmd->callback([&ctx, o] {
    json acks = json::array(), responses = json::object();
    ctx.exit_code = RunQuery(ctx, *o, [&](const json& f) {
      const std::string type = f.value("type", "");
      const bool table = o->format != "json";
      if (type == "ack") {
        acks.push_back(f.value("from", ""));
        if (table) std::cout << "ack from " << f.value("from", "") << std::endl;
        return kExitOk;
      }
      if (type == "response") {
        responses[f.value("from", "")] = f.value("payload", "");
        if (table) {
          std::string p = f.value("payload", "");
          while (!p.empty() && p.back() == '\n') p.pop_back();
          std::cout << "response from " << f.value("from", "") << ": " << p << std::endl;
        }
        return kExitOk;
      }
      if (type != "done") return Unexpected();
      if (table) {
        std::cout << "acks: " << f["acked"].size() << ", responses: " << f["answered"].size() << " (of "
                  << f["matched"].size() << " matching members) in " << f.value("timeout_ms", 0) << " ms\n";
        if (!f["silent"].empty()) {
          std::cout << "silent:";
          for (const auto& n : f["silent"]) std::cout << " " << n.get<std::string>();
          std::cout << "\n";
        }
      } else {
        PrintJson({{"name", o->name},
                   {"acks", o->no_ack ? json::array() : acks},
                   {"responses", responses},
                   {"matched", f["matched"]},
                   {"silent", f["silent"]},
                   {"ltime", f["ltime"]},
                   {"timeout_ms", f["timeout_ms"]}});
      }
      return kStreamDone;
    });
  });
}

void AddReachability(CLI::App& app, Context& ctx) {
  struct Options {
    QueryOptions query;
    std::string format = "table";
    bool verbose = false;
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "reachability",
      "Check that every live member can be reached: a query every member acks (no handler runs). Exits 1 "
      "when a member this node sees alive did not ack in time");
  AddQueryOptions(*cmd, o->query);
  cmd->add_flag("--verbose,-v", o->verbose, "Also print each ack as it arrives");
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    o->query.name = "_starling_ping";
    ctx.exit_code = RunQuery(ctx, o->query, [&](const json& f) {
      const std::string type = f.value("type", "");
      if (type == "ack") {
        if (o->verbose && o->format != "json") std::cout << "ack from " << f.value("from", "") << std::endl;
        return kExitOk;
      }
      if (type == "response") return kExitOk;
      if (type != "done") return Unexpected();
      const bool ok = f["silent"].empty();
      if (o->format == "json") {
        PrintJson({{"members", f["matched"].size()},
                   {"acked", f["acked"]},
                   {"unreachable", f["silent"]},
                   {"timeout_ms", f["timeout_ms"]},
                   {"ok", ok}});
      } else {
        std::cout << "live members: " << f["matched"].size() << ", acks: " << f["acked"].size() << " in "
                  << f.value("timeout_ms", 0) << " ms\n";
        if (ok) {
          std::cout << "every live member was reached\n";
        } else {
          std::cout << "not reached:";
          for (const auto& n : f["silent"]) std::cout << " " << n.get<std::string>();
          std::cout << "\n";
        }
      }
      return ok ? kStreamDone : kExitDaemonError;
    });
  });
}

void AddRtt(CLI::App& app, Context& ctx) {
  struct Options {
    std::vector<std::string> names;
    std::string format = "table";
  };
  auto o = std::make_shared<Options>();
  CLI::App* cmd = app.add_subcommand(
      "rtt",
      "Estimate the round trip between this node and member A, or between A and B, from the network "
      "coordinates (Vivaldi, learnt from membership's probes; no packet is sent). A member this node has "
      "not probed yet has no coordinate: try again after a few probe intervals");
  cmd->add_option("members", o->names, "A [B]")->required()->expected(1, 2);
  AddFormatOption(*cmd, o->format);
  cmd->callback([&ctx, o] {
    ctx.exit_code = StateCall(
        ctx.globals,
        [&](api::Request::Builder r) {
          auto names = r.initRtt(static_cast<unsigned>(o->names.size()));
          for (unsigned i = 0; i < names.size(); ++i) names.set(i, o->names[i]);
        },
        [&](const json& out) {
          if (o->format == "json") {
            PrintJson(out);
          } else {
            char ms[32];
            std::snprintf(ms, sizeof ms, "%.3f", out.value("rtt_ms", 0.0));
            std::cout << "Estimated " << out.value("from", "") << " <-> " << out.value("to", "") << " rtt: " << ms
                      << " ms (using " << out.value("profile", "") << " coordinates)\n";
          }
          return kExitOk;
        });
  });
}

}  // namespace

void AddEventCommands(CLI::App& app, Context& ctx) {
  AddEvent(app, ctx);
  AddQuery(app, ctx);
  AddReachability(app, ctx);
  AddRtt(app, ctx);
}

}  // namespace starling::cli

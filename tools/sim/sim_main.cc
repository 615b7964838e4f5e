// starling-sim: runs the real membership code for N simulated nodes on
// virtual time and reports how the protocol scales: how fast a join wave
// converges, per-node load once the cluster is quiet, false failures under
// datagram loss, how fast a crash is detected, and memory per simulated
// node. With --stack every node runs the whole node stack (stack_run.h).
// Same seed, same run.
//
//   starling-sim --nodes 1000 --seed 7 --profile lan [--loss-levels 0.01,0.05] [--format json]
//   starling-sim --stack --nodes 1000 [--hook-time 5 --batch 10%]
#include <malloc.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sim_report.h"
#include "stack_run.h"
#include "starling/sim/simulator.h"

using namespace std::chrono_literals;
using starling::Duration;
using starling::membership::EventType;
using starling::membership::MemberStatus;
using starling::sim::FromSeconds;
using starling::sim::ResidentKb;
using starling::sim::Seconds;
using starling::sim::Views;

namespace {

struct Load {
  double packets = 0, messages = 0, datagram_bytes = 0, stream_bytes = 0;  // per node per second
};

// Messages, not packets: a compound datagram carries several.
uint64_t MessagesSent(starling::sim::Cluster& c) {
  uint64_t sum = 0;
  for (int i = 0; i < c.size(); ++i) {
    if (!c.up(i)) continue;
    for (const auto& [name, value] : c.node(i).counters())
      if (name.rfind("messages_sent.", 0) == 0) sum += value;
  }
  return sum;
}

Load Measure(starling::sim::Cluster& c, Duration window) {
  const auto before = c.net_stats();
  const uint64_t msgs0 = MessagesSent(c);
  c.loop().RunFor(window);
  const auto after = c.net_stats();
  const double per = static_cast<double>(c.size()) * Seconds(window);
  Load l;
  l.packets = static_cast<double>(after.packets_sent - before.packets_sent) / per;
  l.messages = static_cast<double>(MessagesSent(c) - msgs0) / per;
  l.datagram_bytes = static_cast<double>(after.bytes_sent - before.bytes_sent) / per;
  l.stream_bytes = static_cast<double>(after.stream_bytes - before.stream_bytes) / per;
  return l;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Simulate a Starling cluster on virtual time (deterministic for a given --seed)"};
  int nodes = 100;
  uint64_t seed = 1;
  std::string profile = "lan";
  double loss = 0.0;
  std::vector<double> loss_levels = {0.01, 0.05};
  double join_spread_s = 1.0;
  // Long enough for every node to push-pull at least once: the interval
  // grows with log2(N) (300 s at 10,000 nodes in the lan profile).
  double window_s = 300;
  double loss_window_s = 60;
  double max_s = 600;
  bool no_lifeguard = false;
  std::string format = "table";
  app.add_option("--nodes", nodes, "number of simulated nodes")->check(CLI::Range(2, 100000))->capture_default_str();
  app.add_option("--seed", seed, "random seed; the same seed replays the same run")->capture_default_str();
  app.add_option("--profile", profile, "timing profile")
      ->check(CLI::IsMember({"lan", "wan", "local"}))
      ->capture_default_str();
  app.add_option("--loss", loss, "probability of losing each datagram during the join and the load window")
      ->check(CLI::Range(0.0, 0.9));
  app.add_option("--loss-levels", loss_levels,
                 "datagram loss for the false-positive windows, one window each (empty: none)")
      ->delimiter(',')
      ->check(CLI::Range(0.0, 0.9))
      ->capture_default_str();
  app.add_option("--join-spread", join_spread_s, "seconds over which the nodes start and join the seed")
      ->capture_default_str();
  app.add_option("--window", window_s, "virtual seconds of the quiet load window")->capture_default_str();
  app.add_option("--loss-window", loss_window_s, "virtual seconds of each lossy window")->capture_default_str();
  app.add_option("--max-time", max_s, "virtual seconds to wait for each phase")->capture_default_str();
  app.add_flag("--no-lifeguard", no_lifeguard, "turn the Lifeguard refinements off");
  app.add_option("--format", format, "output format")->check(CLI::IsMember({"table", "json"}));
  bool stack = false;
  starling::sim::StackFlags sf;
  app.add_flag("--stack", stack,
               "run every node's whole stack (log, soft state, lease, voters, rollouts, agent), not membership "
               "alone: per-protocol load, a change's propagation, a rollout of every node, lease failover");
  app.add_option("--hook-time", sf.hook_s, "--stack: seconds each node's install hook takes")->capture_default_str();
  app.add_option("--hook-failure-rate", sf.hook_failure_rate, "--stack: chance that an install hook fails")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--min-healthy", sf.min_healthy_s, "--stack: the policy's min_healthy, in seconds")
      ->capture_default_str();
  app.add_option("--batch", sf.batch, "--stack: the policy's batch size (\"10%\", 25)")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::err);
  if (stack) {
    sf.nodes = nodes;
    sf.seed = seed;
    sf.profile = profile;
    sf.join_spread_s = join_spread_s;
    // The whole stack's timers repeat within seconds: a shorter window than
    // membership's push-pull-long one still averages over many rounds.
    sf.window_s = app.count("--window") ? window_s : 120;
    sf.loss_levels = loss_levels;
    sf.loss_window_s = loss_window_s;
    sf.max_s = max_s;
    sf.format = format;
    return starling::sim::RunStack(sf);
  }

  const double rss_before_kb = ResidentKb("VmRSS:");
  const double heap_before_kb = starling::sim::HeapKb();
  starling::membership::Config base;
  base.timing = *starling::membership::ProfileTiming(profile);
  base.lifeguard = !no_lifeguard;
  starling::sim::NetworkOptions net;
  net.loss = loss;
  // Declared before the cluster: its destructor still reports crashes.
  Views views(nodes);
  uint64_t false_failures = 0, false_suspicions = 0;
  std::vector<int> falsely_failed(nodes, 0);
  starling::sim::Cluster c(seed, base, net);
  c.OnEvent([&](int observer, const starling::membership::Event& e) {
    // Names are "n<index>".
    const int member = std::atoi(e.member.name.c_str() + 1);
    if (member < 0 || member >= nodes) return;
    views.On(observer, member, e.type);
    if (c.up(member) && e.type == EventType::kFailed) ++false_failures, falsely_failed[member] = 1;
    if (c.up(member) && e.type == EventType::kSuspect) ++false_suspicions;
  });
  c.OnCrash([&](int i) { views.Forget(i); });

  const double probe_s = Seconds(base.timing.probe_interval);
  const auto wall_start = std::chrono::steady_clock::now();
  for (int i = 0; i < nodes; ++i) c.Add();
  c.Start(0);
  const auto spread = FromSeconds(join_spread_s);
  for (int i = 1; i < nodes; ++i) c.loop().At(c.Now() + spread * i / nodes, [&c, i] { c.StartAndJoin(i, 0); });
  const auto t0 = c.Now();
  c.loop().RunFor(spread);
  const auto max_wait = FromSeconds(max_s);
  const bool joined = c.loop().RunUntil([&] { return views.Converged(c, nodes); }, max_wait, 100ms);
  const Duration join_time = c.Now() - t0;
  // The event-kept views must agree with the memberlists themselves.
  const bool views_agree = !joined || c.Converged();

  // Quiet: the join wave's news has been retransmitted as often as it will be.
  auto queued = [&] {
    uint64_t q = 0;
    for (int i = 0; i < nodes; ++i) q += c.node(i).counters().at("broadcast_queue_depth");
    return q;
  };
  const auto quiet_t0 = c.Now();
  const bool quiet = c.loop().RunUntil([&] { return queued() == 0; }, max_wait, 1s);
  const Duration settle_time = c.Now() - quiet_t0;
  // What the join wave freed goes back to the system before measuring.
  malloc_trim(0);
  const double rss_kb = ResidentKb("VmRSS:");
  const double heap_kb = starling::sim::HeapKb();

  const Duration window = FromSeconds(window_s);
  const Load load = Measure(c, window);
  const uint64_t false_failures_quiet = false_failures;

  nlohmann::json lossy = nlohmann::json::array();
  for (double p : loss_levels) {
    c.SetLoss(p);
    const uint64_t f0 = false_failures, s0 = false_suspicions;
    std::fill(falsely_failed.begin(), falsely_failed.end(), 0);
    const Load l = Measure(c, FromSeconds(loss_window_s));
    int members_hit = 0;
    for (int v : falsely_failed) members_hit += v;
    lossy.push_back({{"loss", p},
                     {"false_failure_events", false_failures - f0},
                     {"members_falsely_failed", members_hit},
                     {"members_falsely_failed_fraction", static_cast<double>(members_hit) / nodes},
                     {"false_suspicion_events", false_suspicions - s0},
                     {"messages_per_node_per_s", l.messages}});
    // Let refutations settle before the next window.
    c.SetLoss(loss);
    c.loop().RunUntil([&] { return views.Converged(c, nodes); }, max_wait, 1s);
  }

  const int victim = nodes / 2;
  c.Crash(victim);
  const auto t1 = c.Now();
  const bool detected = c.loop().RunUntil([&] { return c.AllSee(victim, MemberStatus::kFailed); }, max_wait, 100ms);
  const Duration detect_time = c.Now() - t1;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();

  nlohmann::json out = {
      {"nodes", nodes},
      {"seed", seed},
      {"profile", profile},
      {"loss", loss},
      {"lifeguard", !no_lifeguard},
      {"join_converged", joined && views_agree},
      {"join_convergence_s", Seconds(join_time)},
      {"join_convergence_periods", Seconds(join_time) / probe_s},
      {"join_settle_s", Seconds(settle_time)},
      {"quiet", quiet},
      {"packets_per_node_per_s", load.packets},
      {"messages_per_node_per_s", load.messages},
      {"datagram_bytes_per_node_per_s", load.datagram_bytes},
      {"stream_bytes_per_node_per_s", load.stream_bytes},
      {"bytes_per_node_per_s", load.datagram_bytes + load.stream_bytes},
      {"false_failures_while_quiet", false_failures_quiet},
      {"lossy_windows", lossy},
      {"failure_detected", detected},
      {"failure_detection_s", Seconds(detect_time)},
      {"failure_detection_periods", Seconds(detect_time) / probe_s},
      {"rss_kb_per_node", (rss_kb - rss_before_kb) / nodes},
      {"heap_kb_per_node", (heap_kb - heap_before_kb) / nodes},
      {"peak_rss_kb_per_node", (ResidentKb("VmHWM:") - rss_before_kb) / nodes},
      {"events_run", c.loop().events_run()},
      {"wall_seconds", wall},
  };
  if (format == "json") {
    std::cout << out.dump(2) << "\n";
  } else {
    for (auto& [k, v] : out.items()) std::cout << k << ": " << v.dump() << "\n";
  }
  return joined && views_agree && detected ? 0 : 1;
}

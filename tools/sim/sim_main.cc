// starling-sim: runs the real membership code for N simulated nodes on
// virtual time and reports how fast a join wave converges and how fast a
// crash is detected, with per-node load. Same seed, same run.
//
//   starling-sim --nodes 1000 --seed 7 --profile lan --loss 0.01
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>

#include "starling/sim/simulator.h"

using namespace std::chrono_literals;
using starling::Duration;
using starling::membership::MemberStatus;

namespace {
double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Simulate a Starling cluster on virtual time (deterministic for a given --seed)"};
  int nodes = 100;
  uint64_t seed = 1;
  std::string profile = "lan";
  double loss = 0.0;
  double join_spread_s = 1.0;
  double max_s = 600;
  bool no_lifeguard = false;
  std::string format = "table";
  app.add_option("--nodes", nodes, "number of simulated nodes")->check(CLI::Range(2, 100000));
  app.add_option("--seed", seed, "random seed; the same seed replays the same run");
  app.add_option("--profile", profile, "timing profile")->check(CLI::IsMember({"lan", "wan", "local"}));
  app.add_option("--loss", loss, "probability of losing each datagram")->check(CLI::Range(0.0, 0.9));
  app.add_option("--join-spread", join_spread_s, "seconds over which the nodes start and join the seed");
  app.add_option("--max-time", max_s, "virtual seconds to wait for each phase");
  app.add_flag("--no-lifeguard", no_lifeguard, "turn the Lifeguard refinements off");
  app.add_option("--format", format, "output format")->check(CLI::IsMember({"table", "json"}));
  CLI11_PARSE(app, argc, argv);
  spdlog::set_level(spdlog::level::err);

  starling::membership::Config base;
  base.timing = *starling::membership::ProfileTiming(profile);
  base.lifeguard = !no_lifeguard;
  starling::sim::NetworkOptions net;
  net.loss = loss;
  starling::sim::Cluster c(seed, base, net);
  uint64_t failed_events = 0;
  c.OnEvent([&](int, const starling::membership::Event& e) {
    if (e.type == starling::membership::EventType::kFailed) ++failed_events;
  });

  auto wall_start = std::chrono::steady_clock::now();
  for (int i = 0; i < nodes; ++i) c.Add();
  c.Start(0);
  const auto spread = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(join_spread_s));
  for (int i = 1; i < nodes; ++i) {
    c.loop().At(c.Now() + spread * i / nodes, [&c, i] { c.StartAndJoin(i, 0); });
  }
  const auto t0 = c.Now();
  c.loop().RunFor(spread);
  const auto max_wait = std::chrono::duration_cast<Duration>(std::chrono::duration<double>(max_s));
  bool joined = c.loop().RunUntil([&] { return c.Converged(); }, max_wait, 250ms);
  const Duration join_time = c.Now() - t0;

  // Load over a quiet minute.
  auto before = c.net_stats();
  c.loop().RunFor(60s);
  auto after = c.net_stats();
  const double pkts = static_cast<double>(after.packets_sent - before.packets_sent) / nodes / 60.0;
  const double bytes =
      static_cast<double>(after.bytes_sent - before.bytes_sent + after.stream_bytes - before.stream_bytes) / nodes /
      60.0;
  const uint64_t false_failures = failed_events;

  const int victim = nodes / 2;
  c.Crash(victim);
  const auto t1 = c.Now();
  bool detected = c.loop().RunUntil([&] { return c.AllSee(victim, MemberStatus::kFailed); }, max_wait, 100ms);
  const Duration detect_time = c.Now() - t1;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - wall_start).count();

  nlohmann::json out = {
      {"nodes", nodes},
      {"seed", seed},
      {"profile", profile},
      {"loss", loss},
      {"lifeguard", !no_lifeguard},
      {"join_converged", joined},
      {"join_convergence_s", Seconds(join_time)},
      {"packets_per_node_per_s", pkts},
      {"bytes_per_node_per_s", bytes},
      {"false_failures_while_idle", false_failures},
      {"failure_detected", detected},
      {"failure_detection_s", Seconds(detect_time)},
      {"wall_seconds", wall},
  };
  if (format == "json") {
    std::cout << out.dump(2) << "\n";
  } else {
    for (auto& [k, v] : out.items()) std::cout << k << ": " << v.dump() << "\n";
  }
  return joined && detected ? 0 : 1;
}

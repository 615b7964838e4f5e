// starling-log-bench: how fast a desired-state change reaches a local
// cluster, and what it costs on the wire.
//
// Starts N starlingd on 127.0.0.1 (local timing profile), applies C changes
// on random nodes one after the other, and for each measures the time from
// `apply` returning to every node reporting the new revision (polled over
// each node's API socket, about every millisecond). Bytes per change are the
// cluster's total bytes sent (every daemon's own counters, datagrams and
// streams) during the changes, less the idle rate measured before them.
// Every daemon started is killed by PID on exit.
//
//   starling-log-bench [--nodes 20] [--changes 100] [--starlingd PATH] [--json FILE]
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"

namespace {

using namespace std::chrono_literals;
using SteadyClock = std::chrono::steady_clock;
using starling::api::Reply;
using starling::api::Request;
using starling::bench::Call;
using starling::bench::KillAll;
using starling::bench::Percentile;
using starling::bench::WaitUntil;

struct Node {
  std::string name, dir, socket, addr;
  pid_t pid = -1;
};

struct InfoFacts {
  std::string addr, revision;
  uint32_t alive = 0;
  uint64_t bytes_sent = 0;
};

std::optional<InfoFacts> Info(const Node& n) {
  InfoFacts f;
  bool ok = Call(n.socket, [](Request::Builder r) { r.setInfo(); },
                 [&](Reply::Reader r) {
                   if (!r.isInfo()) return;
                   auto i = r.getInfo();
                   f.addr = i.getAddr().cStr();
                   f.revision = i.getRevision().cStr();
                   f.alive = i.getMembersAlive();
                   for (auto c : i.getCounters()) {
                     std::string name = c.getName().cStr();
                     if (name == "bytes_sent" || name == "stream_bytes_sent") f.bytes_sent += c.getValue();
                   }
                 });
  if (!ok) return std::nullopt;
  return f;
}

pid_t Spawn(const std::string& starlingd, const Node& n, const std::string& join) {
  std::vector<std::string> args = {starlingd,        "--name",      n.name,  "--data-dir", n.dir, "--socket",
                                   n.socket,         "--bind",      "127.0.0.1:0", "--profile", "local",
                                   "--log-level",    "warn",        "--http", "127.0.0.1:0"};
  if (!join.empty()) {
    args.push_back("--join");
    args.push_back(join);
  }
  return starling::bench::Spawn(args, n.dir + ".log");
}


}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Measures desired-state change propagation on a local starlingd cluster", "starling-log-bench"};
  int nodes = 20, changes = 100;
  std::string starlingd = STARLINGD_DEFAULT_PATH, json_out;
  app.add_option("--nodes", nodes, "Daemons to start")->check(CLI::Range(2, 200))->capture_default_str();
  app.add_option("--changes", changes, "Changes to apply, one after the other")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  app.add_option("--starlingd", starlingd, "The daemon binary")->capture_default_str();
  app.add_option("--json", json_out, "Also write the figures as JSON to this file");
  CLI11_PARSE(app, argc, argv);

  char tmpl[] = "/tmp/starling-bench-XXXXXX";
  if (!mkdtemp(tmpl)) {
    std::perror("log-bench: mkdtemp");
    return 1;
  }
  const std::string root = tmpl;
  std::vector<Node> cluster(nodes);
  starling::bench::KillAllOnSignals();
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "log-bench: %s (logs in %s)\n", why.c_str(), root.c_str());
    KillAll();
    return 1;
  };

  for (int i = 0; i < nodes; ++i) {
    cluster[i].name = "n" + std::to_string(i);
    cluster[i].dir = root + "/" + cluster[i].name;
    cluster[i].socket = cluster[i].dir + ".sock";
  }
  cluster[0].pid = Spawn(starlingd, cluster[0], "");
  std::optional<InfoFacts> seed;
  if (!WaitUntil([&] { return (seed = Info(cluster[0])).has_value(); }, 10s)) return fail("n0 did not start");
  cluster[0].addr = seed->addr;
  for (int i = 1; i < nodes; ++i) cluster[i].pid = Spawn(starlingd, cluster[i], cluster[0].addr);
  auto all_see_all = [&] {
    for (const auto& n : cluster) {
      auto f = Info(n);
      if (!f || f->alive != static_cast<uint32_t>(nodes)) return false;
    }
    return true;
  };
  if (!WaitUntil(all_see_all, 60s)) return fail("the cluster did not converge");
  std::printf("%d nodes up and converged\n", nodes);
  // The lease records its voters in the desired state once the member list
  // has settled; measure after that, so that only our changes move it.
  auto settled = [&] {
    auto first = Info(cluster[0]);
    if (!first || first->revision.empty()) return false;
    for (const auto& n : cluster) {
      auto f = Info(n);
      if (!f || f->revision != first->revision) return false;
    }
    return true;
  };
  if (!WaitUntil(settled, 60s)) return fail("the lease voters were not recorded");

  auto total_bytes = [&] {
    uint64_t sum = 0;
    for (const auto& n : cluster)
      if (auto f = Info(n)) sum += f->bytes_sent;
    return sum;
  };
  // Idle traffic (probes, push-pull, anti-entropy) as the baseline.
  std::this_thread::sleep_for(1s);
  const uint64_t idle0 = total_bytes();
  const auto idle_t0 = SteadyClock::now();
  std::this_thread::sleep_for(5s);
  const uint64_t idle1 = total_bytes();
  const double idle_rate = (idle1 - idle0) / std::chrono::duration<double>(SteadyClock::now() - idle_t0).count();

  std::vector<std::string> sockets;
  for (const auto& n : cluster) sockets.push_back(n.socket);
  std::mt19937 rng(12345);
  std::vector<double> ms;
  const uint64_t busy0 = total_bytes();
  const auto busy_t0 = SteadyClock::now();
  for (int k = 0; k < changes; ++k) {
    const Node& writer = cluster[rng() % nodes];
    auto revision = starling::bench::ApplyDocument(writer.socket, k);
    if (!revision) return fail("apply " + std::to_string(k) + " failed");
    const auto t0 = SteadyClock::now();
    const int remaining = nodes - starling::bench::AwaitRevision(sockets, *revision, 60s);
    if (remaining > 0) return fail("change " + std::to_string(k) + " did not reach every node within 60 s");
    ms.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
  }
  const double busy_secs = std::chrono::duration<double>(SteadyClock::now() - busy_t0).count();
  const uint64_t busy1 = total_bytes();
  const double extra = std::max(0.0, (busy1 - busy0) - idle_rate * busy_secs);
  const double per_change = extra / changes;

  std::printf("changes: %d on a %d-node local cluster (apply returning -> every node at the new revision)\n",
              changes, nodes);
  std::printf("  median %.1f ms   p99 %.1f ms   max %.1f ms\n", Percentile(ms, 50), Percentile(ms, 99),
              Percentile(ms, 100));
  std::printf("  bytes sent per change, whole cluster: %.0f (%.0f per node); idle traffic %.0f B/s cluster-wide\n",
              per_change, per_change / nodes, idle_rate);
  if (!json_out.empty()) {
    nlohmann::json j = {{"nodes", nodes},
                        {"changes", changes},
                        {"median_ms", Percentile(ms, 50)},
                        {"p99_ms", Percentile(ms, 99)},
                        {"max_ms", Percentile(ms, 100)},
                        {"bytes_per_change", per_change},
                        {"idle_bytes_per_second", idle_rate}};
    std::ofstream(json_out) << j.dump(2) << "\n";
  }
  KillAll();
  std::error_code ec;
  std::filesystem::remove_all(root, ec);
  return 0;
}

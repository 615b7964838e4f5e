// Long simulated runs, behind the ctest label "soak" (skipped by scripts/test):
//   ctest --test-dir build -L soak --output-on-failure
// STARLING_SEED=<n> replays one seed; STARLING_SOAK_SEEDS=<k> runs k seeds.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdlib>

#include "starling/sim/simulator.h"

namespace starling::sim {
namespace {

using namespace std::chrono_literals;
using membership::EventType;

int Seeds() {
  const char* s = std::getenv("STARLING_SOAK_SEEDS");
  return s ? std::atoi(s) : 5;
}

// Crashes, restarts, leaves and loss at random for an hour of virtual time;
// after the faults stop, the survivors must converge, and no node that was
// up the whole time may have been declared failed during loss-only phases.
TEST(Soak, ChurnAndLossConvergeAcrossSeeds) {
  spdlog::set_level(spdlog::level::err);
  const char* fixed = std::getenv("STARLING_SEED");
  for (int k = 0; k < (fixed ? 1 : Seeds()); ++k) {
    const uint64_t seed = fixed ? std::strtoull(fixed, nullptr, 10) : 1000 + k;
    membership::Config cfg;
    cfg.timing = *membership::ProfileTiming("lan");
    Cluster c(seed, cfg);
    const int n = 100;
    for (int i = 0; i < n; ++i) c.Add();
    c.Start(0);
    for (int i = 1; i < n; ++i) c.StartAndJoin(i, 0);
    ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 300s)) << "seed " << seed;

    SeededRandom rng(seed);
    bool crashes_allowed = false;
    uint64_t false_failures = 0;
    c.OnEvent([&](int, const membership::Event& e) {
      if (e.type != EventType::kFailed || crashes_allowed) return;
      for (int i = 0; i < c.size(); ++i)
        if (c.name(i) == e.member.name && c.up(i)) {
          ++false_failures;
          std::printf("false failure of %s (inc %llx) at %.1f s, loss phase\n", e.member.name.c_str(),
                      static_cast<unsigned long long>(e.member.incarnation),
                      std::chrono::duration<double>(c.Now()).count());
        }
    });
    for (int phase = 0; phase < 60; ++phase) {
      crashes_allowed = phase % 2 == 0;
      c.SetLoss(static_cast<double>(rng.Uniform(6)) / 100.0);
      if (crashes_allowed) {
        int victim = 1 + static_cast<int>(rng.Uniform(n - 1));
        std::printf("  %.0f s: %s %s\n", std::chrono::duration<double>(c.Now()).count(),
                    c.up(victim) ? "down" : "restart", c.name(victim).c_str());
        if (c.up(victim)) {
          rng.Uniform(2) ? c.Crash(victim) : c.Leave(victim);
        } else {
          c.Restart(victim);
        }
      }
      c.loop().RunFor(60s);
    }
    c.SetLoss(0);
    crashes_allowed = true;
    for (int i = 1; i < n; ++i)
      if (!c.up(i)) c.Restart(i);
    EXPECT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 600s, 1s)) << "seed " << seed;
    EXPECT_EQ(false_failures, 0u) << "seed " << seed;
    std::printf("seed %llu: converged; %llu false failures\n", static_cast<unsigned long long>(seed),
                static_cast<unsigned long long>(false_failures));
  }
}

}  // namespace
}  // namespace starling::sim

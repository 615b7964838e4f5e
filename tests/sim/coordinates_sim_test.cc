// Network coordinates on virtual time: with a known latency matrix (nodes on
// a plane), the round trips the coordinates estimate come close to the true
// ones within a minute of probing; garbage coordinates move nothing.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <vector>

#include "starling/membership/coordinate.h"
#include "starling/sim/simulator.h"

namespace starling::membership {
namespace {

using namespace std::chrono_literals;

struct Point {
  double x, y;  // milliseconds
};

// Round trips of 1-100 ms: 1 ms plus the distance on a 70 x 70 ms plane.
double TrueRttMs(const Point& a, const Point& b) { return 1.0 + std::hypot(a.x - b.x, a.y - b.y); }

// Every ordered pair's relative error as node i estimates it (its own
// coordinate and the one it holds for j); the pairs it holds none for are counted apart.
std::vector<double> RelativeErrors(sim::Cluster& c, const std::vector<Point>& at, int* missing) {
  std::vector<double> out;
  *missing = 0;
  for (int i = 0; i < c.size(); ++i)
    for (int j = 0; j < c.size(); ++j) {
      if (i == j) continue;
      auto mine = c.node(i).CoordinateOf(c.name(i));
      auto theirs = c.node(i).CoordinateOf(c.name(j));
      if (!mine || !theirs) {
        ++*missing;
        continue;
      }
      const double est = std::chrono::duration<double, std::milli>(mine->DistanceTo(*theirs)).count();
      const double truth = TrueRttMs(at[i], at[j]);
      out.push_back(std::abs(est - truth) / truth);
    }
  std::sort(out.begin(), out.end());
  return out;
}

TEST(CoordinatesSim, EstimatesComeWithinFifteenPercentOfTheTrueRoundTripsInAMinute) {
  spdlog::set_level(spdlog::level::err);
  constexpr int kNodes = 16;
  sim::Cluster c(sim::SeedOr(2610), sim::ProfileConfig("lan"));
  SeededRandom place(c.seed());
  std::vector<Point> at;
  for (int i = 0; i < kNodes; ++i) {
    at.push_back({static_cast<double>(place.Uniform(7000)) / 100.0, static_cast<double>(place.Uniform(7000)) / 100.0});
    c.Add();
  }
  // One-way: half the round trip, with a little jitter.
  SeededRandom jitter(c.seed() + 1);
  c.SetLatency([&](int from, int to) {
    const double ms = TrueRttMs(at[from], at[to]) / 2.0 * (0.95 + static_cast<double>(jitter.Uniform(100)) / 1000.0);
    return std::chrono::duration_cast<Duration>(std::chrono::duration<double, std::milli>(ms));
  });
  ASSERT_TRUE(c.FormAll(1s));
  const Time formed = c.Now();
  c.loop().RunFor(60s);
  int missing = 0;
  std::vector<double> errors = RelativeErrors(c, at, &missing);
  ASSERT_FALSE(errors.empty());
  const double median = errors[errors.size() / 2];
  const double p90 = errors[errors.size() * 9 / 10];
  std::printf("coordinates: %d nodes on a plane (round trips 1-100 ms), %.0f s after forming: median relative "
              "error %.1f %%, 90th percentile %.1f %%, %d of %d pairs without an estimate yet\n",
              kNodes, std::chrono::duration<double>(c.Now() - formed).count(), 100 * median, 100 * p90, missing,
              kNodes * (kNodes - 1));
  EXPECT_LT(median, 0.15) << "seed " << c.seed();
  EXPECT_LT(missing, kNodes * (kNodes - 1) / 10) << "most pairs should have coordinates after a minute";
}

TEST(Coordinates, GarbageIsRefusedAndTheDistanceIsSymmetric) {
  SeededRandom random(1);
  CoordinateClient client(random);
  LatencySamples a_rtt, b_rtt;
  Coordinate bad;
  bad.vec[0] = std::nan("");
  EXPECT_FALSE(client.Update(a_rtt, bad, 10ms));
  Coordinate far;
  far.vec[3] = 1e9;
  EXPECT_FALSE(client.Update(a_rtt, far, 10ms));
  EXPECT_FALSE(client.Update(a_rtt, Coordinate{}, -1ms));
  EXPECT_FALSE(client.Update(a_rtt, Coordinate{}, 60s));
  EXPECT_EQ(client.rejected(), 4u);
  EXPECT_EQ(client.Self(), Coordinate{});
  // Two clients measuring each other converge on the round trip between them.
  SeededRandom r2(2);
  CoordinateClient other(r2);
  for (int k = 0; k < 200; ++k) {
    Coordinate a = client.Self(), b = other.Self();
    ASSERT_TRUE(client.Update(b_rtt, b, 20ms));
    ASSERT_TRUE(other.Update(a_rtt, a, 20ms));
  }
  const double ab = std::chrono::duration<double, std::milli>(client.Self().DistanceTo(other.Self())).count();
  const double ba = std::chrono::duration<double, std::milli>(other.Self().DistanceTo(client.Self())).count();
  EXPECT_NEAR(ab, 20.0, 2.0);
  EXPECT_DOUBLE_EQ(ab, ba);
}

}  // namespace
}  // namespace starling::membership

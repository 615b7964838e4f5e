// Network coordinates: Vivaldi as Serf runs it (serf/coordinate), from the
// round trips of membership's own probes.
//
// A coordinate is a point in an 8-dimensional Euclidean space plus a height
// (the access link every path from the node shares) and an adjustment (a
// per-node correction for what the space cannot embed); the estimated round
// trip between two nodes is |a - b| + a.height + b.height, plus both
// adjustments when that stays positive. Each direct probe that is acked
// moves this node's coordinate towards or away from the target's (carried
// in the ack) by a force weighted with both nodes' error estimates; the
// samples per peer pass a median filter of the last three; a weak gravity
// pulls the whole cloud towards the origin so it does not drift. The
// constants are Serf's defaults.
//
// A coordinate from the network is untrusted: Valid() bounds every field,
// and an update from an invalid one (or an absurd round trip) is refused.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "starling/env.h"

namespace starling::membership {

inline constexpr size_t kCoordinateDimensions = 8;

struct Coordinate {
  std::array<double, kCoordinateDimensions> vec{};
  double error = 1.5;        // seconds; starts at the maximum
  double adjustment = 0.0;   // seconds
  double height = 10.0e-6;   // seconds; at least HeightMin
  bool operator==(const Coordinate&) const = default;
  // Finite and within bounds that no real network reaches.
  bool Valid() const;
  // The estimated round trip to `other`.
  Duration DistanceTo(const Coordinate& other) const;
};

struct CoordinateConfig {
  double error_max = 1.5;
  double ce = 0.25;  // error weight
  double cc = 0.25;  // position weight
  size_t adjustment_window = 20;
  double height_min = 10.0e-6;
  size_t latency_filter = 3;  // at most kMaxLatencyFilter
  double gravity_rho = 150.0;
};

class CoordinateClient {
 public:
  explicit CoordinateClient(Random& random, CoordinateConfig config = {});

  const Coordinate& Self() const { return coord_; }
  // Takes a round trip to `node`, which reported `theirs`; false (and no
  // change) when either is out of range.
  bool Update(const std::string& node, const Coordinate& theirs, Duration rtt);
  // Drops what was kept about `node` (it left or was reaped).
  void Forget(const std::string& node) { samples_.erase(node); }
  uint64_t rejected() const { return rejected_; }

 private:
  double Filter(const std::string& node, double rtt_seconds);
  void Vivaldi(const Coordinate& other, double rtt_seconds);
  void Adjust(const Coordinate& other, double rtt_seconds);
  void Gravity();
  Coordinate ApplyForce(const Coordinate& c, double force, const Coordinate& other);

  Random& random_;
  CoordinateConfig config_;
  Coordinate coord_;
  Coordinate origin_;
  std::array<double, 64> adjustment_samples_{};
  size_t adjustment_index_ = 0;
  // The last round trips to each member, a ring of latency_filter: a
  // member held costs a few dozen bytes here, not a deque's half kilobyte.
  static constexpr size_t kMaxLatencyFilter = 8;
  struct Samples {
    std::array<double, kMaxLatencyFilter> rtt{};
    uint8_t size = 0, next = 0;
  };
  std::map<std::string, Samples> samples_;
  uint64_t rejected_ = 0;
};

}  // namespace starling::membership

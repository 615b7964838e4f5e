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

// A peer's coordinate as a holder keeps it: in single precision, as the
// wire carries it, and in place (no optional's padding) since every node
// keeps one per member.
struct PackedCoordinate {
  std::array<float, kCoordinateDimensions> vec{};
  float error = 0, adjustment = 0, height = 0;
  bool known = false;
  void Set(const Coordinate& c) {
    for (size_t i = 0; i < vec.size(); ++i) vec[i] = static_cast<float>(c.vec[i]);
    error = static_cast<float>(c.error);
    adjustment = static_cast<float>(c.adjustment);
    height = static_cast<float>(c.height);
    known = true;
  }
  std::optional<Coordinate> Get() const {
    if (!known) return std::nullopt;
    Coordinate c;
    for (size_t i = 0; i < vec.size(); ++i) c.vec[i] = vec[i];
    c.error = error;
    c.adjustment = adjustment;
    c.height = height;
    return c;
  }
};

// The last round trips to one peer, a ring the median filter reads; the
// holder keeps it beside the peer's record, for every member it has probed,
// so the ring holds no more than the filter reads (Serf's is 3 long).
struct LatencySamples {
  static constexpr size_t kMax = 3;
  std::array<float, kMax> rtt{};  // seconds
  uint8_t size = 0, next = 0;
};

struct CoordinateConfig {
  double error_max = 1.5;
  double ce = 0.25;  // error weight
  double cc = 0.25;  // position weight
  size_t adjustment_window = 20;
  double height_min = 10.0e-6;
  size_t latency_filter = 3;  // at most LatencySamples::kMax
  double gravity_rho = 150.0;
};

class CoordinateClient {
 public:
  explicit CoordinateClient(Random& random, CoordinateConfig config = {});

  const Coordinate& Self() const { return coord_; }
  // Takes a round trip to a peer, which reported `theirs`, into its
  // samples; false (and no change) when either is out of range.
  bool Update(LatencySamples& samples, const Coordinate& theirs, Duration rtt);
  uint64_t rejected() const { return rejected_; }

 private:
  double Filter(LatencySamples& s, double rtt_seconds);
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
  uint64_t rejected_ = 0;
};

}  // namespace starling::membership

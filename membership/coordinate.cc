#include "starling/membership/coordinate.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace starling::membership {

namespace {

constexpr double kZero = 1.0e-6;
// Beyond any path on Earth: a coordinate or round trip past these is garbage.
constexpr double kMaxComponent = 10.0;  // seconds
constexpr double kMaxRtt = 10.0;        // seconds

using Vec = std::array<double, kCoordinateDimensions>;

double Magnitude(const Vec& v) {
  double sum = 0;
  for (double x : v) sum += x * x;
  return std::sqrt(sum);
}

Vec Diff(const Vec& a, const Vec& b) {
  Vec out{};
  for (size_t i = 0; i < out.size(); ++i) out[i] = a[i] - b[i];
  return out;
}

double RawDistance(const Coordinate& a, const Coordinate& b) {
  return Magnitude(Diff(a.vec, b.vec)) + a.height + b.height;
}

double Seconds(Duration d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

bool Coordinate::Valid() const {
  auto ok = [](double x, double lo, double hi) { return std::isfinite(x) && x >= lo && x <= hi; };
  for (double x : vec)
    if (!ok(x, -kMaxComponent, kMaxComponent)) return false;
  return ok(error, 0, 10) && ok(adjustment, -kMaxComponent, kMaxComponent) && ok(height, 0, kMaxComponent);
}

Duration Coordinate::DistanceTo(const Coordinate& other) const {
  const double dist = RawDistance(*this, other);
  const double adjusted = dist + adjustment + other.adjustment;
  const double s = adjusted > 0 ? adjusted : dist;
  return std::chrono::duration_cast<Duration>(std::chrono::duration<double>(s));
}

CoordinateClient::CoordinateClient(Random& random, CoordinateConfig config) : random_(random), config_(config) {
  config_.adjustment_window = std::min(config_.adjustment_window, adjustment_samples_.size());
  coord_.error = config_.error_max;
  coord_.height = config_.height_min;
  origin_ = coord_;
}

bool CoordinateClient::Update(LatencySamples& samples, const Coordinate& theirs, Duration rtt) {
  const double seconds = Seconds(rtt);
  if (!theirs.Valid() || !(seconds > 0) || seconds > kMaxRtt) {
    ++rejected_;
    return false;
  }
  const double filtered = Filter(samples, seconds);
  Vivaldi(theirs, filtered);
  Adjust(theirs, filtered);
  Gravity();
  if (!coord_.Valid()) {
    // Cannot happen from valid inputs; if it does, start over rather than spread it.
    ++rejected_;
    coord_ = origin_;
    return false;
  }
  return true;
}

double CoordinateClient::Filter(LatencySamples& s, double rtt_seconds) {
  const size_t keep = std::clamp<size_t>(config_.latency_filter, 1, LatencySamples::kMax);
  s.rtt[s.next] = static_cast<float>(rtt_seconds);
  s.next = static_cast<uint8_t>((s.next + 1) % keep);
  s.size = static_cast<uint8_t>(std::min<size_t>(s.size + 1, keep));
  std::array<float, LatencySamples::kMax> sorted = s.rtt;
  std::sort(sorted.begin(), sorted.begin() + s.size);
  return sorted[s.size / 2];
}

void CoordinateClient::Vivaldi(const Coordinate& other, double rtt) {
  const double dist = Seconds(coord_.DistanceTo(other));
  rtt = std::max(rtt, kZero);
  const double wrongness = std::abs(dist - rtt) / rtt;
  const double total_error = std::max(coord_.error + other.error, kZero);
  const double weight = coord_.error / total_error;
  coord_.error = std::min(config_.error_max, config_.ce * weight * wrongness + coord_.error * (1.0 - config_.ce * weight));
  const double force = config_.cc * weight * (rtt - dist);
  coord_ = ApplyForce(coord_, force, other);
}

void CoordinateClient::Adjust(const Coordinate& other, double rtt) {
  if (config_.adjustment_window == 0) return;
  adjustment_samples_[adjustment_index_] = rtt - RawDistance(coord_, other);
  adjustment_index_ = (adjustment_index_ + 1) % config_.adjustment_window;
  double sum = 0;
  for (size_t i = 0; i < config_.adjustment_window; ++i) sum += adjustment_samples_[i];
  coord_.adjustment = sum / (2.0 * static_cast<double>(config_.adjustment_window));
}

void CoordinateClient::Gravity() {
  const double dist = Seconds(origin_.DistanceTo(coord_));
  const double force = -1.0 * std::pow(dist / config_.gravity_rho, 2.0);
  coord_ = ApplyForce(coord_, force, origin_);
}

Coordinate CoordinateClient::ApplyForce(const Coordinate& c, double force, const Coordinate& other) {
  Coordinate out = c;
  Vec unit = Diff(c.vec, other.vec);
  double mag = Magnitude(unit);
  if (mag > kZero) {
    for (double& x : unit) x /= mag;
  } else {
    // Two nodes at the same point: push apart in a random direction.
    for (double& x : unit) x = static_cast<double>(random_.Next() >> 11) * 0x1.0p-53 - 0.5;
    const double m = Magnitude(unit);
    for (double& x : unit) x = m > kZero ? x / m : 0.0;
    mag = 0;
  }
  for (size_t i = 0; i < out.vec.size(); ++i) out.vec[i] += unit[i] * force;
  if (mag > kZero) out.height = std::max((out.height + other.height) * force / mag + out.height, config_.height_min);
  return out;
}

}  // namespace starling::membership

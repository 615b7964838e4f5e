// starling-sim --stack: every simulated node runs the whole node stack (the
// NodeCore the daemon runs: membership, desired-state log, soft state,
// lease, voter keeper, rollout engine and agent) over the simulated network,
// with hooks that act on a simulated world, and the run measures what an
// operator of a large cluster asks: per-node load by protocol, how fast a
// desired-state change reaches every node, lease failover, a rollout across
// every commissioned node against its ideal, false failures under loss and
// memory per node.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace starling::sim {

struct StackFlags {
  int nodes = 100;
  uint64_t seed = 1;
  std::string profile = "lan";
  double join_spread_s = 1.0;
  double window_s = 120;
  std::vector<double> loss_levels = {0.01, 0.05};
  double loss_window_s = 60;
  double max_s = 600;
  double hook_s = 5;              // the install hook of every node's update
  double hook_failure_rate = 0;   // chance that an install hook fails
  double min_healthy_s = 5;
  std::string batch = "10%";
  std::string format = "table";
};

// Prints the report; 0 when every phase finished (the membership formed,
// the change reached every node, the rollout settled, a new holder came).
int RunStack(const StackFlags& flags);

}  // namespace starling::sim

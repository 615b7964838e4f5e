// One simulated node's whole stack over the simulated network, for the
// simulator tests and starling-sim's whole-stack mode: the NodeCore the daemon runs,
// with memory stores, scripted hooks and a fixed voter set or the lease's own. What a real node
// keeps on disk (log, ballots, what it ran) lives in the struct and survives
// Down()/Boot(), as it survives a crash.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "node_core.h"
#include "starling/sim/simulator.h"
#include "starling/store/log.h"

namespace starling::node {

struct NodeStack {
  store::MemoryLogStorage storage;
  MemoryBallotStore ballots;
  MemoryAppliedStore applied;
  std::unique_ptr<store::DesiredLog> log;
  std::unique_ptr<HookExec> hooks;
  std::unique_ptr<NodeCore> core;

  // The parts of `core` the tests drive; null while the node is down.
  store::Replicator* replicator = nullptr;
  Lease* lease = nullptr;
  SoftState* soft = nullptr;
  NodeAgent* agent = nullptr;
  RolloutEngine* engine = nullptr;

  // Starts node `i` of `c` with `hooks`; `generation` must grow with every
  // boot. Empty `voters`: the node keeps its voters as the daemon does
  // (VoterKeeper), choosing them alone only when `founder`.
  [[nodiscard]] Status Boot(sim::Cluster& c, int i, uint32_t generation, const std::vector<std::string>& voters,
                            std::unique_ptr<HookExec> node_hooks, AgentConfig acfg, bool founder = true,
                            const std::string& profile = "local") {
    auto opened = store::DesiredLog::Open(storage, 1000 + i, c.name(i));
    if (!opened.ok()) return opened.status();
    log = std::move(*opened);
    hooks = std::move(node_hooks);
    NodeOptions options;
    options.name = c.name(i);
    options.generation = generation;
    options.profile = profile;
    options.keep_voters = voters.empty();
    options.founder = founder;
    options.agent = acfg;
    core = std::make_unique<NodeCore>(std::move(options),
                                      NodeSeams{c.clock(i), c.random(i), c.node(i), *log, ballots, applied, *hooks});
    if (!voters.empty()) core->lease().SetVoters(voters);
    replicator = &core->replicator();
    lease = &core->lease();
    soft = &core->soft();
    agent = &core->agent();
    engine = &core->engine();
    core->Start();
    return Status::Ok();
  }

  // Stops everything that runs; what is on "disk" stays.
  void Down() {
    replicator = nullptr;
    lease = nullptr;
    soft = nullptr;
    agent = nullptr;
    engine = nullptr;
    core.reset();
    hooks.reset();
    log.reset();
  }
};

}  // namespace starling::node

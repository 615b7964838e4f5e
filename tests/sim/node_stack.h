// One simulated node's whole stack (log, lease, soft state, agent, rollout
// engine) over the simulated network, for the simulator tests of rollouts
// and services. What a real node keeps on disk (log, ballots, what it ran)
// lives in the struct and survives Down()/Boot(), as it survives a crash.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "agent.h"
#include "lease.h"
#include "rollout_engine.h"
#include "soft_state.h"
#include "starling/membership/user_channels.h"
#include "starling/sim/simulator.h"
#include "starling/store/log.h"
#include "starling/store/replicator.h"

namespace starling::node {

struct NodeStack {
  store::MemoryLogStorage storage;
  MemoryBallotStore ballots;
  MemoryAppliedStore applied;
  std::unique_ptr<store::DesiredLog> log;
  std::unique_ptr<membership::UserChannels> channels;
  std::unique_ptr<store::MemberlistGossip> gossip;
  std::unique_ptr<store::Replicator> replicator;
  std::unique_ptr<MemberlistLeaseNet> lease_net;
  std::unique_ptr<Lease> lease;
  std::unique_ptr<SoftState> soft;
  std::unique_ptr<HookExec> hooks;
  std::unique_ptr<NodeAgent> agent;
  std::unique_ptr<RolloutEngine> engine;

  // Starts node `i` of `c` with `hooks`; `generation` must grow with every boot.
  void Boot(sim::Cluster& c, int i, uint32_t generation, const std::vector<std::string>& voters,
            std::unique_ptr<HookExec> node_hooks, AgentConfig acfg) {
    using namespace std::chrono_literals;
    auto opened = store::DesiredLog::Open(storage, 1000 + i, c.name(i));
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    log = std::move(*opened);
    channels = std::make_unique<membership::UserChannels>(c.node(i));
    gossip = std::make_unique<store::MemberlistGossip>(*channels);
    replicator = std::make_unique<store::Replicator>(*log, *gossip, c.clock(i), c.random(i));
    replicator->Attach(*channels);
    lease_net = std::make_unique<MemberlistLeaseNet>(*channels);
    lease = std::make_unique<Lease>(c.name(i), c.clock(i), c.random(i), *lease_net, ballots, LeaseConfigFor("local"));
    channels->On(membership::Channel::kLease,
                 [l = lease.get()](const std::string& from, ByteView data) { l->HandlePacket(from, data); });
    lease->SetVoters(voters);
    soft = std::make_unique<SoftState>(c.name(i), generation, c.clock(i), *channels, 3s);
    hooks = std::move(node_hooks);
    agent = std::make_unique<NodeAgent>(c.name(i), c.clock(i), *replicator, *soft, *hooks, applied, nullptr, acfg);
    engine = std::make_unique<RolloutEngine>(c.name(i), c.clock(i), c.node(i), *replicator, *soft, *lease);
    replicator->OnChange([a = agent.get(), e = engine.get()] {
      a->Refresh();
      e->Poke();
    });
    replicator->Start();
    lease->Start();
    soft->Start();
    agent->Start();
    engine->Start();
  }

  // Stops everything that runs; what is on "disk" stays.
  void Down() {
    engine.reset();
    agent.reset();
    hooks.reset();
    soft.reset();
    lease.reset();
    lease_net.reset();
    replicator.reset();
    gossip.reset();
    channels.reset();
    log.reset();
  }
};

}  // namespace starling::node

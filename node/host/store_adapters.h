// The protocol's persistence seams (lease ballots, what the agent runs) on
// the node's RocksDB store in the data dir.
#pragma once

#include <optional>
#include <string>

#include "agent.h"
#include "lease.h"
#include "starling/store/node_store.h"

namespace starling::node {

class StoreBallots final : public BallotStore {
 public:
  explicit StoreBallots(store::NodeStore& store) : store_(store) {}
  // The daemon has checked at start that the ballot reads back.
  uint64_t Load() override {
    auto b = store_.LoadBallot();
    return b.ok() ? *b : 0;
  }
  Status Save(uint64_t ballot) override { return store_.SaveBallot(ballot); }

 private:
  store::NodeStore& store_;
};

class StoreApplied final : public AppliedStore {
 public:
  explicit StoreApplied(store::NodeStore& store) : store_(store) {}
  Result<std::optional<std::string>> Load() override { return store_.LoadApplied(); }
  Status Save(const std::string& json) override { return store_.SaveApplied(json); }

 private:
  store::NodeStore& store_;
};

}  // namespace starling::node

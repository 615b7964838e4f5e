// Writes the known-member list to the NodeStore on a worker thread, so that
// RocksDB never blocks the protocol thread.
#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "starling/store/node_store.h"

namespace starling::node {

class MemberPersister {
 public:
  // `store` must outlive the persister.
  explicit MemberPersister(store::NodeStore& store);
  ~MemberPersister();  // Stop()

  // Queues a snapshot; a newer one replaces an unwritten older one. Any thread.
  void Submit(std::vector<store::KnownMember> members);
  // Writes what is queued, then ends the worker. Idempotent.
  void Stop();

 private:
  void Loop();

  store::NodeStore& store_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<std::vector<store::KnownMember>> pending_;  // guarded by mu_
  bool stopping_ = false;                                   // guarded by mu_
  std::vector<store::KnownMember> written_;                 // worker thread only
  std::thread thread_;
};

}  // namespace starling::node

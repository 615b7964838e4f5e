// The replicator over membership's user channel: the only part of store/
// that knows membership exists (target starling::store_gossip).
#pragma once

#include <string>
#include <vector>

#include "starling/membership/user_channels.h"
#include "starling/store/replicator.h"

namespace starling::store {

// LogGossip on the kLog channel of `channels`, which must outlive it.
class MemberlistGossip final : public LogGossip {
 public:
  explicit MemberlistGossip(membership::UserChannels& channels) : channels_(channels) {}
  std::vector<Peer> LivePeers() const override;
  size_t NumLivePeers() const override;
  std::vector<Peer> RandomLivePeers(size_t k, Random& random) const override;
  std::optional<Peer> LivePeer(const std::string& name) const override;
  std::string NameAt(const std::string& addr) const override;
  std::string SelfAddr() const override;
  size_t BroadcastBudget() const override;
  void Broadcast(const std::string& key, Bytes data) override;
  void SendPacket(const std::string& addr, Bytes data) override;
  void SendStream(const std::string& addr, Bytes data, Duration timeout, Transport::StreamDone done) override;

 private:
  membership::UserChannels& channels_;
};

// Routes the kLog channel's packets and streams to `replicator`; both must
// outlive the channels' use of it.
void AttachReplicator(Replicator& replicator, membership::UserChannels& channels);

}  // namespace starling::store

#include "starling/store/memberlist_gossip.h"

namespace starling::store {

using membership::Channel;

std::vector<LogGossip::Peer> MemberlistGossip::LivePeers() const {
  std::vector<Peer> out;
  const auto& list = channels_.list();
  const std::string self = list.config().name;
  for (const auto& m : list.Members())
    if (m.name != self && m.status == membership::MemberStatus::kAlive) out.push_back(Peer{m.name, m.addr});
  return out;
}
std::string MemberlistGossip::SelfAddr() const { return channels_.list().config().advertise_addr; }
size_t MemberlistGossip::BroadcastBudget() const { return channels_.BroadcastBudget(); }
void MemberlistGossip::Broadcast(const std::string& key, Bytes data) {
  channels_.Broadcast(Channel::kLog, key, std::move(data));
}
void MemberlistGossip::SendPacket(const std::string& addr, Bytes data) {
  channels_.SendPacket(Channel::kLog, addr, std::move(data));
}
void MemberlistGossip::SendStream(const std::string& addr, Bytes data, Duration timeout, Transport::StreamDone done) {
  channels_.SendStream(Channel::kLog, addr, std::move(data), timeout, std::move(done));
}

void AttachReplicator(Replicator& replicator, membership::UserChannels& channels) {
  channels.On(
      Channel::kLog, [&replicator](const std::string& from, ByteView data) { replicator.HandlePacket(from, data); },
      [&replicator](const std::string& from, ByteView data) { return replicator.HandleStream(from, data); });
}

}  // namespace starling::store

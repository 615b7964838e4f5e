#include "starling/store/memberlist_gossip.h"

namespace starling::store {

using membership::Channel;

std::vector<LogGossip::Peer> MemberlistGossip::LivePeers() const {
  std::vector<Peer> out;
  const auto& list = channels_.list();
  const std::string self = list.config().name;
  list.ForEachMember([&](const membership::MemberRecord& m) {
    if (m.name != self && m.status == membership::MemberStatus::kAlive) out.push_back(Peer{m.name, m.addr});
  });
  return out;
}
size_t MemberlistGossip::NumLivePeers() const {
  const size_t n = channels_.list().NumAlive();  // suspects too: a bound, not a census
  return n > 0 ? n - 1 : 0;
}
std::vector<LogGossip::Peer> MemberlistGossip::RandomLivePeers(size_t k, Random& random) const {
  std::vector<Peer> out;
  for (const auto& m : channels_.list().RandomAlive(k, random)) out.push_back(Peer{m.name, m.addr});
  return out;
}
std::optional<LogGossip::Peer> MemberlistGossip::LivePeer(const std::string& name) const {
  const auto& list = channels_.list();
  if (name == list.config().name || list.StatusOf(name) != membership::MemberStatus::kAlive) return std::nullopt;
  return Peer{name, list.AddrOf(name).value_or("")};
}
std::string MemberlistGossip::NameAt(const std::string& addr) const {
  const auto& list = channels_.list();
  const std::string& self = list.config().name;
  std::string name;
  list.ForEachMember([&](const membership::MemberRecord& m) {
    if (name.empty() && m.name != self && m.status == membership::MemberStatus::kAlive && m.addr == addr) name = m.name;
  });
  return name;
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

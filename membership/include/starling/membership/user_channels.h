// Several protocols (the desired-state log, the coordinator lease) share
// membership's user channel. The first byte of every user payload names the
// protocol; a payload for a protocol nobody registered is dropped and
// counted. Single-threaded, like the Memberlist it wraps.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "starling/membership/memberlist.h"

namespace starling::membership {

enum class Channel : uint8_t { kLog = 1, kLease = 2, kNodeState = 3, kKeys = 4, kArtifacts = 5, kEvents = 6, kQuery = 7 };
inline constexpr size_t kChannels = 8;
// "log", "lease", "reports", ... (the Memberlist counts what each sends as
// user_messages_sent.<n>, user_bytes_sent.<n> and user_stream_bytes_sent.<n>).
std::string_view ChannelName(size_t channel);

class UserChannels {
 public:
  // Installs itself as `list`'s user handler; `list` must outlive it.
  explicit UserChannels(Memberlist& list);
  ~UserChannels();
  UserChannels(const UserChannels&) = delete;
  UserChannels& operator=(const UserChannels&) = delete;

  // A stream handler that answers at once: returns the reply payload (empty drops the request).
  using SyncStreamFn = std::function<Bytes(const std::string& from, ByteView data)>;
  void On(Channel ch, Memberlist::UserPacketFn on_packet, SyncStreamFn on_stream = nullptr);
  // The same with a handler that may answer later (after work off the
  // protocol thread), through the reply it is given.
  void OnAsync(Channel ch, Memberlist::UserPacketFn on_packet, Memberlist::UserStreamFn on_stream);

  Memberlist& list() { return list_; }
  const Memberlist& list() const { return list_; }
  size_t BroadcastBudget() const { return list_.UserBroadcastBudget() - 1; }
  void Broadcast(Channel ch, const std::string& key, Bytes data);
  void SendPacket(Channel ch, const std::string& addr, Bytes data);
  void SendStream(Channel ch, const std::string& addr, Bytes data, Duration timeout, Transport::StreamDone done);
  uint64_t dropped() const { return dropped_; }

 private:
  static Bytes Tagged(Channel ch, Bytes data);
  Memberlist& list_;
  std::array<Memberlist::UserPacketFn, kChannels> packet_;
  std::array<SyncStreamFn, kChannels> stream_;
  std::array<Memberlist::UserStreamFn, kChannels> async_;
  uint64_t dropped_ = 0;
};

}  // namespace starling::membership

#include "starling/membership/user_channels.h"

#include <spdlog/spdlog.h>

namespace starling::membership {

std::string_view ChannelName(size_t channel) {
  switch (channel) {
    case 1: return "log";
    case 2: return "lease";
    case 3: return "reports";
    case 4: return "keys";
    case 5: return "artifacts";
    case 6: return "events";
    case 7: return "queries";
    default: return "unknown";
  }
}

UserChannels::UserChannels(Memberlist& list) : list_(list) {
  list_.SetUserHandlers(
      [this](const std::string& from, ByteView data) {
        const size_t ch = data.empty() ? 0 : data[0];
        if (ch >= packet_.size() || !packet_[ch]) {
          ++dropped_;
          spdlog::debug("dropped a user packet from {} for unknown channel {}", from, ch);
          return;
        }
        packet_[ch](from, data.subspan(1));
      },
      [this](const std::string& from, ByteView data, Memberlist::StreamReply reply) {
        const size_t ch = data.empty() ? 0 : data[0];
        if (ch < async_.size() && async_[ch]) return async_[ch](from, data.subspan(1), std::move(reply));
        if (ch >= stream_.size() || !stream_[ch]) {
          ++dropped_;
          spdlog::debug("dropped a user stream from {} for unknown channel {}", from, ch);
          return reply({});
        }
        reply(stream_[ch](from, data.subspan(1)));
      });
}

UserChannels::~UserChannels() { list_.SetUserHandlers(nullptr, nullptr); }

void UserChannels::On(Channel ch, Memberlist::UserPacketFn on_packet, SyncStreamFn on_stream) {
  packet_[static_cast<size_t>(ch)] = std::move(on_packet);
  stream_[static_cast<size_t>(ch)] = std::move(on_stream);
  async_[static_cast<size_t>(ch)] = nullptr;
}

void UserChannels::OnAsync(Channel ch, Memberlist::UserPacketFn on_packet, Memberlist::UserStreamFn on_stream) {
  packet_[static_cast<size_t>(ch)] = std::move(on_packet);
  stream_[static_cast<size_t>(ch)] = nullptr;
  async_[static_cast<size_t>(ch)] = std::move(on_stream);
}

Bytes UserChannels::Tagged(Channel ch, Bytes data) {
  data.insert(data.begin(), static_cast<uint8_t>(ch));
  return data;
}

void UserChannels::Broadcast(Channel ch, const std::string& key, Bytes data) {
  list_.QueueUserBroadcast(std::to_string(static_cast<int>(ch)) + "/" + key, Tagged(ch, std::move(data)));
}

void UserChannels::SendPacket(Channel ch, const std::string& addr, Bytes data) {
  list_.SendUserPacket(addr, Tagged(ch, std::move(data)));
}

void UserChannels::SendStream(Channel ch, const std::string& addr, Bytes data, Duration timeout,
                              Transport::StreamDone done) {
  list_.SendUserStream(addr, Tagged(ch, std::move(data)), timeout, std::move(done));
}

}  // namespace starling::membership

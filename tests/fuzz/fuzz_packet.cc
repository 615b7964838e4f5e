// Gossip datagrams: what any host that can reach our UDP port makes us parse,
// before any check of who sent it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include "codec.h"
#include "fuzz_check.h"

namespace wire = starling::membership::wire;

namespace {
// The seeds carry this cluster name, so mutations get past the envelope.
const std::string kCluster = "fuzz";
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto decoded = wire::DecodePacket(starling::ByteView(data, size), kCluster);
  if (auto* bad = std::get_if<wire::BadInput>(&decoded)) {
    // The reason names a metrics counter.
    FUZZ_CHECK(!bad->reason.empty(), bad->detail);
    return 0;
  }
  const auto& messages = std::get<std::vector<wire::Message>>(decoded);
  FUZZ_CHECK(!messages.empty() && messages.size() <= wire::kMaxMessagesPerPacket,
             std::to_string(messages.size()));

  // Accepted messages are gossiped on (alive, suspect, dead, leave), so they
  // must encode to a packet we accept again, unchanged, and the broadcast
  // queue's size estimate must not undercount them.
  starling::Bytes encoded = wire::EncodePacket(kCluster, messages);
  size_t estimate = wire::EnvelopeOverhead(kCluster);
  for (const auto& m : messages) estimate += wire::EstimateSize(m);
  FUZZ_CHECK(estimate >= encoded.size(),
             "estimate " + std::to_string(estimate) + " < encoded " + std::to_string(encoded.size()));
  // The canonical form may outgrow the input (Cap'n Proto fills in struct
  // fields a sender left out): past the datagram limit it is refused, rightly.
  if (encoded.size() > wire::kMaxPacketBytes) return 0;
  auto again = wire::DecodePacket(encoded, kCluster);
  if (auto* bad = std::get_if<wire::BadInput>(&again)) FUZZ_CHECK(false, bad->reason + ": " + bad->detail);
  FUZZ_CHECK(wire::EncodePacket(kCluster, std::get<std::vector<wire::Message>>(again)) == encoded,
             "a second round trip changed the packet");
  return 0;
}

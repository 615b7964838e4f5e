// Stream frames (push-pull state exchange, join replies, user streams): what
// a peer, or anyone who can connect to our TCP port, sends in one frame. Both
// directions get the same bytes: they share the envelope and most of the
// payload types, so one corpus serves both.
#include <cstddef>
#include <cstdint>
#include <string>
#include <variant>

#include "codec.h"
#include "fuzz_check.h"
#include "starling/membership/config.h"

namespace wire = starling::membership::wire;

namespace {

const std::string kCluster = "fuzz";  // as in the seeds
// The limit the daemon applies, so that fuzzing sees the same refusals.
const size_t kMaxBytes = starling::membership::Config{}.max_stream_bytes;

template <typename T, typename Decode, typename Encode>
void RoundTrip(const uint8_t* data, size_t size, Decode decode, Encode encode) {
  auto decoded = decode(starling::ByteView(data, size));
  if (auto* bad = std::get_if<wire::BadInput>(&decoded)) {
    FUZZ_CHECK(!bad->reason.empty(), bad->detail);
    return;
  }
  // A node answers a push-pull with its own state built from what it
  // accepted: whatever decodes must encode and decode back unchanged.
  starling::Bytes encoded = encode(std::get<T>(decoded));
  if (encoded.size() > kMaxBytes) return;  // canonical form outgrew the limit
  auto again = decode(encoded);
  if (auto* bad = std::get_if<wire::BadInput>(&again)) FUZZ_CHECK(false, bad->reason + ": " + bad->detail);
  FUZZ_CHECK(encode(std::get<T>(again)) == encoded, "a second round trip changed the frame");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  RoundTrip<wire::StreamRequest>(
      data, size, [](starling::ByteView b) { return wire::DecodeStreamRequest(b, kCluster, kMaxBytes); },
      [](const wire::StreamRequest& r) { return wire::EncodeStreamRequest(kCluster, r); });
  RoundTrip<wire::StreamReply>(
      data, size, [](starling::ByteView b) { return wire::DecodeStreamReply(b, kCluster, kMaxBytes); },
      [](const wire::StreamReply& r) { return wire::EncodeStreamReply(kCluster, r); });
  return 0;
}

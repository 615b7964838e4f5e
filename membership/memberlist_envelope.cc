// The keyring envelope: opening inbound frames, and counting and logging
// (rate-limited) what must be dropped.
#include "memberlist_impl.h"

namespace starling::membership {

// Opens an inbound frame: `out` views the clear bytes (`in` itself when the
// cluster runs in the clear, else the decrypted copy in `storage`).
// Anything but kOk is counted, logged (rate-limited) and must be dropped.
Memberlist::Impl::Opened Memberlist::Impl::Unseal(const std::string& from, ByteView in, Bytes& storage, ByteView& out) {
  const bool sealed = Keyring::IsSealed(in);
  if (keyed()) {
    if (!sealed) {
      Bad(wire::BadInput{"unencrypted", "a clear frame, but this cluster is encrypted: the sender has no key"}, from);
      return Opened::kClear;
    }
    auto clear = cfg_.keyring->Decrypt(in);
    if (!clear) {
      Bad(wire::BadInput{"auth", "no installed key opens it: the sender's key differs, or it was tampered with"},
          from);
      return Opened::kAuth;
    }
    storage = std::move(*clear);
    out = storage;
    return Opened::kOk;
  }
  if (sealed) {
    Bad(wire::BadInput{"encrypted", "an encrypted frame, but this node has no key: start it with --encrypt KEY"},
        from);
    return Opened::kSealed;
  }
  out = in;
  return Opened::kOk;
}

Bytes Memberlist::Impl::KeyRefusal(std::string why) {
  Bytes reply = wire::EncodeStreamReply(cfg_.cluster, wire::StreamReply{wire::Refused{std::move(why), true}});
  counters_["stream_bytes_sent"] += reply.size();
  return reply;
}

void Memberlist::Impl::Bad(const wire::BadInput& bad, const std::string& from) {
  ++counters_["bad_packets." + bad.reason];
  LogLimited("dropped bad packet from {}: {} ({})", from, bad.reason, bad.detail);
}

}  // namespace starling::membership

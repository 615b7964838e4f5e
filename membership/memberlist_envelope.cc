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
    if (Keyring::SealedFormat(in) != Keyring::kFormat) {
      Bad(wire::BadInput{"format", "a sealed frame of format " + std::to_string(Keyring::SealedFormat(in)) +
                                       ", this node reads format " + std::to_string(Keyring::kFormat) +
                                       ": the sender runs another starlingd release"},
          from);
      return Opened::kAuth;
    }
    auto opened = cfg_.keyring->Decrypt(in);
    if (!opened) {
      Bad(wire::BadInput{"auth", "no installed key opens it: the sender's key differs, or it was tampered with"},
          from);
      return Opened::kAuth;
    }
    const int64_t now = clock_.WallMicros();
    switch (replay_.Check(now, opened->sent_micros, opened->id)) {
      case ReplayGuard::Verdict::kFresh: break;
      case ReplayGuard::Verdict::kReplayed:
        Bad(wire::BadInput{"replayed", "a copy of a frame already received: resent by someone on the network"}, from);
        return Opened::kReplayed;
      case ReplayGuard::Verdict::kOutOfWindow:
        Bad(wire::BadInput{"out_of_window",
                           "sealed " + std::to_string((opened->sent_micros - now) / 1000000) +
                               " s from this node's clock, more than the " +
                               std::to_string(replay_.window().count() / 1000000) +
                               " s allowed: a replayed frame, or the clocks differ (check NTP)"},
            from);
        return Opened::kOutOfWindow;
    }
    storage = std::move(opened->clear);
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

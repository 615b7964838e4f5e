// The cluster keyring: the keys that authenticate and encrypt every datagram
// and stream frame between daemons (XChaCha20-Poly1305 from libsodium).
//
// A node holds one or more keys. It encrypts with the primary and accepts
// anything any installed key opens, which is what lets a new key roll out
// without downtime: install it everywhere, make it primary everywhere, then
// remove the old one (see SECURITY.md). An empty keyring means the node runs
// in the clear.
//
// Sealed frame: "\xffSK" + version byte 2, a 24-byte random nonce, then the
// ciphertext (with its 16-byte tag) of the sender's wall-clock time (8 bytes,
// microseconds since the Unix epoch, little-endian) followed by the clear
// content. The four header bytes are the associated data. Read as a Cap'n
// Proto segment table they claim billions of segments, so a sealed frame can
// never be mistaken for a clear one, and vice versa. The time and the nonce
// are what a receiver's ReplayGuard checks: a copy of a frame, resent by
// someone who holds no key, is refused.
//
// Single-threaded like the Memberlist that uses it.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "starling/env.h"
#include "starling/status.h"

namespace starling::membership {

inline constexpr size_t kKeyBytes = 32;
using Key = std::array<uint8_t, kKeyBytes>;
// What tells one sealed frame from every other: the first 16 bytes of its
// random nonce.
using FrameId = std::array<uint8_t, 16>;

// An opened frame.
struct OpenedFrame {
  Bytes clear;
  int64_t sent_micros = 0;  // the sender's wall clock when it sealed the frame
  FrameId id{};
};

class Keyring {
 public:
  // Bytes a sealed frame adds to its clear content.
  static constexpr size_t kHeaderBytes = 4;
  static constexpr size_t kNonceBytes = 24;
  static constexpr size_t kTagBytes = 16;
  static constexpr size_t kTimeBytes = 8;
  static constexpr size_t kOverhead = kHeaderBytes + kNonceBytes + kTagBytes + kTimeBytes;
  static constexpr uint8_t kFormat = 2;
  // More keys than a rotation ever needs; bounds the work of opening a frame.
  static constexpr size_t kMaxKeys = 16;

  // A key as operators write it: standard base64 of 32 bytes. The error
  // names the input's problem but never echoes the input.
  static Result<Key> ParseKey(std::string_view base64);
  static std::string FormatKey(const Key& key);
  // What names a key where the key itself must not travel or be shown: 16
  // hex digits of a BLAKE2b hash of it (64 bits: enough to tell a ring's few
  // keys apart, and nothing about the key).
  static constexpr size_t kFingerprintChars = 16;
  static std::string Fingerprint(const Key& key);
  static bool LooksLikeFingerprint(std::string_view text);
  // The held key with that fingerprint; nullopt when none.
  std::optional<Key> ByFingerprint(std::string_view fingerprint) const;
  // 32 bytes from the system's CSPRNG.
  static Key Generate();

  bool enabled() const { return !keys_.empty(); }
  // Primary first.
  const std::vector<Key>& keys() const { return keys_; }
  bool Has(const Key& key) const;

  // Adds a key (becomes primary when the ring was empty). Installing a key
  // already held is a no-op. kInvalidArgument past kMaxKeys.
  Status Install(const Key& key);
  // Makes an installed key the primary; kNotFound otherwise.
  Status Use(const Key& key);
  // Drops a key; kNotFound if not held, kInvalidArgument for the primary.
  Status Remove(const Key& key);

  // Encrypts under the primary, stamped with `wall_micros` (the sender's
  // wall clock); requires enabled().
  Bytes Encrypt(ByteView clear, int64_t wall_micros) const;
  // Opens a sealed frame with whichever key fits; nullopt when none does or
  // the frame is malformed (or of another format: SealedFormat tells).
  std::optional<OpenedFrame> Decrypt(ByteView sealed) const;
  // True when the bytes carry the sealed-frame magic, whatever its format.
  static bool IsSealed(ByteView bytes);
  // The format byte of a sealed frame.
  static uint8_t SealedFormat(ByteView sealed) { return sealed[kHeaderBytes - 1]; }

 private:
  std::vector<Key> keys_;
};

}  // namespace starling::membership

// The cluster keyring: the keys that authenticate and encrypt every datagram
// and stream frame between daemons (XChaCha20-Poly1305 from libsodium).
//
// A node holds one or more keys. It encrypts with the primary and accepts
// anything any installed key opens, which is what lets a new key roll out
// without downtime: install it everywhere, make it primary everywhere, then
// remove the old one (see SECURITY.md). An empty keyring means the node runs
// in the clear.
//
// Sealed frame: "\xffSK" + version byte 1, a 24-byte random nonce, then the
// ciphertext with its 16-byte tag. The four header bytes are the associated
// data. Read as a Cap'n Proto segment table they claim billions of segments,
// so a sealed frame can never be mistaken for a clear one, and vice versa.
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

class Keyring {
 public:
  // Bytes a sealed frame adds to its clear content.
  static constexpr size_t kHeaderBytes = 4;
  static constexpr size_t kNonceBytes = 24;
  static constexpr size_t kTagBytes = 16;
  static constexpr size_t kOverhead = kHeaderBytes + kNonceBytes + kTagBytes;
  // More keys than a rotation ever needs; bounds the work of opening a frame.
  static constexpr size_t kMaxKeys = 16;

  // A key as operators write it: standard base64 of 32 bytes. The error
  // names the input's problem but never echoes the input.
  static Result<Key> ParseKey(std::string_view base64);
  static std::string FormatKey(const Key& key);
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

  // Encrypts under the primary; requires enabled().
  Bytes Encrypt(ByteView clear) const;
  // Opens a sealed frame with whichever key fits; nullopt when none does or
  // the frame is malformed.
  std::optional<Bytes> Decrypt(ByteView sealed) const;
  // True when the bytes carry the sealed-frame header.
  static bool IsSealed(ByteView bytes);

 private:
  std::vector<Key> keys_;
};

}  // namespace starling::membership

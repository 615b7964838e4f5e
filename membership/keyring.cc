#include "starling/membership/keyring.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace starling::membership {
namespace {

constexpr uint8_t kHeader[Keyring::kHeaderBytes] = {0xff, 'S', 'K', 1};

static_assert(Keyring::kNonceBytes == crypto_aead_xchacha20poly1305_ietf_NPUBBYTES);
static_assert(Keyring::kTagBytes == crypto_aead_xchacha20poly1305_ietf_ABYTES);
static_assert(kKeyBytes == crypto_aead_xchacha20poly1305_ietf_KEYBYTES);

void EnsureSodium() {
  // sodium_init is idempotent and thread-safe; failing means no entropy
  // source, and no key could be made or nonce drawn safely.
  if (sodium_init() < 0) std::abort();
}

}  // namespace

Result<Key> Keyring::ParseKey(std::string_view base64) {
  EnsureSodium();
  std::string trimmed(base64);
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == '\r' || trimmed.back() == ' ')) {
    trimmed.pop_back();
  }
  if (trimmed.empty()) return Status::InvalidArgument("the key is empty (make one with `starling keygen`)");
  std::vector<uint8_t> raw(trimmed.size());
  size_t len = 0;
  if (sodium_base642bin(raw.data(), raw.size(), trimmed.data(), trimmed.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    return Status::InvalidArgument("the key is not valid base64 (make one with `starling keygen`)");
  }
  if (len != kKeyBytes) {
    sodium_memzero(raw.data(), raw.size());
    return Status::InvalidArgument("the key decodes to " + std::to_string(len) + " bytes, not " +
                                   std::to_string(kKeyBytes) + " (make one with `starling keygen`)");
  }
  Key key;
  std::memcpy(key.data(), raw.data(), kKeyBytes);
  sodium_memzero(raw.data(), raw.size());
  return key;
}

std::string Keyring::FormatKey(const Key& key) {
  EnsureSodium();
  std::string out(sodium_base64_ENCODED_LEN(kKeyBytes, sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), key.data(), key.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(std::strlen(out.c_str()));
  return out;
}

Key Keyring::Generate() {
  EnsureSodium();
  Key key;
  crypto_aead_xchacha20poly1305_ietf_keygen(key.data());
  return key;
}

bool Keyring::Has(const Key& key) const { return std::find(keys_.begin(), keys_.end(), key) != keys_.end(); }

Status Keyring::Install(const Key& key) {
  if (Has(key)) return Status::Ok();
  if (keys_.size() >= kMaxKeys) {
    return Status::InvalidArgument("the keyring already holds " + std::to_string(kMaxKeys) +
                                   " keys: remove one first");
  }
  keys_.push_back(key);
  return Status::Ok();
}

Status Keyring::Use(const Key& key) {
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it == keys_.end()) return Status::NotFound("the key is not installed (install it first)");
  std::rotate(keys_.begin(), it, it + 1);
  return Status::Ok();
}

Status Keyring::Remove(const Key& key) {
  auto it = std::find(keys_.begin(), keys_.end(), key);
  if (it == keys_.end()) return Status::NotFound("the key is not installed");
  if (it == keys_.begin()) return Status::InvalidArgument("the key is the primary key: `use` another one first");
  keys_.erase(it);
  return Status::Ok();
}

Bytes Keyring::Encrypt(ByteView clear) const {
  EnsureSodium();
  Bytes out(kOverhead + clear.size());
  std::memcpy(out.data(), kHeader, kHeaderBytes);
  uint8_t* nonce = out.data() + kHeaderBytes;
  // Random 192-bit nonces never repeat in practice, so no counter has to
  // survive restarts.
  randombytes_buf(nonce, kNonceBytes);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + kNonceBytes, &written, clear.data(), clear.size(), kHeader,
                                             kHeaderBytes, nullptr, nonce, keys_.front().data());
  out.resize(kHeaderBytes + kNonceBytes + written);
  return out;
}

std::optional<Bytes> Keyring::Decrypt(ByteView sealed) const {
  if (!IsSealed(sealed) || sealed.size() < kOverhead) return std::nullopt;
  const uint8_t* nonce = sealed.data() + kHeaderBytes;
  const uint8_t* body = nonce + kNonceBytes;
  const size_t body_len = sealed.size() - kHeaderBytes - kNonceBytes;
  Bytes clear(body_len - kTagBytes);
  for (const Key& key : keys_) {
    unsigned long long len = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(clear.data(), &len, nullptr, body, body_len, kHeader, kHeaderBytes,
                                                   nonce, key.data()) == 0) {
      clear.resize(len);
      return clear;
    }
  }
  return std::nullopt;
}

bool Keyring::IsSealed(ByteView bytes) {
  return bytes.size() >= kHeaderBytes && std::memcmp(bytes.data(), kHeader, kHeaderBytes) == 0;
}

}  // namespace starling::membership

#include "starling/membership/keyring.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>

namespace starling::membership {
namespace {

constexpr uint8_t kHeader[Keyring::kHeaderBytes] = {0xff, 'S', 'K', Keyring::kFormat};

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

Bytes Keyring::Encrypt(ByteView clear, int64_t wall_micros) const {
  EnsureSodium();
  Bytes plain(kTimeBytes + clear.size());
  const auto t = static_cast<uint64_t>(wall_micros);
  for (size_t i = 0; i < kTimeBytes; ++i) plain[i] = static_cast<uint8_t>(t >> (8 * i));
  if (!clear.empty()) std::memcpy(plain.data() + kTimeBytes, clear.data(), clear.size());
  Bytes out(kOverhead + clear.size());
  std::memcpy(out.data(), kHeader, kHeaderBytes);
  uint8_t* nonce = out.data() + kHeaderBytes;
  // Random 192-bit nonces never repeat in practice, so no counter has to
  // survive restarts.
  randombytes_buf(nonce, kNonceBytes);
  unsigned long long written = 0;
  crypto_aead_xchacha20poly1305_ietf_encrypt(nonce + kNonceBytes, &written, plain.data(), plain.size(), kHeader,
                                             kHeaderBytes, nullptr, nonce, keys_.front().data());
  out.resize(kHeaderBytes + kNonceBytes + written);
  return out;
}

std::optional<OpenedFrame> Keyring::Decrypt(ByteView sealed) const {
  if (!IsSealed(sealed) || SealedFormat(sealed) != kFormat || sealed.size() < kOverhead) return std::nullopt;
  const uint8_t* nonce = sealed.data() + kHeaderBytes;
  const uint8_t* body = nonce + kNonceBytes;
  const size_t body_len = sealed.size() - kHeaderBytes - kNonceBytes;
  Bytes plain(body_len - kTagBytes);
  for (const Key& key : keys_) {
    unsigned long long len = 0;
    if (crypto_aead_xchacha20poly1305_ietf_decrypt(plain.data(), &len, nullptr, body, body_len, kHeader, kHeaderBytes,
                                                   nonce, key.data()) == 0) {
      OpenedFrame out;
      uint64_t t = 0;
      for (size_t i = 0; i < kTimeBytes; ++i) t |= static_cast<uint64_t>(plain[i]) << (8 * i);
      out.sent_micros = static_cast<int64_t>(t);
      std::memcpy(out.id.data(), nonce, out.id.size());
      out.clear.assign(plain.begin() + kTimeBytes, plain.begin() + static_cast<long>(len));
      return out;
    }
  }
  return std::nullopt;
}

bool Keyring::IsSealed(ByteView bytes) {
  return bytes.size() >= kHeaderBytes && std::memcmp(bytes.data(), kHeader, kHeaderBytes - 1) == 0;
}

std::string Keyring::Fingerprint(const Key& key) {
  EnsureSodium();
  static constexpr char kContext[] = "starling key fingerprint";
  uint8_t hash[crypto_generichash_BYTES_MIN];
  crypto_generichash_state st;
  crypto_generichash_init(&st, nullptr, 0, sizeof hash);
  crypto_generichash_update(&st, reinterpret_cast<const uint8_t*>(kContext), sizeof kContext - 1);
  crypto_generichash_update(&st, key.data(), key.size());
  crypto_generichash_final(&st, hash, sizeof hash);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < kFingerprintChars / 2; ++i) {
    out += kHex[hash[i] >> 4];
    out += kHex[hash[i] & 15];
  }
  return out;
}

bool Keyring::LooksLikeFingerprint(std::string_view text) {
  return text.size() == kFingerprintChars &&
         std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::optional<Key> Keyring::ByFingerprint(std::string_view fingerprint) const {
  for (const Key& k : keys_)
    if (Fingerprint(k) == fingerprint) return k;
  return std::nullopt;
}

}  // namespace starling::membership

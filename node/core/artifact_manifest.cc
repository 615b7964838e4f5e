#include "artifact_manifest.h"

#include <sodium.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <optional>

#include "starling/text.h"

namespace starling::node {
namespace {

constexpr std::string_view kPrefix = "sha256:";

void EnsureSodium() {
  // Idempotent and thread-safe. It can fail only for want of an entropy
  // source, which hashing does not use, so there is nothing to report.
  static const int once = sodium_init();
  (void)once;
}

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool IsHexName(std::string_view s) { return s.size() == 64 && std::all_of(s.begin(), s.end(), IsLowerHex); }

std::string Hex(const unsigned char* p, size_t n) {
  std::string out(2 * n + 1, '\0');
  sodium_bin2hex(out.data(), out.size(), p, n);
  out.pop_back();
  return out;
}

std::string Subject(const ArtifactManifest& m) {
  return "artifact manifest" + (IsArtifactDigest(m.digest) ? " " + m.digest : std::string());
}

}  // namespace

// ---- Sha256Hasher ------------------------------------------------------------------

static_assert(sizeof(crypto_hash_sha256_state) <= sizeof(Sha256Hasher::State));
static_assert(alignof(crypto_hash_sha256_state) <= alignof(Sha256Hasher::State));

Sha256Hasher::Sha256Hasher() {
  EnsureSodium();
  crypto_hash_sha256_init(reinterpret_cast<crypto_hash_sha256_state*>(&state_));
}

void Sha256Hasher::Update(const uint8_t* p, size_t n) {
  crypto_hash_sha256_update(reinterpret_cast<crypto_hash_sha256_state*>(&state_), p, n);
}

std::string Sha256Hasher::Digest() {
  unsigned char out[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(reinterpret_cast<crypto_hash_sha256_state*>(&state_), out);
  return std::string(kPrefix) + Hex(out, sizeof out);
}

// ---- Manifest checks -------------------------------------------------------------

// What is wrong with an artifact's labels, or nothing.
std::optional<std::string> ArtifactLabelProblem(const std::string& name, const std::string& version) {
  if (name.empty() || name.size() > kMaxArtifactNameBytes || !text::IsCleanName(name))
    return "the name must be 1 to " + std::to_string(kMaxArtifactNameBytes) +
           " bytes of UTF-8 without control characters";
  // The name is clean by now, so it may be shown.
  if (version.size() > kMaxArtifactVersionBytes || !text::IsCleanText(version))
    return "the version of '" + name + "' must be at most " + std::to_string(kMaxArtifactVersionBytes) +
           " bytes of UTF-8 without NUL";
  return std::nullopt;
}

// The checks that do not look at each chunk digest, for a manifest with
// `nchunks` of them: FromJson runs them before copying a possibly huge chunk
// list, WriteChunk and ReadChunk because they run once per chunk and must not
// cost O(chunks) each.
Status CheckManifestSizes(const ArtifactManifest& m, size_t nchunks) {
  auto bad = [&](const std::string& why) { return Status::Corruption(Subject(m) + ": " + why); };
  if (!IsArtifactDigest(m.digest)) return bad("malformed digest (expected sha256: and 64 lowercase hex digits)");
  if (m.size > kMaxArtifactBytes) return bad("size " + std::to_string(m.size) + " is over 1 TiB");
  if (m.chunk_size < kMinArtifactChunkBytes || m.chunk_size > kMaxArtifactChunkBytes)
    return bad("chunk_size " + std::to_string(m.chunk_size) + " is outside [" +
               std::to_string(kMinArtifactChunkBytes) + ", " + std::to_string(kMaxArtifactChunkBytes) + "]");
  if (nchunks != m.ChunkCount())
    return bad(std::to_string(nchunks) + " chunk digests for " + std::to_string(m.ChunkCount()) + " chunks");
  return Status::Ok();
}

// ---- Digests -------------------------------------------------------------------

std::string Sha256Digest(ByteView data) {
  Sha256Hasher h;
  h.Update(data.data(), data.size());
  return h.Digest();
}

bool IsArtifactDigest(std::string_view s) {
  return s.size() == kPrefix.size() + 64 && s.substr(0, kPrefix.size()) == kPrefix &&
         IsHexName(s.substr(kPrefix.size()));
}

// ---- ArtifactManifest ------------------------------------------------------------

size_t ArtifactManifest::ChunkCount() const {
  if (chunk_size == 0) return 0;
  return static_cast<size_t>(size / chunk_size + (size % chunk_size != 0 ? 1 : 0));
}

uint64_t ArtifactManifest::ChunkOffset(size_t i) const { return static_cast<uint64_t>(i) * chunk_size; }

uint32_t ArtifactManifest::ChunkLength(size_t i) const {
  if (i >= ChunkCount()) return 0;
  return static_cast<uint32_t>(std::min<uint64_t>(chunk_size, size - ChunkOffset(i)));
}

store::Json ArtifactManifest::ToJson() const {
  return store::Json{{"digest", digest},         {"name", name},   {"version", version},
                     {"size", size},             {"chunk_size", chunk_size},
                     {"chunks", chunks},         {"added_by", added_by},
                     {"added_us", added_us}};
}

Status ArtifactManifest::Validate() const {
  if (Status s = CheckManifestSizes(*this, chunks.size()); !s.ok()) return s;
  auto bad = [&](const std::string& why) { return Status::Corruption(Subject(*this) + ": " + why); };
  for (size_t i = 0; i < chunks.size(); ++i)
    if (!IsArtifactDigest(chunks[i])) return bad("chunk " + std::to_string(i) + " has a malformed digest");
  // Cheap consistency checks that would otherwise surface only after a whole
  // download: one chunk is the whole content, and empty content has one digest.
  if (chunks.size() == 1 && chunks[0] != digest) return bad("its only chunk's digest differs from the content's");
  if (size == 0 && digest != Sha256Digest({})) return bad("empty content with a digest that is not empty content's");
  if (auto problem = ArtifactLabelProblem(name, version)) return bad(*problem);
  if (added_by.size() > kMaxArtifactNameBytes || !text::IsCleanName(added_by))
    return bad("added_by must be at most " + std::to_string(kMaxArtifactNameBytes) +
               " bytes of UTF-8 without control characters");
  return Status::Ok();
}

Result<ArtifactManifest> ArtifactManifest::FromJson(const store::Json& j) {
  auto bad = [](const std::string& why) { return Status::Corruption("artifact manifest: " + why); };
  if (!j.is_object()) return bad("not a JSON object");
  auto field = [&](const char* key) -> const store::Json* {
    auto it = j.find(key);
    return it == j.end() ? nullptr : &*it;
  };
  ArtifactManifest m;
  const std::pair<const char*, std::string*> strings[] = {
      {"digest", &m.digest}, {"name", &m.name}, {"version", &m.version}, {"added_by", &m.added_by}};
  for (const auto& [key, out] : strings) {
    const store::Json* v = field(key);
    if (v == nullptr || !v->is_string()) return bad(std::string("\"") + key + "\" must be a string");
    *out = v->get<std::string>();
  }
  // Integers only: a float such as 1e3 is refused rather than converted.
  auto unsigned_field = [&](const char* key) -> std::optional<uint64_t> {
    const store::Json* v = field(key);
    if (v == nullptr || !v->is_number_integer()) return std::nullopt;
    if (v->is_number_unsigned()) return v->get<uint64_t>();
    const int64_t x = v->get<int64_t>();
    if (x < 0) return std::nullopt;
    return static_cast<uint64_t>(x);
  };
  auto size = unsigned_field("size");
  if (!size) return bad("\"size\" must be a non-negative integer");
  m.size = *size;
  auto chunk_size = unsigned_field("chunk_size");
  if (!chunk_size) return bad("\"chunk_size\" must be a non-negative integer");
  // Clamped so that the range check below reports the value as too large.
  m.chunk_size = static_cast<uint32_t>(std::min<uint64_t>(*chunk_size, std::numeric_limits<uint32_t>::max()));
  const store::Json* added_us = field("added_us");
  if (added_us == nullptr || !added_us->is_number_integer() ||
      (added_us->is_number_unsigned() &&
       added_us->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())))
    return bad("\"added_us\" must be a 64-bit integer");
  m.added_us = added_us->get<int64_t>();
  const store::Json* chunks = field("chunks");
  if (chunks == nullptr || !chunks->is_array()) return bad("\"chunks\" must be a list");
  // Before copying: the list may be long, and then wrong anyway.
  if (Status s = CheckManifestSizes(m, chunks->size()); !s.ok()) return s;
  m.chunks.reserve(chunks->size());
  for (const auto& c : *chunks) {
    if (!c.is_string()) return bad("chunk " + std::to_string(m.chunks.size()) + " is not a string");
    m.chunks.push_back(c.get<std::string>());
  }
  if (Status s = m.Validate(); !s.ok()) return s;
  return m;
}

}  // namespace starling::node

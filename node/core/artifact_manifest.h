// The manifest by which the cluster knows an artifact (a package file), and
// the SHA-256 digests that name it and its chunks.
//
// Contract
//  * An artifact is named by the SHA-256 of its content, "sha256:<64 lowercase
//    hex>". Its manifest also lists the digest of every chunk (fixed size, the
//    last one may be short), so a download from peers can be checked chunk by
//    chunk and resumed, and a bad chunk is refused before it touches the disk.
//  * Manifests travel in the replicated desired-state log, so FromJson treats
//    its input as hostile: whatever it accepts is internally consistent and
//    safe to log, re-encode and use for file offsets.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "starling/env.h"
#include "starling/status.h"
#include "starling/store/document.h"

namespace starling::node {

inline constexpr uint32_t kArtifactChunkBytes = 1u << 20;  // 1 MiB
// What a manifest may ask for. The chunk size bounds a read buffer; the size
// bounds the chunk list an untrusted manifest can make us allocate and check.
inline constexpr uint32_t kMinArtifactChunkBytes = 64u << 10;
inline constexpr uint32_t kMaxArtifactChunkBytes = 16u << 20;
inline constexpr uint64_t kMaxArtifactBytes = uint64_t{1} << 40;  // 1 TiB
inline constexpr size_t kMaxArtifactNameBytes = 128;
inline constexpr size_t kMaxArtifactVersionBytes = 64;

// "sha256:<64 lowercase hex>" of `data`.
std::string Sha256Digest(ByteView data);
// "sha256:" followed by exactly 64 lowercase hex digits.
bool IsArtifactDigest(std::string_view s);

// SHA-256 fed piece by piece (libsodium underneath, kept out of this header).
class Sha256Hasher {
 public:
  struct alignas(16) State {
    unsigned char bytes[128];
  };
  Sha256Hasher();
  void Update(const uint8_t* p, size_t n);
  // "sha256:<hex>"; call once.
  std::string Digest();

 private:
  State state_;
};

struct ArtifactManifest {
  std::string digest;          // of the whole content
  std::string name, version;   // operator labels; name clean and non-empty, version clean text, may be empty
  uint64_t size = 0;
  uint32_t chunk_size = kArtifactChunkBytes;
  std::vector<std::string> chunks;  // digest of each chunk, ChunkCount() of them (none for empty content)
  std::string added_by;             // node name; empty until the caller sets it
  int64_t added_us = 0;             // wall time

  // ceil(size / chunk_size), computed from size, not from `chunks`.
  size_t ChunkCount() const;
  uint64_t ChunkOffset(size_t i) const;
  // chunk_size, short for the last chunk; 0 for an index out of range.
  uint32_t ChunkLength(size_t i) const;

  // {"digest","name","version","size","chunk_size","chunks":[...],"added_by","added_us"}
  store::Json ToJson() const;
  // kCorruption naming what is wrong: a missing field or one of the wrong
  // JSON type, a malformed digest (whole or chunk), a chunk_size outside
  // [64 KiB, 16 MiB], a size over 1 TiB, a chunk count other than
  // ceil(size / chunk_size), a one-chunk (or empty) artifact whose chunk
  // digest cannot be its content's, or a name, version or added_by that is
  // not clean text of bounded length. Unknown fields are ignored, so a newer
  // node may add some without older ones dropping the record. Never throws.
  static Result<ArtifactManifest> FromJson(const store::Json& j);
  // The checks of FromJson on a manifest built in code (Ok or kCorruption).
  Status Validate() const;

  bool operator==(const ArtifactManifest&) const = default;
};

// What is wrong with an artifact's name or version, or nothing.
std::optional<std::string> ArtifactLabelProblem(const std::string& name, const std::string& version);
// The checks of Validate that do not look at each chunk digest, for a
// manifest with `nchunks` of them (kCorruption naming what is wrong): cheap
// enough to run once per chunk.
Status CheckManifestSizes(const ArtifactManifest& m, size_t nchunks);

}  // namespace starling::node

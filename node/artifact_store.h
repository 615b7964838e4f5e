// A node's content-addressed store of artifacts (package files), and the
// manifest by which the cluster knows each one.
//
// Contract
//  * An artifact is named by the SHA-256 of its content, "sha256:<64 lowercase
//    hex>". Its manifest also lists the digest of every chunk (fixed size, the
//    last one may be short), so a download from peers can be checked chunk by
//    chunk and resumed, and a bad chunk is refused before it touches the disk.
//  * Manifests travel in the replicated desired-state log, so FromJson treats
//    its input as hostile: whatever it accepts is internally consistent and
//    safe to log, re-encode and use for file offsets.
//  * Layout under the store's directory (the daemon uses <data-dir>/artifacts):
//      sha256/<hex>   complete, verified content, mode 0444
//      partial/<hex>  a download in progress, at full size (sparse until
//                     written), chunks written in place at their offsets
//      tmp/           Add() copies here first, then renames into sha256/
//    A file appears in sha256/ only by an atomic rename after its whole
//    content was hashed and fsynced, so a complete artifact is never seen
//    half-written, even after a crash. Files whose names are not 64 lowercase
//    hex are ignored and left alone.
//  * Durability of a partial download is not tracked: Begin() re-hashes the
//    chunks present, so a chunk lost or torn by a crash is simply fetched
//    again and no separate bookkeeping can disagree with the file.
//  * No exceptions escape. Errors are a Status naming the file or digest:
//    kInvalidArgument for a bad call (a malformed digest or manifest, a chunk
//    index out of range), kNotFound, kCorruption for content that does not
//    match its digest, kIoError when the OS refuses.
//  * Memory is bounded by one chunk (at most 16 MiB) per call; whole files are
//    never loaded.
//  * The object holds no state but its directory. Calls for different digests
//    may run concurrently; calls for the same digest (and Add with Remove) must
//    be serialised by the caller.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "starling/membership/env.h"
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
// The same of a whole file, read in chunks. Errors name the path.
Result<std::string> Sha256File(const std::string& path);
// "sha256:" followed by exactly 64 lowercase hex digits.
bool IsArtifactDigest(std::string_view s);

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

class ArtifactStore {
 public:
  explicit ArtifactStore(std::string dir);

  // Creates the directory and its three subdirectories (0700) when missing,
  // and removes files left in tmp/ by an Add() that was interrupted.
  Status Init();

  // Copies the file at `path` into the store, hashing as it reads (one pass,
  // one chunk of memory), and returns its manifest with chunk_size
  // kArtifactChunkBytes; added_by and added_us are left for the caller. When
  // the content is already held the copy is dropped and the same manifest
  // returned; a partial download of it is removed, being of no more use.
  // kNotFound for a missing path, kInvalidArgument for one that is not a
  // regular file, a file over 1 TiB or a bad name/version, kIoError for one
  // that cannot be read; each names the path.
  Result<ArtifactManifest> Add(const std::string& path, const std::string& name, const std::string& version);

  // Whether the complete, verified artifact is held.
  bool Has(const std::string& digest) const;
  // The complete file's path, whether or not present; empty for a string
  // that is not a digest (it must never reach a path unchecked).
  std::string PathOf(const std::string& digest) const;

  // Starts or resumes a download. Creates partial/<hex> at the manifest's
  // size when absent (all chunks false); otherwise hashes every chunk present
  // and reports which match the manifest. A complete artifact gives all true.
  // The partial file holds content, not chunk boundaries, so manifests of the
  // same content with different chunk sizes can resume each other's download.
  Result<std::vector<bool>> Begin(const ArtifactManifest& m);
  // Checks `data` against m.chunks[index] and the chunk's length and writes
  // it at its offset in the partial file. kCorruption ("chunk 3 of sha256:..:
  // digest mismatch") without writing anything when it does not match;
  // kNotFound when no download was begun. A chunk of an artifact that is
  // already complete is accepted and dropped.
  Status WriteChunk(const ArtifactManifest& m, size_t index, ByteView data);
  // Hashes the whole partial file. On a match fsyncs it and renames it into
  // sha256/ (0444); on a mismatch removes it and returns kCorruption: which
  // bytes went wrong cannot be told, so the download starts over. kNotFound
  // when there is no partial file; Ok when the artifact is already complete.
  Status Finish(const ArtifactManifest& m);
  // Reads chunk `index` of the complete file, or of the partial one when not
  // complete (the caller knows which partial chunks are good). Chunks are not
  // re-hashed here: whoever receives one checks it against the manifest.
  // kNotFound when neither file exists, kInvalidArgument for an index out of
  // range, kCorruption when the file is shorter than the manifest says.
  Result<Bytes> ReadChunk(const ArtifactManifest& m, size_t index) const;

  // Removes the complete and the partial file; absent ones are fine.
  Status Remove(const std::string& digest);
  // Digests held complete, sorted.
  std::vector<std::string> Complete() const;
  // Digests with a partial download, sorted.
  std::vector<std::string> Partial() const;
  // The sizes of the complete and partial files. A partial file counts at its
  // full size, though sparse: that is the space it takes once complete.
  uint64_t DiskBytes() const;

  const std::string& dir() const { return dir_; }

 private:
  std::string PartialPath(const std::string& digest) const;
  std::vector<std::string> List(const std::string& sub) const;

  std::string dir_;
};

}  // namespace starling::node

// A node's content-addressed store of artifacts (package files): the seam
// between the artifact protocol (artifacts.h), which runs every call on a
// worker (Offload), and the files that hold the content
// (host/file_artifact_store.h). Manifests and digests: artifact_manifest.h.
//
// Contract
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

#include <memory>
#include <string>
#include <vector>

#include "artifact_manifest.h"

namespace starling::node {

// A file a local client opened with its own rights and passed over the API
// socket (an open descriptor); closed when the last copy goes. The daemon
// never opens a path a client names: it would read it with the daemon's
// rights.
using OpenFile = std::shared_ptr<const int>;

class ArtifactStore {
 public:
  virtual ~ArtifactStore() = default;

  // Creates the directory and its three subdirectories (0700) when missing,
  // and removes files left in tmp/ by an Add() that was interrupted.
  virtual Status Init() = 0;

  // Copies the open file `fd` (read from its current offset to its end)
  // into the store, hashing as it reads (one pass, one chunk of memory), and
  // returns its manifest with chunk_size kArtifactChunkBytes; added_by and
  // added_us are left for the caller. When the content is already held the
  // copy is dropped and the same manifest returned; a partial download of it
  // is removed, being of no more use. kInvalidArgument for a file that is not
  // a regular file, over 1 TiB or with a bad name/version, kIoError for one
  // that cannot be read; each names `what` (the file as its caller knows it).
  virtual Result<ArtifactManifest> Add(int fd, const std::string& what, const std::string& name,
                                       const std::string& version) = 0;

  // Whether the complete, verified artifact is held.
  virtual bool Has(const std::string& digest) const = 0;
  // Hashes the complete file again: Ok when it still matches its digest,
  // kCorruption (naming both digests) when its bytes changed on this disk,
  // kNotFound when it is absent.
  virtual Status Verify(const std::string& digest) const = 0;
  // The complete file's path, whether or not present; empty for a string
  // that is not a digest (it must never reach a path unchecked).
  virtual std::string PathOf(const std::string& digest) const = 0;

  // Starts or resumes a download. Creates partial/<hex> at the manifest's
  // size when absent (all chunks false); otherwise hashes every chunk present
  // and reports which match the manifest. A complete artifact gives all true.
  // The partial file holds content, not chunk boundaries, so manifests of the
  // same content with different chunk sizes can resume each other's download.
  virtual Result<std::vector<bool>> Begin(const ArtifactManifest& m) = 0;
  // Checks `data` against m.chunks[index] and the chunk's length and writes
  // it at its offset in the partial file. kCorruption ("chunk 3 of sha256:..:
  // digest mismatch") without writing anything when it does not match;
  // kNotFound when no download was begun. A chunk of an artifact that is
  // already complete is accepted and dropped.
  virtual Status WriteChunk(const ArtifactManifest& m, size_t index, ByteView data) = 0;
  // Hashes the whole partial file. On a match fsyncs it and renames it into
  // sha256/ (0444); on a mismatch removes it and returns kCorruption: which
  // bytes went wrong cannot be told, so the download starts over. kNotFound
  // when there is no partial file; Ok when the artifact is already complete.
  virtual Status Finish(const ArtifactManifest& m) = 0;
  // Reads chunk `index` of the complete file, or of the partial one when not
  // complete (the caller knows which partial chunks are good). Chunks are not
  // re-hashed here: whoever receives one checks it against the manifest.
  // kNotFound when neither file exists, kInvalidArgument for an index out of
  // range, kCorruption when the file is shorter than the manifest says.
  virtual Result<Bytes> ReadChunk(const ArtifactManifest& m, size_t index) const = 0;

  // Removes the complete and the partial file; absent ones are fine.
  virtual Status Remove(const std::string& digest) = 0;
  // Digests held complete, sorted.
  virtual std::vector<std::string> Complete() const = 0;
  // Digests with a partial download, sorted.
  virtual std::vector<std::string> Partial() const = 0;
  // The sizes of the complete and partial files. A partial file counts at its
  // full size, though sparse: that is the space it takes once complete.
  virtual uint64_t DiskBytes() const = 0;
};

}  // namespace starling::node

// The artifact store in a directory of this node (the daemon uses
// <data-dir>/artifacts); the contract is core/artifact_store.h.
#pragma once

#include <string>
#include <vector>

#include "artifact_store.h"

namespace starling::node {

// The SHA-256 of a whole file, read in chunks. Errors name the path.
Result<std::string> Sha256File(const std::string& path);

class FileArtifactStore final : public ArtifactStore {
 public:
  explicit FileArtifactStore(std::string dir);

  // Creates the directory and its three subdirectories (0700) when missing,
  // and removes files left in tmp/ by an Add() that was interrupted.
  Status Init() override;

  // Copies the file at `path` into the store, hashing as it reads (one pass,
  // one chunk of memory), and returns its manifest with chunk_size
  // kArtifactChunkBytes; added_by and added_us are left for the caller. When
  // the content is already held the copy is dropped and the same manifest
  // returned; a partial download of it is removed, being of no more use.
  // kNotFound for a missing path, kInvalidArgument for one that is not a
  // regular file, a file over 1 TiB or a bad name/version, kIoError for one
  // that cannot be read; each names the path.
  Result<ArtifactManifest> Add(int fd, const std::string& what, const std::string& name,
                               const std::string& version) override;
  // Opens `path` (with this process's rights) and adds it: for tests and
  // tools, never for a path a client names.
  Result<ArtifactManifest> AddFile(const std::string& path, const std::string& name, const std::string& version);

  // Whether the complete, verified artifact is held.
  bool Has(const std::string& digest) const override;
  Status Verify(const std::string& digest) const override;
  // The complete file's path, whether or not present; empty for a string
  // that is not a digest (it must never reach a path unchecked).
  std::string PathOf(const std::string& digest) const override;

  // Starts or resumes a download. Creates partial/<hex> at the manifest's
  // size when absent (all chunks false); otherwise hashes every chunk present
  // and reports which match the manifest. A complete artifact gives all true.
  // The partial file holds content, not chunk boundaries, so manifests of the
  // same content with different chunk sizes can resume each other's download.
  Result<std::vector<bool>> Begin(const ArtifactManifest& m) override;
  // Checks `data` against m.chunks[index] and the chunk's length and writes
  // it at its offset in the partial file. kCorruption ("chunk 3 of sha256:..:
  // digest mismatch") without writing anything when it does not match;
  // kNotFound when no download was begun. A chunk of an artifact that is
  // already complete is accepted and dropped.
  Status WriteChunk(const ArtifactManifest& m, size_t index, ByteView data) override;
  // Hashes the whole partial file. On a match fsyncs it and renames it into
  // sha256/ (0444); on a mismatch removes it and returns kCorruption: which
  // bytes went wrong cannot be told, so the download starts over. kNotFound
  // when there is no partial file; Ok when the artifact is already complete.
  Status Finish(const ArtifactManifest& m) override;
  // Reads chunk `index` of the complete file, or of the partial one when not
  // complete (the caller knows which partial chunks are good). Chunks are not
  // re-hashed here: whoever receives one checks it against the manifest.
  // kNotFound when neither file exists, kInvalidArgument for an index out of
  // range, kCorruption when the file is shorter than the manifest says.
  Result<Bytes> ReadChunk(const ArtifactManifest& m, size_t index) const override;

  // Removes the complete and the partial file; absent ones are fine.
  Status Remove(const std::string& digest) override;
  // Digests held complete, sorted.
  std::vector<std::string> Complete() const override;
  // Digests with a partial download, sorted.
  std::vector<std::string> Partial() const override;
  // The sizes of the complete and partial files. A partial file counts at its
  // full size, though sparse: that is the space it takes once complete.
  uint64_t DiskBytes() const override;

  const std::string& dir() const { return dir_; }

 private:
  std::string PartialPath(const std::string& digest) const;
  std::vector<std::string> List(const std::string& sub) const;

  std::string dir_;
};

}  // namespace starling::node

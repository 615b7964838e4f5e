#include "file_artifact_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <utility>

#include "starling/text.h"

namespace starling::node {
namespace {

constexpr std::string_view kPrefix = "sha256:";

bool IsLowerHex(char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

bool IsHexName(std::string_view s) { return s.size() == 64 && std::all_of(s.begin(), s.end(), IsLowerHex); }

std::string Errno() { return std::strerror(errno); }

// Owns a file descriptor; every early return closes it.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      Close();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~Fd() { Close(); }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }
  // Linux closes the descriptor even when close() reports EINTR: never retry.
  int Close() {
    int r = fd_ >= 0 ? ::close(fd_) : 0;
    fd_ = -1;
    return r;
  }

 private:
  int fd_;
};

Fd Open(const std::string& path, int flags, mode_t mode = 0) {
  int fd;
  do fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  while (fd < 0 && errno == EINTR);
  return Fd(fd);
}

// Reads until `n` bytes or end of file; the count read, or -1 (errno set).
// `offset` < 0 reads from the current position.
ssize_t ReadFull(int fd, uint8_t* buf, size_t n, off_t offset = -1) {
  size_t got = 0;
  while (got < n) {
    ssize_t r = offset < 0 ? ::read(fd, buf + got, n - got)
                           : ::pread(fd, buf + got, n - got, offset + static_cast<off_t>(got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    if (r == 0) break;
    got += static_cast<size_t>(r);
  }
  return static_cast<ssize_t>(got);
}

// Writes all `n` bytes; false (errno set) otherwise. `offset` as ReadFull.
bool WriteFull(int fd, const uint8_t* buf, size_t n, off_t offset = -1) {
  size_t put = 0;
  while (put < n) {
    ssize_t r = offset < 0 ? ::write(fd, buf + put, n - put)
                           : ::pwrite(fd, buf + put, n - put, offset + static_cast<off_t>(put));
    if (r < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (r == 0) {
      errno = EIO;
      return false;
    }
    put += static_cast<size_t>(r);
  }
  return true;
}

int Fsync(int fd) {
  int r;
  do r = ::fsync(fd);
  while (r < 0 && errno == EINTR);
  return r;
}

// A rename or create is durable only once its directory is synced.
Status SyncDir(const std::string& dir) {
  Fd fd = Open(dir, O_RDONLY | O_DIRECTORY);
  if (!fd.ok() || Fsync(fd.get()) != 0) return Status::IoError("cannot sync the directory " + dir + ": " + Errno());
  return Status::Ok();
}

Status MakeDir(const std::string& path) {
  if (::mkdir(path.c_str(), 0700) == 0) return Status::Ok();
  if (errno != EEXIST) return Status::IoError("cannot create the directory " + path + ": " + Errno());
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Status::IoError("cannot create the directory " + path + ": something else is in the way");
  return Status::Ok();
}

Status Unlink(const std::string& path) {
  if (::unlink(path.c_str()) == 0 || errno == ENOENT) return Status::Ok();
  return Status::IoError("cannot remove " + path + ": " + Errno());
}

// Opens a file that is to be read whole (Add, Sha256File); `verb` says what
// for in messages. Non-blocking, so that a FIFO in its place cannot hang the
// caller; reads of a regular file, the only kind accepted, are unaffected.
Status OpenInput(const std::string& path, const char* verb, Fd& fd) {
  const std::string what = std::string("cannot ") + verb + " " + path + ": ";
  fd = Open(path, O_RDONLY | O_NONBLOCK);
  if (!fd.ok()) {
    if (errno == ENOENT || errno == ENOTDIR) return Status::NotFound(what + "no such file");
    return Status::IoError(what + Errno());
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::IoError(what + Errno());
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(what + "not a regular file");
  return Status::Ok();
}

uint64_t FileSize(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

// A manifest handed to the store by its caller: a bad one is the caller's bug.
Status CheckArgument(Status s) { return s.ok() ? s : Status::InvalidArgument(s.message()); }

Status CheckIndex(const ArtifactManifest& m, size_t index) {
  if (index >= m.ChunkCount())
    return Status::InvalidArgument("chunk " + std::to_string(index) + " of " + m.digest + ": out of range (" +
                                   std::to_string(m.ChunkCount()) + " chunks)");
  return Status::Ok();
}

std::string ChunkName(const ArtifactManifest& m, size_t index) {
  return "chunk " + std::to_string(index) + " of " + m.digest;
}

// The digest of `n` zero bytes, for chunks that are still holes in a sparse
// partial file: no need to read and hash them.
std::string ZeroDigest(size_t n) {
  static const uint8_t kZeros[64 << 10] = {};
  Sha256Hasher h;
  for (size_t done = 0; done < n; done += std::min(n - done, sizeof kZeros))
    h.Update(kZeros, std::min(n - done, sizeof kZeros));
  return h.Digest();
}

// Whether [offset, offset + len) of `fd` is all hole. False when unsure (a
// file system without SEEK_DATA reports everything as data).
bool IsHole(int fd, uint64_t offset, uint64_t len) {
  off_t data = ::lseek(fd, static_cast<off_t>(offset), SEEK_DATA);
  if (data < 0) return errno == ENXIO;  // no data at or after offset
  return static_cast<uint64_t>(data) >= offset + len;
}

}  // namespace

Result<std::string> Sha256File(const std::string& path) {
  Fd fd;
  if (Status s = OpenInput(path, "hash", fd); !s.ok()) return s;
  Sha256Hasher h;
  Bytes buf(kArtifactChunkBytes);
  for (;;) {
    ssize_t n = ReadFull(fd.get(), buf.data(), buf.size());
    if (n < 0) return Status::IoError("cannot read " + path + ": " + Errno());
    if (n == 0) break;
    h.Update(buf.data(), static_cast<size_t>(n));
  }
  return h.Digest();
}

// ---- FileArtifactStore -----------------------------------------------------------

FileArtifactStore::FileArtifactStore(std::string dir) : dir_(std::move(dir)) {}

Status FileArtifactStore::Init() {
  for (const std::string& d : {dir_, dir_ + "/sha256", dir_ + "/partial", dir_ + "/tmp"})
    if (Status s = MakeDir(d); !s.ok()) return s;
  const std::string tmp = dir_ + "/tmp";
  DIR* d = ::opendir(tmp.c_str());
  if (d == nullptr) return Status::IoError("cannot list " + tmp + ": " + Errno());
  std::vector<std::string> leftovers;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st {};
    // Only files are ours to remove; whatever else someone put there stays.
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
      leftovers.push_back(tmp + "/" + name);
  }
  ::closedir(d);
  for (const auto& path : leftovers)
    if (Status s = Unlink(path); !s.ok()) return s;
  return Status::Ok();
}

std::string FileArtifactStore::PathOf(const std::string& digest) const {
  if (!IsArtifactDigest(digest)) return "";
  return dir_ + "/sha256/" + digest.substr(kPrefix.size());
}

std::string FileArtifactStore::PartialPath(const std::string& digest) const {
  if (!IsArtifactDigest(digest)) return "";
  return dir_ + "/partial/" + digest.substr(kPrefix.size());
}

bool FileArtifactStore::Has(const std::string& digest) const {
  if (!IsArtifactDigest(digest)) return false;
  struct stat st {};
  return ::stat(PathOf(digest).c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

Status FileArtifactStore::Verify(const std::string& digest) const {
  if (!Has(digest)) return Status::NotFound("artifact " + digest + " is not held complete");
  Result<std::string> now = Sha256File(PathOf(digest));
  if (!now.ok()) return now.status();
  if (*now != digest)
    return Status::Corruption("artifact " + digest + ": " + PathOf(digest) + " now hashes to " + *now);
  return Status::Ok();
}

Result<ArtifactManifest> FileArtifactStore::AddFile(const std::string& path, const std::string& name,
                                                    const std::string& version) {
  Fd in;
  if (Status s = OpenInput(path, "add", in); !s.ok()) return s;
  return Add(in.get(), path, name, version);
}

Result<ArtifactManifest> FileArtifactStore::Add(int in, const std::string& path, const std::string& name,
                                                const std::string& version) {
  if (auto problem = ArtifactLabelProblem(name, version))
    return Status::InvalidArgument("cannot add " + path + ": " + *problem);
  struct stat st {};
  if (::fstat(in, &st) != 0) return Status::IoError("cannot add " + path + ": " + Errno());
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument("cannot add " + path + ": not a regular file");

  std::string tmp = dir_ + "/tmp/add-XXXXXX";
  Fd out(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!out.ok()) return Status::IoError("cannot create a file in " + dir_ + "/tmp: " + Errno());
  // Whatever goes wrong from here, the copy must not stay behind.
  auto fail = [&](Status s) {
    out.Close();
    ::unlink(tmp.c_str());
    return s;
  };

  ArtifactManifest m;
  m.name = name;
  m.version = version;
  m.chunk_size = kArtifactChunkBytes;
  Sha256Hasher whole;
  Bytes buf(kArtifactChunkBytes);
  for (;;) {
    // Whole chunks at a time, so each chunk's digest comes from one buffer.
    ssize_t n = ReadFull(in, buf.data(), buf.size());
    if (n < 0) return fail(Status::IoError("cannot read " + path + ": " + Errno()));
    if (n == 0) break;
    const size_t len = static_cast<size_t>(n);
    if (m.size + len > kMaxArtifactBytes) return fail(Status::InvalidArgument("cannot add " + path + ": over 1 TiB"));
    whole.Update(buf.data(), len);
    m.chunks.push_back(Sha256Digest(ByteView(buf.data(), len)));
    if (!WriteFull(out.get(), buf.data(), len)) return fail(Status::IoError("cannot write " + tmp + ": " + Errno()));
    m.size += len;
    if (len < buf.size()) break;
  }
  m.digest = whole.Digest();

  const std::string dest = PathOf(m.digest);
  if (!Has(m.digest)) {
    if (Fsync(out.get()) != 0 || ::fchmod(out.get(), 0444) != 0)
      return fail(Status::IoError("cannot write " + tmp + ": " + Errno()));
    if (out.Close() != 0) return fail(Status::IoError("cannot write " + tmp + ": " + Errno()));
    if (::rename(tmp.c_str(), dest.c_str()) != 0)
      return fail(Status::IoError("cannot rename " + tmp + " to " + dest + ": " + Errno()));
    if (Status s = SyncDir(dir_ + "/sha256"); !s.ok()) return s;
  } else {
    out.Close();
    ::unlink(tmp.c_str());
  }
  if (Status s = Unlink(PartialPath(m.digest)); !s.ok()) return s;
  return m;
}

Result<std::vector<bool>> FileArtifactStore::Begin(const ArtifactManifest& m) {
  if (Status s = CheckArgument(m.Validate()); !s.ok()) return s;
  const size_t count = m.ChunkCount();
  if (Has(m.digest)) return std::vector<bool>(count, true);
  const std::string path = PartialPath(m.digest);

  Fd fd = Open(path, O_RDWR | O_CREAT | O_EXCL, 0600);
  if (fd.ok()) {
    // Sparse: no space is written until chunks arrive. Not synced: if the
    // creation is lost in a crash, the next Begin makes the file again.
    if (::ftruncate(fd.get(), static_cast<off_t>(m.size)) != 0) {
      Status s = Status::IoError("cannot size " + path + ": " + Errno());
      fd.Close();
      ::unlink(path.c_str());
      return s;
    }
    return std::vector<bool>(count, false);
  }
  if (errno != EEXIST) return Status::IoError("cannot create " + path + ": " + Errno());

  fd = Open(path, O_RDWR);
  if (!fd.ok()) return Status::IoError("cannot open " + path + ": " + Errno());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::IoError("cannot read " + path + ": " + Errno());
  if (!S_ISREG(st.st_mode)) return Status::IoError(path + " is not a regular file");
  // A crash may lose the size set at creation; the chunks past the end then
  // read as zeros and are fetched again, unless zeros are what they hold.
  if (static_cast<uint64_t>(st.st_size) != m.size && ::ftruncate(fd.get(), static_cast<off_t>(m.size)) != 0)
    return Status::IoError("cannot size " + path + ": " + Errno());

  std::vector<bool> good(count, false);
  Bytes buf(m.chunk_size);
  std::string zero_full, zero_last;  // computed on first use
  for (size_t i = 0; i < count; ++i) {
    const uint64_t off = m.ChunkOffset(i);
    const uint32_t len = m.ChunkLength(i);
    if (IsHole(fd.get(), off, len)) {
      std::string& zero = len == m.chunk_size ? zero_full : zero_last;
      if (zero.empty()) zero = ZeroDigest(len);
      good[i] = m.chunks[i] == zero;
      continue;
    }
    ssize_t n = ReadFull(fd.get(), buf.data(), len, static_cast<off_t>(off));
    if (n < 0) return Status::IoError("cannot read " + path + ": " + Errno());
    good[i] = static_cast<size_t>(n) == len && Sha256Digest(ByteView(buf.data(), len)) == m.chunks[i];
  }
  return good;
}

Status FileArtifactStore::WriteChunk(const ArtifactManifest& m, size_t index, ByteView data) {
  if (Status s = CheckArgument(CheckManifestSizes(m, m.chunks.size())); !s.ok()) return s;
  if (Status s = CheckIndex(m, index); !s.ok()) return s;
  if (data.size() != m.ChunkLength(index))
    return Status::Corruption(ChunkName(m, index) + ": " + std::to_string(data.size()) + " bytes, expected " +
                              std::to_string(m.ChunkLength(index)));
  if (Sha256Digest(data) != m.chunks[index]) return Status::Corruption(ChunkName(m, index) + ": digest mismatch");
  const std::string path = PartialPath(m.digest);
  Fd fd = Open(path, O_WRONLY);
  if (!fd.ok()) {
    if (errno == ENOENT) {
      if (Has(m.digest)) return Status::Ok();
      return Status::NotFound(ChunkName(m, index) + ": no download begun (" + path + " is missing)");
    }
    return Status::IoError("cannot open " + path + ": " + Errno());
  }
  // Not synced per chunk: Begin re-hashes after a crash, Finish syncs once.
  if (!WriteFull(fd.get(), data.data(), data.size(), static_cast<off_t>(m.ChunkOffset(index))))
    return Status::IoError("cannot write " + ChunkName(m, index) + " to " + path + ": " + Errno());
  if (fd.Close() != 0) return Status::IoError("cannot write " + path + ": " + Errno());
  return Status::Ok();
}

Status FileArtifactStore::Finish(const ArtifactManifest& m) {
  if (Status s = CheckArgument(m.Validate()); !s.ok()) return s;
  const std::string path = PartialPath(m.digest);
  if (Has(m.digest)) return Unlink(path);
  Fd fd = Open(path, O_RDWR);
  if (!fd.ok()) {
    if (errno == ENOENT) return Status::NotFound(m.digest + ": no download begun (" + path + " is missing)");
    return Status::IoError("cannot open " + path + ": " + Errno());
  }
  // The partial file is removed on any mismatch: which write was bad cannot
  // be told afterwards, and a fresh Begin fetches everything again.
  auto corrupt = [&](const std::string& why) {
    fd.Close();
    ::unlink(path.c_str());
    return Status::Corruption(m.digest + ": " + why + "; the partial download was removed");
  };
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Status::IoError("cannot read " + path + ": " + Errno());
  if (static_cast<uint64_t>(st.st_size) != m.size)
    return corrupt(path + " has " + std::to_string(st.st_size) + " bytes, expected " + std::to_string(m.size));

  // The whole digest alone decides; chunk digests were checked as they were
  // written, and what matters now is what is on disk.
  Sha256Hasher whole;
  Bytes buf(m.chunk_size);
  for (size_t i = 0; i < m.ChunkCount(); ++i) {
    const uint32_t len = m.ChunkLength(i);
    ssize_t n = ReadFull(fd.get(), buf.data(), len, static_cast<off_t>(m.ChunkOffset(i)));
    if (n < 0) return Status::IoError("cannot read " + path + ": " + Errno());
    if (static_cast<size_t>(n) != len) return corrupt(path + " is shorter than " + std::to_string(m.size) + " bytes");
    whole.Update(buf.data(), len);
  }
  if (const std::string got = whole.Digest(); got != m.digest)
    return corrupt(path + " hashes to " + got + ", not to the manifest's digest");

  if (Fsync(fd.get()) != 0 || ::fchmod(fd.get(), 0444) != 0)
    return Status::IoError("cannot complete " + path + ": " + Errno());
  if (fd.Close() != 0) return Status::IoError("cannot complete " + path + ": " + Errno());
  const std::string dest = PathOf(m.digest);
  if (::rename(path.c_str(), dest.c_str()) != 0)
    return Status::IoError("cannot rename " + path + " to " + dest + ": " + Errno());
  // One rename changes both directories in one step; syncing the one that
  // gained the name is what makes the artifact survive a crash.
  return SyncDir(dir_ + "/sha256");
}

Result<Bytes> FileArtifactStore::ReadChunk(const ArtifactManifest& m, size_t index) const {
  if (Status s = CheckArgument(CheckManifestSizes(m, m.chunks.size())); !s.ok()) return s;
  if (Status s = CheckIndex(m, index); !s.ok()) return s;
  std::string path = PathOf(m.digest);
  Fd fd = Open(path, O_RDONLY);
  int err = errno;
  if (!fd.ok() && err == ENOENT) {
    path = PartialPath(m.digest);
    fd = Open(path, O_RDONLY);
    err = errno;
    if (!fd.ok() && err == ENOENT) return Status::NotFound(m.digest + " is not held here, complete or partial");
  }
  if (!fd.ok()) return Status::IoError("cannot open " + path + ": " + std::strerror(err));
  const uint32_t len = m.ChunkLength(index);
  Bytes out(len);
  ssize_t n = ReadFull(fd.get(), out.data(), len, static_cast<off_t>(m.ChunkOffset(index)));
  if (n < 0) return Status::IoError("cannot read " + path + ": " + Errno());
  if (static_cast<size_t>(n) != len)
    return Status::Corruption(ChunkName(m, index) + ": " + path + " is shorter than " + std::to_string(m.size) +
                              " bytes");
  return out;
}

Status FileArtifactStore::Remove(const std::string& digest) {
  if (!IsArtifactDigest(digest)) return Status::InvalidArgument("cannot remove a malformed artifact digest");
  if (Status s = Unlink(PathOf(digest)); !s.ok()) return s;
  return Unlink(PartialPath(digest));
}

std::vector<std::string> FileArtifactStore::List(const std::string& sub) const {
  std::vector<std::string> out;
  const std::string path = dir_ + "/" + sub;
  DIR* d = ::opendir(path.c_str());
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    if (!IsHexName(e->d_name)) continue;
    struct stat st {};
    if (::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
      out.push_back(std::string(kPrefix) + e->d_name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> FileArtifactStore::Complete() const { return List("sha256"); }

std::vector<std::string> FileArtifactStore::Partial() const { return List("partial"); }

uint64_t FileArtifactStore::DiskBytes() const {
  uint64_t total = 0;
  for (const auto& digest : Complete()) total += FileSize(PathOf(digest));
  for (const auto& digest : Partial()) total += FileSize(PartialPath(digest));
  return total;
}

}  // namespace starling::node

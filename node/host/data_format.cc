#include "data_format.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>
#include <vector>

namespace starling::node {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kPrefix = "starling data dir format ";
constexpr const char* kFormatFile = "format";
constexpr const char* kKeyringFile = "keyring";  // keyring_file.h

std::string FormatText(uint32_t format) { return std::string(kPrefix) + std::to_string(format) + "\n"; }

// The format file of `dir`, or 0 when it has none.
Result<uint32_t> ReadFormatFile(const std::string& dir) {
  const std::string path = dir + "/" + kFormatFile;
  std::ifstream in(path);
  if (!in) return uint32_t{0};
  std::string line;
  std::getline(in, line);
  if (line.size() > 64 || line.rfind(kPrefix, 0) != 0)
    return Status::Corruption(path + " does not say '" + std::string(kPrefix) + "N'");
  const std::string number = line.substr(kPrefix.size());
  if (number.empty() || number.size() > 6 || number.find_first_not_of("0123456789") != std::string::npos)
    return Status::Corruption(path + ": format '" + number + "' is not a number");
  return static_cast<uint32_t>(std::stoul(number));
}

// Written beside, synced, renamed into place, the directory synced: a crash
// leaves the old format or the new one, never half a file.
Status WriteFormatFile(const std::string& dir, uint32_t format) {
  const std::string path = dir + "/" + kFormatFile, tmp = path + ".tmp";
  const std::string text = FormatText(format);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Status::IoError("cannot write " + tmp + ": " + std::strerror(errno));
  const bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) && ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) return Status::IoError("cannot write " + tmp + ": " + std::strerror(err));
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return Status::IoError("cannot rename " + tmp + " to " + path + ": " + std::strerror(errno));
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

bool HoldsStore(const std::string& dir) {
  std::error_code ec;
  return fs::exists(fs::path(dir) / "CURRENT", ec);
}

std::string BackupName(uint32_t format) { return "backup-" + std::to_string(format); }

// One step up: from `from` to from + 1.
Status StepUp(store::NodeStore& store, uint32_t from, const std::string& release) {
  switch (from) {
    case 1: return Status::Ok();  // 2 only records the format
    case 2: return store.SaveRelease(release);
    default: return Status::Internal("no migration from data dir format " + std::to_string(from));
  }
}

// One step down: from `from` to from - 1.
Status StepDown(store::NodeStore& store, uint32_t from) {
  switch (from) {
    case 3: return store.DeleteRelease();
    default: return Status::InvalidArgument("no way down from data dir format " + std::to_string(from));
  }
}

// A copy of the store in `dir` as `backup-<format>`, unless one is there.
Status Backup(store::NodeStore& store, const std::string& dir, uint32_t format) {
  const std::string backup = dir + "/" + BackupName(format);
  std::error_code ec;
  if (fs::exists(backup, ec)) {
    spdlog::info("data dir format {}: {} is there from an earlier start; keeping it", format, backup);
    return Status::Ok();
  }
  const std::string tmp = backup + ".tmp";
  fs::remove_all(tmp, ec);
  if (Status s = store.Checkpoint(tmp); !s.ok()) return s;
  if (fs::exists(fs::path(dir) / kKeyringFile, ec)) {
    fs::copy_file(fs::path(dir) / kKeyringFile, fs::path(tmp) / kKeyringFile, ec);
    if (ec) return Status::IoError("cannot copy the keyring into " + tmp + ": " + ec.message());
  }
  if (Status s = WriteFormatFile(tmp, format); !s.ok()) return s;
  if (::rename(tmp.c_str(), backup.c_str()) != 0)
    return Status::IoError("cannot rename " + tmp + " to " + backup + ": " + std::strerror(errno));
  spdlog::info("data dir format {}: copied to {}", format, backup);
  return Status::Ok();
}

// RocksDB's files in a data dir (the rest is ours: format, keyring, the
// socket, hooks, artifacts, backups).
bool IsStoreFile(const std::string& name) {
  auto starts = [&](const char* p) { return name.rfind(p, 0) == 0; };
  auto ends = [&](const char* s) {
    const size_t n = std::strlen(s);
    return name.size() >= n && name.compare(name.size() - n, n, s) == 0;
  };
  return name == "CURRENT" || name == "IDENTITY" || name == "LOCK" || starts("LOG") || starts("MANIFEST-") ||
         starts("OPTIONS-") || ends(".sst") || ends(".log") || ends(".blob");
}

// Fails when a daemon holds the store (RocksDB locks LOCK with fcntl).
Status CheckStopped(const std::string& dir) {
  const std::string lock = dir + "/LOCK";
  int fd = ::open(lock.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return Status::Ok();
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  const bool held = ::fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
  ::close(fd);
  if (held)
    return Status::Conflict("a starlingd (pid " + std::to_string(fl.l_pid) + ") runs on data dir " + dir +
                                      ": stop it first");
  return Status::Ok();
}

// The promised lease ballot and the generation of the store moved aside
// (when it holds one), into the restored store in `dir`.
Status CarryForward(const std::string& dir, const std::string& aside) {
  std::error_code ec;
  if (!fs::exists(fs::path(aside) / "CURRENT", ec)) return Status::Ok();
  uint64_t ballot = 0;
  uint32_t generation = 0;
  {
    Result<std::unique_ptr<store::NodeStore>> old = store::NodeStore::Open(aside);
    if (!old.ok()) return Status::IoError("reading the ballot and generation of " + aside + ": " + old.status().message());
    Result<uint64_t> b = (*old)->LoadBallot();
    Result<uint32_t> g = (*old)->LoadGeneration();
    if (!b.ok() || !g.ok())
      return Status::IoError("reading the ballot and generation of " + aside + ": " +
                             (!b.ok() ? b.status() : g.status()).message());
    ballot = *b;
    generation = *g;
  }
  Result<std::unique_ptr<store::NodeStore>> restored = store::NodeStore::Open(dir);
  if (!restored.ok()) return restored.status();
  Result<uint64_t> b = (*restored)->LoadBallot();
  if (!b.ok()) return b.status();
  if (ballot > *b)
    if (Status s = (*restored)->SaveBallot(ballot); !s.ok()) return s;
  Result<uint32_t> g = (*restored)->BumpGeneration(generation);
  return g.ok() ? Status::Ok() : g.status();
}

}  // namespace

Result<uint32_t> ReadDataFormat(const std::string& dir) {
  Result<uint32_t> f = ReadFormatFile(dir);
  if (!f.ok() || *f != 0) return f;
  return HoldsStore(dir) ? uint32_t{1} : uint32_t{0};
}

Status CheckDataFormat(const std::string& dir, uint32_t ours, const std::string& release) {
  Result<uint32_t> f = ReadDataFormat(dir);
  if (!f.ok()) return f.status();
  if (*f <= ours) return Status::Ok();
  std::string out = "data dir " + dir + " is format " + std::to_string(*f) + ", written by a newer starlingd; this starlingd " +
                    release + " reads formats up to " + std::to_string(ours) + " and leaves the dir as it is. Run the newer release";
  std::error_code ec;
  for (uint32_t b = ours; b >= 1; --b) {
    if (fs::is_directory(fs::path(dir) / BackupName(b), ec)) {
      out += ", or go back to the copy taken before the upgrade: starlingd --data-dir " + dir + " --restore-backup " +
             BackupName(b) + " (what changed since is lost; see README, Upgrading Starling)";
      break;
    }
  }
  return Status::Conflict(out);
}

Status MigrateDataDir(store::NodeStore& store, const std::string& dir, uint32_t found, uint32_t ours,
                      const std::string& release) {
  const uint32_t from = found == 0 ? ours : found;  // a new dir starts at ours
  if (from > ours) return CheckDataFormat(dir, ours, release);
  if (from < ours) {
    const std::string backup = dir + "/" + BackupName(from);
    // An earlier start may have taken it and stopped short of the format
    // file: that copy is the one from before any step, and is kept.
    if (Status s = Backup(store, dir, from); !s.ok()) return s;
    for (uint32_t f = from; f < ours; ++f) {
      if (Status s = StepUp(store, f, release); !s.ok())
        return Status::IoError("migrating data dir " + dir + " from format " + std::to_string(f) + ": " + s.message());
    }
    spdlog::warn("data dir {} migrated from format {} to {}; an older starlingd refuses it now ({} restores the copy)",
                 dir, from, ours, backup);
  } else if (ours >= 3) {
    if (Status s = store.SaveRelease(release); !s.ok()) return s;
  }
  return found == ours ? Status::Ok() : WriteFormatFile(dir, ours);
}

Status StepDataDirDown(store::NodeStore& store, const std::string& dir, uint32_t to) {
  Result<uint32_t> found = ReadDataFormat(dir);
  if (!found.ok()) return found.status();
  if (*found <= to) return Status::Ok();
  if (to < 2) return Status::InvalidArgument("data dir format " + std::to_string(to) + " is too old to go down to");
  if (Status s = Backup(store, dir, *found); !s.ok()) return s;
  for (uint32_t f = *found; f > to; --f)
    if (Status s = StepDown(store, f); !s.ok()) return s;
  if (Status s = WriteFormatFile(dir, to); !s.ok()) return s;
  spdlog::warn("data dir {} taken down from format {} to {} for an older starlingd ({}/{} holds the copy)", dir,
               *found, to, dir, BackupName(*found));
  return Status::Ok();
}

Status RestoreBackup(const std::string& dir, const std::string& name, uint32_t ours) {
  if (name.empty() || name.find('/') != std::string::npos || name.rfind("backup-", 0) != 0)
    return Status::InvalidArgument("--restore-backup '" + name + "': name a backup-N directory in " + dir);
  const fs::path from = fs::path(dir) / name;
  std::error_code ec;
  if (!fs::is_directory(from, ec) || !fs::exists(from / "CURRENT", ec))
    return Status::NotFound("no backup " + from.string() + " (a RocksDB checkpoint with a CURRENT file)");
  Result<uint32_t> format = ReadFormatFile(from.string());
  if (!format.ok()) return format.status();
  if (*format == 0) return Status::Corruption(from.string() + " has no format file: not a backup starlingd took");
  if (*format > ours)
    return Status::Conflict(from.string() + " is format " + std::to_string(*format) +
                                      "; this starlingd reads formats up to " + std::to_string(ours));
  if (Status s = CheckStopped(dir); !s.ok()) return s;
  Result<uint32_t> current = ReadDataFormat(dir);
  if (!current.ok()) return current.status();
  // What it replaces is kept, never deleted.
  fs::path aside = fs::path(dir) / ("replaced-" + std::to_string(*current));
  for (int n = 2; fs::exists(aside, ec); ++n)
    aside = fs::path(dir) / ("replaced-" + std::to_string(*current) + "-" + std::to_string(n));
  fs::create_directory(aside, ec);
  if (ec) return Status::IoError("cannot create " + aside.string() + ": " + ec.message());
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string file = entry.path().filename().string();
    if (!entry.is_regular_file() || !(IsStoreFile(file) || file == kFormatFile || file == kKeyringFile)) continue;
    fs::rename(entry.path(), aside / file, ec);
    if (ec) return Status::IoError("cannot move " + entry.path().string() + " aside: " + ec.message());
  }
  for (const auto& entry : fs::directory_iterator(from, ec)) {
    if (!entry.is_regular_file()) continue;
    fs::copy_file(entry.path(), fs::path(dir) / entry.path().filename(), ec);
    if (ec) return Status::IoError("cannot copy " + entry.path().string() + ": " + ec.message());
  }
  // A voter's promise and the member's incarnations must not go back to
  // what the copy remembers: peers saw the later ones.
  if (Status s = CarryForward(dir, aside.string()); !s.ok()) return s;
  spdlog::info("restored {} into {} (format {}); what it replaced is in {}", from.string(), dir, *format,
               aside.string());
  return Status::Ok();
}

Result<std::string> DescribeDataDir(const std::string& dir, uint32_t ours, const std::string& release) {
  Result<uint32_t> f = ReadDataFormat(dir);
  if (!f.ok()) return f.status();
  const std::string head = "data dir " + dir + ": ";
  if (*f == 0) return head + "new; this starlingd " + release + " makes it format " + std::to_string(ours);
  if (Status s = CheckDataFormat(dir, ours, release); !s.ok()) return s;
  if (*f == ours) return head + "format " + std::to_string(ours) + ", as this starlingd " + release + " writes";
  return head + "format " + std::to_string(*f) + "; this starlingd " + release + " migrates it to format " +
         std::to_string(ours) + " at start, after copying it to " + dir + "/" + BackupName(*f);
}

}  // namespace starling::node

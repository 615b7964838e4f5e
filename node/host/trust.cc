#include "trust.h"

#include <pwd.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace starling::node {
namespace {

std::atomic<mode_t> starting_umask{022};

std::string Mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

std::string UserName(uid_t uid) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  char buf[1024];
  std::string out = "uid " + std::to_string(uid);
  if (getpwuid_r(uid, &pw, buf, sizeof buf, &found) == 0 && found) out += " (" + std::string(found->pw_name) + ")";
  return out;
}

}  // namespace

void MakeFilesOwnerOnly() { starting_umask = umask(077); }

mode_t StartingUmask() { return starting_umask; }

namespace {

// CheckTrusted, leaving what stat found in `st`.
Status Check(const std::string& path, std::string_view what, struct stat& st) {
  if (stat(path.c_str(), &st) != 0) {
    const int err = errno;
    const std::string why = std::string(what) + " " + path + ": " + std::strerror(err);
    return err == ENOENT ? Status::NotFound(why) : Status::IoError(why);
  }
  const uid_t me = geteuid();
  if (st.st_uid != me && st.st_uid != 0)
    return Status::InvalidArgument(std::string(what) + " " + path + " is owned by " + UserName(st.st_uid) +
                                   ", not by this daemon's user (" + UserName(me) +
                                   ") or root: its owner could change what the daemon reads or runs; "
                                   "chown it or choose another");
  if (st.st_mode & (S_IWGRP | S_IWOTH))
    return Status::InvalidArgument(std::string(what) + " " + path + " is writable by " +
                                   ((st.st_mode & S_IWOTH) ? "every user" : "its group") + " (mode " +
                                   Mode(st.st_mode) + "): run `chmod go-w " + path + "`");
  return Status::Ok();
}

}  // namespace

Status CheckTrusted(const std::string& path, std::string_view what) {
  struct stat st {};
  return Check(path, what, st);
}

Status SecureDataDir(const std::string& path) {
  struct stat st {};
  Status trusted = Check(path, "data dir", st);
  if (trusted.code() == Status::Code::kNotFound) return Status::Ok();  // created owner-only
  if (!trusted.ok()) return trusted;
  if (S_ISDIR(st.st_mode) && (st.st_mode & 077) && st.st_uid == geteuid()) {
    if (chmod(path.c_str(), 0700) != 0)
      return Status::IoError("data dir " + path + ": cannot make it owner-only: " + std::strerror(errno));
    spdlog::warn("data dir {} was mode {}, readable by others: made it 0700 (it holds every param of the "
                 "desired state)",
                 path, Mode(st.st_mode));
  }
  return Status::Ok();
}

}  // namespace starling::node

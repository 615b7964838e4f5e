#include "keyring_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sys/random.h>

#include "starling/store/document.h"
#include "trust.h"

namespace starling::node {
namespace {

using membership::Key;
using membership::Keyring;

constexpr size_t kMaxKeyringFileBytes = 64 << 10;

}  // namespace

std::string KeyringPath(const std::string& data_dir) { return data_dir + "/keyring"; }

Result<std::string> LoadOrMakeUiToken(const std::string& data_dir) {
  const std::string path = data_dir + "/ui-token";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd >= 0) {
    struct stat st {};
    char buf[129] = {};
    const bool statted = ::fstat(fd, &st) == 0;
    const ssize_t n = ::read(fd, buf, sizeof buf - 1);
    ::close(fd);
    std::string token(buf, n > 0 ? static_cast<size_t>(n) : 0);
    while (!token.empty() && (token.back() == '\n' || token.back() == '\r')) token.pop_back();
    // A token others could read or write is no secret: a new one replaces it.
    const bool private_file = statted && S_ISREG(st.st_mode) && st.st_uid == ::geteuid() && (st.st_mode & 077) == 0;
    if (private_file && token.size() >= 32 && token.find_first_not_of("0123456789abcdef") == std::string::npos)
      return token;
  } else if (errno != ENOENT) {
    return Status::IoError("cannot read " + path + ": " + std::strerror(errno));
  }
  unsigned char raw[32];
  if (::getrandom(raw, sizeof raw, 0) != static_cast<ssize_t>(sizeof raw))
    return Status::IoError(std::string("cannot make a console token: ") + std::strerror(errno));
  std::string token;
  static const char* kHex = "0123456789abcdef";
  for (unsigned char c : raw) {
    token.push_back(kHex[c >> 4]);
    token.push_back(kHex[c & 15]);
  }
  if (Status s = WriteSecretFile(path, token + "\n", "the console token"); !s.ok()) return s;
  return token;
}

Result<Key> ReadClusterKeyFile(const std::string& path) {
  const std::string what = "--encrypt-file " + path;
  if (Status s = CheckTrusted(path, "--encrypt-file"); !s.ok()) return s;
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    return Status::InvalidArgument(what + ": " + std::strerror(err) +
                                   (err == EACCES ? " (this daemon runs as uid " + std::to_string(::geteuid()) +
                                                        ": the file must be its own, mode 0600)"
                                                  : ""));
  }
  struct stat st {};
  char buf[1025] = {};
  const bool statted = ::fstat(fd, &st) == 0;
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (!statted || !S_ISREG(st.st_mode)) return Status::InvalidArgument(what + " is not a regular file");
  if (st.st_mode & 077) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Status::InvalidArgument(what + " is readable by " + ((st.st_mode & 007) ? "every user" : "its group") +
                                   " (mode " + mode + "): the cluster key must be owner-only; run `chmod 600 " +
                                   path + "`");
  }
  if (n < 0) return Status::IoError(what + ": " + std::strerror(errno));
  if (static_cast<size_t>(n) >= sizeof buf - 1) return Status::InvalidArgument(what + " is over 1 KiB: not a key");
  std::string text(buf, static_cast<size_t>(n));
  while (!text.empty() && std::strchr(" \t\r\n", text.back()) != nullptr) text.pop_back();
  Result<Key> key = Keyring::ParseKey(text);
  if (!key.ok()) return Status::InvalidArgument(what + ": " + key.status().message());
  return key;
}

Result<std::optional<Keyring>> LoadKeyring(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (errno == ENOENT) return std::optional<Keyring>();
    return Status::IoError("cannot read the keyring " + path + ": " + std::strerror(errno));
  }
  std::string text(kMaxKeyringFileBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxKeyringFileBytes) return Status::Corruption("the keyring " + path + " is too large");
  store::Json doc = store::Json::parse(text, nullptr, false);
  auto bad = [&](const std::string& why) { return Status::Corruption("the keyring " + path + " " + why); };
  if (doc.is_discarded() || !doc.is_object()) return bad("is not a JSON object");
  auto it = doc.find("keys");
  if (it == doc.end() || !it->is_array() || it->empty()) return bad("has no \"keys\" list");
  Keyring ring;
  size_t i = 0;
  for (const auto& k : *it) {
    if (!k.is_string()) return bad("has a key that is not a string (entry " + std::to_string(i) + ")");
    auto key = Keyring::ParseKey(k.get<std::string>());
    if (!key.ok()) return bad("entry " + std::to_string(i) + ": " + key.status().message());
    if (Status s = ring.Install(*key); !s.ok()) return bad(s.message());
    ++i;
  }
  return std::optional<Keyring>(std::move(ring));
}

Status SaveKeyring(const std::string& path, const Keyring& ring) {
  store::Json doc = {{"keys", store::Json::array()}};
  for (const Key& k : ring.keys()) doc["keys"].push_back(Keyring::FormatKey(k));
  const std::string text = doc.dump(2) + "\n";
  return WriteSecretFile(path, text, "the keyring");
}

Status WriteSecretFile(const std::string& path, const std::string& text, const std::string& what) {
  const std::string tmp = path + ".tmp";
  auto fail = [&](const std::string& doing) {
    Status s = Status::IoError(doing + " " + tmp + ": " + std::strerror(errno));
    ::unlink(tmp.c_str());
    return s;
  };
  // Owner-only from the start: a secret must never be readable by others,
  // not even for the moment between create and chmod.
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Status::IoError("cannot write " + what + " " + tmp + ": " + std::strerror(errno));
  if (::fchmod(fd, 0600) != 0 || ::write(fd, text.data(), text.size()) != static_cast<ssize_t>(text.size()) ||
      ::fsync(fd) != 0) {
    ::close(fd);
    return fail("cannot write " + what);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return fail("cannot replace " + what + " with");
  // The rename itself must survive a crash.
  const std::string dir = path.substr(0, path.find_last_of('/') == std::string::npos ? 0 : path.find_last_of('/'));
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

}  // namespace starling::node

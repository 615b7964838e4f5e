#include "api_client.h"

#include <pwd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace starling::cli {
namespace {

// A members list of thousands of nodes is a few hundred KiB.
constexpr uint32_t kMaxReplyBytes = 64u << 20;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

std::string Hint() { return " (is the daemon running? set --socket or STARLING_SOCKET)"; }

std::string IoFailure(const std::string& path, const char* what, int err) {
  if (err == EAGAIN || err == EWOULDBLOCK)
    return "no reply from starlingd at " + path + ": timed out while " + what;
  if (err == 0) return "starlingd at " + path + " closed the connection while " + std::string(what);
  return "lost starlingd at " + path + " while " + std::string(what) + ": " + std::strerror(err);
}

// Returns 0 or the errno; 0 with a short read means the peer closed.
int ReadAll(int fd, void* buf, size_t n) {
  auto* p = static_cast<uint8_t*>(buf);
  while (n > 0) {
    ssize_t r = read(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return errno;
    if (r == 0) return -1;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return 0;
}

int WriteAll(int fd, const void* buf, size_t n) {
  const auto* p = static_cast<const uint8_t*>(buf);
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

}  // namespace

namespace {

std::string UserName(uid_t uid) {
  const passwd* pw = getpwuid(uid);
  return "uid " + std::to_string(uid) + (pw ? " (" + std::string(pw->pw_name) + ")" : "");
}

// The uid `owner` names: digits are a uid, anything else a user name.
Result<uid_t> OwnerUid(const std::string& owner) {
  if (!owner.empty() && owner.find_first_not_of("0123456789") == std::string::npos && owner.size() < 10)
    return static_cast<uid_t>(std::strtoul(owner.c_str(), nullptr, 10));
  const passwd* pw = getpwnam(owner.c_str());
  if (!pw) return Status::InvalidArgument("--socket-owner: no user named '" + owner + "' on this machine");
  return pw->pw_uid;
}

// The system user the Debian package runs starlingd as (packaging/postinst
// makes it): only a daemon's own account can serve a socket in its
// owner-only data dir, so talking to it is talking to the daemon.
constexpr const char* kPackageUser = "starling";
// Debian's system accounts lie below this uid (adduser.conf's LAST_SYSTEM_UID + 1).
constexpr uid_t kFirstUserUid = 1000;

std::optional<uid_t> PackageUserUid() {
  const passwd* pw = getpwnam(kPackageUser);
  if (pw == nullptr || pw->pw_uid == 0 || pw->pw_uid >= kFirstUserUid) return std::nullopt;
  return pw->pw_uid;
}

Status CheckServer(int fd, const Daemon& daemon, std::optional<uid_t> wanted) {
  ucred peer{};
  socklen_t len = sizeof peer;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0)
    return Status::Unavailable("cannot tell who serves " + daemon.socket + ": " + std::strerror(errno));
  if (wanted ? peer.uid == *wanted : (peer.uid == 0 || peer.uid == geteuid() || peer.uid == PackageUserUid()))
    return Status::Ok();
  return Status::Unavailable("refusing to talk to " + daemon.socket + ": it is served by " + UserName(peer.uid) +
                             ", which is " +
                             (wanted ? "not " + UserName(*wanted) + " (--socket-owner)"
                                     : "neither root nor you (" + UserName(geteuid()) + ") nor the system user '" +
                                           kPackageUser + "'") +
                             "; if starlingd runs as that user, say so with --socket-owner or STARLING_SOCKET_OWNER");
}

// A path that exists but is no socket is a mistake in --socket, not a daemon
// that is down: say which it is.
Status CheckIsSocket(const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0 || S_ISSOCK(st.st_mode)) return Status::Ok();
  const char* kind = S_ISDIR(st.st_mode) ? "a directory" : S_ISREG(st.st_mode) ? "a regular file" : "not a socket";
  return Status::Unavailable("--socket " + path + " is " + kind +
                             ", not a Unix socket: point --socket (or STARLING_SOCKET) at starlingd's API socket, "
                             "by default <data-dir>/starlingd.sock (`starling info` shows a node's data dir)");
}

Result<int> Connect(const Daemon& daemon, std::chrono::milliseconds timeout) {
  const std::string& socket_path = daemon.socket;
  std::optional<uid_t> wanted;
  if (!daemon.owner.empty()) {
    Result<uid_t> uid = OwnerUid(daemon.owner);
    if (!uid.ok()) return uid.status();
    wanted = *uid;
  }
  sockaddr_un addr{};
  if (socket_path.empty() || socket_path.size() >= sizeof(addr.sun_path)) {
    return Status::Unavailable("cannot reach starlingd at " + socket_path +
                               ": socket path is empty or longer than " +
                               std::to_string(sizeof(addr.sun_path) - 1) + " bytes" + Hint());
  }
  if (Status s = CheckIsSocket(socket_path); !s.ok()) return s;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::Unavailable(std::string("cannot create a socket: ") + std::strerror(errno));
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, socket_path.data(), socket_path.size());
  if (connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    int err = errno;
    close(fd);
    return Status::Unavailable("cannot reach starlingd at " + socket_path + ": " + std::strerror(err) + Hint());
  }
  if (Status s = CheckServer(fd, daemon, wanted); !s.ok()) {
    close(fd);
    return s;
  }
  return fd;
}

// The header goes with sendmsg so that `pass_fd`, when given, travels with
// its first byte (SCM_RIGHTS).
Status SendRequest(int fd, const std::string& socket_path, const std::vector<uint8_t>& request, int pass_fd) {
  size_t n = request.size();
  uint8_t header[4] = {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n >> 16),
                       static_cast<uint8_t>(n >> 24)};
  size_t sent = 0;
  if (pass_fd >= 0) {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{header, sizeof(header)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass_fd, sizeof(int));
    ssize_t w;
    do {
      w = sendmsg(fd, &msg, MSG_NOSIGNAL);
    } while (w < 0 && errno == EINTR);
    if (w <= 0) return Status::Unavailable(IoFailure(socket_path, "sending the request", w < 0 ? errno : 0));
    sent = static_cast<size_t>(w);
  }
  if (int err = WriteAll(fd, header + sent, sizeof(header) - sent); err != 0)
    return Status::Unavailable(IoFailure(socket_path, "sending the request", err));
  if (int err = WriteAll(fd, request.data(), request.size()); err != 0)
    return Status::Unavailable(IoFailure(socket_path, "sending the request", err));
  return Status::Ok();
}

// One reply frame; kUnavailable with `*closed` set when the daemon hung up
// cleanly before a frame began.
Result<std::vector<uint64_t>> ReadFrame(int fd, const std::string& socket_path, bool* closed) {
  uint8_t header[4];
  if (int err = ReadAll(fd, header, sizeof(header)); err != 0) {
    if (closed) *closed = err < 0;
    return Status::Unavailable(IoFailure(socket_path, "waiting for the reply", err < 0 ? 0 : err));
  }
  uint32_t length = static_cast<uint32_t>(header[0]) | static_cast<uint32_t>(header[1]) << 8 |
                    static_cast<uint32_t>(header[2]) << 16 | static_cast<uint32_t>(header[3]) << 24;
  if (length == 0 || length % 8 != 0 || length > kMaxReplyBytes) {
    return Status::Corruption("starlingd at " + socket_path + " sent a malformed reply frame of " +
                              std::to_string(length) + " bytes");
  }
  std::vector<uint64_t> reply(length / 8);
  if (int err = ReadAll(fd, reply.data(), length); err != 0)
    return Status::Unavailable(IoFailure(socket_path, "reading the reply", err < 0 ? 0 : err));
  return reply;
}

}  // namespace

Result<std::vector<uint64_t>> Exchange(const Daemon& daemon, const std::vector<uint8_t>& request,
                                       std::chrono::milliseconds timeout, int pass_fd) {
  const std::string& socket_path = daemon.socket;
  Result<int> connected = Connect(daemon, timeout);
  if (!connected.ok()) return connected.status();
  Fd fd(*connected);
  if (Status s = SendRequest(fd.get(), socket_path, request, pass_fd); !s.ok()) {
    // The daemon answers a request it refuses from its header alone (one
    // over the size limit) and hangs up: its reason beats "Broken pipe".
    Result<std::vector<uint64_t>> early = ReadFrame(fd.get(), socket_path, nullptr);
    return early.ok() ? early : Result<std::vector<uint64_t>>(s);
  }
  return ReadFrame(fd.get(), socket_path, nullptr);
}

Status Stream(const Daemon& daemon, const std::vector<uint8_t>& request,
              std::chrono::milliseconds timeout, const std::function<bool(std::vector<uint64_t>)>& on_frame) {
  const std::string& socket_path = daemon.socket;
  Result<int> connected = Connect(daemon, timeout);
  if (!connected.ok()) return connected.status();
  Fd fd(*connected);
  if (Status s = SendRequest(fd.get(), socket_path, request, -1); !s.ok()) return s;
  for (bool first = true;; first = false) {
    bool closed = false;
    Result<std::vector<uint64_t>> frame = ReadFrame(fd.get(), socket_path, &closed);
    if (!frame.ok()) return closed && !first ? Status::Ok() : frame.status();
    if (first) {
      timeval none{};  // then wait as long as the stream lasts
      setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &none, sizeof(none));
    }
    if (!on_frame(std::move(frame).value())) return Status::Ok();
  }
}

}  // namespace starling::cli

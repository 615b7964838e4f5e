#include "api_server.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <deque>
#include <asio/io_context.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <cerrno>
#include <cstring>
#include <vector>

#include "connection_slots.h"
#include "guard.h"

namespace starling::node {
namespace {

using asio::local::stream_protocol;
using namespace std::chrono_literals;

// A client has this long to send its request...
constexpr auto kRequestTimeout = 5s;
// ...and the daemon this long to answer it (a join waits on its seeds).
constexpr auto kReplyTimeout = 60s;
constexpr int kMaxConnections = 32;

}  // namespace

OpenFile AdoptFile(int fd) {
  return OpenFile(new int(fd), [](const int* p) {
    ::close(*p);
    delete p;
  });
}

struct ApiServer::Rep : std::enable_shared_from_this<ApiServer::Rep> {
  Rep(asio::io_context& io_in, ErrorReply error_reply_in)
      : io(io_in), acceptor(io_in), accept_retry(io_in), error_reply(std::move(error_reply_in)) {}
  void StartAccept();

  asio::io_context& io;
  stream_protocol::acceptor acceptor;
  asio::steady_timer accept_retry;
  ErrorReply error_reply;
  Handler handler;
  std::string path;
  bool listening = false;
  bool closed = false;
  std::shared_ptr<ConnectionSlots> slots =
      std::make_shared<ConnectionSlots>("api", kMaxConnections, kMaxConnections / 2);
};

namespace {

class ApiConnection : public std::enable_shared_from_this<ApiConnection> {
 public:
  ApiConnection(std::shared_ptr<ApiServer::Rep> server, stream_protocol::socket socket)
      : server_(std::move(server)), socket_(std::move(socket)), deadline_(socket_.get_executor()) {}
  ~ApiConnection() { server_->slots->Release(id_); }

  void Start(uint64_t id) {
    id_ = id;
    Arm(kRequestTimeout);
    WaitForHeader();
  }
  void Stop() {
    std::error_code ignored;
    socket_.close(ignored);
    deadline_.cancel();
  }

 private:
  void Arm(std::chrono::seconds timeout) {
    deadline_.expires_after(timeout);
    deadline_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (ec) return;
      spdlog::debug("api: connection timed out");
      // Before the request is whole: an idle client, or a slow one.
      if (!self->dispatched_) self->server_->slots->Count(self->got_header_ ? "timeout" : "idle");
      self->Stop();
    });
  }

  // The header is read with recvmsg, not asio, because a file the client
  // passes (SCM_RIGHTS) arrives with its first byte.
  void WaitForHeader() {
    socket_.async_wait(stream_protocol::socket::wait_read, [self = shared_from_this()](const std::error_code& ec) {
      if (ec) return self->Stop();
      self->ReadHeader();
    });
  }

  void ReadHeader() {
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{header_.data(), header_.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(socket_.native_handle(), &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return WaitForHeader();
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
        // One file per request; any more are closed unread.
        if (file_ == nullptr) {
          file_ = AdoptFile(fd);
        } else {
          ::close(fd);
        }
      }
    }
    if (n <= 0 || (msg.msg_flags & MSG_CTRUNC) != 0) return Stop();
    got_header_ = true;
    if (static_cast<size_t>(n) == header_.size()) return ReadBody();
    asio::async_read(socket_, asio::buffer(header_.data() + n, header_.size() - static_cast<size_t>(n)),
                     [self = shared_from_this()](const std::error_code& ec, size_t) {
                       if (ec) return self->Stop();
                       self->ReadBody();
                     });
  }

  void ReadBody() {
    uint32_t length = static_cast<uint32_t>(header_[0]) | static_cast<uint32_t>(header_[1]) << 8 |
                      static_cast<uint32_t>(header_[2]) << 16 | static_cast<uint32_t>(header_[3]) << 24;
    if (length > ApiServer::kMaxRequestBytes) {
      server_->slots->Count("too_large");
      return Send(server_->error_reply("request of " + std::to_string(length) + " bytes exceeds the " +
                                       std::to_string(ApiServer::kMaxRequestBytes) + "-byte limit"));
    }
    body_.resize((length + sizeof(uint64_t) - 1) / sizeof(uint64_t));
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(body_.data(), length),
                     [self, length](const std::error_code& ec, size_t) {
                       if (ec) return self->Stop();
                       self->Dispatch(length);
                     });
  }

  void Dispatch(uint32_t length) {
    dispatched_ = true;
    server_->slots->Waiting(id_, false);
    Arm(kReplyTimeout);
    std::weak_ptr<ApiConnection> weak = shared_from_this();
    ApiServer::Respond respond = [weak](Bytes reply) {
      if (auto self = weak.lock()) self->Send(std::move(reply));
    };
    ApiServer::Push push = [weak](Bytes frame) {
      auto self = weak.lock();
      return self && self->Push(std::move(frame));
    };
    ByteView request(reinterpret_cast<const uint8_t*>(body_.data()), length);
    bool threw = true;
    RunGuarded("api handler", [&] {
      server_->handler(request, std::move(respond), std::move(push), file_);
      threw = false;
    });
    // The client gets an answer even when the handler failed.
    if (threw) Send(server_->error_reply("internal error in starlingd while handling the request (see its log)"));
  }

  void Send(Bytes reply) {
    if (replied_ || streaming_ || !socket_.is_open()) return;
    replied_ = true;
    reply_ = std::move(reply);
    size_t n = reply_.size();
    header_ = {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n >> 16),
               static_cast<uint8_t>(n >> 24)};
    std::array<asio::const_buffer, 2> frame = {asio::buffer(header_), asio::buffer(reply_)};
    asio::async_write(socket_, frame,
                      [self = shared_from_this()](const std::error_code&, size_t) { self->Stop(); });
  }

  bool Push(Bytes frame) {
    if (replied_ || !socket_.is_open()) return false;
    if (!streaming_) {
      streaming_ = true;
      deadline_.cancel();
      // The client says nothing more; a read ends when it hangs up.
      asio::async_read(socket_, asio::buffer(hangup_),
                       [self = shared_from_this()](const std::error_code&, size_t) { self->Stop(); });
    }
    if (outbox_.size() >= kMaxQueuedFrames) {
      spdlog::warn("api: a monitor is {} frames behind; closing it", outbox_.size());
      Stop();
      return false;
    }
    outbox_.push_back(std::move(frame));
    if (!writing_) WriteNext();
    return true;
  }

  void WriteNext() {
    if (outbox_.empty() || !socket_.is_open()) {
      writing_ = false;
      return;
    }
    writing_ = true;
    current_ = std::move(outbox_.front());
    outbox_.pop_front();
    size_t n = current_.size();
    frame_header_ = {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n >> 16),
                     static_cast<uint8_t>(n >> 24)};
    std::array<asio::const_buffer, 2> frame = {asio::buffer(frame_header_), asio::buffer(current_)};
    asio::async_write(socket_, frame, [self = shared_from_this()](const std::error_code& ec, size_t) {
      if (ec) return self->Stop();
      self->WriteNext();
    });
  }

  std::shared_ptr<ApiServer::Rep> server_;
  uint64_t id_ = 0;
  bool got_header_ = false, dispatched_ = false;
  stream_protocol::socket socket_;
  asio::steady_timer deadline_;
  std::array<uint8_t, 4> header_{};
  OpenFile file_;
  std::vector<uint64_t> body_;  // 8-byte aligned: Cap'n Proto reads words in place
  Bytes reply_;
  bool replied_ = false;
  // Streaming.
  static constexpr size_t kMaxQueuedFrames = 10000;
  bool streaming_ = false, writing_ = false;
  std::deque<Bytes> outbox_;
  Bytes current_;
  std::array<uint8_t, 4> frame_header_{};
  std::array<uint8_t, 1> hangup_{};
};

}  // namespace

void ApiServer::Rep::StartAccept() {
  acceptor.async_accept(
      [self = shared_from_this()](const std::error_code& ec, stream_protocol::socket socket) {
        if (self->closed || ec == asio::error::operation_aborted) return;
        if (ec) {
          spdlog::warn("api: accept on {}: {}", self->path, ec.message());
          self->accept_retry.expires_after(100ms);
          self->accept_retry.async_wait([self](const std::error_code& ec) {
            if (!ec && !self->closed) self->StartAccept();
          });
          return;
        }
        // Past the cap, the client that has waited longest to send its
        // request goes, so that a CLI call gets in.
        // A local user other than root is one source: at most half the slots.
        ucred peer{};
        socklen_t len = sizeof peer;
        const bool known = getsockopt(socket.native_handle(), SOL_SOCKET, SO_PEERCRED, &peer, &len) == 0;
        const std::string source = known && peer.uid != 0 ? "uid " + std::to_string(peer.uid) : "";
        auto c = std::make_shared<ApiConnection>(self, std::move(socket));
        const uint64_t id = self->slots->Admit(
            [weak = std::weak_ptr<ApiConnection>(c)] {
              if (auto conn = weak.lock()) conn->Stop();
            },
            source);
        if (id == 0) {
          c->Stop();
        } else {
          c->Start(id);
        }
        self->StartAccept();
      });
}

ApiServer::ApiServer(asio::io_context& io, ErrorReply error_reply)
    : rep_(std::make_shared<Rep>(io, std::move(error_reply))) {}

ApiServer::~ApiServer() { Close(); }

Status ApiServer::Listen(const std::string& path, std::optional<unsigned> group) {
  Rep& r = *rep_;
  if (path.size() >= sizeof(sockaddr_un::sun_path)) {
    return Status::InvalidArgument("socket path " + path + " is too long (" + std::to_string(path.size()) +
                                   " bytes; the limit is " +
                                   std::to_string(sizeof(sockaddr_un::sun_path) - 1) + ")");
  }
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      return Status::InvalidArgument("socket path " + path + " exists and is not a socket");
    }
    std::error_code ec;
    stream_protocol::socket probe(r.io);
    probe.connect(stream_protocol::endpoint(path), ec);
    if (!ec) return Status::Conflict("another starlingd is already serving on " + path);
    // Nobody answers: a leftover of a daemon that did not exit cleanly.
    if (unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Status::IoError("cannot remove stale socket " + path + ": " + std::strerror(errno));
    }
  }
  std::error_code ec;
  r.acceptor.open(stream_protocol(), ec);
  if (!ec) {
    // Closes the window between bind and chmod in which others could connect.
    mode_t old_mask = umask(0177);  // owner-only; the group gets its access after the chown
    r.acceptor.bind(stream_protocol::endpoint(path), ec);
    umask(old_mask);
  }
  if (ec) {
    std::error_code ignored;
    r.acceptor.close(ignored);
    return Status::IoError("cannot listen on socket " + path + ": " + ec.message());
  }
  r.path = path;
  r.listening = true;
  // The socket's mode is the API's access control.
  if (group && chown(path.c_str(), static_cast<uid_t>(-1), static_cast<gid_t>(*group)) != 0) {
    return Status::IoError("cannot give socket " + path + " to group " + std::to_string(*group) + ": " +
                           std::strerror(errno));
  }
  if (chmod(path.c_str(), group ? 0660 : 0600) != 0) {
    return Status::IoError("cannot chmod socket " + path + ": " + std::strerror(errno));
  }
  r.acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return Status::IoError("cannot listen on socket " + path + ": " + ec.message());
  return Status::Ok();
}

void ApiServer::Start(Handler handler) {
  rep_->handler = std::move(handler);
  rep_->StartAccept();
}

size_t ApiServer::open() const { return rep_->slots->open(); }
std::map<std::string, uint64_t> ApiServer::refused() const { return rep_->slots->refused(); }

void ApiServer::Close() {
  Rep& r = *rep_;
  if (r.closed) return;
  r.closed = true;
  std::error_code ignored;
  r.acceptor.close(ignored);
  r.accept_retry.cancel();
  if (r.listening) unlink(r.path.c_str());
}

}  // namespace starling::node

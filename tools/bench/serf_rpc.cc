#include "serf_rpc.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace starling::bench {

using namespace std::chrono_literals;

namespace {

constexpr auto kReplyTimeout = 10s;

// The agent's codec may write strings as str or as raw bytes.
std::string Text(const msgpack::object& o) {
  if (o.type == msgpack::type::STR) return std::string(o.via.str.ptr, o.via.str.size);
  if (o.type == msgpack::type::BIN) return std::string(o.via.bin.ptr, o.via.bin.size);
  return {};
}

const msgpack::object* Field(const msgpack::object& map, std::string_view key) {
  if (map.type != msgpack::type::MAP) return nullptr;
  for (uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (Text(kv.key) == key) return &kv.val;
  }
  return nullptr;
}

}  // namespace

std::optional<SerfRpc> SerfRpc::Connect(const std::string& addr, std::chrono::milliseconds timeout,
                                        std::string* error) {
  auto fail = [&](const std::string& why) -> std::optional<SerfRpc> {
    if (error) *error = addr + ": " + why;
    return std::nullopt;
  };
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) return fail("expected HOST:PORT");
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
  if (inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr) != 1) return fail("not an IPv4 address");
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(std::strerror(errno));
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    std::string why = std::strerror(errno);
    close(fd);
    return fail(why);
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  SerfRpc c(fd);
  if (!c.Send("handshake", [](auto& pk) {
        pk.pack_map(1);
        pk.pack(std::string("Version"));
        pk.pack(1);
      }) ||
      !c.ReadHeader(c.seq_, timeout))
    return fail("handshake: " + c.error_);
  return c;
}

SerfRpc::SerfRpc(SerfRpc&& o) noexcept
    : fd_(o.fd_), seq_(o.seq_), broken_(o.broken_), error_(std::move(o.error_)), unpacker_(std::move(o.unpacker_)) {
  o.fd_ = -1;
}

SerfRpc& SerfRpc::operator=(SerfRpc&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) close(fd_);
    fd_ = o.fd_;
    seq_ = o.seq_;
    broken_ = o.broken_;
    error_ = std::move(o.error_);
    unpacker_ = std::move(o.unpacker_);
    o.fd_ = -1;
  }
  return *this;
}

SerfRpc::~SerfRpc() {
  if (fd_ >= 0) close(fd_);
}

bool SerfRpc::Send(const std::string& command,
                   const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& body) {
  if (broken_) return false;
  msgpack::sbuffer buf;
  msgpack::packer<msgpack::sbuffer> pk(buf);
  pk.pack_map(2);
  pk.pack(std::string("Command"));
  pk.pack(command);
  pk.pack(std::string("Seq"));
  pk.pack(++seq_);
  if (body) body(pk);
  const char* p = buf.data();
  size_t left = buf.size();
  while (left > 0) {
    ssize_t n = ::send(fd_, p, left, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      error_ = std::string("send: ") + std::strerror(errno);
      return false;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return true;
}

std::optional<msgpack::object_handle> SerfRpc::Next(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    msgpack::object_handle oh;
    try {
      if (unpacker_->next(oh)) return oh;
    } catch (const std::exception& e) {
      broken_ = true;
      error_ = std::string("bad msgpack from the agent: ") + e.what();
      return std::nullopt;
    }
    if (broken_) return std::nullopt;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd pfd{fd_, POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (r == 0) {
      if (timeout.count() > 0) error_ = "no reply in time";
      return std::nullopt;
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      broken_ = true;
      error_ = std::string("poll: ") + std::strerror(errno);
      return std::nullopt;
    }
    unpacker_->reserve_buffer(64 * 1024);
    ssize_t n = ::recv(fd_, unpacker_->buffer(), unpacker_->buffer_capacity(), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      broken_ = true;
      error_ = n == 0 ? "the agent closed the connection" : std::string("recv: ") + std::strerror(errno);
      return std::nullopt;
    }
    unpacker_->buffer_consumed(static_cast<size_t>(n));
  }
}

bool SerfRpc::ReadHeader(uint64_t seq, std::chrono::milliseconds timeout) {
  auto h = Next(timeout);
  if (!h) return false;
  const msgpack::object& o = h->get();
  const auto* s = Field(o, "Seq");
  const auto* e = Field(o, "Error");
  if (!s || s->type != msgpack::type::POSITIVE_INTEGER || s->via.u64 != seq) {
    error_ = "reply out of order";
    broken_ = true;
    return false;
  }
  if (e && !Text(*e).empty()) {
    error_ = Text(*e);
    return false;
  }
  return true;
}

std::optional<std::vector<SerfMember>> SerfRpc::Members() {
  if (!Send("members", nullptr) || !ReadHeader(seq_, kReplyTimeout)) return std::nullopt;
  auto body = Next(kReplyTimeout);
  if (!body) return std::nullopt;
  const auto* list = Field(body->get(), "Members");
  if (!list || list->type != msgpack::type::ARRAY) {
    error_ = "members reply without Members";
    return std::nullopt;
  }
  std::vector<SerfMember> out;
  for (uint32_t i = 0; i < list->via.array.size; ++i) {
    const auto& m = list->via.array.ptr[i];
    const auto* name = Field(m, "Name");
    const auto* status = Field(m, "Status");
    if (name && status) out.push_back({Text(*name), Text(*status)});
  }
  return out;
}

std::optional<int> SerfRpc::Join(const std::vector<std::string>& seeds) {
  if (!Send("join", [&](auto& pk) {
        pk.pack_map(2);
        pk.pack(std::string("Existing"));
        pk.pack(seeds);
        pk.pack(std::string("Replay"));
        pk.pack(false);
      }) ||
      !ReadHeader(seq_, kReplyTimeout))
    return std::nullopt;
  auto body = Next(kReplyTimeout);
  if (!body) return std::nullopt;
  const auto* num = Field(body->get(), "Num");
  if (!num || num->type != msgpack::type::POSITIVE_INTEGER) return 0;
  return static_cast<int>(num->via.u64);
}

bool SerfRpc::Event(const std::string& name, const std::string& payload, bool coalesce) {
  return Send("event",
              [&](auto& pk) {
                pk.pack_map(3);
                pk.pack(std::string("Name"));
                pk.pack(name);
                pk.pack(std::string("Payload"));
                pk.pack_bin(static_cast<uint32_t>(payload.size()));
                pk.pack_bin_body(payload.data(), static_cast<uint32_t>(payload.size()));
                pk.pack(std::string("Coalesce"));
                pk.pack(coalesce);
              }) &&
         ReadHeader(seq_, kReplyTimeout);
}

bool SerfRpc::SendLeave() { return Send("leave", nullptr); }

bool SerfRpc::Stream(const std::string& type) {
  return Send("stream",
              [&](auto& pk) {
                pk.pack_map(1);
                pk.pack(std::string("Type"));
                pk.pack(type);
              }) &&
         ReadHeader(seq_, kReplyTimeout);
}

bool SerfRpc::DrainUserEvents(const std::function<void(const std::string&)>& on_event) {
  // Each event is a header and a record; a record may still be on its way
  // when its header has arrived.
  for (;;) {
    auto h = Next(0ms);
    if (!h) return !broken_;
    auto body = Next(kReplyTimeout);
    if (!body) return false;
    const msgpack::object& o = body->get();
    const auto* ev = Field(o, "Event");
    const auto* name = Field(o, "Name");
    if (ev && name && Text(*ev) == "user") on_event(Text(*name));
  }
}

}  // namespace starling::bench

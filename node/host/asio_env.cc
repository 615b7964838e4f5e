// Asio-backed Clock and Transport.
//
// Lifetime: each pending operation holds a shared_ptr to the state it uses
// (a connection) or a weak_ptr to the long-lived state (clock, transport), so
// a handler that runs after Close() finds the `closed` flag or an expired
// pointer instead of freed memory. Handlers still queued when the io_context
// is destroyed are destroyed without running.
#include "asio_env.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/ip/udp.hpp>
#include <asio/post.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>
#include <unordered_map>
#include <vector>

#include "connection_slots.h"
#include "guard.h"

namespace starling::node {
namespace {

using asio::ip::tcp;
using asio::ip::udp;

// The largest UDP payload; a smaller buffer would silently truncate.
constexpr size_t kMaxDatagram = 65536;
// Inbound push-pulls are rare; more than this at once is a flood.
constexpr int kMaxInboundStreams = 64;
// Hostname resolutions are cached; bound the cache against address churn.
constexpr size_t kMaxResolved = 4096;
// A name that failed to resolve is not tried again before this.
constexpr auto kResolveRetry = std::chrono::seconds(30);
constexpr int kPickPortTries = 10;

std::string FormatEndpoint(const asio::ip::address& address, uint16_t port) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return FormatHostPort(asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string(), port);
  }
  return FormatHostPort(address.to_string(), port);
}

uint32_t ReadLength(const std::array<uint8_t, 4>& h) {
  return static_cast<uint32_t>(h[0]) | static_cast<uint32_t>(h[1]) << 8 | static_cast<uint32_t>(h[2]) << 16 |
         static_cast<uint32_t>(h[3]) << 24;
}

std::array<uint8_t, 4> WriteLength(size_t n) {
  return {static_cast<uint8_t>(n), static_cast<uint8_t>(n >> 8), static_cast<uint8_t>(n >> 16),
          static_cast<uint8_t>(n >> 24)};
}

}  // namespace

// ---------------------------------------------------------------- AsioClock

struct AsioClock::Rep {
  explicit Rep(asio::io_context& io_in) : io(io_in), start(std::chrono::steady_clock::now()) {}
  asio::io_context& io;
  std::chrono::steady_clock::time_point start;
  TimerId next_id = 1;
  std::unordered_map<TimerId, std::unique_ptr<asio::steady_timer>> timers;
};

AsioClock::AsioClock(asio::io_context& io) : rep_(std::make_shared<Rep>(io)) {}

AsioClock::~AsioClock() {
  for (auto& [id, timer] : rep_->timers) timer->cancel();
}

int64_t AsioClock::WallMicros() const {
  return std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Time AsioClock::Now() const {
  return std::chrono::duration_cast<Time>(std::chrono::steady_clock::now() - rep_->start);
}

Clock::TimerId AsioClock::Schedule(Duration after, std::function<void()> fn) {
  TimerId id = rep_->next_id++;
  auto timer = std::make_unique<asio::steady_timer>(rep_->io, std::max(after, Duration::zero()));
  timer->async_wait([weak = std::weak_ptr<Rep>(rep_), id, fn = std::move(fn)](const std::error_code& ec) {
    std::shared_ptr<Rep> rep = weak.lock();
    if (!rep || ec) return;
    // Absent: cancelled after it expired but before this handler ran.
    if (rep->timers.erase(id) == 0) return;
    RunGuarded("timer", fn);
  });
  rep_->timers.emplace(id, std::move(timer));
  return id;
}

void AsioClock::Cancel(TimerId id) {
  auto it = rep_->timers.find(id);
  if (it == rep_->timers.end()) return;
  it->second->cancel();
  rep_->timers.erase(it);
}

// ---------------------------------------------------------- UdpTcpTransport

struct UdpTcpTransport::Rep : std::enable_shared_from_this<UdpTcpTransport::Rep> {
  Rep(asio::io_context& io_in, size_t max_bytes, Duration timeout)
      : io(io_in),
        udp_socket(io_in),
        acceptor(io_in),
        accept_retry(io_in),
        max_stream_bytes(max_bytes),
        inbound_timeout(timeout),
        recv_buf(kMaxDatagram / sizeof(uint64_t)) {}

  void StartReceive();
  void StartAccept();
  Result<udp::endpoint> Resolve(const std::string& addr);

  asio::io_context& io;
  udp::socket udp_socket;
  tcp::acceptor acceptor;
  asio::steady_timer accept_retry;
  size_t max_stream_bytes;
  Duration inbound_timeout;
  std::vector<uint64_t> recv_buf;  // 8-byte aligned: Cap'n Proto reads words in place
  udp::endpoint recv_from;
  PacketHandler on_packet;
  StreamHandler on_stream;
  std::unordered_map<std::string, udp::endpoint> resolved;
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> unresolvable;  // until when
  uint16_t port = 0;
  bool started = false;
  bool closed = false;
  std::shared_ptr<ConnectionSlots> inbound =
      std::make_shared<ConnectionSlots>("gossip", kMaxInboundStreams, kMaxInboundStreams / 2);
  // Bytes of inbound requests read and not yet answered, over every stream:
  // a frame's buffer grows as its bytes arrive, never to the length its
  // (unauthenticated) header announces.
  size_t held_bytes = 0;
};

namespace {

// One inbound exchange: read a request frame, answer with one reply frame.
class InboundStream : public std::enable_shared_from_this<InboundStream> {
 public:
  using TransportRep = UdpTcpTransport::Rep;
  InboundStream(std::shared_ptr<TransportRep> transport, tcp::socket socket)
      : transport_(std::move(transport)), socket_(std::move(socket)), deadline_(socket_.get_executor()) {
    std::error_code ec;
    tcp::endpoint peer = socket_.remote_endpoint(ec);
    from_ = ec ? std::string("unknown") : FormatEndpoint(peer.address(), peer.port());
  }
  ~InboundStream() {
    transport_->inbound->Release(id_);
    transport_->held_bytes -= held_;
  }

  void Start(uint64_t id) {
    id_ = id;
    auto self = shared_from_this();
    deadline_.expires_after(transport_->inbound_timeout);
    deadline_.async_wait([self](const std::error_code& ec) {
      if (ec) return;
      spdlog::debug("stream from {}: timed out", self->from_);
      // Nothing of a frame is an idle client; part of one, a slow one.
      if (!self->answering_) self->transport_->inbound->Count(self->read_header_ ? "timeout" : "idle");
      self->Stop();
    });
    asio::async_read(socket_, asio::buffer(header_), [self](const std::error_code& ec, size_t) {
      if (ec) return self->Stop();
      self->read_header_ = true;
      self->ReadBody();
    });
  }
  void Stop() {
    std::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    deadline_.cancel();
  }

 private:
  // Reads start small and double: what a client makes us hold is about what
  // it has sent.
  static constexpr size_t kFirstReadBytes = 4 << 10;
  static constexpr size_t kMaxReadBytes = 1 << 20;
  static constexpr size_t kMaxHeldBytes = 64 << 20;

  void ReadBody() {
    length_ = ReadLength(header_);
    if (length_ == 0 || length_ > transport_->max_stream_bytes) {
      spdlog::debug("stream from {}: refused a frame of {} bytes (limit {})", from_, length_,
                    transport_->max_stream_bytes);
      transport_->inbound->Count(length_ == 0 ? "malformed" : "too_large");
      return Stop();
    }
    ReadChunk();
  }

  void ReadChunk() {
    const size_t want = std::min({std::clamp(got_, kFirstReadBytes, kMaxReadBytes), length_ - got_});
    if (transport_->held_bytes + want > kMaxHeldBytes) {
      spdlog::debug("stream from {}: {} bytes of requests already held; refused", from_, transport_->held_bytes);
      transport_->inbound->Count("too_large");
      return Stop();
    }
    transport_->held_bytes += want;
    held_ += want;
    body_.resize((got_ + want + sizeof(uint64_t) - 1) / sizeof(uint64_t));
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(reinterpret_cast<uint8_t*>(body_.data()) + got_, want),
                     [self](const std::error_code& ec, size_t n) {
                       if (ec) return self->Stop();
                       self->got_ += n;
                       if (self->got_ < self->length_) return self->ReadChunk();
                       self->transport_->inbound->Waiting(self->id_, false);
                       self->answering_ = true;
                       self->Answer(static_cast<uint32_t>(self->length_));
                     });
  }

  void Answer(uint32_t length) {
    if (transport_->closed) return Stop();
    auto self = shared_from_this();
    RunGuarded("stream handler", [&] {
      transport_->on_stream(from_, ByteView(reinterpret_cast<const uint8_t*>(body_.data()), length),
                            [self](Bytes reply) { self->Reply(std::move(reply)); });
    });
  }

  void Reply(Bytes reply) {
    // Past the deadline, or the transport closed, while the answer was made.
    if (replied_) return;  // once; a second call would cut the write short
    replied_ = true;
    if (!socket_.is_open() || transport_->closed) return Stop();
    if (reply.empty()) return Stop();
    if (reply.size() > UINT32_MAX) {
      spdlog::error("stream to {}: reply of {} bytes cannot be framed", from_, reply.size());
      return Stop();
    }
    header_ = WriteLength(reply.size());
    reply_ = std::move(reply);
    std::array<asio::const_buffer, 2> frame = {asio::buffer(header_), asio::buffer(reply_)};
    auto self = shared_from_this();
    asio::async_write(socket_, frame, [self](const std::error_code&, size_t) { self->Stop(); });
  }

  std::shared_ptr<TransportRep> transport_;
  tcp::socket socket_;
  asio::steady_timer deadline_;
  std::string from_;
  uint64_t id_ = 0;
  size_t length_ = 0, got_ = 0, held_ = 0;
  bool read_header_ = false, answering_ = false;
  bool replied_ = false;
  std::array<uint8_t, 4> header_{};
  std::vector<uint64_t> body_;
  Bytes reply_;
};

// One outbound exchange under a single deadline; `done` runs exactly once,
// always through asio::post.
class OutboundStream : public std::enable_shared_from_this<OutboundStream> {
 public:
  OutboundStream(asio::io_context& io, std::string addr, Bytes request, size_t max_reply,
                 Transport::StreamDone done)
      : io_(io),
        socket_(io),
        deadline_(io),
        addr_(std::move(addr)),
        request_(std::move(request)),
        max_reply_(max_reply),
        done_(std::move(done)) {}

  void Start(const tcp::endpoint& endpoint, Duration timeout) {
    auto self = shared_from_this();
    deadline_.expires_after(timeout);
    deadline_.async_wait([self](const std::error_code& ec) {
      if (ec) return;
      self->Finish(Status::Unavailable("stream to " + self->addr_ + " timed out"));
    });
    header_ = WriteLength(request_.size());
    socket_.async_connect(endpoint, [self](const std::error_code& ec) {
      if (ec) return self->Fail("connect", ec);
      std::array<asio::const_buffer, 2> frame = {asio::buffer(self->header_), asio::buffer(self->request_)};
      asio::async_write(self->socket_, frame, [self](const std::error_code& ec, size_t) {
        if (ec) return self->Fail("write", ec);
        self->ReadReply();
      });
    });
  }

  void Finish(Result<Bytes> result) {
    if (finished_) return;
    finished_ = true;
    std::error_code ignored;
    socket_.close(ignored);
    deadline_.cancel();
    asio::post(io_, [done = std::move(done_), result = std::move(result)]() mutable {
      RunGuarded("stream completion", [&] { done(std::move(result)); });
    });
  }

 private:
  void ReadReply() {
    auto self = shared_from_this();
    asio::async_read(socket_, asio::buffer(header_), [self](const std::error_code& ec, size_t) {
      if (ec) return self->Fail("read", ec);
      uint32_t length = ReadLength(self->header_);
      if (length > self->max_reply_) {
        return self->Finish(Status::Unavailable("stream to " + self->addr_ + ": reply of " +
                                                std::to_string(length) + " bytes exceeds the limit"));
      }
      self->reply_.resize(length);
      asio::async_read(self->socket_, asio::buffer(self->reply_), [self](const std::error_code& ec, size_t) {
        if (ec) return self->Fail("read", ec);
        self->Finish(std::move(self->reply_));
      });
    });
  }

  void Fail(std::string_view step, const std::error_code& ec) {
    if (finished_) return;  // the deadline closed the socket
    Finish(Status::Unavailable("stream to " + addr_ + ": " + std::string(step) + ": " + ec.message()));
  }

  asio::io_context& io_;
  tcp::socket socket_;
  asio::steady_timer deadline_;
  std::string addr_;
  Bytes request_;
  size_t max_reply_;
  Transport::StreamDone done_;
  std::array<uint8_t, 4> header_{};
  Bytes reply_;
  bool finished_ = false;
};

}  // namespace

void UdpTcpTransport::Rep::StartReceive() {
  udp_socket.async_receive_from(
      asio::buffer(recv_buf.data(), recv_buf.size() * sizeof(uint64_t)), recv_from,
      [self = shared_from_this()](const std::error_code& ec, size_t n) {
        if (self->closed || ec == asio::error::operation_aborted) return;
        if (!ec) {
          std::string from = FormatEndpoint(self->recv_from.address(), self->recv_from.port());
          RunGuarded("packet handler", [&] {
            self->on_packet(from, ByteView(reinterpret_cast<const uint8_t*>(self->recv_buf.data()), n));
          });
        } else {
          // Typically an ICMP error for an earlier send (a peer that went away).
          spdlog::debug("udp receive: {}", ec.message());
        }
        self->StartReceive();
      });
}

void UdpTcpTransport::Rep::StartAccept() {
  acceptor.async_accept([self = shared_from_this()](const std::error_code& ec, tcp::socket socket) {
    if (self->closed || ec == asio::error::operation_aborted) return;
    if (ec) {
      // E.g. out of file descriptors: back off instead of spinning.
      spdlog::warn("tcp accept on port {}: {}", self->port, ec.message());
      self->accept_retry.expires_after(std::chrono::milliseconds(100));
      self->accept_retry.async_wait([self](const std::error_code& ec) {
        if (!ec && !self->closed) self->StartAccept();
      });
      return;
    }
    // Past the cap, the stream that has waited longest for its frame goes.
    std::error_code peer_ec;
    const auto peer = socket.remote_endpoint(peer_ec);
    const std::string source = peer_ec || peer.address().is_loopback() ? "" : peer.address().to_string();
    auto stream = std::make_shared<InboundStream>(self, std::move(socket));
    const uint64_t id = self->inbound->Admit(
        [weak = std::weak_ptr<InboundStream>(stream)] {
          if (auto s = weak.lock()) s->Stop();
        },
        source);
    if (id == 0) {
      stream->Stop();
    } else {
      stream->Start(id);
    }
    self->StartAccept();
  });
}

Result<udp::endpoint> UdpTcpTransport::Rep::Resolve(const std::string& addr) {
  if (auto it = resolved.find(addr); it != resolved.end()) return it->second;
  const auto now = std::chrono::steady_clock::now();
  if (auto it = unresolvable.find(addr); it != unresolvable.end()) {
    if (now < it->second) return Status::Unavailable("cannot resolve " + addr + " (recently failed)");
    unresolvable.erase(it);
  }
  Result<HostPort> hp = ParseHostPort(addr);
  if (!hp.ok()) return hp.status();
  std::error_code local_ec;
  const bool v6_socket = udp_socket.local_endpoint(local_ec).address().is_v6();
  std::error_code ec;
  udp::endpoint endpoint;
  asio::ip::address ip = asio::ip::make_address(hp->host, ec);
  if (!ec) {
    endpoint = udp::endpoint(ip, hp->port);
  } else {
    // Blocks the protocol thread, but once per address and at most once per
    // kResolveRetry for a failing one: hostnames are rare in seeds, and
    // advertised addresses are IP literals.
    udp::resolver resolver(io);
    auto results = v6_socket ? resolver.resolve(hp->host, std::to_string(hp->port), ec)
                             : resolver.resolve(udp::v4(), hp->host, std::to_string(hp->port), ec);
    if (ec || results.empty()) {
      if (unresolvable.size() >= kMaxResolved) unresolvable.clear();
      unresolvable[addr] = now + kResolveRetry;
      return Status::Unavailable("cannot resolve " + addr + ": " + (ec ? ec.message() : "no addresses"));
    }
    endpoint = results.begin()->endpoint();
  }
  if (endpoint.address().is_v4() && v6_socket) {
    endpoint = udp::endpoint(asio::ip::make_address_v6(asio::ip::v4_mapped, endpoint.address().to_v4()),
                             endpoint.port());
  }
  if (resolved.size() >= kMaxResolved) resolved.clear();
  resolved.emplace(addr, endpoint);
  return endpoint;
}

UdpTcpTransport::UdpTcpTransport(asio::io_context& io, size_t max_stream_bytes, Duration inbound_timeout)
    : rep_(std::make_shared<Rep>(io, max_stream_bytes, inbound_timeout)) {}

UdpTcpTransport::~UdpTcpTransport() { Close(); }

uint16_t UdpTcpTransport::port() const { return rep_->port; }

Status UdpTcpTransport::Bind(const HostPort& bind) {
  Rep& r = *rep_;
  std::error_code ec;
  std::string host = bind.host.empty() ? "0.0.0.0" : bind.host;
  asio::ip::address ip = asio::ip::make_address(host, ec);
  if (ec) {
    tcp::resolver resolver(r.io);
    auto results = resolver.resolve(host, std::to_string(bind.port), ec);
    if (ec || results.empty()) {
      return Status::IoError("cannot bind " + FormatHostPort(host, bind.port) +
                             ": cannot resolve the host: " + (ec ? ec.message() : "no addresses"));
    }
    ip = results.begin()->endpoint().address();
  }
  const int tries = bind.port == 0 ? kPickPortTries : 1;
  for (int i = 0; i < tries; ++i) {
    std::error_code ignored;
    r.udp_socket.open(ip.is_v4() ? udp::v4() : udp::v6(), ec);
    if (!ec) r.udp_socket.bind(udp::endpoint(ip, bind.port), ec);
    if (ec) {
      r.udp_socket.close(ignored);
      return Status::IoError("cannot bind " + FormatHostPort(host, bind.port) + " (UDP): " + ec.message());
    }
    // Join bursts arrive faster than one thread drains them; a larger buffer
    // avoids dropping them. Best effort: the kernel may cap it.
    r.udp_socket.set_option(asio::socket_base::receive_buffer_size(1 << 20), ignored);
    uint16_t port = r.udp_socket.local_endpoint(ignored).port();

    r.acceptor.open(ip.is_v4() ? tcp::v4() : tcp::v6(), ec);
    // A restarted daemon must not wait out TIME_WAIT on its own port. On
    // Linux this does not let two listeners share a port.
    if (!ec) r.acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
    if (!ec) r.acceptor.bind(tcp::endpoint(ip, port), ec);
    if (!ec) r.acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      r.udp_socket.close(ignored);
      r.acceptor.close(ignored);
      if (bind.port == 0 && ec == asio::error::address_in_use) continue;
      return Status::IoError("cannot bind " + FormatHostPort(host, port) + " (TCP): " + ec.message());
    }
    r.port = port;
    return Status::Ok();
  }
  return Status::IoError("cannot bind " + FormatHostPort(host, 0) +
                         ": no port free for both UDP and TCP after " + std::to_string(kPickPortTries) +
                         " tries");
}

void UdpTcpTransport::Start(PacketHandler on_packet, StreamHandler on_stream) {
  rep_->on_packet = std::move(on_packet);
  rep_->on_stream = std::move(on_stream);
  rep_->started = true;
  rep_->StartReceive();
  rep_->StartAccept();
}

size_t UdpTcpTransport::inbound_open() const { return rep_->inbound->open(); }
std::map<std::string, uint64_t> UdpTcpTransport::inbound_refused() const { return rep_->inbound->refused(); }

void UdpTcpTransport::Close() {
  Rep& r = *rep_;
  if (r.closed) return;
  r.closed = true;
  std::error_code ignored;
  r.udp_socket.close(ignored);
  r.acceptor.close(ignored);
  r.accept_retry.cancel();
}

void UdpTcpTransport::SendPacket(const std::string& addr, Bytes packet) {
  Rep& r = *rep_;
  if (r.closed) return;
  Result<udp::endpoint> endpoint = r.Resolve(addr);
  if (!endpoint.ok()) {
    spdlog::debug("dropping a packet to {}: {}", addr, endpoint.status().message());
    return;
  }
  auto buffer = std::make_shared<Bytes>(std::move(packet));
  r.udp_socket.async_send_to(asio::buffer(*buffer), *endpoint,
                             [buffer, addr](const std::error_code& ec, size_t) {
                               if (ec && ec != asio::error::operation_aborted) {
                                 spdlog::debug("udp send to {}: {}", addr, ec.message());
                               }
                             });
}

void UdpTcpTransport::SendStream(const std::string& addr, Bytes request, Duration timeout, StreamDone done) {
  Rep& r = *rep_;
  auto stream =
      std::make_shared<OutboundStream>(r.io, addr, std::move(request), r.max_stream_bytes, std::move(done));
  if (r.closed) return stream->Finish(Status::Unavailable("transport is closed"));
  Result<udp::endpoint> endpoint = r.Resolve(addr);
  if (!endpoint.ok()) return stream->Finish(Status::Unavailable(endpoint.status().message()));
  stream->Start(tcp::endpoint(endpoint->address(), endpoint->port()), timeout);
}

}  // namespace starling::node

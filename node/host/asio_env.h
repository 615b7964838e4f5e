// The daemon's implementations of the membership seams (env.h) on Asio.
//
// Threading: every method and every callback runs on the one thread that
// runs the io_context. Asio itself stays out of this header so that only a
// few translation units pay for compiling it.
#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "address.h"
#include "starling/env.h"

namespace asio {
class io_context;
}

namespace starling::node {

// Timers on asio::steady_timer; Now() counts from construction.
class AsioClock final : public Clock {
 public:
  explicit AsioClock(asio::io_context& io);
  ~AsioClock() override;
  Time Now() const override;
  int64_t WallMicros() const override;
  TimerId Schedule(Duration after, std::function<void()> fn) override;
  void Cancel(TimerId id) override;

 private:
  struct Rep;
  std::shared_ptr<Rep> rep_;
};

// UDP datagrams and framed TCP exchanges on one port number, as Serf does.
//
// Stream framing: a 4-byte little-endian length, then that many bytes; one
// request frame and at most one reply frame per connection. Frames over
// `max_stream_bytes` are refused. Inbound exchanges must finish within
// `inbound_timeout`; outbound ones within the timeout SendStream is given.
class UdpTcpTransport final : public Transport {
 public:
  // `from` is the sender's "ip:port" (for streams, its ephemeral port).
  using PacketHandler = std::function<void(const std::string& from, ByteView packet)>;
  // Gives the reply to `reply`, once, now or later on the io thread; empty
  // closes the connection without one. The inbound deadline still holds.
  using StreamHandler =
      std::function<void(const std::string& from, ByteView request, std::function<void(Bytes)> reply)>;

  UdpTcpTransport(asio::io_context& io, size_t max_stream_bytes, Duration inbound_timeout);
  ~UdpTcpTransport() override;

  // Binds UDP and TCP on `bind`. Port 0 picks a port free for both (a few
  // tries). kIoError reads like "cannot bind 127.0.0.1:7946 (UDP): Address
  // already in use".
  Status Bind(const HostPort& bind);
  // The bound port (the picked one for port 0).
  uint16_t port() const;

  // Starts receiving and accepting. Handlers run on the io thread; an
  // exception they throw is logged and swallowed.
  void Start(PacketHandler on_packet, StreamHandler on_stream);
  // Stops receiving and closes the sockets; pending sends are abandoned.
  void Close();

  void SendPacket(const std::string& addr, Bytes packet) override;
  void SendStream(const std::string& addr, Bytes request, Duration timeout, StreamDone done) override;

  // Inbound TCP streams: open now, and refused or closed by a limit (at
  // most 64 open; connection_slots.h). Any thread.
  size_t inbound_open() const;
  std::map<std::string, uint64_t> inbound_refused() const;

  // Defined in asio_env.cc; named here only so the connection classes there
  // can share it.
  struct Rep;

 private:
  std::shared_ptr<Rep> rep_;
};

}  // namespace starling::node

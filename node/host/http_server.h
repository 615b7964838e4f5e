// The HTTP endpoint (--http), served by Boost.Beast on a thread of its own:
// every connection is asynchronous on that one thread, so an idle, slow or
// greedy client holds a little memory and a descriptor, never a thread. What
// a request means is `handler`'s, which the daemon runs on its protocol
// thread. GET, HEAD and POST are passed on (what a POST may do is the
// handler's to refuse); other methods get 405.
//
// A reply with `on_stream` stays open as a server-sent-events stream
// (text/event-stream, delimited by the connection's close): at most
// `max_streams` at once (503 past that), each sent chunk must be taken
// within `write_deadline`, and a client that falls `stream_queue_bytes`
// behind is closed ("slow_stream"), so a reader that stops reading costs a
// bounded buffer.
//
// Limits (HttpLimits below; admission by connection_slots.h), each counted in stats() by reason:
//  * at most `max_connections` open; a new one past that closes the open
//    connection that has waited longest for its next request ("evicted"), or
//    is closed at once when every one is busy ("full");
//  * a request must arrive whole within `request_deadline` of the connection
//    opening or of the previous response ("timeout": idle keep-alives and
//    slowloris alike), and a response must be taken within `write_deadline`
//    ("write_timeout": a client that never reads);
//  * the request line and headers within `header_bytes`, a body within
//    `body_bytes` ("too_large", answered 431 or 413), malformed requests
//    ("malformed", answered 400);
//  * a handler that has not answered within `handler_deadline` gets 503.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "address.h"
#include "http_reply.h"
#include "starling/status.h"

namespace starling::node {

struct HttpLimits {
  size_t max_connections = 256;
  size_t per_source = 64;  // connections from one non-loopback address
  std::chrono::milliseconds request_deadline{10'000};
  std::chrono::milliseconds write_deadline{10'000};
  std::chrono::milliseconds handler_deadline{2'000};
  size_t header_bytes = 8 << 10;
  size_t body_bytes = 64 << 10;  // a POST of the console: a node list at most
  size_t requests_per_connection = 1000;
  size_t max_streams = 32;
  size_t stream_queue_bytes = 1 << 20;
};

class HttpServer {
 public:
  // Answers `request` through `done`, once, from any thread.
  using Handler = std::function<void(HttpRequest request, std::function<void(HttpReply)> done)>;

  using Limits = HttpLimits;

  // Counters since start, and connections open now.
  struct Stats {
    uint64_t accepted = 0;
    uint64_t open = 0;
    uint64_t streams = 0;  // open now
    std::map<std::string, uint64_t> refused;  // reason -> count (the reasons above)
  };

  explicit HttpServer(Handler handler, Limits limits = Limits{});
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds (port 0 picks a free one); kIoError naming the address otherwise.
  // On a loopback address, a request whose Host header names anything but
  // a loopback host gets 403.
  Status Listen(const HostPort& at);
  uint16_t port() const { return port_; }
  void Start();
  // Stops serving, closes every connection and waits for the thread.
  void Stop();
  // Any thread.
  Stats stats() const;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
  std::thread thread_;
  uint16_t port_ = 0;
};

}  // namespace starling::node

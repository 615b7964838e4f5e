// The read-only HTTP endpoint (--http): cpp-httplib serves on its own
// threads; every request is answered by `handler`, which the daemon runs on
// its protocol thread. Only GET and HEAD are served.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <atomic>
#include <thread>

#include "address.h"
#include "http_reply.h"
#include "starling/status.h"

namespace httplib {
class Server;
}

namespace starling::node {

class HttpServer {
 public:
  // Called on a server thread; must be thread-safe.
  using Handler = std::function<HttpReply(const std::string& path)>;
  explicit HttpServer(Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds (port 0 picks a free one); kIoError naming the address otherwise.
  // On a loopback address, a request whose Host header names anything but
  // a loopback host gets 403.
  Status Listen(const HostPort& at);
  uint16_t port() const { return port_; }
  void Start();
  // Stops serving and waits for the server threads.
  void Stop();

 private:
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  std::atomic<bool> served_{false};  // the listener thread has returned
  uint16_t port_ = 0;
  std::atomic<bool> loopback_{false};  // bound to a loopback address: Host is checked
};

}  // namespace starling::node

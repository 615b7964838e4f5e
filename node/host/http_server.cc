#include "http_server.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

namespace starling::node {

HttpServer::HttpServer(Handler handler) : server_(std::make_unique<httplib::Server>()) {
  // A scrape or a JSON read is small: a few threads are plenty.
  server_->new_task_queue = [] { return new httplib::ThreadPool(2); };
  server_->set_read_timeout(5, 0);
  server_->set_write_timeout(5, 0);
  server_->set_payload_max_length(4096);
  // httplib's default adds SO_REUSEPORT, which lets a second daemon share a
  // busy port and answer half the requests as the wrong node. SO_REUSEADDR
  // alone still lets a restart bind while old connections sit in TIME_WAIT.
  server_->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  // A page in the operator's browser can reach a loopback port by making its
  // own name resolve to 127.0.0.1 (DNS rebinding); its requests then carry
  // that name as Host. On loopback only loopback names are served.
  server_->set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!loopback_ || !req.has_header("Host") || IsLoopbackHost(HostOfHostHeader(req.get_header_value("Host"))))
      return httplib::Server::HandlerResponse::Unhandled;
    res.status = 403;
    res.set_content(
        "{\"error\":\"this node serves HTTP on a loopback address, to loopback names only: use 127.0.0.1, [::1] "
        "or localhost in the URL\"}\n",
        "application/json");
    return httplib::Server::HandlerResponse::Handled;
  });
  server_->Get(R"(/.*)", [handler](const httplib::Request& req, httplib::Response& res) {
    HttpReply r = handler(req.path);
    res.status = r.status;
    res.set_content(r.body, r.content_type.c_str());
  });
  auto refuse = [](const httplib::Request&, httplib::Response& res) {
    res.status = 405;
    res.set_header("Allow", "GET, HEAD");
    res.set_content("{\"error\":\"read-only: only GET and HEAD\"}\n", "application/json");
  };
  server_->Post(R"(/.*)", refuse);
  server_->Put(R"(/.*)", refuse);
  server_->Delete(R"(/.*)", refuse);
  server_->Patch(R"(/.*)", refuse);
}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Listen(const HostPort& at) {
  const std::string where = FormatHostPort(at.host, at.port);
  loopback_ = IsLoopbackHost(at.host);
  if (at.port == 0) {
    int port = server_->bind_to_any_port(at.host);
    if (port <= 0) return Status::IoError("--http " + where + ": cannot bind");
    port_ = static_cast<uint16_t>(port);
  } else {
    if (!server_->bind_to_port(at.host, at.port))
      return Status::IoError("--http " + where + ": cannot bind (in use, or not an address of this host)");
    port_ = at.port;
  }
  return Status::Ok();
}

void HttpServer::Start() {
  thread_ = std::thread([this] {
    if (!server_->listen_after_bind()) spdlog::error("http: the server stopped unexpectedly");
    served_ = true;
  });
}

void HttpServer::Stop() {
  if (!thread_.joinable()) return;
  // httplib's stop() does nothing until listen_after_bind is running, so a
  // daemon that stops right after it starts (a refused join) would wait on
  // the thread for ever: repeat it until the listener has returned.
  while (!served_) {
    server_->stop();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  thread_.join();
}

}  // namespace starling::node

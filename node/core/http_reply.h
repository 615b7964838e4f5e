// What an HTTP request asks and what it is answered with: the seam between
// the host's HTTP server (host/http_server.h, its own threads) and what a
// path means (api/api_service.h and api/console.h, on the protocol thread).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace starling::node {

struct HttpRequest {
  std::string method;  // GET | HEAD | POST
  std::string path;    // without the query
  std::map<std::string, std::string> query;  // decoded; a repeated key keeps its last value
  std::string body;                          // POST only
  std::string content_type;
  std::string host;    // the Host header as sent
  std::string origin;  // the Origin header; empty when absent
  std::string token;   // the X-Starling-Token header; empty when absent
};

// A response that stays open (server-sent events): Send may be called from
// any thread, and says false once the client has gone, or fell so far
// behind that the server closed it; the holder then drops it.
class HttpStream {
 public:
  virtual ~HttpStream() = default;
  virtual bool Send(std::string chunk) = 0;
  virtual bool open() const = 0;
};

struct HttpReply {
  HttpReply() = default;
  HttpReply(int s, std::string type, std::string b, std::vector<std::pair<std::string, std::string>> h = {})
      : status(s), content_type(std::move(type)), body(std::move(b)), headers(std::move(h)) {}

  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers (e.g. Location, Cache-Control)
  // Set on a 200: the body is sent first, then the response stays open and
  // this gets the stream, on the server's thread.
  std::function<void(std::shared_ptr<HttpStream>)> on_stream;
};

}  // namespace starling::node

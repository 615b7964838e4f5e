// What an HTTP path is answered with: the seam between the host's HTTP
// server (host/http_server.h, its own threads) and what a path means
// (api/api_service.h, on the protocol thread).
#pragma once

#include <string>

namespace starling::node {

struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
};

}  // namespace starling::node

// The local API listener on a Unix socket.
//
// Framing per schema/api.capnp: a 4-byte little-endian length, then the
// message; one request and one reply per connection (or, for a streamed
// reply, frames until the client hangs up). The server owns only
// transport concerns (framing, limits, deadlines, the socket file); what a
// request means is the Handler's business. Runs on the io thread.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "starling/env.h"
#include "artifact_store.h"
#include "starling/status.h"

namespace asio {
class io_context;
}

namespace starling::node {

// Takes ownership of an open descriptor: it is closed when the last copy of
// the OpenFile goes.
OpenFile AdoptFile(int fd);

class ApiServer {
 public:
  // Requests larger than this get an error reply without being read.
  static constexpr size_t kMaxRequestBytes = 8 << 20;  // a desired-state document

  // Sends the reply frame and closes the connection. Safe to call late (a
  // timed-out connection is simply gone) and at most once.
  using Respond = std::function<void(Bytes reply)>;
  // A streamed reply instead (`starling monitor`): sends one frame and keeps
  // the connection open, without a deadline, until the client closes it;
  // false once it is gone (or too far behind). Never mixed with Respond.
  using Push = std::function<bool(Bytes frame)>;
  // `file`: what the client passed with its request (SCM_RIGHTS), a file it
  // opened with its own rights; null when none came.
  using Handler = std::function<void(ByteView request, Respond respond, Push push, OpenFile file)>;
  // Builds the reply for a request the server refuses on its own.
  using ErrorReply = std::function<Bytes(const std::string& message)>;

  ApiServer(asio::io_context& io, ErrorReply error_reply);
  ~ApiServer();

  // Binds `path` with mode 0600 (owner only), or 0660 and owned by `group`
  // when given. A stale socket file is removed first, but a path where a
  // live daemon answers gives kConflict; a path that exists and is not a
  // socket gives kInvalidArgument.
  Status Listen(const std::string& path, std::optional<unsigned> group = std::nullopt);
  void Start(Handler handler);
  // Stops accepting and removes the socket file.
  void Close();
  // Connections open now, and refused or closed by a limit (at most 32 open;
  // connection_slots.h).
  size_t open() const;
  std::map<std::string, uint64_t> refused() const;

  struct Rep;

 private:
  std::shared_ptr<Rep> rep_;
};

}  // namespace starling::node

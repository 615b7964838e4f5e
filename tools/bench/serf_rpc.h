// A client for the RPC of `serf agent` (msgpack over TCP: a header map
// {Command, Seq} and an optional body per request; {Seq, Error} and an
// optional body per reply), just the commands the benchmark drives.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#define MSGPACK_NO_BOOST
#include <msgpack.hpp>

namespace starling::bench {

struct SerfMember {
  std::string name;
  std::string status;  // alive | leaving | left | failed
};

class SerfRpc {
 public:
  // Connects to host:port and performs the handshake. nullopt (with the
  // reason in `error`) when the agent does not answer within `timeout`.
  static std::optional<SerfRpc> Connect(const std::string& addr, std::chrono::milliseconds timeout,
                                        std::string* error = nullptr);
  SerfRpc(SerfRpc&& o) noexcept;
  SerfRpc& operator=(SerfRpc&& o) noexcept;
  SerfRpc(const SerfRpc&) = delete;
  SerfRpc& operator=(const SerfRpc&) = delete;
  ~SerfRpc();

  std::optional<std::vector<SerfMember>> Members();
  // Joins through `seeds`; the number of seeds that answered.
  std::optional<int> Join(const std::vector<std::string>& seeds);
  // A user event; returns once the agent has queued it for gossip.
  bool Event(const std::string& name, const std::string& payload, bool coalesce);
  // Asks the agent to leave and does not wait for the answer (the agent
  // answers once its leave has spread, then shuts down).
  bool SendLeave();
  // Subscribes this connection to `type` events ("user", "member-join", ...).
  // Use a connection for nothing else afterwards.
  bool Stream(const std::string& type);
  // Hands the name of every user event already received to `on_event`,
  // without blocking. False once the connection is broken.
  bool DrainUserEvents(const std::function<void(const std::string&)>& on_event);
  int fd() const { return fd_; }
  const std::string& error() const { return error_; }

 private:
  explicit SerfRpc(int fd) : fd_(fd), unpacker_(std::make_unique<msgpack::unpacker>()) {}
  bool Send(const std::string& command, const std::function<void(msgpack::packer<msgpack::sbuffer>&)>& body);
  // The next msgpack object on the connection, waiting at most `timeout`
  // (zero: only what has already arrived).
  std::optional<msgpack::object_handle> Next(std::chrono::milliseconds timeout);
  // Reads a reply header for `seq`; false (error_ set) on an error reply.
  bool ReadHeader(uint64_t seq, std::chrono::milliseconds timeout);

  int fd_ = -1;
  uint64_t seq_ = 0;
  bool broken_ = false;
  std::string error_;
  // Behind a pointer: the unpacker keeps pointers into itself.
  std::unique_ptr<msgpack::unpacker> unpacker_;
};

}  // namespace starling::bench

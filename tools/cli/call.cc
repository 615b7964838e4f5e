#include "call.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <vector>

#include "api_client.h"
#include "starling/status.h"

namespace starling::cli {
namespace {

using json = nlohmann::json;

std::vector<uint8_t> BuildRequest(const RequestBuilder& build) {
  capnp::MallocMessageBuilder builder;
  api::Request::Builder request = builder.initRoot<api::Request>();
  request.setVersion(api::API_VERSION);
  build(request);
  kj::Array<capnp::word> words = capnp::messageToFlatArray(builder);
  kj::ArrayPtr<const kj::byte> bytes = words.asBytes();
  return std::vector<uint8_t>(bytes.begin(), bytes.end());
}

// Hands a non-error reply to `use`; complains about the rest.
int UseReply(const std::vector<uint64_t>& reply, const ReplyHandler& use) {
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = reply.size() * 2 + 1024;
    capnp::FlatArrayMessageReader reader(
        kj::ArrayPtr<const capnp::word>(reinterpret_cast<const capnp::word*>(reply.data()), reply.size()),
        options);
    api::Reply::Reader r = reader.getRoot<api::Reply>();
    if (r.getError().size() > 0) return Complain(kExitDaemonError, r.getError().cStr());
    return use(r);
  } catch (const kj::Exception& e) {
    return Complain(kExitUnreachable,
                    std::string("malformed reply from starlingd: ") + e.getDescription().cStr());
  }
}

std::chrono::milliseconds TimeoutOf(const Globals& globals) {
  return std::chrono::milliseconds(static_cast<int64_t>(globals.timeout_seconds * 1000));
}

// A desired-state reply: JSON text, or an error when the daemon sent
// something else.
Result<json> TextJson(api::Reply::Reader reply) {
  if (!reply.isText()) return Status::Corruption("starlingd sent a reply of an unexpected kind");
  json out = json::parse(reply.getText().cStr(), nullptr, false);
  if (out.is_discarded()) return Status::Corruption("starlingd sent a reply that is not JSON");
  return out;
}

}  // namespace

int Complain(int code, const std::string& message) {
  std::cerr << "starling: " << message << "\n";
  return code;
}

int Unexpected() { return Complain(kExitUnreachable, "starlingd sent a reply of an unexpected kind"); }

int Call(const Globals& globals, const RequestBuilder& build, const ReplyHandler& use, int pass_fd) {
  Result<std::vector<uint64_t>> reply = Exchange(Daemon{globals.socket, globals.socket_owner}, BuildRequest(build), TimeoutOf(globals), pass_fd);
  if (!reply.ok()) return Complain(kExitUnreachable, reply.status().message());
  return UseReply(*reply, use);
}

int StreamCall(const Globals& globals, const RequestBuilder& build, const ReplyHandler& use) {
  int code = kExitOk;
  Status s =
      Stream(Daemon{globals.socket, globals.socket_owner}, BuildRequest(build), TimeoutOf(globals), [&](std::vector<uint64_t> frame) {
        code = UseReply(frame, use);
        return code == kExitOk;
      });
  if (!s.ok()) return Complain(kExitUnreachable, s.message());
  return code;
}

int StateCall(const Globals& globals, const RequestBuilder& build, const JsonHandler& print, int pass_fd) {
  return Call(
      globals, build,
      [&](api::Reply::Reader reply) {
        auto r = TextJson(reply);
        if (!r.ok()) return Complain(kExitUnreachable, r.status().message());
        return print(*r);
      },
      pass_fd);
}

}  // namespace starling::cli

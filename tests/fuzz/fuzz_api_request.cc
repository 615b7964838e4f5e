// Local API requests: the bytes the starling CLI (or anything else the
// socket's permissions let in) sends the daemon. The decoder is private to
// node/api/api_service.cc, so the target drives ApiService::Handle, the function
// the socket server hands each request to, over the daemon's real stack
// (memberlist, desired-state log, lease, soft state) on one simulated node:
// no sockets, threads or files, and a fresh node per input so that any
// crash replays from its input alone.
//
// An input is a run of socket frames (4-byte little-endian length, then the
// request), handled in order by the same node: most commands only do
// something once an earlier request (an apply) has given the node a state.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "api_service.h"
#include "fuzz_check.h"
#include "node_core.h"
#include "schema/api.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/sim/simulator.h"
#include "starling/store/log.h"

using namespace std::chrono_literals;
namespace node = starling::node;
namespace store = starling::store;

namespace {

// A hook executor for a node whose agent never gets to run one here.
class NoHooks final : public node::HookExec {
 public:
  void Run(node::HookRequest, std::function<void(starling::Result<node::HookResult>)> done) override {
    done(starling::Status::Unavailable("no hooks in the fuzzer"));
  }
};

// The daemon's protocol graph (NodeCore) around its ApiService, not started:
// no timers run, so each input costs only what its requests ask for. Members
// are destroyed bottom-up, before the cluster's memberlists.
struct OneNode {
  starling::sim::Cluster cluster{1, starling::sim::ProfileConfig("local")};
  store::MemoryLogStorage storage;
  node::MemoryBallotStore ballots;
  node::MemoryAppliedStore applied;
  NoHooks hooks;
  std::unique_ptr<store::DesiredLog> log;
  std::unique_ptr<node::NodeCore> core;
  std::unique_ptr<node::ApiService> service;

  OneNode() {
    cluster.Add();
    cluster.Start(0);
    auto& clock = cluster.clock(0);
    auto opened = store::DesiredLog::Open(storage, 1000, cluster.name(0));
    FUZZ_CHECK(opened.ok(), opened.status().ToString());
    log = std::move(*opened);
    node::NodeOptions options;
    options.name = cluster.name(0);
    options.generation = 1;
    options.profile = "local";
    core = std::make_unique<node::NodeCore>(
        std::move(options),
        node::NodeSeams{clock, cluster.random(0), cluster.node(0), *log, ballots, applied, hooks});
    service = std::make_unique<node::ApiService>(
        cluster.node(0), core->replicator(), core->lease(), core->soft(), clock,
        node::DaemonFacts{"/nonexistent/data", "fuzz", clock.Now(), "127.0.0.1:7947", "fuzz", 0, "00", false},
        [](std::function<void(starling::Status)> done) { done(starling::Status::Ok()); });
    // As the daemon's: known levels subscribe, others are refused.
    service->SetMonitor([](const std::string& level, std::function<bool(const std::string&)> deliver) {
      if (level != "trace" && level != "debug" && level != "info" && level != "warn" && level != "error")
        return starling::Status::InvalidArgument("unknown log level '" + level + "'");
      deliver(R"({"time":"","level":"info","msg":"fuzz"})");
      return starling::Status::Ok();
    });
  }
};

// Every reply frame must be a Reply the CLI can read.
void CheckReply(const starling::Bytes& frame) {
  FUZZ_CHECK(!frame.empty() && frame.size() % sizeof(capnp::word) == 0,
             std::to_string(frame.size()) + " bytes");
  try {
    auto words = starling::capnp_bytes::Aligned(frame);
    capnp::FlatArrayMessageReader reader(words);
    (void)reader.getRoot<starling::api::Reply>().which();
  } catch (const kj::Exception& e) {
    FUZZ_CHECK(false, std::string("unreadable reply: ") + e.getDescription().cStr());
  }
}

// Bounds the work one input can ask for; the seeds use at most five.
constexpr int kMaxRequests = 16;

// Handles one request and waits (on virtual time) for its answer. The
// counts outlive the call: a second answer may come during a later request.
void Exchange(OneNode& n, starling::ByteView request) {
  auto replies = std::make_shared<int>(0), frames = std::make_shared<int>(0);
  n.service->Handle(
      request,
      [replies, frames](starling::Bytes reply) {
        // "Always answers exactly once": a reply, or a stream of frames (monitor).
        FUZZ_CHECK(++*replies == 1 && *frames == 0, "answered twice");
        CheckReply(reply);
      },
      [replies, frames](starling::Bytes frame) {
        FUZZ_CHECK(*replies == 0, "streamed after replying");
        ++*frames;
        CheckReply(frame);
        return true;
      });
  // Join answers once its seeds answer or fail.
  const bool answered = n.cluster.loop().RunUntil([&] { return *replies > 0 || *frames > 0; }, 60s);
  FUZZ_CHECK(answered, "no answer within 60 s (virtual)");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  // The memberlist and log narrate joins and changes; at fuzzing speed that
  // is megabytes of noise around the one report that matters.
  spdlog::set_level(spdlog::level::off);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  OneNode n;
  size_t at = 0;
  for (int i = 0; i < kMaxRequests && size - at >= 4; ++i) {
    size_t len = size_t{data[at]} | size_t{data[at + 1]} << 8 | size_t{data[at + 2]} << 16 |
                 size_t{data[at + 3]} << 24;
    at += 4;
    // A length past the end takes what is left, so that a mutated length
    // does not turn the rest of the input into dead weight.
    len = std::min(len, size - at);
    Exchange(n, starling::ByteView(data + at, len));
    at += len;
  }
  return 0;
}

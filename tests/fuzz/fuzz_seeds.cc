// Writes the fuzzers' starting corpus: valid inputs made by the real
// encoders, so that mutation starts past the envelope and the Cap'n Proto
// framing instead of having to discover them. Run by the build (fresh seeds
// for the current wire formats); the copies under tests/fuzz/corpus are
// what a checkout has without building (a few of them).
//
//   fuzz_seeds OUTDIR   ->  OUTDIR/{packet,stream,log,document,api_request}/<name>
#include <capnp/message.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <variant>
#include <vector>

#include "codec.h"
#include "schema/api.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/store/document.h"
#include "starling/store/log.h"
#include "starling/store/log_codec.h"

namespace fs = std::filesystem;
namespace wire = starling::membership::wire;
namespace store = starling::store;
using starling::Bytes;

namespace {

fs::path g_out;
int g_written = 0;

void Write(const std::string& target, const std::string& name, const std::string& bytes) {
  fs::create_directories(g_out / target);
  std::ofstream f(g_out / target / name, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!f) {
    std::fprintf(stderr, "fuzz_seeds: cannot write %s\n", (g_out / target / name).c_str());
    std::exit(1);
  }
  ++g_written;
}
void Write(const std::string& target, const std::string& name, const Bytes& bytes) {
  Write(target, name, std::string(bytes.begin(), bytes.end()));
}

// A seed its decoder refuses teaches the fuzzer nothing past the refusal:
// fail the build instead of shipping it.
void Expect(bool ok, const std::string& what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_seeds: seed %s is refused by its own decoder\n", what.c_str());
  std::exit(1);
}
template <typename T>
bool Decodes(const wire::Decoded<T>& d) {
  return std::holds_alternative<T>(d);
}

const std::string kCluster = "fuzz";  // the fuzzers' cluster name

// A document that passes validation and uses every section, so that the API
// seeds that apply it reach the commands that need a state (get, diff,
// rollback, rollouts, lifecycle).
const char* kDocYaml = R"(roles: [web, db]
packages:
  web: {version: "1.2.3", roles: [web], hooks: {install: i, verify: v}}
  pg: {version: 15.4-1, roles: [db]}
services:
  db: {package: pg, roles: [db], hooks: {start: s, stop: t, health: h}, outputs: [url]}
  api:
    package: web
    roles: [web]
    params: {DB_URL: "postgres://${db.url}/app", THREADS: 4}
    after: [db]
nodes:
  n0: {lifecycle: commissioned, roles: [web, db]}
voters: [n0]
policy: {batch: [1, "25%"], min_healthy: 3s, node_deadline: 5m, progress_deadline: 1h, failure_threshold: 0, auto_revert: true}
switches: {auto_commission: true, auto_upgrade: false}
freeze: false
)";
const char* kDocJson =
    R"({"roles":["web"],"packages":{"web":{"version":"2.0.0","roles":["web"]}},"nodes":{"n0":{"lifecycle":"commissioned","roles":["web"]}}})";

void PacketSeeds() {
  const std::vector<wire::Message> all = {
      wire::Ping{7, "b", "a", "10.0.0.1:7946"},
      wire::IndirectPing{8, "c", "10.0.0.3:7946", true, "a", "10.0.0.1:7946"},
      wire::Ack{9},
      wire::Nack{10},
      wire::Alive{"a", "10.0.0.1:7946", 42, {{"role", "web"}, {"zone", "z1"}}, 1, 1},
      wire::Suspect{"b", 3, "a"},
      wire::Dead{"c", 4, "a"},
      wire::Leave{"d", 5, "d", true},
      wire::User{Bytes{1, 2, 3, 0, 255}}};
  auto packet = [](const std::string& name, const Bytes& b) {
    Expect(Decodes(wire::DecodePacket(b, kCluster)), "packet/" + name);
    Write("packet", name, b);
  };
  packet("all_kinds", wire::EncodePacket(kCluster, all));
  for (const auto& m : all) packet(wire::MessageTypeName(m), wire::EncodePacket(kCluster, {m}));
}

wire::PushPull SomeState() {
  wire::PushPull pp;
  pp.join = true;
  pp.from = "a";
  pp.members.push_back({"a", "10.0.0.1:7946", 1, wire::StateStatus::kAlive, {{"role", "web"}}, 1, 1});
  pp.members.push_back({"b", "10.0.0.2:7946", 2, wire::StateStatus::kSuspect, {}, 1, 1});
  pp.members.push_back({"c", "[::1]:7946", 3, wire::StateStatus::kLeft, {{"k", ""}}, 1, 1});
  return pp;
}

void StreamSeeds() {
  constexpr size_t kMax = 1 << 20;
  auto request = [](const std::string& name, const wire::StreamRequest& r) {
    Bytes b = wire::EncodeStreamRequest(kCluster, r);
    Expect(Decodes(wire::DecodeStreamRequest(b, kCluster, kMax)), "stream/" + name);
    Write("stream", name, b);
  };
  auto reply = [](const std::string& name, const wire::StreamReply& r) {
    Bytes b = wire::EncodeStreamReply(kCluster, r);
    Expect(Decodes(wire::DecodeStreamReply(b, kCluster, kMax)), "stream/" + name);
    Write("stream", name, b);
  };
  request("request_push_pull", wire::StreamRequest{SomeState()});
  request("request_user", wire::StreamRequest{wire::User{Bytes{0, 1, 2}}});
  reply("reply_push_pull", wire::StreamReply{SomeState()});
  reply("reply_refused", wire::StreamReply{wire::Refused{"name in use"}});
  reply("reply_user", wire::StreamReply{wire::User{Bytes{9, 8}}});
}

store::Entry SomeEntry(uint64_t seq) {
  store::Entry e;
  e.origin = 77;
  e.origin_name = "n1";
  e.seq = seq;
  e.hlc = {1'790'000'000'000'000 + static_cast<int64_t>(seq), 0};
  e.base = {1'789'999'000'000'000, 2};
  e.note = "apply desired.yaml";
  e.ops = {{"packages/web", R"({"version":"1.2.3","roles":["web"]})"},
           {"roles", R"(["web"])"},
           {"services/old", std::nullopt}};
  return e;
}

store::Snapshot SomeSnapshot() {
  store::Snapshot s;
  s.covered = {{77, 2}, {78, 1}};
  s.registers["roles"] = {R"(["web"])", {{1'790'000'000'000'001, 0}, 77, 1}};
  s.registers["packages/gone"] = {std::nullopt, {{1'790'000'000'000'002, 1}, 78, 1}};
  store::Revision r;
  r.id = "0123456789ab";
  r.hlc = {1'790'000'000'000'001, 0};
  r.digest = std::string(64, 'a');
  r.origin = 77;
  r.origin_name = "n1";
  r.seq = 1;
  r.note = "first";
  r.changed = true;
  s.history.push_back(r);
  s.documents[r.digest] = R"({"roles":["web"]})";
  s.entries = 3;
  return s;
}

void LogSeeds() {
  Bytes entry = store::EncodeEntry(SomeEntry(1));
  Expect(store::DecodeEntry(entry).ok(), "log/entry");
  Write("log", "entry", entry);
  Bytes snapshot = store::EncodeSnapshot(SomeSnapshot());
  Expect(store::DecodeSnapshot(snapshot).ok(), "log/snapshot");
  Write("log", "snapshot", snapshot);
  auto message = [](const std::string& name, const store::LogMessage& m) {
    Bytes b = store::EncodeLogMessage(m);
    Expect(store::DecodeLogMessage(b).ok(), "log/" + name);
    Write("log", name, b);
  };
  message("message_entry", SomeEntry(3));
  message("message_announce", store::Announce{{77, 3}, "10.0.0.1:7946"});
  message("message_sync_request", store::SyncRequest{"n2", {{77, 1}}, {SomeEntry(2), SomeEntry(3)}});
  message("message_sync_reply", store::SyncReply{{{77, 3}}, {SomeEntry(3)}, SomeSnapshot(), true});
}

void DocumentSeeds() {
  // The API seeds apply these two: they must pass validation.
  for (const char* doc : {kDocYaml, kDocJson}) {
    auto parsed = store::ParseDocument(doc);
    Expect(parsed.ok() && store::ValidateDocument(*parsed).ok(),
           std::string(doc).substr(0, 20) + "... (" +
               (parsed.ok() ? store::ValidateDocument(*parsed).message() : parsed.status().message()) + ")");
  }
  Write("document", "valid.yaml", std::string(kDocYaml));
  Write("document", "valid.json", std::string(kDocJson));
  Write("document", "anchors.yaml",
        std::string(
            "roles: &r [web]\npackages:\n  web: {version: !!str 1.0, roles: *r, hooks: {install: i}}\n"));
  Write("document", "freeze.yaml",
        std::string("freeze: {reason: \"incident 42\", by: n0}\nvoters: [n0, n1, n2]\n"));
  Write("document", "escapes.json",
        std::string(R"({"roles":["w\u00e9b","\ud83d\ude00"],"policy":{"batch":[1e0,"10%"]}})"));
}

// The API input is a stream of socket frames (a 4-byte little-endian length,
// then a Request), handled in order by one node, so that seeds can set up a
// state before the command that reads it.
class Frames {
 public:
  template <typename Fill>
  Frames& Add(Fill fill) {
    capnp::MallocMessageBuilder mb;
    auto req = mb.initRoot<starling::api::Request>();
    req.setVersion(starling::api::API_VERSION);
    fill(req);
    Bytes b = starling::capnp_bytes::Flat(mb);
    const size_t n = b.size();
    out_ += std::string{static_cast<char>(n), static_cast<char>(n >> 8), static_cast<char>(n >> 16),
                        static_cast<char>(n >> 24)};
    out_.append(b.begin(), b.end());
    return *this;
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

using Req = starling::api::Request::Builder;

void Apply(Req r, const char* doc) {
  auto a = r.initApply();
  a.setDocument(doc);
  a.setSource("seed.yaml");
}

void ApiSeeds() {
  const std::string t = "api_request";
  Write(t, "members", Frames().Add([](Req r) { r.setMembers(); }).bytes());
  Write(t, "info", Frames().Add([](Req r) { r.setInfo(); }).bytes());
  Write(t, "join",
        Frames()
            .Add([](Req r) {
              auto j = r.initJoin(2);
              j.set(0, "10.0.0.9:7946");
              j.set(1, "[::1]:7946");
            })
            .bytes());
  Write(t, "leave", Frames().Add([](Req r) { r.setLeave(); }).bytes());
  Write(t, "force_leave",
        Frames()
            .Add([](Req r) {
              auto f = r.initForceLeave();
              f.setName("n9");
              f.setPrune(true);
            })
            .bytes());
  Write(t, "tags",
        Frames()
            .Add([](Req r) {
              auto c = r.initTags();
              auto set = c.initSet(1);
              set[0].setKey("zone");
              set[0].setValue("a");
              c.initDelete(1).set(0, "role");
            })
            .bytes());
  Write(t, "lease", Frames().Add([](Req r) { r.setLease(); }).bytes());
  Write(t, "monitor", Frames().Add([](Req r) { r.setMonitor("debug"); }).bytes());
  Write(t, "voters_force_set", Frames().Add([](Req r) { r.initVotersForceSet(1).set(0, "n0"); }).bytes());
  Write(t, "apply_get_history",
        Frames()
            .Add([](Req r) { Apply(r, kDocYaml); })
            .Add([](Req r) { r.initGet().setFormat("yaml"); })
            .Add([](Req r) { r.setHistory(); })
            .Add([](Req r) { r.setNodes(); })
            .bytes());
  Write(t, "apply_twice_diff_rollback",
        Frames()
            .Add([](Req r) { Apply(r, kDocYaml); })
            .Add([](Req r) { Apply(r, kDocJson); })
            .Add([](Req r) { r.initDiff().setFrom("0000"); })
            .Add([](Req r) { r.initRollback(); })
            .Add([](Req r) { r.initGet().setRevision("0000"); })
            .bytes());
  Write(t, "freeze_lifecycle",
        Frames()
            .Add([](Req r) { Apply(r, kDocYaml); })
            .Add([](Req r) { r.setFreeze("incident"); })
            .Add([](Req r) {
              auto l = r.initLifecycle();
              l.initNodes(1).set(0, "n0");
              l.setTo("decommissioned");
            })
            .Add([](Req r) { r.setUnfreeze(); })
            .bytes());
  // Fields of the wrong type, read before the document is validated.
  Write(t, "apply_wrong_types",
        Frames()
            .Add([](Req r) { Apply(r, "switches: {auto_commission: \"yes\", auto_upgrade: 1}"); })
            .Add([](Req r) { Apply(r, "freeze: {reason: 5, by: [x]}\nnodes: {n0: {lifecycle: 7}}"); })
            .Add([](Req r) { Apply(r, "switches: {auto_commission: true}\nfreeze: false"); })
            .bytes());
  Write(t, "rollout",
        Frames()
            .Add([](Req r) { Apply(r, kDocYaml); })
            .Add([](Req r) { r.setRolloutStart(""); })
            .Add([](Req r) { r.setRolloutStatus(); })
            .Add([](Req r) { r.setRolloutControl("pause"); })
            .Add([](Req r) { r.setRolloutControl("abort"); })
            .bytes());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  g_out = argv[1];
  PacketSeeds();
  StreamSeeds();
  LogSeeds();
  DocumentSeeds();
  ApiSeeds();
  std::printf("fuzz_seeds: %d seeds in %s\n", g_written, g_out.c_str());
  return 0;
}

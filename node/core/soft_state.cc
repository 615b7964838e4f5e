#include "soft_state.h"

#include "starling/text.h"

#include <algorithm>

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include "schema/node.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/membership/user_channels.h"

namespace starling::node {

namespace nw = ::starling::nodewire;
using membership::Channel;

namespace {
constexpr uint16_t kReportFormat = 1;
// A report must fit one gossip datagram.
constexpr size_t kMaxReportBytes = 1400;
constexpr size_t kMaxField = 256;
}  // namespace

Bytes EncodeReport(const NodeReport& r) {
  capnp::MallocMessageBuilder mb;
  auto b = mb.initRoot<nw::NodeReport>();
  b.setFormatVersion(kReportFormat);
  b.setName(r.name);
  b.setVersion(r.version);
  b.setAppliedRevision(r.applied_revision);
  b.setHealthy(r.healthy);
  b.setPhase(r.phase);
  auto outs = b.initOutputs(static_cast<unsigned>(r.outputs.size()));
  unsigned i = 0;
  for (const auto& [k, v] : r.outputs) {
    outs[i].setKey(k);
    outs[i].setValue(v);
    ++i;
  }
  b.setDetail(r.detail);
  b.setTarget(r.target);
  b.setChecks(r.checks);
  b.setCountsChecks(true);
  return capnp_bytes::Flat(mb);
}

Result<NodeReport> DecodeReport(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<NodeReport>(
      bytes, kMaxReportBytes, "node report", [](capnp::FlatArrayMessageReader& reader) -> Result<NodeReport> {
        auto r = reader.getRoot<nw::NodeReport>();
        if (r.getFormatVersion() != kReportFormat)
          return Status::Corruption("node report format " + std::to_string(r.getFormatVersion()));
        const std::string name = capnp_bytes::Str(r.getName()), applied = capnp_bytes::Str(r.getAppliedRevision()),
                          phase = capnp_bytes::Str(r.getPhase()), detail = capnp_bytes::Str(r.getDetail()),
                          target = capnp_bytes::Str(r.getTarget());
        if (name.empty() || name.size() > kMaxField || applied.size() > 64 || target.size() > 64 || phase.size() > 64 ||
            detail.size() > kMaxReportBytes)
          return Status::Corruption("node report with a field out of range");
        if (!text::IsCleanName(name) || !text::IsCleanName(applied) || !text::IsCleanName(target) ||
            !text::IsCleanName(phase) || !text::IsCleanText(detail))
          return Status::Corruption("node report with a field that is not clean UTF-8");
        std::map<std::string, std::string> outputs;
        for (auto o : r.getOutputs()) {
          auto k = capnp_bytes::Str(o.getKey());
          if (k.empty() || k.size() > kMaxField || !text::IsCleanName(k))
            return Status::Corruption("node report with a bad output name");
          auto v = capnp_bytes::Str(o.getValue());
          if (!text::IsCleanText(v)) return Status::Corruption("node report with an output that is not clean UTF-8");
          outputs[k] = std::move(v);
        }
        // Interned only once checked: a bad report adds nothing to the pools.
        NodeReport out;
        out.name = name;
        out.version = r.getVersion();
        out.applied_revision = applied;
        out.healthy = r.getHealthy();
        out.phase = phase;
        out.outputs = outputs;
        out.detail = detail;
        out.target = target;
        out.checks = r.getChecks();
        out.counts_checks = r.getCountsChecks();
        return out;
      });
}

SoftState::BodyHandle SoftState::BodyOf(const NodeReport& r, uint64_t checks) {
  return BodyHandle(
      Body{r.version, checks, r.applied_revision, r.phase, r.outputs, r.detail, r.target, r.healthy, r.counts_checks});
}

size_t SoftState::BodyHash::operator()(const Body& b) const {
  size_t h = std::hash<uint64_t>{}(b.version) ^ (std::hash<uint64_t>{}(b.checks) << 1);
  h = (h * 1099511628211u) ^ std::hash<Atom>{}(b.applied_revision);
  for (const void* p : {b.phase.identity(), b.outputs.identity(), b.detail.identity(), b.target.identity()})
    h = (h * 1099511628211u) ^ std::hash<const void*>{}(p);
  return h * 4 + (b.healthy ? 2 : 0) + (b.counts_checks ? 1 : 0);
}

NodeReport SoftState::Peer::Report(const Atom& name) const {
  const Body& b = body.get();
  NodeReport r;
  r.name = name;
  r.version = b.version;
  r.applied_revision = b.applied_revision;
  r.healthy = b.healthy;
  r.phase = b.phase;
  r.outputs = b.outputs;
  r.detail = b.detail;
  r.target = b.target;
  r.checks = b.checks;
  r.counts_checks = b.counts_checks;
  return r;
}

SoftState::SoftState(std::string self, uint32_t generation, Clock& clock, membership::UserChannels& channels,
                     Duration refresh)
    : clock_(clock), channels_(channels), refresh_(refresh) {
  local_.name = std::move(self);
  cursor_ = local_.name;  // each node's turn starts at its own place in the list
  local_.version = uint64_t{generation} << 32;
}

SoftState::~SoftState() {
  if (timer_) clock_.Cancel(timer_);
}

void SoftState::Start() {
  channels_.On(Channel::kNodeState, [this](const std::string& from, ByteView data) { HandlePacket(from, data); });
  Spread();
  timer_ = clock_.Schedule(refresh_, [this] { Refresh(); });
}

void SoftState::Refresh() {
  const Bytes report = EncodeReport(local_);
  std::vector<std::string> told = also_tell_ ? also_tell_() : std::vector<std::string>{};
  for (const std::string& addr : told) channels_.SendPacket(Channel::kNodeState, addr, report);
  const auto next = channels_.list().NextAlive(cursor_, kRefreshPeers);
  for (const auto& m : next)
    if (std::find(told.begin(), told.end(), m.addr) == told.end())
      channels_.SendPacket(Channel::kNodeState, m.addr, report);
  if (!next.empty()) cursor_ = next.back().name;
  timer_ = clock_.Schedule(refresh_, [this] { Refresh(); });
}

void SoftState::Update(const std::function<void(NodeReport&)>& edit) {
  NodeReport next = local_;
  edit(next);
  next.name = local_.name;
  next.version = local_.version;
  if (next == local_) return;
  next.version = local_.version + 1;
  local_ = std::move(next);
  ++changes_;
  Spread();
}

void SoftState::Confirm() {
  ++local_.checks;
  local_checked_ = clock_.Now();
  if (!also_tell_) return;
  const Bytes report = EncodeReport(local_);
  for (const std::string& addr : also_tell_()) channels_.SendPacket(Channel::kNodeState, addr, report);
}

void SoftState::Spread() {
  Bytes report = EncodeReport(local_);
  if (also_tell_)
    for (const std::string& addr : also_tell_()) channels_.SendPacket(Channel::kNodeState, addr, report);
  channels_.Broadcast(Channel::kNodeState, "report", std::move(report));
}

std::optional<Time> SoftState::CheckedAt(const std::string& name) const {
  if (name == local_.name) return local_checked_;
  auto it = peers_.find(name);
  if (it == peers_.end() || it->second.checked == Peer::kNever) return std::nullopt;
  return it->second.checked;
}

std::optional<std::string> SoftState::FindOutput(const std::string& key) const {
  if (auto it = local_.outputs.find(key); it != local_.outputs.end()) return it->second;
  for (const auto& [_, p] : peers_)
    if (auto it = p.body.get().outputs.find(key); it != p.body.get().outputs.end()) return it->second;
  return std::nullopt;
}

std::optional<NodeReport> SoftState::Get(const std::string& name) const {
  if (name == local_.name) return local_;
  auto it = peers_.find(name);
  if (it == peers_.end()) return std::nullopt;
  return it->second.Report(it->first);
}

std::optional<Time> SoftState::HeardAt(const std::string& name) const {
  if (name == local_.name) return clock_.Now();
  auto it = peers_.find(name);
  if (it == peers_.end()) return std::nullopt;
  return it->second.heard;
}

bool SoftState::Fresh(const std::string& name) const {
  std::optional<Time> at = HeardAt(name);
  if (!at) return false;
  int64_t periods = 6;
  if (!told_directly_ || !told_directly_()) {
    const auto turn = static_cast<int64_t>((channels_.list().NumAlive() + kRefreshPeers - 1) / kRefreshPeers);
    periods = std::max<int64_t>(periods, 2 * turn + 2);
  }
  return clock_.Now() - *at <= periods * refresh_;
}

void SoftState::Forget(const std::string& name) {
  if (name == local_.name) return;
  if (auto it = peers_.find(name); it != peers_.end()) {
    peers_.erase(it);
    ++changes_;
  }
}

void SoftState::HandlePacket(const std::string& from, ByteView data) {
  auto r = DecodeReport(data);
  if (!r.ok()) {
    ++rejected_;
    spdlog::warn("dropped a node report from {}: {}", from, r.status().message());
    return;
  }
  // Only the node itself may say how it is.
  const auto addr = channels_.list().AddrOf(r->name);
  if (!addr && r->name != local_.name) {
    // A node that has just joined may report before its alive news reaches
    // us; it reports again on its next round.
    spdlog::debug("dropped a report about {} sent from {}: not a member yet", r->name, from);
    return;
  }
  if (r->name == local_.name || *addr != from) {
    ++rejected_;
    spdlog::warn("dropped a report about {} sent from {}: only the node itself reports on itself", r->name, from);
    return;
  }
  auto it = peers_.find(r->name);
  if (it == peers_.end()) {
    peers_.emplace(r->name, Peer{BodyOf(*r, r->checks), clock_.Now(), Peer::kNever});
    ++changes_;
    return;
  }
  Peer& held = it->second;
  const uint64_t version = held.body.get().version, checks = held.body.get().checks;
  if (version > r->version) return;
  // The same version again is the node's refresh: it says the report still holds.
  held.heard = clock_.Now();
  // A check counts once its count rises within a generation: a restarted
  // node starts a new count, and its first report sets only the baseline.
  // The held report's count is the baseline: it rises without a new version.
  const bool same_generation = (version >> 32) == (r->version >> 32);
  uint64_t baseline = r->checks;
  if (!same_generation) {
    held.checked = Peer::kNever;
  } else {
    if (r->checks > checks) held.checked = clock_.Now();
    baseline = std::max(checks, r->checks);
  }
  if (version != r->version) {
    held.body = BodyOf(*r, baseline);
    ++changes_;
  } else if (baseline != checks) {
    Body b = held.body.get();  // the same version says the same: only the count moves
    b.checks = baseline;
    held.body = BodyHandle(b);
  }
}

}  // namespace starling::node

#include "api_service.h"

#include "rollout_engine.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <map>
#include <cstring>
#include <variant>
#include <vector>

#include "address.h"
#include "rollout_engine.h"
#include "schema/api.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/membership/config.h"

namespace starling::node {
namespace {


// Bounds what a hostile client can make us walk: twice the largest request.
constexpr uint64_t kTraversalLimitWords = (8 << 20) / sizeof(capnp::word) * 2;
constexpr int kNestingLimit = 16;

// A request decoded into plain values, so that no Cap'n Proto reader (and no
// kj::Exception) outlives the decode step.
struct MembersReq {};
struct JoinReq {
  std::vector<std::string> seeds;
};
struct LeaveReq {};
struct ForceLeaveReq {
  std::string name;
  bool prune = false;
};
struct TagsReq {
  std::vector<std::pair<std::string, std::string>> set;
  std::vector<std::string> del;
};
struct InfoReq {};
struct GetReq {
  std::string revision, format;
};
struct HistoryReq {};
struct DiffReq {
  std::string from, to;
};
struct RollbackReq {
  std::string to;
};
struct LeaseReq {};
struct NodesReq {};
struct FreezeReq {
  std::string reason;
};
struct UnfreezeReq {};
struct LifecycleReq {
  std::vector<std::string> nodes;
  std::string to;
};
struct RolloutStartReq {
  std::string revision;
};
struct RolloutStatusReq {};
struct RolloutControlReq {
  std::string action;
};
struct ForceVotersReq {
  std::vector<std::string> voters;
};
using Request = std::variant<MembersReq, JoinReq, LeaveReq, ForceLeaveReq, TagsReq, InfoReq, ApplyRequest, GetReq,
                             HistoryReq, DiffReq, RollbackReq, LeaseReq, ForceVotersReq, NodesReq, FreezeReq, UnfreezeReq, LifecycleReq,
                             RolloutStartReq, RolloutStatusReq, RolloutControlReq>;

using capnp_bytes::Str;
Bytes ToBytes(capnp::MessageBuilder& message) { return capnp_bytes::Flat(message); }

Result<Request> Decode(ByteView bytes) {
  if (bytes.empty() || bytes.size() % sizeof(capnp::word) != 0) {
    return Status::InvalidArgument("malformed request: " + std::to_string(bytes.size()) +
                                   " bytes is not a whole Cap'n Proto message");
  }
  // A private aligned copy: the reader must not depend on the caller's buffer.
  kj::Array<capnp::word> words = kj::heapArray<capnp::word>(bytes.size() / sizeof(capnp::word));
  std::memcpy(words.begin(), bytes.data(), bytes.size());
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = kTraversalLimitWords;
    options.nestingLimit = kNestingLimit;
    capnp::FlatArrayMessageReader reader(words, options);
    api::Request::Reader req = reader.getRoot<api::Request>();
    if (req.getVersion() != api::API_VERSION) {
      return Status::InvalidArgument("unsupported API version " + std::to_string(req.getVersion()) +
                                     " (this daemon speaks version " + std::to_string(api::API_VERSION) +
                                     "); use the starling CLI of the same release");
    }
    switch (req.which()) {
      case api::Request::MEMBERS:
        return Request(MembersReq{});
      case api::Request::JOIN: {
        JoinReq join;
        for (capnp::Text::Reader seed : req.getJoin()) join.seeds.emplace_back(seed.cStr());
        return Request(std::move(join));
      }
      case api::Request::LEAVE:
        return Request(LeaveReq{});
      case api::Request::FORCE_LEAVE: {
        auto fl = req.getForceLeave();
        return Request(ForceLeaveReq{fl.getName().cStr(), fl.getPrune()});
      }
      case api::Request::TAGS: {
        TagsReq tags;
        auto change = req.getTags();
        for (auto tag : change.getSet()) tags.set.emplace_back(tag.getKey().cStr(), tag.getValue().cStr());
        for (capnp::Text::Reader key : change.getDelete()) tags.del.emplace_back(key.cStr());
        return Request(std::move(tags));
      }
      case api::Request::INFO:
        return Request(InfoReq{});
      case api::Request::APPLY: {
        auto a = req.getApply();
        return Request(ApplyRequest{Str(a.getDocument()), Str(a.getSource()), Str(a.getBase())});
      }
      case api::Request::GET: {
        auto g = req.getGet();
        return Request(GetReq{Str(g.getRevision()), Str(g.getFormat())});
      }
      case api::Request::HISTORY:
        return Request(HistoryReq{});
      case api::Request::DIFF: {
        auto d = req.getDiff();
        return Request(DiffReq{Str(d.getFrom()), Str(d.getTo())});
      }
      case api::Request::ROLLBACK:
        return Request(RollbackReq{Str(req.getRollback().getTo())});
      case api::Request::LEASE:
        return Request(LeaseReq{});
      case api::Request::NODES:
        return Request(NodesReq{});
      case api::Request::FREEZE:
        return Request(FreezeReq{Str(req.getFreeze())});
      case api::Request::UNFREEZE:
        return Request(UnfreezeReq{});
      case api::Request::LIFECYCLE: {
        LifecycleReq l;
        for (capnp::Text::Reader n : req.getLifecycle().getNodes()) l.nodes.push_back(Str(n));
        l.to = Str(req.getLifecycle().getTo());
        return Request(std::move(l));
      }
      case api::Request::ROLLOUT_START:
        return Request(RolloutStartReq{Str(req.getRolloutStart())});
      case api::Request::ROLLOUT_STATUS:
        return Request(RolloutStatusReq{});
      case api::Request::ROLLOUT_CONTROL:
        return Request(RolloutControlReq{Str(req.getRolloutControl())});
      case api::Request::VOTERS_FORCE_SET: {
        ForceVotersReq f;
        for (capnp::Text::Reader v : req.getVotersForceSet()) f.voters.push_back(Str(v));
        return Request(std::move(f));
      }
    }
    return Status::InvalidArgument("unknown request kind " + std::to_string(static_cast<int>(req.which())) +
                                   "; the CLI is newer than this daemon");
  } catch (const kj::Exception& e) {
    return Status::InvalidArgument(std::string("malformed request: ") + e.getDescription().cStr());
  }
}

void FillTags(capnp::List<api::Tag>::Builder out, const membership::Tags& tags) {
  unsigned i = 0;
  for (const auto& [key, value] : tags) {
    out[i].setKey(key);
    out[i].setValue(value);
    ++i;
  }
}

Bytes TextReply(const std::string& text) {
  capnp::MallocMessageBuilder message;
  message.initRoot<api::Reply>().setText(text);
  return ToBytes(message);
}

Bytes NoneReply() {
  capnp::MallocMessageBuilder message;
  message.initRoot<api::Reply>().setNone();
  return ToBytes(message);
}

}  // namespace

ApiService::ApiService(membership::Memberlist& members, store::Replicator& replicator, Lease& lease,
                       const SoftState& soft, const Clock& clock, DaemonFacts facts, LeaveFn leave)
    : members_(members),
      replicator_(replicator),
      lease_(lease),
      soft_(soft),
      state_(replicator),
      clock_(clock),
      facts_(std::move(facts)),
      leave_(std::move(leave)) {}

Bytes ApiService::ErrorReply(const std::string& message) {
  capnp::MallocMessageBuilder builder;
  api::Reply::Builder reply = builder.initRoot<api::Reply>();
  reply.setError(message);
  reply.setNone();
  return ToBytes(builder);
}

Bytes ApiService::MembersReply() const {
  std::vector<membership::MemberView> all = members_.Members();
  capnp::MallocMessageBuilder builder;
  auto list = builder.initRoot<api::Reply>().initMembers(static_cast<unsigned>(all.size()));
  for (unsigned i = 0; i < all.size(); ++i) {
    const membership::MemberView& m = all[i];
    api::Member::Builder out = list[i];
    out.setName(m.name);
    out.setAddr(m.addr);
    out.setStatus(std::string(membership::StatusName(m.status)));
    out.setIncarnation(m.incarnation);
    FillTags(out.initTags(static_cast<unsigned>(m.tags.size())), m.tags);
    out.setProtocolMin(m.protocol_min);
    out.setProtocolMax(m.protocol_max);
  }
  return ToBytes(builder);
}

Bytes ApiService::InfoReply() const {
  const membership::Config& config = members_.config();
  membership::MemberView self = members_.Self();
  capnp::MallocMessageBuilder builder;
  api::Info::Builder info = builder.initRoot<api::Reply>().initInfo();
  info.setName(self.name);
  info.setAddr(self.addr);
  info.setCluster(config.cluster);
  info.setProfile(config.timing.profile);
  info.setIncarnation(self.incarnation);
  info.setHealthScore(static_cast<uint32_t>(std::max(0, members_.HealthScore())));
  info.setProtocolVersion(membership::kProtocolVersion);
  info.setVersion(facts_.version);
  const membership::MemberCounts counts = members_.Counts();
  info.setMembersAlive(static_cast<uint32_t>(counts.alive));
  info.setMembersSuspect(static_cast<uint32_t>(counts.suspect));
  info.setMembersFailed(static_cast<uint32_t>(counts.failed));
  info.setMembersLeft(static_cast<uint32_t>(counts.left));
  // Membership's counters as they are; the log's under "log.".
  std::vector<std::pair<std::string, uint64_t>> counters(members_.counters().begin(), members_.counters().end());
  for (const auto& [name, value] : replicator_.counters()) counters.emplace_back("log." + name, value);
  for (const auto& [name, value] : lease_.counters()) counters.emplace_back("lease." + name, value);
  auto list = info.initCounters(static_cast<unsigned>(counters.size()));
  unsigned i = 0;
  for (const auto& [name, value] : counters) {
    list[i].setName(name);
    list[i].setValue(value);
    ++i;
  }
  FillTags(info.initTags(static_cast<unsigned>(self.tags.size())), self.tags);
  const store::DesiredLog& log = replicator_.log();
  info.setRevision(log.Current().id);
  info.setDigest(log.digest());
  info.setEntries(log.entries());
  const Lease::View lease = lease_.view();
  info.setLeaseHolder(lease.holder.value_or(""));
  info.setLeaseBallot(lease.ballot);
  info.setDataDir(facts_.data_dir);
  Duration up = clock_.Now() - facts_.started_at;
  info.setUptimeSeconds(static_cast<uint64_t>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(up).count())));
  return ToBytes(builder);
}

store::Json ApiService::NodesJson() const {
  // Every member, and every node the desired state names.
  std::map<std::string, std::string> rows;  // name -> membership status
  const store::Json doc = replicator_.log().state().Document();
  for (const auto& m : members_.Members()) rows[m.name] = std::string(membership::StatusName(m.status));
  if (auto it = doc.find("nodes"); it != doc.end() && it->is_object())
    for (const auto& [name, _] : it->items()) rows.emplace(name, "unknown");
  std::optional<RolloutRecord> rollout;
  if (const store::Register* reg = replicator_.log().state().Find(kRolloutKey); reg && reg->value)
    rollout = ReadRecord<RolloutRecord>(store::Json::parse(*reg->value, nullptr, false));
  store::Json out = store::Json::array();
  for (const auto& [name, status] : rows) {
    std::string lifecycle = "discovered";
    if (auto n = doc.find("nodes"); n != doc.end() && n->is_object() && n->contains(name)) {
      const auto& node = (*n)[name];
      if (node.is_object() && node.contains("lifecycle") && node["lifecycle"].is_string())
        lifecycle = node["lifecycle"].get<std::string>();
    }
    if (lifecycle == "commissioned" && rollout &&
        std::find(rollout->batch.begin(), rollout->batch.end(), name) != rollout->batch.end())
      lifecycle = "upgrading";
    auto report = soft_.Get(name);
    out.push_back({{"name", name},
                   {"lifecycle", lifecycle},
                   {"status", status},
                   {"applied_revision", report ? store::Json(report->applied_revision) : store::Json(nullptr)},
                   {"healthy", report ? store::Json(report->healthy) : store::Json(nullptr)},
                   {"phase", report ? store::Json(report->phase) : store::Json(nullptr)},
                   {"outputs", report ? store::Json(report->outputs) : store::Json::object()}});
  }
  return out;
}

void ApiService::Handle(ByteView bytes, Respond respond) {
  Result<Request> decoded = Decode(bytes);
  if (!decoded.ok()) return respond(ErrorReply(decoded.status().message()));
  Request& request = *decoded;

  if (std::holds_alternative<MembersReq>(request)) return respond(MembersReply());
  if (std::holds_alternative<InfoReq>(request)) return respond(InfoReply());

  if (auto* join = std::get_if<JoinReq>(&request)) {
    if (join->seeds.empty()) return respond(ErrorReply("join needs at least one address"));
    for (const std::string& seed : join->seeds) {
      Result<HostPort> hp = ParseHostPort(seed);
      if (!hp.ok()) return respond(ErrorReply("join: " + hp.status().message()));
      if (hp->port == 0) return respond(ErrorReply("join: address '" + seed + "' needs a non-zero port"));
    }
    members_.Join(std::move(join->seeds), [respond](Result<int> joined) {
      if (!joined.ok()) return respond(ErrorReply("join failed: " + joined.status().message()));
      capnp::MallocMessageBuilder builder;
      builder.initRoot<api::Reply>().setJoined(static_cast<uint32_t>(std::max(0, *joined)));
      respond(ToBytes(builder));
    });
    return;
  }

  if (std::holds_alternative<LeaveReq>(request)) {
    leave_([respond](Status s) { respond(s.ok() ? NoneReply() : ErrorReply("leave: " + s.message())); });
    return;
  }

  if (auto* fl = std::get_if<ForceLeaveReq>(&request)) {
    if (fl->name.empty()) return respond(ErrorReply("force-leave needs a member name"));
    Status s = members_.ForceLeave(fl->name, fl->prune);
    if (!s.ok()) return respond(ErrorReply("force-leave " + fl->name + ": " + s.message()));
    return respond(NoneReply());
  }

  if (auto* change = std::get_if<TagsReq>(&request)) {
    membership::Tags tags = members_.Self().tags;
    for (auto& [key, value] : change->set) {
      if (key.empty())
        return respond(ErrorReply("tags: a tag key must not be empty (value '" + value + "')"));
      tags[key] = value;
    }
    for (const std::string& key : change->del) tags.erase(key);
    if (!change->set.empty() || !change->del.empty()) members_.SetTags(std::move(tags));
    return respond(InfoReply());
  }

  // Desired-state commands answer JSON (or YAML) text.
  auto text = [&](const Result<store::Json>& r) {
    respond(r.ok() ? TextReply(r->dump()) : ErrorReply(r.status().message()));
  };
  if (auto* apply = std::get_if<ApplyRequest>(&request)) return text(state_.Apply(*apply));
  if (auto* get = std::get_if<GetReq>(&request)) {
    auto r = state_.Get(get->revision, get->format.empty() ? "json" : get->format);
    return respond(r.ok() ? TextReply(*r) : ErrorReply("get: " + r.status().message()));
  }
  if (std::holds_alternative<HistoryReq>(request)) return text(state_.History());
  if (auto* diff = std::get_if<DiffReq>(&request)) {
    if (diff->from.empty()) return respond(ErrorReply("diff needs a revision to compare from"));
    return text(state_.Diff(diff->from, diff->to));
  }
  if (auto* rb = std::get_if<RollbackReq>(&request)) return text(state_.Rollback(rb->to));
  if (std::holds_alternative<NodesReq>(request)) return respond(TextReply(NodesJson().dump()));
  if (auto* f = std::get_if<FreezeReq>(&request)) return text(state_.Freeze(f->reason, members_.config().name));
  if (std::holds_alternative<UnfreezeReq>(request)) return text(state_.Unfreeze());
  if (auto* l = std::get_if<LifecycleReq>(&request)) {
    if (l->to != "commissioned" && l->to != "decommissioned")
      return respond(ErrorReply("unknown lifecycle '" + l->to + "' (expected commissioned or decommissioned)"));
    return text(state_.SetLifecycle(l->nodes, l->to));
  }
  if (auto* r = std::get_if<RolloutStartReq>(&request))
    return text(RequestRollout(replicator_, r->revision, members_.config().name));
  if (std::holds_alternative<RolloutStatusReq>(request))
    return respond(TextReply(RolloutStatus(replicator_.log().state(), members_, soft_).dump()));
  if (auto* r = std::get_if<RolloutControlReq>(&request))
    return text(ControlRollout(replicator_, r->action, members_.config().name));
  if (std::holds_alternative<LeaseReq>(request)) {
    const Lease::View v = lease_.view();
    store::Json out = {{"holder", v.holder ? store::Json(*v.holder) : store::Json(nullptr)},
                       {"ballot", v.ballot},
                       {"expires_in_ms", std::chrono::duration_cast<std::chrono::milliseconds>(v.expires_in).count()},
                       {"voters", v.voters},
                       {"self", members_.config().name},
                       {"quarantined", v.quarantined},
                       {"highest_ballot", v.highest_ballot}};
    return respond(TextReply(out.dump()));
  }
  if (auto* f = std::get_if<ForceVotersReq>(&request)) {
    if (f->voters.empty()) return respond(ErrorReply("voters --force-set needs at least one node name"));
    // Through apply, so the set is validated like any document.
    store::Json doc = {{"voters", f->voters}};
    return text(state_.Apply(ApplyRequest{doc.dump(), "voters --force-set", ""}));
  }

  respond(ErrorReply("request kind not handled by this daemon"));
}

}  // namespace starling::node

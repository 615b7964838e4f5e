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
#include "metrics.h"
#include "rollout_engine.h"
#include "schema/api.capnp.h"
#include "starling/api_json.h"
#include "starling/capnp_bytes.h"
#include "starling/membership/config.h"
#include "starling/text.h"

namespace starling::node {
namespace {

// The members' names; with `alive_only`, only those membership says are alive.
std::vector<std::string> MemberNames(const membership::Memberlist& members, bool alive_only) {
  std::vector<std::string> names;
  for (const auto& m : members.Members())
    if (!alive_only || m.status == membership::MemberStatus::kAlive) names.push_back(m.name);
  return names;
}


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
  bool show_params = false;
};
struct HistoryReq {};
struct DiffReq {
  std::string from, to;
  bool hide_params = false;
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
  bool force = false;
};
struct RolloutStartReq {
  std::string revision;
  bool yes = false, dry_run = false, agent = false;
  std::vector<std::string> only;
  std::string batch;  // empty: the policy's
};
struct RolloutStatusReq {};
struct RolloutControlReq {
  std::string action;
};
struct MonitorReq {
  std::string level;
};
struct ForceVotersReq {
  std::vector<std::string> voters;
  bool force = false;
};
struct KeysReq {
  std::string op, key;
  bool local = false;
};
struct GraphReq {};
struct UiReq {};
struct EventReq {
  std::string name, payload;
  bool coalesce = false;
};
struct QueryReq {
  QueryParams params;
};
struct RttReq {
  std::vector<std::string> names;
};
struct ArtifactReq {
  ArtifactCommand command;
};
using Request = std::variant<MembersReq, JoinReq, LeaveReq, ForceLeaveReq, TagsReq, InfoReq, ApplyRequest, GetReq,
                             HistoryReq, DiffReq, RollbackReq, LeaseReq, ForceVotersReq, NodesReq, FreezeReq, UnfreezeReq, LifecycleReq,
                             RolloutStartReq, RolloutStatusReq, RolloutControlReq, MonitorReq, KeysReq, GraphReq, ArtifactReq,
                             UiReq, EventReq, QueryReq, RttReq>;

using capnp_bytes::Str;
Bytes ToBytes(capnp::MessageBuilder& message) { return capnp_bytes::Flat(message); }

// Strings from the socket: clean UTF-8 (starling/text.h), or the request is
// refused before anything keeps or prints them.
struct NotClean {
  std::string what;
  bool name;
};
std::string Name(capnp::Text::Reader t) {
  std::string s = Str(t);
  if (!text::IsCleanName(s)) throw NotClean{"a name is not clean", true};
  return s;
}
std::string Text(capnp::Text::Reader t) {
  std::string s = Str(t);
  if (!text::IsCleanText(s)) throw NotClean{"a text field is not clean", false};
  return s;
}

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
        for (capnp::Text::Reader seed : req.getJoin()) join.seeds.emplace_back(Name(seed));
        return Request(std::move(join));
      }
      case api::Request::LEAVE:
        return Request(LeaveReq{});
      case api::Request::FORCE_LEAVE: {
        auto fl = req.getForceLeave();
        return Request(ForceLeaveReq{Name(fl.getName()), fl.getPrune()});
      }
      case api::Request::TAGS: {
        TagsReq tags;
        auto change = req.getTags();
        for (auto tag : change.getSet()) tags.set.emplace_back(Name(tag.getKey()), Text(tag.getValue()));
        for (capnp::Text::Reader key : change.getDelete()) tags.del.emplace_back(Name(key));
        return Request(std::move(tags));
      }
      case api::Request::INFO:
        return Request(InfoReq{});
      case api::Request::APPLY: {
        auto a = req.getApply();
        ApplyRequest apply{Text(a.getDocument()), Text(a.getSource()), Text(a.getBase())};
        apply.force = req.getForce();
        for (auto t : a.getSettings()) apply.settings.emplace_back(Text(t.getKey()), Text(t.getValue()));
        return Request(std::move(apply));
      }
      case api::Request::GET: {
        auto g = req.getGet();
        return Request(GetReq{Text(g.getRevision()), Text(g.getFormat()), g.getShowParams()});
      }
      case api::Request::HISTORY:
        return Request(HistoryReq{});
      case api::Request::DIFF: {
        auto d = req.getDiff();
        return Request(DiffReq{Text(d.getFrom()), Text(d.getTo()), d.getHideParams()});
      }
      case api::Request::ROLLBACK:
        return Request(RollbackReq{Text(req.getRollback().getTo())});
      case api::Request::LEASE:
        return Request(LeaseReq{});
      case api::Request::NODES:
        return Request(NodesReq{});
      case api::Request::FREEZE:
        return Request(FreezeReq{Text(req.getFreeze())});
      case api::Request::UNFREEZE:
        return Request(UnfreezeReq{});
      case api::Request::LIFECYCLE: {
        LifecycleReq l;
        for (capnp::Text::Reader n : req.getLifecycle().getNodes()) l.nodes.push_back(Name(n));
        l.to = Text(req.getLifecycle().getTo());
        l.force = req.getForce();
        return Request(std::move(l));
      }
      case api::Request::ROLLOUT_START: {
        RolloutStartReq r{Text(req.getRolloutStart()), req.getYes(), req.getDryRun(), req.getAgent(), {}, {}};
        for (capnp::Text::Reader n : req.getOnly()) r.only.push_back(Name(n));
        r.batch = Text(req.getBatch());
        return Request(std::move(r));
      }
      case api::Request::ROLLOUT_STATUS:
        return Request(RolloutStatusReq{});
      case api::Request::ROLLOUT_CONTROL:
        return Request(RolloutControlReq{Text(req.getRolloutControl())});
      case api::Request::MONITOR:
        return Request(MonitorReq{Text(req.getMonitor())});
      case api::Request::KEYS:
        return Request(KeysReq{Text(req.getKeys().getOp()), Text(req.getKeys().getKey()), req.getKeys().getLocal()});
      case api::Request::GRAPH:
        return Request(GraphReq{});
      case api::Request::UI:
        return Request(UiReq{});
      case api::Request::EVENT: {
        auto e = req.getEvent();
        auto p = e.getPayload();
        return Request(EventReq{Name(e.getName()), std::string(reinterpret_cast<const char*>(p.begin()), p.size()),
                                e.getCoalesce()});
      }
      case api::Request::RTT: {
        RttReq r;
        for (capnp::Text::Reader n : req.getRtt()) r.names.push_back(Name(n));
        return Request(std::move(r));
      }
      case api::Request::QUERY: {
        auto q = req.getQuery();
        QueryReq r;
        r.params.name = Name(q.getName());
        auto p = q.getPayload();
        r.params.payload.assign(reinterpret_cast<const char*>(p.begin()), p.size());
        for (capnp::Text::Reader n : q.getNodes()) r.params.nodes.push_back(Name(n));
        for (auto t : q.getTags()) r.params.tags.push_back({Name(t.getKey()), Text(t.getValue())});
        r.params.timeout = std::chrono::milliseconds(q.getTimeoutMs());
        r.params.no_ack = q.getNoAck();
        r.params.relay_factor = q.getRelayFactor();
        return Request(std::move(r));
      }
      case api::Request::ARTIFACT: {
        auto a = req.getArtifact();
        return Request(ArtifactReq{{Text(a.getOp()), Text(a.getPath()), Text(a.getName()), Text(a.getVersion()), nullptr}});
      }
      case api::Request::VOTERS_FORCE_SET: {
        ForceVotersReq f;
        for (capnp::Text::Reader v : req.getVotersForceSet()) f.voters.push_back(Name(v));
        f.force = req.getForce();
        return Request(std::move(f));
      }
    }
    return Status::InvalidArgument("unknown request kind " + std::to_string(static_cast<int>(req.which())) +
                                   "; the CLI is newer than this daemon");
  } catch (const NotClean& e) {
    return Status::InvalidArgument("malformed request: " + e.what + " (it must be UTF-8" +
                                   (e.name ? " without control characters)" : " without NUL)"));
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
      state_(
          replicator, [&members] { return MemberNames(members, false); },
          [&members] { return MemberNames(members, true); }),
      clock_(clock),
      facts_(std::move(facts)),
      leave_(std::move(leave)) {
  state_.SetSpeakers([&members] {
    std::vector<std::pair<std::string, unsigned>> out;
    for (const auto& m : members.Members())
      if (m.status != membership::MemberStatus::kLeft) out.emplace_back(m.name, m.protocol_cur);
    return out;
  });
}

Bytes ApiService::ErrorReply(const std::string& message) {
  capnp::MallocMessageBuilder builder;
  api::Reply::Builder reply = builder.initRoot<api::Reply>();
  reply.setError(message);
  reply.setNone();
  return ToBytes(builder);
}

Bytes ApiService::ErrorReply(const Status& status, const std::string& prefix) {
  capnp::MallocMessageBuilder builder;
  api::Reply::Builder reply = builder.initRoot<api::Reply>();
  reply.setError(prefix + status.message());
  reply.setErrorCode(std::string(CodeName(status.code())));
  reply.setNone();
  return ToBytes(builder);
}

Bytes ApiService::MembersReply() const {
  capnp::MallocMessageBuilder builder;
  FillMembers(builder.initRoot<api::Reply>());
  return ToBytes(builder);
}

void ApiService::FillMembers(api::Reply::Builder reply) const {
  std::vector<membership::MemberView> all = members_.Members();
  auto list = reply.initMembers(static_cast<unsigned>(all.size()));
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
    out.setProtocolCur(m.protocol_cur);
    out.setVersion(m.release);
    if (m.coordinate) {
      auto c = out.initCoordinate();
      auto vec = c.initVec(static_cast<unsigned>(m.coordinate->vec.size()));
      for (unsigned k = 0; k < vec.size(); ++k) vec.set(k, m.coordinate->vec[k]);
      c.setError(m.coordinate->error);
      c.setAdjustment(m.coordinate->adjustment);
      c.setHeight(m.coordinate->height);
    }
  }
}

Bytes ApiService::InfoReply() const {
  capnp::MallocMessageBuilder builder;
  FillInfo(builder.initRoot<api::Reply>().initInfo());
  return ToBytes(builder);
}

void ApiService::FillInfo(api::Info::Builder info) const {
  const membership::Config& config = members_.config();
  membership::MemberView self = members_.Self();
  info.setName(self.name);
  info.setAddr(self.addr);
  info.setCluster(config.cluster);
  info.setProfile(config.timing.profile);
  info.setIncarnation(self.incarnation);
  info.setHealthScore(static_cast<uint32_t>(std::max(0, members_.HealthScore())));
  info.setProtocolVersion(config.protocol.speak);
  info.setProtocolMin(config.protocol.min);
  info.setProtocolMax(config.protocol.max);
  info.setVersion(facts_.version);
  info.setBuild(facts_.build);
  info.setPid(static_cast<uint32_t>(facts_.pid));
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
  info.setHttp(facts_.http);
  info.setDataDir(facts_.data_dir);
  Duration up = clock_.Now() - facts_.started_at;
  info.setUptimeSeconds(static_cast<uint64_t>(
      std::max<int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(up).count())));
  info.setPhase(phase_);
}

store::Json ApiService::NodesJson() const {
  // Every member, and every node the desired state names.
  std::map<std::string, std::string> rows;  // name -> membership status
  std::map<std::string, membership::MemberView> views;
  const store::Json doc = replicator_.log().state().Document();
  for (auto& m : members_.Members()) {
    rows[m.name] = std::string(membership::StatusName(m.status));
    views[m.name] = std::move(m);
  }
  if (auto it = doc.find("nodes"); it != doc.end() && it->is_object())
    for (const auto& [name, _] : it->items()) rows.emplace(name, "unknown");
  const auto rollout = ReadRecord<RolloutRecord>(replicator_.log().state(), kRolloutKey);
  store::Json out = store::Json::array();
  for (const auto& [name, status] : rows) {
    std::string lifecycle = "discovered";
    if (auto n = doc.find("nodes"); n != doc.end() && n->is_object() && n->contains(name)) {
      const auto& node = (*n)[name];
      if (node.is_object() && node.contains("lifecycle") && node["lifecycle"].is_string())
        lifecycle = node["lifecycle"].get<std::string>();
    }
    if (lifecycle == "commissioned" && rollout &&
        std::find(rollout->batch.begin(), rollout->batch.end(), name) != rollout->batch.end() &&
        !(rollout->nodes.count(name) && rollout->nodes.at(name).done))
      lifecycle = "upgrading";
    auto report = soft_.Get(name);
    auto view = views.find(name);
    const bool known = view != views.end();
    out.push_back({{"name", name},
                   {"version", known && !view->second.release.empty() ? store::Json(view->second.release)
                                                                      : store::Json(nullptr)},
                   {"protocol", known ? store::Json{{"min", view->second.protocol_min},
                                                    {"max", view->second.protocol_max},
                                                    {"current", view->second.protocol_cur}}
                                      : store::Json(nullptr)},
                   {"lifecycle", lifecycle},
                   {"status", status},
                   {"addr", known ? store::Json(view->second.addr) : store::Json(nullptr)},
                   {"roles", NodeRoles(doc, name, known && view->second.tags.count("roles") ? view->second.tags.at("roles") : "")},
                   {"tags", known ? store::Json(view->second.tags) : store::Json::object()},
                   {"detail", report ? store::Json(text::Printable(report->detail)) : store::Json(nullptr)},
                   {"applied_revision", report ? store::Json(report->applied_revision) : store::Json(nullptr)},
                   // As the health gate counts it: a dead node's last report does not.
                   {"healthy", report ? store::Json(report->healthy && status == "alive" && soft_.Fresh(name))
                                      : store::Json(nullptr)},
                   {"phase", report ? store::Json(report->phase) : store::Json(nullptr)},
                   {"outputs", report ? store::Json(report->outputs) : store::Json::object()}});
  }
  return out;
}

// Requests about this member and the member list.
template <typename Request>
void ApiService::HandleMembership(Request& request, Respond respond, Push push) {
  if (auto* m = std::get_if<MonitorReq>(&request)) {
    if (!monitor_ || !push) return respond(ErrorReply("this daemon cannot stream its log"));
    const std::string level = m->level.empty() ? "info" : m->level;
    store::Json hello = {{"time", ""}, {"level", "info"},
                         {"msg", "monitoring " + members_.config().name + " at level " + level}};
    // Checked before the first frame: an error must still be a plain reply.
    Status ok = monitor_(level, [push](const std::string& line) { return push(TextReply(line)); });
    if (!ok.ok()) return respond(ErrorReply(ok.message()));
    push(TextReply(store::CanonicalJson(hello)));
    return;
  }

  if (auto* e = std::get_if<EventReq>(&request)) {
    if (!events_) return respond(ErrorReply("this daemon sends no user events"));
    Result<uint64_t> ltime = events_->Send(e->name, e->payload, e->coalesce);
    if (!ltime.ok()) return respond(ErrorReply(ltime.status(), "event: "));
    return respond(TextReply(store::CanonicalJson(
        {{"name", e->name}, {"ltime", *ltime}, {"bytes", e->payload.size()}, {"coalesce", e->coalesce}})));
  }
  if (auto* q = std::get_if<QueryReq>(&request)) {
    if (!queries_ || !push) return respond(ErrorReply("this daemon asks no queries"));
    auto payload = [](const std::string& p) { return text::IsCleanText(p) ? p : text::Printable(p); };
    Result<uint32_t> id = queries_->Ask(
        q->params,
        [push, payload](const QueryArrival& a) {
          store::Json frame = {{"type", a.ack ? "ack" : "response"},
                               {"from", a.from},
                               {"after_ms", std::chrono::duration_cast<std::chrono::milliseconds>(a.after).count()}};
          if (!a.ack) frame["payload"] = payload(a.payload);
          push(TextReply(store::CanonicalJson(frame)));
        },
        [push](const QuerySummary& s) {
          push(TextReply(store::CanonicalJson(
              {{"type", "done"},
               {"id", s.id},
               {"ltime", s.ltime},
               {"timeout_ms", std::chrono::duration_cast<std::chrono::milliseconds>(s.timeout).count()},
               {"acked", s.acked},
               {"answered", s.answered},
               {"matched", s.matched},
               {"silent", s.silent}})));
        });
    if (!id.ok()) return respond(ErrorReply(id.status(), "query: "));
    return;
  }

  if (auto* r = std::get_if<RttReq>(&request)) {
    if (r->names.empty() || r->names.size() > 2) return respond(ErrorReply("rtt takes one or two member names"));
    const std::string from = r->names.size() == 2 ? r->names[0] : members_.config().name;
    const std::string to = r->names.back();
    std::optional<membership::Coordinate> a, b;
    for (const auto& [name, c] : {std::pair{from, &a}, std::pair{to, &b}}) {
      if (!members_.StatusOf(name)) return respond(ErrorReply(Status::NotFound("rtt: no member named '" + name + "'")));
      *c = members_.CoordinateOf(name);
      if (!*c)
        return respond(ErrorReply(Status::Unavailable(
            "rtt: no coordinate for " + name + " yet: this node learns one when it probes that member (one "
            "member per probe interval); try again shortly")));
    }
    const double ms = std::chrono::duration<double, std::milli>(a->DistanceTo(*b)).count();
    return respond(TextReply(store::CanonicalJson(
        {{"from", from}, {"to", to}, {"rtt_ms", ms}, {"profile", members_.config().timing.profile}})));
  }

  if (std::holds_alternative<MembersReq>(request)) return respond(MembersReply());
  if (std::holds_alternative<InfoReq>(request)) return respond(InfoReply());

  if (auto* join = std::get_if<JoinReq>(&request)) {
    if (join->seeds.empty()) return respond(ErrorReply("join needs at least one address"));
    for (std::string& seed : join->seeds) {
      seed = WithDefaultPort(seed);
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
    std::string was;
    for (const membership::MemberView& m : members_.Members())
      if (m.name == fl->name) was = membership::StatusName(m.status);
    Status s = members_.ForceLeave(fl->name, fl->prune);
    if (!s.ok()) return respond(ErrorReply("force-leave " + fl->name + ": " + s.message()));
    // What was done, for the CLI to say: the member's status before, and after.
    return respond(TextReply(store::CanonicalJson(
        store::Json{{"name", fl->name}, {"was", was}, {"now", fl->prune ? "pruned" : "left"}})));
  }

  if (auto* change = std::get_if<TagsReq>(&request)) {
    membership::Tags tags = members_.Self().tags;
    for (auto& [key, value] : change->set) {
      if (key.empty())
        return respond(ErrorReply("tags: a tag key must not be empty (value '" + value + "')"));
      tags[key] = value;
    }
    for (const std::string& key : change->del) tags.erase(key);
    if (tags == members_.Self().tags) return respond(InfoReply());
    if (save_tags_) {
      if (Status s = save_tags_(tags); !s.ok())
        return respond(ErrorReply("tags: not changed, they could not be saved: " + s.message()));
    }
    members_.SetTags(std::move(tags));
    return respond(InfoReply());
  }

  respond(ErrorReply("request kind not handled by this daemon"));
}

// Requests about the desired state, rollouts, keys and artifacts.
template <typename Request>
void ApiService::HandleState(Request& request, Respond respond) {
  // Desired-state commands answer JSON (or YAML) text.
  auto text = [&](const Result<store::Json>& r) {
    respond(r.ok() ? TextReply(store::CanonicalJson(*r)) : ErrorReply(r.status()));
  };
  if (auto* apply = std::get_if<ApplyRequest>(&request)) {
    if (!offload_) return text(state_.Apply(*apply));
    struct Parsing {
      ApplyRequest request;
      Result<store::Json> given = Status::Unavailable("not parsed");
    };
    auto p = std::make_shared<Parsing>(Parsing{std::move(*apply)});
    offload_([p] { p->given = StateCommands::Parse(p->request); },
             [this, p, respond, alive = alive_] {
               if (!*alive) return;
               Result<store::Json> r =
                   p->given.ok() ? state_.ApplyParsed(p->request, std::move(p->given).value()) : p->given.status();
               respond(r.ok() ? TextReply(store::CanonicalJson(*r)) : ErrorReply(r.status()));
             });
    return;
  }
  if (auto* get = std::get_if<GetReq>(&request)) {
    auto r = state_.Get(get->revision, get->format.empty() ? "json" : get->format, get->show_params);
    return respond(r.ok() ? TextReply(*r) : ErrorReply(r.status(), "get: "));
  }
  if (std::holds_alternative<HistoryReq>(request)) return text(state_.History());
  if (auto* k = std::get_if<KeysReq>(&request)) {
    if (!keys_) return respond(ErrorReply("this daemon has no keyring commands"));
    keys_(k->op, k->key, k->local, [respond](Result<store::Json> r) {
      respond(r.ok() ? TextReply(store::CanonicalJson(*r)) : ErrorReply(r.status()));
    });
    return;
  }
  if (auto* a = std::get_if<ArtifactReq>(&request)) {
    if (!artifacts_) return respond(ErrorReply("this daemon has no artifact store"));
    artifacts_(a->command, [respond](Result<store::Json> r) {
      respond(r.ok() ? TextReply(store::CanonicalJson(*r)) : ErrorReply(r.status(), "artifact: "));
    });
    return;
  }
  if (std::holds_alternative<UiReq>(request)) {
    if (facts_.http.empty()) return respond(ErrorReply("this node serves no HTTP (--http off): it has no console"));
    // Bound to every address: the local node is reached on loopback.
    std::string at = facts_.http;
    if (at.rfind("0.0.0.0:", 0) == 0) at = "127.0.0.1:" + at.substr(8);
    if (at.rfind("[::]:", 0) == 0) at = "[::1]:" + at.substr(5);
    const std::string url = "http://" + at + "/ui/";
    // The token goes in the fragment, which a browser never sends: the page
    // moves it to the request header and out of the address bar.
    return respond(TextReply(store::CanonicalJson(store::Json{{"url", url},
                                                              {"login_url", url + "#token=" + facts_.ui_token},
                                                              {"token", facts_.ui_token},
                                                              {"write", facts_.ui_write}})));
  }
  if (std::holds_alternative<GraphReq>(request)) {
    const store::Json& doc = replicator_.log().state().Document();
    return respond(TextReply(store::CanonicalJson(ServiceGraph(doc, BuildViews(doc, members_, soft_)))));
  }
  if (auto* diff = std::get_if<DiffReq>(&request)) {
    if (diff->from.empty()) return respond(ErrorReply("diff needs a revision to compare from"));
    return text(state_.Diff(diff->from, diff->to, diff->hide_params));
  }
  if (auto* rb = std::get_if<RollbackReq>(&request)) return text(state_.Rollback(rb->to));
  if (std::holds_alternative<NodesReq>(request)) return respond(TextReply(store::CanonicalJson(NodesJson())));
  if (auto* f = std::get_if<FreezeReq>(&request)) return text(state_.Freeze(f->reason, members_.config().name));
  if (std::holds_alternative<UnfreezeReq>(request)) return text(state_.Unfreeze());
  if (auto* l = std::get_if<LifecycleReq>(&request)) {
    if (l->to != "commissioned" && l->to != "decommissioned")
      return respond(ErrorReply("unknown lifecycle '" + l->to + "' (expected commissioned or decommissioned)"));
    return text(state_.SetLifecycle(l->nodes, l->to, l->force));
  }
  if (auto* r = std::get_if<RolloutStartReq>(&request)) {
    RolloutStart start{r->revision, members_.config().name, r->yes, r->dry_run, r->agent, r->only, nullptr};
    if (!r->batch.empty()) {
      Result<store::Json> batch = ParseBatchSize(r->batch);
      if (!batch.ok()) return respond(ErrorReply(batch.status()));
      start.batch = *batch;
    }
    Result<store::Json> started =
        RequestRollout(replicator_, start, BuildViews(replicator_.log().state().Document(), members_, soft_));
    // Nobody would take it up: say so rather than let `--watch` wait unexplained.
    if (started.ok() && !r->dry_run && !lease_.view().holder) {
      const std::string list = JoinNames(lease_.view().voters);
      (*started)["warnings"] = store::Json::array(
          {"no node holds the coordinator lease now (voters: " + (list.empty() ? std::string("none") : list) +
           "); the rollout starts once one does: see `starling lease`"});
    }
    return text(std::move(started));
  }
  if (std::holds_alternative<RolloutStatusReq>(request))
    return respond(TextReply(store::CanonicalJson(RolloutStatus(replicator_.log(), members_, soft_))));
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
    return respond(TextReply(store::CanonicalJson(out)));
  }
  if (auto* f = std::get_if<ForceVotersReq>(&request)) {
    if (f->voters.empty()) return respond(ErrorReply("voters --force-set needs at least one node name"));
    // Through apply, so the set is validated like any document.
    store::Json doc = {{"voters", f->voters}};
    ApplyRequest apply{doc.dump(), "voters --force-set", ""};
    apply.force = f->force;
    return text(state_.Apply(apply));
  }

  respond(ErrorReply("request kind not handled by this daemon"));
}

void ApiService::Handle(ByteView bytes, Respond respond, Push push, OpenFile file) {
  Result<Request> decoded = Decode(bytes);
  if (!decoded.ok()) return respond(ErrorReply(decoded.status().message()));
  Request& request = *decoded;
  if (auto* a = std::get_if<ArtifactReq>(&request)) a->command.file = std::move(file);
  const bool membership = std::holds_alternative<MonitorReq>(request) || std::holds_alternative<MembersReq>(request) ||
                          std::holds_alternative<InfoReq>(request) || std::holds_alternative<JoinReq>(request) ||
                          std::holds_alternative<LeaveReq>(request) || std::holds_alternative<ForceLeaveReq>(request) ||
                          std::holds_alternative<TagsReq>(request) || std::holds_alternative<EventReq>(request) ||
                          std::holds_alternative<QueryReq>(request) || std::holds_alternative<RttReq>(request);
  if (membership) return HandleMembership(request, std::move(respond), std::move(push));
  HandleState(request, std::move(respond));
}

// ---- HTTP ------------------------------------------------------------------------------------

// The same JSON as `starling members --format json` and `starling info
// --format json`: built from the very reply the CLI gets.
store::Json ApiService::MembersJson() const {
  capnp::MallocMessageBuilder builder;
  FillMembers(builder.initRoot<api::Reply>());
  return api_json::Members(builder.getRoot<api::Reply>().asReader().getMembers());
}

store::Json ApiService::InfoJson() const {
  capnp::MallocMessageBuilder builder;
  FillInfo(builder.initRoot<api::Reply>().initInfo());
  return api_json::Info(builder.getRoot<api::Reply>().asReader().getInfo());
}

std::string ApiService::Metrics() const {
  MetricsText m;
  const membership::Counters& c = members_.counters();
  auto counter = [&](const std::string& key) {
    auto it = c.find(key);
    return it == c.end() ? 0.0 : static_cast<double>(it->second);
  };
  // Counters kept as "<prefix>.<label>": one family with that label.
  auto labelled = [&](const std::string& name, const std::string& prefix, const char* label, const char* help) {
    m.Family(name, "counter", help);
    for (const auto& [key, value] : c)
      if (key.rfind(prefix, 0) == 0) m.Sample(name, {{label, key.substr(prefix.size())}}, static_cast<double>(value));
  };

  m.Family("starling_build_info", "gauge", "Always 1; the version in a label.");
  m.Sample("starling_build_info", {{"version", facts_.version}}, 1);
  m.Family("starling_serving", "gauge", "1 while the daemon serves; 0 while it starts or leaves.");
  m.Sample("starling_serving", phase_ == "serving" ? 1 : 0);

  const membership::MemberCounts counts = members_.Counts();
  m.Family("starling_members", "gauge", "Members in this node's view by status, this node included.");
  m.Sample("starling_members", {{"status", "alive"}}, static_cast<double>(counts.alive));
  m.Sample("starling_members", {{"status", "suspect"}}, static_cast<double>(counts.suspect));
  m.Sample("starling_members", {{"status", "failed"}}, static_cast<double>(counts.failed));
  m.Sample("starling_members", {{"status", "left"}}, static_cast<double>(counts.left));
  labelled("starling_gossip_messages_sent_total", "messages_sent.", "type", "Gossip messages sent, by type.");
  labelled("starling_gossip_messages_received_total", "messages_received.", "type",
           "Gossip messages received, by type.");
  m.Family("starling_gossip_bytes_sent_total", "counter", "Bytes sent by the membership transport.");
  m.Sample("starling_gossip_bytes_sent_total", {{"transport", "udp"}}, counter("bytes_sent"));
  m.Sample("starling_gossip_bytes_sent_total", {{"transport", "tcp"}}, counter("stream_bytes_sent"));
  m.Family("starling_gossip_bytes_received_total", "counter", "Bytes received by the membership transport.");
  m.Sample("starling_gossip_bytes_received_total", {{"transport", "udp"}}, counter("bytes_received"));
  m.Sample("starling_gossip_bytes_received_total", {{"transport", "tcp"}}, counter("stream_bytes_received"));
  labelled("starling_bad_packets_total", "bad_packets.", "reason",
           "Packets dropped as malformed or unauthenticated, by reason (auth: no key opens it; unencrypted: clear "
           "in an encrypted cluster; encrypted: sealed but this node has no key).");
  const auto& ring = members_.config().keyring;
  m.Family("starling_keyring_keys", "gauge", "Keys in this node's keyring; 0 means gossip runs in the clear.");
  m.Sample("starling_keyring_keys", ring ? static_cast<double>(ring->keys().size()) : 0.0);
  for (const auto& extra : extra_metrics_) extra(m);
  m.Family("starling_health_score", "gauge", "Lifeguard local health score (0 is healthy; higher is worse).");
  m.Sample("starling_health_score", members_.HealthScore());
  m.Family("starling_broadcast_queue_depth", "gauge", "Membership broadcasts waiting to be piggybacked.");
  m.Sample("starling_broadcast_queue_depth", counter("broadcast_queue_depth"));
  m.Family("starling_suspicions_total", "counter", "Members this node started suspecting.");
  m.Sample("starling_suspicions_total", counter("suspicions"));
  m.Family("starling_refutations_total", "counter", "Times this node refuted a suspicion of itself.");
  m.Sample("starling_refutations_total", counter("refutations"));
  m.Family("starling_probes_total", "counter", "Direct probes sent.");
  m.Sample("starling_probes_total", counter("probes"));
  m.Family("starling_probe_rtt_seconds", "histogram", "Round trip of acked direct probes.");
  double cumulative = 0;
  for (uint64_t le : membership::kProbeRttBucketsUs) {
    cumulative += counter("probe_rtt_bucket." + std::to_string(le));
    char bound[32];
    std::snprintf(bound, sizeof bound, "%g", static_cast<double>(le) / 1e6);
    m.Sample("starling_probe_rtt_seconds_bucket", {{"le", bound}}, cumulative);
  }
  m.Sample("starling_probe_rtt_seconds_bucket", {{"le", "+Inf"}}, counter("probe_rtt_count"));
  m.Sample("starling_probe_rtt_seconds_sum", counter("probe_rtt_us_sum") / 1e6);
  m.Sample("starling_probe_rtt_seconds_count", counter("probe_rtt_count"));

  const store::DesiredLog& log = replicator_.log();
  const auto& rc = replicator_.counters();
  auto log_counter = [&](const char* key) {
    auto it = rc.find(key);
    return it == rc.end() ? 0.0 : static_cast<double>(it->second);
  };
  m.Family("starling_desired_state_entries", "gauge", "Desired-state log entries held (folded or not).");
  m.Sample("starling_desired_state_entries", static_cast<double>(log.entries()));
  m.Family("starling_desired_state_info", "gauge", "Always 1; the current revision and digest in labels.");
  m.Sample("starling_desired_state_info", {{"revision", log.Current().id}, {"digest", log.digest()}}, 1);
  m.Family("starling_anti_entropy_bytes_total", "counter", "Desired-state anti-entropy bytes.");
  m.Sample("starling_anti_entropy_bytes_total", {{"direction", "sent"}}, log_counter("anti_entropy_bytes_sent"));
  m.Sample("starling_anti_entropy_bytes_total", {{"direction", "received"}},
           log_counter("anti_entropy_bytes_received"));
  m.Family("starling_desired_state_entries_written_total", "counter", "Desired-state entries written here.");
  m.Sample("starling_desired_state_entries_written_total", log_counter("entries_written"));

  const Lease::View lease = lease_.view();
  m.Family("starling_lease_holder", "gauge", "1 for the coordinator as this node knows it (holder label).");
  if (lease.holder) m.Sample("starling_lease_holder", {{"holder", *lease.holder}}, 1);
  m.Family("starling_lease_is_holder", "gauge", "1 while this node holds the coordinator lease.");
  m.Sample("starling_lease_is_holder", lease_.IsHolder() ? 1 : 0);
  m.Family("starling_lease_ballot", "gauge", "Ballot of the lease as this node knows it.");
  m.Sample("starling_lease_ballot", static_cast<double>(lease.ballot));

  const store::Json rollout = RolloutStatus(log, members_, soft_);
  m.Family("starling_rollout_info", "gauge", "Always 1; the rollout's state and revision in labels.");
  m.Sample("starling_rollout_info",
           {{"state", store::TextAt(rollout, "state")}, {"revision", store::TextAt(rollout, "revision")}}, 1);
  m.Family("starling_rollout_nodes", "gauge", "Commissioned nodes by rollout phase.");
  const store::Json phases = rollout.value("counts", store::Json::object());
  for (const auto& [phase, n] : phases.items()) m.Sample("starling_rollout_nodes", {{"phase", phase}}, n.get<double>());
  const NodeReport& self = soft_.local();
  m.Family("starling_node_healthy", "gauge", "1 while this node's health hooks pass.");
  m.Sample("starling_node_healthy", self.healthy ? 1 : 0);
  m.Family("starling_node_applied_info", "gauge", "Always 1; the revision this node has applied in a label.");
  m.Sample("starling_node_applied_info", {{"revision", self.applied_revision}, {"phase", self.phase}}, 1);

  const ProcessFigures p = ReadProcessFigures();
  if (p.ok) {
    m.Family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    m.Sample("process_resident_memory_bytes", p.resident_bytes);
    m.Family("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    m.Sample("process_cpu_seconds_total", p.cpu_seconds);
    m.Family("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.");
    m.Sample("process_start_time_seconds", p.start_time_seconds);
  }
  return m.text();
}

HttpReply ApiService::HandleHttp(const std::string& path) const {
  auto json = [](const store::Json& j) { return HttpReply{200, "application/json", store::CanonicalJson(j) + "\n"}; };
  if (path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", Metrics()};
  if (path == "/health") {
    store::Json body = {{"status", phase_}, {"name", members_.config().name}};
    return {phase_ == "serving" ? 200 : 503, "application/json", store::CanonicalJson(body) + "\n"};
  }
  if (path == "/v1/members") return json(MembersJson());
  if (path == "/v1/info") return json(InfoJson());
  if (path == "/v1/nodes") return json(NodesJson());
  if (path == "/v1/rollout") return json(RolloutStatus(replicator_.log(), members_, soft_));
  if (path == "/v1/state") {
    const store::DesiredLog& log = replicator_.log();
    // Unauthenticated: params (secrets among them) are never shown here.
    return json({{"revision", log.Current().id},
                 {"digest", log.digest()},
                 {"document", store::HideParams(log.state().Document())}});
  }
  store::Json body = {
      {"error", "no such endpoint: " + path},
      {"endpoints", {"/metrics", "/health", "/v1/members", "/v1/info", "/v1/state", "/v1/rollout", "/v1/nodes"}}};
  return {404, "application/json", store::CanonicalJson(body) + "\n"};
}

}  // namespace starling::node

#include "rollout_engine.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

#include "state_commands.h"

namespace starling::node {

using store::Json;

namespace {

Result<store::Entry> WriteRecord(store::Replicator& replicator, const char* key, const Json& value,
                                 const std::string& note) {
  return replicator.Write({store::Op{key, value.dump()}}, std::string(kRolloutNote) + " " + note,
                          replicator.log().last_hlc());
}

// The packages and services of a document: what a rollout changes.
Json Payload(const Json& doc) {
  return {{"packages", doc.value("packages", Json::object())}, {"services", doc.value("services", Json::object())}};
}

}  // namespace

std::vector<NodeView> BuildViews(const Json& doc, const membership::Memberlist& members, const SoftState& soft) {
  std::map<std::string, NodeView> views;
  members.ForEachMember([&](const membership::MemberRecord& m) {
    NodeView& v = views[m.name];
    v.name = m.name;
    v.release = m.release;
    v.reachable = m.status == membership::MemberStatus::kAlive || m.status == membership::MemberStatus::kSuspect;
    v.suspect = m.status == membership::MemberStatus::kSuspect;
    v.left = m.status == membership::MemberStatus::kLeft;
    auto tag = m.tags.find("roles");
    v.roles_tag = tag == m.tags.end() ? "" : tag->second;
    v.roles = NodeRoles(doc, m.name, v.roles_tag);
  });
  if (auto n = doc.find("nodes"); n != doc.end() && n->is_object()) {
    for (const auto& [name, _] : n->items()) {
      NodeView& v = views[name];
      if (v.name.empty()) {
        v.name = name;
        v.roles = NodeRoles(doc, name, "");
      }
    }
  }
  std::vector<NodeView> out;
  for (auto& [name, v] : views) {
    v.commissioned = Commissioned(doc, name);
    if (auto r = soft.Get(name)) {
      v.reported = true;
      v.fresh = soft.Fresh(name);
      v.heard = soft.HeardAt(name);
      v.checked = soft.CheckedAt(name);
      v.counts_checks = r->counts_checks;
      v.generation = r->version >> 32;
      v.applied = r->applied_revision;
      v.target = r->target;
      v.healthy = r->healthy;
      v.phase = r->phase;
      v.detail = r->detail;
    }
    out.push_back(std::move(v));
  }
  return out;
}

const Json* ContentMatch::Doc(const std::string& id) {
  auto it = docs_.find(id);
  if (it == docs_.end()) {
    auto doc = log_.DocumentAt(id);
    it = docs_.emplace(id, doc.ok() ? std::optional<Json>(std::move(doc).value()) : std::nullopt).first;
  }
  return it->second ? &*it->second : nullptr;
}

bool ContentMatch::operator()(const NodeView& v, const std::string& revision) {
  const Json* have = Doc(v.applied);
  const Json* want = Doc(revision);
  // A revision this node cannot read any more: only the id can tell.
  if (!have || !want) return v.applied == revision;
  Json a = NodeSpec(*have, NodeRoles(*have, v.name, v.roles_tag));
  Json b = NodeSpec(*want, NodeRoles(*want, v.name, v.roles_tag));
  if (!agent_) {
    a.erase("agent");
    b.erase("agent");
  } else if (b.contains("agent") && !v.release.empty() && store::TextAt(b["agent"], "version") != v.release) {
    return false;
  }
  return a == b;
}

Json RolloutStatus(const store::DesiredLog& log, const membership::Memberlist& members, const SoftState& soft) {
  const store::State& st = log.state();
  auto record = ReadRecord<RolloutRecord>(st, kRolloutKey);
  auto request = ReadRecord<RolloutRequest>(st, kRolloutRequestKey);
  ContentMatch same(log, record && record->agent);
  const Json& doc = st.Document();
  Json out = Json::object();
  RolloutRecord r = record.value_or(RolloutRecord{});
  out["state"] = record ? r.state : "idle";
  out["id"] = r.id;
  out["revision"] = r.revision;
  out["from"] = r.from;
  out["target"] = r.target();
  out["reverting"] = r.reverting;
  out["batch"] = r.batch;
  // Counted from 1 in each rollout; batch_seq is the cluster-wide sequence.
  out["batch_no"] = r.batches;
  out["batch_seq"] = r.batch_no;
  out["reason"] = r.reason;
  out["by"] = r.by;
  out["agent"] = r.agent;
  out["only"] = r.only;              // empty: every commissioned node
  out["batch_size"] = r.batch_size;  // null: the policy's
  out["ballot"] = r.ballot;
  out["started_unix"] = r.started_us / 1000000;
  out["ended_unix"] = r.ended_us / 1000000;
  if (request && request->id > r.id) out["requested"] = request->ToJson();
  Json nodes = Json::array();
  std::map<std::string, int> counts;
  for (const auto& v : BuildViews(doc, members, soft)) {
    if (!v.commissioned) continue;
    const bool on_target = !v.applied.empty() && same(v, r.target());
    std::string phase = record ? NodeRolloutPhase(r, v, on_target) : (v.left ? "left" : v.reachable ? "idle" : "down");
    ++counts[phase];
    auto report = soft.Get(v.name);
    // Which batch of this rollout took it, counted from 1; 0: none yet.
    uint64_t batch = 0;
    if (auto a = r.nodes.find(v.name); record && a != r.nodes.end() && a->second.batch + r.batches > r.batch_no)
      batch = a->second.batch + r.batches - r.batch_no;
    nodes.push_back({{"name", v.name},
                     {"phase", phase},
                     {"batch", batch},
                     {"applied_revision", v.applied},
                     {"healthy", v.Serving()},
                     {"agent_phase", v.phase},
                     {"reachable", v.reachable},
                     {"detail", report ? report->detail : ""}});
  }
  out["nodes"] = nodes;
  out["counts"] = counts;
  return out;
}

// ---- engine -----------------------------------------------------------------------------------

RolloutEngine::RolloutEngine(std::string self, Clock& clock, membership::Memberlist& members,
                             store::Replicator& replicator, const SoftState& soft, Lease& lease, EngineConfig config)
    : self_(std::move(self)),
      clock_(clock),
      members_(members),
      replicator_(replicator),
      soft_(soft),
      lease_(lease),
      cfg_(config) {}

RolloutEngine::~RolloutEngine() {
  if (timer_) clock_.Cancel(timer_);
}

void RolloutEngine::Start() { timer_ = clock_.Schedule(cfg_.tick, [this] { Tick(); }); }

void RolloutEngine::Tick() {
  Step();
  timer_ = clock_.Schedule(cfg_.tick, [this] { Tick(); });
}

void RolloutEngine::Poke() { Step(); }

void RolloutEngine::Step() {
  // A write below reports a change to the log, which pokes us again.
  if (stepping_) return;
  const store::State& st = replicator_.log().state();
  const bool holder = lease_.IsHolder();
  // A node that does not hold the lease only follows the record's writes.
  if (!holder && !record_.Changed(st)) {
    if (was_holder_) planner_.Reset();
    was_holder_ = false;
    return;
  }
  std::shared_ptr<const RolloutRecord> read = record_.ReadShared(st);
  bool stale = false;
  if (read && RecordOutOfReach(read->ballot, std::max(lease_.highest_ballot(), best_ ? best_->ballot : 0),
                               &out_of_reach_, "rollout")) {
    read = best_;
    stale = read != nullptr;
  } else if (read && best_ && read->ballot < best_->ballot) {
    stale = true;
    read = best_;
  } else if (read) {
    best_ = read;
  }
  if (!holder) {
    if (was_holder_) planner_.Reset();
    was_holder_ = false;
    return;
  }
  was_holder_ = true;
  stepping_ = true;
  std::optional<RolloutRecord> record;
  if (read) record = *read;
  auto request = ReadRecord<RolloutRequest>(st, kRolloutRequestKey);
  auto control = ReadRecord<RolloutControl>(st, kRolloutControlKey);
  AutoUpgrade(st, record, request);
  request = ReadRecord<RolloutRequest>(st, kRolloutRequestKey);
  // Read after AutoUpgrade's write (a control record, which leaves the document as it was).
  const Json& doc = st.Document();
  const bool frozen = FrozenReason(doc).has_value();
  // The kind of the rollout this step moves: the one running, else the one
  // it is about to start.
  const bool active = record && !record->settled();
  ContentMatch same(replicator_.log(), active ? record->agent : request && request->agent);
  const std::vector<NodeView> views = BuildViews(doc, members_, soft_);
  RolloutPlanner::Step step =
      planner_.Advance({record, request, control, RolloutPolicy::From(doc), views,
                        lease_.ballot(), frozen, clock_.Now(), clock_.WallMicros(),
                        [&same](const NodeView& v, const std::string& revision) { return same(v, revision); }});
  if (stale) {
    spdlog::warn("rollout: the record was overwritten by an older or out-of-reach ballot; restoring it");
    if (!step.write) {
      step.write = *record;
      step.write->ballot = lease_.ballot();
    }
  }
  if (step.write) {
    if (observer_) observer_(record, *step.write, views);
    best_ = std::make_shared<const RolloutRecord>(*step.write);
    if (!step.log.empty()) spdlog::info("rollout: {}", step.log);
    auto w = WriteRecord(replicator_, kRolloutKey, step.write->ToJson(),
                         step.log.empty() ? "progress" : step.log.substr(0, 900));
    if (!w.ok()) spdlog::error("rollout: cannot record progress: {}", w.status().message());
  }
  stepping_ = false;
}

void RolloutEngine::AutoUpgrade(const store::State& st, const std::optional<RolloutRecord>& record,
                                const std::optional<RolloutRequest>& request) {
  const Json& doc = st.Document();
  auto sw = doc.find("switches");
  if (sw == doc.end() || !store::TrueAt(*sw, "auto_upgrade")) return;
  if (FrozenReason(doc)) return;
  if (record && !record->settled()) return;
  uint64_t last = std::max(record ? record->id : 0, request ? request->id : 0);
  if (request && request->id > (record ? record->id : 0)) return;  // one is waiting already
  const std::string current = replicator_.log().Current().id;
  if (current.empty()) return;
  if (record) {
    auto released = replicator_.log().DocumentAt(record->revision);
    if (released.ok() && Payload(*released) == Payload(doc)) return;
  } else if (Payload(doc) == Payload(Json::object())) {
    return;
  }
  RolloutRequest req{last + 1, current, self_, true};
  spdlog::info("rollout: auto-upgrade to revision {}", current);
  auto w = WriteRecord(replicator_, kRolloutRequestKey, req.ToJson(), "auto-upgrade to " + current);
  if (!w.ok()) spdlog::error("rollout: cannot request the auto-upgrade: {}", w.status().message());
}

// ---- operator commands ------------------------------------------------------------------------

namespace {

std::string Brief(const Json& v) {
  std::string s = v.is_string() ? v.get<std::string>() : v.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// The batches a start would make if every node stays in service: the
// planner itself, run on the same views with each batch coming up healthy.
Json PlanBatches(const store::DesiredLog& log, const std::string& target, const std::vector<NodeView>& views,
                 Json& unchanged, Json& down, const RolloutStart& start) {
  const bool agent = start.agent;
  RolloutPolicy policy = RolloutPolicy::From(log.state().Document());
  // No node misses a deadline in the plan: every batch comes up healthy.
  policy.node_deadline = policy.progress_deadline = std::chrono::hours(24 * 365);
  ContentMatch same(log, agent);
  auto same_content = [&same](const NodeView& v, const std::string& revision) { return same(v, revision); };
  Time now{};
  std::vector<NodeView> nodes = views;
  for (NodeView& v : nodes) {
    if (!v.commissioned || v.left || !MovesNode(start.only, v.name)) continue;
    if (!v.applied.empty() && same(v, target)) unchanged.push_back(v.name);
    else if (!v.reachable) down.push_back(v.name);
    if (!v.reachable) continue;
    v.suspect = false;
    v.reported = v.fresh = v.healthy = true;
    v.phase = "idle";
    v.heard = v.checked = now;
  }
  RolloutPlanner planner;
  std::optional<RolloutRecord> record;
  RolloutRequest request{1, target, "", false};
  request.only = start.only;
  request.batch = start.batch;
  Json batches = Json::array();
  // A batch takes a few steps (chosen, seen healthy, healthy for
  // min_healthy, the next one chosen); the bound only stops a plan that
  // cannot finish.
  for (size_t step = 0; step < 4 * nodes.size() + 8; ++step) {
    RolloutPlanner::Step s =
        planner.Advance({record, request, std::nullopt, policy, nodes, 0, false, now, 1, same_content});
    if (s.write) record = std::move(s.write);
    if (!record || record->settled()) break;
    if (!record->batch.empty() && (batches.empty() || batches.back() != Json(record->batch)))
      batches.push_back(record->batch);
    now += policy.min_healthy + std::chrono::seconds(1);
    for (NodeView& v : nodes) {
      if (std::find(record->batch.begin(), record->batch.end(), v.name) != record->batch.end())
        v.applied = v.target = target;
      if (v.reachable) v.heard = v.checked = now;
    }
  }
  return batches;
}

}  // namespace

Result<Json> RequestRollout(store::Replicator& replicator, const RolloutStart& start,
                            const std::vector<NodeView>& views) {
  store::DesiredLog& log = replicator.log();
  const std::string current = log.Current().id;
  std::string target = current;
  if (!start.revision.empty()) {
    auto found = log.Find(start.revision);
    if (!found.ok()) return found.status();
    target = found->id;
  }
  if (target.empty()) return Status::InvalidArgument("there is no desired state to roll out yet: apply one first");
  if (!start.batch.is_null() && !ValidBatchSize(start.batch))
    return Status::InvalidArgument("batch " + start.batch.dump() + ": expected " + kBatchSizeRule);
  for (const std::string& name : start.only) {
    auto v = std::find_if(views.begin(), views.end(), [&](const NodeView& n) { return n.name == name; });
    if (v == views.end()) return Status::NotFound("node '" + name + "' is not a member of this cluster");
    if (!v->commissioned) return Status::InvalidArgument("node '" + name + "' is not commissioned: `starling commission " + name + "` first");
    if (v->left) return Status::InvalidArgument("node '" + name + "' has left the cluster");
  }
  auto target_doc = log.DocumentAt(target);
  if (!target_doc.ok()) return target_doc.status();
  const Json diff = store::DiffJson(log.state().Document(), *target_doc);
  if (start.dry_run) {
    Json unchanged = Json::array(), down = Json::array();
    Json batches = PlanBatches(log, target, views, unchanged, down, start);
    return Json{{"dry_run", true}, {"revision", target}, {"current", current}, {"diff", diff},
                {"batches", batches}, {"unchanged", unchanged}, {"down", down}};
  }
  if (target != current && !start.yes) {
    std::string lines;
    for (const auto& c : diff) {
      const std::string kind = store::TextAt(c, "kind");
      const std::string path = store::TextAt(c, "path");
      lines += kind == "added"     ? "\n  + " + path + ": " + Brief(c["after"])
               : kind == "removed" ? "\n  - " + path + ": " + Brief(c["before"])
                                   : "\n  ~ " + path + ": " + Brief(c["before"]) + " -> " + Brief(c["after"]);
    }
    return Status::Conflict("revision " + target + " is not the current revision " + current +
                            "; rolling it out makes the nodes run what it says, which differs from the desired state:" +
                            (lines.empty() ? std::string("\n  (no differences)") : lines) +
                            "\n`starling rollout start --revision " + target +
                            " --dry-run` shows the batches; --yes goes ahead");
  }
  return RequestRollout(replicator, target, start.by, start.agent, start.only, start.batch);
}

Result<Json> RequestRollout(store::Replicator& replicator, const std::string& revision, const std::string& by,
                            bool agent, const std::vector<std::string>& only, const Json& batch) {
  const store::State& st = replicator.log().state();
  if (auto why = FrozenReason(st.Document()))
    return Status::Conflict("refused: the cluster is " + *why + "; `starling unfreeze` lifts it");
  auto record = ReadRecord<RolloutRecord>(st, kRolloutKey);
  auto waiting = ReadRecord<RolloutRequest>(st, kRolloutRequestKey);
  const bool running = record && !record->settled();
  if (running && waiting && waiting->id > record->id)
    return Status::Conflict("rollout " + std::to_string(waiting->id) + " of revision " + waiting->revision +
                            " waits to start already, after rollout " + std::to_string(record->id));
  if (running && record->agent == agent)
    return Status::Conflict("rollout " + std::to_string(record->id) + " of revision " + record->revision + " is " +
                            record->state + "; `starling rollout abort` ends it first");
  std::string target;
  if (revision.empty()) {
    target = replicator.log().Current().id;
    if (target.empty()) return Status::InvalidArgument("there is no desired state to roll out yet: apply one first");
  } else {
    auto found = replicator.log().Find(revision);
    if (!found.ok()) return found.status();
    target = found->id;
  }
  const Json& doc = st.Document();
  bool any = false;
  if (auto n = doc.find("nodes"); n != doc.end() && n->is_object())
    for (const auto& [name, _] : n->items()) any |= Commissioned(doc, name);
  if (!any)
    return Status::Conflict(
        "no node is commissioned, so a rollout would touch nothing: `starling commission NODE...` first, or "
        "turn on switches.auto_commission");
  auto request = ReadRecord<RolloutRequest>(st, kRolloutRequestKey);
  uint64_t id = std::max(record ? record->id : 0, request ? request->id : 0) + 1;
  RolloutRequest req{id, target, by, false, agent};
  req.only = only;
  req.batch = batch;
  auto w = WriteRecord(replicator, kRolloutRequestKey, req.ToJson(),
                       "start " + target + (only.empty() ? "" : " on " + JoinNames(only)) + " by " + by);
  if (!w.ok()) return w.status();
  Json out = {{"id", id}, {"revision", target}, {"agent", agent}};
  if (!only.empty()) out["only"] = only;
  if (!batch.is_null()) out["batch"] = batch;
  // The other kind runs: this one is taken once that settles.
  if (running) out["waits_for"] = record->id;
  return out;
}

Result<Json> ControlRollout(store::Replicator& replicator, const std::string& action, const std::string& by) {
  if (action != "pause" && action != "resume" && action != "abort")
    return Status::InvalidArgument("unknown rollout action '" + action + "' (expected pause, resume or abort)");
  const store::State& st = replicator.log().state();
  auto record = ReadRecord<RolloutRecord>(st, kRolloutKey);
  if (!record || record->settled())
    return Status::Conflict("no rollout is in progress" +
                            (record ? " (rollout " + std::to_string(record->id) + " " + record->state + ")"
                                    : std::string()));
  if (action == "pause" && record->state == "paused") return Status::Conflict("the rollout is paused already");
  if (action == "resume" && record->state != "paused") return Status::Conflict("the rollout is not paused");
  auto last = ReadRecord<RolloutControl>(st, kRolloutControlKey);
  RolloutControl c{std::max(record->control, last ? last->seq : 0) + 1, record->id, action, by};
  auto w = WriteRecord(replicator, kRolloutControlKey, c.ToJson(), action + " by " + by);
  if (!w.ok()) return w.status();
  return Json{{"id", record->id}, {"action", action}};
}

}  // namespace starling::node

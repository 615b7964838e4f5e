#include "rollout.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "starling/text.h"

namespace starling::node {

using store::Json;

namespace {

constexpr size_t kMaxName = 256;
constexpr size_t kMaxText = 1024;
constexpr size_t kMaxNodes = 100000;

Duration DurationOr(const Json& p, const char* key, Duration fallback) {
  auto it = p.find(key);
  if (it == p.end() || !it->is_string()) return fallback;
  auto d = store::ParseDuration(it->get_ref<const std::string&>());
  return d.ok() ? std::chrono::duration_cast<Duration>(*d) : fallback;
}

// Field readers for records from the log: a wrong type is corruption.
struct Reader {
  const Json& j;
  std::string error;
  template <typename T>
  T Num(const char* key) {
    auto it = j.find(key);
    if (it == j.end()) return 0;
    if (!it->is_number_integer()) {
      error = std::string("field ") + key + " is not a whole number";
      return 0;
    }
    return it->get<T>();
  }
  std::string Text(const char* key, size_t max = kMaxText) {
    auto it = j.find(key);
    if (it == j.end()) return "";
    if (!it->is_string() || it->get_ref<const std::string&>().size() > max) {
      error = std::string("field ") + key + " is not a string of at most " + std::to_string(max) + " bytes";
      return "";
    }
    return it->get<std::string>();
  }
  bool Bool(const char* key) {
    auto it = j.find(key);
    if (it == j.end()) return false;
    if (!it->is_boolean()) {
      error = std::string("field ") + key + " is not a boolean";
      return false;
    }
    return it->get<bool>();
  }
  std::vector<std::string> Names(const char* key) {
    std::vector<std::string> out;
    auto it = j.find(key);
    if (it == j.end()) return out;
    if (!it->is_array() || it->size() > kMaxNodes) {
      error = std::string("field ") + key + " is not a list of names";
      return out;
    }
    for (const Json& e : *it) {
      if (!e.is_string() || e.get_ref<const std::string&>().size() > kMaxName) {
        error = std::string("field ") + key + " holds something other than a name";
        return {};
      }
      out.push_back(e.get<std::string>());
    }
    return out;
  }
};

bool IsBusy(const std::string& phase) {
  return !(phase.empty() || phase == "idle" || phase == "failed" || phase == "removed");
}

// A record's reason is read back with a bound (kMaxText): keep within it.
std::string Capped(std::string s, size_t max = kMaxText) {
  if (s.size() > max) s = text::HeadChars(s, max - 3) + "...";
  return s;
}

}  // namespace

std::string JoinNames(const std::vector<std::string>& names) {
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : ", ") + n;
  return out;
}

size_t RoleRank(const std::vector<std::string>& order, const std::vector<std::string>& roles) {
  size_t best = order.size();
  for (const auto& r : roles) {
    auto it = std::find(order.begin(), order.end(), r);
    if (it != order.end()) best = std::min(best, static_cast<size_t>(it - order.begin()));
  }
  return best;
}

// ---- policy ---------------------------------------------------------------------------

RolloutPolicy RolloutPolicy::From(const Json& doc) {
  RolloutPolicy p;
  auto it = doc.find("policy");
  if (it == doc.end() || !it->is_object()) return p;
  const Json& j = *it;
  if (auto b = j.find("batch"); b != j.end()) p.batch = *b;
  if (auto r = j.find("role_order"); r != j.end() && r->is_array())
    for (const Json& e : *r)
      if (e.is_string()) p.role_order.push_back(e.get<std::string>());
  if (auto h = j.find("health_gate"); h != j.end() && h->is_boolean()) p.health_gate = h->get<bool>();
  p.min_healthy = DurationOr(j, "min_healthy", p.min_healthy);
  p.node_deadline = DurationOr(j, "node_deadline", p.node_deadline);
  p.progress_deadline = DurationOr(j, "progress_deadline", p.progress_deadline);
  if (auto f = j.find("failure_threshold"); f != j.end() && f->is_number_integer() && f->get<int64_t>() >= 0)
    p.failure_threshold = f->get<uint64_t>();
  if (auto a = j.find("auto_revert"); a != j.end() && a->is_boolean()) p.auto_revert = a->get<bool>();
  return p;
}

size_t RolloutPolicy::BatchSize(size_t index, size_t total) const {
  const Json* step = &batch;
  if (batch.is_array()) {
    if (batch.empty()) return 1;
    step = &batch[std::min(index, batch.size() - 1)];
  }
  size_t n = 1;
  if (step->is_number_integer() && step->get<int64_t>() >= 1) {
    n = step->get<uint64_t>();
  } else if (step->is_string()) {
    const std::string& s = step->get_ref<const std::string&>();
    double pct = std::atof(s.c_str());
    n = static_cast<size_t>(std::ceil(pct / 100.0 * static_cast<double>(total)));
  }
  return std::clamp<size_t>(n, 1, std::max<size_t>(total, 1));
}

bool ValidBatchSize(const Json& b) {
  auto step_ok = [](const Json& s) {
    if (s.is_number_integer()) return s.get<int64_t>() >= 1 && s.get<int64_t>() <= 1000000;
    if (!s.is_string()) return false;
    const std::string& t = s.get_ref<const std::string&>();
    if (t.size() < 2 || t.size() > 4 || t.back() != '%') return false;
    if (t.find_first_not_of("0123456789") != t.size() - 1) return false;
    const int pct = std::atoi(t.c_str());
    return pct >= 1 && pct <= 100;
  };
  if (!b.is_array()) return step_ok(b);
  if (b.empty() || b.size() > 64) return false;
  return std::all_of(b.begin(), b.end(), step_ok);
}

const char* const kBatchSizeRule = "a count >= 1, a percentage from 1% to 100%, or a comma-separated ramp of those";

Result<Json> ParseBatchSize(const std::string& text) {
  Json steps = Json::array();
  size_t start = 0;
  for (;;) {
    const size_t comma = text.find(',', start);
    const std::string part = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    Json step = part;
    if (!part.empty() && part.size() <= 7 && part.find_first_not_of("0123456789") == std::string::npos)
      step = std::stoll(part);
    if (!ValidBatchSize(step)) return Status::InvalidArgument("batch '" + text + "': expected " + kBatchSizeRule);
    steps.push_back(step);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return steps.size() == 1 ? steps[0] : steps;
}

size_t RolloutPolicy::MaxBatch(size_t total) const {
  size_t steps = batch.is_array() ? std::max<size_t>(batch.size(), 1) : 1;
  size_t most = 1;
  for (size_t i = 0; i < steps; ++i) most = std::max(most, BatchSize(i, total));
  return most;
}

// ---- records ------------------------------------------------------------------------------

Json RolloutRecord::ToJson() const {
  // Assignments grouped by what they say: a record is rewritten at every
  // step of a rollout and every node holds each copy until the log folds, so
  // a node's share is its name, not its name beside a 64-digit revision.
  std::map<std::tuple<const std::string&, uint64_t, bool>, Json> groups;
  for (const auto& [name, a] : nodes) {
    Json& g = groups[{a.revision, a.batch, a.done}];
    if (g.is_null()) g = Json::array();
    g.push_back(name);
  }
  Json assigned = Json::array();
  for (auto& [key, names] : groups)
    assigned.push_back({{"revision", std::get<0>(key)},
                        {"batch", std::get<1>(key)},
                        {"done", std::get<2>(key)},
                        {"nodes", std::move(names)}});
  return {{"id", id},
          {"revision", revision},
          {"from", from},
          {"state", state},
          {"reverting", reverting},
          {"ballot", ballot},
          {"batch_no", batch_no},
          {"batches", batches},
          {"batch", batch},
          {"assigned", std::move(assigned)},
          {"failed", std::vector<std::string>(failed.begin(), failed.end())},
          {"started_us", started_us},
          {"ended_us", ended_us},
          {"reason", reason},
          {"by", by},
          {"control", control},
          {"agent", agent},
          {"only", only},
          {"batch_size", batch_size}};
}

Result<RolloutRecord> RolloutRecord::FromJson(const Json& j) {
  if (!j.is_object()) return Status::Corruption("rollout record is not an object");
  Reader rd{j, ""};
  RolloutRecord r;
  r.id = rd.Num<uint64_t>("id");
  r.revision = rd.Text("revision", 64);
  r.from = rd.Text("from", 64);
  r.state = rd.Text("state", 16);
  r.reverting = rd.Bool("reverting");
  r.ballot = rd.Num<uint64_t>("ballot");
  r.batch_no = rd.Num<uint64_t>("batch_no");
  r.batches = rd.Num<uint64_t>("batches");
  r.batch = rd.Names("batch");
  auto failed = rd.Names("failed");
  r.failed = {failed.begin(), failed.end()};
  r.started_us = rd.Num<int64_t>("started_us");
  r.ended_us = rd.Num<int64_t>("ended_us");
  r.reason = rd.Text("reason");
  r.by = rd.Text("by", kMaxName);
  r.control = rd.Num<uint64_t>("control");
  r.agent = rd.Bool("agent");
  r.only = rd.Names("only");
  if (auto b = j.find("batch_size"); b != j.end() && !b->is_null()) {
    if (!ValidBatchSize(*b)) return Status::Corruption("rollout record: bad batch_size " + b->dump());
    r.batch_size = *b;
  }
  if (auto g = j.find("assigned"); g != j.end()) {
    if (!g->is_array() || g->size() > kMaxNodes) return Status::Corruption("rollout record: assigned is not a list");
    for (const auto& group : *g) {
      if (!group.is_object()) return Status::Corruption("rollout record: bad assignment group");
      Reader ar{group, ""};
      Assignment as{ar.Text("revision", 64), ar.Num<uint64_t>("batch"), ar.Bool("done")};
      for (auto& name : ar.Names("nodes"))
        if (!r.nodes.emplace(std::move(name), as).second)
          return Status::Corruption("rollout record: a node assigned twice");
      if (!ar.error.empty()) return Status::Corruption("rollout record: assignment group: " + ar.error);
      if (r.nodes.size() > kMaxNodes) return Status::Corruption("rollout record: too many assignments");
    }
  } else if (auto n = j.find("nodes"); n != j.end()) {
    // The form written before assignments were grouped.
    if (!n->is_object() || n->size() > kMaxNodes) return Status::Corruption("rollout record: nodes is not a map");
    for (const auto& [name, a] : n->items()) {
      if (name.size() > kMaxName || !a.is_object()) return Status::Corruption("rollout record: bad assignment");
      Reader ar{a, ""};
      Assignment as{ar.Text("revision", 64), ar.Num<uint64_t>("batch"), ar.Bool("done")};
      if (!ar.error.empty()) return Status::Corruption("rollout record: assignment of " + name + ": " + ar.error);
      r.nodes[name] = as;
    }
  }
  if (!rd.error.empty()) return Status::Corruption("rollout record: " + rd.error);
  static const std::set<std::string> kStates = {"running", "paused", "succeeded", "incomplete", "failed", "reverted"};
  if (!kStates.count(r.state)) return Status::Corruption("rollout record: unknown state '" + r.state + "'");
  return r;
}

Json RolloutRequest::ToJson() const {
  return {{"id", id},     {"revision", revision}, {"by", by},      {"automatic", automatic},
          {"agent", agent}, {"only", only},        {"batch", batch}};
}

Result<RolloutRequest> RolloutRequest::FromJson(const Json& j) {
  if (!j.is_object()) return Status::Corruption("rollout request is not an object");
  Reader rd{j, ""};
  RolloutRequest r{rd.Num<uint64_t>("id"), rd.Text("revision", 64), rd.Text("by", kMaxName), rd.Bool("automatic"),
                   rd.Bool("agent")};
  r.only = rd.Names("only");
  if (auto b = j.find("batch"); b != j.end() && !b->is_null()) {
    if (!ValidBatchSize(*b)) return Status::Corruption("rollout request: bad batch " + b->dump());
    r.batch = *b;
  }
  if (!rd.error.empty()) return Status::Corruption("rollout request: " + rd.error);
  if (r.revision.empty()) return Status::Corruption("rollout request without a revision");
  return r;
}

Json RolloutControl::ToJson() const {
  return {{"seq", seq}, {"rollout", rollout}, {"action", action}, {"by", by}};
}

Result<RolloutControl> RolloutControl::FromJson(const Json& j) {
  if (!j.is_object()) return Status::Corruption("rollout control is not an object");
  Reader rd{j, ""};
  RolloutControl c{rd.Num<uint64_t>("seq"), rd.Num<uint64_t>("rollout"), rd.Text("action", 16),
                   rd.Text("by", kMaxName)};
  if (!rd.error.empty()) return Status::Corruption("rollout control: " + rd.error);
  if (c.action != "pause" && c.action != "resume" && c.action != "abort")
    return Status::Corruption("rollout control: unknown action '" + c.action + "'");
  return c;
}

// ---- what goes where --------------------------------------------------------------------------

namespace {
bool GoesTo(const Json& item, const std::vector<std::string>& roles) {
  auto r = item.find("roles");
  if (r == item.end() || !r->is_array()) return true;
  for (const Json& e : *r)
    if (e.is_string() && std::find(roles.begin(), roles.end(), e.get<std::string>()) != roles.end()) return true;
  return false;
}
}  // namespace

Json NodeSpec(const Json& doc, const std::vector<std::string>& roles) {
  Json spec = {{"packages", Json::object()}, {"services", Json::object()}};
  for (const char* section : {"packages", "services"}) {
    auto s = doc.find(section);
    if (s == doc.end() || !s->is_object()) continue;
    for (const auto& [name, item] : s->items())
      if (item.is_object() && GoesTo(item, roles)) spec[section][name] = item;
  }
  // Every node runs the starlingd the desired state names.
  if (auto a = doc.find("agent"); a != doc.end() && a->is_object()) spec["agent"] = *a;
  return spec;
}

std::vector<std::string> NodeRoles(const Json& doc, const std::string& name, const std::string& roles_tag) {
  std::vector<std::string> out;
  if (auto n = doc.find("nodes"); n != doc.end() && n->is_object()) {
    auto it = n->find(name);
    if (it != n->end() && it->is_object()) {
      if (auto r = it->find("roles"); r != it->end() && r->is_array()) {
        for (const Json& e : *r)
          if (e.is_string()) out.push_back(e.get<std::string>());
        return out;
      }
    }
  }
  size_t start = 0;
  while (start < roles_tag.size()) {
    size_t comma = roles_tag.find(',', start);
    if (comma == std::string::npos) comma = roles_tag.size();
    if (comma > start) out.push_back(roles_tag.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

Json ServiceGraph(const Json& doc, const std::vector<NodeView>& views) {
  std::map<std::string, std::vector<std::string>> runs_on;
  const Json* services = nullptr;
  if (auto s = doc.find("services"); s != doc.end() && s->is_object()) services = &*s;
  if (services)
    for (const auto& [name, _] : services->items()) runs_on[name];
  Json nodes = Json::array();
  for (const NodeView& v : views) {
    if (!v.commissioned) continue;
    Json here = Json::array();
    const Json spec = NodeSpec(doc, v.roles);
    if (auto s = spec.find("services"); s != spec.end() && s->is_object())
      for (const auto& [name, _] : s->items()) {
        here.push_back(name);
        runs_on[name].push_back(v.name);
      }
    nodes.push_back({{"name", v.name}, {"services", std::move(here)}});
  }
  Json out_services = Json::array();
  for (const auto& [name, on] : runs_on) out_services.push_back({{"name", name}, {"nodes", on}});
  Json edges = Json::array();
  for (const auto& [from, to] : store::ServiceEdges(doc)) {
    Json via = Json::array();
    const Json& svc = services ? services->value(from, Json::object()) : Json::object();
    if (auto p = svc.find("params"); p != svc.end() && p->is_object())
      for (const auto& [param, value] : p->items())
        if (value.is_string() && value.get_ref<const std::string&>().find("${" + to + ".") != std::string::npos)
          via.push_back(param);
    if (auto a = svc.find("after"); a != svc.end() && a->is_array() && std::find(a->begin(), a->end(), to) != a->end())
      via.push_back("after");
    edges.push_back({{"from", from}, {"to", to}, {"via", std::move(via)}});
  }
  return {{"services", std::move(out_services)}, {"nodes", std::move(nodes)}, {"edges", std::move(edges)}};
}

bool Commissioned(const Json& doc, const std::string& name) {
  auto n = doc.find("nodes");
  if (n == doc.end() || !n->is_object()) return false;
  auto it = n->find(name);
  return it != n->end() && it->is_object() && it->value("lifecycle", Json()) == "commissioned";
}

// ---- planner ----------------------------------------------------------------------------------

bool RolloutPlanner::Done(const NodeView& v, const std::string& revision, bool gate, Duration min_healthy,
                          Time now) {
  if (!v.reported || v.applied != revision || IsBusy(v.phase) || v.phase == "failed") {
    healthy_since_.erase(v.name);
    return false;
  }
  if (!gate) return true;
  if (!v.Serving()) {
    healthy_since_.erase(v.name);
    return false;
  }
  // A restart the coordinator did not see (membership may miss a quick one)
  // starts the time again.
  auto [at, fresh] = healthy_since_.try_emplace(v.name, v.generation, now);
  if (!fresh && at->second.first != v.generation) at->second = {v.generation, now};
  const Time since = at->second.second;
  if (min_healthy == Duration::zero()) return true;
  // Healthy for min_healthy by a health check from the end of it, not by a
  // report from the start that a node killed since can no longer take back
  // (membership takes a probe round or more to notice), nor by refreshes of
  // that report while its check hangs.
  const std::optional<Time>& word = v.counts_checks ? v.checked : v.heard;
  return now - since >= min_healthy && word && *word >= since + min_healthy;
}

// One step's working state: the record being changed and what to log.
struct RolloutPlanner::Pass {
  const Inputs& in;
  RolloutRecord r;
  Step out;
  std::map<std::string, const NodeView*> view;

  void Log(const std::string& s) { out.log += (out.log.empty() ? "" : "; ") + s; }
  void Settle(const std::string& state, const std::string& reason) {
    r.state = state;
    r.reason = Capped(reason);
    r.ended_us = in.wall_us;
    Log("rollout " + std::to_string(r.id) + " " + state + (reason.empty() ? "" : ": " + reason));
  }
  bool Active() const { return r.state == "running" || r.state == "paused"; }
  // Operators count batches within a rollout; batch_no is the fencing
  // sequence nodes check their assignment against, and never repeats.
  std::string Batch() const {
    return r.batches == 0 ? "the previous rollout's batch" : "batch " + std::to_string(r.batches);
  }
};

RolloutPlanner::Step RolloutPlanner::Advance(const Inputs& in) {
  Pass pass{in, in.current.value_or(RolloutRecord{}), {}, {}};
  const RolloutRecord before = pass.r;
  for (const auto& v : in.nodes) pass.view[v.name] = &v;
  StartRequested(pass);
  if (pass.r.state.empty()) return pass.out;
  ApplyControl(pass);
  // The ballot goes out with every change, and at once when this node has
  // just taken over (renewals raise it too, but need not be written).
  const bool takeover = fresh_;
  fresh_ = false;
  const bool late =
      pass.Active() && !pass.r.reverting && pass.r.started_us > 0 &&
      in.wall_us - pass.r.started_us >
          std::chrono::duration_cast<std::chrono::microseconds>(in.policy.progress_deadline).count();
  JudgeBatch(pass);
  FailOrRevert(pass, late);
  NextBatch(pass);
  if (!(pass.r == before) || (takeover && pass.r.ballot != in.ballot)) {
    pass.r.ballot = in.ballot;
    pass.out.write = std::move(pass.r);
  }
  return pass.out;
}

// A new rollout, once the last one has settled and nothing freezes it.
void RolloutPlanner::StartRequested(Pass& pass) {
  const Inputs& in = pass.in;
  RolloutRecord& r = pass.r;
  if (!in.request || in.request->id <= r.id || pass.Active() || in.frozen) return;
  RolloutRecord n;
  n.id = in.request->id;
  n.revision = in.request->revision;
  n.by = in.request->by;
  n.agent = in.request->agent;
  n.only = in.request->only;
  n.batch_size = in.request->batch;
  n.state = "running";
  n.batch_no = r.batch_no;
  n.control = r.control;
  n.started_us = in.wall_us;
  // The revert target: what the last rollout left healthy everywhere, else
  // the one revision every reachable commissioned node runs healthily.
  // A rollout that moved only some nodes left the rest on its own `from`.
  if (r.state == "succeeded" && r.only.empty()) n.from = r.revision;
  else if (!r.state.empty()) n.from = r.from;
  if (n.from.empty()) {
    std::set<std::string> applied;
    bool all_healthy = true;
    for (const auto& v : in.nodes) {
      if (!v.commissioned || !v.reachable) continue;
      applied.insert(v.applied);
      all_healthy &= v.healthy;
    }
    if (applied.size() == 1 && all_healthy) n.from = *applied.begin();
  }
  // Nodes keep acting on an earlier batch only while it is the current one.
  n.batch = r.batch;
  n.nodes = r.nodes;
  r = std::move(n);
  batch_seen_.reset();
  healthy_since_.clear();
  pass.Log("rollout " + std::to_string(r.id) + " of revision " + r.revision + " started" +
           (r.by.empty() ? "" : " by " + r.by));
}

// Pause, resume or abort, each acted on once.
void RolloutPlanner::ApplyControl(Pass& pass) {
  const std::optional<RolloutControl>& control = pass.in.control;
  RolloutRecord& r = pass.r;
  if (!control || control->seq <= r.control) return;
  r.control = control->seq;
  if (control->rollout != r.id || r.settled()) return;
  if (control->action == "pause" && r.state == "running") {
    r.state = "paused";
    r.reason = "paused by " + control->by;
    pass.Log("rollout " + std::to_string(r.id) + " paused by " + control->by);
  } else if (control->action == "resume" && r.state == "paused") {
    r.state = "running";
    r.reason.clear();
    pass.Log("rollout " + std::to_string(r.id) + " resumed by " + control->by);
  } else if (control->action == "abort") {
    pass.Settle("failed", "aborted by " + control->by);
  }
}

// The batch in flight: who is done, who failed, who is still on its way.
void RolloutPlanner::JudgeBatch(Pass& pass) {
  const Inputs& in = pass.in;
  const RolloutPolicy& policy = in.policy;
  RolloutRecord& r = pass.r;
  std::vector<std::string> new_failures;
  if (!r.batch.empty()) {
    if (!batch_seen_ || batch_seen_->first != r.batch_no) batch_seen_ = std::make_pair(r.batch_no, in.now);
    const bool past_deadline = in.now - batch_seen_->second > policy.node_deadline;
    std::vector<std::string> keep;
    bool complete = true;
    for (const auto& name : r.batch) {
      auto it = pass.view.find(name);
      Assignment& a = r.nodes[name];
      if (it == pass.view.end() || !it->second->commissioned) {
        pass.Log(name + " left " + pass.Batch() + " (decommissioned)");
        continue;
      }
      if (it->second->left) {
        pass.Log(name + " left " + pass.Batch() + " (it left the cluster)");
        continue;
      }
      keep.push_back(name);
      const NodeView& v = *it->second;
      // Done nodes stay in the batch until all of it is: the next batch
      // starts only while every one of them is still alive and healthy.
      // In an agent rollout, also on the release the revision names.
      if (v.reachable && Done(v, a.revision, policy.health_gate, policy.min_healthy, in.now) &&
          (!r.agent || in.OnRevision(v, a.revision))) {
        if (!a.done) pass.Log(name + " is healthy on " + a.revision);
        a.done = true;
        continue;
      }
      if (a.done) {
        pass.Log(name + " is not healthy on " + a.revision + " any more");
        a.done = false;
      }
      const bool failed = v.reported && v.phase == "failed" && v.target == a.revision;
      if (!v.reachable && past_deadline) {
        // Its service may be down because of us: it holds back the next
        // batch until it is back and healthy, or until its deadline, when it
        // counts as failed (a node that stays down after its stop may be
        // the new revision's doing).
        pass.Log(name + " is down past its deadline");
      } else if (v.reachable && !failed && past_deadline && !v.suspect) {
        // A suspect past its deadline may be down or slow: it is judged once
        // membership has decided, which the suspicion timeout bounds.
        pass.Log(name + " missed its deadline");
      } else if (!(v.reachable && failed)) {
        complete = false;
        continue;
      }
      new_failures.push_back(name);
      keep.pop_back();
    }
    if (complete) keep.clear();
    r.batch = std::move(keep);
  }
  if (new_failures.empty()) return;
  pass.Log("failed: " + JoinNames(new_failures));
  // After the rollout settled these are late nodes failing to catch up:
  // recorded too, so that they are not retried in a loop.
  r.failed.insert(new_failures.begin(), new_failures.end());
  if (r.reverting && !r.settled())
    pass.Settle("failed", "the revert to " + r.from + " failed on " + JoinNames(new_failures));
}

// Past the failure threshold or the progress deadline: revert when the
// policy says so and there is a revision to go back to, else fail.
void RolloutPlanner::FailOrRevert(Pass& pass, bool late) {
  const RolloutPolicy& policy = pass.in.policy;
  RolloutRecord& r = pass.r;
  if (!pass.Active() || r.reverting || (!late && r.failed.size() <= policy.failure_threshold)) return;
  // The nodes' own words (the hook that failed, its error), which are
  // otherwise only in their logs.
  std::string f;
  for (const auto& name : r.failed) {
    auto it = pass.view.find(name);
    // A node that is down said its last word about an earlier job.
    std::string detail = it == pass.view.end()      ? ""
                         : !it->second->reachable ? "down"
                                                  : Capped(it->second->detail, 160);
    f += (f.empty() ? "" : ", ") + name + (detail.empty() ? "" : " (" + detail + ")");
  }
  std::string why = late ? "the progress deadline passed" : "failed on " + f;
  if (policy.auto_revert && !r.from.empty() && r.from != r.revision) {
    r.reverting = true;
    r.state = "running";
    r.reason = Capped(why + "; reverting to " + r.from);
    pass.Log("rollout " + std::to_string(r.id) + " " + r.reason);
  } else {
    pass.Settle("failed", why + (policy.auto_revert ? " (no earlier revision was healthy on every node)" : ""));
  }
}

namespace {

// Out of service: down, busy, failed, or not serving by its latest word.
// Whatever the cause, they use up the batch's room, so that a batch never
// takes the count of nodes out of service past its size.
bool OutOfService(const NodeView& v) { return IsBusy(v.phase) || v.phase == "failed" || !v.Serving(); }

// Out of service by a fresh word from a node membership says is alive: only
// then is moving it free. A stale or suspect node may well be serving; it
// counts as out for the room and still costs room when chosen.
bool KnownOut(const NodeView& v) {
  return v.reachable && !v.suspect && v.fresh && (IsBusy(v.phase) || v.phase == "failed" || !v.healthy);
}

}  // namespace

// The next batch: while running, and after the rollout settled to bring
// late nodes to the settled revision.
void RolloutPlanner::NextBatch(Pass& pass) {
  RolloutRecord& r = pass.r;
  const Inputs& in = pass.in;
  const bool catch_up = r.state == "succeeded" || r.state == "incomplete" || r.state == "reverted";
  if (!r.batch.empty() || !(r.state == "running" || catch_up)) return;
  const std::string target = r.target();
  if (r.state == "running" && r.batches > 0) {
    // The batch before must still be serving when the next one starts: a
    // node that went down or unhealthy after it was done holds it back.
    std::vector<std::string> lapsed;
    for (const auto& [name, a] : r.nodes) {
      if (a.batch != r.batch_no || !a.done || r.failed.count(name)) continue;
      auto it = pass.view.find(name);
      if (it == pass.view.end() || !it->second->commissioned || it->second->left) continue;
      if (in.policy.health_gate ? !it->second->Serving() : !it->second->reachable) lapsed.push_back(name);
    }
    if (!lapsed.empty()) {
      const std::string why = "waiting: " + JoinNames(lapsed) + " of " + pass.Batch() + " is not healthy any more";
      if (r.reason != Capped(why) && !r.reverting) r.reason = Capped(why);
      return;
    }
  }
  std::vector<const NodeView*> candidates;
  std::vector<std::string> off_target, out_names;
  size_t eligible = 0, busy = 0, out_elsewhere = 0, out_candidates = 0;
  for (const auto& v : in.nodes) {
    // A node that left on purpose is not in service and not ours to move:
    // it is brought to the revision when it joins again.
    if (!v.commissioned || v.left) continue;
    const bool on_target = in.OnRevision(v, target) && v.phase != "failed";
    if (!r.Moves(v.name)) {
      // Not ours to move (a rollout for chosen nodes): out of service, it
      // still takes room, so a batch never takes more of the cluster down.
      if (!v.reachable || !v.reported || OutOfService(v)) {
        ++out_elsewhere;
        out_names.push_back(v.name);
      }
      continue;
    }
    ++eligible;
    if (!v.reachable || !v.reported) {
      // Down: it is brought to the revision when it is back, and until then
      // the rollout cannot say it succeeded. One this rollout failed or has
      // not finished may be down because of us, and only cut off from here:
      // its service may well be stopped, so it uses room (a node that was
      // done and went down holds back the next batch, above).
      if (!on_target) off_target.push_back(v.name + (v.reachable ? " (no report yet)" : " (down)"));
      auto a = r.nodes.find(v.name);
      if (r.failed.count(v.name) || (a != r.nodes.end() && !a->second.done)) {
        ++out_elsewhere;
        out_names.push_back(v.name);
      }
      continue;
    }
    bool candidate = true;
    if (IsBusy(v.phase)) {
      ++busy;
      candidate = false;
    } else if (on_target) {
      // A node that failed may run part of the new revision whatever it
      // reports as applied: only a finished job counts.
      candidate = false;
    } else if (!r.reverting && r.failed.count(v.name)) {
      candidate = false;
      off_target.push_back(v.name + " (failed)");
    } else if (r.reverting && !catch_up) {
      auto a = r.nodes.find(v.name);
      candidate = v.applied == r.revision || r.failed.count(v.name) ||
                  (a != r.nodes.end() && a->second.revision == r.revision);
    }
    if (candidate) {
      candidates.push_back(&v);
      out_candidates += OutOfService(v);
    } else {
      out_elsewhere += OutOfService(v);
    }
    if (OutOfService(v)) out_names.push_back(v.name);
  }
  if (candidates.empty()) {
    if (busy > 0) return;
    if (r.state == "running") {
      if (r.reverting) {
        pass.Settle("reverted", r.reason + "; the desired state still says " + r.revision +
                                    ": `starling rollback --to " + r.from + "` makes it say what the nodes run");
      } else if (off_target.empty()) {
        pass.Settle("succeeded", r.failed.empty() ? "" : "tolerated failures on " + JoinNames({r.failed.begin(), r.failed.end()}));
      } else {
        pass.Settle("incomplete", "not on " + target + ": " + JoinNames(off_target) +
                                      "; down nodes are brought to it when they are back, failed ones by a new "
                                      "rollout");
      }
    } else if (r.state == "incomplete" && off_target.empty()) {
      pass.Settle("succeeded", "every node caught up");
    }
    return;
  }
  const std::string why_waiting = "waiting for room: out of service: " + JoinNames(out_names);
  const uint64_t before = r.batch_no;
  if (!ChooseBatch(pass, candidates, eligible, out_elsewhere + out_candidates)) {
    if (r.state == "running" && !r.reverting && r.reason != Capped(why_waiting)) r.reason = Capped(why_waiting);
  } else if (r.batch_no != before && !out_names.empty()) {
    pass.Log("out of service already: " + JoinNames(out_names));
  }
}

// Fills the batch from `candidates` in rank order, one role group at a time,
// within the room the nodes already out of service leave.
bool RolloutPlanner::ChooseBatch(Pass& pass, std::vector<const NodeView*>& candidates, size_t eligible,
                                 size_t out_now) {
  RolloutRecord& r = pass.r;
  RolloutPolicy policy = pass.in.policy;
  if (!r.batch_size.is_null()) policy.batch = r.batch_size;  // chosen for this rollout
  auto rank = [&](const NodeView* v) {
    // Reverting: the failed nodes first. Within a role, nodes already
    // known to be out of service first: moving them costs no room.
    size_t first = r.reverting && r.failed.count(v->name) ? 0 : 1;
    return std::make_tuple(first, RoleRank(policy.role_order, v->roles), KnownOut(*v) ? 0 : 1, v->name);
  };
  std::sort(candidates.begin(), candidates.end(),
            [&](const NodeView* a, const NodeView* b) { return rank(a) < rank(b); });
  const size_t size = policy.BatchSize(r.batches, eligible);
  size_t room = size > out_now ? size - out_now : 0;  // for nodes still in service
  std::vector<std::string> chosen;
  auto group = std::make_pair(std::get<0>(rank(candidates[0])), std::get<1>(rank(candidates[0])));
  for (const NodeView* v : candidates) {
    if (chosen.size() >= size) break;
    auto k = rank(v);
    if (std::make_pair(std::get<0>(k), std::get<1>(k)) != group) break;  // role order: one group at a time
    if (!KnownOut(*v)) {
      if (room == 0) break;
      --room;
    }
    chosen.push_back(v->name);
  }
  if (chosen.empty()) return false;
  const std::string target = r.target();
  ++r.batch_no;
  ++r.batches;
  for (const auto& name : chosen) r.nodes[name] = Assignment{target, r.batch_no, false};
  r.batch = chosen;
  batch_seen_ = std::make_pair(r.batch_no, pass.in.now);
  if (r.reason.rfind("waiting", 0) == 0) r.reason.clear();
  pass.Log(pass.Batch() + " of rollout " + std::to_string(r.id) + " to " + target + ": " + JoinNames(chosen));
  return true;
}

std::string NodeRolloutPhase(const RolloutRecord& r, const NodeView& v, bool on_target) {
  // Whatever the record says, a node that is not there is not done.
  if (v.left) return "left";
  if (!v.reachable) return "down";
  // The record first: every node shows the holder's view, whatever its own
  // copy of the reports says yet.
  auto a = r.nodes.find(v.name);
  bool in_batch = std::find(r.batch.begin(), r.batch.end(), v.name) != r.batch.end();
  if (in_batch && !(a != r.nodes.end() && a->second.done)) return r.reverting ? "reverting" : "upgrading";
  const bool finished = a != r.nodes.end() && a->second.done && a->second.revision == r.target();
  if (r.reverting && !r.from.empty() && (finished || v.applied == r.from)) {
    // Assigned during this rollout: touched, then brought back.
    bool touched = a != r.nodes.end() && a->second.batch + r.batches > r.batch_no;
    if (r.failed.count(v.name) || touched) return "reverted";
  }
  if (r.failed.count(v.name)) return "failed";
  if (finished || on_target) return "done";
  if (!r.Moves(v.name)) return "excluded";
  return "pending";
}

}  // namespace starling::node

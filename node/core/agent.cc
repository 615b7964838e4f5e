#include "agent.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>
#include <sstream>

#include "lease.h"
#include "rollout.h"
#include "starling/text.h"

namespace starling::node {

using store::Json;

namespace {

constexpr size_t kDetailBytes = 400;  // a report must fit one datagram
constexpr size_t kOutputBytes = 200;
constexpr size_t kMaxOutputs = 16;

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string HookOf(const Json& item, const std::string& kind) {
  auto h = item.find("hooks");
  if (h == item.end() || !h->is_object()) return "";
  auto k = h->find(kind);
  return k != h->end() && k->is_string() ? k->get<std::string>() : "";
}

std::string Text(const Json& item, const char* key) {
  auto it = item.find(key);
  if (it == item.end()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::string ShowDuration(Duration d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  return ms % 1000 ? std::to_string(ms) + "ms" : std::to_string(ms / 1000) + "s";
}

const Json& Section(const Json& spec, const char* name) {
  static const Json kEmpty = Json::object();
  auto it = spec.find(name);
  return it != spec.end() && it->is_object() ? *it : kEmpty;
}

// Services of `spec` so that each comes after the services it depends on.
std::vector<std::string> StartOrder(const Json& doc, const Json& spec) {
  const Json& services = Section(spec, "services");
  std::map<std::string, std::set<std::string>> deps;
  for (const auto& [name, _] : services.items()) deps[name];
  for (const auto& [from, to] : store::ServiceEdges(doc))
    if (deps.count(from) && deps.count(to)) deps[from].insert(to);
  std::vector<std::string> order;
  std::set<std::string> placed;
  while (order.size() < deps.size()) {
    bool progress = false;
    for (const auto& [name, need] : deps) {
      if (placed.count(name)) continue;
      if (std::all_of(need.begin(), need.end(), [&](const std::string& d) { return placed.count(d) > 0; })) {
        order.push_back(name);
        placed.insert(name);
        progress = true;
      }
    }
    if (!progress) {  // a cycle the validator would refuse: keep name order
      for (const auto& [name, _] : deps)
        if (!placed.count(name)) order.push_back(name), placed.insert(name);
    }
  }
  return order;
}

bool Restarts(const Json& pkg) {
  auto r = pkg.find("restart");
  return r == pkg.end() || !r->is_boolean() || r->get<bool>();
}

}  // namespace

NodeAgent::NodeAgent(std::string self, Clock& clock, store::Replicator& replicator, SoftState& soft,
                     HookExec& hooks, AppliedStore& store, std::function<std::string()> roles_tag,
                     AgentConfig config)
    : self_(std::move(self)),
      clock_(clock),
      replicator_(replicator),
      soft_(soft),
      hooks_(hooks),
      store_(store),
      roles_tag_(std::move(roles_tag)),
      cfg_(config) {}

NodeAgent::~NodeAgent() {
  *alive_ = false;
  if (health_timer_) clock_.Cancel(health_timer_);
  if (retry_timer_) clock_.Cancel(retry_timer_);
}

void NodeAgent::Load() {
  auto loaded = store_.Load();
  if (!loaded.ok()) {
    spdlog::error("agent: cannot read what this node ran before: {}; starting from nothing",
                  loaded.status().message());
    return;
  }
  if (!*loaded) return;
  Json j = Json::parse(**loaded, nullptr, false);
  if (!j.is_object()) {
    spdlog::error("agent: the stored applied state is not JSON; starting from nothing");
    return;
  }
  if (auto c = j.find("current"); c != j.end() && c->is_object()) {
    current_["packages"] = Section(*c, "packages");
    current_["services"] = Section(*c, "services");
    if (auto a = c->find("agent"); a != c->end() && a->is_object()) current_["agent"] = *a;
  }
  if (auto o = j.find("agent_original"); o != j.end() && o->is_object()) agent_original_ = *o;
  applied_ = store::TextAt(j, "revision");
  if (auto b = j.find("ballot"); b != j.end() && b->is_number_unsigned()) ballot_ = b->get<uint64_t>();
  removed_ = store::TrueAt(j, "removed");
  if (auto o = j.find("outputs"); o != j.end() && o->is_object())
    for (const auto& [k, v] : o->items())
      if (v.is_string()) outputs_[k] = v.get<std::string>();
  if (auto p = j.find("agent_pending"); p != j.end()) SettleAgentMove(*p);
}

void NodeAgent::SettleAgentMove(const Json& pending) {
  if (!pending.is_object() || !binary_) return;
  const std::string version = store::TextAt(pending, "version");
  if (binary_->digest() == store::TextAt(pending, "digest")) {
    spdlog::info("agent: now running starlingd {} ({})", binary_->version(), binary_->digest());
    Save();
    return;
  }
  // The new binary did not come up and the one before was put back: this
  // node is where it was, and says so until its next assignment.
  applied_ = store::TextAt(pending, "from_revision");
  if (auto a = pending.find("from_agent"); a != pending.end() && a->is_object()) {
    current_["agent"] = *a;
  } else {
    current_.erase("agent");
  }
  if (auto b = pending.find("batch"); b != pending.end() && b->is_number_unsigned())
    attempted_ = std::make_pair(store::TextAt(pending, "revision"), b->get<uint64_t>());
  const std::string why = binary_->LastFailure();
  agent_failure_ = "starlingd " + version + " did not come up" + (why.empty() ? "" : " (" + why + ")") +
                   "; back on " + binary_->version();
  pending_target_ = store::TextAt(pending, "revision");
  spdlog::error("agent: {}", *agent_failure_);
  Save();
}

void NodeAgent::Save() { SaveAs(applied_, current_); }

void NodeAgent::SaveAs(const std::string& revision, const Json& current) {
  Json j = {{"revision", revision}, {"current", current}, {"ballot", ballot_}, {"removed", removed_},
            {"outputs", outputs_}};
  if (!agent_original_.is_null()) j["agent_original"] = agent_original_;
  if (!agent_pending_.is_null()) j["agent_pending"] = agent_pending_;
  if (Status s = store_.Save(j.dump()); !s.ok())
    spdlog::error("agent: cannot store what this node runs: {}", s.message());
}

void NodeAgent::Report(const std::function<void(NodeReport&)>& edit) { soft_.Update(edit); }

void NodeAgent::Start() {
  started_ = true;
  Load();
  Report([&](NodeReport& r) {
    r.applied_revision = applied_;
    r.outputs = outputs_;
    r.phase = removed_ ? "removed" : "idle";
    r.healthy = true;
  });
  if (!removed_ && (!Section(current_, "packages").empty() || !Section(current_, "services").empty())) {
    Begin(VerifyJob());
  } else {
    ReportAgentFailure();
    Refresh();
  }
  ScheduleHealth();
}

void NodeAgent::Refresh() {
  if (!started_ || job_) return;
  const store::State& st = replicator_.log().state();
  const Json& doc = st.Document();
  if (auto n = doc.find("nodes"); n != doc.end() && n->is_object()) {
    auto me = n->find(self_);
    if (me != n->end() && me->is_object() && me->value("lifecycle", Json()) == "decommissioned") {
      if (!removed_) Begin(RemoveJob());
      return;
    }
  }
  if (removed_ && Commissioned(doc, self_)) {
    removed_ = false;
    Save();
    Report([](NodeReport& r) { r.phase = "idle"; });
  }
  const RolloutRecord* record = record_.Read(st);
  if (!record) return;
  if (record->ballot < ballot_) return;  // written by a holder that has been replaced
  if (highest_ballot_ && RecordOutOfReach(record->ballot, std::max(ballot_, highest_ballot_()), &out_of_reach_, "agent"))
    return;
  if (record->ballot > ballot_) {
    ballot_ = record->ballot;
    Save();
  }
  auto a = record->nodes.find(self_);
  if (a == record->nodes.end() || a->second.batch != record->batch_no || a->second.done ||
      std::find(record->batch.begin(), record->batch.end(), self_) == record->batch.end())
    return;
  auto key = std::make_pair(a->second.revision.str(), a->second.batch);
  if (attempted_ == key) return;
  auto target_doc = replicator_.log().DocumentAt(a->second.revision);
  if (!target_doc.ok()) {
    spdlog::info("agent: assigned revision {} that this node does not hold yet; waiting", a->second.revision);
    if (!retry_timer_)
      retry_timer_ = clock_.Schedule(cfg_.wait_retry, [this, alive = alive_] {
        if (!*alive) return;
        retry_timer_ = 0;
        Refresh();
      });
    return;
  }
  attempted_ = key;
  Begin(ApplyJob(a->second.revision, *target_doc, record->agent));
}

// ---- jobs -------------------------------------------------------------------------------------

void NodeAgent::ReportAgentFailure() {
  if (!agent_failure_) return;
  Report([&](NodeReport& r) {
    r.phase = "failed";
    r.target = pending_target_;
    r.healthy = false;
    r.detail = text::TailChars(*agent_failure_, kDetailBytes);
  });
}

void NodeAgent::Begin(Job job) {
  if (job.name.rfind("apply ", 0) == 0) agent_failure_.reset();
  job.started = clock_.Now();
  spdlog::info("agent: {} ({} steps)", job.name, job.steps.size());
  job_ = std::move(job);
  Next();
}

void NodeAgent::Next() {
  if (!job_) return;
  if (job_->steps.empty()) {
    auto on_success = std::move(job_->on_success);
    auto took = std::chrono::duration<double>(clock_.Now() - job_->started).count();
    std::string name = job_->name;
    job_.reset();
    if (on_success) on_success();
    Save();
    char buf[64];
    std::snprintf(buf, sizeof buf, " in %.1f s", took);
    spdlog::info("agent: {} done{}", name, buf);
    Report([&](NodeReport& r) {
      r.applied_revision = applied_;
      r.target = applied_;
      r.outputs = outputs_;
      r.phase = removed_ ? "removed" : "idle";
      r.healthy = true;
      r.detail = name + " done" + buf;
    });
    ReportAgentFailure();
    Refresh();
    return;
  }
  Step step = std::move(job_->steps.front());
  job_->steps.pop_front();
  const std::string target = job_->target;
  Report([&](NodeReport& r) {
    r.phase = step.phase;
    r.target = target;
  });
  step.run([this, alive = alive_](bool ok, std::string detail) {
    if (!*alive || !job_) return;
    if (!ok) return Fail(detail);
    Next();
  });
}

void NodeAgent::Fail(const std::string& detail) {
  std::string name = job_ ? job_->name : "";
  std::string target = job_ ? job_->target : "";
  job_.reset();
  Save();
  spdlog::warn("agent: {} failed: {}", name, detail);
  Report([&](NodeReport& r) {
    r.phase = "failed";
    r.target = target;
    r.healthy = false;
    r.outputs = outputs_;
    r.detail = text::TailChars(name + " failed: " + detail, kDetailBytes);
  });
}

NodeAgent::Job NodeAgent::ApplyJob(const std::string& revision, const Json& doc, bool agent_rollout) {
  const Json& now_doc = replicator_.log().state().Document();
  Json spec = NodeSpec(doc, NodeRoles(now_doc, self_, roles_tag_ ? roles_tag_() : ""));
  // Outside an agent rollout this node keeps the binary it runs.
  if (!agent_rollout) {
    spec.erase("agent");
    if (current_.contains("agent")) spec["agent"] = current_["agent"];
  }
  const RolloutPolicy policy = RolloutPolicy::From(doc);
  const Json& want_pkgs = Section(spec, "packages");
  const Json& want_svcs = Section(spec, "services");
  const Json have_pkgs = Section(current_, "packages");
  const Json have_svcs = Section(current_, "services");

  std::set<std::string> changed_pkgs, removed_pkgs;
  for (const auto& [name, pkg] : want_pkgs.items())
    if (!have_pkgs.contains(name) || have_pkgs[name] != pkg) changed_pkgs.insert(name);
  for (const auto& [name, _] : have_pkgs.items())
    if (!want_pkgs.contains(name)) removed_pkgs.insert(name);
  auto package_moves = [&](const Json& svc) {
    std::string p = Text(svc, "package");
    if (p.empty()) return false;
    if (removed_pkgs.count(p)) return true;
    return changed_pkgs.count(p) && Restarts(want_pkgs[p]);
  };
  std::set<std::string> stop, start;
  for (const auto& [name, svc] : have_svcs.items())
    if (!want_svcs.contains(name) || want_svcs[name] != svc || package_moves(svc)) stop.insert(name);
  for (const auto& [name, svc] : want_svcs.items())
    if (!have_svcs.contains(name) || stop.count(name) || package_moves(svc)) start.insert(name);

  Job job;
  job.name = "apply " + revision;
  job.target = revision;
  // Dependents stop before what they depend on: the reverse of start order.
  std::vector<std::string> stop_order = StartOrder(now_doc, current_);
  std::reverse(stop_order.begin(), stop_order.end());
  for (const auto& name : stop_order)
    if (stop.count(name)) job.steps.push_back(StopService(name));
  for (const auto& name : removed_pkgs) {
    const Json pkg = have_pkgs[name];
    auto env = BaseEnv("remove");
    env["STARLING_PACKAGE"] = name;
    env["STARLING_VERSION"] = Text(pkg, "version");
    job.steps.push_back(Hook("installing", "remove", HookOf(pkg, "remove"), env, [this, name](const HookResult&) {
      current_["packages"].erase(name);
    }));
  }
  for (const auto& name : changed_pkgs)
    job.steps.push_back(InstallPackage(name, want_pkgs[name], policy.node_deadline));
  std::vector<std::string> start_order;
  Json start_svcs = Json::object();
  for (const auto& name : StartOrder(doc, spec))
    if (start.count(name)) start_order.push_back(name), start_svcs[name] = want_svcs[name];
  if (!start_order.empty()) job.steps.push_back(StartServices(start_order, start_svcs, policy.node_deadline));
  if (policy.health_gate && !want_svcs.empty()) job.steps.push_back(WaitHealthy(policy.node_deadline));
  const Json want_agent = spec.contains("agent") ? spec["agent"] : Json();
  const Json have_agent = current_.contains("agent") ? current_["agent"] : Json();
  if (binary_ && want_agent != have_agent)
    job.steps.push_back(UpgradeAgent(spec, revision, attempted_ ? attempted_->second : 0, policy.node_deadline));
  job.on_success = [this, revision, spec] {
    applied_ = revision;
    current_ = spec;
  };
  return job;
}

NodeAgent::Job NodeAgent::VerifyJob() {
  Job job;
  job.name = "verify " + (applied_.empty() ? std::string("(nothing applied)") : applied_);
  job.target = applied_;
  const Json pkgs = Section(current_, "packages");
  for (const auto& [name, pkg] : pkgs.items()) {
    std::string verify = HookOf(pkg, "verify");
    if (verify.empty()) continue;
    auto env = BaseEnv("verify");
    env["STARLING_PACKAGE"] = name;
    env["STARLING_VERSION"] = Text(pkg, "version");
    job.steps.push_back(Step{"verifying", [this, name = name, pkg = pkg, verify, env](Done done) {
      HookRequest req{verify, env, "", cfg_.hook_timeout};
      hooks_.Run(req, [this, name, pkg, done, alive = alive_](Result<HookResult> r) {
        if (!*alive) return;
        if (r.ok() && r->ok()) return done(true, "");
        spdlog::warn("agent: package {} drifted ({}); installing it again", name,
                     r.ok() ? r->Describe() : r.status().message());
        // Put the reinstall first in line, then continue.
        job_->steps.push_front(InstallPackage(name, pkg, RolloutPolicy::From(replicator_.log().state().Document()).node_deadline));
        done(true, "");
      });
    }});
  }
  // Services: a failing health check means start it again.
  const Json svcs = Section(current_, "services");
  const Json& doc = replicator_.log().state().Document();
  const Duration deadline = RolloutPolicy::From(doc).node_deadline;
  for (const auto& name : StartOrder(doc, current_)) {
    const Json svc = svcs[name];
    std::string health = HookOf(svc, "health");
    job.steps.push_back(Step{"verifying", [this, name, svc, health, deadline](Done done) {
      if (health.empty()) {
        job_->steps.push_front(StartService(name, svc, deadline));
        return done(true, "");
      }
      HookRequest req{health, ServiceEnv(name, svc, KnownParams(svc)), "", cfg_.hook_timeout};
      req.env["STARLING_HOOK"] = "health";
      hooks_.Run(req, [this, name, svc, done, deadline, alive = alive_](Result<HookResult> r) {
        if (!*alive) return;
        if (!(r.ok() && r->ok())) {
          spdlog::warn("agent: service {} is not healthy after restart; starting it again", name);
          job_->steps.push_front(StartService(name, svc, deadline));
        }
        done(true, "");
      });
    }});
  }
  if (!svcs.empty()) job.steps.push_back(WaitHealthy(deadline));
  return job;
}

NodeAgent::Job NodeAgent::RemoveJob() {
  Job job;
  job.name = "remove (decommissioned)";
  const Json& doc = replicator_.log().state().Document();
  std::vector<std::string> order = StartOrder(doc, current_);
  std::reverse(order.begin(), order.end());
  for (const auto& name : order) job.steps.push_back(StopService(name));
  const Json pkgs = Section(current_, "packages");
  for (const auto& [name, pkg] : pkgs.items()) {
    auto env = BaseEnv("remove");
    env["STARLING_PACKAGE"] = name;
    env["STARLING_VERSION"] = Text(pkg, "version");
    job.steps.push_back(Hook("removing", "remove", HookOf(pkg, "remove"), env, [this, name = name](const HookResult&) {
      current_["packages"].erase(name);
    }));
  }
  job.on_success = [this] {
    removed_ = true;
    applied_.clear();
    outputs_.clear();
    current_ = {{"packages", Json::object()}, {"services", Json::object()}};
  };
  return job;
}

// ---- steps ------------------------------------------------------------------------------------

NodeAgent::Step NodeAgent::Hook(const std::string& phase, const std::string& kind, const std::string& hook,
                                std::map<std::string, std::string> env,
                                std::function<void(const HookResult&)> after) {
  return Step{phase, [this, kind, hook, env = std::move(env), after = std::move(after)](Done done) {
                if (hook.empty()) {  // nothing to run for this kind
                  if (after) after(HookResult{0, 0, false, "", Duration{0}});
                  return done(true, "");
                }
                // Steps are built before their job runs: what the job works
                // towards is read now.
                auto full = env;
                full["STARLING_HOOK"] = kind;
                full["STARLING_REVISION"] = job_ ? job_->target : applied_;
                Json input = Json::object();
                for (const auto& [k, v] : full) input[k] = v;
                HookRequest req{hook, full, input.dump(), cfg_.hook_timeout};
                const std::string revision = full["STARLING_REVISION"];
                hooks_.Run(req, [this, kind, hook, revision, after, done, alive = alive_](Result<HookResult> r) {
                  if (!*alive) return;
                  Remember(kind, hook, revision, r);
                  if (!r.ok()) return done(false, kind + " hook " + hook + ": " + r.status().message());
                  if (!r->ok())
                    return done(false, kind + " hook " + hook + ": " + r->Describe() + ": " +
                                           text::TailChars(Trim(r->output), kDetailBytes / 2));
                  if (after) after(*r);
                  done(true, "");
                });
              }};
}

void NodeAgent::Remember(const std::string& kind, const std::string& hook, const std::string& revision,
                         const Result<HookResult>& r) {
  constexpr size_t kKept = 20, kTail = 2048;
  Json run = {{"kind", kind}, {"hook", hook}, {"revision", revision}, {"at_unix", clock_.WallMicros() / 1000000}};
  if (r.ok()) {
    run["ok"] = r->ok();
    run["result"] = r->Describe();
    run["took_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(r->took).count();
    run["output"] = text::Printable(text::TailChars(r->output, kTail));
  } else {
    run["ok"] = false;
    run["result"] = text::Printable(r.status().message(), true);
    run["took_ms"] = 0;
    run["output"] = "";
  }
  recent_hooks_.push_front(std::move(run));
  if (recent_hooks_.size() > kKept) recent_hooks_.pop_back();
}

Json NodeAgent::RecentHooks() const { return Json(std::vector<Json>(recent_hooks_.begin(), recent_hooks_.end())); }

NodeAgent::Step NodeAgent::StopService(const std::string& name) {
  const Json svc = Section(current_, "services").value(name, Json::object());
  return Hook("stopping", "stop", HookOf(svc, "stop"), ServiceEnv(name, svc, KnownParams(svc)), [this, name](const HookResult&) {
    current_["services"].erase(name);
    for (auto it = outputs_.begin(); it != outputs_.end();)
      it = it->first.rfind(name + ".", 0) == 0 ? outputs_.erase(it) : std::next(it);
  });
}

NodeAgent::Step NodeAgent::InstallPackage(const std::string& name, const Json& pkg, Duration deadline) {
  auto env = BaseEnv("install");
  env["STARLING_PACKAGE"] = name;
  env["STARLING_VERSION"] = Text(pkg, "version");
  env["STARLING_ARTIFACT"] = Text(pkg, "artifact");
  env["STARLING_ARTIFACT_PATH"] = "";
  const Json have = Section(current_, "packages");
  env["STARLING_PREVIOUS_VERSION"] = have.contains(name) ? Text(have[name], "version") : "";
  return Step{"installing", [this, name, pkg, deadline, env](Done done) {
                auto full = std::make_shared<std::map<std::string, std::string>>(env);
                const std::string digest = Text(pkg, "artifact");
                AwaitArtifact(digest, clock_.Now() + deadline, full,
                              [this, name, pkg, full, done, alive = alive_](bool ok, std::string detail) {
                                if (!*alive) return;
                                if (!ok) return done(false, detail);
                                Step install = Hook("installing", "install", HookOf(pkg, "install"), *full);
                                auto venv = *full;
                                venv["STARLING_HOOK"] = "verify";
                                Step verify = Hook("installing", "verify", HookOf(pkg, "verify"), venv,
                                                   [this, name, pkg](const HookResult&) {
                                                     current_["packages"][name] = pkg;
                                                   });
                                install.run([verify, done, alive](bool ok, std::string detail) {
                                  if (!*alive) return;
                                  if (!ok) return done(false, detail);
                                  verify.run(done);
                                });
                              });
              }};
}

void NodeAgent::AwaitArtifact(const std::string& digest, Time until,
                              std::shared_ptr<std::map<std::string, std::string>> env, Done done) {
  if (digest.empty() || !artifacts_) return done(true, "");
  std::string progress;
  if (auto path = artifacts_->Need(digest, &progress)) {
    (*env)["STARLING_ARTIFACT_PATH"] = *path;
    return done(true, "");
  }
  if (clock_.Now() > until) return done(false, "artifact " + digest + " not fetched by the node deadline: " + progress);
  if (soft_.local().detail != text::TailChars("fetching artifact " + digest + ": " + progress, kDetailBytes))
    Report([&](NodeReport& r) { r.detail = text::TailChars("fetching artifact " + digest + ": " + progress, kDetailBytes); });
  retry_timer_ = clock_.Schedule(cfg_.wait_retry, [this, digest, until, env, done, alive = alive_] {
    if (!*alive) return;
    retry_timer_ = 0;
    AwaitArtifact(digest, until, env, done);
  });
}

NodeAgent::Step NodeAgent::UpgradeAgent(const Json& spec, const std::string& revision, uint64_t batch,
                                        Duration deadline) {
  return Step{"upgrading", [this, spec, revision, batch, deadline](Done done) {
    const Json want = spec.contains("agent") ? spec["agent"] : Json();
    // No section: back to the binary this node ran before any moved it.
    const Json target = want.is_object() ? want : agent_original_;
    const std::string digest = store::TextAt(target, "artifact"), version = store::TextAt(target, "version");
    if (digest.empty() || digest == binary_->digest()) return done(true, "");
    if (agent_original_.is_null())
      agent_original_ = {{"version", binary_->version()}, {"artifact", binary_->digest()}};
    auto move = [this, spec, revision, batch, digest, version, done](const std::string& path) {
      // Stored (not reported: this process does not run it) before the
      // restart, so the process that comes up (this binary again, should
      // the new one fail) knows what was tried.
      agent_pending_ = {{"revision", revision}, {"batch", batch}, {"from_revision", applied_},
                        {"from_agent", current_.contains("agent") ? current_["agent"] : Json()},
                        {"digest", digest}, {"version", version}};
      SaveAs(revision, spec);
      spdlog::info("agent: restarting into starlingd {} ({})", version, digest);
      binary_->Restart(path, version, digest, [this, done, alive = alive_](Status s) {
        if (!*alive) return;
        agent_pending_ = Json();
        Save();
        done(false, s.message());
      });
    };
    if (std::string kept = binary_->Kept(digest); !kept.empty()) return move(kept);
    auto env = std::make_shared<std::map<std::string, std::string>>();
    AwaitArtifact(digest, clock_.Now() + deadline, env, [env, move, done](bool ok, std::string detail) {
      if (!ok) return done(false, detail);
      move((*env)["STARLING_ARTIFACT_PATH"]);
    });
  }};
}

NodeAgent::Step NodeAgent::StartService(const std::string& name, const Json& svc, Duration deadline) {
  return StartServices({name}, Json{{name, svc}}, deadline);
}

NodeAgent::Step NodeAgent::StartServices(std::vector<std::string> order, const Json& svcs, Duration deadline) {
  // Only dependencies that start in this same step hold a service back; one
  // already running here, or running elsewhere, is waited for through its
  // outputs like any other input.
  std::map<std::string, std::set<std::string>> deps;
  for (const auto& [from, to] : store::ServiceEdges(replicator_.log().state().Document()))
    if (svcs.contains(from) && svcs.contains(to) && from != to) deps[from].insert(to);
  return Step{"starting", [this, order = std::move(order), svcs, deadline, deps](Done done) {
                struct Pending {
                  std::string name;
                  Json svc;
                  Time until;
                  Duration allowed;
                };
                auto pending = std::make_shared<std::vector<Pending>>();
                for (const auto& name : order) {
                  const Json& svc = svcs[name];
                  Duration allowed = deadline;
                  if (auto d = svc.find("start_deadline"); d != svc.end() && d->is_string())
                    if (auto parsed = store::ParseDuration(d->get<std::string>()); parsed.ok()) allowed = *parsed;
                  pending->push_back({name, svc, clock_.Now() + allowed, allowed});
                }
                auto attempt = std::make_shared<std::function<void()>>();
                // Holds itself weakly (no cycle); whoever waits to call it holds it.
                *attempt = [this, pending, deps, done, weak = std::weak_ptr(attempt), alive = alive_] {
                  auto self = weak.lock();
                  if (!*alive || !self) return;
                  retry_timer_ = 0;
                  if (pending->empty()) return done(true, "");
                  std::set<std::string> waiting;
                  for (const auto& p : *pending) waiting.insert(p.name);
                  std::string why;  // what the first service still waiting lacks
                  for (auto it = pending->begin(); it != pending->end(); ++it) {
                    std::string missing;
                    auto d = deps.find(it->name);
                    if (d != deps.end())
                      for (const auto& need : d->second)
                        if (waiting.count(need)) missing = "service " + need + " (not started here yet)";
                    std::optional<std::map<std::string, std::string>> params;
                    if (missing.empty()) params = ResolveParams(it->svc, &missing);
                    if (!params) {
                      if (clock_.Now() > it->until)
                        return done(false, "service " + it->name + " not started within its start deadline (" +
                                               ShowDuration(it->allowed) + "): waiting for " + missing);
                      if (why.empty()) why = "service " + it->name + " waits for " + missing;
                      continue;
                    }
                    const std::string name = it->name;
                    const Json svc = it->svc;
                    pending->erase(it);
                    Step s = Hook("starting", "start", HookOf(svc, "start"), ServiceEnv(name, svc, *params),
                                  [this, name, svc](const HookResult& r) { Started(name, svc, r.output); });
                    return s.run([self, done](bool ok, std::string detail) {
                      if (!ok) return done(false, detail);
                      (*self)();
                    });
                  }
                  if (soft_.local().detail != text::TailChars(why, kDetailBytes))
                    Report([&](NodeReport& rep) { rep.detail = text::TailChars(why, kDetailBytes); });
                  retry_timer_ = clock_.Schedule(cfg_.wait_retry, [self] { (*self)(); });
                };
                (*attempt)();
              }};
}

void NodeAgent::Started(const std::string& name, const Json& svc, const std::string& hook_output) {
  current_["services"][name] = svc;
  std::istringstream lines(hook_output);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("output ", 0) != 0) continue;
    auto eq = line.find('=');
    if (eq == std::string::npos || eq <= 7) continue;
    std::string key = name + "." + line.substr(7, eq - 7);
    if (outputs_.size() >= kMaxOutputs && !outputs_.count(key)) continue;
    outputs_[key] = Trim(line.substr(eq + 1)).substr(0, kOutputBytes);
  }
  Report([&](NodeReport& rep) { rep.outputs = outputs_; });
}

NodeAgent::Step NodeAgent::WaitHealthy(Duration deadline) {
  return Step{"checking", [this, deadline](Done done) {
                const Time until = clock_.Now() + deadline;
                auto attempt = std::make_shared<std::function<void()>>();
                *attempt = [this, done, until, weak = std::weak_ptr(attempt), alive = alive_] {
                  auto attempt = weak.lock();
                  if (!*alive || !attempt) return;
                  RunHealth([this, done, until, attempt, alive = alive_](bool ok, std::string detail) {
                    if (!*alive) return;
                    if (ok) return done(true, "");
                    if (clock_.Now() > until) return done(false, "not healthy by the node deadline: " + detail);
                    // The coordinator may give up on it before this deadline:
                    // the reason it is not healthy must be in the report by then.
                    Report([&](NodeReport& r) { r.detail = text::TailChars("not healthy yet: " + detail, kDetailBytes); });
                    retry_timer_ = clock_.Schedule(cfg_.health_retry, [attempt] { (*attempt)(); });
                  });
                };
                (*attempt)();
              }};
}

void NodeAgent::RunHealth(Done done) {
  auto names = std::make_shared<std::vector<std::pair<std::string, Json>>>();
  for (const auto& [name, svc] : Section(current_, "services").items())
    if (!HookOf(svc, "health").empty()) names->emplace_back(name, svc);
  auto i = std::make_shared<size_t>(0);
  auto next = std::make_shared<std::function<void()>>();
  *next = [this, names, i, weak = std::weak_ptr(next), done, alive = alive_] {
    auto next = weak.lock();
    if (!*alive || !next) return;
    if (*i >= names->size()) return done(true, "");
    const auto& [name, svc] = (*names)[(*i)++];
    auto env = ServiceEnv(name, svc, KnownParams(svc));
    env["STARLING_HOOK"] = "health";
    HookRequest req{HookOf(svc, "health"), env, "", cfg_.hook_timeout};
    hooks_.Run(req, [name = name, next, done, alive](Result<HookResult> r) {
      if (!*alive) return;
      if (!r.ok()) return done(false, "health hook of " + name + ": " + r.status().message());
      if (!r->ok()) return done(false, "health hook of " + name + ": " + r->Describe() + ": " + text::TailChars(Trim(r->output), 100));
      (*next)();
    });
  };
  (*next)();
}

void NodeAgent::ScheduleHealth() {
  const Duration every = InCurrentBatch() ? std::min(cfg_.health_every, cfg_.batch_health_every) : cfg_.health_every;
  health_timer_ = clock_.Schedule(every, [this, alive = alive_] {
    if (!*alive) return;
    CheckHealth();
  });
}

bool NodeAgent::InCurrentBatch() const {
  const RolloutRecord* record = record_.Read(replicator_.log().state());
  if (!record) return false;
  auto a = record->nodes.find(self_);
  return a != record->nodes.end() && a->second.batch == record->batch_no &&
         std::find(record->batch.begin(), record->batch.end(), self_) != record->batch.end();
}

void NodeAgent::CheckHealth() {
  if (job_ || removed_) return ScheduleHealth();
  if (Section(current_, "services").empty()) {
    // Nothing to check: healthy once applied, which the daemon still says.
    if (InCurrentBatch()) soft_.Confirm();
    return ScheduleHealth();
  }
  RunHealth([this, alive = alive_](bool ok, std::string detail) {
    if (!*alive) return;
    if (!job_) {
      Report([&](NodeReport& r) {
        if (r.phase == "failed") return;  // keeps the failure visible until the next job
        r.healthy = ok;
        if (!ok) r.detail = text::TailChars(detail, kDetailBytes);
      });
      if (ok && InCurrentBatch()) soft_.Confirm();
    }
    ScheduleHealth();
  });
}

// ---- environment ------------------------------------------------------------------------------

std::map<std::string, std::string> NodeAgent::BaseEnv(const std::string& kind) const {
  return {{"STARLING_HOOK", kind},
          {"STARLING_NODE", self_},
          {"STARLING_REVISION", job_ ? job_->target : applied_},
          {"STARLING_DATA_DIR", cfg_.data_dir}};
}

std::map<std::string, std::string> NodeAgent::ServiceEnv(const std::string& name, const Json& svc,
                                                         const std::map<std::string, std::string>& params) const {
  auto env = BaseEnv("");
  env["STARLING_SERVICE"] = name;
  std::string pkg = Text(svc, "package");
  env["STARLING_PACKAGE"] = pkg;
  const Json& pkgs = Section(current_, "packages");
  env["STARLING_VERSION"] = pkgs.contains(pkg) ? Text(pkgs[pkg], "version") : "";
  for (const auto& [k, v] : params) env["STARLING_PARAM_" + k] = v;
  return env;
}

std::optional<std::string> NodeAgent::ResolveParam(const Json& v, std::string* missing) const {
  if (!v.is_string()) return v.dump();
  const std::string& s = v.get_ref<const std::string&>();
  std::string value;
  size_t pos = 0;
  while (pos < s.size()) {
    size_t open = s.find("${", pos);
    if (open == std::string::npos) {
      value += s.substr(pos);
      break;
    }
    size_t close = s.find('}', open);
    if (close == std::string::npos) {
      value += s.substr(pos);
      break;
    }
    value += s.substr(pos, open - pos);
    std::string ref = s.substr(open + 2, close - open - 2);
    auto found = outputs_.count(ref) ? std::optional<std::string>(outputs_.at(ref)) : soft_.FindOutput(ref);
    if (!found) {
      *missing = "${" + ref + "}";
      return std::nullopt;
    }
    value += *found;
    pos = close + 1;
  }
  return value;
}

std::optional<std::map<std::string, std::string>> NodeAgent::ResolveParams(const Json& svc,
                                                                          std::string* missing) const {
  std::map<std::string, std::string> out;
  auto p = svc.find("params");
  if (p == svc.end() || !p->is_object()) return out;
  for (const auto& [k, v] : p->items()) {
    auto value = ResolveParam(v, missing);
    if (!value) return std::nullopt;
    out[k] = std::move(*value);
  }
  return out;
}

std::map<std::string, std::string> NodeAgent::KnownParams(const Json& svc) const {
  // A stop or health hook must run even when an input has gone away (its
  // provider stopped), so it gets every param that still resolves.
  std::map<std::string, std::string> out;
  auto p = svc.find("params");
  if (p == svc.end() || !p->is_object()) return out;
  for (const auto& [k, v] : p->items()) {
    std::string missing;
    if (auto value = ResolveParam(v, &missing)) out[k] = std::move(*value);
  }
  return out;
}

}  // namespace starling::node

#include "checker.h"

#include <algorithm>
#include <map>

namespace starling::fault {
namespace {

constexpr const char* kRules[] = {"lost-change",        "diverged",           "lease-overlap",
                                  "over-unavailable",   "unfinished-rollout", "false-failure"};

std::string Seconds(Micros us) { return std::to_string(us / 1000000) + "." + std::to_string((us / 100000) % 10) + " s"; }

bool During(const Fault& f, Micros t) { return f.from <= t && t < f.until; }

void LostChanges(const History& h, std::vector<Violation>& out) {
  for (const Ack& a : h.acks)
    for (const NodeFinal& n : h.finals)
      if (!n.entries.count({a.origin, a.seq}))
        out.push_back({"lost-change", "change " + a.origin + "/" + std::to_string(a.seq) + " (revision " + a.revision +
                                          ", acknowledged by " + a.node + ") is missing on " + n.name});
}

void Diverged(const History& h, std::vector<Violation>& out) {
  for (size_t i = 1; i < h.finals.size(); ++i)
    if (h.finals[i].digest != h.finals[0].digest)
      out.push_back({"diverged", h.finals[i].name + " holds digest " + h.finals[i].digest + ", " + h.finals[0].name +
                                     " holds " + h.finals[0].digest});
}

void LeaseOverlap(const History& h, std::vector<Violation>& out) {
  for (size_t i = 0; i < h.holds.size(); ++i)
    for (size_t j = i + 1; j < h.holds.size(); ++j) {
      const LeaseHold& a = h.holds[i];
      const LeaseHold& b = h.holds[j];
      if (a.node == b.node) continue;
      const Micros from = std::max(a.from, b.from), until = std::min(a.until, b.until);
      if (from < until)
        out.push_back({"lease-overlap", a.node + " (ballot " + std::to_string(a.ballot) + ") and " + b.node +
                                            " (ballot " + std::to_string(b.ballot) + ") both held the lease for " +
                                            std::to_string((until - from) / 1000) + " ms from " + Seconds(from)});
    }
}

void OverUnavailable(const History& h, std::vector<Violation>& out) {
  // Every change of state, in time order: service events, and daemon downs and ups.
  struct Step {
    Micros at;
    int order;  // at the same instant: downs first, then service events, then ups
    std::string node, what;
  };
  std::vector<Step> steps;
  for (const ServiceEvent& e : h.services) steps.push_back({e.at, 1, e.node, e.what});
  for (const Fault& f : h.faults) {
    if (f.kind != "kill" && f.kind != "pause") continue;
    for (const auto& n : f.nodes) {
      steps.push_back({f.from, 0, n, f.kind});
      steps.push_back({f.until, 2, n, "up"});
      // A kill leaves the node's services running: restarted, the daemon
      // reports them healthy again, and a coordinator may count the node
      // back after min_healthy of that, not before.
      if (f.kind == "kill") steps.push_back({f.until + h.min_healthy, 2, n, "back"});
    }
  }
  std::stable_sort(steps.begin(), steps.end(),
                   [](const Step& a, const Step& b) { return a.at != b.at ? a.at < b.at : a.order < b.order; });
  std::set<std::string> out_of_service, paused, held_by_kill;
  std::map<std::string, Micros> healthy_after_stop;
  bool reported = false;
  for (const Step& s : steps) {
    if (s.what == "stop") {
      out_of_service.insert(s.node);
      healthy_after_stop.erase(s.node);
      held_by_kill.erase(s.node);
    }
    if (s.what == "healthy") {
      if (out_of_service.erase(s.node)) healthy_after_stop[s.node] = s.at;
      held_by_kill.erase(s.node);
    }
    if (s.what == "kill") {
      // Killed before the rollout could count it done: still out because of
      // the rollout, until it is back. Killed later: down because of the kill.
      auto last = healthy_after_stop.find(s.node);
      if (last != healthy_after_stop.end() && s.at - last->second < h.min_healthy) {
        out_of_service.insert(s.node);
        held_by_kill.insert(s.node);
      } else if (!out_of_service.count(s.node)) {
        healthy_after_stop.erase(s.node);
      }
    }
    if (s.what == "back" && held_by_kill.erase(s.node)) out_of_service.erase(s.node);
    if (s.what == "pause") paused.insert(s.node);
    if (s.what == "up") paused.erase(s.node);
    size_t counted = 0;
    std::string who;
    for (const auto& n : out_of_service)
      if (!paused.count(n)) ++counted, who += " " + n;
    if (counted > h.max_unavailable && !reported) {
      out.push_back({"over-unavailable", std::to_string(counted) + " nodes out of service at " + Seconds(s.at) +
                                             " (max " + std::to_string(h.max_unavailable) + "):" + who});
      reported = true;  // once per excursion
    } else if (counted <= h.max_unavailable) {
      reported = false;
    }
  }
}

void UnfinishedRollouts(const History& h, std::vector<Violation>& out) {
  if (h.rollouts.empty() && h.last_rollout == 0) return;
  const std::string& s = h.last_rollout_state;
  if (s != "succeeded" && s != "incomplete" && s != "failed" && s != "reverted")
    out.push_back({"unfinished-rollout", "rollout " + std::to_string(h.last_rollout) + " is " +
                                             (s.empty() ? std::string("unknown") : s) + " after the heal"});
  for (const auto& [id, state] : h.rollouts)
    if (id > h.last_rollout)
      out.push_back({"unfinished-rollout", "rollout " + std::to_string(id) + " was asked for and never ran (last " +
                                               std::to_string(h.last_rollout) + ")"});
}

void FalseFailures(const History& h, std::vector<Violation>& out) {
  for (const Declared& d : h.declared) {
    bool loss = false, explained = false;
    for (const Fault& f : h.faults) {
      if (f.kind == "loss") {
        loss = loss || During(f, d.at);
        continue;
      }
      // A kill, pause or cut, or its aftermath, explains a failure.
      if (f.from <= d.at && d.at < f.until + h.settle) explained = true;
    }
    if (!explained)
      out.push_back({"false-failure", d.observer + " declared " + d.member + " failed at " + Seconds(d.at) +
                                          (loss ? " while the only fault was packet loss" : " with no fault at all")});
  }
}

}  // namespace

std::vector<Violation> Check(const History& h) {
  std::vector<Violation> out;
  LostChanges(h, out);
  Diverged(h, out);
  LeaseOverlap(h, out);
  OverUnavailable(h, out);
  UnfinishedRollouts(h, out);
  FalseFailures(h, out);
  return out;
}

using json = nlohmann::json;

json ToJson(const History& h) {
  json j;
  for (const Ack& a : h.acks)
    j["acks"].push_back({{"node", a.node}, {"origin", a.origin}, {"seq", a.seq}, {"revision", a.revision}, {"at", a.at}});
  for (const NodeFinal& f : h.finals) {
    json entries = json::array();
    for (const auto& [origin, seq] : f.entries) entries.push_back({origin, seq});
    j["finals"].push_back({{"name", f.name}, {"digest", f.digest}, {"entries", entries}});
  }
  for (const LeaseHold& l : h.holds)
    j["holds"].push_back({{"node", l.node}, {"ballot", l.ballot}, {"from", l.from}, {"until", l.until}});
  for (const ServiceEvent& e : h.services) j["services"].push_back({{"node", e.node}, {"what", e.what}, {"at", e.at}});
  for (const Fault& f : h.faults)
    j["faults"].push_back({{"kind", f.kind}, {"nodes", f.nodes}, {"from", f.from}, {"until", f.until}});
  for (const auto& [id, state] : h.rollouts) j["rollouts"].push_back({{"id", id}, {"state", state}});
  j["last_rollout"] = h.last_rollout;
  j["last_rollout_state"] = h.last_rollout_state;
  for (const Declared& d : h.declared)
    j["declared"].push_back({{"observer", d.observer}, {"member", d.member}, {"at", d.at}});
  j["max_unavailable"] = h.max_unavailable;
  j["min_healthy"] = h.min_healthy;
  j["settle"] = h.settle;
  return j;
}

History HistoryFromJson(const json& j) {
  History h;
  auto list = [&](const char* key) { return j.contains(key) && j[key].is_array() ? j[key] : json::array(); };
  for (const auto& a : list("acks"))
    h.acks.push_back({a.value("node", ""), a.value("origin", ""), a.value("seq", uint64_t{0}), a.value("revision", ""),
                      a.value("at", Micros{0})});
  for (const auto& f : list("finals")) {
    NodeFinal n{f.value("name", ""), {}, f.value("digest", "")};
    for (const auto& e : f.value("entries", json::array()))
      if (e.is_array() && e.size() == 2) n.entries.insert({e[0].get<std::string>(), e[1].get<uint64_t>()});
    h.finals.push_back(n);
  }
  for (const auto& l : list("holds"))
    h.holds.push_back({l.value("node", ""), l.value("ballot", uint64_t{0}), l.value("from", Micros{0}),
                       l.value("until", Micros{0})});
  for (const auto& e : list("services")) h.services.push_back({e.value("node", ""), e.value("what", ""), e.value("at", Micros{0})});
  for (const auto& f : list("faults"))
    h.faults.push_back({f.value("kind", ""), f.value("nodes", std::vector<std::string>{}), f.value("from", Micros{0}),
                        f.value("until", Micros{0})});
  for (const auto& r : list("rollouts")) h.rollouts[r.value("id", uint64_t{0})] = r.value("state", "");
  h.last_rollout = j.value("last_rollout", uint64_t{0});
  h.last_rollout_state = j.value("last_rollout_state", "");
  for (const auto& d : list("declared"))
    h.declared.push_back({d.value("observer", ""), d.value("member", ""), d.value("at", Micros{0})});
  h.max_unavailable = j.value("max_unavailable", size_t{1});
  h.min_healthy = j.value("min_healthy", Micros{0});
  h.settle = j.value("settle", h.settle);
  return h;
}

std::string Summary(const std::vector<Violation>& v) {
  std::string out;
  for (const char* rule : kRules) {
    size_t n = std::count_if(v.begin(), v.end(), [&](const Violation& x) { return x.rule == rule; });
    out += std::string(rule) + " " + std::to_string(n) + "\n";
  }
  return out;
}

}  // namespace starling::fault

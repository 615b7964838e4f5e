#include "checker.h"

#include <algorithm>

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
    }
  }
  std::stable_sort(steps.begin(), steps.end(),
                   [](const Step& a, const Step& b) { return a.at != b.at ? a.at < b.at : a.order < b.order; });
  std::set<std::string> out_of_service, down;
  bool reported = false;
  for (const Step& s : steps) {
    if (s.what == "stop") out_of_service.insert(s.node);
    if (s.what == "healthy") out_of_service.erase(s.node);
    if (s.what == "kill") out_of_service.erase(s.node);  // down because of the kill from now on
    if (s.what == "kill" || s.what == "pause") down.insert(s.node);
    if (s.what == "up") down.erase(s.node);
    size_t counted = 0;
    std::string who;
    for (const auto& n : out_of_service)
      if (!down.count(n)) ++counted, who += " " + n;
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
  for (const auto& [id, state] : h.rollouts)
    if (state != "succeeded" && state != "failed" && state != "reverted")
      out.push_back({"unfinished-rollout", "rollout " + std::to_string(id) + " is " +
                                               (state.empty() ? std::string("unknown") : state) + " after the heal"});
}

void FalseFailures(const History& h, std::vector<Violation>& out) {
  for (const Declared& d : h.declared) {
    bool loss = false, other = false, member_down = false;
    for (const Fault& f : h.faults) {
      if (f.kind == "loss") {
        loss = loss || During(f, d.at);
        continue;
      }
      // Another fault, or its aftermath, explains a failure.
      if (f.from <= d.at && d.at < f.until + h.settle) other = true;
      if ((f.kind == "kill" || f.kind == "pause") &&
          std::find(f.nodes.begin(), f.nodes.end(), d.member) != f.nodes.end() && f.from <= d.at &&
          d.at < f.until + h.settle)
        member_down = true;
    }
    if (loss && !other && !member_down)
      out.push_back({"false-failure", d.observer + " declared " + d.member + " failed at " + Seconds(d.at) +
                                          " while the only fault was packet loss"});
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

std::string Summary(const std::vector<Violation>& v) {
  std::string out;
  for (const char* rule : kRules) {
    size_t n = std::count_if(v.begin(), v.end(), [&](const Violation& x) { return x.rule == rule; });
    out += std::string(rule) + " " + std::to_string(n) + "\n";
  }
  return out;
}

}  // namespace starling::fault

// The fault suite's checker: reads what every node recorded during a run of
// real daemons under faults, and reports where a promise was broken.
//
// Rules (each has a name, used in reports and tests):
//  * lost-change: a change `apply` acknowledged (its origin and seq) is not in
//    some node's history after the heal.
//  * diverged: nodes hold different desired states (digests) after the heal.
//  * lease-overlap: two nodes held the coordinator lease at the same moment,
//    by their own lease logs (each hold runs from when the node won a ballot
//    to the end of validity it computed, or to when it released it).
//  * over-unavailable: more nodes out of service because of a rollout than
//    the policy's largest batch. Out because of a rollout: a stop hook ran and
//    no passing health check since, or the node was killed before it had been
//    healthy for the policy's `min_healthy` after such a stop (the rollout
//    cannot have finished with it: it counts until its next passing health
//    check, down or not). A node killed later is down because of the kill; a
//    paused daemon is not counted while paused.
//  * unfinished-rollout: after the heal, the last rollout (the record every
//    node holds) is not succeeded, failed or reverted, or a rollout was asked
//    for (and acknowledged) with a higher id than the last one and never ran.
//    Rollouts before the last one need no check: the coordinator starts one
//    only when none is running, and a newer request replaces one it has not
//    taken yet.
//  * false-failure: a node declared a member failed while the only fault was
//    packet loss, or while there was no fault at all: no kill, pause or cut
//    (partition, bridge, one-way) was under way or had ended less than
//    `settle` before.
// Times are wall-clock microseconds; every host of a run shares one clock.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace starling::fault {

using Micros = int64_t;

struct Ack {  // a change `apply` acknowledged
  std::string node, origin;
  uint64_t seq = 0;
  std::string revision;
  Micros at = 0;
};

struct NodeFinal {  // a node's state after the heal
  std::string name;
  std::set<std::pair<std::string, uint64_t>> entries;  // (origin, seq) of its history
  std::string digest;
};

struct LeaseHold {
  std::string node;
  uint64_t ballot = 0;
  Micros from = 0, until = 0;
};

struct ServiceEvent {
  std::string node, what;  // stop | start | healthy
  Micros at = 0;
};

struct Fault {
  std::string kind;  // kill | pause | partition | bridge | one-way | loss
  std::vector<std::string> nodes;
  Micros from = 0, until = 0;
};

struct Declared {  // `observer` declared `member` failed
  std::string observer, member;
  Micros at = 0;
};

struct History {
  std::vector<Ack> acks;
  std::vector<NodeFinal> finals;
  std::vector<LeaseHold> holds;
  std::vector<ServiceEvent> services;
  std::vector<Fault> faults;
  std::map<uint64_t, std::string> rollouts;  // id asked for -> the last state seen of it during the run
  uint64_t last_rollout = 0;                 // the rollout every node holds after the heal
  std::string last_rollout_state;
  std::vector<Declared> declared;
  size_t max_unavailable = 1;
  Micros min_healthy = 0;  // the rollout policy's
  Micros settle = 15'000'000;  // after a non-loss fault, before loss-only rules apply
};

struct Violation {
  std::string rule;
  std::string what;
};

std::vector<Violation> Check(const History& h);

// One line per rule: "lost-change 0", ...
std::string Summary(const std::vector<Violation>& v);

// A history as JSON (what a run saves as history.json) and back, so that a
// run can be checked again later (`starling-fault --check history.json`).
nlohmann::json ToJson(const History& h);
History HistoryFromJson(const nlohmann::json& j);

}  // namespace starling::fault

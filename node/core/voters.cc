#include "voters.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "state_commands.h"

namespace starling::node {

using membership::MemberStatus;

VoterKeeper::VoterKeeper(std::string self, Clock& clock, membership::Memberlist& members,
                         store::Replicator& replicator, Lease& lease, VoterConfig config)
    : self_(std::move(self)),
      clock_(clock),
      members_(members),
      replicator_(replicator),
      lease_(lease),
      cfg_(config) {}

VoterKeeper::~VoterKeeper() {
  if (timer_) clock_.Cancel(timer_);
}

void VoterKeeper::Start() {
  stable_since_ = clock_.Now();
  Refresh();
  timer_ = clock_.Schedule(cfg_.tick, [this] { Tick(); });
}

std::vector<std::string> VoterKeeper::Choose(std::vector<std::string> alive) {
  std::sort(alive.begin(), alive.end());
  alive.erase(std::unique(alive.begin(), alive.end()), alive.end());
  const size_t n = alive.size() >= 5 ? 5 : alive.size() >= 3 ? 3 : alive.size();
  alive.resize(n);
  return alive;
}

std::optional<std::vector<std::string>> VoterKeeper::Recorded(const store::Json& doc) {
  auto it = doc.find("voters");
  if (it == doc.end() || !it->is_array() || it->empty()) return std::nullopt;
  std::vector<std::string> out;
  for (const auto& v : *it) {
    if (!v.is_string()) return std::nullopt;
    out.push_back(v.get<std::string>());
  }
  std::sort(out.begin(), out.end());
  return out;
}

void VoterKeeper::Refresh() {
  auto recorded = Recorded(replicator_.log().state().Document());
  lease_.SetVoters(recorded.value_or(std::vector<std::string>{}));
}

bool VoterKeeper::AutoCommission(const store::Json& doc, const std::vector<std::string>& alive) {
  const std::vector<std::string> fresh = ToAutoCommission(doc, alive);
  if (fresh.empty()) return false;
  auto r = StateCommands(replicator_).SetLifecycle(fresh, "commissioned");
  if (!r.ok()) {
    spdlog::warn("auto-commission of {} nodes failed: {}", fresh.size(), r.status().message());
    return false;
  }
  spdlog::info("auto-commissioned {} newly discovered node(s)", fresh.size());
  return true;
}

void VoterKeeper::Tick() {
  timer_ = clock_.Schedule(cfg_.tick, [this] { Tick(); });
  const Time now = clock_.Now();
  const Seen seen{members_.Epoch(), replicator_.log().state().Digest(), lease_.IsHolder()};
  if (idle_at_ == seen) return;
  idle_at_.reset();
  std::vector<std::string> alive;
  std::map<std::string, MemberStatus> status;
  uint64_t digest = 1469598103934665603ULL;  // FNV-1a over the names, each with its terminator
  members_.ForEachMember([&](const membership::MemberRecord& m) {
    status[m.name] = m.status;
    if (m.status == MemberStatus::kAlive) {
      alive.push_back(m.name);
      for (const char* c = m.name.c_str();; ++c) {
        digest = (digest ^ static_cast<uint8_t>(*c)) * 1099511628211ULL;
        if (*c == '\0') break;
      }
    }
  });
  if (digest != alive_digest_) {
    alive_digest_ = digest;
    stable_since_ = now;
  }
  // A write changes the document: the rest waits for the next tick.
  const store::Json& doc = replicator_.log().state().Document();
  if (seen.holder && AutoCommission(doc, alive)) return;
  // Voters are chosen among the alive members the desired state does not
  // decommission.
  std::vector<std::string> eligible;
  const auto nodes = doc.find("nodes");
  for (const auto& a : alive) {
    const bool out = nodes != doc.end() && nodes->is_object() && nodes->contains(a) &&
                     store::TextAt((*nodes)[a], "lifecycle") == "decommissioned";
    if (!out) eligible.push_back(a);
  }
  const auto recorded = Recorded(doc);
  if (!recorded) {
    met_others_ |= alive.size() > 1;
    if (!cfg_.founder && !met_others_) {
      if (!said_waiting_ && now - stable_since_ >= cfg_.settle)
        spdlog::warn("not choosing the lease voters alone: no seed has answered yet (check --join, or `starling "
                     "join` a member)");
      said_waiting_ |= now - stable_since_ >= cfg_.settle;
      return;
    }
    if (!eligible.empty() && eligible.front() == self_ && now - stable_since_ >= cfg_.settle) {
      auto chosen = Choose(eligible);
      if (StateCommands(replicator_).SetVoters(chosen, "chosen automatically").ok()) {
        last_write_ = now;
        spdlog::info("chose the lease voters automatically: {} of {} alive members", chosen.size(), alive.size());
        Refresh();
      }
    }
    return;
  }
  const std::vector<std::string>& voters = *recorded;
  for (const auto& v : voters) {
    auto it = status.find(v);
    const bool up = it != status.end() && (it->second == MemberStatus::kAlive || it->second == MemberStatus::kSuspect);
    if (up) {
      dead_since_.erase(v);
    } else {
      dead_since_.emplace(v, now);
    }
  }
  for (auto it = dead_since_.begin(); it != dead_since_.end();)
    it = std::binary_search(voters.begin(), voters.end(), it->first) ? std::next(it) : dead_since_.erase(it);
  if (last_write_ && now - *last_write_ < cfg_.spacing) return;

  std::optional<std::string> gone;
  for (const auto& [name, since] : dead_since_)
    if (now - since >= cfg_.reap_timeout) {
      gone = name;
      break;
    }
  std::vector<std::string> next = voters;
  std::string why;
  const bool voter = std::binary_search(voters.begin(), voters.end(), self_);
  const store::Register* reg = replicator_.log().state().Find("voters");
  const bool operator_sized = reg && VoterRank::Decode(reg->rank).by_operator;
  if (lease_.IsHolder() && voter) {
    if (gone) {
      next.erase(std::find(next.begin(), next.end(), *gone));
      why = "removed " + *gone + " (dead past the reap timeout)";
    } else if (!operator_sized && next.size() < Choose(eligible).size() && now - stable_since_ >= cfg_.settle) {
      // (Once the member list has settled: a node that has just been joined
      // first merges the cluster's desired state, voters included.)
      // Back to the size the choice rule asks for, after a voter was reaped
      // or decommissioned, or as the cluster grows: one voter per change.
      for (const auto& a : eligible)
        if (!std::binary_search(voters.begin(), voters.end(), a)) {
          next.push_back(a);
          why = "added " + a + " (" + std::to_string(voters.size()) + " voters, the choice rule asks for " +
                std::to_string(Choose(eligible).size()) + ")";
          break;
        }
    }
  } else if (gone && !lease_.view().holder) {
    std::optional<std::string> first_live;
    for (const auto& v : voters)
      if (!dead_since_.count(v)) {
        first_live = v;
        break;
      }
    if (first_live == self_ && next.size() > 1) {
      next.erase(std::find(next.begin(), next.end(), *gone));
      why = "removed " + *gone + " (dead past the reap timeout, no lease holder)";
    }
  }
  if (why.empty()) {
    // Idle unless a voter is down (its reap timeout runs) or the set waits
    // for the list to settle before it grows.
    const bool waits = !dead_since_.empty() || (lease_.IsHolder() && voter && !operator_sized &&
                                                next.size() < Choose(eligible).size());
    if (!waits) idle_at_ = seen;
    return;
  }
  if (auto w = StateCommands(replicator_).SetVoters(next, why); !w.ok()) {
    spdlog::error("could not change the lease voters: {}", w.status().ToString());
    return;
  }
  last_write_ = now;
  spdlog::info("lease voters: {}", why);
  Refresh();
}

}  // namespace starling::node

// The coordinator lease: at most one holder at a time, over a small voter set,
// in the manner of PaxosLease (Trencseni, Gazsó, Reinhardt, 2009).
//
// Protocol (every voter is an acceptor; only voters propose):
//  * A proposer picks a ballot above every ballot it has seen, starts its own
//    timer, and only then asks the voters to promise (prepare). A voter
//    promises a ballot above any it promised before (the same ballot again
//    only to the same proposer), and says which lease it has accepted if that
//    has not expired on its own clock.
//  * With promises from a majority and no unexpired lease of someone else
//    among them, the proposer asks the voters to accept "me for `period`".
//    A voter accepts unless it has promised a higher ballot since, and
//    forgets the grant `period` later by its own clock.
//  * With a majority of acceptances the proposer holds the lease until
//    `period - margin` after its own timer started. Every voter that
//    accepted started its `period` later than that, so with clock rates
//    within (1 +- max_drift) no other proposer can collect a majority while
//    the holder thinks it holds (margin >= 2 * max_drift * period).
//  * The holder renews by running the protocol again (its own grant does not
//    block it) every `renew_every`; on graceful leave it releases the grant.
//  * Promises are durable (BallotStore keeps a bound reserved ahead of them),
//    so ballots only grow across restarts and serve as fencing tokens. Accepted grants are not: a voter that
//    restarts ignores all lease traffic for one `period`, after which every
//    grant it may have forgotten has expired.
//  * Gossip never decides who may hold the lease; the holder's notice only
//    tells everyone who holds it and stops voters from proposing needlessly.
//
// Single-threaded on the protocol thread; driven by the injected Clock and
// Random. Messages from the network are untrusted: bad bytes cost a counter.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "starling/env.h"
#include "starling/status.h"

namespace starling::membership {
class UserChannels;
}

namespace starling::node {

using namespace std::chrono_literals;

struct LeaseConfig {
  Duration period = 10s;      // a grant's length on each voter's clock
  Duration margin = 1s;       // the holder stops this much early
  Duration renew_every = 3s;  // the holder re-runs the protocol this often
  Duration attempt_timeout = 1s;
  Duration backoff = 1s;  // a failed attempt waits [backoff, 2 * backoff)
  // The clock-rate bound the margin covers: margin >= 2 * max_drift * period.
  double max_drift = 0.01;
};

// The lease timings of each membership profile. Each keeps the ratios of the
// defaults (renew at 30 % of the period, margin 10 %), so the margin always
// covers a 1 % drift over a whole period.
inline constexpr LeaseConfig kLanLease{};
inline constexpr LeaseConfig kLocalLease{std::chrono::seconds(4), std::chrono::milliseconds(400),
                                         std::chrono::milliseconds(1200), std::chrono::milliseconds(500),
                                         std::chrono::milliseconds(500)};
inline constexpr LeaseConfig kWanLease{std::chrono::seconds(30), std::chrono::seconds(3), std::chrono::seconds(9),
                                       std::chrono::seconds(3), std::chrono::seconds(3)};
// kLocalLease, kWanLease or (for `lan` and anything else) kLanLease.
LeaseConfig LeaseConfigFor(const std::string& profile);

enum class LeaseKind : uint8_t { kPrepare, kPromise, kPropose, kAccept, kRelease, kNotice };

struct LeaseMsg {
  LeaseKind kind = LeaseKind::kPrepare;
  std::string from;
  uint64_t round = 0;
  bool ok = false;
  uint64_t promised = 0;
  std::string owner;
  uint64_t duration_ms = 0;
  uint64_t accepted_round = 0;
};

inline constexpr uint16_t kLeaseVersion = 1;
Bytes EncodeLease(const LeaseMsg& m);
// Never throws; kCorruption says why.
Result<LeaseMsg> DecodeLease(ByteView bytes);

// Who the voters are and how to reach them.
class LeaseNet {
 public:
  virtual ~LeaseNet() = default;
  virtual std::optional<std::string> AddrOf(const std::string& name) const = 0;
  virtual void Send(const std::string& addr, Bytes data) = 0;
  virtual void Broadcast(Bytes data) = 0;
};

// LeaseNet over membership's user channel.
class MemberlistLeaseNet final : public LeaseNet {
 public:
  explicit MemberlistLeaseNet(membership::UserChannels& channels) : channels_(channels) {}
  std::optional<std::string> AddrOf(const std::string& name) const override;
  void Send(const std::string& addr, Bytes data) override;
  void Broadcast(Bytes data) override;

 private:
  membership::UserChannels& channels_;
};

// Where a voter keeps the highest ballot it promised. Save is durable before
// it returns.
class BallotStore {
 public:
  virtual ~BallotStore() = default;
  virtual uint64_t Load() = 0;
  virtual Status Save(uint64_t ballot) = 0;
};

// Keeps the ballot in memory (the simulator's nodes: survives a simulated
// crash because the node's object does).
class MemoryBallotStore final : public BallotStore {
 public:
  uint64_t Load() override { return ballot_; }
  Status Save(uint64_t ballot) override {
    ballot_ = ballot;
    return Status::Ok();
  }

 private:
  uint64_t ballot_ = 0;
};

// Ballots are chosen by their senders, so a key holder could send the
// largest one and leave no higher ballot for anyone, stopping the lease and
// every rollout for good. Honest ballots grow by one per attempt; a ballot
// (in a lease message or a rollout record) more than this far above the
// highest one a node has seen is refused. 2^32 attempts are centuries of
// renewals; driving ballots to the end of their range takes 2^32 messages.
constexpr uint64_t kMaxBallotStep = uint64_t{1} << 32;
// Whether `ballot` is out of reach from `highest`, the highest seen.
inline bool BallotOutOfReach(uint64_t ballot, uint64_t highest) {
  return ballot > highest && ballot - highest > kMaxBallotStep;
}
// The same for a rollout record that `who` reads: the first time a given
// ballot is refused (`*warned` remembers it), one log line says so.
bool RecordOutOfReach(uint64_t ballot, uint64_t highest, uint64_t* warned, const char* who);

class Lease {
 public:
  // The references must outlive the Lease.
  Lease(std::string self, Clock& clock, Random& random, LeaseNet& net, BallotStore& store, LeaseConfig config = {});
  ~Lease();
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // Enters the restart quarantine (one period) and starts the timer.
  void Start();
  // The voter set, by member name. Taking effect at once: callers change it
  // one voter at a time so that old and new majorities overlap.
  void SetVoters(std::vector<std::string> voters);
  void HandlePacket(const std::string& from, ByteView data);
  // Graceful leave: stop renewing and tell the voters to drop our grant.
  void Release();

  bool IsHolder() const;
  // The holder's ballot while we hold; the fencing token for later work.
  uint64_t ballot() const { return holding_round_; }
  // The highest ballot this node has seen or promised.
  uint64_t highest_ballot() const { return std::max(seen_, promised_); }

  struct View {
    std::optional<std::string> holder;  // as far as this node knows
    uint64_t ballot = 0;
    Duration expires_in{0};
    std::vector<std::string> voters;
    bool quarantined = false;
    uint64_t highest_ballot = 0;  // highest seen anywhere
  };
  View view() const;

  // Runs whenever this node gains or loses the lease.
  void OnChange(std::function<void(bool holder)> fn) { on_change_ = std::move(fn); }
  // Runs whenever this node wins or renews the lease, with how long it holds
  // it from now (its own safety margin already taken off), and with zero when
  // it releases it: the record an outside checker needs to prove that no two
  // nodes ever held it at once.
  void OnHold(std::function<void(uint64_t ballot, Duration remaining)> fn) { on_hold_ = std::move(fn); }
  const std::map<std::string, uint64_t>& counters() const { return counters_; }

 private:
  struct Attempt {
    uint64_t round = 0;
    Time started{};
    bool proposing = false;
    std::set<std::string> yes, no;
  };
  struct Grant {
    uint64_t round = 0;
    std::string owner;
    Time until{};
  };

  void Tick();
  void StartAttempt();
  void Abandon(Duration wait);
  void EndAttempt();
  Duration Stagger();
  void SendToVoters(const LeaseMsg& m, const std::set<std::string>& skip);
  LeaseMsg PhaseMessage() const;
  void ScheduleResend(uint64_t round);
  void Reply(const std::string& to, LeaseMsg m);
  void Deliver(const LeaseMsg& m);
  void OnPrepare(const LeaseMsg& m);
  void OnPropose(const LeaseMsg& m);
  void OnPromise(const LeaseMsg& m);
  void OnAccept(const LeaseMsg& m);
  bool Answers(const LeaseMsg& m, bool proposing);
  bool Promise(uint64_t round, const std::string& by);
  bool IsVoter(const std::string& name) const;
  size_t Majority() const { return voters_.size() / 2 + 1; }
  void CheckHolding();

  std::string self_;
  Clock& clock_;
  Random& random_;
  LeaseNet& net_;
  BallotStore& store_;
  LeaseConfig cfg_;
  std::vector<std::string> voters_;
  std::function<void(bool)> on_change_;
  std::function<void(uint64_t, Duration)> on_hold_;
  std::map<std::string, uint64_t> counters_;
  std::shared_ptr<bool> token_;

  // Acceptor.
  uint64_t promised_ = 0;
  uint64_t saved_ = 0;  // the durable bound: promised_ <= saved_
  std::string promised_by_;
  std::optional<Grant> accepted_;
  Time quarantine_until_{};
  // Proposer.
  std::optional<Attempt> attempt_;
  uint64_t holding_round_ = 0;
  Time hold_until_{};
  Time last_start_{};
  Time next_try_{};
  bool was_holder_ = false;
  // Other holders' grants: known_ from voters' promises (fresh, and it holds
  // our attempts back), heard_ from gossiped notices (for display only).
  std::optional<Grant> known_, heard_;
  uint64_t seen_ = 0;
  Clock::TimerId tick_ = 0, attempt_timer_ = 0;
};

}  // namespace starling::node

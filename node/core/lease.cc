#include "lease.h"

#include "starling/text.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "schema/lease.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/membership/user_channels.h"

namespace starling::node {

namespace lw = ::starling::leasewire;
using membership::Channel;

namespace {
constexpr size_t kMaxLeaseBytes = 4096;
constexpr size_t kMaxNameBytes = 256;
constexpr uint64_t kBallotReserve = 1000;

uint64_t Millis(Duration d) { return static_cast<uint64_t>(std::max<int64_t>(0, d.count() / 1000)); }
}  // namespace

LeaseConfig LeaseConfigFor(const std::string& profile) {
  if (profile == "local") return kLocalLease;
  if (profile == "wan") return kWanLease;
  return kLanLease;
}

// ---- codec ------------------------------------------------------------------------

Bytes EncodeLease(const LeaseMsg& m) {
  capnp::MallocMessageBuilder mb;
  auto b = mb.initRoot<lw::LeaseMessage>();
  b.setVersion(kLeaseVersion);
  b.setKind(static_cast<lw::Kind>(m.kind));
  b.setFrom(m.from);
  b.setRound(m.round);
  b.setOk(m.ok);
  b.setPromised(m.promised);
  b.setOwner(m.owner);
  b.setDurationMs(m.duration_ms);
  b.setAcceptedRound(m.accepted_round);
  return capnp_bytes::Flat(mb);
}

Result<LeaseMsg> DecodeLease(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<LeaseMsg>(
      bytes, kMaxLeaseBytes, "lease message", [](capnp::FlatArrayMessageReader& reader) -> Result<LeaseMsg> {
        auto r = reader.getRoot<lw::LeaseMessage>();
        if (r.getVersion() != kLeaseVersion)
          return Status::Corruption("lease message version " + std::to_string(r.getVersion()) + ", we speak " +
                                    std::to_string(kLeaseVersion));
        const auto kind = static_cast<uint16_t>(r.getKind());
        if (kind > static_cast<uint16_t>(LeaseKind::kNotice))
          return Status::Corruption("unknown lease message kind " + std::to_string(kind));
        if (r.getFrom().size() > kMaxNameBytes || r.getOwner().size() > kMaxNameBytes || r.getFrom().size() == 0)
          return Status::Corruption("lease message with a bad name");
        LeaseMsg m;
        m.kind = static_cast<LeaseKind>(kind);
        m.from = capnp_bytes::Str(r.getFrom());
        m.round = r.getRound();
        m.ok = r.getOk();
        m.promised = r.getPromised();
        m.owner = capnp_bytes::Str(r.getOwner());
        if (!text::IsCleanName(m.from) || !text::IsCleanName(m.owner))
          return Status::Corruption("lease message with a name that is not clean UTF-8");
        m.duration_ms = r.getDurationMs();
        m.accepted_round = r.getAcceptedRound();
        // A duration beyond a day is nonsense from any version of us.
        if (m.duration_ms > 86'400'000) return Status::Corruption("lease duration out of range");
        return m;
      });
}

// ---- MemberlistLeaseNet ---------------------------------------------------------------

std::optional<std::string> MemberlistLeaseNet::AddrOf(const std::string& name) const {
  const auto& list = channels_.list();
  if (name == list.config().name) return list.config().advertise_addr;
  return list.AddrOf(name);
}
void MemberlistLeaseNet::Send(const std::string& addr, Bytes data) {
  channels_.SendPacket(Channel::kLease, addr, std::move(data));
}
void MemberlistLeaseNet::Broadcast(Bytes data) { channels_.Broadcast(Channel::kLease, "notice", std::move(data)); }

// ---- Lease ---------------------------------------------------------------------------

Lease::Lease(std::string self, Clock& clock, Random& random, LeaseNet& net, BallotStore& store, LeaseConfig config)
    : self_(std::move(self)),
      clock_(clock),
      random_(random),
      net_(net),
      store_(store),
      cfg_(config),
      token_(std::make_shared<bool>(true)) {
  const double needed = 2 * cfg_.max_drift * static_cast<double>(cfg_.period.count());
  if (static_cast<double>(cfg_.margin.count()) < needed)
    spdlog::warn("lease margin {} us does not cover {:.1f} % clock drift over a {} us period", cfg_.margin.count(),
                 100 * cfg_.max_drift, cfg_.period.count());
  for (const char* c : {"prepares_sent", "acquired", "renewed", "lost", "released", "refused", "abandoned",
                        "promises_given", "grants_given", "quarantine_dropped", "bad_messages", "stale_dropped",
                        "ballot_out_of_reach"})
    counters_[c] = 0;
}

Lease::~Lease() {
  if (tick_) clock_.Cancel(tick_);
  if (attempt_timer_) clock_.Cancel(attempt_timer_);
}

void Lease::Start() {
  promised_ = store_.Load();
  saved_ = promised_;
  seen_ = promised_;
  quarantine_until_ = clock_.Now() + cfg_.period;
  next_try_ = quarantine_until_ + Stagger();
  Tick();
}

void Lease::SetVoters(std::vector<std::string> voters) {
  std::sort(voters.begin(), voters.end());
  voters.erase(std::unique(voters.begin(), voters.end()), voters.end());
  if (voters == voters_) return;
  std::string list;
  for (const auto& v : voters) list += (list.empty() ? "" : ", ") + v;
  spdlog::info("lease voters: {}", list);
  voters_ = std::move(voters);
  // A round counted against the old set is not trusted under the new one.
  if (attempt_) Abandon(Duration(0));
}

bool Lease::IsVoter(const std::string& name) const {
  return std::binary_search(voters_.begin(), voters_.end(), name);
}

bool Lease::IsHolder() const { return holding_round_ != 0 && clock_.Now() < hold_until_; }

Lease::View Lease::view() const {
  View v;
  v.voters = voters_;
  v.quarantined = clock_.Now() < quarantine_until_;
  v.highest_ballot = std::max(seen_, promised_);
  const Time now = clock_.Now();
  if (IsHolder()) {
    v.holder = self_;
    v.ballot = holding_round_;
    v.expires_in = hold_until_ - now;
  } else {
    for (const auto* g : {&known_, &heard_}) {
      if (!*g || (*g)->until <= now || (*g)->round < v.ballot) continue;
      v.holder = (*g)->owner;
      v.ballot = (*g)->round;
      v.expires_in = (*g)->until - now;
    }
  }
  return v;
}

void Lease::Tick() {
  tick_ = 0;
  CheckHolding();
  const Time now = clock_.Now();
  if (!attempt_ && IsVoter(self_) && now >= quarantine_until_ && now >= next_try_) {
    if (IsHolder()) {
      if (now >= last_start_ + cfg_.renew_every) StartAttempt();
    } else if (!(known_ && known_->until > now && known_->owner != self_)) {
      StartAttempt();
    }
  }
  // Several ticks per renewal keep renewals on time; the jitter keeps
  // voters from proposing in lockstep.
  const Duration base = cfg_.renew_every / 6;
  tick_ = clock_.Schedule(base + Duration(random_.Uniform(static_cast<uint64_t>(base.count()) / 2 + 1)),
                          [this] { Tick(); });
}

void Lease::CheckHolding() {
  const bool holder = IsHolder();
  if (holder == was_holder_) return;
  was_holder_ = holder;
  if (holder) {
    spdlog::info("acquired the coordinator lease, ballot {}", holding_round_);
  } else {
    ++counters_["lost"];
    spdlog::warn("the coordinator lease (ballot {}) ran out", holding_round_);
  }
  if (on_change_) on_change_(holder);
}

void Lease::StartAttempt() {
  Attempt a;
  a.round = std::max(seen_, promised_) + 1;
  // The timer starts before anyone is asked.
  a.started = clock_.Now();
  attempt_ = a;
  ++counters_["prepares_sent"];
  ScheduleResend(a.round);
  SendToVoters(PhaseMessage(), {});
}

LeaseMsg Lease::PhaseMessage() const {
  LeaseMsg m;
  m.kind = attempt_->proposing ? LeaseKind::kPropose : LeaseKind::kPrepare;
  m.from = self_;
  m.round = attempt_->round;
  if (attempt_->proposing) {
    m.owner = self_;
    m.duration_ms = Millis(cfg_.period);
  }
  return m;
}

// Datagrams get lost: every quarter of the attempt timeout, the current
// phase's message goes again to the voters that have not answered (voters
// answer repeats of the same ballot the same way).
void Lease::ScheduleResend(uint64_t round) {
  std::weak_ptr<bool> alive = token_;
  attempt_timer_ = clock_.Schedule(cfg_.attempt_timeout / 4, [this, alive, round] {
    attempt_timer_ = 0;
    if (alive.expired() || !attempt_ || attempt_->round != round) return;
    if (clock_.Now() >= attempt_->started + cfg_.attempt_timeout) {
      Abandon(cfg_.backoff + Stagger());
      return;
    }
    std::set<std::string> answered = attempt_->yes;
    answered.insert(attempt_->no.begin(), attempt_->no.end());
    SendToVoters(PhaseMessage(), answered);
    ScheduleResend(round);
  });
}

Duration Lease::Stagger() {
  // Voters earlier in name order go first, so that they rarely duel; a
  // random part breaks the ties the order does not.
  const auto it = std::lower_bound(voters_.begin(), voters_.end(), self_);
  const auto rank = static_cast<int64_t>(it - voters_.begin());
  return rank * cfg_.attempt_timeout + Duration(random_.Uniform(static_cast<uint64_t>(cfg_.backoff.count()) + 1));
}

void Lease::Abandon(Duration wait) {
  if (!attempt_) return;
  ++counters_["abandoned"];
  EndAttempt();
  next_try_ = std::max(next_try_, clock_.Now() + wait);
}

void Lease::EndAttempt() {
  attempt_.reset();
  if (attempt_timer_) clock_.Cancel(attempt_timer_);
  attempt_timer_ = 0;
}

void Lease::SendToVoters(const LeaseMsg& m, const std::set<std::string>& skip) {
  Bytes bytes = EncodeLease(m);
  for (const auto& v : voters_) {
    if (skip.count(v)) continue;
    if (v == self_) {
      // Our own acceptor answers after this call returns, like any other.
      std::weak_ptr<bool> alive = token_;
      clock_.Schedule(Duration(0), [this, alive, m] {
        if (!alive.expired()) Deliver(m);
      });
      continue;
    }
    if (auto addr = net_.AddrOf(v)) net_.Send(*addr, bytes);
  }
}

void Lease::Reply(const std::string& to, LeaseMsg m) {
  m.from = self_;
  if (to == self_) {
    std::weak_ptr<bool> alive = token_;
    clock_.Schedule(Duration(0), [this, alive, m] {
      if (!alive.expired()) Deliver(m);
    });
    return;
  }
  if (auto addr = net_.AddrOf(to)) net_.Send(*addr, EncodeLease(m));
}

void Lease::Release() {
  if (!IsHolder()) return;
  ++counters_["released"];
  LeaseMsg m;
  m.kind = LeaseKind::kRelease;
  m.from = self_;
  m.round = holding_round_;
  SendToVoters(m, {});
  hold_until_ = clock_.Now();
  if (on_hold_) on_hold_(holding_round_, Duration(0));
  Abandon(Duration(0));
  // Do not take it again on the way out.
  next_try_ = clock_.Now() + 1000 * cfg_.period;
  CheckHolding();
}

bool RecordOutOfReach(uint64_t ballot, uint64_t highest, uint64_t* warned, const char* who) {
  if (!BallotOutOfReach(ballot, highest)) return false;
  if (*warned != ballot)
    spdlog::warn("{}: ignoring a rollout record with ballot {}, out of reach from the highest seen here ({})", who,
                 ballot, highest);
  *warned = ballot;
  return true;
}

void Lease::HandlePacket(const std::string& from, ByteView data) {
  auto m = DecodeLease(data);
  if (!m.ok()) {
    ++counters_["bad_messages"];
    spdlog::warn("dropped a lease message from {}: {}", from, m.status().message());
    return;
  }
  Deliver(*m);
}

void Lease::Deliver(const LeaseMsg& m) {
  const uint64_t highest = highest_ballot();
  if (BallotOutOfReach(m.round, highest) || BallotOutOfReach(m.promised, highest) ||
      BallotOutOfReach(m.accepted_round, highest)) {
    ++counters_["ballot_out_of_reach"];
    spdlog::warn("dropped a lease message from {}: ballot {} is more than 2^32 above the highest seen here ({})",
                 m.from, std::max({m.round, m.promised, m.accepted_round}), highest);
    return;
  }
  seen_ = std::max({seen_, m.round, m.promised});
  if (m.kind == LeaseKind::kNotice) {
    // Gossip may deliver a notice seconds late and more than once: it only
    // tells who holds the lease, it never holds a voter back.
    if (m.owner != self_ && m.duration_ms > 0 && (!heard_ || m.round >= heard_->round))
      heard_ = Grant{m.round, m.owner, clock_.Now() + std::chrono::milliseconds(m.duration_ms)};
    return;
  }
  // A restarted voter may have forgotten grants: it sits out one period.
  if (clock_.Now() < quarantine_until_) {
    ++counters_["quarantine_dropped"];
    return;
  }
  switch (m.kind) {
    case LeaseKind::kPrepare:
      return OnPrepare(m);
    case LeaseKind::kPropose:
      return OnPropose(m);
    case LeaseKind::kPromise:
      return OnPromise(m);
    case LeaseKind::kAccept:
      return OnAccept(m);
    case LeaseKind::kRelease:
      if (accepted_ && accepted_->round == m.round && accepted_->owner == m.from) accepted_.reset();
      if (known_ && known_->round == m.round) known_.reset();
      if (heard_ && heard_->round == m.round) heard_.reset();
      return;
    case LeaseKind::kNotice:
      return;
  }
}

bool Lease::Promise(uint64_t round, const std::string& by) {
  if (round < promised_ || (round == promised_ && by != promised_by_)) return false;
  if (round > promised_) {
    // Durable before the answer leaves: ballots must never go backwards.
    // What is stored is a bound reserved ahead, so that a synced write on
    // this thread happens once per kBallotReserve promises, not per renewal;
    // after a restart the bound counts as promised.
    if (round > saved_) {
      if (Status s = store_.Save(round + kBallotReserve); !s.ok()) {
        spdlog::error("cannot store the lease ballot: {}", s.ToString());
        return false;
      }
      saved_ = round + kBallotReserve;
    }
    promised_ = round;
  }
  promised_by_ = by;
  return true;
}

void Lease::OnPrepare(const LeaseMsg& m) {
  LeaseMsg r;
  r.kind = LeaseKind::kPromise;
  r.round = m.round;
  r.ok = Promise(m.round, m.from);
  r.promised = promised_;
  const Time now = clock_.Now();
  if (r.ok) {
    ++counters_["promises_given"];
    if (m.from != self_ && !IsHolder()) {
      // Another voter is trying: our own attempt would only duel with it.
      // (A holder keeps renewing: the other finds its grant and stands down.)
      if (attempt_ && attempt_->round < m.round) Abandon(Duration(0));
      next_try_ = std::max(next_try_, now + cfg_.attempt_timeout + Stagger());
    }
    if (accepted_ && accepted_->until > now) {
      r.owner = accepted_->owner;
      r.accepted_round = accepted_->round;
      r.duration_ms = std::max<uint64_t>(1, Millis(accepted_->until - now));
    }
  }
  Reply(m.from, r);
}

void Lease::OnPropose(const LeaseMsg& m) {
  LeaseMsg r;
  r.kind = LeaseKind::kAccept;
  r.round = m.round;
  r.ok = m.owner == m.from && Promise(m.round, m.from);
  r.promised = promised_;
  if (r.ok) {
    ++counters_["grants_given"];
    accepted_ = Grant{m.round, m.owner, clock_.Now() + std::chrono::milliseconds(m.duration_ms)};
  }
  Reply(m.from, r);
}

// Whether `m` answers the current phase of our attempt; counts a refusal.
bool Lease::Answers(const LeaseMsg& m, bool proposing) {
  if (!attempt_ || attempt_->proposing != proposing || m.round != attempt_->round || !IsVoter(m.from)) {
    ++counters_["stale_dropped"];
    return false;
  }
  if (m.ok) return true;
  attempt_->no.insert(m.from);
  if (attempt_->no.size() > voters_.size() - Majority()) {
    ++counters_["refused"];
    Abandon(cfg_.backoff + Stagger());
  }
  return false;
}

void Lease::OnPromise(const LeaseMsg& m) {
  if (!Answers(m, false)) return;
  if (!m.owner.empty() && m.owner != self_ && m.duration_ms > 0) {
    // Someone else's grant is still running on this voter: wait it out.
    const Time until = clock_.Now() + std::chrono::milliseconds(m.duration_ms);
    if (!known_ || m.accepted_round >= known_->round) known_ = Grant{m.accepted_round, m.owner, until};
    Abandon(until - clock_.Now() + Stagger());
    return;
  }
  attempt_->yes.insert(m.from);
  if (attempt_->yes.size() < Majority()) return;
  attempt_->proposing = true;
  attempt_->yes.clear();
  attempt_->no.clear();
  SendToVoters(PhaseMessage(), {});
}

void Lease::OnAccept(const LeaseMsg& m) {
  if (!Answers(m, true)) return;
  attempt_->yes.insert(m.from);
  if (attempt_->yes.size() < Majority()) return;
  const bool renewal = IsHolder();
  const Time until = attempt_->started + cfg_.period - cfg_.margin;
  if (until <= clock_.Now()) {
    // Too slow: the grant may already be over on the voters' clocks.
    Abandon(Duration(0));
    return;
  }
  holding_round_ = attempt_->round;
  hold_until_ = until;
  last_start_ = attempt_->started;
  ++counters_[renewal ? "renewed" : "acquired"];
  if (on_hold_) on_hold_(holding_round_, hold_until_ - clock_.Now());
  EndAttempt();
  CheckHolding();
  LeaseMsg n;
  n.kind = LeaseKind::kNotice;
  n.from = self_;
  n.round = holding_round_;
  n.owner = self_;
  n.duration_ms = Millis(hold_until_ - clock_.Now());
  net_.Broadcast(EncodeLease(n));
}

}  // namespace starling::node

// The member state machine: alive, suspect (with Lifeguard's suspicion
// timers and refutation), dead and left, by incarnation.
#include "memberlist_impl.h"

namespace starling::membership {

// ---- state transitions --------------------------------------------------
namespace {

// The record an alive message makes of its member.
MemberRecord RecordOf(const wire::Alive& a) {
  return MemberRecord{.name = a.name,
                      .addr = a.addr,
                      .status = MemberStatus::kAlive,
                      .protocol_min = a.protocol_min,
                      .protocol_max = a.protocol_max,
                      .protocol_cur = a.protocol_cur,
                      .incarnation = a.incarnation,
                      .tags = a.tags,
                      .release = a.release};
}

}  // namespace

void Memberlist::Impl::AliveNode(const wire::Alive& a) {
  if (leaving_ && a.name == cfg_.name) return;
  auto it = members_.find(a.name);
  Member* m = it == members_.end() ? nullptr : &it->second;
  if (m == nullptr) {
    if (!cfg_.protocol.Understands(a.protocol_cur) || a.protocol_cur < a.protocol_min ||
        a.protocol_cur > a.protocol_max || cfg_.protocol.speak < a.protocol_min ||
        cfg_.protocol.speak > a.protocol_max) {
      ++counters_["incompatible_members"];
      LogLimited("refusing member '{}' at {}: it understands protocol {} and speaks {}; this node understands {} "
                 "and speaks {}",
                 a.name, a.addr, RangeText(a.protocol_min, a.protocol_max), a.protocol_cur,
                 RangeText(cfg_.protocol.min, cfg_.protocol.max), cfg_.protocol.speak);
      return;
    }
    Member fresh;
    fresh.record = SharedRecord(RecordOf(a));
    fresh.status_since = clock_.Now();
    m = &AddMember(std::move(fresh));
    QueueBroadcast(a.name, a);
    Emit(EventType::kJoined, *m);
    return;
  }
  const bool is_self = m == self_;
  const bool addr_changed = m->view().addr != a.addr;
  if (addr_changed && !is_self) {
    if (!IsDown(m->view().status)) {
      ++counters_["name_conflicts"];
      LogLimited("member name '{}' claimed from {} but held by live member at {}; ignoring the claim", a.name,
                 a.addr, m->view().addr);
      return;
    }
    // A failed or departed member may come back from a new address.
  } else if (a.incarnation <= m->view().incarnation) {
    if (!is_self || a.incarnation < m->view().incarnation) return;
  }
  if (is_self) {
    if (addr_changed) {
      ++counters_["name_conflicts"];
      LogLimited("another node at {} claims our name '{}'; refuting", a.addr, a.name);
    } else if (a.incarnation == m->view().incarnation && a.tags == m->view().tags && a.release == m->view().release &&
               a.protocol_cur == m->view().protocol_cur) {
      return;  // our own news coming back to us
    }
    Refute(a.incarnation);
    return;
  }
  const MemberStatus before = m->view().status;
  const bool updated = m->view().tags != a.tags || m->view().release != a.release ||
                            m->view().protocol_cur != a.protocol_cur || m->view().protocol_min != a.protocol_min ||
                            m->view().protocol_max != a.protocol_max;
  m->suspicion.reset();
  m->record = SharedRecord(RecordOf(a));
  if (before != MemberStatus::kAlive) m->status_since = clock_.Now();
  m->reconnect.reset();
  QueueBroadcast(a.name, a);
  if (IsDown(before)) {
    Emit(EventType::kJoined, *m);
  } else if (before == MemberStatus::kSuspect) {
    Emit(EventType::kAlive, *m);
  }
  if (updated || addr_changed) Emit(EventType::kUpdated, *m);
}

void Memberlist::Impl::SuspectNode(const wire::Suspect& s) {
  auto it = members_.find(s.name);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (s.incarnation < m.view().incarnation) return;
  if (m.suspicion) {
    if (m.view().incarnation == s.incarnation && m.suspicion->Confirm(s.from)) QueueBroadcast(s.name, s);
    return;
  }
  if (&m == self_) {
    if (leaving_) return;
    spdlog::debug("refuting suspicion of ourselves from {}", s.from);
    ApplyHealthDelta(1);
    Refute(s.incarnation);
    return;
  }
  if (m.view().status != MemberStatus::kAlive) return;
  ++counters_["suspicions"];
  QueueBroadcast(s.name, s);
  m.Edit([&](MemberRecord& r) {
    r.incarnation = s.incarnation;
    r.status = MemberStatus::kSuspect;
  });
  m.status_since = clock_.Now();

  StartSuspicion(m, s.from);
  Emit(EventType::kSuspect, m);
}

void Memberlist::Impl::StartSuspicion(Member& m, const std::string& from) {
  const int n = static_cast<int>(NumAlive());
  int k = cfg_.lifeguard ? cfg_.timing.suspicion_mult - 2 : 0;
  if (n - 2 < k) k = 0;
  const double node_scale = std::max(1.0, std::log10(std::max(1.0, static_cast<double>(n))));
  const Duration min = std::chrono::duration_cast<Duration>(cfg_.timing.probe_interval * cfg_.timing.suspicion_mult *
                                                            node_scale);
  const Duration max = cfg_.lifeguard ? min * cfg_.timing.suspicion_max_timeout_mult : min;
  // The last-chance probe waits one probe timeout after the suspicion
  // expires: start it that much earlier, so that a member that is really
  // gone is declared failed no later than without it.
  const Duration early = cfg_.last_chance_probe ? std::min(cfg_.timing.probe_timeout, min / 2) : Duration(0);
  m.suspicion = std::make_unique<Suspicion>(clock_, from, k, min - early, max - early,
                                            [this, name = m.view().name, inc = m.view().incarnation] {
                                              if (cfg_.last_chance_probe) {
                                                LastChance(name, inc);
                                              } else {
                                                DeclareFailed(name, inc);
                                              }
                                            });
}

// Before declaring a suspect failed, ping it once more with the suspicion
// attached. A member that already refuted answers with its newer alive
// directly (see On(Suspect)): this catches the refutation rumour that ran
// out of retransmits before reaching us, at the cost of one probe timeout.
void Memberlist::Impl::LastChance(const std::string& name, uint64_t inc) {
  Member* m = SuspectAt(name, inc);
  if (m == nullptr) return;
  const uint32_t seq = ++seq_;
  auto acked = std::make_shared<bool>(false);
  acks_[seq] = AckHandler{[acked](const wire::Ack&) { *acked = true; }, {}};
  Send(m->view().addr, {wire::Ping{seq, name, cfg_.name, cfg_.advertise_addr}, wire::Suspect{name, inc, cfg_.name}});
  After(Scale(cfg_.timing.probe_timeout), [this, seq, name, inc, acked] {
    acks_.erase(seq);
    Member* still = SuspectAt(name, inc);
    if (still == nullptr) return;
    if (*acked) {
      ++counters_["suspicions_rescued"];
      StartSuspicion(*still, cfg_.name);
      return;
    }
    DeclareFailed(name, inc);
  });
}

// The member if it is still suspect at `inc`: a timer set for an older
// suspicion must not act on a newer state.
Member* Memberlist::Impl::SuspectAt(const std::string& name, uint64_t inc) {
  auto it = members_.find(name);
  if (it == members_.end() || it->second.view().status != MemberStatus::kSuspect ||
      it->second.view().incarnation != inc)
    return nullptr;
  return &it->second;
}

void Memberlist::Impl::DeclareFailed(const std::string& name, uint64_t inc) {
  if (SuspectAt(name, inc) == nullptr) return;
  spdlog::info("member {} suspected too long; marking failed", name);
  DeadNode(wire::Dead{name, inc, cfg_.name});
}

// A suspicion or death notice about us older than our incarnation: the
// sender missed our refutation, so tell it directly.
void Memberlist::Impl::AnswerStaleAccusation(const std::string& from, const std::string& name, uint64_t inc) {
  if (!cfg_.last_chance_probe || name != cfg_.name || leaving_ || inc >= self_->view().incarnation) return;
  ++counters_["stale_accusations_answered"];
  const auto& v = self_->view();
  SendRaw(from, {AliveOf(v)});
}

void Memberlist::Impl::DeadNode(const wire::Dead& d) {
  auto it = members_.find(d.name);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (d.incarnation < m.view().incarnation) return;
  if (&m == self_) {
    if (!leaving_) Refute(d.incarnation);
    return;
  }
  if (IsDown(m.view().status)) return;
  m.suspicion.reset();
  QueueBroadcast(d.name, d);
  m.Edit([&](MemberRecord& r) {
    r.incarnation = d.incarnation;
    r.status = MemberStatus::kFailed;
  });
  m.status_since = clock_.Now();
  m.reconnect = std::make_unique<Member::Reconnect>(
      Member::Reconnect{cfg_.reconnect_interval, clock_.Now() + cfg_.reconnect_interval});
  Emit(EventType::kFailed, m);
}

void Memberlist::Impl::LeaveNode(const wire::Leave& l) {
  auto it = members_.find(l.name);
  if (it == members_.end()) return;
  Member& m = it->second;
  if (l.incarnation < m.view().incarnation) return;
  if (&m == self_) {
    if (!leaving_) {
      spdlog::warn("{} says we left the cluster; refuting", l.from);
      Refute(l.incarnation);
    }
    return;
  }
  if (m.view().status == MemberStatus::kLeft && !l.prune) return;
  m.suspicion.reset();
  QueueBroadcast(l.name, l);
  const bool was_left = m.view().status == MemberStatus::kLeft;
  m.Edit([&](MemberRecord& r) {
    r.incarnation = l.incarnation;
    r.status = MemberStatus::kLeft;
  });
  m.reconnect.reset();
  if (!was_left) {
    m.status_since = clock_.Now();
    Emit(EventType::kLeft, m);
  }
  if (l.prune) {
    MemberRecord gone = m.view();
    RemoveMember(l.name);
    Emit(EventType::kReaped, gone);
  }
}

void Memberlist::Impl::Refute(uint64_t accused) {
  self_->Edit([&](MemberRecord& r) { r.incarnation = std::max(r.incarnation, accused) + 1; });
  ++counters_["refutations"];
  BroadcastSelf();
}

void Memberlist::Impl::BroadcastSelf() {
  const auto& v = self_->view();
  QueueBroadcast(cfg_.name, AliveOf(v));
}

}  // namespace starling::membership

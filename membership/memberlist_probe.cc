// Probing: the probe round, indirect probes through k peers, and the
// messages that answer them (see the design at the top of memberlist.cc).
#include "memberlist_impl.h"

namespace starling::membership {

Member* Memberlist::Impl::NextProbeTarget() {
  for (size_t tries = 0; tries < 2; ++tries) {
    while (probe_pos_ < probe_order_.size()) {
      auto it = members_.find(probe_order_[probe_pos_++]);
      if (it == members_.end()) continue;
      Member* m = &it->second;
      if (m == self_ || IsDown(m->view().status)) continue;
      return m;
    }
    probe_order_.clear();
    for (Member* m : nodes_) probe_order_.push_back(m->view().name);
    for (size_t i = probe_order_.size(); i > 1; --i) std::swap(probe_order_[i - 1], probe_order_[rng_.Uniform(i)]);
    probe_pos_ = 0;
  }
  return nullptr;
}

void Memberlist::Impl::ProbeTick() {
  probe_timer_ = 0;
  if (shutdown_ || leaving_) return;
  Duration period = Scale(cfg_.timing.probe_interval);
  if (Member* target = NextProbeTarget()) Probe(*target, period);
  ScheduleProbe(period);
}

void Memberlist::Impl::Probe(Member& target, Duration period, bool second) {
  auto probe = std::make_shared<ProbeState>();
  probe->second = second;
  probe->target = target.view().name;
  probe->incarnation = target.view().incarnation;
  probe->seq = ++seq_;
  probe->start = clock_.Now();
  ++counters_["probes"];

  std::vector<wire::Message> msgs;
  msgs.push_back(wire::Ping{probe->seq, target.view().name, cfg_.name, cfg_.advertise_addr});
  if (cfg_.lifeguard && target.view().status == MemberStatus::kSuspect) {
    msgs.push_back(wire::Suspect{target.view().name, target.view().incarnation, cfg_.name});
  }
  Send(target.view().addr, std::move(msgs));

  acks_[probe->seq] = AckHandler{
      [this, probe](const wire::Ack& ack) {
        probe->acked = true;
        ApplyHealthDelta(-1);
        auto rtt = clock_.Now() - probe->start;
        // Only a direct ack carries the target's coordinate: a relayed one
        // has a round trip through the relay and none.
        if (ack.coordinate) {
          auto it = members_.find(probe->target);
          if (it != members_.end() && &it->second != self_) {
            auto& measured = it->second.measured;
            if (!measured) measured = std::make_unique<Member::Measured>();
            if (coords_.Update(measured->rtt, *ack.coordinate, rtt)) measured->coordinate.Set(*ack.coordinate);
          }
        }
        if (ack.bad_coordinate) ++counters_["bad_coordinates"];
        counters_["probe_rtt_us_sum"] += static_cast<uint64_t>(rtt.count());
        ++counters_["probe_rtt_count"];
        // Per bucket (not cumulative): the smallest bound the round trip fits.
        for (uint64_t le : kProbeRttBucketsUs) {
          if (static_cast<uint64_t>(rtt.count()) <= le) {
            ++counters_["probe_rtt_bucket." + std::to_string(le)];
            break;
          }
        }
      },
      [probe] { ++probe->nacks; }};

  After(Scale(cfg_.timing.probe_timeout), [this, probe] {
    if (!probe->acked) IndirectProbe(*probe);
  });
  After(period, [this, probe] { FinishProbe(*probe); });
}

void Memberlist::Impl::IndirectProbe(ProbeState& probe) {
  auto it = members_.find(probe.target);
  if (it == members_.end()) return;
  const Member& target = it->second;
  auto relays = RandomNodes(cfg_.timing.indirect_checks, [&](const Member& m) {
    return &m != self_ && &m != &target && m.view().status == MemberStatus::kAlive;
  });
  probe.expected_nacks = cfg_.lifeguard ? static_cast<int>(relays.size()) : 0;
  for (Member* relay : relays) {
    ++counters_["indirect_probes"];
    Send(relay->view().addr, {wire::IndirectPing{probe.seq, target.view().name, target.view().addr, cfg_.lifeguard,
                                               cfg_.name, cfg_.advertise_addr}});
  }
}

void Memberlist::Impl::FinishProbe(ProbeState& probe) {
  acks_.erase(probe.seq);
  if (probe.acked || shutdown_ || leaving_) return;
  // Lifeguard: missing nacks mean our own links (or we) are the problem.
  if (probe.expected_nacks > 0) {
    if (probe.nacks < probe.expected_nacks) ApplyHealthDelta(probe.expected_nacks - probe.nacks);
  } else {
    ApplyHealthDelta(1);
  }
  ++counters_["probe_failures"];
  spdlog::debug("probe of {} failed ({} of {} nacks)", probe.target, probe.nacks, probe.expected_nacks);
  // An alive member is probed once more, through other relays, before it
  // is suspected. Under datagram loss a probe and all its relays fail now
  // and then for a member that is fine, and every suspicion is news for the
  // whole cluster (suspect, confirmations, refutation): that gossip grew
  // with the cluster's size. Two failed rounds in a row are that much
  // rarer, for one probe period more of detection time.
  auto it = members_.find(probe.target);
  if (!probe.second && it != members_.end() && it->second.view().status == MemberStatus::kAlive &&
      it->second.view().incarnation == probe.incarnation) {
    ++counters_["probes_repeated"];
    Probe(it->second, Scale(cfg_.timing.probe_interval), /*second=*/true);
    return;
  }
  SuspectNode(wire::Suspect{probe.target, probe.incarnation, cfg_.name});
}

// ---- inbound messages ---------------------------------------------------
void Memberlist::Impl::On(const std::string& from, const wire::Ping& p) {
  if (!p.target.empty() && p.target != cfg_.name) {
    ++counters_["misdirected_pings"];
    return;
  }
  Send(ReplyAddress(from, p.source_addr), {wire::Ack{p.seq, coords_.Self()}});
}

// A probe is answered at the member address its sender names inside it (sealed
// with the rest when the cluster is keyed), not at whatever source the
// datagram claims: a copy resent from a spoofed source makes no node send
// anything there. An older sender that names no address is answered at the
// source.
const std::string& Memberlist::Impl::ReplyAddress(const std::string& from, const std::string& named) {
  if (named.empty()) return from;
  if (named != from) ++counters_["probes_answered_at_named_address"];
  return named;
}

void Memberlist::Impl::On(const std::string& source, const wire::IndirectPing& ip) {
  const std::string from = ReplyAddress(source, ip.source_addr);
  uint32_t seq = ++seq_;
  auto nack_timer = std::make_shared<Clock::TimerId>(0);
  acks_[seq] = AckHandler{[this, from, orig = ip.seq, nack_timer](const wire::Ack&) {
                            CancelTimer(*nack_timer);
                            Send(from, {wire::Ack{orig}});
                          },
                          {}};
  Send(ip.target_addr, {wire::Ping{seq, ip.target, cfg_.name, cfg_.advertise_addr}});
  // The asker sent this one probe timeout into its probe and decides at
  // the end of its probe interval: a nack after a whole probe timeout
  // would arrive just too late to count, and the asker would blame itself
  // (Lifeguard) for a member that is really gone.
  *nack_timer = After(cfg_.timing.probe_timeout * 4 / 5, [this, seq, from, orig = ip.seq, want = ip.want_nack] {
    acks_.erase(seq);
    if (want) Send(from, {wire::Nack{orig}});
  });
}

void Memberlist::Impl::On(const std::string&, const wire::Ack& a) {
  auto it = acks_.find(a.seq);
  if (it == acks_.end()) return;  // late or unknown: harmless
  auto fn = std::move(it->second.on_ack);
  acks_.erase(it);
  if (fn) fn(a);
}

void Memberlist::Impl::On(const std::string&, const wire::Nack& n) {
  auto it = acks_.find(n.seq);
  if (it != acks_.end() && it->second.on_nack) it->second.on_nack();
}

void Memberlist::Impl::On(const std::string& from, const wire::Suspect& s) {
  AnswerStaleAccusation(from, s.name, s.incarnation);
  SuspectNode(s);
}

void Memberlist::Impl::On(const std::string& from, const wire::Dead& d) {
  AnswerStaleAccusation(from, d.name, d.incarnation);
  DeadNode(d);
}

}  // namespace starling::membership

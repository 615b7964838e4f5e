// Dissemination (piggybacked broadcasts, gossip rounds), push-pull
// anti-entropy and joins, reconnects and reaping, and the member table.
#include "memberlist_impl.h"

namespace starling::membership {

void Memberlist::Impl::Send(const std::string& addr, std::vector<wire::Message> msgs) {
  size_t used = Overhead();
  for (const auto& m : msgs) used += wire::EstimateSize(m);
  if (used < cfg_.max_packet_bytes) {
    for (auto& b : broadcasts_.Take(cfg_.max_packet_bytes - used, nodes_.size())) msgs.push_back(std::move(b));
  }
  SendRaw(addr, msgs);
}

void Memberlist::Impl::SendRaw(const std::string& addr, const std::vector<wire::Message>& msgs) {
  for (const auto& m : msgs) {
    ++*sent_[m.index()];
    if (const auto* user = std::get_if<wire::User>(&m)) {
      UserTally& t = UserSent(user->data);
      ++*t.messages;
      *t.bytes += wire::EstimateSize(m);
    }
  }
  Bytes bytes = Seal(wire::EncodePacket(cfg_.cluster, msgs, cfg_.protocol.speak));
  *bytes_sent_ += bytes.size();
  transport_.SendPacket(addr, std::move(bytes));
}

void Memberlist::Impl::SendToAllLive(const wire::Message& msg) {
  for (Member* m : nodes_)
    if (m != self_ && !IsDown(m->view().status)) SendRaw(m->view().addr, {msg});
}

void Memberlist::Impl::GossipTick() {
  gossip_timer_ = 0;
  if (shutdown_) return;
  const Time now = clock_.Now();
  auto targets = RandomNodes(cfg_.timing.gossip_nodes, [&](const Member& m) {
    if (&m == self_) return false;
    if (!IsDown(m.view().status)) return true;
    return now - m.status_since < cfg_.timing.gossip_to_the_dead;
  });
  const size_t budget = cfg_.max_packet_bytes - Overhead();
  // A backlog (a join wave, a burst of changes) drains in fewer ticks with
  // more than one packet per target: every broadcast is still sent its
  // retransmit limit of times in all, only sooner. Another round only
  // while the last one filled every packet.
  for (int round = 0; round < std::max(1, cfg_.max_gossip_packets); ++round) {
    bool backlog = true;
    for (Member* t : targets) {
      auto msgs = broadcasts_.Take(budget, nodes_.size());
      if (msgs.empty()) {
        backlog = false;
        break;
      }
      size_t used = 0;
      for (const auto& m : msgs) used += wire::EstimateSize(m);
      if (used + kFullPacketSlack < budget) backlog = false;
      SendRaw(t->view().addr, msgs);
    }
    if (!backlog) break;
  }
  if (leaving_ && !left_ && (!broadcasts_.Contains(cfg_.name) || now >= leave_deadline_)) {
    FinishLeave();
    return;
  }
  gossip_timer_ = After(cfg_.timing.gossip_interval, [this] { GossipTick(); });
}

void Memberlist::Impl::FinishLeave() {
  if (left_) return;
  left_ = true;
  spdlog::info("left the cluster");
  StopTimers();
  auto waiters = std::move(leave_waiters_);
  for (auto& w : waiters)
    if (w) w();
}

// ---- anti-entropy -------------------------------------------------------
wire::PushPull Memberlist::Impl::LocalState(bool join) const {
  wire::PushPull pp;
  pp.join = join;
  pp.from = cfg_.name;
  pp.members.reserve(members_.size());
  for (const auto& [_, m] : members_) {
    const auto& v = m.view();
    pp.members.push_back(wire::MemberState{v.name, v.addr, v.incarnation, ToWire(v.status), v.tags, v.protocol_min,
                                           v.protocol_max, v.protocol_cur, v.release});
  }
  return pp;
}

uint64_t Memberlist::Impl::TableDigest() const {
  // FNV-1a over (name, incarnation, status) in name order.
  uint64_t h = 1469598103934665603ULL;
  auto mix = [&h](const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    for (size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ULL;
  };
  for (const auto& [name, m] : members_) {
    mix(name.data(), name.size() + 1);  // with its terminator, so names do not run together
    const uint64_t inc = m.view().incarnation;
    mix(&inc, sizeof inc);
    const auto status = static_cast<uint8_t>(ToWire(m.view().status));
    mix(&status, 1);
  }
  return h;
}

void Memberlist::Impl::DigestPushPull(const std::string& addr) {
  ++counters_["push_pulls_sent"];
  wire::PushPull ask;
  ask.from = cfg_.name;
  ask.digest = TableDigest();
  ask.digest_only = true;
  Exchange(addr, wire::StreamRequest{std::move(ask)}, cfg_.stream_timeout, [this, addr](Result<wire::StreamReply> r) {
    if (!r.ok()) return spdlog::debug("push-pull with {} failed: {}", addr, r.status().ToString());
    auto* pp = std::get_if<wire::PushPull>(&r->body);
    if (pp == nullptr || shutdown_ || left_) return;
    if (pp->same) {
      ++counters_["push_pulls_same"];
      return;
    }
    MergeRemote(*pp);
    // The responder has not heard our table yet.
    PushPullWith(addr, false, [addr](Status s) {
      if (!s.ok()) spdlog::debug("push-pull with {} failed: {}", addr, s.ToString());
    });
  });
}

std::string Memberlist::Impl::JoinRefusal(const wire::PushPull& pp) const {
  for (const auto& s : pp.members) {
    if (s.name != pp.from) continue;
    auto it = members_.find(s.name);
    if (it == members_.end()) return "";
    const auto& v = it->second.view();
    if (v.addr != s.addr && (&it->second == self_ || !IsDown(v.status))) {
      return "name '" + s.name + "' is already in use by a live member at " + v.addr +
             "; start this node with another --name or stop that member first";
    }
    return "";
  }
  return "";
}

// memberlist's rule: every member's spoken version must lie in every
// member's range. Checked over the alive members of both sides, so a node
// that ran alone or a cluster mid-upgrade is judged by what runs now.
std::string Memberlist::Impl::ProtocolRefusal(const wire::PushPull& pp, bool we_join) const {
  struct Side {
    uint16_t min = 0, max = UINT16_MAX;
    std::map<uint16_t, std::vector<std::string>> speakers;  // version -> members
    void Add(const std::string& name, uint16_t lo, uint16_t hi, uint16_t cur) {
      min = std::max(min, lo);
      max = std::min(max, hi);
      speakers[cur].push_back(name);
    }
    bool Accepts(const Side& other) const {
      for (const auto& [v, _] : other.speakers)
        if (v < min || v > max) return false;
      return true;
    }
    std::string Describe(bool names) const {
      std::string out = "understands " + (min <= max ? RangeText(min, max) : std::string("no common version")) +
                        " and speaks ";
      bool first = true;
      for (const auto& [v, who] : speakers) {
        out += (first ? "" : ", ") + std::to_string(v);
        first = false;
        if (!names) continue;
        out += " (";
        for (size_t i = 0; i < who.size() && i < 5; ++i) out += (i ? " " : "") + who[i];
        if (who.size() > 5) out += " and " + std::to_string(who.size() - 5) + " more";
        out += ")";
      }
      return out;
    }
  };
  // `joiner`: the joining node alone (its own entry); `cluster`: the other
  // side's alive members.
  Side joiner, cluster;
  const std::string joiner_name = we_join ? cfg_.name : pp.from;
  if (we_join) {
    joiner.Add(cfg_.name, cfg_.protocol.min, cfg_.protocol.max, cfg_.protocol.speak);
    for (const auto& s : pp.members)
      if (s.status == wire::StateStatus::kAlive && s.name != cfg_.name)
        cluster.Add(s.name, s.protocol_min, s.protocol_max, s.protocol_cur);
  } else {
    for (const auto& s : pp.members)
      if (s.name == pp.from) joiner.Add(s.name, s.protocol_min, s.protocol_max, s.protocol_cur);
    if (joiner.speakers.empty()) return "";
    for (const auto& [name, m] : members_)
      if (m.view().status == MemberStatus::kAlive && name != pp.from)
        cluster.Add(name, m.view().protocol_min, m.view().protocol_max, m.view().protocol_cur);
  }
  if (cluster.speakers.empty() || (joiner.Accepts(cluster) && cluster.Accepts(joiner))) return "";
  return "protocol versions do not overlap: " + joiner_name + " " + joiner.Describe(false) + "; the cluster " +
         cluster.Describe(true) + ". Start " + joiner_name + " with --protocol in the cluster's range, or run a " +
         "release that understands what the cluster speaks";
}

void Memberlist::Impl::MergeRemote(const wire::PushPull& pp) {
  for (const auto& s : pp.members) {
    switch (s.status) {
      case wire::StateStatus::kAlive:
        AliveNode(wire::Alive{s.name, s.addr, s.incarnation, s.tags, s.protocol_min, s.protocol_max, s.protocol_cur,
                              s.release});
        break;
      case wire::StateStatus::kLeft:
        LeaveNode(wire::Leave{s.name, s.incarnation, pp.from, false});
        break;
      case wire::StateStatus::kSuspect:
      case wire::StateStatus::kDead:
        // Another node's verdict is only a suspicion here: the member gets
        // its chance to refute.
        SuspectNode(wire::Suspect{s.name, s.incarnation, pp.from});
        break;
    }
  }
}

// Sends one stream request and decodes the reply; a refusal or a bad reply
// arrives as a failed status.
void Memberlist::Impl::Exchange(const std::string& addr, wire::StreamRequest request, Duration timeout,
                std::function<void(Result<wire::StreamReply>)> done) {
  Bytes req = Seal(wire::EncodeStreamRequest(cfg_.cluster, request, cfg_.protocol.speak));
  counters_["stream_bytes_sent"] += req.size();
  std::weak_ptr<bool> alive = token_;
  transport_.SendStream(addr, std::move(req), timeout, [this, alive, addr, done = std::move(done)](Result<Bytes> r) {
    if (alive.expired()) return;
    if (!r.ok()) return done(r.status());
    counters_["stream_bytes_received"] += r->size();
    // A key refusal comes in the clear (the responder could not, or would
    // not, seal it for us); it may end this exchange but nothing more.
    const bool clear_reply = keyed() && !Keyring::IsSealed(*r);
    Bytes storage;
    ByteView opened = *r;
    if (!clear_reply && Unseal(addr, *r, storage, opened) != Opened::kOk) {
      return done(Status::Unavailable(addr + " answered in a way this node's keyring cannot open"));
    }
    auto decoded = wire::DecodeStreamReply(opened, cfg_.cluster, cfg_.max_stream_bytes, cfg_.protocol);
    if (auto* bad = std::get_if<wire::BadInput>(&decoded)) {
      Bad(*bad, addr);
      return done(Status::Corruption(addr + " answered with a bad reply: " + bad->detail));
    }
    auto& reply = std::get<wire::StreamReply>(decoded);
    auto* why = std::get_if<wire::Refused>(&reply.body);
    if (why != nullptr && why->key) {
      ++counters_["key_refusals_received"];
      LogLimited("{} refused our request: {}", addr, why->why);
      return done(Status::Unavailable(addr + " refused us: " + why->why));
    }
    if (clear_reply) {
      Bad(wire::BadInput{"unencrypted", "a clear reply, but this cluster is encrypted"}, addr);
      return done(Status::Unavailable(addr + " answered in the clear"));
    }
    if (why != nullptr) return done(Status::Conflict(addr + " refused us: " + why->why));
    done(std::move(reply));
  });
}

void Memberlist::Impl::PushPullWith(const std::string& addr, bool join, std::function<void(Status)> done) {
  ++counters_["push_pulls_sent"];
  Exchange(addr, wire::StreamRequest{LocalState(join)}, cfg_.stream_timeout,
           [this, addr, join, done = std::move(done)](Result<wire::StreamReply> r) {
             if (!r.ok()) return done(r.status());
             auto* pp = std::get_if<wire::PushPull>(&r->body);
             if (pp == nullptr) return done(Status::Corruption(addr + " answered a push-pull with something else"));
             if (shutdown_ || left_) return done(Status::Unavailable("shut down"));
             if (join) {
               // The responder may be of a release that does not check; we do.
               if (auto refusal = ProtocolRefusal(*pp, /*we_join=*/true); !refusal.empty()) {
                 ++counters_["incompatible_members"];
                 return done(Status::Conflict(addr + ": " + refusal));
               }
             }
             MergeRemote(*pp);
             done(Status::Ok());
           });
}

void Memberlist::Impl::PushPullTick() {
  push_pull_timer_ = 0;
  if (shutdown_ || leaving_) return;
  auto peers = RandomNodes(1, [&](const Member& m) { return &m != self_ && m.view().status == MemberStatus::kAlive; });
  if (!peers.empty()) DigestPushPull(peers[0]->view().addr);
  // +-25 %: nodes started together would otherwise push-pull in bursts
  // one (scaled) interval apart for ever; the mean rate stays the same.
  const Duration interval = PushPullInterval();
  push_pull_timer_ = After(interval * 3 / 4 + Duration(rng_.Uniform(interval.count() / 2 + 1)),
                           [this] { PushPullTick(); });
}

void Memberlist::Impl::ReconnectTick() {
  reconnect_timer_ = 0;
  if (shutdown_ || leaving_) return;
  const Time now = clock_.Now();
  std::vector<Member*> due;
  for (Member* m : nodes_)
    if (m->view().status == MemberStatus::kFailed && m->reconnect && m->reconnect->next <= now) due.push_back(m);
  if (!due.empty()) {
    Member* m = due[rng_.Uniform(due.size())];
    std::string name = m->view().name;
    ++counters_["reconnect_attempts"];
    Member::Reconnect& r = *m->reconnect;
    r.backoff = std::min(std::max(r.backoff * 2, cfg_.reconnect_interval), cfg_.reconnect_max_backoff);
    r.next = now + r.backoff;
    PushPullWith(m->view().addr, false, [name](Status s) {
      if (!s.ok()) spdlog::debug("reconnect to {} failed: {}", name, s.ToString());
    });
  }
  // Check often enough that a due member waits at most a fraction of its backoff.
  reconnect_timer_ = After(std::max(cfg_.reconnect_interval / 4, Duration(std::chrono::milliseconds(250))),
                           [this] { ReconnectTick(); });
}

void Memberlist::Impl::ReapTick() {
  reap_timer_ = 0;
  if (shutdown_) return;
  const Time now = clock_.Now();
  std::vector<std::string> gone;
  for (Member* m : nodes_)
    if (m != self_ && IsDown(m->view().status) && now - m->status_since >= cfg_.reap_timeout)
      gone.push_back(m->view().name);
  for (const auto& name : gone) {
    MemberRecord v = members_.find(name)->second.view();
    RemoveMember(name);
    spdlog::info("reaped member {} ({} for longer than the reap timeout)", name, StatusName(v.status));
    Emit(EventType::kReaped, v);
  }
  reap_timer_ = After(ReapCheckInterval(), [this] { ReapTick(); });
}

// ---- bookkeeping --------------------------------------------------------
size_t RecordHash::operator()(const MemberRecord& r) const {
  // The strings and tags are interned: their identities stand for them.
  size_t h = std::hash<const void*>{}(r.name.identity());
  auto mix = [&h](size_t v) { h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
  mix(std::hash<const void*>{}(r.addr.identity()));
  mix(std::hash<const void*>{}(r.tags.identity()));
  mix(std::hash<const void*>{}(r.release.identity()));
  mix(static_cast<size_t>(r.incarnation));
  mix(static_cast<size_t>(r.status) | size_t{r.protocol_min} << 8 | size_t{r.protocol_max} << 24 |
      size_t{r.protocol_cur} << 40);
  return h;
}

Member& Memberlist::Impl::AddMember(Member m) {
  m.index = static_cast<uint32_t>(nodes_.size());
  Atom name = m.view().name;
  Member& held = members_.emplace(std::move(name), std::move(m)).first->second;
  nodes_.push_back(&held);
  return held;
}

void Memberlist::Impl::RemoveMember(const std::string& name) {
  auto it = members_.find(name);
  if (it == members_.end() || &it->second == self_) return;
  size_t idx = it->second.index;
  nodes_[idx] = nodes_.back();
  nodes_[idx]->index = idx;
  nodes_.pop_back();
  members_.erase(it);
}

// News of a member joining or leaving arrives by rumour, and a rumour that
// runs out of retransmits misses about exp(-limit) of the members; memberlist
// leaves them to the next periodic push-pull (the long tail of a join wave).
// After such news, each node does one extra push-pull a little later, once
// the wave has had time to settle, at most once per push_pull_interval / 4.
void Memberlist::Impl::ScheduleChurnPushPull() {
  if (churn_timer_ != 0 || shutdown_ || leaving_ || !started_) return;
  const Time now = clock_.Now();
  const Duration settle = cfg_.timing.gossip_interval * 10;
  Time at = now + settle + Duration(rng_.Uniform(static_cast<uint64_t>(settle.count())));
  at = std::max(at, last_churn_push_pull_ + cfg_.timing.push_pull_interval / 4);
  churn_timer_ = After(at - now, [this] {
    churn_timer_ = 0;
    if (shutdown_ || leaving_) return;
    last_churn_push_pull_ = clock_.Now();
    auto peers = RandomNodes(1, [&](const Member& m) { return &m != self_ && m.view().status == MemberStatus::kAlive; });
    if (peers.empty()) return;
    ++counters_["churn_push_pulls"];
    PushPullWith(peers[0]->view().addr, false, [](Status) {});
  });
}

void Memberlist::Impl::Emit(EventType type, const MemberRecord& v) {
  ++epoch_;
  if (v.name != cfg_.name && (type == EventType::kJoined || type == EventType::kLeft)) ScheduleChurnPushPull();
  if (on_event_) on_event_(Event{type, MemberView(v)});
}

}  // namespace starling::membership

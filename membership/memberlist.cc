// SWIM + Lifeguard membership, after HashiCorp memberlist.
//
// Failure detection. Every probe period (probe_interval scaled by the local
// health multiplier) this node pings the next member of a shuffled round
// robin. Without an ack within probe_timeout (also scaled) it asks
// indirect_checks random members to ping the target for it (ping-req). If
// nothing acks by the end of the period the target becomes suspect. A suspect
// is declared failed when its suspicion timer runs out; the member itself
// refutes by raising its incarnation, which every receiver prefers.
//
// Lifeguard (all of it off with Config::lifeguard = false):
//  * local health: a score in [0, awareness_max_multiplier) raised by failed
//    probes that got fewer nacks than expected and by having to refute our
//    own suspicion, lowered by each successful probe. Probe period and
//    timeout are multiplied by (score + 1), so a node that is itself slow
//    stops accusing healthy peers.
//  * nacks: relays answer a ping-req whose target stayed silent, so a prober
//    can tell "my target is silent" from "my own links are broken".
//  * suspicion timeout starts at suspicion_max_timeout_mult * min and falls
//    toward min = suspicion_mult * max(1, log10(n)) * probe_interval as
//    k = suspicion_mult - 2 independent members confirm (see suspicion.h).
//  * buddy system: a ping to a suspect carries the suspicion, so the suspect
//    can refute at once.
//
// Last-chance probe (Starling's own, Config::last_chance_probe): a refutation
// is a rumour, and a rumour that runs out of retransmits misses about
// exp(-limit) of the members. A suspecter it missed would declare a healthy
// member failed. So when a suspicion expires we ping the suspect once more,
// carrying the suspicion; a member that already refuted answers a stale
// accusation with its newer alive directly, and one that acks gets a fresh
// suspicion period. Only silence for one more probe timeout means failed.
// The suspicion timer runs one probe timeout short to pay for that ping, so
// detection is no slower than without it.
//
// Dissemination. Every state change we accept is queued as a broadcast and
// piggybacked on pings, acks and periodic gossip (every gossip_interval to
// gossip_nodes random members, including recently failed ones) until sent
// retransmit_mult * ceil(log10(n + 1)) times. Every push_pull_interval
// (scaled up past 32 members as memberlist does) the full state is exchanged
// with one random member over the stream transport; that is also how a node
// joins. Failed members are retried with a push-pull (reconnect) with
// exponential backoff, which is how a healed partition merges back: each side
// learns the other thinks it dead, refutes, and the next exchange carries the
// higher incarnations across.
//
// Precedence of news about one member (higher incarnation always wins):
//   alive(i) beats suspect/failed(j) only if i > j; suspect(i) beats alive(j)
//   if i >= j; failed(i) beats alive/suspect(j) if i >= j; left(i) beats all
//   if i >= j. Only the member itself raises its incarnation.
#include "memberlist_impl.h"

namespace starling::membership {

// ---- lifecycle ----------------------------------------------------------
void Memberlist::Impl::Start() {
  if (started_) return;
  started_ = true;
  Emit(EventType::kJoined, *self_);
  // Spread the first probe of each node over one interval so that a
  // cluster started at once does not probe in lockstep.
  ScheduleProbe(Duration(rng_.Uniform(cfg_.timing.probe_interval.count()) + 1));
  gossip_timer_ = After(cfg_.timing.gossip_interval, [this] { GossipTick(); });
  push_pull_timer_ = After(PushPullInterval() + Duration(rng_.Uniform(cfg_.timing.push_pull_interval.count())),
                           [this] { PushPullTick(); });
  reap_timer_ = After(ReapCheckInterval(), [this] { ReapTick(); });
  reconnect_timer_ = After(cfg_.reconnect_interval, [this] { ReconnectTick(); });
}

void Memberlist::Impl::Shutdown() {
  shutdown_ = true;
  StopTimers();
  acks_.clear();
  for (auto& [_, m] : members_) m.suspicion.reset();
}

void Memberlist::Impl::Join(std::vector<std::string> seeds, JoinDone done) {
  if (seeds.empty()) {
    Post([done] { done(Status::InvalidArgument("no seed addresses to join")); });
    return;
  }
  struct State {
    size_t remaining;
    int ok = 0;
    Status conflict;
    std::string last_error;
    JoinDone done;
  };
  auto st = std::make_shared<State>(State{seeds.size(), 0, {}, {}, std::move(done)});
  for (const auto& seed : seeds) {
    PushPullWith(seed, /*join=*/true, [this, st, seed](Status s) {
      if (s.ok()) {
        ++st->ok;
      } else if (s.code() == Status::Code::kConflict) {
        st->conflict = s;
      } else {
        // Most failures already name the seed.
        st->last_error = s.message().rfind(seed, 0) == 0 ? s.message() : seed + ": " + s.message();
      }
      if (--st->remaining > 0) return;
      if (!st->conflict.ok()) {
        st->done(st->conflict);
      } else if (st->ok > 0) {
        spdlog::info("joined the cluster through {} seed(s); {} members known", st->ok, members_.size());
        st->done(st->ok);
      } else {
        st->done(Status::Unavailable("no seed answered (" + st->last_error + ")"));
      }
    });
  }
}

void Memberlist::Impl::JoinWithRetry(std::vector<std::string> seeds, int max_attempts, int attempt, JoinDone done) {
  Join(seeds, [this, seeds, max_attempts, attempt, done](Result<int> r) {
    if (r.ok() || r.status().code() != Status::Code::kUnavailable || shutdown_ ||
        (max_attempts > 0 && attempt + 1 >= max_attempts)) {
      done(r);
      return;
    }
    spdlog::warn("join attempt {} failed: {}; retrying in {} ms", attempt + 1, r.status().message(),
                 cfg_.join_retry_interval.count() / 1000);
    After(cfg_.join_retry_interval,
          [this, seeds, max_attempts, attempt, done] { JoinWithRetry(seeds, max_attempts, attempt + 1, done); });
  });
}

void Memberlist::Impl::AddKnownMembers(const std::vector<MemberView>& known) {
  for (const auto& k : known) {
    if (k.name == cfg_.name || members_.count(k.name)) continue;
    Member m;
    m.Edit([&](MemberRecord& r) {
      r = k;
      r.status = MemberStatus::kFailed;
    });
    m.status_since = clock_.Now();
    m.reconnect = std::make_unique<Member::Reconnect>(Member::Reconnect{cfg_.reconnect_interval, clock_.Now()});
    AddMember(std::move(m));
  }
}

void Memberlist::Impl::Leave(std::function<void()> done) {
  if (leaving_) {
    leave_waiters_.push_back(std::move(done));
    return;
  }
  leaving_ = true;
  leave_waiters_.push_back(std::move(done));
  self_->Edit([](MemberRecord& r) { r.status = MemberStatus::kLeft; });
  self_->status_since = clock_.Now();
  const wire::Leave leave{cfg_.name, self_->view().incarnation, cfg_.name, false};
  QueueBroadcast(cfg_.name, leave);
  // Tell every live member directly as well: a leave that ran out of
  // retransmits before reaching someone would make it see us failed.
  SendToAllLive(leave);
  leave_deadline_ = clock_.Now() + cfg_.leave_propagate_wait;
  spdlog::info("leaving the cluster");
  if (NumAlive() <= 1) {
    Post([this] { FinishLeave(); });
    return;
  }
  CancelTimer(gossip_timer_);
  GossipTick();
}

Status Memberlist::Impl::ForceLeave(const std::string& name, bool prune) {
  auto it = members_.find(name);
  if (it == members_.end()) return Status::NotFound("no member named '" + name + "'");
  Member& m = it->second;
  if (&m == self_) return Status::InvalidArgument("'" + name + "' is this node; use leave instead");
  if (m.view().status == MemberStatus::kAlive)
    return Status::Conflict("member '" + name + "' is alive; force-leave only removes failed members");
  const wire::Leave leave{name, m.view().incarnation, cfg_.name, prune};
  LeaveNode(leave);
  SendToAllLive(leave);
  return Status::Ok();
}

void Memberlist::Impl::SetTags(Tags tags) {
  self_->Edit([&](MemberRecord& r) {
    r.tags = std::move(tags);
    ++r.incarnation;
  });
  BroadcastSelf();
  Emit(EventType::kUpdated, *self_);
}

// ---- inbound ------------------------------------------------------------
void Memberlist::Impl::HandlePacket(const std::string& from, ByteView bytes) {
  if (shutdown_ || left_) return;
  *bytes_received_ += bytes.size();
  Bytes storage;
  ByteView opened;
  if (Unseal(from, bytes, storage, opened) != Opened::kOk) return;
  auto decoded = wire::DecodePacket(opened, cfg_.cluster, cfg_.protocol);
  if (auto* bad = std::get_if<wire::BadInput>(&decoded)) {
    Bad(*bad, from);
    return;
  }
  for (auto& msg : std::get<std::vector<wire::Message>>(decoded)) {
    ++*received_[msg.index()];
    std::visit([&](auto& m) { On(from, m); }, msg);
    if (shutdown_ || left_) return;
  }
}

void Memberlist::Impl::HandleStream(const std::string& from, ByteView bytes, StreamReply reply) {
  if (shutdown_ || left_) return reply({});
  counters_["stream_bytes_received"] += bytes.size();
  Bytes storage;
  ByteView opened;
  switch (Unseal(from, bytes, storage, opened)) {
    case Opened::kOk: break;
    case Opened::kClear:
      return reply(KeyRefusal("this cluster is encrypted and the request was not: the node needs the cluster key "
                              "(--encrypt KEY or a keyring in its data dir)"));
    case Opened::kAuth:
      return reply(KeyRefusal("no key in this node's keyring opens the request: the requester's key is not the "
                              "cluster's"));
    case Opened::kSealed:
      return reply(KeyRefusal("this node runs without a key, and the request was encrypted"));
    case Opened::kReplayed: return reply({});
    case Opened::kOutOfWindow:
      return reply(KeyRefusal("the request was sealed more than " +
                              std::to_string(replay_.window().count() / 1000000) +
                              " s from this node's clock: the two clocks differ (check NTP)"));
  }
  auto decoded = wire::DecodeStreamRequest(opened, cfg_.cluster, cfg_.max_stream_bytes, cfg_.protocol);
  if (auto* bad = std::get_if<wire::BadInput>(&decoded)) {
    Bad(*bad, from);
    if (bad->reason != "version") return reply({});
    // Say why, so a node started with a protocol we do not speak learns it
    // from its first exchange instead of from a silent timeout.
    ++counters_["incompatible_members"];
    spdlog::warn("refused a request from {}: it speaks protocol {}; this node ({}) understands protocol {}", from,
                 bad->version, cfg_.name, RangeText(cfg_.protocol.min, cfg_.protocol.max));
    return reply(Seal(Encode(wire::StreamReply{wire::Refused{
        "the request speaks protocol " + std::to_string(bad->version) + "; " + cfg_.name + " understands protocol " +
        RangeText(cfg_.protocol.min, cfg_.protocol.max) + " and speaks " + std::to_string(cfg_.protocol.speak) +
        ": start the node with --protocol in that range, or run a release that understands " +
        std::to_string(bad->version) + " on " + cfg_.name}})));
  }
  auto& req = std::get<wire::StreamRequest>(decoded);
  if (auto* user = std::get_if<wire::User>(&req.body)) {
    if (!user_stream_) return reply({});
    std::weak_ptr<bool> alive = token_;
    UserTally* tally = &UserSent(user->data);
    user_stream_(from, user->data, [this, alive, tally, reply = std::move(reply)](Bytes answer) {
      // Sealed when the answer is ready: the keyring may have rotated meanwhile.
      if (alive.expired() || shutdown_ || answer.empty()) return reply({});
      Bytes frame = Seal(Encode(wire::StreamReply{wire::User{std::move(answer)}}));
      counters_["stream_bytes_sent"] += frame.size();
      *tally->stream_bytes += frame.size();
      reply(std::move(frame));
    });
    return;
  }
  auto& pp = std::get<wire::PushPull>(req.body);
  ++counters_["push_pulls_received"];
  if (pp.join) {
    if (auto refusal = JoinRefusal(pp); !refusal.empty()) {
      ++counters_["name_conflicts"];
      spdlog::warn("refused join from {}: {}", from, refusal);
      return reply(Seal(Encode(wire::StreamReply{wire::Refused{refusal}})));
    }
    if (auto refusal = ProtocolRefusal(pp); !refusal.empty()) {
      ++counters_["incompatible_members"];
      spdlog::warn("refused join from {}: {}", from, refusal);
      return reply(Seal(Encode(wire::StreamReply{wire::Refused{refusal}})));
    }
  }
  if (pp.digest_only && !pp.join) {
    // Nothing of the asker's to merge: it sends its table next if ours differs.
    wire::PushPull answer;
    answer.from = cfg_.name;
    answer.same = pp.digest == TableDigest();
    if (answer.same) ++counters_["push_pulls_same"];
    Bytes frame = Seal(Encode(wire::StreamReply{answer.same ? std::move(answer) : LocalState(false)}));
    counters_["stream_bytes_sent"] += frame.size();
    return reply(std::move(frame));
  }
  Bytes frame = Seal(Encode(wire::StreamReply{LocalState(false)}));
  counters_["stream_bytes_sent"] += frame.size();
  MergeRemote(pp);
  reply(std::move(frame));
}

// ---- timers -------------------------------------------------------------
// Every timer goes through here so the destructor can cancel what is
// outstanding, whatever clock implementation is plugged in.
Clock::TimerId Memberlist::Impl::After(Duration d, std::function<void()> fn) {
  auto id_holder = std::make_shared<Clock::TimerId>(0);
  Clock::TimerId id = clock_.Schedule(d, [this, id_holder, fn = std::move(fn)] {
    timers_.erase(*id_holder);
    fn();
  });
  *id_holder = id;
  timers_.insert(id);
  return id;
}

void Memberlist::Impl::CancelTimer(Clock::TimerId& id) {
  if (id != 0 && timers_.erase(id)) clock_.Cancel(id);
  id = 0;
}

void Memberlist::Impl::StopTimers() {
  for (auto id : timers_) clock_.Cancel(id);
  timers_.clear();
  for (auto& [_, m] : members_) m.suspicion.reset();
}

void Memberlist::Impl::ApplyHealthDelta(int delta) {
  int before = health_;
  health_ = std::clamp(health_ + delta, 0, cfg_.awareness_max_multiplier - 1);
  if (health_ != before) spdlog::debug("local health score {} -> {}", before, health_);
}

Duration Memberlist::Impl::PushPullInterval() const {
  size_t n = members_.size();
  if (n <= 32) return cfg_.timing.push_pull_interval;
  double mult = std::ceil(std::log2(static_cast<double>(n)) - std::log2(32.0)) + 1.0;
  return cfg_.timing.push_pull_interval * static_cast<int64_t>(mult);
}

// ---- the channel for the layer above --------------------------------------
void Memberlist::Impl::SetUserHandlers(UserPacketFn on_packet, UserStreamFn on_stream) {
  user_packet_ = std::move(on_packet);
  user_stream_ = std::move(on_stream);
}

size_t Memberlist::Impl::UserBroadcastBudget() const {
  wire::Message empty = wire::User{};
  return cfg_.max_packet_bytes - Overhead() - wire::EstimateSize(empty);
}

void Memberlist::Impl::QueueUserBroadcast(const std::string& key, Bytes data) {
  // Member names cannot contain a control character, so user keys never
  // replace a member's news.
  // Membership news is also repaired by push-pull every half minute;
  // user news (desired-state changes) should not have to wait for that.
  broadcasts_.Queue("\x1fuser/" + key, wire::User{std::move(data)}, 3 * cfg_.timing.retransmit_mult);
}

void Memberlist::Impl::SendUserStream(const std::string& addr, Bytes data, Duration timeout, Transport::StreamDone done) {
  ++counters_["user_streams_sent"];
  // The payload alone: its framing counts in stream_bytes_sent only.
  *UserSent(data).stream_bytes += data.size();
  Exchange(addr, wire::StreamRequest{wire::User{std::move(data)}}, timeout,
           [addr, done = std::move(done)](Result<wire::StreamReply> r) {
             if (!r.ok()) return done(r.status());
             if (auto* user = std::get_if<wire::User>(&r->body)) return done(std::move(user->data));
             done(Status::Corruption(addr + " answered a user request with a push-pull"));
           });
}

Memberlist::Memberlist(Config config, Clock& clock, Transport& transport, Random& random, EventFn on_event)
    : impl_(std::make_unique<Impl>(std::move(config), clock, transport, random, std::move(on_event))) {}
Memberlist::~Memberlist() = default;
void Memberlist::Start() { impl_->Start(); }
void Memberlist::Join(std::vector<std::string> seeds, JoinDone done) { impl_->Join(std::move(seeds), std::move(done)); }
void Memberlist::JoinWithRetry(std::vector<std::string> seeds, int max_attempts, JoinDone done) {
  impl_->JoinWithRetry(std::move(seeds), max_attempts, 0, std::move(done));
}
void Memberlist::AddKnownMembers(const std::vector<MemberView>& members) { impl_->AddKnownMembers(members); }
void Memberlist::Leave(std::function<void()> done) { impl_->Leave(std::move(done)); }
Status Memberlist::ForceLeave(const std::string& name, bool prune) { return impl_->ForceLeave(name, prune); }
void Memberlist::SetTags(Tags tags) { impl_->SetTags(std::move(tags)); }
void Memberlist::Shutdown() { impl_->Shutdown(); }
void Memberlist::HandlePacket(const std::string& from, ByteView packet) { impl_->HandlePacket(from, packet); }
void Memberlist::HandleStream(const std::string& from, ByteView request, StreamReply reply) {
  impl_->HandleStream(from, request, std::move(reply));
}
std::vector<MemberView> Memberlist::Members() const { return impl_->Members(); }
void Memberlist::ForEachMember(const std::function<void(const MemberRecord&)>& fn) const {
  impl_->ForEachMember(fn);
}
uint64_t Memberlist::Epoch() const { return impl_->epoch(); }
std::vector<MemberRecord> Memberlist::RandomAlive(size_t k, Random& random) const {
  return impl_->RandomAlive(k, random);
}
std::vector<MemberView> Memberlist::NextAlive(const std::string& name, size_t k) const {
  return impl_->NextAlive(name, k);
}
MemberView Memberlist::Self() const { return impl_->Self(); }
size_t Memberlist::NumAlive() const { return impl_->NumAlive(); }
MemberCounts Memberlist::Counts() const { return impl_->Counts(); }
std::optional<MemberStatus> Memberlist::StatusOf(const std::string& name) const { return impl_->StatusOf(name); }
std::optional<std::string> Memberlist::AddrOf(const std::string& name) const { return impl_->AddrOf(name); }
std::optional<Coordinate> Memberlist::CoordinateOf(const std::string& name) const { return impl_->CoordinateOf(name); }
int Memberlist::HealthScore() const { return impl_->health(); }
const Counters& Memberlist::counters() const { return impl_->counters(); }
const Config& Memberlist::config() const { return impl_->config(); }
bool Memberlist::left() const { return impl_->left(); }
void Memberlist::SetUserHandlers(UserPacketFn on_packet, UserStreamFn on_stream) {
  impl_->SetUserHandlers(std::move(on_packet), std::move(on_stream));
}
size_t Memberlist::UserBroadcastBudget() const { return impl_->UserBroadcastBudget(); }
void Memberlist::QueueUserBroadcast(const std::string& key, Bytes data) {
  impl_->QueueUserBroadcast(key, std::move(data));
}
void Memberlist::SendUserPacket(const std::string& addr, Bytes data) { impl_->SendUserPacket(addr, std::move(data)); }
void Memberlist::SendUserStream(const std::string& addr, Bytes data, Duration timeout, Transport::StreamDone done) {
  impl_->SendUserStream(addr, std::move(data), timeout, std::move(done));
}

}  // namespace starling::membership

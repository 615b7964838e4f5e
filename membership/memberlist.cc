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
#include "starling/membership/memberlist.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "broadcast_queue.h"
#include "codec.h"
#include "suspicion.h"

namespace starling::membership {

namespace {

wire::StateStatus ToWire(MemberStatus s) {
  switch (s) {
    case MemberStatus::kAlive: return wire::StateStatus::kAlive;
    case MemberStatus::kSuspect: return wire::StateStatus::kSuspect;
    case MemberStatus::kFailed: return wire::StateStatus::kDead;
    case MemberStatus::kLeft: return wire::StateStatus::kLeft;
  }
  return wire::StateStatus::kDead;
}

bool IsDown(MemberStatus s) { return s == MemberStatus::kFailed || s == MemberStatus::kLeft; }

// A gossip packet with less room left than this counts as full: the queue
// had more than one packet's worth waiting.
constexpr size_t kFullPacketSlack = 128;

// Makes `m` hold a default value of its i-th alternative (to name it).
template <size_t I = 0>
void SetIndex(wire::Message& m, size_t i) {
  if constexpr (I < wire::kMessageTypes) {
    if (i == I) {
      m.emplace<I>();
      return;
    }
    SetIndex<I + 1>(m, i);
  }
}

}  // namespace

struct Member {
  MemberView view;
  std::unique_ptr<Suspicion> suspicion;
  size_t index = 0;  // position in Impl::nodes_
  Duration reconnect_backoff{0};
  Time next_reconnect{};
};

class Memberlist::Impl {
 public:
  Impl(Config config, Clock& clock, Transport& transport, Random& random, EventFn on_event)
      : cfg_(std::move(config)),
        clock_(clock),
        transport_(transport),
        rng_(random),
        on_event_(std::move(on_event)),
        broadcasts_(cfg_.timing.retransmit_mult),
        token_(std::make_shared<bool>(true)) {
    if (!cfg_.lifeguard) cfg_.awareness_max_multiplier = 1;
    auto self = std::make_unique<Member>();
    self->view.name = cfg_.name;
    self->view.addr = cfg_.advertise_addr;
    self->view.incarnation = cfg_.initial_incarnation;
    self->view.tags = cfg_.tags;
    self->view.status_since = clock_.Now();
    self_ = self.get();
    AddMember(std::move(self));
    for (size_t i = 0; i < wire::kMessageTypes; ++i) {
      wire::Message m;
      SetIndex(m, i);
      sent_[i] = &counters_[std::string("messages_sent.") + wire::MessageTypeName(m)];
      received_[i] = &counters_[std::string("messages_received.") + wire::MessageTypeName(m)];
    }
    bytes_sent_ = &counters_["bytes_sent"];
    bytes_received_ = &counters_["bytes_received"];
    counters_["bad_packets.decode"];
    counters_["bad_packets.version"];
    counters_["bad_packets.cluster"];
    counters_["bad_packets.too_large"];
    counters_["bad_packets.invalid"];
    counters_["bad_packets.unencrypted"];
    counters_["bad_packets.auth"];
    counters_["bad_packets.encrypted"];
    counters_["key_refusals_received"];
  }

  ~Impl() { StopTimers(); }

  // ---- lifecycle ----------------------------------------------------------

  void Start() {
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

  void Shutdown() {
    shutdown_ = true;
    StopTimers();
    acks_.clear();
    for (auto& [_, m] : members_) m->suspicion.reset();
  }

  void Join(std::vector<std::string> seeds, JoinDone done) {
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

  void JoinWithRetry(std::vector<std::string> seeds, int max_attempts, int attempt, JoinDone done) {
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

  void AddKnownMembers(const std::vector<MemberView>& known) {
    for (const auto& k : known) {
      if (k.name == cfg_.name || members_.count(k.name)) continue;
      auto m = std::make_unique<Member>();
      m->view = k;
      m->view.status = MemberStatus::kFailed;
      m->view.status_since = clock_.Now();
      m->reconnect_backoff = cfg_.reconnect_interval;
      m->next_reconnect = clock_.Now();
      AddMember(std::move(m));
    }
  }

  void Leave(std::function<void()> done) {
    if (leaving_) {
      leave_waiters_.push_back(std::move(done));
      return;
    }
    leaving_ = true;
    leave_waiters_.push_back(std::move(done));
    self_->view.status = MemberStatus::kLeft;
    self_->view.status_since = clock_.Now();
    const wire::Leave leave{cfg_.name, self_->view.incarnation, cfg_.name, false};
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

  Status ForceLeave(const std::string& name, bool prune) {
    auto it = members_.find(name);
    if (it == members_.end()) return Status::NotFound("no member named '" + name + "'");
    Member& m = *it->second;
    if (&m == self_) return Status::InvalidArgument("'" + name + "' is this node; use leave instead");
    if (m.view.status == MemberStatus::kAlive)
      return Status::Conflict("member '" + name + "' is alive; force-leave only removes failed members");
    const wire::Leave leave{name, m.view.incarnation, cfg_.name, prune};
    LeaveNode(leave);
    SendToAllLive(leave);
    return Status::Ok();
  }

  void SetTags(Tags tags) {
    self_->view.tags = std::move(tags);
    ++self_->view.incarnation;
    BroadcastSelf();
    Emit(EventType::kUpdated, *self_);
  }

  // ---- inbound ------------------------------------------------------------

  void HandlePacket(const std::string& from, ByteView bytes) {
    if (shutdown_ || left_) return;
    *bytes_received_ += bytes.size();
    Bytes storage;
    ByteView opened;
    if (Unseal(from, bytes, storage, opened) != Opened::kOk) return;
    auto decoded = wire::DecodePacket(opened, cfg_.cluster);
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

  void HandleStream(const std::string& from, ByteView bytes, StreamReply reply) {
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
    }
    auto decoded = wire::DecodeStreamRequest(opened, cfg_.cluster, cfg_.max_stream_bytes);
    if (auto* bad = std::get_if<wire::BadInput>(&decoded)) {
      Bad(*bad, from);
      return reply({});
    }
    auto& req = std::get<wire::StreamRequest>(decoded);
    if (auto* user = std::get_if<wire::User>(&req.body)) {
      if (!user_stream_) return reply({});
      std::weak_ptr<bool> alive = token_;
      user_stream_(from, user->data, [this, alive, reply = std::move(reply)](Bytes answer) {
        // Sealed when the answer is ready: the keyring may have rotated meanwhile.
        if (alive.expired() || shutdown_ || answer.empty()) return reply({});
        Bytes frame = Seal(wire::EncodeStreamReply(cfg_.cluster, wire::StreamReply{wire::User{std::move(answer)}}));
        counters_["stream_bytes_sent"] += frame.size();
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
        return reply(Seal(wire::EncodeStreamReply(cfg_.cluster, wire::StreamReply{wire::Refused{refusal}})));
      }
    }
    Bytes frame = Seal(wire::EncodeStreamReply(cfg_.cluster, wire::StreamReply{LocalState(false)}));
    counters_["stream_bytes_sent"] += frame.size();
    MergeRemote(pp);
    reply(std::move(frame));
  }

  // ---- reads --------------------------------------------------------------

  std::vector<MemberView> Members() const {
    std::vector<MemberView> out;
    out.reserve(members_.size());
    for (const auto& [_, m] : members_) out.push_back(m->view);
    return out;
  }
  MemberView Self() const { return self_->view; }
  size_t NumAlive() const {
    size_t n = 0;
    for (const Member* m : nodes_)
      if (!IsDown(m->view.status)) ++n;
    return n;
  }
  MemberCounts Counts() const {
    MemberCounts c;
    for (const Member* m : nodes_) {
      switch (m->view.status) {
        case MemberStatus::kAlive: ++c.alive; break;
        case MemberStatus::kSuspect: ++c.suspect; break;
        case MemberStatus::kFailed: ++c.failed; break;
        case MemberStatus::kLeft: ++c.left; break;
      }
    }
    return c;
  }
  std::optional<MemberStatus> StatusOf(const std::string& name) const {
    auto it = members_.find(name);
    if (it == members_.end()) return std::nullopt;
    return it->second->view.status;
  }
  std::optional<std::string> AddrOf(const std::string& name) const {
    auto it = members_.find(name);
    if (it == members_.end()) return std::nullopt;
    return it->second->view.addr;
  }
  int health() const { return health_; }
  const Counters& counters() const {
    counters_["health_score"] = static_cast<uint64_t>(health_);
    counters_["broadcast_queue_depth"] = broadcasts_.size();
    return counters_;
  }
  const Config& config() const { return cfg_; }
  bool left() const { return left_; }

 private:
  // ---- timers -------------------------------------------------------------

  // Every timer goes through here so the destructor can cancel what is
  // outstanding, whatever clock implementation is plugged in.
  Clock::TimerId After(Duration d, std::function<void()> fn) {
    auto id_holder = std::make_shared<Clock::TimerId>(0);
    Clock::TimerId id = clock_.Schedule(d, [this, id_holder, fn = std::move(fn)] {
      timers_.erase(*id_holder);
      fn();
    });
    *id_holder = id;
    timers_.insert(id);
    return id;
  }
  void Post(std::function<void()> fn) { After(Duration(0), std::move(fn)); }
  void CancelTimer(Clock::TimerId& id) {
    if (id != 0 && timers_.erase(id)) clock_.Cancel(id);
    id = 0;
  }
  void StopTimers() {
    for (auto id : timers_) clock_.Cancel(id);
    timers_.clear();
    for (auto& [_, m] : members_) m->suspicion.reset();
  }

  Duration Scale(Duration d) const { return d * (health_ + 1); }
  void ApplyHealthDelta(int delta) {
    int before = health_;
    health_ = std::clamp(health_ + delta, 0, cfg_.awareness_max_multiplier - 1);
    if (health_ != before) spdlog::debug("local health score {} -> {}", before, health_);
  }

  Duration PushPullInterval() const {
    size_t n = members_.size();
    if (n <= 32) return cfg_.timing.push_pull_interval;
    double mult = std::ceil(std::log2(static_cast<double>(n)) - std::log2(32.0)) + 1.0;
    return cfg_.timing.push_pull_interval * static_cast<int64_t>(mult);
  }

  Duration ReapCheckInterval() const {
    return std::clamp(cfg_.reap_timeout / 4, Duration(std::chrono::milliseconds(100)), Duration(std::chrono::seconds(15)));
  }

  // ---- probing ------------------------------------------------------------

  void ScheduleProbe(Duration d) {
    probe_timer_ = After(d, [this] { ProbeTick(); });
  }

  Member* NextProbeTarget() {
    for (size_t tries = 0; tries < 2; ++tries) {
      while (probe_pos_ < probe_order_.size()) {
        auto it = members_.find(probe_order_[probe_pos_++]);
        if (it == members_.end()) continue;
        Member* m = it->second.get();
        if (m == self_ || IsDown(m->view.status)) continue;
        return m;
      }
      probe_order_.clear();
      for (Member* m : nodes_) probe_order_.push_back(m->view.name);
      for (size_t i = probe_order_.size(); i > 1; --i) std::swap(probe_order_[i - 1], probe_order_[rng_.Uniform(i)]);
      probe_pos_ = 0;
    }
    return nullptr;
  }

  void ProbeTick() {
    probe_timer_ = 0;
    if (shutdown_ || leaving_) return;
    Duration period = Scale(cfg_.timing.probe_interval);
    if (Member* target = NextProbeTarget()) Probe(*target, period);
    ScheduleProbe(period);
  }

  struct ProbeState {
    std::string target;
    uint64_t incarnation;
    uint32_t seq;
    bool acked = false;
    int expected_nacks = 0;
    int nacks = 0;
    Time start;
  };

  void Probe(Member& target, Duration period) {
    auto probe = std::make_shared<ProbeState>();
    probe->target = target.view.name;
    probe->incarnation = target.view.incarnation;
    probe->seq = ++seq_;
    probe->start = clock_.Now();
    ++counters_["probes"];

    std::vector<wire::Message> msgs;
    msgs.push_back(wire::Ping{probe->seq, target.view.name, cfg_.name, cfg_.advertise_addr});
    if (cfg_.lifeguard && target.view.status == MemberStatus::kSuspect) {
      msgs.push_back(wire::Suspect{target.view.name, target.view.incarnation, cfg_.name});
    }
    Send(target.view.addr, std::move(msgs));

    acks_[probe->seq] = AckHandler{
        [this, probe] {
          probe->acked = true;
          ApplyHealthDelta(-1);
          auto rtt = clock_.Now() - probe->start;
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

  void IndirectProbe(ProbeState& probe) {
    auto it = members_.find(probe.target);
    if (it == members_.end()) return;
    const Member& target = *it->second;
    auto relays = RandomNodes(cfg_.timing.indirect_checks, [&](const Member& m) {
      return &m != self_ && &m != &target && m.view.status == MemberStatus::kAlive;
    });
    probe.expected_nacks = cfg_.lifeguard ? static_cast<int>(relays.size()) : 0;
    for (Member* relay : relays) {
      ++counters_["indirect_probes"];
      Send(relay->view.addr, {wire::IndirectPing{probe.seq, target.view.name, target.view.addr, cfg_.lifeguard,
                                                 cfg_.name, cfg_.advertise_addr}});
    }
  }

  void FinishProbe(ProbeState& probe) {
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
    SuspectNode(wire::Suspect{probe.target, probe.incarnation, cfg_.name});
  }

  // ---- inbound messages ---------------------------------------------------

  void On(const std::string& from, const wire::Ping& p) {
    if (!p.target.empty() && p.target != cfg_.name) {
      ++counters_["misdirected_pings"];
      return;
    }
    Send(from, {wire::Ack{p.seq}});
  }

  void On(const std::string& from, const wire::IndirectPing& ip) {
    uint32_t seq = ++seq_;
    auto nack_timer = std::make_shared<Clock::TimerId>(0);
    acks_[seq] = AckHandler{[this, from, orig = ip.seq, nack_timer] {
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

  void On(const std::string&, const wire::Ack& a) {
    auto it = acks_.find(a.seq);
    if (it == acks_.end()) return;  // late or unknown: harmless
    auto fn = std::move(it->second.on_ack);
    acks_.erase(it);
    if (fn) fn();
  }

  void On(const std::string&, const wire::Nack& n) {
    auto it = acks_.find(n.seq);
    if (it != acks_.end() && it->second.on_nack) it->second.on_nack();
  }

  void On(const std::string&, const wire::Alive& a) { AliveNode(a); }
  void On(const std::string& from, const wire::Suspect& s) {
    AnswerStaleAccusation(from, s.name, s.incarnation);
    SuspectNode(s);
  }
  void On(const std::string& from, const wire::Dead& d) {
    AnswerStaleAccusation(from, d.name, d.incarnation);
    DeadNode(d);
  }
  void On(const std::string&, const wire::Leave& l) { LeaveNode(l); }
  void On(const std::string& from, const wire::User& u) {
    if (user_packet_) user_packet_(from, u.data);
  }

  // ---- the channel for the layer above --------------------------------------
 public:

  void SetUserHandlers(UserPacketFn on_packet, UserStreamFn on_stream) {
    user_packet_ = std::move(on_packet);
    user_stream_ = std::move(on_stream);
  }

  size_t UserBroadcastBudget() const {
    wire::Message empty = wire::User{};
    return cfg_.max_packet_bytes - Overhead() - wire::EstimateSize(empty);
  }

  void QueueUserBroadcast(const std::string& key, Bytes data) {
    // Member names cannot contain a control character, so user keys never
    // replace a member's news.
    // Membership news is also repaired by push-pull every half minute;
    // user news (desired-state changes) should not have to wait for that.
    broadcasts_.Queue("\x1fuser/" + key, wire::User{std::move(data)}, 3 * cfg_.timing.retransmit_mult);
  }

  void SendUserPacket(const std::string& addr, Bytes data) { SendRaw(addr, {wire::User{std::move(data)}}); }

  void SendUserStream(const std::string& addr, Bytes data, Duration timeout, Transport::StreamDone done) {
    ++counters_["user_streams_sent"];
    Exchange(addr, wire::StreamRequest{wire::User{std::move(data)}}, timeout,
             [addr, done = std::move(done)](Result<wire::StreamReply> r) {
               if (!r.ok()) return done(r.status());
               if (auto* user = std::get_if<wire::User>(&r->body)) return done(std::move(user->data));
               done(Status::Corruption(addr + " answered a user request with a push-pull"));
             });
  }

 private:

  // ---- state transitions --------------------------------------------------

  void AliveNode(const wire::Alive& a) {
    if (leaving_ && a.name == cfg_.name) return;
    auto it = members_.find(a.name);
    Member* m = it == members_.end() ? nullptr : it->second.get();
    if (m == nullptr) {
      if (a.protocol_max < kProtocolMin || a.protocol_min > kProtocolMax) {
        ++counters_["incompatible_members"];
        LogLimited("refusing member '{}' at {}: protocol versions [{}, {}] do not overlap ours [{}, {}]", a.name,
                   a.addr, a.protocol_min, a.protocol_max, kProtocolMin, kProtocolMax);
        return;
      }
      auto fresh = std::make_unique<Member>();
      fresh->view.name = a.name;
      fresh->view.addr = a.addr;
      fresh->view.incarnation = a.incarnation;
      fresh->view.tags = a.tags;
      fresh->view.protocol_min = a.protocol_min;
      fresh->view.protocol_max = a.protocol_max;
      fresh->view.status = MemberStatus::kAlive;
      fresh->view.status_since = clock_.Now();
      m = fresh.get();
      AddMember(std::move(fresh));
      QueueBroadcast(a.name, a);
      Emit(EventType::kJoined, *m);
      return;
    }
    const bool is_self = m == self_;
    const bool addr_changed = m->view.addr != a.addr;
    if (addr_changed && !is_self) {
      if (!IsDown(m->view.status)) {
        ++counters_["name_conflicts"];
        LogLimited("member name '{}' claimed from {} but held by live member at {}; ignoring the claim", a.name,
                   a.addr, m->view.addr);
        return;
      }
      // A failed or departed member may come back from a new address.
    } else if (a.incarnation <= m->view.incarnation) {
      if (!is_self || a.incarnation < m->view.incarnation) return;
    }
    if (is_self) {
      if (addr_changed) {
        ++counters_["name_conflicts"];
        LogLimited("another node at {} claims our name '{}'; refuting", a.addr, a.name);
      } else if (a.incarnation == m->view.incarnation && a.tags == m->view.tags) {
        return;  // our own news coming back to us
      }
      Refute(a.incarnation);
      return;
    }
    const MemberStatus before = m->view.status;
    const bool tags_changed = m->view.tags != a.tags;
    m->suspicion.reset();
    m->view.addr = a.addr;
    m->view.incarnation = a.incarnation;
    m->view.tags = a.tags;
    m->view.protocol_min = a.protocol_min;
    m->view.protocol_max = a.protocol_max;
    if (before != MemberStatus::kAlive) {
      m->view.status = MemberStatus::kAlive;
      m->view.status_since = clock_.Now();
    }
    m->reconnect_backoff = Duration(0);
    QueueBroadcast(a.name, a);
    if (IsDown(before)) {
      Emit(EventType::kJoined, *m);
    } else if (before == MemberStatus::kSuspect) {
      Emit(EventType::kAlive, *m);
    }
    if (tags_changed || addr_changed) Emit(EventType::kUpdated, *m);
  }

  void SuspectNode(const wire::Suspect& s) {
    auto it = members_.find(s.name);
    if (it == members_.end()) return;
    Member& m = *it->second;
    if (s.incarnation < m.view.incarnation) return;
    if (m.suspicion) {
      if (m.view.incarnation == s.incarnation && m.suspicion->Confirm(s.from)) QueueBroadcast(s.name, s);
      return;
    }
    if (&m == self_) {
      if (leaving_) return;
      spdlog::debug("refuting suspicion of ourselves from {}", s.from);
      ApplyHealthDelta(1);
      Refute(s.incarnation);
      return;
    }
    if (m.view.status != MemberStatus::kAlive) return;
    ++counters_["suspicions"];
    QueueBroadcast(s.name, s);
    m.view.incarnation = s.incarnation;
    m.view.status = MemberStatus::kSuspect;
    m.view.status_since = clock_.Now();

    StartSuspicion(m, s.from);
    Emit(EventType::kSuspect, m);
  }

  void StartSuspicion(Member& m, const std::string& from) {
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
                                              [this, name = m.view.name, inc = m.view.incarnation] {
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
  void LastChance(const std::string& name, uint64_t inc) {
    Member* m = SuspectAt(name, inc);
    if (m == nullptr) return;
    const uint32_t seq = ++seq_;
    auto acked = std::make_shared<bool>(false);
    acks_[seq] = AckHandler{[acked] { *acked = true; }, {}};
    Send(m->view.addr, {wire::Ping{seq, name, cfg_.name, cfg_.advertise_addr}, wire::Suspect{name, inc, cfg_.name}});
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
  Member* SuspectAt(const std::string& name, uint64_t inc) {
    auto it = members_.find(name);
    if (it == members_.end() || it->second->view.status != MemberStatus::kSuspect ||
        it->second->view.incarnation != inc)
      return nullptr;
    return it->second.get();
  }

  void DeclareFailed(const std::string& name, uint64_t inc) {
    if (SuspectAt(name, inc) == nullptr) return;
    spdlog::info("member {} suspected too long; marking failed", name);
    DeadNode(wire::Dead{name, inc, cfg_.name});
  }

  // A suspicion or death notice about us older than our incarnation: the
  // sender missed our refutation, so tell it directly.
  void AnswerStaleAccusation(const std::string& from, const std::string& name, uint64_t inc) {
    if (!cfg_.last_chance_probe || name != cfg_.name || leaving_ || inc >= self_->view.incarnation) return;
    ++counters_["stale_accusations_answered"];
    const auto& v = self_->view;
    SendRaw(from, {wire::Alive{v.name, v.addr, v.incarnation, v.tags, kProtocolMin, kProtocolMax}});
  }

  void DeadNode(const wire::Dead& d) {
    auto it = members_.find(d.name);
    if (it == members_.end()) return;
    Member& m = *it->second;
    if (d.incarnation < m.view.incarnation) return;
    if (&m == self_) {
      if (!leaving_) Refute(d.incarnation);
      return;
    }
    if (IsDown(m.view.status)) return;
    m.suspicion.reset();
    QueueBroadcast(d.name, d);
    m.view.incarnation = d.incarnation;
    m.view.status = MemberStatus::kFailed;
    m.view.status_since = clock_.Now();
    m.reconnect_backoff = cfg_.reconnect_interval;
    m.next_reconnect = clock_.Now() + cfg_.reconnect_interval;
    Emit(EventType::kFailed, m);
  }

  void LeaveNode(const wire::Leave& l) {
    auto it = members_.find(l.name);
    if (it == members_.end()) return;
    Member& m = *it->second;
    if (l.incarnation < m.view.incarnation) return;
    if (&m == self_) {
      if (!leaving_) {
        spdlog::warn("{} says we left the cluster; refuting", l.from);
        Refute(l.incarnation);
      }
      return;
    }
    if (m.view.status == MemberStatus::kLeft && !l.prune) return;
    m.suspicion.reset();
    QueueBroadcast(l.name, l);
    m.view.incarnation = l.incarnation;
    if (m.view.status != MemberStatus::kLeft) {
      m.view.status = MemberStatus::kLeft;
      m.view.status_since = clock_.Now();
      Emit(EventType::kLeft, m);
    }
    if (l.prune) {
      MemberView gone = m.view;
      RemoveMember(l.name);
      Emit(EventType::kReaped, gone);
    }
  }

  void Refute(uint64_t accused) {
    self_->view.incarnation = std::max(self_->view.incarnation, accused) + 1;
    ++counters_["refutations"];
    BroadcastSelf();
  }

  void BroadcastSelf() {
    const auto& v = self_->view;
    QueueBroadcast(cfg_.name, wire::Alive{v.name, v.addr, v.incarnation, v.tags, kProtocolMin, kProtocolMax});
  }

  // ---- dissemination ------------------------------------------------------

  void QueueBroadcast(const std::string& key, wire::Message msg) { broadcasts_.Queue(key, std::move(msg)); }

  void Send(const std::string& addr, std::vector<wire::Message> msgs) {
    size_t used = Overhead();
    for (const auto& m : msgs) used += wire::EstimateSize(m);
    if (used < cfg_.max_packet_bytes) {
      for (auto& b : broadcasts_.Take(cfg_.max_packet_bytes - used, nodes_.size())) msgs.push_back(std::move(b));
    }
    SendRaw(addr, msgs);
  }

  void SendRaw(const std::string& addr, const std::vector<wire::Message>& msgs) {
    for (const auto& m : msgs) ++*sent_[m.index()];
    Bytes bytes = Seal(wire::EncodePacket(cfg_.cluster, msgs));
    *bytes_sent_ += bytes.size();
    transport_.SendPacket(addr, std::move(bytes));
  }

  void SendToAllLive(const wire::Message& msg) {
    for (Member* m : nodes_)
      if (m != self_ && !IsDown(m->view.status)) SendRaw(m->view.addr, {msg});
  }

  void GossipTick() {
    gossip_timer_ = 0;
    if (shutdown_) return;
    const Time now = clock_.Now();
    auto targets = RandomNodes(cfg_.timing.gossip_nodes, [&](const Member& m) {
      if (&m == self_) return false;
      if (!IsDown(m.view.status)) return true;
      return now - m.view.status_since < cfg_.timing.gossip_to_the_dead;
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
        SendRaw(t->view.addr, msgs);
      }
      if (!backlog) break;
    }
    if (leaving_ && !left_ && (!broadcasts_.Contains(cfg_.name) || now >= leave_deadline_)) {
      FinishLeave();
      return;
    }
    gossip_timer_ = After(cfg_.timing.gossip_interval, [this] { GossipTick(); });
  }

  void FinishLeave() {
    if (left_) return;
    left_ = true;
    spdlog::info("left the cluster");
    StopTimers();
    auto waiters = std::move(leave_waiters_);
    for (auto& w : waiters)
      if (w) w();
  }

  // ---- anti-entropy -------------------------------------------------------

  wire::PushPull LocalState(bool join) const {
    wire::PushPull pp;
    pp.join = join;
    pp.from = cfg_.name;
    pp.members.reserve(members_.size());
    for (const auto& [_, m] : members_) {
      const auto& v = m->view;
      pp.members.push_back(
          wire::MemberState{v.name, v.addr, v.incarnation, ToWire(v.status), v.tags, v.protocol_min, v.protocol_max});
    }
    return pp;
  }

  std::string JoinRefusal(const wire::PushPull& pp) const {
    for (const auto& s : pp.members) {
      if (s.name != pp.from) continue;
      auto it = members_.find(s.name);
      if (it == members_.end()) return "";
      const auto& v = it->second->view;
      if (v.addr != s.addr && (it->second.get() == self_ || !IsDown(v.status))) {
        return "name '" + s.name + "' is already in use by a live member at " + v.addr +
               "; start this node with another --name or stop that member first";
      }
      return "";
    }
    return "";
  }

  void MergeRemote(const wire::PushPull& pp) {
    for (const auto& s : pp.members) {
      switch (s.status) {
        case wire::StateStatus::kAlive:
          AliveNode(wire::Alive{s.name, s.addr, s.incarnation, s.tags, s.protocol_min, s.protocol_max});
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
  void Exchange(const std::string& addr, wire::StreamRequest request, Duration timeout,
                std::function<void(Result<wire::StreamReply>)> done) {
    Bytes req = Seal(wire::EncodeStreamRequest(cfg_.cluster, request));
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
      auto decoded = wire::DecodeStreamReply(opened, cfg_.cluster, cfg_.max_stream_bytes);
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

  void PushPullWith(const std::string& addr, bool join, std::function<void(Status)> done) {
    ++counters_["push_pulls_sent"];
    Exchange(addr, wire::StreamRequest{LocalState(join)}, cfg_.stream_timeout,
             [this, addr, done = std::move(done)](Result<wire::StreamReply> r) {
               if (!r.ok()) return done(r.status());
               auto* pp = std::get_if<wire::PushPull>(&r->body);
               if (pp == nullptr) return done(Status::Corruption(addr + " answered a push-pull with something else"));
               if (shutdown_ || left_) return done(Status::Unavailable("shut down"));
               MergeRemote(*pp);
               done(Status::Ok());
             });
  }

  void PushPullTick() {
    push_pull_timer_ = 0;
    if (shutdown_ || leaving_) return;
    auto peers = RandomNodes(1, [&](const Member& m) { return &m != self_ && m.view.status == MemberStatus::kAlive; });
    if (!peers.empty()) {
      std::string name = peers[0]->view.name;
      PushPullWith(peers[0]->view.addr, false, [name](Status s) {
        if (!s.ok()) spdlog::debug("push-pull with {} failed: {}", name, s.ToString());
      });
    }
    // +-25 %: nodes started together would otherwise push-pull in bursts
    // one (scaled) interval apart for ever; the mean rate stays the same.
    const Duration interval = PushPullInterval();
    push_pull_timer_ = After(interval * 3 / 4 + Duration(rng_.Uniform(interval.count() / 2 + 1)),
                             [this] { PushPullTick(); });
  }

  void ReconnectTick() {
    reconnect_timer_ = 0;
    if (shutdown_ || leaving_) return;
    const Time now = clock_.Now();
    std::vector<Member*> due;
    for (Member* m : nodes_)
      if (m->view.status == MemberStatus::kFailed && m->next_reconnect <= now) due.push_back(m);
    if (!due.empty()) {
      Member* m = due[rng_.Uniform(due.size())];
      std::string name = m->view.name;
      ++counters_["reconnect_attempts"];
      m->reconnect_backoff = std::min(std::max(m->reconnect_backoff * 2, cfg_.reconnect_interval),
                                      cfg_.reconnect_max_backoff);
      m->next_reconnect = now + m->reconnect_backoff;
      PushPullWith(m->view.addr, false, [name](Status s) {
        if (!s.ok()) spdlog::debug("reconnect to {} failed: {}", name, s.ToString());
      });
    }
    // Check often enough that a due member waits at most a fraction of its backoff.
    reconnect_timer_ = After(std::max(cfg_.reconnect_interval / 4, Duration(std::chrono::milliseconds(250))),
                             [this] { ReconnectTick(); });
  }

  void ReapTick() {
    reap_timer_ = 0;
    if (shutdown_) return;
    const Time now = clock_.Now();
    std::vector<std::string> gone;
    for (Member* m : nodes_)
      if (m != self_ && IsDown(m->view.status) && now - m->view.status_since >= cfg_.reap_timeout)
        gone.push_back(m->view.name);
    for (const auto& name : gone) {
      MemberView v = members_[name]->view;
      RemoveMember(name);
      spdlog::info("reaped member {} ({} for longer than the reap timeout)", name, StatusName(v.status));
      Emit(EventType::kReaped, v);
    }
    reap_timer_ = After(ReapCheckInterval(), [this] { ReapTick(); });
  }

  // ---- bookkeeping --------------------------------------------------------

  void AddMember(std::unique_ptr<Member> m) {
    m->index = nodes_.size();
    nodes_.push_back(m.get());
    std::string name = m->view.name;
    members_.emplace(std::move(name), std::move(m));
  }

  void RemoveMember(const std::string& name) {
    auto it = members_.find(name);
    if (it == members_.end() || it->second.get() == self_) return;
    size_t idx = it->second->index;
    nodes_[idx] = nodes_.back();
    nodes_[idx]->index = idx;
    nodes_.pop_back();
    members_.erase(it);
  }

  template <typename Filter>
  std::vector<Member*> RandomNodes(int k, Filter filter) {
    std::vector<Member*> out;
    const size_t n = nodes_.size();
    for (size_t i = 0; i < 3 * n && out.size() < static_cast<size_t>(k); ++i) {
      Member* m = nodes_[rng_.Uniform(n)];
      if (!filter(*m)) continue;
      if (std::find(out.begin(), out.end(), m) != out.end()) continue;
      out.push_back(m);
    }
    return out;
  }

  // News of a member joining or leaving arrives by rumour, and a rumour that
  // runs out of retransmits misses about exp(-limit) of the members; memberlist
  // leaves them to the next periodic push-pull (the long tail of a join wave).
  // After such news, each node does one extra push-pull a little later, once
  // the wave has had time to settle, at most once per push_pull_interval / 4.
  void ScheduleChurnPushPull() {
    if (churn_timer_ != 0 || shutdown_ || leaving_ || !started_) return;
    const Time now = clock_.Now();
    const Duration settle = cfg_.timing.gossip_interval * 10;
    Time at = now + settle + Duration(rng_.Uniform(static_cast<uint64_t>(settle.count())));
    at = std::max(at, last_churn_push_pull_ + cfg_.timing.push_pull_interval / 4);
    churn_timer_ = After(at - now, [this] {
      churn_timer_ = 0;
      if (shutdown_ || leaving_) return;
      last_churn_push_pull_ = clock_.Now();
      auto peers = RandomNodes(1, [&](const Member& m) { return &m != self_ && m.view.status == MemberStatus::kAlive; });
      if (peers.empty()) return;
      ++counters_["churn_push_pulls"];
      PushPullWith(peers[0]->view.addr, false, [](Status) {});
    });
  }

  void Emit(EventType type, const Member& m) { Emit(type, m.view); }
  void Emit(EventType type, const MemberView& v) {
    if (v.name != cfg_.name && (type == EventType::kJoined || type == EventType::kLeft)) ScheduleChurnPushPull();
    if (on_event_) on_event_(Event{type, v});
  }

  // ---- the keyring envelope -------------------------------------------------

  bool keyed() const { return cfg_.keyring && cfg_.keyring->enabled(); }
  size_t Overhead() const { return wire::EnvelopeOverhead(cfg_.cluster) + (keyed() ? Keyring::kOverhead : 0); }
  Bytes Seal(Bytes clear) const { return keyed() ? cfg_.keyring->Encrypt(clear) : clear; }

  enum class Opened { kOk, kClear, kAuth, kSealed };
  // Opens an inbound frame: `out` views the clear bytes (`in` itself when the
  // cluster runs in the clear, else the decrypted copy in `storage`).
  // Anything but kOk is counted, logged (rate-limited) and must be dropped.
  Opened Unseal(const std::string& from, ByteView in, Bytes& storage, ByteView& out) {
    const bool sealed = Keyring::IsSealed(in);
    if (keyed()) {
      if (!sealed) {
        Bad(wire::BadInput{"unencrypted", "a clear frame, but this cluster is encrypted: the sender has no key"}, from);
        return Opened::kClear;
      }
      auto clear = cfg_.keyring->Decrypt(in);
      if (!clear) {
        Bad(wire::BadInput{"auth", "no installed key opens it: the sender's key differs, or it was tampered with"},
            from);
        return Opened::kAuth;
      }
      storage = std::move(*clear);
      out = storage;
      return Opened::kOk;
    }
    if (sealed) {
      Bad(wire::BadInput{"encrypted", "an encrypted frame, but this node has no key: start it with --encrypt KEY"},
          from);
      return Opened::kSealed;
    }
    out = in;
    return Opened::kOk;
  }

  Bytes KeyRefusal(std::string why) {
    Bytes reply = wire::EncodeStreamReply(cfg_.cluster, wire::StreamReply{wire::Refused{std::move(why), true}});
    counters_["stream_bytes_sent"] += reply.size();
    return reply;
  }

  void Bad(const wire::BadInput& bad, const std::string& from) {
    ++counters_["bad_packets." + bad.reason];
    LogLimited("dropped bad packet from {}: {} ({})", from, bad.reason, bad.detail);
  }

  // At most kLogBurst warnings per 10 s of this node's clock; the rest are
  // summarised, so a flood cannot turn into a disk-filling log.
  template <typename... Args>
  void LogLimited(spdlog::format_string_t<Args...> fmt, Args&&... args) {
    constexpr int kLogBurst = 20;
    const Time now = clock_.Now();
    if (now - log_window_start_ >= std::chrono::seconds(10)) {
      if (log_suppressed_ > 0) spdlog::warn("{} similar warnings suppressed in the last 10 s", log_suppressed_);
      log_window_start_ = now;
      log_in_window_ = 0;
      log_suppressed_ = 0;
    }
    if (log_in_window_++ < kLogBurst) {
      spdlog::warn(fmt, std::forward<Args>(args)...);
    } else {
      ++log_suppressed_;
    }
  }

  struct AckHandler {
    std::function<void()> on_ack;
    std::function<void()> on_nack;
  };

  Config cfg_;
  Clock& clock_;
  Transport& transport_;
  Random& rng_;
  EventFn on_event_;
  UserPacketFn user_packet_;
  UserStreamFn user_stream_;
  BroadcastQueue broadcasts_;
  std::shared_ptr<bool> token_;  // stream callbacks check it to outlive us safely

  std::map<std::string, std::unique_ptr<Member>> members_;
  std::vector<Member*> nodes_;
  Member* self_ = nullptr;

  std::vector<std::string> probe_order_;
  size_t probe_pos_ = 0;
  uint32_t seq_ = 0;
  std::unordered_map<uint32_t, AckHandler> acks_;
  int health_ = 0;

  bool started_ = false, shutdown_ = false, leaving_ = false, left_ = false;
  Time leave_deadline_{};
  std::vector<std::function<void()>> leave_waiters_;

  std::unordered_set<Clock::TimerId> timers_;
  Clock::TimerId probe_timer_ = 0, gossip_timer_ = 0, push_pull_timer_ = 0, reap_timer_ = 0, reconnect_timer_ = 0;
  Clock::TimerId churn_timer_ = 0;
  Time last_churn_push_pull_{-std::chrono::hours(1)};

  mutable Counters counters_;
  uint64_t* sent_[wire::kMessageTypes] = {};
  uint64_t* received_[wire::kMessageTypes] = {};
  uint64_t* bytes_sent_ = nullptr;
  uint64_t* bytes_received_ = nullptr;

  Time log_window_start_{};
  int log_in_window_ = 0;
  int log_suppressed_ = 0;
};

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
MemberView Memberlist::Self() const { return impl_->Self(); }
size_t Memberlist::NumAlive() const { return impl_->NumAlive(); }
MemberCounts Memberlist::Counts() const { return impl_->Counts(); }
std::optional<MemberStatus> Memberlist::StatusOf(const std::string& name) const { return impl_->StatusOf(name); }
std::optional<std::string> Memberlist::AddrOf(const std::string& name) const { return impl_->AddrOf(name); }
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

// Memberlist's implementation, private to membership/: the one Impl class,
// whose parts live in memberlist.cc (lifecycle, inbound frames, timers, the
// channel for the layer above, the public forwarding), memberlist_probe.cc
// (probes and the messages that answer them), memberlist_state.cc (alive,
// suspect, dead and left: the SWIM state machine with Lifeguard),
// memberlist_sync.cc (dissemination, push-pull anti-entropy, bookkeeping)
// and memberlist_envelope.cc (the keyring envelope). The design is written
// at the top of memberlist.cc. Single-threaded: everything runs on the
// thread that drives the Clock and Transport.
#pragma once

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "broadcast_queue.h"
#include "codec.h"
#include "starling/membership/memberlist.h"
#include "starling/membership/replay_guard.h"
#include "suspicion.h"

namespace starling::membership {

inline wire::StateStatus ToWire(MemberStatus s) {
  switch (s) {
    case MemberStatus::kAlive: return wire::StateStatus::kAlive;
    case MemberStatus::kSuspect: return wire::StateStatus::kSuspect;
    case MemberStatus::kFailed: return wire::StateStatus::kDead;
    case MemberStatus::kLeft: return wire::StateStatus::kLeft;
  }
  return wire::StateStatus::kDead;
}

inline bool IsDown(MemberStatus s) { return s == MemberStatus::kFailed || s == MemberStatus::kLeft; }

// A gossip packet with less room left than this counts as full: the queue
// had more than one packet's worth waiting.
inline constexpr size_t kFullPacketSlack = 128;

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


struct RecordHash {
  size_t operator()(const MemberRecord& r) const;
};
// A member's record, interned: every holder of the same record keeps one.
using SharedRecord = intern::Interned<MemberRecord, RecordHash>;

// A member as this node holds it. Every node holds one per member of the
// cluster, so the fields stay few and small (membership/README.md, "Memory").
struct Member {
  const MemberRecord& view() const { return record.get(); }
  // Changes the record: a record is shared, so an edit makes a new one.
  template <class F>
  void Edit(F&& edit) {
    MemberRecord r = record.get();
    edit(r);
    record = SharedRecord(r);
  }
  SharedRecord record;
  Time status_since{};  // when this node last saw the status change
  uint32_t index = 0;   // position in Impl::nodes_
  std::unique_ptr<Suspicion> suspicion;
  // Only for a member this node has probed (in a large cluster, a fraction
  // of them at any time): held apart, as most members never need it.
  struct Measured {
    LatencySamples rtt;
    PackedCoordinate coordinate;  // the last one it sent in an ack
  };
  std::unique_ptr<Measured> measured;
  std::optional<Coordinate> CoordinateOf() const {
    return measured ? measured->coordinate.Get() : std::nullopt;
  }
  // Only while it is failed: when to try it again.
  struct Reconnect {
    Duration backoff{0};
    Time next{};
  };
  std::unique_ptr<Reconnect> reconnect;
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
    Member self;
    self.Edit([&](MemberRecord& r) {
      r.name = cfg_.name;
      r.addr = cfg_.advertise_addr;
      r.incarnation = cfg_.initial_incarnation;
      r.tags = cfg_.tags;
      r.protocol_min = cfg_.protocol.min;
      r.protocol_max = cfg_.protocol.max;
      r.protocol_cur = cfg_.protocol.speak;
      r.release = cfg_.release;
    });
    self.status_since = clock_.Now();
    self_ = &AddMember(std::move(self));
    for (size_t i = 0; i < wire::kMessageTypes; ++i) {
      wire::Message m;
      SetIndex(m, i);
      sent_[i] = &counters_[std::string("messages_sent.") + wire::MessageTypeName(m)];
      received_[i] = &counters_[std::string("messages_received.") + wire::MessageTypeName(m)];
    }
    bytes_sent_ = &counters_["bytes_sent"];
    for (size_t t = 0; t < kUserTags; ++t) {
      user_sent_[t].messages = &counters_["user_messages_sent." + std::to_string(t)];
      user_sent_[t].bytes = &counters_["user_bytes_sent." + std::to_string(t)];
      user_sent_[t].stream_bytes = &counters_["user_stream_bytes_sent." + std::to_string(t)];
    }
    bytes_received_ = &counters_["bytes_received"];
    counters_["bad_packets.decode"];
    counters_["bad_packets.version"];
    counters_["bad_packets.cluster"];
    counters_["bad_packets.too_large"];
    counters_["bad_packets.invalid"];
    counters_["bad_packets.unencrypted"];
    counters_["bad_packets.auth"];
    counters_["bad_packets.encrypted"];
    counters_["bad_packets.format"];
    counters_["bad_packets.replayed"];
    counters_["bad_packets.out_of_window"];
    counters_["key_refusals_received"];
    counters_["incompatible_members"];
  }

  ~Impl() { StopTimers(); }

  // ---- lifecycle ----------------------------------------------------------

  void Start();
  void Shutdown();
  void Join(std::vector<std::string> seeds, JoinDone done);
  void JoinWithRetry(std::vector<std::string> seeds, int max_attempts, int attempt, JoinDone done);
  void AddKnownMembers(const std::vector<MemberView>& known);
  void Leave(std::function<void()> done);
  Status ForceLeave(const std::string& name, bool prune);
  void SetTags(Tags tags);

  // ---- inbound ------------------------------------------------------------

  void HandlePacket(const std::string& from, ByteView bytes);
  void HandleStream(const std::string& from, ByteView bytes, StreamReply reply);

  // ---- reads --------------------------------------------------------------

  std::vector<MemberView> Members() const {
    std::vector<MemberView> out;
    out.reserve(members_.size());
    for (const auto& [_, m] : members_) out.push_back(ViewOf(m));
    return out;
  }
  void ForEachMember(const std::function<void(const MemberRecord&)>& fn) const {
    for (const auto& [_, m] : members_) fn(m.view());
  }
  uint64_t epoch() const { return epoch_; }
  std::vector<MemberView> NextAlive(const std::string& name, size_t k) const {
    std::vector<MemberView> out;
    if (members_.empty()) return out;
    auto it = members_.upper_bound(name);
    for (size_t seen = 0; seen < members_.size() && out.size() < k; ++seen, ++it) {
      if (it == members_.end()) it = members_.begin();
      const Member& m = it->second;
      if (&m != self_ && m.view().status == MemberStatus::kAlive) out.push_back(ViewOf(m));
    }
    return out;
  }
  std::vector<MemberRecord> RandomAlive(size_t k, Random& random) const {
    auto alive = [this](const Member& m) { return &m != self_ && m.view().status == MemberStatus::kAlive; };
    // Draws, mostly alive in a healthy cluster; a list mostly down falls
    // back to a pass over it.
    std::vector<Member*> picked = Draw(k, 4 * k + 16, random, alive);
    if (picked.size() < k) {
      std::vector<Member*> rest;
      for (Member* m : nodes_)
        if (alive(*m) && std::find(picked.begin(), picked.end(), m) == picked.end()) rest.push_back(m);
      for (size_t i = 0; i < rest.size() && picked.size() < k; ++i) {
        std::swap(rest[i], rest[i + random.Uniform(rest.size() - i)]);
        picked.push_back(rest[i]);
      }
    }
    std::vector<MemberRecord> out;
    out.reserve(picked.size());
    for (const Member* m : picked) out.push_back(m->view());
    return out;
  }
  MemberView Self() const { return ViewOf(*self_); }
  MemberView ViewOf(const Member& m) const {
    return MemberView(m.view(), &m == self_ ? std::optional<Coordinate>(coords_.Self()) : m.CoordinateOf());
  }
  std::optional<Coordinate> CoordinateOf(const std::string& name) const {
    auto it = members_.find(name);
    if (it == members_.end()) return std::nullopt;
    if (&it->second == self_) return coords_.Self();
    return it->second.CoordinateOf();
  }
  size_t NumAlive() const {
    size_t n = 0;
    for (const Member* m : nodes_)
      if (!IsDown(m->view().status)) ++n;
    return n;
  }
  MemberCounts Counts() const {
    MemberCounts c;
    for (const Member* m : nodes_) {
      switch (m->view().status) {
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
    return it->second.view().status;
  }
  std::optional<std::string> AddrOf(const std::string& name) const {
    auto it = members_.find(name);
    if (it == members_.end()) return std::nullopt;
    return it->second.view().addr;
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
  Clock::TimerId After(Duration d, std::function<void()> fn);
  void Post(std::function<void()> fn) { After(Duration(0), std::move(fn)); }
  void CancelTimer(Clock::TimerId& id);
  void StopTimers();

  Duration Scale(Duration d) const { return d * (health_ + 1); }
  void ApplyHealthDelta(int delta);
  Duration PushPullInterval() const;

  Duration ReapCheckInterval() const {
    return std::clamp(cfg_.reap_timeout / 4, Duration(std::chrono::milliseconds(100)), Duration(std::chrono::seconds(15)));
  }

  // ---- probing ------------------------------------------------------------

  void ScheduleProbe(Duration d) {
    probe_timer_ = After(d, [this] { ProbeTick(); });
  }

  Member* NextProbeTarget();
  void ProbeTick();

  struct ProbeState {
    std::string target;
    uint64_t incarnation;
    uint32_t seq;
    bool acked = false;
    int expected_nacks = 0;
    int nacks = 0;
    Time start;
    bool second = false;  // the probe again of an alive member the first one failed to reach
  };

  void Probe(Member& target, Duration period, bool second = false);
  void IndirectProbe(ProbeState& probe);
  void FinishProbe(ProbeState& probe);

  // ---- inbound messages ---------------------------------------------------

  void On(const std::string& from, const wire::Ping& p);
  void On(const std::string& from, const wire::IndirectPing& ip);
  void On(const std::string&, const wire::Ack& a);
  void On(const std::string&, const wire::Nack& n);

  void On(const std::string&, const wire::Alive& a) { AliveNode(a); }
  void On(const std::string& from, const wire::Suspect& s);
  void On(const std::string& from, const wire::Dead& d);
  void On(const std::string&, const wire::Leave& l) { LeaveNode(l); }
  void On(const std::string& from, const wire::User& u) {
    if (user_packet_) user_packet_(from, u.data);
  }

  // ---- the channel for the layer above --------------------------------------
 public:

  void SetUserHandlers(UserPacketFn on_packet, UserStreamFn on_stream);
  size_t UserBroadcastBudget() const;
  void QueueUserBroadcast(const std::string& key, Bytes data);

  void SendUserPacket(const std::string& addr, Bytes data) { SendRaw(addr, {wire::User{std::move(data)}}); }

  void SendUserStream(const std::string& addr, Bytes data, Duration timeout, Transport::StreamDone done);

 private:

  // ---- state transitions --------------------------------------------------

  void AliveNode(const wire::Alive& a);
  void SuspectNode(const wire::Suspect& s);
  void StartSuspicion(Member& m, const std::string& from);

  // Before declaring a suspect failed, ping it once more with the suspicion
  // attached. A member that already refuted answers with its newer alive
  // directly (see On(Suspect)): this catches the refutation rumour that ran
  // out of retransmits before reaching us, at the cost of one probe timeout.
  void LastChance(const std::string& name, uint64_t inc);

  // The member if it is still suspect at `inc`: a timer set for an older
  // suspicion must not act on a newer state.
  Member* SuspectAt(const std::string& name, uint64_t inc);
  void DeclareFailed(const std::string& name, uint64_t inc);

  // A suspicion or death notice about us older than our incarnation: the
  // sender missed our refutation, so tell it directly.
  void AnswerStaleAccusation(const std::string& from, const std::string& name, uint64_t inc);
  void DeadNode(const wire::Dead& d);
  void LeaveNode(const wire::Leave& l);
  void Refute(uint64_t accused);
  void BroadcastSelf();

  // ---- dissemination ------------------------------------------------------

  void QueueBroadcast(const std::string& key, BroadcastQueue::News msg) { broadcasts_.Queue(key, std::move(msg)); }

  void Send(const std::string& addr, std::vector<wire::Message> msgs);
  void SendRaw(const std::string& addr, const std::vector<wire::Message>& msgs);
  void SendToAllLive(const wire::Message& msg);
  void GossipTick();
  void FinishLeave();

  // ---- anti-entropy -------------------------------------------------------

  wire::PushPull LocalState(bool join) const;
  // What two nodes that list the same members with the same incarnations
  // and statuses agree on, whatever else differs (when each saw a change).
  uint64_t TableDigest() const;
  // The periodic exchange: a digest first, the tables only when they differ.
  void DigestPushPull(const std::string& addr);
  std::string JoinRefusal(const wire::PushPull& pp) const;
  // Why the joiner and the cluster cannot run together, or "". `we_join`:
  // pp is the cluster's answer to our join; else pp is a joiner's request.
  std::string ProtocolRefusal(const wire::PushPull& pp, bool we_join = false) const;
  Bytes Encode(const wire::StreamReply& reply) const {
    return wire::EncodeStreamReply(cfg_.cluster, reply, cfg_.protocol.speak);
  }
  wire::Alive AliveOf(const MemberRecord& v) const {
    return wire::Alive{v.name, v.addr, v.incarnation, v.tags, v.protocol_min, v.protocol_max, v.protocol_cur,
                       v.release};
  }
  void MergeRemote(const wire::PushPull& pp);

  // Sends one stream request and decodes the reply; a refusal or a bad reply
  // arrives as a failed status.
  void Exchange(const std::string& addr, wire::StreamRequest request, Duration timeout,
                std::function<void(Result<wire::StreamReply>)> done);
  void PushPullWith(const std::string& addr, bool join, std::function<void(Status)> done);
  void PushPullTick();
  void ReconnectTick();
  void ReapTick();

  // ---- bookkeeping --------------------------------------------------------

  Member& AddMember(Member m);
  void RemoveMember(const std::string& name);

  template <typename Filter>
  std::vector<Member*> RandomNodes(int k, Filter filter) {
    return Draw(static_cast<size_t>(k), 3 * nodes_.size(), rng_, filter);
  }
  // Up to k distinct members that pass `filter`, from at most `tries`
  // random draws.
  template <class F>
  std::vector<Member*> Draw(size_t k, size_t tries, Random& random, const F& filter) const {
    std::vector<Member*> out;
    for (size_t i = 0; i < tries && out.size() < k && !nodes_.empty(); ++i) {
      Member* m = nodes_[random.Uniform(nodes_.size())];
      if (!filter(*m) || std::find(out.begin(), out.end(), m) != out.end()) continue;
      out.push_back(m);
    }
    return out;
  }

  // News of a member joining or leaving arrives by rumour, and a rumour that
  // runs out of retransmits misses about exp(-limit) of the members; memberlist
  // leaves them to the next periodic push-pull (the long tail of a join wave).
  // After such news, each node does one extra push-pull a little later, once
  // the wave has had time to settle, at most once per push_pull_interval / 4.
  void ScheduleChurnPushPull();

  void Emit(EventType type, const Member& m) { Emit(type, m.view()); }
  void Emit(EventType type, const MemberRecord& v);

  // ---- the keyring envelope -------------------------------------------------

  bool keyed() const { return cfg_.keyring && cfg_.keyring->enabled(); }
  size_t Overhead() const { return wire::EnvelopeOverhead(cfg_.cluster) + (keyed() ? Keyring::kOverhead : 0); }
  Bytes Seal(Bytes clear) const { return keyed() ? cfg_.keyring->Encrypt(clear, clock_.WallMicros()) : clear; }

  enum class Opened { kOk, kClear, kAuth, kSealed, kReplayed, kOutOfWindow };
  // Opens an inbound frame: `out` views the clear bytes (`in` itself when the
  // cluster runs in the clear, else the decrypted copy in `storage`).
  // Anything but kOk is counted, logged (rate-limited) and must be dropped.
  Opened Unseal(const std::string& from, ByteView in, Bytes& storage, ByteView& out);
  Bytes KeyRefusal(std::string why);
  const std::string& ReplyAddress(const std::string& from, const std::string& named);
  void Bad(const wire::BadInput& bad, const std::string& from);

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
    std::function<void(const wire::Ack&)> on_ack;
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

  std::map<Atom, Member, std::less<>> members_;
  std::vector<Member*> nodes_;
  Member* self_ = nullptr;

  std::vector<Atom> probe_order_;
  size_t probe_pos_ = 0;
  uint32_t seq_ = 0;
  std::unordered_map<uint32_t, AckHandler> acks_;
  // Vivaldi: ours, moved by each direct probe's round trip (each member's
  // is kept in its Member).
  // Its own random source, seeded from the name: the protocol's stream of
  // choices stays what it was before coordinates (the simulator's seeds).
  SeededRandom coord_rng_{std::hash<std::string>{}(cfg_.name)};
  CoordinateClient coords_{coord_rng_};
  int health_ = 0;

  bool started_ = false, shutdown_ = false, leaving_ = false, left_ = false;
  Time leave_deadline_{};
  std::vector<std::function<void()>> leave_waiters_;

  std::unordered_set<Clock::TimerId> timers_;
  Clock::TimerId probe_timer_ = 0, gossip_timer_ = 0, push_pull_timer_ = 0, reap_timer_ = 0, reconnect_timer_ = 0;
  Clock::TimerId churn_timer_ = 0;
  Time last_churn_push_pull_{-std::chrono::hours(1)};

  mutable Counters counters_;
  uint64_t epoch_ = 0;  // events emitted
  ReplayGuard replay_{cfg_.frame_window};
  uint64_t* sent_[wire::kMessageTypes] = {};
  uint64_t* received_[wire::kMessageTypes] = {};
  uint64_t* bytes_sent_ = nullptr;
  uint64_t* bytes_received_ = nullptr;
  // What the layer above sends, by the first byte of its payload (its
  // channel): datagram messages, their bytes, and stream bytes both ways.
  static constexpr size_t kUserTags = 8;
  struct UserTally {
    uint64_t* messages = nullptr;
    uint64_t* bytes = nullptr;
    uint64_t* stream_bytes = nullptr;
  };
  UserTally user_sent_[kUserTags];
  UserTally& UserSent(ByteView data) { return user_sent_[data.empty() || data[0] >= kUserTags ? 0 : data[0]]; }

  Time log_window_start_{};
  int log_in_window_ = 0;
  int log_suppressed_ = 0;
};

}  // namespace starling::membership

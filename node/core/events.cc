#include "events.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include <capnp/message.h>
#include <spdlog/spdlog.h>

#include "schema/events.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/membership/user_channels.h"
#include "starling/text.h"

namespace starling::node {

namespace ew = ::starling::eventwire;
using capnp_bytes::Str;
using membership::Channel;

namespace {

constexpr uint16_t kFormat = 1;
constexpr size_t kMaxName = 128;
constexpr size_t kMaxRegex = 256;
constexpr size_t kMaxFilters = 32;
constexpr size_t kMaxNodes = 256;
constexpr size_t kMaxHeard = 64;  // a retry names at most this many; more and it is not sent
// Encoded messages stay under a datagram: the payload caps plus room for the rest.
constexpr size_t kMaxWire = 8192;
constexpr Duration kMinTimeout = std::chrono::milliseconds(100);
constexpr Duration kMaxTimeout = std::chrono::minutes(10);

std::string Bytes2Str(capnp::Data::Reader d) { return std::string(reinterpret_cast<const char*>(d.begin()), d.size()); }
capnp::Data::Reader Str2Data(const std::string& s) {
  return capnp::Data::Reader(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

bool GoodName(const std::string& s, size_t max = kMaxName) { return !s.empty() && s.size() <= max && text::IsCleanName(s); }

Status CheckName(const std::string& what, const std::string& name) {
  if (name.empty()) return Status::InvalidArgument(what + " name is empty");
  if (name.size() > kMaxName)
    return Status::InvalidArgument(what + " name is " + std::to_string(name.size()) + " bytes; at most " +
                                   std::to_string(kMaxName));
  if (!text::IsCleanName(name))
    return Status::InvalidArgument(what + " name '" + text::Printable(name, true) +
                                   "' is not UTF-8 without control characters");
  return Status::Ok();
}

std::optional<std::regex> Compile(const std::string& pattern) {
  if (pattern.size() > kMaxRegex) return std::nullopt;
  try {
    return std::regex(pattern, std::regex::ECMAScript);
  } catch (const std::regex_error&) {
    return std::nullopt;
  }
}

// Queries and responses share the channel; a leading byte tells them apart.
constexpr uint8_t kQueryKind = 'q';
constexpr uint8_t kResponseKind = 'r';

}  // namespace

Result<TagFilter> ParseTagFilter(const std::string& text) {
  const size_t eq = text.find('=');
  if (eq == std::string::npos || eq == 0)
    return Status::InvalidArgument("tag filter '" + text + "' is not KEY=REGEX");
  TagFilter f{text.substr(0, eq), text.substr(eq + 1)};
  if (f.regex.size() > kMaxRegex)
    return Status::InvalidArgument("tag filter '" + f.key + "': the regex is longer than " + std::to_string(kMaxRegex) +
                                   " bytes");
  try {
    std::regex re(f.regex, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return Status::InvalidArgument("tag filter '" + text + "': not a regular expression: " + e.what());
  }
  return f;
}

bool MatchesFilters(const std::string& name, const membership::Tags& tags, const std::vector<std::string>& nodes,
                    const std::vector<TagFilter>& filters) {
  if (!nodes.empty() && std::find(nodes.begin(), nodes.end(), name) == nodes.end()) return false;
  for (const TagFilter& f : filters) {
    auto it = tags.find(f.key);
    if (it == tags.end()) return false;
    std::optional<std::regex> re = Compile(f.regex);
    if (!re) return false;
    try {
      if (!std::regex_match(it->second, *re)) return false;
    } catch (const std::regex_error&) {
      return false;  // too complex to match: no member passes it
    }
  }
  return true;
}

// ---- codecs ----------------------------------------------------------------------------------

Bytes EncodeUserEvent(const UserEvent& e) {
  capnp::MallocMessageBuilder mb;
  auto b = mb.initRoot<ew::UserEvent>();
  b.setFormatVersion(kFormat);
  b.setLtime(e.ltime);
  b.setName(e.name);
  b.setPayload(Str2Data(e.payload));
  b.setCoalesce(e.coalesce);
  return capnp_bytes::Flat(mb);
}

Result<UserEvent> DecodeUserEvent(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<UserEvent>(
      bytes, kMaxWire, "user event", [](capnp::FlatArrayMessageReader& reader) -> Result<UserEvent> {
        auto r = reader.getRoot<ew::UserEvent>();
        if (r.getFormatVersion() != kFormat)
          return Status::Corruption("user event format " + std::to_string(r.getFormatVersion()));
        UserEvent e{Str(r.getName()), Bytes2Str(r.getPayload()), r.getLtime(), r.getCoalesce()};
        if (!GoodName(e.name) || e.name.size() + e.payload.size() > kMaxEventBytes)
          return Status::Corruption("user event with a bad name or too large");
        return e;
      });
}

bool QueryMessage::operator==(const QueryMessage& o) const {
  return id == o.id && ltime == o.ltime && origin == o.origin && origin_addr == o.origin_addr &&
         params.name == o.params.name && params.payload == o.params.payload && params.nodes == o.params.nodes &&
         params.tags == o.params.tags && params.timeout == o.params.timeout && params.no_ack == o.params.no_ack &&
         params.relay_factor == o.params.relay_factor && attempt == o.attempt && heard == o.heard;
}

Bytes EncodeQuery(const QueryMessage& q) {
  capnp::MallocMessageBuilder mb;
  auto b = mb.initRoot<ew::Query>();
  b.setFormatVersion(kFormat);
  b.setId(q.id);
  b.setLtime(q.ltime);
  b.setOrigin(q.origin);
  b.setOriginAddr(q.origin_addr);
  b.setName(q.params.name);
  b.setPayload(Str2Data(q.params.payload));
  auto nodes = b.initNodes(static_cast<unsigned>(q.params.nodes.size()));
  for (unsigned i = 0; i < nodes.size(); ++i) nodes.set(i, q.params.nodes[i]);
  auto tags = b.initTags(static_cast<unsigned>(q.params.tags.size()));
  for (unsigned i = 0; i < tags.size(); ++i) {
    tags[i].setKey(q.params.tags[i].key);
    tags[i].setRegex(q.params.tags[i].regex);
  }
  b.setTimeoutMs(static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::milliseconds>(q.params.timeout).count()));
  b.setNoAck(q.params.no_ack);
  b.setRelayFactor(static_cast<uint8_t>(q.params.relay_factor));
  b.setAttempt(static_cast<uint8_t>(q.attempt));
  auto heard = b.initHeard(static_cast<unsigned>(q.heard.size()));
  for (unsigned i = 0; i < heard.size(); ++i) heard.set(i, q.heard[i]);
  return capnp_bytes::Flat(mb);
}

Result<QueryMessage> DecodeQuery(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<QueryMessage>(
      bytes, kMaxWire, "query", [](capnp::FlatArrayMessageReader& reader) -> Result<QueryMessage> {
        auto r = reader.getRoot<ew::Query>();
        if (r.getFormatVersion() != kFormat) return Status::Corruption("query format " + std::to_string(r.getFormatVersion()));
        QueryMessage q;
        q.id = r.getId();
        q.ltime = r.getLtime();
        q.origin = Str(r.getOrigin());
        q.origin_addr = Str(r.getOriginAddr());
        q.params.name = Str(r.getName());
        q.params.payload = Bytes2Str(r.getPayload());
        if (!GoodName(q.origin) || !GoodName(q.origin_addr) || !GoodName(q.params.name) ||
            q.params.name.size() + q.params.payload.size() > kMaxQueryBytes)
          return Status::Corruption("query with a bad name, origin or size");
        if (r.getNodes().size() > kMaxNodes || r.getTags().size() > kMaxFilters || r.getHeard().size() > kMaxHeard)
          return Status::Corruption("query with too many filters");
        for (auto n : r.getNodes()) {
          std::string s = Str(n);
          if (!GoodName(s)) return Status::Corruption("query with a bad node filter");
          q.params.nodes.push_back(std::move(s));
        }
        for (auto t : r.getTags()) {
          TagFilter f{Str(t.getKey()), Str(t.getRegex())};
          if (!GoodName(f.key) || f.regex.size() > kMaxRegex || !text::IsCleanText(f.regex))
            return Status::Corruption("query with a bad tag filter");
          q.params.tags.push_back(std::move(f));
        }
        q.params.timeout = std::chrono::milliseconds(r.getTimeoutMs());
        if (q.params.timeout < kMinTimeout || q.params.timeout > kMaxTimeout)
          return Status::Corruption("query with a timeout out of range");
        q.params.no_ack = r.getNoAck();
        q.params.relay_factor = r.getRelayFactor();
        if (q.params.relay_factor > kMaxRelayFactor) return Status::Corruption("query with too large a relay factor");
        q.attempt = r.getAttempt();
        for (auto n : r.getHeard()) {
          std::string s = Str(n);
          if (!GoodName(s)) return Status::Corruption("query with a bad name heard");
          q.heard.push_back(std::move(s));
        }
        return q;
      });
}

Bytes EncodeQueryResponse(const QueryResponseMessage& m) {
  capnp::MallocMessageBuilder mb;
  auto b = mb.initRoot<ew::QueryResponse>();
  b.setFormatVersion(kFormat);
  b.setId(m.id);
  b.setLtime(m.ltime);
  b.setOrigin(m.origin);
  b.setFrom(m.from);
  b.setAck(m.ack);
  b.setPayload(Str2Data(m.payload));
  b.setRelayTo(m.relay_to);
  return capnp_bytes::Flat(mb);
}

Result<QueryResponseMessage> DecodeQueryResponse(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<QueryResponseMessage>(
      bytes, kMaxWire, "query response", [](capnp::FlatArrayMessageReader& reader) -> Result<QueryResponseMessage> {
        auto r = reader.getRoot<ew::QueryResponse>();
        if (r.getFormatVersion() != kFormat)
          return Status::Corruption("query response format " + std::to_string(r.getFormatVersion()));
        QueryResponseMessage m{r.getId(), r.getLtime(), Str(r.getOrigin()), Str(r.getFrom()),
                               r.getAck(), Bytes2Str(r.getPayload()), Str(r.getRelayTo())};
        if (!GoodName(m.origin) || !GoodName(m.from) || m.payload.size() > kMaxResponseBytes ||
            (m.ack && !m.payload.empty()) || (!m.relay_to.empty() && !GoodName(m.relay_to)))
          return Status::Corruption("query response with a bad name or size");
        return m;
      });
}

namespace {
Bytes Framed(uint8_t kind, Bytes b) {
  b.insert(b.begin(), kind);
  return b;
}
std::string QueryKey(const QueryMessage& q) {
  return "q/" + q.origin + "/" + std::to_string(q.id) + "/" + std::to_string(q.attempt);
}
}  // namespace

Duration DefaultQueryTimeout(const membership::Memberlist& members) {
  const double n = static_cast<double>(members.NumAlive());
  const auto mult = static_cast<int64_t>(std::max(1.0, std::ceil(std::log10(n + 1))));
  return std::max<Duration>(kMinTimeout, members.config().timing.gossip_interval * 16 * mult);
}

// ---- user events -----------------------------------------------------------------------------

UserEvents::UserEvents(membership::UserChannels& channels, Clock& clock, Deliver deliver)
    : channels_(channels), time_(clock), deliver_(std::move(deliver)) {
  channels_.On(Channel::kEvents, [this](const std::string& from, ByteView data) { HandlePacket(from, data); });
}

UserEvents::~UserEvents() { channels_.On(Channel::kEvents, nullptr); }

Result<uint64_t> UserEvents::Send(const std::string& name, const std::string& payload, bool coalesce) {
  if (Status s = CheckName("event", name); !s.ok()) return s;
  if (name.size() + payload.size() > kMaxEventBytes)
    return Status::InvalidArgument("event '" + name + "' is " + std::to_string(name.size() + payload.size()) +
                                   " bytes (name and payload); at most " + std::to_string(kMaxEventBytes));
  UserEvent e{name, payload, clock_.Increment(), coalesce};
  Remember(e);
  ++counts_.sent;
  channels_.Broadcast(Channel::kEvents, "e/" + std::to_string(e.ltime) + "/" + name, EncodeUserEvent(e));
  if (deliver_) deliver_(e);
  return e.ltime;
}

bool UserEvents::Remember(const UserEvent& e) {
  const Time now = time_.Now();
  while (!arrivals_.empty() && (arrivals_.front().first + kEventMemory < now || arrivals_.size() >= kMaxRemembered)) {
    seen_.erase(arrivals_.front().second);
    arrivals_.pop_front();
  }
  std::string key = std::to_string(e.ltime) + std::string(1, '\0') + e.name + std::string(1, '\0') + e.payload;
  if (!seen_.insert(key).second) return false;
  arrivals_.emplace_back(now, std::move(key));
  return true;
}

void UserEvents::HandlePacket(const std::string& from, ByteView data) {
  Result<UserEvent> e = DecodeUserEvent(data);
  if (!e.ok()) {
    ++counts_.rejected;
    spdlog::warn("dropped a user event from {}: {}", from, e.status().message());
    return;
  }
  clock_.Witness(e->ltime);
  if (!Remember(*e)) {
    ++counts_.duplicates;
    return;
  }
  ++counts_.received;
  // Handed on by every member that takes it: a receiver hears it from many.
  channels_.Broadcast(Channel::kEvents, "e/" + std::to_string(e->ltime) + "/" + e->name, Bytes(data.begin(), data.end()));
  if (deliver_) deliver_(*e);
}

// ---- queries ---------------------------------------------------------------------------------

struct Queries::Pending {
  QueryMessage query;
  Time started{};
  OnArrival arrival;
  OnDone done;
  std::set<std::string> acked, answered;
  std::vector<std::string> matched;
  std::vector<Clock::TimerId> timers;
};

// A query this member took: for de-duplication and for answering a retry again.
struct Queries::Seen {
  Time expires{};
  bool matched = false;
  bool responded = false;
  std::string response;
  QueryMessage query;
};

Queries::Queries(membership::UserChannels& channels, Clock& clock, Random& random, Deliver deliver)
    : channels_(channels), clock_(clock), random_(random), deliver_(std::move(deliver)),
      // From the wall clock, not the random source: ids differ across restarts
      // without taking a draw from the stream the other protocols share.
      next_id_(static_cast<uint32_t>(clock.WallMicros() / 1000)) {
  channels_.On(Channel::kQuery, [this](const std::string& from, ByteView data) { HandlePacket(from, data); });
}

Queries::~Queries() {
  *alive_ = false;
  channels_.On(Channel::kQuery, nullptr);
  for (auto& [id, p] : pending_)
    for (Clock::TimerId t : p->timers) clock_.Cancel(t);
}

Result<uint32_t> Queries::Ask(QueryParams params, OnArrival arrival, OnDone done) {
  if (Status s = CheckName("query", params.name); !s.ok()) return s;
  if (params.name.rfind("_", 0) == 0 && params.name != kPingQuery)
    return Status::InvalidArgument("query name '" + params.name + "': names starting with '_' are kept for Starling's own");
  if (params.name.size() + params.payload.size() > kMaxQueryBytes)
    return Status::InvalidArgument("query '" + params.name + "' is " +
                                   std::to_string(params.name.size() + params.payload.size()) +
                                   " bytes (name and payload); at most " + std::to_string(kMaxQueryBytes));
  if (params.relay_factor < 0 || params.relay_factor > kMaxRelayFactor)
    return Status::InvalidArgument("relay factor " + std::to_string(params.relay_factor) + " is not in 0.." +
                                   std::to_string(kMaxRelayFactor));
  if (params.nodes.size() > kMaxNodes || params.tags.size() > kMaxFilters)
    return Status::InvalidArgument("a query takes at most " + std::to_string(kMaxNodes) + " --node and " +
                                   std::to_string(kMaxFilters) + " --tag filters");
  for (const std::string& n : params.nodes)
    if (Status s = CheckName("--node", n); !s.ok()) return s;
  for (const TagFilter& f : params.tags) {
    Result<TagFilter> ok = ParseTagFilter(f.key + "=" + f.regex);
    if (!ok.ok()) return ok.status();
  }
  if (params.timeout == Duration::zero()) params.timeout = DefaultQueryTimeout(channels_.list());
  if (params.timeout < kMinTimeout || params.timeout > kMaxTimeout)
    return Status::InvalidArgument("query timeout must be between 100 ms and 10 minutes");

  auto p = std::make_unique<Pending>();
  const membership::MemberView self = channels_.list().Self();
  p->query.id = next_id_++;
  p->query.ltime = lclock_.Increment();
  p->query.origin = self.name;
  p->query.origin_addr = self.addr;
  p->query.params = std::move(params);
  p->started = clock_.Now();
  p->arrival = std::move(arrival);
  p->done = std::move(done);
  for (const membership::MemberView& m : channels_.list().Members())
    if ((m.status == membership::MemberStatus::kAlive || m.status == membership::MemberStatus::kSuspect) &&
        MatchesFilters(m.name, m.tags, p->query.params.nodes, p->query.params.tags))
      p->matched.push_back(m.name);
  const uint32_t id = p->query.id;
  const Duration timeout = p->query.params.timeout;
  std::weak_ptr<bool> alive = alive_;
  p->timers.push_back(clock_.Schedule(timeout, [this, alive, id] {
    if (alive.lock()) Finish(id);
  }));
  for (int attempt : {1, 2})
    p->timers.push_back(clock_.Schedule(timeout * attempt / 3, [this, alive, id, attempt] {
      if (alive.lock()) Retry(id, attempt);
    }));
  QueryMessage q = p->query;
  pending_[id] = std::move(p);
  ++counts_.asked;
  channels_.Broadcast(Channel::kQuery, QueryKey(q), Framed(kQueryKind, EncodeQuery(q)));
  HandleQuery(q);  // this member answers its own query too, as in Serf
  return id;
}

void Queries::Retry(uint32_t id, int attempt) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending& p = *it->second;
  // Whom the asker still waits for: answered if a handler could answer, else acked.
  const std::set<std::string>& heard = p.query.params.no_ack ? p.answered : p.acked;
  bool missing = false;
  for (const std::string& m : p.matched) missing = missing || !heard.count(m);
  if (!missing || heard.size() > kMaxHeard) return;
  QueryMessage q = p.query;
  q.attempt = attempt;
  q.heard.assign(heard.begin(), heard.end());
  channels_.Broadcast(Channel::kQuery, QueryKey(q), Framed(kQueryKind, EncodeQuery(q)));
}

void Queries::Finish(uint32_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  std::unique_ptr<Pending> p = std::move(it->second);
  pending_.erase(it);
  for (Clock::TimerId t : p->timers) clock_.Cancel(t);
  QuerySummary s;
  s.id = id;
  s.ltime = p->query.ltime;
  s.timeout = p->query.params.timeout;
  s.acked.assign(p->acked.begin(), p->acked.end());
  s.answered.assign(p->answered.begin(), p->answered.end());
  s.matched = p->matched;
  for (const std::string& m : p->matched)
    if (!p->acked.count(m) && !p->answered.count(m)) s.silent.push_back(m);
  if (p->done) p->done(s);
}

void Queries::HandlePacket(const std::string& from, ByteView data) {
  if (data.empty()) {
    ++counts_.rejected;
    return;
  }
  const uint8_t kind = data[0];
  ByteView body = data.subspan(1);
  if (kind == kQueryKind) {
    Result<QueryMessage> q = DecodeQuery(body);
    if (!q.ok()) {
      ++counts_.rejected;
      spdlog::warn("dropped a query from {}: {}", from, q.status().message());
      return;
    }
    return HandleQuery(*q);
  }
  if (kind == kResponseKind) {
    Result<QueryResponseMessage> r = DecodeQueryResponse(body);
    if (!r.ok()) {
      ++counts_.rejected;
      spdlog::warn("dropped a query response from {}: {}", from, r.status().message());
      return;
    }
    return HandleResponse(from, std::move(*r));
  }
  ++counts_.rejected;
  spdlog::warn("dropped a query message of unknown kind {} from {}", static_cast<int>(kind), from);
}

void Queries::HandleQuery(const QueryMessage& q) {
  lclock_.Witness(q.ltime);
  const Time now = clock_.Now();
  // Forget what expired (a query is answered only within its timeout).
  for (auto it = seen_.begin(); it != seen_.end();) it = it->second->expires < now ? seen_.erase(it) : std::next(it);
  const membership::MemberView self = channels_.list().Self();
  const auto key = std::make_pair(q.origin, q.id);
  auto it = seen_.find(key);
  const bool first_of_attempt = it == seen_.end() || it->second->query.attempt < q.attempt;
  if (it != seen_.end() && !first_of_attempt) return;  // a copy
  // Re-broadcast each attempt once (the asker's own is already queued).
  if (q.origin != self.name) channels_.Broadcast(Channel::kQuery, QueryKey(q), Framed(kQueryKind, EncodeQuery(q)));
  if (it != seen_.end()) {
    // A retry of a query taken before: answer again unless the asker heard us.
    Seen& s = *it->second;
    s.query.attempt = q.attempt;
    if (!s.matched || std::find(q.heard.begin(), q.heard.end(), self.name) != q.heard.end()) return;
    QueryResponseMessage r{q.id, q.ltime, q.origin, self.name, true, "", ""};
    if (!q.params.no_ack) Send(q, r);
    if (s.responded) {
      r.ack = false;
      r.payload = s.response;
      Send(q, r);
    }
    return;
  }
  ++counts_.received;
  auto seen = std::make_unique<Seen>();
  seen->expires = now + q.params.timeout;
  seen->query = q;
  seen->matched = MatchesFilters(self.name, self.tags, q.params.nodes, q.params.tags);
  Seen* s = seen.get();
  seen_[key] = std::move(seen);
  if (!s->matched) return;
  if (!q.params.no_ack) Send(q, QueryResponseMessage{q.id, q.ltime, q.origin, self.name, true, "", ""});
  if (q.params.name == kPingQuery || !deliver_) return;
  QueryEvent event{q.params.name, q.params.payload, q.origin, q.ltime, q.id, q.params.timeout};
  std::weak_ptr<bool> alive = alive_;
  deliver_(event, [this, alive, key, q, name = self.name](std::string output) {
    if (!alive.lock()) return;
    auto it = seen_.find(key);
    if (it == seen_.end() || it->second->responded) return;  // expired, or answered already
    if (output.size() > kMaxResponseBytes) {
      ++counts_.truncated;
      spdlog::warn("the response to query '{}' from {} is {} bytes; sending the first {}", q.params.name, q.origin,
                   output.size(), kMaxResponseBytes);
      output.resize(kMaxResponseBytes);
    }
    it->second->responded = true;
    it->second->response = output;
    ++counts_.answered;
    Send(q, QueryResponseMessage{q.id, q.ltime, q.origin, name, false, std::move(output), ""});
  });
}

void Queries::Send(const QueryMessage& q, QueryResponseMessage r) {
  auto frame = [](const QueryResponseMessage& m) { return Framed(kResponseKind, EncodeQueryResponse(m)); };
  const membership::MemberView self = channels_.list().Self();
  if (q.origin == self.name) {
    HandleResponse(self.addr, std::move(r));
    return;
  }
  channels_.SendPacket(Channel::kQuery, q.origin_addr, frame(r));
  if (q.params.relay_factor <= 0) return;
  // Relays: live members other than us and the asker, picked at random.
  std::vector<membership::MemberView> peers;
  for (membership::MemberView& m : channels_.list().Members())
    if (m.status == membership::MemberStatus::kAlive && m.name != self.name && m.name != q.origin)
      peers.push_back(std::move(m));
  r.relay_to = q.origin_addr;
  for (int i = 0; i < q.params.relay_factor && !peers.empty(); ++i) {
    const size_t pick = random_.Uniform(peers.size());
    channels_.SendPacket(Channel::kQuery, peers[pick].addr, frame(r));
    peers.erase(peers.begin() + static_cast<std::ptrdiff_t>(pick));
  }
}

void Queries::HandleResponse(const std::string& from, QueryResponseMessage r) {
  const membership::MemberView self = channels_.list().Self();
  if (!r.relay_to.empty()) {
    // Forward only towards the address the asker has as a member: a relay is
    // never a way to send datagrams at whoever a packet names.
    std::optional<std::string> addr = channels_.list().AddrOf(r.origin);
    if (!addr || *addr != r.relay_to || r.origin == self.name) {
      ++counts_.rejected;
      spdlog::warn("dropped a query relay from {} towards {}: not {}'s address", from, r.relay_to, r.origin);
      return;
    }
    ++counts_.relayed;
    const std::string to = r.relay_to;
    r.relay_to.clear();
    channels_.SendPacket(Channel::kQuery, to, Framed(kResponseKind, EncodeQueryResponse(r)));
    return;
  }
  if (r.origin != self.name) return;
  auto it = pending_.find(r.id);
  if (it == pending_.end() || it->second->query.ltime != r.ltime) return;  // finished, or not ours
  Pending& p = *it->second;
  if (r.ack && p.query.params.no_ack) return;
  std::set<std::string>& heard = r.ack ? p.acked : p.answered;
  if (!heard.insert(r.from).second) return;
  if (p.arrival) p.arrival(QueryArrival{r.from, r.ack, std::move(r.payload), clock_.Now() - p.started});
}

}  // namespace starling::node

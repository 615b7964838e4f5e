#include "codec.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>

#include "schema/gossip.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/text.h"

namespace starling::membership::wire {
namespace {

namespace cw = ::starling::wire;

template <typename... Fs>
struct Overloaded : Fs... {
  using Fs::operator()...;
};
// Spelled out for compilers without C++20's aggregate deduction (clang < 17).
template <typename... Fs>
Overloaded(Fs...) -> Overloaded<Fs...>;

using capnp_bytes::Aligned;
using capnp_bytes::Limits;
using capnp_bytes::Str;
Bytes ToBytes(capnp::MessageBuilder& mb) { return capnp_bytes::Flat(mb); }

void SetTags(capnp::List<cw::Tag>::Builder out, const Tags& tags) {
  unsigned i = 0;
  for (const auto& [k, v] : tags) {
    out[i].setKey(k);
    out[i].setValue(v);
    ++i;
  }
}

// Returns an error text or "" when fine.
std::string ReadTags(capnp::List<cw::Tag>::Reader in, Tags& out) {
  if (in.size() > kMaxTags) return "too many tags (" + std::to_string(in.size()) + ")";
  for (auto t : in) {
    if (t.getKey().size() + t.getValue().size() > kMaxTagBytes) return "tag too large";
    std::string key = Str(t.getKey()), value = Str(t.getValue());
    if (!text::IsCleanName(key) || !text::IsCleanText(value)) return "tag is not clean UTF-8";
    out[std::move(key)] = std::move(value);
  }
  return "";
}

std::string CheckName(const std::string& s, const char* what) {
  if (s.size() > kMaxNameBytes) return std::string(what) + " too long";
  if (!text::IsCleanName(s)) return std::string(what) + " is not clean UTF-8";
  return "";
}
std::string CheckRelease(const std::string& s) {
  if (s.size() > kMaxReleaseBytes) return "release too long";
  if (!text::IsCleanName(s)) return "release is not clean UTF-8";
  return "";
}
// Protocol 1 nodes leave the spoken version unset: they speak their max.
uint16_t SpokenVersion(uint16_t cur, uint16_t max) { return cur == 0 ? max : cur; }
std::string CheckAddr(const std::string& s) {
  if (s.size() > kMaxAddrBytes) return "address too long";
  if (!text::IsCleanName(s)) return "address is not clean UTF-8";
  return "";
}

// A peer's free text for our log: bounded, and replaced when not clean.
std::string Printable(capnp::Text::Reader t) {
  std::string s = Str(t).substr(0, 1024);
  return text::IsCleanText(s) ? s : "(not clean UTF-8)";
}

struct InvalidField {
  std::string what;
};

void Require(const std::string& err) {
  if (!err.empty()) throw InvalidField{err};
}

// Opens the envelope and checks its cluster; `version` gets the sender's
// protocol version, which the caller checks. On success returns the payload,
// copied and aligned.
Decoded<kj::Array<capnp::word>> OpenEnvelope(ByteView bytes, const std::string& cluster, size_t max_bytes,
                                             uint16_t& version) {
  if (bytes.size() > max_bytes) return BadInput{"too_large", std::to_string(bytes.size()) + " bytes"};
  if (bytes.size() < sizeof(capnp::word) || bytes.size() % sizeof(capnp::word) != 0)
    return BadInput{"decode", "length " + std::to_string(bytes.size()) + " is not a whole number of words"};
  auto words = Aligned(bytes);
  capnp::FlatArrayMessageReader reader(words, Limits(bytes.size()));
  auto env = reader.getRoot<cw::Envelope>();
  version = env.getVersion();
  auto c = env.getCluster();
  if (c.size() != cluster.size() || std::memcmp(c.begin(), cluster.data(), c.size()) != 0)
    return BadInput{"cluster", "cluster name '" + Str(c).substr(0, 64) + "' is not ours"};
  if (env.getKeyId() != 0) return BadInput{"encrypted", "sealed packet but no keyring configured"};
  auto payload = env.getPayload();
  if (payload.size() < sizeof(capnp::word) || payload.size() % sizeof(capnp::word) != 0)
    return BadInput{"decode", "payload length " + std::to_string(payload.size())};
  return Aligned(ByteView(payload.begin(), payload.size()));
}

Bytes Seal(const std::string& cluster, uint16_t version, capnp::MessageBuilder& inner) {
  auto payload = capnp::messageToFlatArray(inner);
  capnp::MallocMessageBuilder mb(payload.size() + 16 + cluster.size() / 8);
  auto env = mb.initRoot<cw::Envelope>();
  env.setVersion(version);
  env.setCluster(cluster);
  env.setPayload(payload.asBytes());
  return ToBytes(mb);
}

void WriteMessage(cw::Message::Builder out, const Message& m) {
  std::visit(Overloaded{
                 [&](const Ping& p) {
                   auto b = out.initPing();
                   b.setSeqNo(p.seq);
                   b.setTarget(p.target);
                   b.setSourceName(p.source_name);
                   b.setSourceAddr(p.source_addr);
                 },
                 [&](const IndirectPing& p) {
                   auto b = out.initIndirectPing();
                   b.setSeqNo(p.seq);
                   b.setTarget(p.target);
                   b.setTargetAddr(p.target_addr);
                   b.setWantNack(p.want_nack);
                   b.setSourceName(p.source_name);
                   b.setSourceAddr(p.source_addr);
                 },
                 [&](const Ack& a) {
                   auto b = out.initAck();
                   b.setSeqNo(a.seq);
                   if (!a.coordinate) return;
                   auto c = b.initCoordinate();
                   auto vec = c.initVec(static_cast<unsigned>(a.coordinate->vec.size()));
                   for (unsigned i = 0; i < vec.size(); ++i) vec.set(i, static_cast<float>(a.coordinate->vec[i]));
                   c.setError(static_cast<float>(a.coordinate->error));
                   c.setAdjustment(static_cast<float>(a.coordinate->adjustment));
                   c.setHeight(static_cast<float>(a.coordinate->height));
                 },
                 [&](const Nack& a) { out.initNack().setSeqNo(a.seq); },
                 [&](const Alive& a) {
                   auto b = out.initAlive();
                   b.setName(a.name);
                   b.setAddr(a.addr);
                   b.setIncarnation(a.incarnation);
                   SetTags(b.initTags(a.tags.size()), a.tags);
                   b.setProtocolMin(a.protocol_min);
                   b.setProtocolMax(a.protocol_max);
                   b.setProtocolCur(a.protocol_cur);
                   b.setRelease(a.release);
                 },
                 [&](const Suspect& s) {
                   auto b = out.initSuspect();
                   b.setName(s.name);
                   b.setIncarnation(s.incarnation);
                   b.setFrom(s.from);
                 },
                 [&](const Dead& s) {
                   auto b = out.initDead();
                   b.setName(s.name);
                   b.setIncarnation(s.incarnation);
                   b.setFrom(s.from);
                 },
                 [&](const Leave& s) {
                   auto b = out.initLeave();
                   b.setName(s.name);
                   b.setIncarnation(s.incarnation);
                   b.setFrom(s.from);
                   b.setPrune(s.prune);
                 },
                 [&](const User& u) { out.setUser(kj::arrayPtr(u.data.data(), u.data.size())); },
             },
             m);
}

// Suspect and dead carry the same fields: a verdict by `from` on `name`.
template <typename T, typename Reader>
T ReadVerdict(Reader r) {
  // Checked before interned: a bad packet adds nothing to the pool.
  const std::string name = Str(r.getName()), from = Str(r.getFrom());
  Require(CheckName(name, "name"));
  Require(CheckName(from, "from"));
  return T{name, r.getIncarnation(), from};
}

Message ReadMessage(cw::Message::Reader in) {
  switch (in.which()) {
    case cw::Message::PING: {
      auto r = in.getPing();
      Ping p{r.getSeqNo(), Str(r.getTarget()), Str(r.getSourceName()), Str(r.getSourceAddr())};
      Require(CheckName(p.target, "target"));
      Require(CheckName(p.source_name, "source name"));
      Require(CheckAddr(p.source_addr));
      return p;
    }
    case cw::Message::INDIRECT_PING: {
      auto r = in.getIndirectPing();
      IndirectPing p{r.getSeqNo(),    Str(r.getTarget()),     Str(r.getTargetAddr()),
                     r.getWantNack(), Str(r.getSourceName()), Str(r.getSourceAddr())};
      Require(CheckName(p.target, "target"));
      Require(CheckAddr(p.target_addr));
      Require(CheckName(p.source_name, "source name"));
      Require(CheckAddr(p.source_addr));
      return p;
    }
    case cw::Message::ACK: {
      auto r = in.getAck();
      Ack a{r.getSeqNo()};
      if (r.hasCoordinate()) {
        auto c = r.getCoordinate();
        Coordinate coord;
        coord.error = c.getError();
        coord.adjustment = c.getAdjustment();
        coord.height = c.getHeight();
        const bool sized = c.getVec().size() == coord.vec.size();
        for (unsigned i = 0; sized && i < coord.vec.size(); ++i) coord.vec[i] = c.getVec()[i];
        // A bad coordinate costs the coordinate, not the ack: the probe still counts.
        if (sized && coord.Valid()) {
          a.coordinate = coord;
        } else {
          a.bad_coordinate = true;
        }
      }
      return a;
    }
    case cw::Message::NACK:
      return Nack{in.getNack().getSeqNo()};
    case cw::Message::ALIVE: {
      auto r = in.getAlive();
      Alive a;
      const std::string name = Str(r.getName()), addr = Str(r.getAddr()), release = Str(r.getRelease());
      a.incarnation = r.getIncarnation();
      Tags tags;
      Require(ReadTags(r.getTags(), tags));
      a.protocol_min = r.getProtocolMin();
      a.protocol_max = r.getProtocolMax();
      a.protocol_cur = SpokenVersion(r.getProtocolCur(), a.protocol_max);
      Require(CheckRelease(release));
      Require(CheckName(name, "name"));
      Require(CheckAddr(addr));
      if (name.empty()) throw InvalidField{"alive without a name"};
      // Interned only once checked: a bad packet adds nothing to the pools.
      a.name = name;
      a.addr = addr;
      a.tags = tags;
      a.release = release;
      return a;
    }
    case cw::Message::SUSPECT:
      return ReadVerdict<Suspect>(in.getSuspect());
    case cw::Message::DEAD:
      return ReadVerdict<Dead>(in.getDead());
    case cw::Message::LEAVE: {
      auto r = in.getLeave();
      const std::string name = Str(r.getName()), from = Str(r.getFrom());
      Require(CheckName(name, "name"));
      Require(CheckName(from, "from"));
      return Leave{name, r.getIncarnation(), from, r.getPrune()};
    }
    case cw::Message::USER: {
      auto d = in.getUser();
      return User{Bytes(d.begin(), d.end())};
    }
  }
  throw InvalidField{"unknown message type " + std::to_string(static_cast<int>(in.which()))};
}

cw::MemberStatus ToWire(StateStatus s) {
  switch (s) {
    case StateStatus::kAlive: return cw::MemberStatus::ALIVE;
    case StateStatus::kSuspect: return cw::MemberStatus::SUSPECT;
    case StateStatus::kDead: return cw::MemberStatus::DEAD;
    case StateStatus::kLeft: return cw::MemberStatus::LEFT;
  }
  return cw::MemberStatus::DEAD;
}

void WritePushPull(cw::PushPull::Builder b, const PushPull& pp) {
  b.setJoin(pp.join);
  b.setFrom(pp.from);
  b.setDigest(pp.digest);
  b.setDigestOnly(pp.digest_only);
  b.setSame(pp.same);
  auto list = b.initMembers(pp.members.size());
  for (size_t i = 0; i < pp.members.size(); ++i) {
    const auto& m = pp.members[i];
    auto o = list[i];
    o.setName(m.name);
    o.setAddr(m.addr);
    o.setIncarnation(m.incarnation);
    o.setStatus(ToWire(m.status));
    SetTags(o.initTags(m.tags.size()), m.tags);
    o.setProtocolMin(m.protocol_min);
    o.setProtocolMax(m.protocol_max);
    o.setProtocolCur(m.protocol_cur);
    o.setRelease(m.release);
  }
}

PushPull ReadPushPull(cw::PushPull::Reader r) {
  PushPull pp;
  pp.join = r.getJoin();
  pp.from = Str(r.getFrom());
  pp.digest = r.getDigest();
  pp.digest_only = r.getDigestOnly();
  pp.same = r.getSame();
  Require(CheckName(pp.from, "from"));
  auto list = r.getMembers();
  pp.members.reserve(list.size());
  for (auto m : list) {
    MemberState s;
    s.name = Str(m.getName());
    s.addr = Str(m.getAddr());
    Require(CheckName(s.name, "member name"));
    Require(CheckAddr(s.addr));
    if (s.name.empty()) throw InvalidField{"member without a name"};
    s.incarnation = m.getIncarnation();
    switch (m.getStatus()) {
      case cw::MemberStatus::ALIVE: s.status = StateStatus::kAlive; break;
      case cw::MemberStatus::SUSPECT: s.status = StateStatus::kSuspect; break;
      case cw::MemberStatus::DEAD: s.status = StateStatus::kDead; break;
      case cw::MemberStatus::LEFT: s.status = StateStatus::kLeft; break;
      default: throw InvalidField{"unknown member status"};
    }
    Require(ReadTags(m.getTags(), s.tags));
    s.protocol_min = m.getProtocolMin();
    s.protocol_max = m.getProtocolMax();
    s.protocol_cur = SpokenVersion(m.getProtocolCur(), s.protocol_max);
    s.release = Str(m.getRelease());
    Require(CheckRelease(s.release));
    pp.members.push_back(std::move(s));
  }
  return pp;
}

// Runs `fn` over the decoded payload, turning every failure into BadInput.
// An envelope of a version outside `protocol`'s range is refused before its
// payload is read, unless `any_version` lets the payload decide (a refusal
// must reach a joiner whatever it speaks).
template <typename T, typename Fn>
Decoded<T> Guarded(ByteView bytes, const std::string& cluster, size_t max_bytes, const Protocol& protocol, Fn fn,
                   bool (*any_version)(const T&) = nullptr) {
  try {
    uint16_t version = 0;
    auto opened = OpenEnvelope(bytes, cluster, max_bytes, version);
    if (auto* bad = std::get_if<BadInput>(&opened)) return *bad;
    const bool understood = protocol.Understands(version);
    BadInput foreign{"version",
                     "protocol version " + std::to_string(version) + ", this node understands " +
                         RangeText(protocol.min, protocol.max),
                     version};
    if (!understood && any_version == nullptr) return foreign;
    auto& words = std::get<kj::Array<capnp::word>>(opened);
    capnp::FlatArrayMessageReader reader(words, Limits(words.size() * sizeof(capnp::word)));
    T out = fn(reader);
    if (!understood && !any_version(out)) return foreign;
    return out;
  } catch (const kj::Exception& e) {
    return BadInput{"decode", std::string(e.getDescription().cStr()).substr(0, 200)};
  } catch (const InvalidField& e) {
    return BadInput{"invalid", e.what};
  } catch (const std::exception& e) {
    return BadInput{"decode", e.what()};
  }
}

size_t TextSize(const std::string& s) { return 8 + ((s.size() + 1 + 7) & ~size_t{7}); }

}  // namespace

const char* MessageTypeName(const Message& m) {
  static const char* kNames[] = {"ping", "indirect_ping", "ack", "nack", "alive", "suspect", "dead", "leave", "user"};
  return kNames[m.index()];
}

size_t EstimateSize(const Message& m) {
  // List element pointer + union struct + the variant's struct header and data.
  size_t n = 8 + 16 + 32;
  std::visit(Overloaded{
                 [&](const Ping& p) { n += TextSize(p.target) + TextSize(p.source_name) + TextSize(p.source_addr); },
                 [&](const IndirectPing& p) {
                   n += TextSize(p.target) + TextSize(p.target_addr) + TextSize(p.source_name) +
                        TextSize(p.source_addr);
                 },
                 [&](const Ack& a) { n += a.coordinate ? 16 + 8 + 8 * 4 + 8 : 0; },
                 [&](const Nack&) {},
                 [&](const Alive& a) {
                   n += TextSize(a.name) + TextSize(a.addr) + TextSize(a.release) + 8;
                   for (const auto& [k, v] : a.tags) n += 16 + TextSize(k) + TextSize(v);
                 },
                 [&](const Suspect& s) { n += TextSize(s.name) + TextSize(s.from); },
                 [&](const Dead& s) { n += TextSize(s.name) + TextSize(s.from); },
                 [&](const Leave& s) { n += TextSize(s.name) + TextSize(s.from); },
                 [&](const User& u) { n += 8 + ((u.data.size() + 7) & ~size_t{7}); },
             },
             m);
  return n;
}

size_t EnvelopeOverhead(const std::string& cluster) {
  // Segment tables of both messages, envelope struct, cluster text, payload
  // pointer and the packet's list header.
  return 8 + 8 + 48 + TextSize(cluster) + 8 + 16 + 16;
}

Bytes EncodePacket(const std::string& cluster, const std::vector<Message>& messages, uint16_t version) {
  capnp::MallocMessageBuilder mb;
  auto list = mb.initRoot<cw::Packet>().initMessages(messages.size());
  for (size_t i = 0; i < messages.size(); ++i) WriteMessage(list[i], messages[i]);
  return Seal(cluster, version, mb);
}

Decoded<std::vector<Message>> DecodePacket(ByteView bytes, const std::string& cluster, const Protocol& protocol) {
  return Guarded<std::vector<Message>>(bytes, cluster, kMaxPacketBytes, protocol, [](capnp::FlatArrayMessageReader& r) {
    auto list = r.getRoot<cw::Packet>().getMessages();
    if (list.size() > kMaxMessagesPerPacket) throw InvalidField{"too many messages in one packet"};
    if (list.size() == 0) throw InvalidField{"empty packet"};
    std::vector<Message> out;
    out.reserve(list.size());
    for (auto m : list) out.push_back(ReadMessage(m));
    return out;
  });
}

Bytes EncodeStreamRequest(const std::string& cluster, const StreamRequest& req, uint16_t version) {
  capnp::MallocMessageBuilder mb;
  auto root = mb.initRoot<cw::StreamRequest>();
  if (auto* pp = std::get_if<PushPull>(&req.body)) {
    WritePushPull(root.initPushPull(), *pp);
  } else {
    const auto& d = std::get<User>(req.body).data;
    root.setUser(kj::arrayPtr(d.data(), d.size()));
  }
  return Seal(cluster, version, mb);
}

Decoded<StreamRequest> DecodeStreamRequest(ByteView bytes, const std::string& cluster, size_t max_bytes,
                                           const Protocol& protocol) {
  return Guarded<StreamRequest>(bytes, cluster, max_bytes, protocol, [](capnp::FlatArrayMessageReader& r) {
    auto req = r.getRoot<cw::StreamRequest>();
    switch (req.which()) {
      case cw::StreamRequest::PUSH_PULL: return StreamRequest{ReadPushPull(req.getPushPull())};
      case cw::StreamRequest::USER: {
        auto d = req.getUser();
        return StreamRequest{User{Bytes(d.begin(), d.end())}};
      }
    }
    throw InvalidField{"unknown stream request"};
  });
}

Bytes EncodeStreamReply(const std::string& cluster, const StreamReply& reply, uint16_t version) {
  capnp::MallocMessageBuilder mb;
  auto root = mb.initRoot<cw::StreamReply>();
  if (auto* pp = std::get_if<PushPull>(&reply.body)) {
    WritePushPull(root.initPushPull(), *pp);
  } else if (auto* r = std::get_if<Refused>(&reply.body)) {
    if (r->key) {
      root.setKeyRefused(r->why);
    } else {
      root.setRefused(r->why);
    }
  } else {
    const auto& d = std::get<User>(reply.body).data;
    root.setUser(kj::arrayPtr(d.data(), d.size()));
  }
  return Seal(cluster, version, mb);
}

Decoded<StreamReply> DecodeStreamReply(ByteView bytes, const std::string& cluster, size_t max_bytes,
                                       const Protocol& protocol) {
  return Guarded<StreamReply>(bytes, cluster, max_bytes, protocol, [](capnp::FlatArrayMessageReader& r) {
    auto rep = r.getRoot<cw::StreamReply>();
    switch (rep.which()) {
      case cw::StreamReply::PUSH_PULL: return StreamReply{ReadPushPull(rep.getPushPull())};
      case cw::StreamReply::REFUSED: return StreamReply{Refused{Printable(rep.getRefused())}};
      case cw::StreamReply::KEY_REFUSED: return StreamReply{Refused{Printable(rep.getKeyRefused()), true}};
      case cw::StreamReply::USER: {
        auto d = rep.getUser();
        return StreamReply{User{Bytes(d.begin(), d.end())}};
      }
    }
    throw InvalidField{"unknown stream reply"};
  }, [](const StreamReply& r) { return std::holds_alternative<Refused>(r.body); });
}

Bytes EncodeEnvelopeForTest(uint16_t version, const std::string& cluster, const Bytes& payload) {
  capnp::MallocMessageBuilder mb;
  auto env = mb.initRoot<cw::Envelope>();
  env.setVersion(version);
  env.setCluster(cluster);
  env.setPayload(kj::arrayPtr(payload.data(), payload.size()));
  return ToBytes(mb);
}

}  // namespace starling::membership::wire

#include "keys.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>

#include "schema/keys.capnp.h"
#include "starling/capnp_bytes.h"
#include "starling/text.h"

namespace starling::node {
namespace {

using membership::Key;
using membership::Keyring;
namespace kw = keywire;

constexpr size_t kMaxRequestBytes = 512;
constexpr size_t kMaxReplyBytes = 8192;

struct OpName {
  const char* name;
  kw::KeyOp op;
};
constexpr OpName kOps[] = {{"list", kw::KeyOp::LIST},
                           {"install", kw::KeyOp::INSTALL},
                           {"use", kw::KeyOp::USE},
                           {"remove", kw::KeyOp::REMOVE}};

std::optional<kw::KeyOp> ParseOp(const std::string& name) {
  for (const auto& o : kOps)
    if (name == o.name) return o.op;
  return std::nullopt;
}

Key ToKey(capnp::Data::Reader d) {
  Key k{};
  std::memcpy(k.data(), d.begin(), k.size());
  return k;
}

// What a request names: the key itself (install) or its fingerprint.
struct Request {
  kw::KeyOp op = kw::KeyOp::LIST;
  std::optional<Key> key;
  std::string fingerprint;
};

Bytes EncodeRequest(const Request& req) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<kw::KeyRequest>();
  r.setFormatVersion(kw::FORMAT_VERSION);
  r.setOp(req.op);
  if (req.key) r.setKey(kj::arrayPtr(req.key->data(), req.key->size()));
  r.setFingerprint(req.fingerprint);
  return capnp_bytes::Flat(mb);
}

Result<Request> DecodeRequest(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<Request>(
      bytes, kMaxRequestBytes, "key request", [](capnp::FlatArrayMessageReader& reader) -> Result<Request> {
        auto r = reader.getRoot<kw::KeyRequest>();
        if (r.getFormatVersion() != kw::FORMAT_VERSION)
          return Status::Corruption("key request format " + std::to_string(r.getFormatVersion()) + ", this node reads " +
                                    std::to_string(kw::FORMAT_VERSION));
        Request out;
        out.op = r.getOp();
        switch (out.op) {
          case kw::KeyOp::LIST: break;
          case kw::KeyOp::INSTALL:
            if (r.getKey().size() != membership::kKeyBytes) return Status::Corruption("key request with a bad key size");
            out.key = ToKey(r.getKey());
            break;
          case kw::KeyOp::USE:
          case kw::KeyOp::REMOVE:
            out.fingerprint = capnp_bytes::Str(r.getFingerprint());
            if (!Keyring::LooksLikeFingerprint(out.fingerprint))
              return Status::Corruption("key request with a bad fingerprint");
            break;
          default: return Status::Corruption("key request with an unknown operation");
        }
        return out;
      });
}

// Applies `req` to `ring`; list changes nothing. Use and remove find the
// key by its fingerprint.
Status ApplyOp(const Request& req, Keyring& ring) {
  switch (req.op) {
    case kw::KeyOp::LIST: return Status::Ok();
    case kw::KeyOp::INSTALL: return ring.Install(*req.key);
    case kw::KeyOp::USE:
    case kw::KeyOp::REMOVE: {
      auto key = ring.ByFingerprint(req.fingerprint);
      if (!key) return Status::NotFound("no key with fingerprint " + req.fingerprint + " is installed");
      return req.op == kw::KeyOp::USE ? ring.Use(*key) : ring.Remove(*key);
    }
  }
  return Status::InvalidArgument("unknown key operation");
}

std::vector<std::string> Fingerprints(const Keyring& ring) {
  std::vector<std::string> out;
  for (const Key& k : ring.keys()) out.push_back(Keyring::Fingerprint(k));
  return out;
}

Bytes EncodeReply(const std::string& error, const Keyring& ring) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<kw::KeyReply>();
  r.setFormatVersion(kw::FORMAT_VERSION);
  r.setError(error);
  const auto fps = Fingerprints(ring);
  auto list = r.initFingerprints(static_cast<unsigned>(fps.size()));
  for (unsigned i = 0; i < fps.size(); ++i) list.set(i, fps[i]);
  return capnp_bytes::Flat(mb);
}

struct Reply {
  std::string error;
  std::vector<std::string> fingerprints;
};

Result<Reply> DecodeReply(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<Reply>(
      bytes, kMaxReplyBytes, "key reply", [](capnp::FlatArrayMessageReader& reader) -> Result<Reply> {
        auto r = reader.getRoot<kw::KeyReply>();
        if (r.getFormatVersion() != kw::FORMAT_VERSION)
          return Status::Corruption("key reply format " + std::to_string(r.getFormatVersion()) + ", this node reads " +
                                    std::to_string(kw::FORMAT_VERSION) + ": the member runs another starlingd release");
        Reply out;
        out.error = text::Printable(text::HeadChars(capnp_bytes::Str(r.getError()), 1024));
        if (r.getFingerprints().size() > Keyring::kMaxKeys) return Status::Corruption("key reply with too many keys");
        for (auto f : r.getFingerprints()) {
          std::string fp = capnp_bytes::Str(f);
          if (!Keyring::LooksLikeFingerprint(fp)) return Status::Corruption("key reply with a bad fingerprint");
          out.fingerprints.push_back(std::move(fp));
        }
        return out;
      });
}

}  // namespace

struct KeyCommands::Fanout {
  std::string op;
  size_t asked = 0, pending = 0;
  store::Json errors = store::Json::object();
  bool local = false;
  std::string warning;
  std::map<std::string, std::vector<std::string>> rings;  // member -> its key fingerprints, primary first
  Done done;

  void Finish() {
    std::map<std::string, std::pair<int, int>> counts;  // fingerprint -> (members, primary)
    for (const auto& [_, keys] : rings) {
      for (size_t i = 0; i < keys.size(); ++i) {
        auto& c = counts[keys[i]];
        ++c.first;
        if (i == 0) ++c.second;
      }
    }
    std::vector<std::pair<std::string, std::pair<int, int>>> sorted(counts.begin(), counts.end());
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    store::Json keys = store::Json::array();
    for (const auto& [fp, c] : sorted) keys.push_back({{"fingerprint", fp}, {"members", c.first}, {"primary", c.second}});
    store::Json out{{"op", op},          {"local", local},   {"members", asked},
                    {"responded", rings.size()}, {"errors", errors}, {"keys", keys}};
    if (!warning.empty()) out["warning"] = warning;
    done(std::move(out));
  }
};

KeyCommands::KeyCommands(membership::UserChannels& channels, std::shared_ptr<Keyring> ring, Persist persist,
                         Duration timeout)
    : channels_(channels), ring_(std::move(ring)), persist_(std::move(persist)), timeout_(timeout) {
  channels_.On(membership::Channel::kKeys, nullptr,
               [this](const std::string& from, ByteView data) { return HandleStream(from, data); });
}

KeyCommands::~KeyCommands() { *alive_ = false; }

void KeyCommands::Run(const std::string& op_name, const std::string& key_text, bool local, Done done) {
  auto op = ParseOp(op_name);
  if (!op) return done(Status::InvalidArgument("unknown keys command '" + op_name +
                                               "' (expected list, install, use or remove)"));
  if (!ring_->enabled()) {
    return done(Status::InvalidArgument(
        "this node runs without a key, so its gossip is not encrypted; encryption is turned on by starting every "
        "node with --encrypt KEY, keys cannot turn it on in a running cluster"));
  }
  Request req;
  req.op = *op;
  if (*op == kw::KeyOp::INSTALL) {
    auto parsed = Keyring::ParseKey(key_text);
    if (!parsed.ok()) return done(Status::InvalidArgument("keys install: " + parsed.status().message()));
    req.key = *parsed;
  } else if (*op != kw::KeyOp::LIST) {
    if (Keyring::LooksLikeFingerprint(key_text)) {
      req.fingerprint = key_text;
    } else {
      auto parsed = Keyring::ParseKey(key_text);
      if (!parsed.ok())
        return done(Status::InvalidArgument("keys " + op_name + ": " + parsed.status().message() + ", nor is it a " +
                                            std::to_string(Keyring::kFingerprintChars) +
                                            "-digit fingerprint (from `starling keys list`)"));
      req.fingerprint = Keyring::Fingerprint(*parsed);
    }
  }
  const std::string self = channels_.list().config().name;
  Keyring next = *ring_;
  if (Status s = ApplyOp(req, next); !s.ok()) {
    return done(Status(s.code(), "keys " + op_name + " on " + self + ": " + s.message()));
  }
  if (next.keys() != ring_->keys()) {
    if (Status s = persist_(next); !s.ok()) return done(Status(s.code(), "keys " + op_name + ": " + s.message()));
    *ring_ = next;
    spdlog::info("keyring: {} done here{}", op_name, local ? " (this node only)" : ", asking the other members");
  }

  auto fan = std::make_shared<Fanout>();
  fan->op = op_name;
  fan->local = local;
  fan->done = std::move(done);
  fan->rings[self] = Fingerprints(*ring_);
  fan->asked = 1;
  if (local) return fan->Finish();
  if (*op == kw::KeyOp::INSTALL) {
    fan->warning =
        "the new key was sent to the members sealed under the current key: whoever holds that key can read it. "
        "To shut out a key that may be known to others, install the new one with --local on each node instead "
        "(SECURITY.md)";
  }
  const Bytes request = EncodeRequest(req);
  std::vector<membership::MemberView> targets;
  for (const auto& m : channels_.list().Members()) {
    if (m.name == self) continue;
    if (m.status != membership::MemberStatus::kAlive && m.status != membership::MemberStatus::kSuspect) continue;
    targets.push_back(m);
  }
  fan->asked += targets.size();
  fan->pending = targets.size();
  if (targets.empty()) return fan->Finish();
  std::weak_ptr<bool> alive = alive_;
  for (const auto& m : targets) {
    channels_.SendStream(membership::Channel::kKeys, m.addr, request, timeout_,
                         [fan, alive, name = m.name](Result<Bytes> r) {
                           if (alive.expired()) return;
                           if (!r.ok()) {
                             fan->errors[name] = "no answer: " + r.status().message();
                           } else if (auto reply = DecodeReply(*r); !reply.ok()) {
                             fan->errors[name] = reply.status().message();
                           } else {
                             if (!reply->error.empty()) fan->errors[name] = reply->error;
                             fan->rings[name] = std::move(reply->fingerprints);
                           }
                           if (--fan->pending == 0) fan->Finish();
                         });
  }
}

Bytes KeyCommands::HandleStream(const std::string& from, ByteView data) {
  auto req = DecodeRequest(data);
  if (!req.ok()) {
    spdlog::warn("dropped a key request from {}: {}", from, req.status().message());
    return {};
  }
  std::string error;
  Keyring next = *ring_;
  if (Status s = ApplyOp(*req, next); !s.ok()) {
    error = s.message();
  } else if (next.keys() != ring_->keys()) {
    if (Status p = persist_(next); !p.ok()) {
      error = p.message();
    } else {
      *ring_ = next;
      spdlog::info("keyring changed at the request of {}: {} key(s)", from, ring_->keys().size());
    }
  }
  return EncodeReply(error, *ring_);
}

}  // namespace starling::node

#include "keys.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <sstream>

#include "schema/keys.capnp.h"
#include "starling/capnp_bytes.h"

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

// Applies `op` to `ring`; list changes nothing.
Status ApplyOp(kw::KeyOp op, const Key& key, Keyring& ring) {
  switch (op) {
    case kw::KeyOp::LIST: return Status::Ok();
    case kw::KeyOp::INSTALL: return ring.Install(key);
    case kw::KeyOp::USE: return ring.Use(key);
    case kw::KeyOp::REMOVE: return ring.Remove(key);
  }
  return Status::InvalidArgument("unknown key operation");
}

Key ToKey(capnp::Data::Reader d) {
  Key k{};
  std::memcpy(k.data(), d.begin(), k.size());
  return k;
}

Bytes EncodeRequest(kw::KeyOp op, const Key* key) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<kw::KeyRequest>();
  r.setFormatVersion(kw::FORMAT_VERSION);
  r.setOp(op);
  if (key != nullptr) r.setKey(kj::arrayPtr(key->data(), key->size()));
  return capnp_bytes::Flat(mb);
}

struct Request {
  kw::KeyOp op;
  std::optional<Key> key;
};

Result<Request> DecodeRequest(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<Request>(
      bytes, kMaxRequestBytes, "key request", [](capnp::FlatArrayMessageReader& reader) -> Result<Request> {
        auto r = reader.getRoot<kw::KeyRequest>();
        if (r.getFormatVersion() != kw::FORMAT_VERSION)
          return Status::Corruption("key request format " + std::to_string(r.getFormatVersion()));
        Request out{r.getOp(), std::nullopt};
        if (static_cast<unsigned>(out.op) > static_cast<unsigned>(kw::KeyOp::REMOVE))
          return Status::Corruption("key request with an unknown operation");
        if (out.op != kw::KeyOp::LIST) {
          if (r.getKey().size() != membership::kKeyBytes) return Status::Corruption("key request with a bad key size");
          out.key = ToKey(r.getKey());
        }
        return out;
      });
}

Bytes EncodeReply(const std::string& error, const Keyring& ring) {
  capnp::MallocMessageBuilder mb;
  auto r = mb.initRoot<kw::KeyReply>();
  r.setFormatVersion(kw::FORMAT_VERSION);
  r.setError(error);
  auto keys = r.initKeys(static_cast<unsigned>(ring.keys().size()));
  for (unsigned i = 0; i < ring.keys().size(); ++i) keys.set(i, kj::arrayPtr(ring.keys()[i].data(), membership::kKeyBytes));
  return capnp_bytes::Flat(mb);
}

struct Reply {
  std::string error;
  std::vector<Key> keys;
};

Result<Reply> DecodeReply(ByteView bytes) {
  return capnp_bytes::DecodeGuarded<Reply>(
      bytes, kMaxReplyBytes, "key reply", [](capnp::FlatArrayMessageReader& reader) -> Result<Reply> {
        auto r = reader.getRoot<kw::KeyReply>();
        if (r.getFormatVersion() != kw::FORMAT_VERSION)
          return Status::Corruption("key reply format " + std::to_string(r.getFormatVersion()));
        Reply out;
        out.error = capnp_bytes::Str(r.getError()).substr(0, 1024);
        if (r.getKeys().size() > Keyring::kMaxKeys) return Status::Corruption("key reply with too many keys");
        for (auto k : r.getKeys()) {
          if (k.size() != membership::kKeyBytes) return Status::Corruption("key reply with a bad key size");
          out.keys.push_back(ToKey(k));
        }
        return out;
      });
}

}  // namespace

struct KeyCommands::Fanout {
  std::string op;
  size_t asked = 0, pending = 0;
  store::Json errors = store::Json::object();
  std::map<std::string, std::vector<Key>> rings;  // member -> its keyring, primary first
  Done done;

  void Finish() {
    std::map<Key, std::pair<int, int>> counts;  // key -> (members, primary)
    for (const auto& [_, keys] : rings) {
      for (size_t i = 0; i < keys.size(); ++i) {
        auto& c = counts[keys[i]];
        ++c.first;
        if (i == 0) ++c.second;
      }
    }
    std::vector<std::pair<Key, std::pair<int, int>>> sorted(counts.begin(), counts.end());
    std::stable_sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    store::Json keys = store::Json::array();
    for (const auto& [key, c] : sorted)
      keys.push_back({{"key", Keyring::FormatKey(key)}, {"members", c.first}, {"primary", c.second}});
    done(store::Json{{"op", op},
                     {"members", asked},
                     {"responded", rings.size()},
                     {"errors", errors},
                     {"keys", keys}});
  }
};

KeyCommands::KeyCommands(membership::UserChannels& channels, std::shared_ptr<Keyring> ring, Persist persist,
                         Duration timeout)
    : channels_(channels), ring_(std::move(ring)), persist_(std::move(persist)), timeout_(timeout) {
  channels_.On(membership::Channel::kKeys, nullptr,
               [this](const std::string& from, ByteView data) { return HandleStream(from, data); });
}

KeyCommands::~KeyCommands() { *alive_ = false; }

void KeyCommands::Run(const std::string& op_name, const std::string& key_text, Done done) {
  auto op = ParseOp(op_name);
  if (!op) return done(Status::InvalidArgument("unknown keys command '" + op_name +
                                               "' (expected list, install, use or remove)"));
  if (!ring_->enabled()) {
    return done(Status::InvalidArgument(
        "this node runs without a key, so its gossip is not encrypted; encryption is turned on by starting every "
        "node with --encrypt KEY, keys cannot turn it on in a running cluster"));
  }
  std::optional<Key> key;
  if (*op != kw::KeyOp::LIST) {
    auto parsed = Keyring::ParseKey(key_text);
    if (!parsed.ok()) return done(Status::InvalidArgument("keys " + op_name + ": " + parsed.status().message()));
    key = *parsed;
  }
  const std::string self = channels_.list().config().name;
  Keyring next = *ring_;
  if (Status s = ApplyOp(*op, key.value_or(Key{}), next); !s.ok()) {
    return done(Status(s.code(), "keys " + op_name + " on " + self + ": " + s.message()));
  }
  if (next.keys() != ring_->keys()) {
    if (Status s = persist_(next); !s.ok()) return done(Status(s.code(), "keys " + op_name + ": " + s.message()));
    *ring_ = next;
    spdlog::info("keyring: {} done here, asking the other members", op_name);
  }

  auto fan = std::make_shared<Fanout>();
  fan->op = op_name;
  fan->done = std::move(done);
  fan->rings[self] = ring_->keys();
  fan->asked = 1;
  const Bytes request = EncodeRequest(*op, key ? &*key : nullptr);
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
                             fan->rings[name] = std::move(reply->keys);
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
  if (Status s = ApplyOp(req->op, req->key.value_or(Key{}), next); !s.ok()) {
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

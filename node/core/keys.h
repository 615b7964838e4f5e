// The `starling keys` commands that change every live member's keyring at once.
//
// Rotation without downtime (SECURITY.md): `install NEW` everywhere, `use NEW`
// everywhere, `remove OLD` everywhere. Each command is applied here, then
// sent to every live member over the sealed stream channel; each member
// applies it, saves its keyring file and answers with the fingerprints of its
// keyring, so the reply counts how many members hold each key. A member that
// was down misses the command: `list` shows it, and the command can be
// repeated (all four are idempotent).
//
// Only an in-band `install` puts a key on the wire (sealed under the current
// primary, so whoever holds that key reads the new one). The rotation that
// shuts out a stolen key installs the new key on each node with `local` (the
// operator's own channel to each machine), then `use` and `remove` go
// cluster-wide naming keys by fingerprint.
//
// Single-threaded on the protocol thread.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "starling/membership/keyring.h"
#include "starling/membership/user_channels.h"
#include "starling/store/document.h"

namespace starling::node {

class KeyCommands {
 public:
  using Persist = std::function<Status(const membership::Keyring&)>;
  using Done = std::function<void(Result<store::Json>)>;

  // Registers the kKeys stream handler on `channels`. `ring` is the one the
  // memberlist seals with; `persist` saves a changed ring before it is used.
  KeyCommands(membership::UserChannels& channels, std::shared_ptr<membership::Keyring> ring, Persist persist,
              Duration timeout = std::chrono::seconds(5));
  ~KeyCommands();
  KeyCommands(const KeyCommands&) = delete;
  KeyCommands& operator=(const KeyCommands&) = delete;

  // `op` is list, install, use or remove; `key` is base64 (empty for list),
  // or for use and remove a fingerprint. `local` does it on this node only.
  // `done` gets, later:
  //   {"op", "local", "members": members asked (this node included),
  //    "responded", "errors": {member: why},
  //    "keys": [{"fingerprint", "members", "primary"}], "warning"?}
  // where a key's "members" counts the members that answered holding it and
  // "primary" those that seal with it.
  void Run(const std::string& op, const std::string& key, bool local, Done done);

 private:
  struct Fanout;
  Bytes HandleStream(const std::string& from, ByteView data);

  membership::UserChannels& channels_;
  std::shared_ptr<membership::Keyring> ring_;
  Persist persist_;
  Duration timeout_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace starling::node

// The secrets in the data dir: the cluster keyring's file (the `starling
// keys` commands that change it are core/keys.h) and the console's token.
#pragma once

#include <optional>
#include <string>

#include "starling/membership/keyring.h"
#include "starling/status.h"

namespace starling::node {

// `<data dir>/keyring`: JSON {"keys": ["<base64>", ...]}, primary first,
// mode 0600, replaced atomically.
std::string KeyringPath(const std::string& data_dir);
// nullopt when the file does not exist; an error naming the file and the
// problem when it cannot be read or parsed.
Result<std::optional<membership::Keyring>> LoadKeyring(const std::string& path);
Status SaveKeyring(const std::string& path, const membership::Keyring& ring);
// The web console's token, `<data dir>/ui-token` (64 hex digits, 0600),
// made at the first start; one that is not owner-only or not ours is
// replaced by a new one.
Result<std::string> LoadOrMakeUiToken(const std::string& data_dir);
// The cluster key of `--encrypt-file PATH`: base64 of 32 bytes on one line
// (what `starling keygen` prints). The file must be a regular file owned by
// the daemon's user or root with no permission for its group or others
// (0600 or 0400): a key others can read is no secret, and one others can
// write lets them pick it. Errors name the path and say how to fix it; the
// key itself is never in them.
Result<membership::Key> ReadClusterKeyFile(const std::string& path);
// Writes `text` to `path` owner-only (0600 from its creation), atomically
// and durably; errors name `what`.
Status WriteSecretFile(const std::string& path, const std::string& text, const std::string& what);

}  // namespace starling::node

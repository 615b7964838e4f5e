// The cluster keyring's file in the data dir (the `starling keys` commands
// that change it are core/keys.h).
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

}  // namespace starling::node

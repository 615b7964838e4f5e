// What the daemon may trust on disk. It runs as root: whoever can write its
// data dir can make it believe any desired state, and whoever can write a
// hook (or the directory holding it) can run code as root. So a path is
// trusted only when it is owned by the daemon's user or by root and no group
// or other user can write it; and what the daemon creates is owner-only.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "starling/status.h"

namespace starling::node {

// Sets the process umask to 077 (files 0600, directories 0700, RocksDB's
// included) and keeps the one the daemon was started with, which hooks get
// back: the files a service's hook creates are the operator's business.
void MakeFilesOwnerOnly();
mode_t StartingUmask();

// kInvalidArgument naming `what`, the path, its owner and mode when `path`
// (symlinks followed) is owned by another user than the daemon's or root,
// or is writable by its group or others; kNotFound when it does not exist.
Status CheckTrusted(const std::string& path, std::string_view what);

// The data dir: refused as CheckTrusted says when it exists; one that the
// daemon owns and that others can read is closed to 0700 (it holds every
// param of the desired state), saying so once.
Status SecureDataDir(const std::string& path);

}  // namespace starling::node

// starlingd's command line (and config file) options.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "address.h"
#include "starling/membership/config.h"
#include "starling/status.h"
#include "starling/store/duration.h"

namespace starling::node {

// Validated options; every field is usable as is.
struct DaemonOptions {
  std::string name;  // empty: take the stored name, else the hostname
  HostPort bind{"0.0.0.0", kDefaultGossipPort};
  std::optional<HostPort> advertise;
  std::vector<std::string> join;  // --join and --retry-join, in that order
  // Between join attempts while no seed answers; after retry_max failed
  // attempts (0: never) the daemon exits 1.
  Duration retry_interval = std::chrono::seconds(5);
  unsigned retry_max = 0;
  std::string data_dir = "/var/lib/starling";
  std::string socket;  // defaults to <data_dir>/starlingd.sock
  // The API socket is owner-only (0600); with a group it is 0660 and that
  // group's.
  std::optional<unsigned> socket_gid;
  std::string socket_group;
  std::string hooks_dir;  // defaults to <data_dir>/hooks
  bool hooks_follow_symlinks = false;  // a hook may be a symlink out of hooks_dir
  // --event-handler [FILTER=]PATH, in the order given (event_handlers.h).
  struct EventHandler {
    std::vector<std::string> filters;  // empty: every event
    std::string path;                  // absolute
  };
  std::vector<EventHandler> event_handlers;
  std::optional<HostPort> http = HostPort{"127.0.0.1", 7947};  // nullopt: off
  bool ui_write = false;  // the console may act (with its token), not only show
  membership::Tags tags;
  std::string profile = "lan";
  std::string cluster = "default";
  std::string log_level = "info";
  std::string log_format = "text";  // text | json
  Duration reap_timeout = std::chrono::hours(24);
  // Where to append every lease hold of this node (JSON lines), when set.
  std::string lease_log;
  // Artifacts no desired state names are removed after this long.
  Duration artifact_grace = std::chrono::hours(1);
  // Instead of running: say what this binary would do with --data-dir
  // (exit 0 when it can run on it), or restore a backup the data dir holds.
  bool check_data_dir = false;
  // Restart into a new binary by exiting kExitRestart (75), for a service
  // manager that starts the daemon again, instead of exec'ing it.
  bool supervised = false;
  std::string agent_sentinel;  // internal: watch the restart recorded here
  bool data_format = false;    // print the data dir format this binary writes
  std::string restore_backup;
  // The gossip protocol version to speak; 0: this release's default.
  unsigned protocol = 0;
  // The cluster key to start with when the data dir holds no keyring yet,
  // and where it came from ("--encrypt", "--encrypt-file PATH", ...), for
  // messages.
  std::optional<membership::Key> encrypt;
  std::string encrypt_source;
  // Instead of running: check the flags and config files, print the
  // settings they make, and exit (0 when the daemon could start with them).
  bool check_config = false;
  // The config files read, in the order read (later ones win).
  std::vector<std::string> config_files;
  // The settings as a config file would say them (`--check-config` prints
  // it; the key itself is never in it).
  std::string effective_config;
};

struct ParseOutcome {
  std::optional<DaemonOptions> options;  // nullopt: exit with exit_code
  int exit_code = 0;
};

// The protocol range of this binary and the version it speaks for
// `--protocol requested` (0: the default).
membership::Protocol Protocol(unsigned requested);

// Parses argv, then the config files: `--config FILE`, then every `*.toml`
// of `--config-dir DIR` in lexical order. A key set in a later file replaces
// what an earlier one said (a list too, as a whole); the command line wins
// over every file, and the files over STARLING_ENCRYPT_KEY. Prints help or a
// message naming the bad flag, or the file, key and value at fault; the
// caller only has to exit with exit_code.
ParseOutcome ParseDaemonFlags(int argc, char** argv);

// Durations in flags use the grammar of the desired-state document ("1d",
// "1h30m", "500ms", "250us"), so a value means the same in both.
using store::ParseDuration;

// "key=value" with a non-empty key.
Status ParseTag(std::string_view text, membership::Tags& tags);

}  // namespace starling::node

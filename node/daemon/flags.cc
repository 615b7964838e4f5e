#include "flags.h"

#include <grp.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "daemon.h"
#include "event_handlers.h"
#include "keyring_file.h"
#include "starling/membership/config.h"
#include "starling/text.h"
#include "starling/version.h"
#include "trust.h"

namespace starling::node {
namespace {

constexpr size_t kMaxNameBytes = 128;

Status ValidateName(const std::string& name) {
  if (name.size() > kMaxNameBytes) {
    return Status::InvalidArgument("--name '" + name + "' is longer than " + std::to_string(kMaxNameBytes) +
                                   " bytes");
  }
  for (unsigned char c : name) {
    // Names appear in logs, tables and store keys: keep them printable.
    if (c <= ' ' || c == 0x7f) {
      return Status::InvalidArgument("--name '" + name + "' contains whitespace or a control character");
    }
  }
  return Status::Ok();
}

}  // namespace

Status ParseTag(std::string_view text, membership::Tags& tags) {
  size_t eq = text.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    return Status::InvalidArgument("tag '" + std::string(text) + "' must be key=value with a non-empty key");
  }
  tags[std::string(text.substr(0, eq))] = std::string(text.substr(eq + 1));
  return Status::Ok();
}

namespace {

// The flags as typed, before validation.
struct RawFlags {
  DaemonOptions options;
  std::string bind = "0.0.0.0:7946";
  std::string advertise;
  std::string http = "127.0.0.1:7947";
  std::string encrypt;
  std::string encrypt_file;
  std::string config;      // --config FILE
  std::string config_dir;  // --config-dir DIR
  std::string reap = "24h";
  std::string artifact_grace = "1h";
  std::string retry_interval = "5s";
  std::vector<std::string> retry_join;
  std::vector<std::string> tags;
  std::vector<std::string> event_handlers;
};

void DefineFlags(CLI::App& app, RawFlags& f) {
  DaemonOptions& o = f.options;
  std::string &bind = f.bind, &advertise = f.advertise, &http = f.http, &encrypt = f.encrypt;
  std::string &reap = f.reap, &artifact_grace = f.artifact_grace;
  std::vector<std::string>& tags = f.tags;
  app.add_option(
      "--name", o.name,
      "Node name, unique in the cluster (default: the name stored in --data-dir, else the hostname)");
  app.add_option("--bind", bind,
                 "HOST:PORT for gossip, UDP and TCP on the same port; port 0 picks a free one")
      ->capture_default_str();
  app.add_option("--advertise", advertise,
                 "HOST:PORT peers reach us at (default: the bind address; for 0.0.0.0 the first non-loopback "
                 "IPv4 address, else 127.0.0.1)");
  app.add_option("--join", o.join,
                 "Seed HOST[:PORT] to join through (repeatable; HOST may be a DNS name, looked up at each attempt; "
                 "the port defaults to 7946); retried every --retry-interval until one answers");
  app.add_option("--retry-join", f.retry_join,
                 "Like --join (repeatable, DNS names allowed), as Serf names it: a start with no seed up yet keeps "
                 "trying, every --retry-interval, up to --retry-max attempts");
  app.add_option("--retry-interval", f.retry_interval, "Time between join attempts while no seed answers")
      ->capture_default_str();
  app.add_option("--retry-max", o.retry_max,
                 "Join attempts before giving up and exiting 1 (0: keep trying for ever)")
      ->capture_default_str();
  app.add_option("--data-dir", o.data_dir, "Directory for the node's identity, generation and known members")
      ->capture_default_str();
  app.add_option("--socket", o.socket, "Unix socket for the local API (default: <data-dir>/starlingd.sock)");
  app.add_option("--socket-group", o.socket_group,
                 "Group that may also use the API socket (mode 0660 instead of owner-only 0600): its members "
                 "can change the cluster's state");
  app.add_option("--http", http,
                 "HOST:PORT for HTTP: the web console at /ui/, /metrics (Prometheus), /health, /v1/members, "
                 "/v1/info, /v1/state, /v1/rollout, /v1/nodes and the console's API; read-only unless --ui-write; "
                 "port 0 picks a free one; 'off' serves none")
      ->capture_default_str();
  app.add_flag("--ui-write", o.ui_write,
               "Let the web console act (roll out, roll back, pause, commission, decommission, freeze): each action "
               "must carry the token of <data-dir>/ui-token, which `starling ui url` puts in a login link. "
               "Without it the console only shows (see SECURITY.md)");
  app.add_option("--hooks-dir", o.hooks_dir,
                 "Directory of the hook executables the desired state names (install, verify, remove, start, "
                 "stop, health); nothing outside it ever runs. It and every hook must be owned by this "
                 "daemon's user or root and writable by no one else (default: <data-dir>/hooks)");
  app.add_flag("--hooks-follow-symlinks", o.hooks_follow_symlinks,
               "Let a hook be a symlink to an executable outside --hooks-dir (which must be trusted as a hook)");
  app.add_option("--event-handler", f.event_handlers,
                 "[FILTER=]PATH: run the executable PATH on membership events, user events (`starling event`) "
                 "and queries (`starling query`), as Serf's agent does (repeatable; runs are one at a time, in "
                 "order). FILTER: comma-separated member-join, member-leave, member-failed, member-update, "
                 "member-reap, user, user:NAME, query, query:NAME; none: every event. It gets STARLING_EVENT, "
                 "STARLING_SELF_NAME, STARLING_TAG_<KEY>, STARLING_USER_EVENT/_LTIME, STARLING_QUERY_NAME/_LTIME "
                 "and STARLING_SOCKET; on stdin the members (name TAB address TAB tags) or the payload; a query's "
                 "answer is its output. It and its directory must be trusted as a hook (see --hooks-dir)");
  app.add_option("--tag", tags,
                 "Tag key=value gossiped with this member (repeatable). Tags set later with `starling tags` are "
                 "kept in the data dir across restarts; a --tag wins for its key");
  app.add_option("--profile", o.profile, "Timing profile")
      ->check(CLI::IsMember({"lan", "wan", "local"}))
      ->capture_default_str();
  app.add_option("--cluster", o.cluster, "Cluster name; daemons of other clusters are ignored")
      ->capture_default_str();
  app.add_option("--log-format", o.log_format, "Log lines as text, or as JSON objects (time, level, msg)")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  app.add_option("--log-level", o.log_level, "Log level")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  app.add_option("--encrypt", encrypt,
                 "Cluster key (base64 of 32 bytes, from `starling keygen`): every gossip datagram and stream "
                 "frame is authenticated and encrypted with it. Saved as <data-dir>/keyring on first start; "
                 "afterwards that keyring (rotated by `starling keys`) wins. Also read from the environment "
                 "(STARLING_ENCRYPT_KEY) when neither this nor --encrypt-file is set. Prefer --encrypt-file: the "
                 "command line is readable by every local user");
  app.add_option("--encrypt-file", f.encrypt_file,
                 "Read the cluster key (as --encrypt) from this file: one line, as `starling keygen` prints it. "
                 "It must be owned by this daemon's user or root and be owner-only (0600 or 0400); one that is "
                 "not is refused");
  app.add_option("--reap-timeout", reap,
                 "Forget failed or left members after this long (e.g. 24h, 30s, 500ms)")
      ->capture_default_str();
  app.add_option("--lease-log", o.lease_log,
                 "Append a JSON line to this file whenever this node wins or renews the coordinator lease (node, "
                 "ballot, from_us, until_us: wall-clock microseconds of its own validity) or releases it; for "
                 "audits and the fault suite's checker");
  app.add_option("--protocol", o.protocol,
                 "Gossip protocol version to speak, in the range this binary understands (" +
                     membership::RangeText(static_cast<uint16_t>(ProtocolMin()), static_cast<uint16_t>(ProtocolMax())) +
                     "; 0, the default, speaks " + std::to_string(Protocol(0).speak) +
                     "). Members run together while each one's version lies in every other's "
                     "range; see README, Upgrading Starling")
      ->capture_default_str();
  app.add_flag("--check-data-dir", o.check_data_dir,
               "Say what this starlingd would do with --data-dir (run on it, migrate it, or refuse a newer format) "
               "and exit: 0 when it can run on it, 1 when not. Reads the format file only, so it works beside a "
               "running daemon")
      ->configurable(false);
  app.add_flag("--supervised", o.supervised,
               "Run under a service manager that restarts the daemon when it exits non-zero (systemd "
               "Restart=on-failure, as the packaged unit does): an agent upgrade then exits 75 to restart into the "
               "new binary, instead of exec'ing it");
  app.add_option("--agent-sentinel", o.agent_sentinel, "Internal: watch an agent upgrade's restart")
      ->group("")
      ->configurable(false);
  app.add_flag("--data-format", o.data_format, "Print the data dir format this starlingd writes, and exit")
      ->configurable(false);
  app.add_option("--restore-backup", o.restore_backup,
                 "Put back the copy a migration took (a backup-N directory in --data-dir) and exit; the daemon "
                 "must be stopped, and what it replaces is kept in <data-dir>/replaced-<format>")
      ->configurable(false);
  app.add_option("--artifact-grace", artifact_grace,
                 "Remove an artifact from this node's data dir once no package of the desired state (nor a rollout's "
                 "target or revert revision) has named it for this long")
      ->capture_default_str();
}

// Where each setting read from a config file came from: key -> file. A
// key the command line also gave is not in it (the command line won).
using Origins = std::map<std::string, std::string>;

ParseOutcome Refuse(const std::string& message) {
  std::fprintf(stderr, "starlingd: %s\n", message.c_str());
  return ParseOutcome{std::nullopt, kExitUsage};
}

// "--bind: ..." about a value a config file gave becomes "bind (in FILE): ...".
std::string Located(const std::string& message, const Origins& origins) {
  if (message.rfind("--", 0) != 0) return message;
  const size_t end = message.find_first_not_of("abcdefghijklmnopqrstuvwxyz-", 2);
  const std::string key = message.substr(2, end == std::string::npos ? std::string::npos : end - 2);
  auto it = origins.find(key);
  if (it == origins.end()) return message;
  return key + " (in " + it->second + ")" + message.substr(2 + key.size());
}

// Turns the typed flags into options every part of the daemon can use as
// they are, or names the bad flag (or the config file and key).
ParseOutcome Validate(RawFlags& f, const Origins& origins) {
  DaemonOptions& o = f.options;
  std::string &bind = f.bind, &advertise = f.advertise, &http = f.http, &encrypt = f.encrypt;
  std::string &reap = f.reap, &artifact_grace = f.artifact_grace;
  std::vector<std::string>& tags = f.tags;
  auto fail = [&origins](const std::string& message) { return Refuse(Located(message, origins)); };
  if (Status s = ValidateName(o.name); !s.ok()) return fail(s.message());
  Result<HostPort> b = ParseHostPort(bind);
  if (!b.ok()) return fail("--bind: " + b.status().message());
  o.bind = *b;
  if (!advertise.empty()) {
    Result<HostPort> a = ParseHostPort(advertise);
    if (!a.ok()) return fail("--advertise: " + a.status().message());
    if (a->port == 0 || IsUnspecifiedHost(a->host)) {
      return fail("--advertise '" + advertise + "' must name a reachable host and a non-zero port");
    }
    o.advertise = *a;
  }
  auto bad_seed = [](const std::string& flag, const std::string& seed) -> std::optional<std::string> {
    Result<HostPort> j = ParseHostPort(seed);
    if (!j.ok()) return flag + ": " + j.status().message();
    if (j->port == 0) return flag + " '" + seed + "' needs a non-zero port";
    return std::nullopt;
  };
  for (std::string& seed : o.join) {
    seed = WithDefaultPort(seed);
    if (auto why = bad_seed("--join", seed)) return fail(*why);
  }
  for (std::string& seed : f.retry_join) {
    seed = WithDefaultPort(seed);
    if (auto why = bad_seed("--retry-join", seed)) return fail(*why);
    o.join.push_back(seed);
  }
  Result<Duration> interval = ParseDuration(f.retry_interval);
  if (!interval.ok()) return fail("--retry-interval: " + interval.status().message());
  if (*interval < std::chrono::milliseconds(100))
    return fail("--retry-interval " + f.retry_interval + " is below 100ms");
  o.retry_interval = *interval;
  for (const std::string& t : tags) {
    if (Status s = ParseTag(t, o.tags); !s.ok()) return fail("--tag: " + s.message());
  }
  Result<Duration> r = ParseDuration(reap);
  if (!r.ok()) return fail("--reap-timeout: " + r.status().message());
  o.reap_timeout = *r;
  Result<Duration> grace = ParseDuration(artifact_grace);
  if (!grace.ok()) return fail("--artifact-grace: " + grace.status().message());
  o.artifact_grace = *grace;
  if (!encrypt.empty() && !f.encrypt_file.empty())
    return fail("--encrypt and --encrypt-file both give the cluster key: keep one (--encrypt-file)");
  if (!encrypt.empty()) {
    auto key = membership::Keyring::ParseKey(encrypt);
    if (!key.ok()) return fail(o.encrypt_source + ": " + key.status().message());
    o.encrypt = *key;
  } else if (!f.encrypt_file.empty()) {
    auto key = ReadClusterKeyFile(f.encrypt_file);
    if (!key.ok()) return fail(key.status().message());
    o.encrypt = *key;
    o.encrypt_source = "--encrypt-file " + f.encrypt_file;
  }
  if (o.protocol != 0 && (o.protocol < ProtocolMin() || o.protocol > ProtocolMax())) {
    return fail("--protocol " + std::to_string(o.protocol) + ": this starlingd " + ReleaseVersion() +
                " understands protocol " +
                membership::RangeText(static_cast<uint16_t>(ProtocolMin()), static_cast<uint16_t>(ProtocolMax())));
  }
  if (o.cluster.empty()) return fail("--cluster must not be empty");
  if (o.data_dir.empty()) return fail("--data-dir must not be empty");
  if (o.socket.empty()) o.socket = o.data_dir + "/starlingd.sock";
  if (!o.socket_group.empty()) {
    const group* g = getgrnam(o.socket_group.c_str());
    if (g == nullptr) return fail("--socket-group '" + o.socket_group + "': no such group");
    o.socket_gid = static_cast<unsigned>(g->gr_gid);
  }
  if (o.hooks_dir.empty()) o.hooks_dir = o.data_dir + "/hooks";
  for (const std::string& h : f.event_handlers) {
    auto parsed = ParseEventHandler(h);
    if (!parsed.ok()) return fail(parsed.status().message());
    std::error_code ec;
    const std::string path = std::filesystem::absolute(parsed->second, ec).lexically_normal().string();
    if (ec) return fail("--event-handler '" + h + "': " + ec.message());
    o.event_handlers.push_back({std::move(parsed->first), path});
  }
  if (http == "off") {
    o.http.reset();
  } else {
    Result<HostPort> hp = ParseHostPort(http);
    if (!hp.ok()) return fail("--http: " + hp.status().message());
    o.http = *hp;
  }
  return {std::move(o), kExitOk};
}

}  // namespace

membership::Protocol Protocol(unsigned requested) {
  membership::Protocol p;
  p.min = static_cast<uint16_t>(ProtocolMin());
  p.max = static_cast<uint16_t>(ProtocolMax());
  // A newer binary keeps speaking this code base's default, so it joins the
  // previous release's cluster; --protocol moves it on.
  p.speak = requested != 0 ? static_cast<uint16_t>(requested)
                                  : std::clamp<uint16_t>(membership::kProtocolVersion, p.min, p.max);
  return p;
}

namespace {

// Hands CLI11 config items it did not read itself: the daemon reads and
// layers the files, then replays each item through CLI11, so that a value
// converts and checks exactly as on the command line.
class PreparedConfig final : public CLI::ConfigTOML {
 public:
  std::vector<CLI::ConfigItem> items;
  std::vector<CLI::ConfigItem> from_config(std::istream&) const override { return items; }
};

// A config file is trusted like a hook: it names the hooks dir, the event
// handlers and the key file.
Status CheckConfigPath(const std::string& path, const char* flag) {
  Status s = CheckTrusted(path, flag);
  if (s.code() == Status::Code::kNotFound) return Status::InvalidArgument(s.message());
  return s;
}

// `--config FILE`, then the drop-ins of `--config-dir DIR` (*.toml, not
// hidden, in lexical order).
Result<std::vector<std::string>> ConfigFiles(const std::string& file, const std::string& dir) {
  std::vector<std::string> files;
  if (!file.empty()) {
    if (Status s = CheckConfigPath(file, "--config"); !s.ok()) return s;
    if (!std::filesystem::is_regular_file(file)) return Status::InvalidArgument("--config " + file + " is not a file");
    files.push_back(file);
  }
  if (dir.empty()) return files;
  if (Status s = CheckConfigPath(dir, "--config-dir"); !s.ok()) return s;
  std::error_code ec;
  std::vector<std::string> dropins;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name[0] == '.' || entry.path().extension() != ".toml" || !entry.is_regular_file()) continue;
    dropins.push_back(entry.path().string());
  }
  if (ec) return Status::InvalidArgument("--config-dir " + dir + ": " + ec.message());
  std::sort(dropins.begin(), dropins.end());
  for (const std::string& d : dropins) {
    if (Status s = CheckConfigPath(d, "config file"); !s.ok()) return s;
    files.push_back(d);
  }
  return files;
}

struct ConfigEntry {
  CLI::ConfigItem item;
  std::string file;
};

// Every key of every file, a later file's value replacing an earlier one's.
Result<std::vector<ConfigEntry>> ReadConfigFiles(const std::vector<std::string>& files) {
  std::vector<ConfigEntry> entries;
  std::map<std::string, size_t> at;
  for (const std::string& file : files) {
    std::ifstream in(file);
    if (!in) return Status::InvalidArgument(file + ": cannot read it");
    std::vector<CLI::ConfigItem> items;
    try {
      items = CLI::ConfigTOML().from_config(in);
    } catch (const std::exception& e) {
      return Status::InvalidArgument(file + ": " + e.what());
    }
    for (CLI::ConfigItem& item : items) {
      if (!item.parents.empty()) {
        return Status::InvalidArgument(file + ": section [" + item.parents.front() +
                                       "]: starlingd's config has no sections; every key is a flag's long name at "
                                       "the top of the file");
      }
      auto [it, added] = at.emplace(item.name, entries.size());
      if (added) {
        entries.push_back({std::move(item), file});
      } else {
        entries[it->second] = {std::move(item), file};
      }
    }
  }
  return entries;
}

// What a config line said, for a message; never the key itself.
std::string ValueText(const CLI::ConfigItem& item) {
  if (item.name == "encrypt") return "(the key)";
  std::string out;
  for (const std::string& v : item.inputs) out += (out.empty() ? "" : ", ") + ("\"" + v + "\"");
  return item.inputs.size() == 1 ? out : "[" + out + "]";
}

std::vector<std::string> ConfigurableNames(const CLI::App& app) {
  std::vector<std::string> names;
  for (const CLI::Option* opt : app.get_options())
    if (opt->get_configurable() && !opt->get_lnames().empty()) names.push_back(opt->get_lnames().front());
  return names;
}

// Replays the entries into `app`, one at a time so that an error names its
// file and key. Keys the command line gave keep the command line's value.
Result<Origins> ApplyConfig(CLI::App& app, const std::vector<ConfigEntry>& entries) {
  Origins origins;
  auto prepared = std::make_shared<PreparedConfig>();
  app.config_formatter(prepared);
  for (const ConfigEntry& e : entries) {
    const std::string& key = e.item.name;
    CLI::Option* opt = app.get_option_no_throw("--" + key);
    if (opt == nullptr || !opt->get_configurable()) {
      const std::string near = text::NearestName(key, ConfigurableNames(app));
      return Status::InvalidArgument(
          e.file + ": unknown key '" + key + "'" + (near.empty() ? "" : " (did you mean " + near + "?)") +
          (opt != nullptr ? ": --" + key + " is for the command line only"
                          : "; the keys are starlingd's long flags without the leading -- (starlingd --help)"));
    }
    if (opt->count() > 0) continue;
    origins[key] = e.file;
    // `key = []` says "none": it clears what an earlier file listed.
    if (e.item.inputs.empty() && opt->get_expected_max() > 1) continue;
    prepared->items = {e.item};
    try {
      std::istringstream none;
      app.parse_from_stream(none);
    } catch (const CLI::ParseError& error) {
      return Status::InvalidArgument(e.file + ": " + key + " = " + ValueText(e.item) + ": " + error.what());
    }
  }
  return origins;
}

// A TOML value: numbers and booleans bare, text quoted.
std::string TomlValue(const std::string& v) {
  const bool number = !v.empty() && v.find_first_not_of("0123456789") == std::string::npos && v.size() < 19;
  if (number || v == "true" || v == "false") return v;
  std::string out = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

// `--check-config`'s listing: every setting as a config line, `key = value`
// (the value given, else the default; "" or [] for none), the key hidden.
// The shipped config documents each key with the line this prints for it.
std::string EffectiveConfig(const CLI::App& app) {
  std::string out;
  for (const CLI::Option* opt : app.get_options()) {
    if (!opt->get_configurable() || opt->get_lnames().empty()) continue;
    const std::string& name = opt->get_lnames().front();
    std::vector<std::string> values = opt->count() > 0 ? opt->results() : std::vector<std::string>{};
    if (values.empty() && !opt->get_default_str().empty()) values = {opt->get_default_str()};
    std::string value;
    if (opt->get_expected_max() == 0) {  // a flag
      value = values.empty() || values.back() == "false" || values.back() == "0" ? "false" : "true";
    } else if (opt->get_expected_max() > 1) {  // a list
      for (const std::string& v : values) value += (value.empty() ? "" : ", ") + TomlValue(v);
      value = "[" + value + "]";
    } else {
      value = TomlValue(values.empty() ? "" : values.back());
    }
    if (name == "encrypt" && !values.empty()) value = "\"(hidden)\"";
    out += name + " = " + value + "\n";
  }
  return out;
}

}  // namespace

ParseOutcome ParseDaemonFlags(int argc, char** argv) {
  CLI::App app{
      "starlingd: the Starling daemon. Joins a cluster by gossip (SWIM with Lifeguard), keeps the member "
      "list\n"
      "and serves the local `starling` CLI on a Unix socket. SIGINT or SIGTERM leaves the cluster "
      "gracefully\n"
      "and exits 0; a second signal exits at once. Under systemd (Type=notify) it says READY=1 once it\n"
      "serves its API and has joined, or has nobody to join, and STOPPING=1 when it leaves.",
      "starlingd"};
  app.footer(
      "Every flag but the ones that only act (--config, --config-dir, --check-config, --check-data-dir,\n"
      "--data-format, --restore-backup, --help, --version) can be set in a config file: its long name\n"
      "without the dashes, `bind = \"0.0.0.0:7946\"`, `join = [\"10.0.0.4\"]`, `ui-write = true`. The\n"
      "command line wins over the files, a later file over an earlier one.\n"
      "Exit codes: 0 left gracefully (or --help, --version, a good --check-config); 1 could not start,\n"
      "was refused by the cluster, or a leave was cut short; 2 a bad flag or config file (the message\n"
      "names it); 75 restarting into a new binary under --supervised.");
  RawFlags f;
  app.add_option("--config", f.config,
                 "Read settings from this TOML (or INI) file: keys are the long flag names, e.g. "
                 "/etc/starling/starlingd.toml")
      ->configurable(false);
  app.add_option("--config-dir", f.config_dir,
                 "Then read every *.toml in this directory in lexical order (drop-ins, e.g. "
                 "/etc/starling/starlingd.d); a key in a later file replaces the earlier value, lists included")
      ->configurable(false);
  app.add_flag("--check-config", f.options.check_config,
               "Check the flags and config files as a start would (values, key file, hooks dir, event handlers, "
               "data dir format) without starting; print the settings they make and exit 0, or name the file, "
               "key and value at fault and exit 2")
      ->configurable(false);
  app.set_version_flag("--version",
                       VersionLine("starlingd", "protocol", ProtocolMin(), ProtocolMax()),
                       "Print the release, the build (commit) and the gossip protocol versions understood, and exit");
  DefineFlags(app, f);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return {std::nullopt, app.exit(e)};
  }

  Result<std::vector<std::string>> files = ConfigFiles(f.config, f.config_dir);
  if (!files.ok()) return Refuse(files.status().message());
  Result<std::vector<ConfigEntry>> entries = ReadConfigFiles(*files);
  if (!entries.ok()) return Refuse(entries.status().message());
  Result<Origins> origins = ApplyConfig(app, *entries);
  if (!origins.ok()) return Refuse(origins.status().message());
  f.options.config_files = *files;
  if (auto it = origins->find("encrypt"); it != origins->end()) {
    f.options.encrypt_source = "encrypt (in " + it->second + ")";
    struct stat st {};
    if (stat(it->second.c_str(), &st) == 0 && (st.st_mode & 077))
      std::fprintf(stderr,
                   "starlingd: warning: %s holds the cluster key (encrypt) and others may read it: chmod 600 it, "
                   "or keep the key in an owner-only file named by encrypt-file\n",
                   it->second.c_str());
  } else if (!f.encrypt.empty()) {
    f.options.encrypt_source = "--encrypt";
  }
  if (f.encrypt.empty() && f.encrypt_file.empty()) {
    if (const char* env = std::getenv("STARLING_ENCRYPT_KEY"); env != nullptr && *env != '\0') {
      f.encrypt = env;
      f.options.encrypt_source = "STARLING_ENCRYPT_KEY";
    }
  }
  if (f.options.check_config) f.options.effective_config = EffectiveConfig(app);
  return Validate(f, *origins);
}

}  // namespace starling::node

#include "flags.h"

#include <filesystem>

#include "event_handlers.h"

#include "daemon.h"

#include <grp.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>

#include "starling/membership/config.h"
#include "starling/version.h"

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
                 "Seed HOST:PORT to join through (repeatable; HOST may be a DNS name, looked up at each attempt); "
                 "retried every --retry-interval until one answers");
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
                 "afterwards that keyring (rotated by `starling keys`) wins. Prefer the environment or --config "
                 "file over the command line, which other local users can read")
      ->envname("STARLING_ENCRYPT_KEY");
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
                     "; default " + std::to_string(Protocol(0).speak) +
                     "). Members run together while each one's version lies in every other's range; see README, "
                     "Upgrading Starling");
  app.add_flag("--check-data-dir", o.check_data_dir,
               "Say what this starlingd would do with --data-dir (run on it, migrate it, or refuse a newer format) "
               "and exit: 0 when it can run on it, 1 when not. Reads the format file only, so it works beside a "
               "running daemon");
  app.add_flag("--supervised", o.supervised,
               "Run under a service manager that restarts the daemon when it exits (systemd Restart=always): an "
               "agent upgrade then exits 75 to restart into the new binary, instead of exec'ing it");
  app.add_option("--agent-sentinel", o.agent_sentinel, "Internal: watch an agent upgrade's restart")
      ->group("");
  app.add_flag("--data-format", o.data_format, "Print the data dir format this starlingd writes, and exit");
  app.add_option("--restore-backup", o.restore_backup,
                 "Put back the copy a migration took (a backup-N directory in --data-dir) and exit; the daemon "
                 "must be stopped, and what it replaces is kept in <data-dir>/replaced-<format>");
  app.add_option("--artifact-grace", artifact_grace,
                 "Remove an artifact from this node's data dir once no package of the desired state (nor a rollout's "
                 "target or revert revision) has named it for this long")
      ->capture_default_str();
}

// Turns the typed flags into options every part of the daemon can use as
// they are, or names the bad flag.
ParseOutcome Validate(RawFlags& f) {
  DaemonOptions& o = f.options;
  std::string &bind = f.bind, &advertise = f.advertise, &http = f.http, &encrypt = f.encrypt;
  std::string &reap = f.reap, &artifact_grace = f.artifact_grace;
  std::vector<std::string>& tags = f.tags;
  auto fail = [](const std::string& message) {
    std::fprintf(stderr, "starlingd: %s\n", message.c_str());
    return ParseOutcome{std::nullopt, kExitUsage};
  };
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
  for (const std::string& seed : o.join)
    if (auto why = bad_seed("--join", seed)) return fail(*why);
  for (const std::string& seed : f.retry_join) {
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
  if (!encrypt.empty()) {
    auto key = membership::Keyring::ParseKey(encrypt);
    if (!key.ok()) return fail("--encrypt: " + key.status().message());
    o.encrypt = *key;
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

ParseOutcome ParseDaemonFlags(int argc, char** argv) {
  CLI::App app{
      "starlingd: the Starling daemon. Joins a cluster by gossip (SWIM with Lifeguard), keeps the member "
      "list\n"
      "and serves the local `starling` CLI on a Unix socket. SIGINT or SIGTERM leaves the cluster "
      "gracefully\n"
      "and exits 0; a second signal exits at once.",
      "starlingd"};
  app.set_config("--config", "", "Read flags from a TOML or INI file (keys are the long flag names)");
  app.set_version_flag("--version",
                       VersionLine("starlingd", "protocol", ProtocolMin(), ProtocolMax()),
                       "Print the release, the build (commit) and the gossip protocol versions understood, and exit");

  RawFlags f;
  DefineFlags(app, f);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return {std::nullopt, app.exit(e)};
  }

  return Validate(f);
}

}  // namespace starling::node

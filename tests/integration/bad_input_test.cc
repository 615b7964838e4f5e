// Hostile bytes at the gossip port: random datagrams, truncated messages,
// foreign protocol versions and cluster names, garbage stream frames. The
// daemon must count them, keep serving and stay in the cluster.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <sys/wait.h>

#include <atomic>
#include <csignal>
#include <chrono>
#include <fstream>
#include <random>
#include <thread>

#include "local_cluster.h"
#include "frames.h"
#include "starling/membership/config.h"
#include "starling/membership/keyring.h"

namespace starling::itest {
namespace {

using Bytes = std::vector<uint8_t>;

using frames::Envelope;
using frames::WallMicros;
Bytes PingPacket() { return frames::PingPacket(1, "node0"); }

sockaddr_in Endpoint(const std::string& addr) {
  size_t colon = addr.rfind(':');
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
  inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr);
  return sa;
}

class UdpSender {
 public:
  explicit UdpSender(const std::string& addr) : to_(Endpoint(addr)), fd_(socket(AF_INET, SOCK_DGRAM, 0)) {}
  ~UdpSender() { close(fd_); }
  bool Send(const Bytes& b) {
    return sendto(fd_, b.data(), b.size(), 0, reinterpret_cast<const sockaddr*>(&to_), sizeof(to_)) ==
           static_cast<ssize_t>(b.size());
  }

 private:
  sockaddr_in to_;
  int fd_;
};

// Sends raw bytes on a fresh TCP connection and closes it.
void SendTcp(const std::string& addr, const Bytes& b) {
  sockaddr_in to = Endpoint(addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof(to)) == 0) {
    (void)!send(fd, b.data(), b.size(), MSG_NOSIGNAL);
  }
  close(fd);
}

uint64_t Counter(const nlohmann::json& info, const std::string& name) {
  const auto& counters = info["counters"];
  return counters.contains(name) ? counters[name].get<uint64_t>() : 0;
}

uint64_t BadPacketSum(const nlohmann::json& info) {
  uint64_t sum = 0;
  for (const auto& [name, value] : info["counters"].items()) {
    if (name.rfind("bad_packets.", 0) == 0) sum += value.get<uint64_t>();
  }
  return sum;
}

TEST(BadInput, GarbageIsCountedAndTheDaemonKeepsServing) {
  LocalCluster c;
  ASSERT_EQ(c.Start("node0"), 0);
  ASSERT_EQ(c.Start("node1", {"--join", c.node(0).addr}), 1);
  ASSERT_EQ(c.Start("node2", {"--join", c.node(0).addr}), 2);
  const std::map<std::string, std::string> all_alive = {
      {"node0", "alive"}, {"node1", "alive"}, {"node2", "alive"}};
  ASSERT_EQ(c.AwaitView(c.All(), all_alive, 30s), "");
  std::optional<nlohmann::json> before = c.Info(0);
  ASSERT_TRUE(before);

  const std::string target = c.node(0).addr;
  UdpSender udp(target);
  uint64_t sent = 0;
  auto send = [&](const Bytes& b) {
    ASSERT_TRUE(udp.Send(b));
    ++sent;
  };

  uint32_t seed = std::random_device{}();
  std::printf("random seed %u\n", seed);
  std::mt19937 rng(seed);
  for (int i = 0; i < 50; ++i) {
    Bytes junk(1 + rng() % 1400);
    for (auto& byte : junk) byte = static_cast<uint8_t>(rng());
    send(junk);
  }
  const Bytes good = Envelope(membership::kProtocolVersion, "itest", PingPacket());
  for (size_t len = 1; len < good.size(); len += std::max<size_t>(1, good.size() / 20)) {
    send(Bytes(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(len)));
  }
  send(Envelope(static_cast<uint16_t>(membership::kProtocolMax + 100), "itest", PingPacket()));
  send(Envelope(membership::kProtocolVersion, "someone-elses-cluster", PingPacket()));
  send(Envelope(membership::kProtocolVersion, "itest", Bytes(24, 0xff)));  // payload is not a Packet

  // Streams: an absurd length prefix, and a frame of junk.
  SendTcp(target, {0xff, 0xff, 0xff, 0x7f, 1, 2, 3});
  SendTcp(target, {16, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16});

  // Each datagram above is malformed for a different reason; all of them
  // must be counted (loopback does not drop a hundred datagrams).
  std::optional<nlohmann::json> after;
  bool counted = WaitFor(
      [&] {
        after = c.Info(0);
        return after && BadPacketSum(*after) >= BadPacketSum(*before) + sent &&
               Counter(*after, "bad_packets.version") > Counter(*before, "bad_packets.version");
      },
      10s);
  ASSERT_TRUE(after) << "the daemon stopped answering `starling info`";
  EXPECT_TRUE(counted) << "sent " << sent << " bad datagrams; counters now: " << (*after)["counters"].dump();
  EXPECT_GT(Counter(*after, "bad_packets.version"), 0u);
  EXPECT_GT(Counter(*after, "bad_packets.cluster"), 0u);
  EXPECT_GT(Counter(*after, "bad_packets.decode"), 0u);

  // Still a member in good standing, on every node.
  EXPECT_EQ(c.AwaitView(c.All(), all_alive, 10s), "");
  // And the rejections are logged.
  EXPECT_NE(c.LogOf(0, 100000).find("bad"), std::string::npos) << "no log line about the bad packets";
}

// Two daemons sharing a new key, which `ring` holds too.
void StartKeyed(LocalCluster& c, membership::Keyring& ring) {
  const membership::Key key = membership::Keyring::Generate();
  ASSERT_TRUE(ring.Install(key).ok());
  ASSERT_TRUE(c.StartConverged(2, 30s, {"--encrypt", membership::Keyring::FormatKey(key)}));
}

TEST(BadInput, TamperedEncryptedPacketIsDroppedAndCounted) {
  membership::Keyring ring;
  LocalCluster c;
  ASSERT_NO_FATAL_FAILURE(StartKeyed(c, ring));
  UdpSender udp(c.node(0).addr);
  const Bytes ping = Envelope(membership::kProtocolVersion, "itest", PingPacket());

  // Untouched, the sealed ping is accepted: counted as a ping, not as bad.
  auto pings = [&] { return Counter(*c.Info(0), "messages_received.ping"); };
  const uint64_t auth_before = Counter(*c.Info(0), "bad_packets.auth");
  const uint64_t pings_before = pings();
  ASSERT_TRUE(udp.Send(ring.Encrypt(ping, WallMicros())));
  EXPECT_TRUE(WaitFor([&] { return pings() > pings_before; }, 5s));

  // One flipped bit anywhere past the header (nonce, ciphertext or tag).
  int tampered = 0;
  for (size_t at = membership::Keyring::kHeaderBytes; at < ring.Encrypt(ping, WallMicros()).size(); at += 7) {
    Bytes b = ring.Encrypt(ping, WallMicros());
    b[at] ^= 0x01;
    ASSERT_TRUE(udp.Send(b));
    ++tampered;
  }
  EXPECT_TRUE(WaitFor([&] { return Counter(*c.Info(0), "bad_packets.auth") >= auth_before + tampered; }, 5s))
      << "sent " << tampered << " tampered packets; counters: " << (*c.Info(0))["counters"].dump();
  EXPECT_EQ(c.AwaitView(c.All(), c.AllAlive(), 10s), "");
}

// Someone on the network without the key copies one sealed datagram off the
// wire and sends it again, as often as they like, now and much later.
TEST(BadInput, ReplayedEncryptedPacketIsAcceptedOnceOnly) {
  membership::Keyring ring;
  LocalCluster c;
  ASSERT_NO_FATAL_FAILURE(StartKeyed(c, ring));
  UdpSender udp(c.node(0).addr);
  // A ping for a member that is not there: each one let through is counted
  // as misdirected, and nothing else counts those.
  const Bytes ping = Envelope(membership::kProtocolVersion, "itest", frames::PingPacket(1, "nobody"));
  auto counter = [&](const char* name) { return Counter(*c.Info(0), name); };
  const uint64_t pings_before = counter("misdirected_pings");
  const uint64_t replayed_before = counter("bad_packets.replayed");
  const uint64_t window_before = counter("bad_packets.out_of_window");

  const Bytes captured = ring.Encrypt(ping, WallMicros());
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(udp.Send(captured));
  EXPECT_TRUE(WaitFor([&] { return counter("bad_packets.replayed") >= replayed_before + 9; }, 5s))
      << (*c.Info(0))["counters"].dump();
  EXPECT_EQ(counter("misdirected_pings"), pings_before + 1) << "the copies must not be answered";

  // Captured ten minutes ago (what the clock said then is sealed in it), or
  // sealed by a node whose clock runs ten minutes ahead.
  const int64_t ten_min = 600'000'000;
  ASSERT_TRUE(udp.Send(ring.Encrypt(ping, WallMicros() - ten_min)));
  ASSERT_TRUE(udp.Send(ring.Encrypt(ping, WallMicros() + ten_min)));
  EXPECT_TRUE(WaitFor([&] { return counter("bad_packets.out_of_window") >= window_before + 2; }, 5s))
      << (*c.Info(0))["counters"].dump();
  EXPECT_EQ(counter("misdirected_pings"), pings_before + 1);
  EXPECT_NE(c.LogOf(0, 100000).find("check NTP"), std::string::npos) << "the log says what to check";

  // A fresh frame still goes through, and the cluster never noticed.
  ASSERT_TRUE(udp.Send(ring.Encrypt(ping, WallMicros())));
  EXPECT_TRUE(WaitFor([&] { return counter("misdirected_pings") == pings_before + 2; }, 5s));
  EXPECT_EQ(c.AwaitView(c.All(), c.AllAlive(), 10s), "");
}

// Peak resident memory of process `pid` (VmHWM), in MiB.
double PeakRssMiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

// Costly documents applied to a live daemon: a 512 KiB string aliased 2,000
// times (2 GiB if expanded), and 6 MiB of YAML whose last line is broken (all
// of it read before the refusal). Both are refused naming why; the document is
// parsed off the protocol thread, so the API answers while it is read and the
// other node never suspects the writer; the daemon's memory stays bounded.
TEST(BadInput, AliasAndSizeBombsAreRefusedWhileTheNodeKeepsServing) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2, 30s));
  const auto all_alive = c.AllAlive();
  std::string alias = "a: &s \"" + std::string(512 << 10, 'x') + "\"\nb: [";
  for (int i = 0; i < 2000; ++i) alias += (i ? ", *s" : "*s");
  alias += "]\n";
  std::string size = "roles: [web]\nnodes:\n";
  for (int i = 0; size.size() < (6u << 20); ++i) size += "  n" + std::to_string(i) + ": {lifecycle: commissioned, roles: [web]}\n";
  size += "broken: [\n";
  const double rss_before = PeakRssMiB(c.node(0).pid);
  for (const auto& [name, text, why] :
       {std::tuple{"alias", alias, "more than 8 MiB of keys and values after expanding aliases"},
        std::tuple{"size", size, "line "}}) {
    const std::string path = c.root() + "/" + name + ".yaml";
    std::ofstream(path) << text;
    std::atomic<bool> done{false};
    CommandResult applied;
    const auto start = std::chrono::steady_clock::now();
    std::thread writer([&] {
      applied = c.Cli(0, {"apply", "-f", path}, 60s);
      done = true;
    });
    int answered = 0, view_misses = 0;
    std::chrono::duration<double, std::milli> slowest{0};
    while (!done) {
      const auto asked = std::chrono::steady_clock::now();
      const bool ok = c.Info(0).has_value();
      const auto took = std::chrono::steady_clock::now() - asked;
      if (ok && !done) ++answered;
      slowest = std::max(slowest, std::chrono::duration<double, std::milli>(took));
      if (!c.ViewMismatch({1}, all_alive).empty()) ++view_misses;
    }
    writer.join();
    const double apply_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    std::printf("%s bomb (%zu bytes): refused after %.0f ms; meanwhile %d API answers, slowest %.0f ms; peak RSS %.0f MiB "
                "(%.0f MiB before)\n",
                name, text.size(), apply_ms, answered, slowest.count(), PeakRssMiB(c.node(0).pid), rss_before);
    EXPECT_EQ(applied.exit_code, 1) << name << ": " << applied.out << applied.err;
    EXPECT_NE(applied.err.find(why), std::string::npos) << name << ": " << applied.err;
    EXPECT_EQ(view_misses, 0) << name << ": node1 stopped seeing node0 alive";
    if (std::string(name) == "size") {
      // The parse takes long enough to be seen (over a second): no answer
      // waited for it, as each did while it ran on the protocol thread.
      EXPECT_LT(slowest.count(), apply_ms / 2) << "the API stalled while the document was parsed";
      EXPECT_GE(answered, 10);
    }
  }
  EXPECT_LT(PeakRssMiB(c.node(0).pid), 512.0) << "the daemon's memory was not bounded by the document's size";
  EXPECT_EQ(c.AwaitView(c.All(), all_alive, 10s), "");
  auto info = c.Info(0);
  ASSERT_TRUE(info);
  EXPECT_EQ((*info).value("revision", "x"), "") << "nothing was written";
}

// The body of GET `path` from "127.0.0.1:PORT", or "" without an answer.
std::string RawHttpGet(const std::string& addr, const std::string& path) {
  auto colon = addr.rfind(':');
  if (colon == std::string::npos) return "";
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<uint16_t>(std::stoi(addr.substr(colon + 1))));
  inet_pton(AF_INET, addr.substr(0, colon).c_str(), &sa.sin_addr);
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  std::string got;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[65536];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
    }
  }
  close(fd);
  auto body = got.find("\r\n\r\n");
  return body == std::string::npos ? "" : got.substr(body + 4);
}

// Resident memory of process `pid` now (VmRSS), in MiB.
double RssMiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  return -1;
}

// starling-hostile holds 500 idle connections and 70 that announce a 16 MiB
// frame (sending 4 KiB of it) on node0's gossip port, and 200 idle ones on its
// API socket: far past both listeners' caps. A new node still joins through
// node0 (a push-pull node0 answers), `starling members` answers, a change
// made on node0 reaches the newcomer, and node0's memory stays near where it
// was: no buffer is sized by an announced length.
TEST(BadInput, JoinsAndTheCliWorkWhileHostileClientsHoldEveryListener) {
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(2));
  auto file = [](const std::string& path) {
    std::ifstream in(path);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  };
  auto apply = [&](const std::string& version) {
    const std::string doc = c.root() + "/doc.yaml";
    std::ofstream(doc) << "roles: [web]\npackages:\n  web: {version: \"" << version << "\", roles: [web]}\n";
    CommandResult applied = c.Cli(0, {"apply", "-f", doc, "--format", "json"}, 10s);
    EXPECT_EQ(applied.exit_code, 0) << applied.err;
    return nlohmann::json::parse(applied.out, nullptr, false).value("revision", "");
  };
  auto reaches = [&](int i, const std::string& revision) {
    return WaitFor([&] {
      auto other = c.Info(i);
      return other && other->value("revision", "") == revision;
    }, 20s);
  };
  // Steady first: a change made and spread, so that what is measured after
  // is the flood's, not the cluster's first writes.
  ASSERT_TRUE(reaches(1, apply("1.0.0")));
  auto info = c.Info(0);
  ASSERT_TRUE(info);
  const uint64_t push_pulls = Counter(*info, "push_pulls_received");
  const pid_t pid = c.node(0).pid;
  const double rss_before = RssMiB(pid);

  const std::string err = c.root() + "/hostile.err", out = c.root() + "/hostile.out";
  pid_t hostile = fork();
  ASSERT_GE(hostile, 0);
  if (hostile == 0) {
    if (!freopen(out.c_str(), "w", stdout) || !freopen(err.c_str(), "w", stderr)) _exit(126);
    execl(STARLING_HOSTILE_PATH, STARLING_HOSTILE_PATH, "--tcp", c.node(0).addr.c_str(), "--tcp-idle", "500",
          "--tcp-headers", "70", "--unix", c.node(0).socket.c_str(), "--unix-idle", "200", "--hold", "60",
          static_cast<char*>(nullptr));
    _exit(127);
  }
  ASSERT_TRUE(WaitFor([&] { return file(err).find("ready") != std::string::npos; }, 30s)) << file(err);
  std::printf("starling-hostile: %s", file(err).c_str());
  double rss_most = RssMiB(pid);

  const auto join_start = std::chrono::steady_clock::now();
  ASSERT_EQ(c.Start("node2", {"--join", c.node(0).addr}), 2);
  EXPECT_EQ(c.AwaitView(c.All(), c.AllAlive(), 20s), "");
  const double join_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - join_start).count();
  rss_most = std::max(rss_most, RssMiB(pid));
  CommandResult members = c.Cli(0, {"members", "--format", "json"}, 10s);
  EXPECT_EQ(members.exit_code, 0) << members.err;
  auto list = nlohmann::json::parse(members.out, nullptr, false);
  EXPECT_TRUE(list.is_array() && list.size() == 3) << members.out;
  const std::string second = apply("2.0.0");
  EXPECT_TRUE(reaches(2, second)) << "the change did not reach the newcomer";
  info = c.Info(0);
  ASSERT_TRUE(info);
  EXPECT_GT(Counter(*info, "push_pulls_received"), push_pulls) << "node0 answered no push-pull";
  rss_most = std::max(rss_most, RssMiB(pid));

  kill(hostile, SIGTERM);
  int status = 0;
  waitpid(hostile, &status, 0);
  double rss_after = RssMiB(pid);
  WaitFor([&] { return (rss_after = RssMiB(pid)) <= rss_before * 1.1; }, 15s);
  std::printf("node0: a node joined through it in %.2f s; RSS %.1f MiB before, %.1f MiB at most, %.1f MiB after\n",
              join_s, rss_before, rss_most, rss_after);
  EXPECT_LT(rss_most, rss_before + 64) << "memory grew with announced lengths";
  EXPECT_LE(rss_after, rss_before * 1.1);
  // Both listeners counted whom they turned away.
  const std::string metrics = RawHttpGet(info->value("http", ""), "/metrics");
  for (const char* listener : {"gossip", "api"}) {
    const std::string evicted =
        std::string("starling_connections_refused_total{listener=\"") + listener + "\",reason=\"evicted\"} ";
    auto at = metrics.find(evicted);
    ASSERT_NE(at, std::string::npos) << listener << "\n" << metrics;
    EXPECT_GT(std::stod(metrics.substr(at + evicted.size())), 0) << listener;
  }
}

// A second process floods node0's gossip port with random and malformed
// datagrams and stream frames for 30 s (bounded in count too). Meanwhile
// node0 must keep answering its API, stay alive in every view and take and
// spread a change to the desired state.
TEST(BadInput, NodeKeepsServingThroughAThirtySecondFlood) {
  const std::string key = membership::Keyring::FormatKey(membership::Keyring::Generate());
  LocalCluster c;
  ASSERT_TRUE(c.StartConverged(3, 30s, {"--encrypt", key}));
  const auto all_alive = c.AllAlive();
  const std::string flood_out = c.root() + "/flood.out";
  pid_t flood = fork();
  ASSERT_GE(flood, 0);
  if (flood == 0) {
    FILE* out = freopen(flood_out.c_str(), "w", stdout);
    (void)out;
    execl(STARLING_FLOOD_PATH, STARLING_FLOOD_PATH, "--target", c.node(0).addr.c_str(), "--seconds", "30",
          "--rate", "3000", "--max-packets", "200000", "--cluster", "itest", "--key", key.c_str(),
          static_cast<char*>(nullptr));
    _exit(127);
  }
  const auto start = std::chrono::steady_clock::now();
  int checks = 0, api_failures = 0;
  std::vector<std::string> view_misses;
  bool applied = false;
  int status = 0;
  while (waitpid(flood, &status, WNOHANG) == 0) {
    auto info = c.Info(0);
    if (!info) ++api_failures;
    std::string mismatch = c.ViewMismatch(c.All(), all_alive);
    if (!mismatch.empty()) view_misses.push_back(mismatch);
    ++checks;
    if (!applied && std::chrono::steady_clock::now() - start > 10s) {
      std::string doc = c.root() + "/flood.yaml";
      std::ofstream(doc) << "roles: [web]\npackages:\n  web: {version: \"1.0.0\", roles: [web]}\n";
      CommandResult r = c.Cli(0, {"apply", "-f", doc, "--format", "json"});
      EXPECT_EQ(r.exit_code, 0) << r.err;
      auto j = nlohmann::json::parse(r.out, nullptr, false);
      std::string revision = j.is_object() ? j.value("revision", "") : "";
      EXPECT_TRUE(WaitFor(
          [&] {
            auto other = c.Info(2);
            return other && (*other).value("revision", "") == revision;
          },
          10s))
          << "the change made on the flooded node did not reach node2";
      applied = true;
    }
  }
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "starling-flood failed: status " << status;
  std::ifstream in(flood_out);
  std::string summary((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::printf("%s", summary.c_str());
  EXPECT_GE(took, 29s);
  EXPECT_TRUE(applied);
  EXPECT_GT(checks, 10);
  EXPECT_EQ(api_failures, 0) << "of " << checks << " checks";
  EXPECT_TRUE(view_misses.empty()) << view_misses.size() << " of " << checks
                                   << " checks saw a member missing, first: " << view_misses.front();
  auto info = c.Info(0);
  ASSERT_TRUE(info);
  std::printf("flooded node: %d checks, %d API failures, %zu view misses; %llu bad packets counted (auth %llu)\n",
              checks, api_failures, view_misses.size(), static_cast<unsigned long long>(BadPacketSum(*info)),
              static_cast<unsigned long long>(Counter(*info, "bad_packets.auth")));
  EXPECT_GT(BadPacketSum(*info), 10000u) << (*info)["counters"].dump();
  EXPECT_GT(Counter(*info, "bad_packets.auth"), 0u);
  EXPECT_GT(Counter(*info, "bad_packets.unencrypted"), 0u);
  EXPECT_EQ(c.AwaitView(c.All(), all_alive, 10s), "");
}

}  // namespace
}  // namespace starling::itest

// starling-flood: sends random and malformed datagrams and stream frames to
// one daemon's gossip port for a bounded time and count, then prints what it
// sent. Only loopback targets: it exists to prove a node keeps serving under
// hostile input, not to attack anything.
//
// Kinds, in turn: random bytes; clear envelopes cut short; envelopes of a
// foreign version or cluster; envelopes whose payload is not a packet;
// packets with more messages than allowed; sealed-frame headers over random
// bytes; real packets sealed under a random key; with --key, real keys over
// garbage (authentic but malformed) and authentic frames with one bit
// flipped; oversized datagrams. Every 50th send also opens a TCP connection
// and writes a junk or absurdly long frame; a few connections are held open
// and silent until the end.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "frames.h"
#include "starling/membership/config.h"
#include "starling/membership/keyring.h"

namespace {

using Bytes = std::vector<uint8_t>;
using starling::frames::Envelope;
using starling::frames::WallMicros;
using starling::membership::Keyring;

Bytes Packet(size_t pings) { return starling::frames::PingPacket(pings); }

struct Target {
  sockaddr_in sa{};
};

std::optional<Target> Resolve(const std::string& addr) {
  size_t colon = addr.rfind(':');
  if (colon == std::string::npos) return std::nullopt;
  Target t;
  t.sa.sin_family = AF_INET;
  int port = std::atoi(addr.c_str() + colon + 1);
  if (port <= 0 || port > 65535) return std::nullopt;
  t.sa.sin_port = htons(static_cast<uint16_t>(port));
  if (inet_pton(AF_INET, addr.substr(0, colon).c_str(), &t.sa.sin_addr) != 1) return std::nullopt;
  // 127.0.0.0/8 only.
  if ((ntohl(t.sa.sin_addr.s_addr) >> 24) != 127) return std::nullopt;
  return t;
}

int Connect(const Target& t) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&t.sa), sizeof(t.sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"starling-flood: random and malformed gossip traffic at one daemon (127.0.0.0/8 only)",
               "starling-flood"};
  std::string target, cluster = "default", key_text;
  double seconds = 30;
  uint64_t max_packets = 1'000'000, rate = 2000;
  uint32_t seed = std::random_device{}();
  app.add_option("--target", target, "The daemon's gossip HOST:PORT (loopback)")->required();
  app.add_option("--seconds", seconds, "Stop after this long")->check(CLI::Range(0.1, 3600.0))->capture_default_str();
  app.add_option("--max-packets", max_packets, "Stop after this many sends")->capture_default_str();
  app.add_option("--rate", rate, "Sends per second")->check(CLI::Range(1, 1'000'000))->capture_default_str();
  app.add_option("--cluster", cluster, "Cluster name for the envelopes that should pass the name check")
      ->capture_default_str();
  app.add_option("--key", key_text, "The cluster key: adds authentic frames with garbage or one flipped bit");
  app.add_option("--seed", seed, "Random seed (printed)");
  CLI11_PARSE(app, argc, argv);

  auto to = Resolve(target);
  if (!to) {
    std::fprintf(stderr, "starling-flood: --target '%s' must be IPv4 HOST:PORT in 127.0.0.0/8\n", target.c_str());
    return 2;
  }
  std::optional<Keyring> cluster_ring;
  if (!key_text.empty()) {
    auto key = Keyring::ParseKey(key_text);
    if (!key.ok()) {
      std::fprintf(stderr, "starling-flood: --key: %s\n", key.status().message().c_str());
      return 2;
    }
    cluster_ring.emplace();
    (void)cluster_ring->Install(*key);
  }
  Keyring stranger;
  (void)stranger.Install(Keyring::Generate());

  std::mt19937_64 rng(seed);
  auto random_bytes = [&](size_t n) {
    Bytes b(n);
    for (auto& x : b) x = static_cast<uint8_t>(rng());
    return b;
  };
  const uint16_t v = starling::membership::kProtocolVersion;
  const Bytes good = Envelope(v, cluster, Packet(1));
  const Bytes too_many = Envelope(v, cluster, Packet(600));

  using Gen = std::function<Bytes()>;
  std::vector<std::pair<std::string, Gen>> kinds = {
      {"random", [&] { return random_bytes(1 + rng() % 1400); }},
      {"truncated", [&] { return Bytes(good.begin(), good.begin() + static_cast<long>(1 + rng() % (good.size() - 1))); }},
      {"foreign_version", [&] { return Envelope(static_cast<uint16_t>(v + 1 + rng() % 100), cluster, Packet(1)); }},
      {"foreign_cluster", [&] { return Envelope(v, "x" + std::to_string(rng() % 1000), Packet(1)); }},
      {"not_a_packet", [&] { return Envelope(v, cluster, random_bytes(8 * (1 + rng() % 64))); }},
      {"too_many_messages", [&] { return too_many; }},
      {"sealed_header_junk", [&] {
         Bytes b = stranger.Encrypt(random_bytes(rng() % 64), WallMicros());
         Bytes junk = random_bytes(rng() % 1400);
         b.resize(Keyring::kHeaderBytes);
         b.insert(b.end(), junk.begin(), junk.end());
         return b;
       }},
      {"wrong_key", [&] { return stranger.Encrypt(good, WallMicros()); }},
      {"oversized", [&] { return random_bytes(2000 + rng() % 60000); }},
  };
  if (cluster_ring) {
    kinds.push_back({"authentic_garbage", [&] { return cluster_ring->Encrypt(random_bytes(rng() % 1400), WallMicros()); }});
    kinds.push_back({"authentic_flipped", [&] {
                       Bytes b = cluster_ring->Encrypt(good, WallMicros());
                       size_t at = rng() % b.size();
                       b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
                       return b;
                     }});
  }

  int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (udp < 0) {
    std::perror("starling-flood: socket");
    return 1;
  }
  std::map<std::string, uint64_t> sent;
  uint64_t streams = 0, send_errors = 0;
  std::vector<int> held;  // silent connections the daemon must time out
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                    std::chrono::duration<double>(seconds));
  const auto interval = std::chrono::nanoseconds(1'000'000'000 / rate);
  auto next = start;
  uint64_t n = 0;
  for (; n < max_packets && std::chrono::steady_clock::now() < deadline; ++n) {
    auto& [name, gen] = kinds[n % kinds.size()];
    Bytes b = gen();
    if (sendto(udp, b.data(), b.size(), 0, reinterpret_cast<const sockaddr*>(&to->sa), sizeof(to->sa)) < 0) {
      ++send_errors;
    } else {
      ++sent[name];
    }
    if (n % 50 == 0) {
      int fd = Connect(*to);
      if (fd >= 0) {
        Bytes frame;
        if (rng() % 2) {
          frame = {0xff, 0xff, 0xff, 0x7f};  // a 2 GB frame announced
        } else {
          Bytes body = rng() % 2 ? random_bytes(rng() % 512) : gen();
          uint32_t len = static_cast<uint32_t>(body.size());
          frame = {static_cast<uint8_t>(len), static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len >> 16),
                   static_cast<uint8_t>(len >> 24)};
          frame.insert(frame.end(), body.begin(), body.end());
        }
        (void)!send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
        ++streams;
        if (held.size() < 16 && rng() % 8 == 0) {
          held.push_back(fd);
        } else {
          close(fd);
        }
      }
    }
    next += interval;
    std::this_thread::sleep_until(next);
  }
  for (int fd : held) close(fd);
  close(udp);
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  uint64_t total = 0;
  for (const auto& [_, c] : sent) total += c;
  std::printf("starling-flood: seed %u, %llu datagrams and %llu stream frames to %s in %.1f s (%llu send errors)\n",
              seed, static_cast<unsigned long long>(total), static_cast<unsigned long long>(streams), target.c_str(),
              took, static_cast<unsigned long long>(send_errors));
  for (const auto& [name, c] : sent) std::printf("  %-20s %llu\n", name.c_str(), static_cast<unsigned long long>(c));
  return 0;
}

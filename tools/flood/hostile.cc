// starling-hostile: opens idle, slow and greedy clients against one daemon's
// listeners (loopback only) and measures whether it keeps answering: probes
// /health on fresh connections, as a load balancer does, before the hostile
// clients open and while they are open, and prints both side by side.
//
//   --http HOST:PORT     the node's --http address
//   --idle N             plain TCP connections to it that never send a byte
//   --slowloris N        requests sent one byte a second, never finished
//   --nonreaders N       connections that pipeline /metrics requests and never read
//   --probes N           /health requests in each phase (200 by default; none without --http)
//   --tcp HOST:PORT      the node's gossip port
//   --tcp-idle N         connections to it that never send a byte
//   --tcp-headers N      connections that announce a 16 MiB frame and send 4 KiB of it
//   --unix PATH          the node's API socket
//   --unix-idle N        connections to it that never send a byte
//   --hold SECONDS       how long the hostile clients stay open after the probes
//
// Writes "ready" to stderr once every hostile client is open, and at the end
// one JSON object: {"before": {...}, "during": {...}, "hostile_open",
// "metrics_during"}; each phase has ok, failed, p50_ms, p99_ms, max_ms.
// Exit 0 when every probe was answered 200, 1 otherwise, 2 on bad usage.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

struct Target {
  sockaddr_in addr{};
  std::string host;
};

bool ParseTarget(const std::string& s, Target* t) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos) return false;
  t->host = s.substr(0, colon);
  t->addr.sin_family = AF_INET;
  t->addr.sin_port = htons(static_cast<uint16_t>(std::stoi(s.substr(colon + 1))));
  if (inet_pton(AF_INET, t->host.c_str(), &t->addr.sin_addr) != 1) return false;
  // Loopback only: this exists to prove a node holds up, not to attack one.
  return (ntohl(t->addr.sin_addr.s_addr) >> 24) == 127;
}

int Connect(const Target& t) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (connect(fd, reinterpret_cast<const sockaddr*>(&t.addr), sizeof(t.addr)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& s) {
  size_t at = 0;
  while (at < s.size()) {
    ssize_t n = send(fd, s.data() + at, s.size() - at, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) return false;
    at += static_cast<size_t>(n);
  }
  return true;
}

int ConnectUnix(const std::string& path) {
  sockaddr_un sa{};
  if (path.size() >= sizeof(sa.sun_path)) return -1;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, path.data(), path.size());
  if (connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// One GET on a fresh connection; the status, or 0 when there was no answer
// within `timeout`.
int Get(const Target& t, const std::string& path, std::chrono::milliseconds timeout, std::string* body = nullptr) {
  int fd = Connect(t);
  if (fd < 0) return 0;
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  const std::string req = "GET " + path + " HTTP/1.1\r\nHost: " + t.host + "\r\nConnection: close\r\n\r\n";
  int status = 0;
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
    std::string got;
    char buf[65536];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) got.append(buf, static_cast<size_t>(n));
    if (got.rfind("HTTP/1.1 ", 0) == 0 && got.size() >= 12) status = std::atoi(got.substr(9, 3).c_str());
    if (body) {
      auto end = got.find("\r\n\r\n");
      *body = end == std::string::npos ? "" : got.substr(end + 4);
    }
  }
  close(fd);
  return status;
}

struct Phase {
  int ok = 0, failed = 0;
  double p50 = 0, p99 = 0, max = 0;
};

Phase Probe(const Target& t, int probes) {
  Phase p;
  std::vector<double> ms;
  for (int i = 0; i < probes; ++i) {
    const auto start = Clock::now();
    const int status = Get(t, "/health", std::chrono::milliseconds(5000));
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - start).count());
    (status == 200 ? p.ok : p.failed)++;
  }
  std::sort(ms.begin(), ms.end());
  auto at = [&](double q) { return ms.empty() ? 0 : ms[std::min(ms.size() - 1, static_cast<size_t>(q * ms.size()))]; };
  p.p50 = at(0.50);
  p.p99 = at(0.99);
  p.max = ms.empty() ? 0 : ms.back();
  return p;
}

std::string PhaseJson(const Phase& p) {
  char out[256];
  std::snprintf(out, sizeof out, "{\"ok\": %d, \"failed\": %d, \"p50_ms\": %.1f, \"p99_ms\": %.1f, \"max_ms\": %.1f}",
                p.ok, p.failed, p.p50, p.p99, p.max);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"starling-hostile: idle, slow and greedy clients against one node's listeners (loopback only)"};
  std::string http, tcp, unix_path;
  int idle = 0, slowloris = 0, nonreaders = 0, probes = 200, tcp_idle = 0, tcp_headers = 0, unix_idle = 0;
  double hold = 0;
  app.add_option("--http", http, "The node's --http address, 127.x.x.x:PORT");
  app.add_option("--idle", idle, "HTTP connections that never send a byte")->check(CLI::NonNegativeNumber);
  app.add_option("--slowloris", slowloris, "HTTP requests sent one byte a second, never finished")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--nonreaders", nonreaders, "HTTP connections that pipeline requests and never read")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--probes", probes, "/health requests in each phase")->check(CLI::PositiveNumber);
  app.add_option("--tcp", tcp, "The node's gossip address, 127.x.x.x:PORT");
  app.add_option("--tcp-idle", tcp_idle, "Gossip connections that never send a byte")->check(CLI::NonNegativeNumber);
  app.add_option("--tcp-headers", tcp_headers, "Gossip connections that announce a 16 MiB frame and send 4 KiB")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--unix", unix_path, "The node's API socket");
  app.add_option("--unix-idle", unix_idle, "API connections that never send a byte")->check(CLI::NonNegativeNumber);
  app.add_option("--hold", hold, "Seconds the hostile clients stay open after the probes")
      ->check(CLI::NonNegativeNumber);
  CLI11_PARSE(app, argc, argv);
  Target t, g;
  if (!http.empty() && !ParseTarget(http, &t)) {
    std::fprintf(stderr, "starling-hostile: --http %s is not a 127.x.x.x:PORT address\n", http.c_str());
    return 2;
  }
  if (!tcp.empty() && !ParseTarget(tcp, &g)) {
    std::fprintf(stderr, "starling-hostile: --tcp %s is not a 127.x.x.x:PORT address\n", tcp.c_str());
    return 2;
  }
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  const bool probing = !http.empty();
  if (!probing) idle = slowloris = nonreaders = 0;

  const Phase before = probing ? Probe(t, probes) : Phase{};

  std::vector<int> hostile;
  for (int i = 0; i < idle; ++i)
    if (int fd = Connect(t); fd >= 0) hostile.push_back(fd);
  std::vector<int> slow;
  const std::string slow_request = "GET /health HTTP/1.1\r\nHost: " + t.host + "\r\nX-Slow: ";
  for (int i = 0; i < slowloris; ++i)
    if (int fd = Connect(t); fd >= 0) slow.push_back(fd);
  std::string pipelined;
  for (int i = 0; i < 64; ++i) pipelined += "GET /metrics HTTP/1.1\r\nHost: " + t.host + "\r\n\r\n";
  for (int i = 0; i < nonreaders; ++i) {
    int fd = Connect(t);
    if (fd < 0) continue;
    int small = 4096;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    SendAll(fd, pipelined);
    hostile.push_back(fd);
  }
  if (!tcp.empty()) {
    for (int i = 0; i < tcp_idle; ++i)
      if (int fd = Connect(g); fd >= 0) hostile.push_back(fd);
    std::string announce = {'\x00', '\x00', '\x00', '\x01'};  // 16 MiB, little-endian
    announce += std::string(4096, 'x');
    for (int i = 0; i < tcp_headers; ++i) {
      int fd = Connect(g);
      if (fd < 0) continue;
      SendAll(fd, announce);
      hostile.push_back(fd);
    }
  }
  for (int i = 0; i < unix_idle && !unix_path.empty(); ++i)
    if (int fd = ConnectUnix(unix_path); fd >= 0) hostile.push_back(fd);
  // The slow clients send their request a byte a second until the end.
  std::atomic<bool> stop{false};
  std::thread dripper([&] {
    size_t at = 0;
    while (!stop) {
      for (int fd : slow) {
        const char c = at < slow_request.size() ? slow_request[at] : 'x';
        (void)send(fd, &c, 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      }
      ++at;
      for (int i = 0; i < 10 && !stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const size_t open = hostile.size() + slow.size();
  std::fprintf(stderr, "ready: %zu hostile connections open\n", open);
  std::fflush(stderr);
  const Phase during = probing ? Probe(t, probes) : Phase{};
  std::string metrics;
  const bool metrics_ok = !probing || (Get(t, "/metrics", std::chrono::milliseconds(5000), &metrics) == 200 &&
                                       metrics.find("starling_connections_open") != std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(static_cast<int64_t>(hold * 1000)));
  stop = true;
  dripper.join();
  for (int fd : hostile) close(fd);
  for (int fd : slow) close(fd);

  std::printf("{\"idle\": %d, \"slowloris\": %d, \"nonreaders\": %d, \"tcp_idle\": %d, \"tcp_headers\": %d, "
              "\"unix_idle\": %d, \"hostile_open\": %zu,\n \"before\": %s,\n \"during\": %s,\n \"metrics_during\": %s}\n",
              idle, slowloris, nonreaders, tcp_idle, tcp_headers, unix_idle, open, PhaseJson(before).c_str(),
              PhaseJson(during).c_str(), metrics_ok ? "true" : "false");
  return before.failed == 0 && during.failed == 0 && metrics_ok ? 0 : 1;
}

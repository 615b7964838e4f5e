#include "bench_util.h"

#include <arpa/inet.h>
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "api_client.h"

namespace starling::bench {

using namespace std::chrono_literals;

namespace {
std::mutex g_mu;
std::set<pid_t> g_pids;

void OnSignal(int) {
  // Not taking the lock: the signal may land while it is held.
  for (pid_t p : g_pids) kill(p, SIGKILL);
  _exit(130);
}
}  // namespace

pid_t Spawn(const std::vector<std::string>& args, const std::string& log_path) {
  pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int log = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (log >= 0) {
      dup2(log, STDOUT_FILENO);
      dup2(log, STDERR_FILENO);
    }
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, STDIN_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (pid > 0) {
    std::lock_guard lock(g_mu);
    g_pids.insert(pid);
  }
  return pid;
}

void Kill(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  std::lock_guard lock(g_mu);
  g_pids.erase(pid);
}

bool Reaped(pid_t pid) {
  if (pid <= 0) return true;
  if (waitpid(pid, nullptr, WNOHANG) != pid) return false;
  std::lock_guard lock(g_mu);
  g_pids.erase(pid);
  return true;
}

void KillAll() {
  std::set<pid_t> pids;
  {
    std::lock_guard lock(g_mu);
    pids.swap(g_pids);
  }
  for (pid_t p : pids) kill(p, SIGKILL);
  for (pid_t p : pids) waitpid(p, nullptr, 0);
}

void KillAllOnSignals() {
  signal(SIGINT, OnSignal);
  signal(SIGTERM, OnSignal);
}

bool Call(const std::string& socket, const std::function<void(api::Request::Builder)>& build,
          const std::function<void(api::Reply::Reader)>& use, bool quiet) {
  capnp::MallocMessageBuilder mb;
  auto req = mb.initRoot<api::Request>();
  req.setVersion(api::API_VERSION);
  build(req);
  auto words = capnp::messageToFlatArray(mb);
  auto bytes = words.asBytes();
  auto reply = cli::Exchange(cli::Daemon{socket, ""}, std::vector<uint8_t>(bytes.begin(), bytes.end()), 10s);
  if (!reply.ok()) return false;
  capnp::ReaderOptions opts;
  opts.traversalLimitInWords = reply->size() * 2 + 1024;
  capnp::FlatArrayMessageReader reader(
      kj::ArrayPtr<const capnp::word>(reinterpret_cast<const capnp::word*>(reply->data()), reply->size()), opts);
  auto r = reader.getRoot<api::Reply>();
  if (r.getError().size() > 0) {
    if (!quiet) std::fprintf(stderr, "bench: %s: %s\n", socket.c_str(), r.getError().cStr());
    return false;
  }
  use(r);
  return true;
}

std::string BenchDocument(int k) {
  return "roles: [web]\npackages:\n  web: {version: \"1.0." + std::to_string(k) + "\", roles: [web]}\n";
}

std::optional<std::string> ApplyDocument(const std::string& socket, int k) {
  std::string revision;
  const std::string text = BenchDocument(k);
  bool ok = Call(
      socket,
      [&](api::Request::Builder r) {
        auto a = r.initApply();
        a.setDocument(text);
        a.setSource("bench");
      },
      [&](api::Reply::Reader r) {
        if (!r.isText()) return;
        auto j = nlohmann::json::parse(r.getText().cStr(), nullptr, false);
        if (!j.is_discarded()) revision = j.value("revision", "");
      });
  if (!ok || revision.empty()) return std::nullopt;
  return revision;
}

std::optional<std::string> Revision(const std::string& socket) {
  std::optional<std::string> rev;
  Call(
      socket, [](api::Request::Builder r) { r.setInfo(); },
      [&](api::Reply::Reader r) { rev = r.getInfo().getRevision().cStr(); }, true);
  return rev;
}

int AwaitRevision(const std::vector<std::string>& sockets, const std::string& revision,
                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<bool> seen(sockets.size(), false);
  int got = 0;
  while (got < static_cast<int>(sockets.size()) && std::chrono::steady_clock::now() < deadline) {
    for (size_t i = 0; i < sockets.size(); ++i) {
      if (!seen[i] && Revision(sockets[i]) == revision) {
        seen[i] = true;
        ++got;
      }
    }
    if (got < static_cast<int>(sockets.size())) std::this_thread::sleep_for(500us);
  }
  return got;
}

bool WaitUntil(const std::function<bool()>& cond, std::chrono::milliseconds timeout,
               std::chrono::milliseconds every) {
  auto end = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < end) {
    if (cond()) return true;
    std::this_thread::sleep_for(every);
  }
  return cond();
}

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  auto idx = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::min(idx == 0 ? 0 : idx - 1, v.size() - 1)];
}

std::optional<ProcFigures> ReadProc(pid_t pid) {
  const std::string dir = "/proc/" + std::to_string(pid);
  ProcFigures f;
  auto kb = [](const std::string& path, const std::string& key) -> std::optional<double> {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    for (std::string line; std::getline(in, line);) {
      std::istringstream fields(line);
      std::string name;
      double value = 0;
      fields >> name >> value;
      if (name == key) return value;
    }
    return std::nullopt;
  };
  auto rss = kb(dir + "/status", "VmRSS:");
  if (!rss) return std::nullopt;
  f.rss_mb = *rss / 1024;
  f.anon_mb = kb(dir + "/status", "RssAnon:").value_or(0) / 1024;
  f.pss_mb = kb(dir + "/smaps_rollup", "Pss:").value_or(0) / 1024;
  // Fields 14 and 15 of stat count after the command name, which may hold
  // spaces: start after its closing parenthesis.
  std::ifstream stat(dir + "/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
  auto close = all.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream in(all.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; i <= 15 && in >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) stime = std::stod(field);
  }
  f.cpu_seconds = (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  return f;
}

std::vector<int> FreePorts(int count) {
  // Below the kernel's ephemeral range: the agents' own outgoing sockets
  // take ports from that range and could take one chosen here before its
  // agent binds it.
  int ephemeral_low = 32768;
  std::ifstream("/proc/sys/net/ipv4/ip_local_port_range") >> ephemeral_low;
  const int lowest = 10000, highest = ephemeral_low - 1;
  if (highest - lowest < count * 4) return {};
  std::vector<int> held, ports;
  int port = lowest + static_cast<int>(getpid() % (highest - lowest - count * 4));
  for (; port <= highest && static_cast<int>(ports.size()) < count; ++port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    int t = socket(AF_INET, SOCK_STREAM, 0);
    int u = socket(AF_INET, SOCK_DGRAM, 0);
    bool ok = t >= 0 && u >= 0 && bind(t, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
              bind(u, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    if (t >= 0) held.push_back(t);
    if (u >= 0) held.push_back(u);
    if (ok) ports.push_back(port);
  }
  for (int fd : held) close(fd);
  if (static_cast<int>(ports.size()) < count) ports.clear();
  return ports;
}

}  // namespace starling::bench

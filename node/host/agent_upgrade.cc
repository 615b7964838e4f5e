#include "agent_upgrade.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "data_format.h"
#include "file_artifact_store.h"

namespace starling::node {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;

constexpr const char* kRecord = "agent-upgrade";
constexpr const char* kFailed = "agent-upgrade-failed";

std::vector<std::string>& Arguments() {
  static std::vector<std::string> args;
  return args;
}

int64_t WallMillis() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Whatever this process holds beyond stdio must not reach what it execs:
// a listening socket kept open there would take a share of the
// connections the restarted daemon's own socket should get.
void CloseOnExec() { syscall(SYS_close_range, 3u, ~0u, 4u /* CLOSE_RANGE_CLOEXEC */); }

std::vector<char*> Argv(std::vector<std::string>& args) {
  std::vector<char*> out;
  for (auto& a : args) out.push_back(a.data());
  out.push_back(nullptr);
  return out;
}

struct Ran {
  int exit_code = -1;  // -N: killed by signal N
  std::string output;
};

// Runs `args` (args[0] a path) to its end or `timeout`, capturing its output.
Result<Ran> RunChild(std::vector<std::string> args, std::chrono::milliseconds timeout) {
  int out[2];
  if (pipe2(out, O_CLOEXEC) != 0) return Status::IoError(std::string("pipe: ") + std::strerror(errno));
  std::vector<char*> argv = Argv(args);
  pid_t pid = fork();
  if (pid < 0) {
    close(out[0]);
    close(out[1]);
    return Status::IoError(std::string("fork: ") + std::strerror(errno));
  }
  if (pid == 0) {
    int null = open("/dev/null", O_RDONLY);
    dup2(null, STDIN_FILENO);
    dup2(out[1], STDOUT_FILENO);
    dup2(out[1], STDERR_FILENO);
    CloseOnExec();
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(out[1]);
  Ran ran;
  const auto end = std::chrono::steady_clock::now() + timeout;
  bool killed = false;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0 && !killed) {
      kill(pid, SIGKILL);
      killed = true;
    }
    pollfd p{out[0], POLLIN, 0};
    int n = poll(&p, 1, killed ? 1000 : static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (killed) break;
      continue;
    }
    char buf[4096];
    ssize_t got = read(out[0], buf, sizeof buf);
    if (got <= 0) break;
    if (ran.output.size() < 16384) ran.output.append(buf, static_cast<size_t>(got));
  }
  close(out[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  ran.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
  return ran;
}

std::string FirstLine(const std::string& s) { return s.substr(0, s.find('\n')); }

Status CopyExecutable(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::remove(to, ec);
  fs::copy_file(from, to, ec);
  if (ec) return Status::IoError("cannot copy " + from + " to " + to + ": " + ec.message());
  if (chmod(to.c_str(), 0755) != 0) return Status::IoError("cannot make " + to + " executable: " + std::strerror(errno));
  int fd = open(to.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    fsync(fd);
    close(fd);
  }
  return Status::Ok();
}

// Written beside and renamed into place.
Status WriteFileAtomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << text;
    if (!out.flush()) return Status::IoError("cannot write " + tmp);
  }
  if (rename(tmp.c_str(), path.c_str()) != 0)
    return Status::IoError("cannot rename " + tmp + ": " + std::strerror(errno));
  return Status::Ok();
}

std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The sentinel runs detached (double fork, its own session): nothing waits
// on it, and the daemon's restart does not take it along.
Status SpawnSentinel(const std::string& previous, const std::string& record) {
  std::vector<std::string> args = {previous, "--agent-sentinel", record};
  std::vector<char*> argv = Argv(args);
  pid_t pid = fork();
  if (pid < 0) return Status::IoError(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (fork() == 0) {
      setsid();
      CloseOnExec();
      execv(argv[0], argv.data());
      _exit(127);
    }
    _exit(0);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return Status::Ok();
}

}  // namespace

std::string& Executable() {
  static std::string exe;
  return exe;
}

void KeepArguments(int argc, char** argv) {
  Arguments().assign(argv, argv + argc);
  if (Result<std::string> e = OwnExecutable(); e.ok()) Executable() = *e;
}
const std::vector<std::string>& KeptArguments() { return Arguments(); }
const std::string& KeptExecutable() { return Executable(); }

void KeepOption(const std::string& flag, const std::string& value) {
  std::vector<std::string>& args = Arguments();
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i] == flag && i + 1 < args.size()) {
      args[i + 1] = value;
      return;
    }
    if (args[i].rfind(flag + "=", 0) == 0) {
      args[i] = flag + "=" + value;
      return;
    }
  }
  args.insert(args.end(), {flag, value});
}

void ExecKept() {
  std::vector<std::string> args = Arguments();
  if (args.empty() || Executable().empty()) return;
  std::vector<char*> argv = Argv(args);
  CloseOnExec();
  execv(Executable().c_str(), argv.data());
}

Result<std::string> OwnExecutable() {
  std::error_code ec;
  fs::path p = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return Status::IoError("cannot read /proc/self/exe: " + ec.message());
  return p.string();
}

AgentUpgrader::AgentUpgrader(Options options, Worker::Post post) : opts_(std::move(options)), worker_(std::move(post)) {
  // Hashed here, at start, so that the protocol thread never hashes a binary.
  Result<std::string> d = Sha256File(opts_.exe);
  if (d.ok()) {
    digest_ = *d;
  } else {
    spdlog::warn("cannot hash the running binary {}: {}", opts_.exe, d.status().message());
  }
  std::error_code exists;
  if (fs::exists(opts_.exe + ".previous", exists))
    if (Result<std::string> p = Sha256File(opts_.exe + ".previous"); p.ok()) previous_digest_ = *p;
  const std::string failed = opts_.data_dir + "/" + kFailed;
  std::error_code ec;
  if (fs::exists(failed, ec)) {
    Json j = Json::parse(Slurp(failed), nullptr, false);
    if (j.is_object()) last_failure_ = j.value("why", "");
    fs::remove(failed, ec);
  }
}

std::string AgentUpgrader::Kept(const std::string& digest) const {
  // Restart checks the digest again before anything is swapped.
  return !digest.empty() && digest == previous_digest_ ? opts_.exe + ".previous" : "";
}

void AgentUpgrader::Restart(const std::string& path, const std::string& version, const std::string& digest,
                            std::function<void(Status)> failed) {
  auto outcome = std::make_shared<Status>();
  Options o = opts_;
  worker_.Run(
      [o, path, version, digest, outcome] {
        auto fail = [&](Status s) { *outcome = std::move(s); };
        Result<std::string> d = Sha256File(path);
        if (!d.ok()) return fail(d.status());
        if (*d != digest) return fail(Status::Corruption(path + " is " + *d + ", not " + digest));
        const std::string next = o.exe + ".next", previous = o.exe + ".previous";
        if (Status s = CopyExecutable(path, next); !s.ok()) return fail(s);
        Result<Ran> v = RunChild({next, "--version"}, std::chrono::seconds(10));
        if (!v.ok()) return fail(v.status());
        const std::string said = FirstLine(v->output);
        if (v->exit_code != 0 || said.rfind("starlingd " + version + " ", 0) != 0) {
          fs::remove(next);
          return fail(Status::InvalidArgument("`--version` says '" + said.substr(0, 200) + "' (exit " +
                                              std::to_string(v->exit_code) + "), not starlingd " + version));
        }
        // An older release: the data dir goes down to its format first.
        Result<Ran> f = RunChild({next, "--data-format"}, std::chrono::seconds(10));
        if (f.ok() && f->exit_code == 0 && o.step_down) {
          const std::string n = FirstLine(f->output);
          if (!n.empty() && n.size() < 6 && n.find_first_not_of("0123456789") == std::string::npos)
            if (Status s = o.step_down(static_cast<uint32_t>(std::stoul(n))); !s.ok()) {
              fs::remove(next);
              return fail(s);
            }
        }
        Result<Ran> c = RunChild({next, "--data-dir", o.data_dir, "--check-data-dir"}, std::chrono::seconds(30));
        if (!c.ok()) return fail(c.status());
        if (c->exit_code != 0) {
          fs::remove(next);
          return fail(Status::InvalidArgument("it cannot run on the data dir: " + FirstLine(c->output).substr(0, 300) +
                                              " (exit " + std::to_string(c->exit_code) + ")"));
        }
        // Keep the running binary, then swap the new one in (atomic rename).
        const std::string link_tmp = previous + ".tmp";
        unlink(link_tmp.c_str());
        if (link(o.exe.c_str(), link_tmp.c_str()) != 0 && CopyExecutable(o.exe, link_tmp).code() != Status::Code::kOk)
          return fail(Status::IoError("cannot keep " + o.exe + " as " + previous));
        if (rename(link_tmp.c_str(), previous.c_str()) != 0)
          return fail(Status::IoError("cannot keep " + o.exe + " as " + previous + ": " + std::strerror(errno)));
        Json record = {{"pid", getpid()},
                       {"exe", o.exe},
                       {"previous", previous},
                       {"version", version},
                       {"deadline_ms", WallMillis() + std::chrono::duration_cast<std::chrono::milliseconds>(
                                                          o.deadline).count()},
                       {"argv", KeptArguments()},
                       {"data_dir", o.data_dir}};
        const std::string record_path = o.data_dir + "/" + kRecord;
        if (Status s = WriteFileAtomically(record_path, record.dump()); !s.ok()) return fail(s);
        if (rename(next.c_str(), o.exe.c_str()) != 0) {
          unlink(record_path.c_str());
          return fail(Status::IoError("cannot move " + next + " to " + o.exe + ": " + std::strerror(errno)));
        }
        if (Status s = SpawnSentinel(previous, record_path); !s.ok()) {
          spdlog::warn("no sentinel for the restart into {}: {}", version, s.message());
        }
      },
      [this, outcome, failed, version] {
        if (!outcome->ok()) return failed(*outcome);
        spdlog::info("swapped in starlingd {}; restarting into it", version);
        opts_.stop();
      });
}

void AgentUpgrader::Served() {
  const std::string path = opts_.data_dir + "/" + kRecord;
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  Json j = Json::parse(Slurp(path), nullptr, false);
  if (!j.is_object() || j.value("pid", 0) != getpid()) return;
  fs::remove(path, ec);
  spdlog::info("serving on starlingd {}: the upgrade took", opts_.version);
}

int RunAgentSentinel(const std::string& record_path, uint32_t ours) {
  Json r = Json::parse(Slurp(record_path), nullptr, false);
  if (!r.is_object()) return 1;
  const pid_t pid = r.value("pid", 0);
  const std::string exe = r.value("exe", ""), previous = r.value("previous", ""), data_dir = r.value("data_dir", "");
  const int64_t deadline = r.value("deadline_ms", int64_t{0});
  std::vector<std::string> argv = r.value("argv", std::vector<std::string>{});
  if (pid <= 0 || exe.empty() || previous.empty() || argv.empty()) return 1;
  const bool supervised = std::find(argv.begin(), argv.end(), "--supervised") != argv.end();
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  std::error_code ec;
  std::string why;
  for (;;) {
    if (!fs::exists(record_path, ec)) return 0;  // it serves: the move took
    bool ended = false;
    if (pidfd >= 0) {
      pollfd p{pidfd, POLLIN, 0};
      ended = poll(&p, 1, 200) > 0;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      ended = kill(pid, 0) != 0;
    }
    if (ended) {
      why = "it exited before serving";
      break;
    }
    if (WallMillis() > deadline) {
      why = "it did not serve by its deadline";
      kill(pid, SIGKILL);
      break;
    }
  }
  if (!fs::exists(record_path, ec)) return 0;
  if (rename(previous.c_str(), exe.c_str()) != 0) return 1;
  // The new binary may have migrated the data dir past what this one reads:
  // back to the copy it took (ballot and generation carried forward).
  if (Result<uint32_t> f = ReadDataFormat(data_dir); f.ok() && *f > ours) {
    Status s = RestoreBackup(data_dir, "backup-" + std::to_string(ours), ours);
    if (!s.ok()) why += "; the data dir could not be restored: " + s.message();
  }
  (void)WriteFileAtomically(data_dir + "/" + kFailed, Json{{"why", why}, {"version", r.value("version", "")}}.dump());
  fs::remove(record_path, ec);
  std::fprintf(stderr, "starlingd sentinel: %s; put the previous binary back at %s\n", why.c_str(), exe.c_str());
  if (supervised) return 0;  // the service manager starts it again
  std::vector<char*> args = Argv(argv);
  std::string path = exe;
  args[0] = path.data();
  execv(path.c_str(), args.data());
  return 1;
}

}  // namespace starling::node

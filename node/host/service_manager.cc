#include "service_manager.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace starling::node {
namespace {

// NOTIFY_SOCKET stays in the environment: a restart into a new binary
// (exec, same pid) must be able to say READY=1 again.
void Notify(const std::string& state) {
  const int r = sd_notify(0, state.c_str());
  if (r < 0) spdlog::warn("cannot notify the service manager ({}): {}", state.substr(0, state.find('\n')), std::strerror(-r));
}

}  // namespace

void NotifyReady(const std::string& status) { Notify("READY=1\nSTATUS=" + status); }
void NotifyStopping(const std::string& status) { Notify("STOPPING=1\nSTATUS=" + status); }
void NotifyStatus(const std::string& status) { Notify("STATUS=" + status); }

bool StderrIsTheJournal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  unsigned long long dev = 0, ino = 0;
  struct stat st {};
  return stream != nullptr && std::sscanf(stream, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
         static_cast<unsigned long long>(st.st_dev) == dev && static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace starling::node

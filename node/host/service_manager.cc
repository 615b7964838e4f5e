#include "service_manager.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

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

}  // namespace starling::node

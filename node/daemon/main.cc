// starlingd: see daemon.h for the exit codes and flags.cc for the flags.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <sys/resource.h>

#include <csignal>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "agent_upgrade.h"
#include "daemon.h"
#include "data_format.h"
#include "flags.h"
#include "guard.h"
#include "logging.h"
#include "service_manager.h"
#include "starling/version.h"
#include "trust.h"

int main(int argc, char** argv) {
  starling::node::KeepArguments(argc, argv);
  starling::node::ParseOutcome parsed = starling::node::ParseDaemonFlags(argc, argv);
  if (!parsed.options) return parsed.exit_code;
  if (!parsed.options->agent_sentinel.empty()) return starling::node::RunAgentSentinel(parsed.options->agent_sentinel, starling::DataFormat());
  if (parsed.options->check_config) return starling::node::CheckConfig(*parsed.options);
  if (parsed.options->data_format) {
    std::printf("%u\n", starling::DataFormat());
    return 0;
  }

  // Before any file is created: what the daemon writes is owner-only.
  starling::node::MakeFilesOwnerOnly();
  // A peer closing a socket mid-write must cost an error code, not the process.
  std::signal(SIGPIPE, SIG_IGN);
  // Every listener caps its own connections; the process may hold as many
  // descriptors as the hard limit allows, not the soft default of 1,024.
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  auto logger = spdlog::stderr_color_mt("starlingd");
  spdlog::set_default_logger(logger);
  if (parsed.options->log_format == "json") {
    spdlog::set_formatter(std::make_unique<starling::node::JsonLogFormatter>());
  } else if (starling::node::StderrIsTheJournal()) {
    // journald stamps each line itself.
    spdlog::set_pattern("%l %v");
  } else {
    spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  const auto level = spdlog::level::from_str(parsed.options->log_level);
  spdlog::set_level(level);
  // The console keeps this level when `starling monitor` asks for more.
  for (auto& sink : logger->sinks()) sink->set_level(level);
  spdlog::flush_on(spdlog::level::info);

  const starling::node::DaemonOptions& o = *parsed.options;
  if (o.check_data_dir) {
    auto line = starling::node::DescribeDataDir(o.data_dir, starling::DataFormat(), starling::ReleaseVersion());
    std::printf("%s\n", line.ok() ? line->c_str() : line.status().message().c_str());
    return line.ok() ? 0 : 1;
  }
  if (!o.restore_backup.empty()) {
    starling::Status s = starling::node::RestoreBackup(o.data_dir, o.restore_backup, starling::DataFormat());
    if (!s.ok()) spdlog::error("{}", s.message());
    spdlog::shutdown();
    return s.ok() ? 0 : 1;
  }

  int code = 1;
  starling::node::RunGuarded("starlingd", [&] { code = starling::node::RunDaemon(*parsed.options); });
  if (code == starling::node::kExitRestart && !o.supervised) {
    spdlog::info("restarting: exec {}", starling::node::KeptExecutable());
    spdlog::shutdown();
    starling::node::ExecKept();
    std::fprintf(stderr, "starlingd: cannot exec %s: %s\n", starling::node::KeptExecutable().c_str(),
                 std::strerror(errno));
    return starling::node::kExitFailed;
  }
  spdlog::shutdown();
  return code;
}

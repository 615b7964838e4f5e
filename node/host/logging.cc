#include "logging.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <ctime>
#include <nlohmann/json.hpp>

namespace starling::node {

std::string JsonLogLine(const spdlog::details::log_msg& msg) {
  using namespace std::chrono;
  auto t = msg.time.time_since_epoch();
  std::time_t secs = static_cast<std::time_t>(duration_cast<seconds>(t).count());
  int millis = static_cast<int>(duration_cast<milliseconds>(t).count() % 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char stamp[64];
  std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1,
                tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, millis);
  nlohmann::json j = {{"time", stamp},
                      {"level", std::string(spdlog::level::to_string_view(msg.level).data(),
                                            spdlog::level::to_string_view(msg.level).size())},
                      {"msg", std::string(msg.payload.data(), msg.payload.size())}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void JsonLogFormatter::format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) {
  std::string line = JsonLogLine(msg);
  line += '\n';
  dest.append(line.data(), line.data() + line.size());
}

void MonitorSink::sink_it_(const spdlog::details::log_msg& msg) {
  if (closed_ || count_.load(std::memory_order_relaxed) == 0) return;
  std::string line = JsonLogLine(msg);
  auto level = msg.level;
  post_([this, level, line = std::move(line)] { Fanout(level, line); });
}

void MonitorSink::Close() {
  std::lock_guard lock(mutex_);
  closed_ = true;
}

void MonitorSink::Subscribe(spdlog::level::level_enum level, Deliver deliver) {
  if (subs_.empty()) base_level_ = spdlog::default_logger()->level();
  subs_[next_++] = {level, std::move(deliver)};
  count_ = subs_.size();
  SetLoggerLevel();
}

void MonitorSink::Fanout(spdlog::level::level_enum level, const std::string& line) {
  bool dropped = false;
  for (auto it = subs_.begin(); it != subs_.end();) {
    if (level >= it->second.first && !it->second.second(line)) {
      it = subs_.erase(it);
      dropped = true;
    } else {
      ++it;
    }
  }
  if (dropped) {
    count_ = subs_.size();
    SetLoggerLevel();
  }
}

void MonitorSink::SetLoggerLevel() {
  auto lowest = base_level_;
  for (const auto& [_, s] : subs_) lowest = std::min(lowest, s.first);
  spdlog::default_logger()->set_level(lowest);
}

}  // namespace starling::node

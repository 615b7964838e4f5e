// Log output: the JSON line format (--log-format json), and the sink behind
// `starling monitor`, which hands every log line of the wanted level to the
// monitors connected over the local API.
#pragma once

#include <spdlog/formatter.h>
#include <spdlog/sinks/base_sink.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>

namespace starling::node {

// {"time":"2026-01-02T03:04:05.678Z","level":"info","msg":"..."} per line;
// bytes that are not UTF-8 are replaced, so every line parses.
class JsonLogFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override;
  std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonLogFormatter>(); }
};

// The JSON line of one message, without the newline.
std::string JsonLogLine(const spdlog::details::log_msg& msg);

// Log lines from any thread go to subscribers on the protocol thread.
class MonitorSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  // Runs a task on the protocol thread (posts it).
  using Post = std::function<void(std::function<void()>)>;
  // Hands a line to a subscriber; false once the subscriber is gone.
  using Deliver = std::function<bool(const std::string& json_line)>;

  explicit MonitorSink(Post post) : post_(std::move(post)) {}
  // On the protocol thread. The logger's level drops to `level` while a
  // subscriber wants it (the console keeps its own level).
  void Subscribe(spdlog::level::level_enum level, Deliver deliver);
  // No posting after this (the protocol thread is going away).
  void Close();
  size_t subscribers() const { return subs_.size(); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override {}

 private:
  void Fanout(spdlog::level::level_enum level, const std::string& line);
  void SetLoggerLevel();

  Post post_;
  bool closed_ = false;          // guarded by the base sink's mutex
  std::atomic<size_t> count_{0};  // subscribers: lines cost nothing without any
  // Protocol thread only.
  std::map<uint64_t, std::pair<spdlog::level::level_enum, Deliver>> subs_;
  uint64_t next_ = 1;
  // Level of everything else (the console), restored when the last monitor goes.
  spdlog::level::level_enum base_level_ = spdlog::level::off;
};

}  // namespace starling::node

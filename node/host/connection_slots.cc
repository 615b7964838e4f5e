#include "connection_slots.h"

#include <spdlog/spdlog.h>

namespace starling::node {

namespace {
constexpr auto kReportEvery = std::chrono::seconds(10);
}

const std::vector<std::string>& ConnectionSlots::Reasons() {
  static const std::vector<std::string> reasons = {"evicted", "full",      "idle",     "timeout",
                                                   "write_timeout", "too_large", "malformed"};
  return reasons;
}

ConnectionSlots::ConnectionSlots(std::string listener, size_t cap) : listener_(std::move(listener)), cap_(cap) {
  for (const auto& r : Reasons()) refused_.emplace(r, 0);
}

uint64_t ConnectionSlots::Admit(std::function<void()> close) {
  std::function<void()> evict;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (slots_.size() >= cap_) {
      auto victim = slots_.end();
      for (auto it = slots_.begin(); it != slots_.end(); ++it)
        if (it->second.waiting && (victim == slots_.end() || it->second.since < victim->second.since)) victim = it;
      if (victim == slots_.end()) {
        // Counted outside the lock.
      } else {
        evict = std::move(victim->second.close);
        slots_.erase(victim);
        open_ = slots_.size();
      }
    }
    if (slots_.size() < cap_) {
      id = next_id_++;
      slots_.emplace(id, Slot{true, std::chrono::steady_clock::now(), std::move(close)});
      open_ = slots_.size();
    }
  }
  if (evict) {
    Count("evicted");
    evict();
  }
  if (id == 0) Count("full");
  return id;
}

void ConnectionSlots::Waiting(uint64_t id, bool waiting) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = slots_.find(id);
  if (it == slots_.end()) return;
  it->second.waiting = waiting;
  if (waiting) it->second.since = std::chrono::steady_clock::now();
}

void ConnectionSlots::Release(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  slots_.erase(id);
  open_ = slots_.size();
}

void ConnectionSlots::Count(const std::string& reason) {
  auto it = refused_.find(reason);
  if (it == refused_.end()) return;
  ++it->second;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  ++unreported_;
  if (now < next_report_) return;
  spdlog::warn("{}: {} connection(s) refused or closed by a limit since the last report (the latest: {}); {} open",
               listener_, unreported_, reason, slots_.size());
  unreported_ = 0;
  next_report_ = now + kReportEvery;
}

void ConnectionSlots::CloseAll() {
  std::vector<std::function<void()>> closes;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [_, slot] : slots_) closes.push_back(std::move(slot.close));
    slots_.clear();
    open_ = 0;
  }
  for (auto& close : closes)
    if (close) close();
}

std::map<std::string, uint64_t> ConnectionSlots::refused() const {
  std::map<std::string, uint64_t> out;
  for (const auto& [reason, n] : refused_) out[reason] = n.load();
  return out;
}

}  // namespace starling::node

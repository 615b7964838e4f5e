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

ConnectionSlots::ConnectionSlots(std::string listener, size_t cap, size_t per_source)
    : listener_(std::move(listener)), cap_(cap), per_source_(per_source) {
  for (const auto& r : Reasons()) refused_.emplace(r, 0);
}

uint64_t ConnectionSlots::Admit(std::function<void()> close, const std::string& source) {
  std::function<void()> evict;
  uint64_t id = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // The longest-waiting connection among those `pick` chooses.
    auto oldest_waiting = [&](auto pick) {
      auto victim = slots_.end();
      for (auto it = slots_.begin(); it != slots_.end(); ++it)
        if (it->second.waiting && pick(it->second) && (victim == slots_.end() || it->second.since < victim->second.since))
          victim = it;
      return victim;
    };
    size_t from_source = 0;
    if (!source.empty())
      for (const auto& [_, slot] : slots_) from_source += slot.source == source;
    auto victim = slots_.end();
    bool room = true;
    if (!source.empty() && from_source >= per_source_) {
      victim = oldest_waiting([&](const Slot& s) { return s.source == source; });
      room = victim != slots_.end();
    } else if (slots_.size() >= cap_) {
      victim = oldest_waiting([](const Slot&) { return true; });
      room = victim != slots_.end();
    }
    if (victim != slots_.end()) {
      evict = std::move(victim->second.close);
      slots_.erase(victim);
    }
    if (room) {
      id = next_id_++;
      slots_.emplace(id, Slot{true, std::chrono::steady_clock::now(), std::move(close), source});
    }
    open_ = slots_.size();
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

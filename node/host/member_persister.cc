#include "member_persister.h"

#include <spdlog/spdlog.h>

namespace starling::node {

MemberPersister::MemberPersister(store::NodeStore& store) : store_(store), thread_([this] { Loop(); }) {}

MemberPersister::~MemberPersister() { Stop(); }

void MemberPersister::Submit(std::vector<store::KnownMember> members) {
  {
    std::lock_guard lock(mu_);
    pending_ = std::move(members);
  }
  cv_.notify_one();
}

void MemberPersister::Stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_one();
  if (thread_.joinable()) thread_.join();
}

void MemberPersister::Loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    cv_.wait(lock, [this] { return pending_.has_value() || stopping_; });
    if (pending_) {
      std::vector<store::KnownMember> members = std::move(*pending_);
      pending_.reset();
      lock.unlock();
      // Membership events often leave the set unchanged (suspect, alive
      // again): skip the write then.
      if (members != written_) {
        Status s = store_.SaveMembers(members);
        if (s.ok()) {
          written_ = std::move(members);
        } else {
          spdlog::warn("cannot persist the member list: {}", s.ToString());
        }
      }
      lock.lock();
      continue;
    }
    if (stopping_) return;
  }
}

}  // namespace starling::node

#include "broadcast_queue.h"

#include <cmath>

namespace starling::membership {

int BroadcastQueue::RetransmitLimit(int mult, size_t num_nodes) {
  double scale = std::ceil(std::log10(static_cast<double>(num_nodes) + 1.0));
  return mult * static_cast<int>(scale);
}

void BroadcastQueue::Queue(const std::string& key, News msg, int mult) {
  const Entry e{0, next_id_++};
  const auto size = static_cast<uint32_t>(std::visit([](const auto& m) { return wire::EstimateSize(m); }, msg));
  const auto m = static_cast<uint32_t>(mult > 0 ? mult : mult_);
  if (auto it = by_key_.find(key); it != by_key_.end()) {
    order_.erase(it->second);
    it->second = e;
    order_.emplace(e, Item{it->first, size, m, std::move(msg)});
    return;
  }
  const Atom k(key);
  order_.emplace(e, Item{k, size, m, std::move(msg)});
  by_key_.emplace(k, e);
}

std::vector<wire::Message> BroadcastQueue::Take(size_t budget, size_t num_nodes) {
  std::vector<wire::Message> out;
  if (order_.empty()) return out;
  // Node handles: a broadcast changes places in the order without being
  // copied or its node reallocated.
  std::vector<decltype(order_)::node_type> resend;
  size_t used = 0;
  // Smaller ones further on may still fit, but a long queue of similar sizes
  // must not be scanned to the end for every packet.
  int skips_left = 32;
  for (auto it = order_.begin(); it != order_.end();) {
    if (used + it->second.size > budget) {
      if (budget - used < 64 || --skips_left == 0) break;
      ++it;
      continue;
    }
    used += it->second.size;
    out.push_back(std::visit([](const auto& m) { return wire::Message(m); }, it->second.msg));
    const Entry next{it->first.transmits + 1, it->first.id};
    if (static_cast<int>(next.transmits) < RetransmitLimit(static_cast<int>(it->second.mult), num_nodes)) {
      auto node = order_.extract(it++);
      node.key() = next;
      resend.push_back(std::move(node));
    } else {
      by_key_.erase(it->second.key);
      it = order_.erase(it);
    }
  }
  for (auto& node : resend) {
    by_key_.find(node.mapped().key)->second = node.key();
    order_.insert(std::move(node));
  }
  return out;
}

void BroadcastQueue::Clear() {
  order_.clear();
  by_key_.clear();
}

}  // namespace starling::membership

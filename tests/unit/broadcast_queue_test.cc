#include "broadcast_queue.h"

#include <gtest/gtest.h>

namespace starling::membership {
namespace {

TEST(BroadcastQueue, RetransmitLimitFollowsLog10) {
  EXPECT_EQ(BroadcastQueue::RetransmitLimit(4, 1), 4);     // ceil(log10 2) = 1
  EXPECT_EQ(BroadcastQueue::RetransmitLimit(4, 9), 4);     // ceil(log10 10) = 1
  EXPECT_EQ(BroadcastQueue::RetransmitLimit(4, 10), 8);    // ceil(log10 11) = 2
  EXPECT_EQ(BroadcastQueue::RetransmitLimit(4, 1000), 16);  // ceil(log10 1001) = 4
}

TEST(BroadcastQueue, NewerNewsAboutAMemberReplacesOlder) {
  BroadcastQueue q(4);
  q.Queue("a", wire::Suspect{"a", 1, "x"});
  q.Queue("a", wire::Alive{"a", "h:1", 2, {}, 1, 1, 1, ""});
  ASSERT_EQ(q.size(), 1u);
  auto out = q.Take(1400, 5);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_TRUE(std::holds_alternative<wire::Alive>(out[0]));
}

TEST(BroadcastQueue, DroppedAfterLimitAndFewestTransmitsFirst) {
  BroadcastQueue q(2);  // limit 2 for n = 5
  q.Queue("a", wire::Dead{"a", 1, "x"});
  EXPECT_EQ(q.Take(1400, 5).size(), 1u);
  q.Queue("b", wire::Dead{"b", 1, "x"});
  // Budget for one message only: the fresher, less-sent "b" goes first.
  auto one = q.Take(wire::EstimateSize(wire::Dead{"b", 1, "x"}) + 10, 5);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(std::get<wire::Dead>(one[0]).name, "b");
  EXPECT_EQ(q.Take(1400, 5).size(), 2u);  // a's 2nd and b's 2nd transmit
  EXPECT_EQ(q.size(), 0u);
  EXPECT_TRUE(q.Take(1400, 5).empty());
}

TEST(BroadcastQueue, RespectsByteBudget) {
  BroadcastQueue q(4);
  for (int i = 0; i < 100; ++i) q.Queue("m" + std::to_string(i), wire::Suspect{"m" + std::to_string(i), 1, "x"});
  size_t budget = 1000;
  auto out = q.Take(budget, 100);
  size_t used = 0;
  for (auto& m : out) used += wire::EstimateSize(m);
  EXPECT_LE(used, budget);
  EXPECT_GT(out.size(), 5u);
  EXPECT_LT(out.size(), 100u);
}

}  // namespace
}  // namespace starling::membership

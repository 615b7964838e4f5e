// Admission on a listener: the cap, eviction of the longest-waiting
// connection, one source's share, and the counts by reason.
#include "connection_slots.h"

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace starling::node {
namespace {

struct Closed {
  std::set<int> who;
  std::function<void()> Of(int i) {
    return [this, i] { who.insert(i); };
  }
};

TEST(ConnectionSlots, PastTheCapTheLongestWaitingGoesAndBusyOnesStay) {
  ConnectionSlots slots("test", 3, 3);
  Closed closed;
  const uint64_t a = slots.Admit(closed.Of(1));
  const uint64_t b = slots.Admit(closed.Of(2));
  const uint64_t c = slots.Admit(closed.Of(3));
  ASSERT_TRUE(a && b && c);
  slots.Waiting(a, false);  // 1 is being answered: not evictable
  EXPECT_NE(slots.Admit(closed.Of(4)), 0u);
  EXPECT_EQ(closed.who, std::set<int>{2}) << "the longest-waiting one that is not busy";
  EXPECT_EQ(slots.open(), 3u);
  slots.Waiting(c, false);
  for (uint64_t id : {a, c}) slots.Release(id);
  EXPECT_EQ(slots.open(), 1u);
  EXPECT_EQ(slots.refused().at("evicted"), 1u);
  EXPECT_EQ(slots.refused().at("full"), 0u);
}

TEST(ConnectionSlots, WhenEveryConnectionIsBusyTheNewcomerIsRefused) {
  ConnectionSlots slots("test", 2, 2);
  Closed closed;
  for (int i = 0; i < 2; ++i) slots.Waiting(slots.Admit(closed.Of(i)), false);
  EXPECT_EQ(slots.Admit(closed.Of(9)), 0u);
  EXPECT_TRUE(closed.who.empty());
  EXPECT_EQ(slots.refused().at("full"), 1u);
  slots.CloseAll();
  EXPECT_EQ(closed.who, (std::set<int>{0, 1}));
  EXPECT_EQ(slots.open(), 0u);
}

TEST(ConnectionSlots, OneSourceHoldsItsShareAndTheOthersKeepTheirs) {
  ConnectionSlots slots("test", 8, 3);
  Closed closed;
  // A host opens far more than its share: it only ever holds 3, evicting its own.
  for (int i = 0; i < 20; ++i) ASSERT_NE(slots.Admit(closed.Of(i), "10.0.0.66"), 0u);
  EXPECT_EQ(slots.open(), 3u);
  EXPECT_EQ(closed.who.size(), 17u);
  // Everyone else still finds room, and closes none of the others.
  const size_t before = closed.who.size();
  for (int i = 100; i < 105; ++i) EXPECT_NE(slots.Admit(closed.Of(i), "10.0.0." + std::to_string(i - 99)), 0u);
  EXPECT_EQ(closed.who.size(), before);
  EXPECT_EQ(slots.open(), 8u);
  // Loopback and root come unnamed: only the cap applies to them.
  for (int i = 200; i < 204; ++i) EXPECT_NE(slots.Admit(closed.Of(i)), 0u);
  EXPECT_EQ(slots.open(), 8u);
}

}  // namespace
}  // namespace starling::node

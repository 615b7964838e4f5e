#include "suspicion.h"

#include <gtest/gtest.h>

#include "starling/sim/simulator.h"

namespace starling::membership {
namespace {

using namespace std::chrono_literals;

// A Clock over the simulator's event loop.
class LoopClock : public Clock {
 public:
  explicit LoopClock(sim::EventLoop& loop) : loop_(loop) {}
  Time Now() const override { return loop_.Now(); }
  int64_t WallMicros() const override { return loop_.Now().count(); }
  TimerId Schedule(Duration after, std::function<void()> fn) override { return loop_.At(loop_.Now() + after, fn); }
  void Cancel(TimerId id) override { loop_.Cancel(id); }

 private:
  sim::EventLoop& loop_;
};

TEST(Suspicion, RemainingMatchesMemberlistFormula) {
  // memberlist's table: min 2 s, max 30 s, k = 3.
  EXPECT_EQ(Suspicion::Remaining(0, 3, 0s, 2s, 30s), Duration(30s));
  EXPECT_EQ(Suspicion::Remaining(1, 3, 2s, 2s, 30s), Duration(14s));
  EXPECT_EQ(Suspicion::Remaining(2, 3, 3s, 2s, 30s), Duration(std::chrono::milliseconds(4810)));
  EXPECT_EQ(Suspicion::Remaining(3, 3, 4s, 2s, 30s), Duration(-2s));
  EXPECT_EQ(Suspicion::Remaining(4, 3, 5s, 2s, 30s), Duration(-3s));
}

TEST(Suspicion, FiresAtMaxWithoutConfirmations) {
  sim::EventLoop loop;
  LoopClock clock(loop);
  bool fired = false;
  Suspicion s(clock, "a", 3, 2s, 30s, [&] { fired = true; });
  loop.RunFor(30s - 1ms);
  EXPECT_FALSE(fired) << "fired before the maximum timeout";
  loop.RunFor(2ms);
  EXPECT_TRUE(fired) << "did not fire by the maximum timeout";
}

TEST(Suspicion, ConfirmationsShortenTheTimeout) {
  sim::EventLoop loop;
  LoopClock clock(loop);
  bool fired = false;
  Suspicion s(clock, "a", 3, 2s, 30s, [&] { fired = true; });
  EXPECT_FALSE(s.Confirm("a")) << "the original suspecter is not a confirmation";
  EXPECT_TRUE(s.Confirm("b"));
  EXPECT_FALSE(s.Confirm("b")) << "a repeated confirmation counts once";
  // One of three confirmations: 30 - 28 * log(2)/log(4) = 16 s from the start.
  loop.RunFor(16s - 1ms);
  EXPECT_FALSE(fired);
  loop.RunFor(2ms);
  EXPECT_TRUE(fired);
}

TEST(Suspicion, WithoutExpectedConfirmationsUsesMin) {
  sim::EventLoop loop;
  LoopClock clock(loop);
  bool fired = false;
  Suspicion s(clock, "a", 0, 2s, 30s, [&] { fired = true; });
  EXPECT_FALSE(s.Confirm("b"));
  loop.RunFor(2s - 1ms);
  EXPECT_FALSE(fired);
  loop.RunFor(2ms);
  EXPECT_TRUE(fired);
}

}  // namespace
}  // namespace starling::membership

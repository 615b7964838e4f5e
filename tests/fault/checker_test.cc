// Each checker rule sees a crafted history that breaks it, and stays quiet
// on the same history without the fault.
#include "checker.h"

#include <gtest/gtest.h>

namespace starling::fault {
namespace {

constexpr Micros kS = 1'000'000;

// Three nodes that agree, hold everything acknowledged, one lease holder at a
// time, one node upgraded at a time, every rollout finished.
History Clean() {
  History h;
  h.acks = {{"n1", "n1", 1, "aaa", 10 * kS}, {"n2", "n2", 1, "bbb", 12 * kS}};
  for (const char* n : {"n1", "n2", "n3"}) h.finals.push_back({n, {{"n1", 1}, {"n2", 1}}, "d1"});
  h.holds = {{"n1", 3, 0, 20 * kS}, {"n2", 5, 25 * kS, 40 * kS}};
  h.services = {{"n1", "stop", 30 * kS},    {"n1", "start", 31 * kS}, {"n1", "healthy", 32 * kS},
                {"n2", "stop", 33 * kS},    {"n2", "start", 34 * kS}, {"n2", "healthy", 35 * kS}};
  h.rollouts = {{1, "succeeded"}, {2, "requested"}, {3, "running"}};
  h.last_rollout = 3;
  h.last_rollout_state = "reverted";
  h.faults = {{"loss", {"n1", "n2", "n3"}, 100 * kS, 200 * kS}};
  h.max_unavailable = 1;
  return h;
}

std::vector<Violation> Of(const std::vector<Violation>& all, const std::string& rule) {
  std::vector<Violation> out;
  for (const auto& v : all)
    if (v.rule == rule) out.push_back(v);
  return out;
}

TEST(Checker, CleanHistoryHasNoViolations) {
  auto v = Check(Clean());
  EXPECT_TRUE(v.empty()) << v[0].rule << ": " << v[0].what;
  EXPECT_EQ(Summary(v),
            "lost-change 0\ndiverged 0\nlease-overlap 0\nover-unavailable 0\nunfinished-rollout 0\nfalse-failure 0\n");
}

TEST(Checker, AHistoryReadsBackFromJson) {
  History h = Clean();
  h.declared.push_back({"n1", "n2", 150 * kS});
  h.holds.push_back({"n3", 4, 19 * kS, 22 * kS});
  const History back = HistoryFromJson(nlohmann::json::parse(ToJson(h).dump()));
  EXPECT_EQ(ToJson(back), ToJson(h));
  EXPECT_EQ(Summary(Check(back)), Summary(Check(h)));
}

TEST(Checker, FlagsAnAcknowledgedChangeMissingOnANode) {
  History h = Clean();
  h.finals[2].entries.erase({"n2", 1});
  auto v = Of(Check(h), "lost-change");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "change n2/1 (revision bbb, acknowledged by n2) is missing on n3");
}

TEST(Checker, FlagsNodesThatDisagree) {
  History h = Clean();
  h.finals[1].digest = "d2";
  auto v = Of(Check(h), "diverged");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_NE(v[0].what.find("n2 holds digest d2"), std::string::npos);
}

TEST(Checker, FlagsOverlappingLeaseHolders) {
  History h = Clean();
  h.holds.push_back({"n3", 4, 19 * kS, 22 * kS});  // starts before n1's hold ends
  auto v = Of(Check(h), "lease-overlap");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "n1 (ballot 3) and n3 (ballot 4) both held the lease for 1000 ms from 19.0 s");
  // Renewals by the same node overlap themselves: not a violation.
  h = Clean();
  h.holds.push_back({"n1", 3, 15 * kS, 24 * kS});
  EXPECT_TRUE(Of(Check(h), "lease-overlap").empty());
}

TEST(Checker, FlagsMoreNodesOutOfServiceThanTheBatchAllows) {
  History h = Clean();
  h.services.push_back({"n3", "stop", 31500000});  // while n1 is between stop and healthy
  h.services.push_back({"n3", "healthy", 32500000});
  auto v = Of(Check(h), "over-unavailable");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "2 nodes out of service at 31.5 s (max 1): n1 n3");
}

TEST(Checker, ANodeKilledBeforeTheRolloutCouldCountItDoneStaysOut) {
  // n3 stopped by a rollout, then killed before it was healthy: the next
  // batch (n1 at 30 s) started while it was still out because of the rollout.
  History h = Clean();
  h.min_healthy = 2 * kS;
  h.services.push_back({"n3", "stop", 29 * kS});
  h.faults.push_back({"kill", {"n3"}, 29500000, 40 * kS});
  // ... and n2's at 33 s too: n3 is still down, never healthy since.
  auto v = Of(Check(h), "over-unavailable");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].what, "2 nodes out of service at 30.0 s (max 1): n1 n3");
  EXPECT_EQ(v[1].what, "2 nodes out of service at 33.0 s (max 1): n2 n3");
  // Healthy, then killed before min_healthy had passed: the dead-node case
  // (a coordinator that took its last healthy report at its word).
  h = Clean();
  h.min_healthy = 2 * kS;
  h.services.push_back({"n3", "stop", 27 * kS});
  h.services.push_back({"n3", "healthy", 29 * kS});
  h.faults.push_back({"kill", {"n3"}, 29500000, 40 * kS});
  v = Of(Check(h), "over-unavailable");
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0].what, "2 nodes out of service at 30.0 s (max 1): n1 n3");
  // ... until it is back: restarted at 30.5 s with its service still
  // running, it may be counted again from 32.5 s (min_healthy later).
  h = Clean();
  h.min_healthy = 2 * kS;
  h.services.push_back({"n3", "stop", 27 * kS});
  h.services.push_back({"n3", "healthy", 29 * kS});
  h.faults.push_back({"kill", {"n3"}, 29500000, 30500000});
  v = Of(Check(h), "over-unavailable");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "2 nodes out of service at 30.0 s (max 1): n1 n3");
  h.services.erase(h.services.begin(), h.services.begin() + 3);  // n1's batch: none
  EXPECT_TRUE(Of(Check(h), "over-unavailable").empty());
  for (auto [what, at] : {std::pair{"stop", 32000000}, {"start", 32100000}, {"healthy", 32200000}})
    h.services.push_back({"n1", what, at});
  v = Of(Check(h), "over-unavailable");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "2 nodes out of service at 32.0 s (max 1): n1 n3");
  // Killed after min_healthy: down because of the kill, not the rollout.
  h = Clean();
  h.min_healthy = 2 * kS;
  h.services.push_back({"n3", "stop", 25 * kS});
  h.services.push_back({"n3", "healthy", 26 * kS});
  h.faults.push_back({"kill", {"n3"}, 29 * kS, 40 * kS});
  EXPECT_TRUE(Of(Check(h), "over-unavailable").empty());
}

TEST(Checker, DoesNotCountAPausedNodeWhilePaused) {
  History h = Clean();
  h.services.push_back({"n3", "stop", 29 * kS});
  h.faults.push_back({"pause", {"n3"}, 29500000, 31500000});
  h.services.push_back({"n3", "healthy", 32500000});
  auto v = Of(Check(h), "over-unavailable");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "2 nodes out of service at 31.5 s (max 1): n1 n3");
}

TEST(Checker, FlagsARolloutThatNeverFinished) {
  History h = Clean();
  h.last_rollout_state = "running";
  auto v = Of(Check(h), "unfinished-rollout");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "rollout 3 is running after the heal");
  // An acknowledged request past the last rollout never ran.
  h = Clean();
  h.rollouts[4] = "requested";
  v = Of(Check(h), "unfinished-rollout");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "rollout 4 was asked for and never ran (last 3)");
}

TEST(Checker, FlagsAHealthyNodeDeclaredFailedDuringLossOnly) {
  History h = Clean();
  h.declared.push_back({"n1", "n2", 150 * kS});
  auto v = Of(Check(h), "false-failure");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "n1 declared n2 failed at 150.0 s while the only fault was packet loss");
  // The same declaration is explained by a kill of n2, by a partition, or
  // comes after the loss ended.
  for (const Fault& f : {Fault{"kill", {"n2"}, 140 * kS, 145 * kS}, Fault{"partition", {"n2"}, 100 * kS, 149 * kS}}) {
    History e = Clean();
    e.declared.push_back({"n1", "n2", 150 * kS});
    e.faults.push_back(f);
    EXPECT_TRUE(Of(Check(e), "false-failure").empty()) << f.kind;
  }
  // With no fault at all it is flagged too; 15 s after a kill it is not.
  h = Clean();
  h.declared.push_back({"n1", "n2", 250 * kS});
  v = Of(Check(h), "false-failure");
  ASSERT_EQ(v.size(), 1u);
  EXPECT_EQ(v[0].what, "n1 declared n2 failed at 250.0 s with no fault at all");
  h.faults.push_back({"kill", {"n2"}, 230 * kS, 240 * kS});
  EXPECT_TRUE(Of(Check(h), "false-failure").empty());
}

}  // namespace
}  // namespace starling::fault

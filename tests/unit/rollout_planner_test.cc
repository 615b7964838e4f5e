// The rollout planner and its records, driven directly: nodes are views the
// test edits to say what each node reports.
#include <gtest/gtest.h>

#include "rollout.h"

namespace starling::node {
namespace {

using namespace std::chrono_literals;
using store::Json;

Time T(int seconds) { return Time{} + std::chrono::seconds(seconds); }

NodeView Node(const std::string& name, const std::string& applied, std::vector<std::string> roles = {"web"}) {
  NodeView v;
  v.name = name;
  v.reachable = true;
  v.commissioned = true;
  v.roles = std::move(roles);
  v.reported = true;
  v.fresh = true;
  v.applied = applied;
  v.target = applied;
  v.healthy = true;
  v.phase = "idle";
  return v;
}

RolloutPolicy Policy(Json batch, Duration min_healthy = 0s) {
  RolloutPolicy p;
  p.batch = std::move(batch);
  p.min_healthy = min_healthy;
  p.node_deadline = 60s;
  return p;
}

// Drives one planner like the holder does, keeping the written record.
struct Holder {
  RolloutPlanner planner;
  std::optional<RolloutRecord> record;
  std::optional<RolloutRequest> request;
  std::optional<RolloutControl> control;
  uint64_t ballot = 7;
  bool frozen = false;
  // A view without `heard` is of a node whose report has just arrived.
  RolloutPlanner::Step Step(const RolloutPolicy& p, std::vector<NodeView> nodes, Time now) {
    for (auto& v : nodes) {
      if (v.reported && !v.heard) v.heard = now;
      if (v.reported && !v.checked) v.checked = now;
    }
    auto s = planner.Advance({record, request, control, p, nodes, ballot, frozen, now, 1000, {}});
    if (s.write) record = *s.write;
    return s;
  }
};

// Marks the nodes of the current batch as having applied `revision`.
void Finish(std::vector<NodeView>& nodes, const RolloutRecord& r, const std::string& revision) {
  for (auto& v : nodes)
    if (std::find(r.batch.begin(), r.batch.end(), v.name) != r.batch.end()) v.applied = v.target = revision;
}

TEST(RolloutPolicy, BatchSizesFromCountsPercentagesAndRamps) {
  EXPECT_EQ(Policy(2).BatchSize(0, 10), 2u);
  EXPECT_EQ(Policy(50).BatchSize(0, 10), 10u);  // never more than there are
  EXPECT_EQ(Policy("25%").BatchSize(0, 10), 3u);  // rounded up
  EXPECT_EQ(Policy("1%").BatchSize(0, 10), 1u);   // at least one
  RolloutPolicy ramp = Policy(Json::array({1, 2, "50%"}));
  EXPECT_EQ(ramp.BatchSize(0, 10), 1u);
  EXPECT_EQ(ramp.BatchSize(1, 10), 2u);
  EXPECT_EQ(ramp.BatchSize(2, 10), 5u);
  EXPECT_EQ(ramp.BatchSize(9, 10), 5u);  // the last step repeats
  EXPECT_EQ(ramp.MaxBatch(10), 5u);
}

TEST(RolloutPolicy, ReadsTheDocumentAndDefaultsTheRest) {
  Json doc = {{"policy", {{"batch", "10%"}, {"min_healthy", "30s"}, {"failure_threshold", 2}, {"auto_revert", false}}}};
  RolloutPolicy p = RolloutPolicy::From(doc);
  EXPECT_EQ(p.batch, "10%");
  EXPECT_EQ(p.min_healthy, 30s);
  EXPECT_EQ(p.failure_threshold, 2u);
  EXPECT_FALSE(p.auto_revert);
  EXPECT_EQ(p.node_deadline, std::chrono::minutes(5));
  EXPECT_TRUE(p.health_gate);
}

TEST(RolloutRecord, RoundTripsAndRefusesBadRecords) {
  RolloutRecord r;
  r.id = 3;
  r.revision = "aaaaaaaaaaaa";
  r.from = "bbbbbbbbbbbb";
  r.state = "running";
  r.reverting = true;
  r.ballot = 1001;
  r.batch_no = 9;
  r.batches = 2;
  r.batch = {"n2"};
  r.nodes["n1"] = {"aaaaaaaaaaaa", 8, true};
  r.nodes["n2"] = {"bbbbbbbbbbbb", 9, false};
  r.failed = {"n2"};
  r.reason = "failed on n2";
  auto back = RolloutRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, r);

  // Assignments are written grouped: each node's name once, beside what
  // it was given, not a revision per node.
  r.nodes["n3"] = {"aaaaaaaaaaaa", 8, true};
  const Json grouped = r.ToJson();
  ASSERT_TRUE(grouped.contains("assigned"));
  EXPECT_EQ(grouped["assigned"].size(), 2u);
  EXPECT_EQ(grouped.dump().find("\"n1\":"), std::string::npos) << grouped.dump();
  back = RolloutRecord::FromJson(grouped);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, r);
  // The per-node form written before grouping still reads.
  Json old = grouped;
  old.erase("assigned");
  old["nodes"] = {{"n1", {{"revision", "aaaaaaaaaaaa"}, {"batch", 8}, {"done", true}}},
                  {"n2", {{"revision", "bbbbbbbbbbbb"}, {"batch", 9}, {"done", false}}},
                  {"n3", {{"revision", "aaaaaaaaaaaa"}, {"batch", 8}, {"done", true}}}};
  back = RolloutRecord::FromJson(old);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, r);

  for (const char* bad : {R"([])", R"({"state": "exploded"})", R"({"state": "running", "id": "3"})",
                          R"({"state": "running", "batch": [1]})", R"({"state": "running", "nodes": []})",
                          R"({"state": "running", "nodes": {"n1": {"batch": -1.5}}})",
                          R"({"state": "running", "assigned": {}})",
                          R"({"state": "running", "assigned": [{"batch": 1, "nodes": "n1"}]})",
                          R"({"state": "running", "assigned": [{"batch": 1, "nodes": ["n1"]}, {"batch": 2, "nodes": ["n1"]}]})"}) {
    auto r2 = RolloutRecord::FromJson(Json::parse(bad));
    EXPECT_FALSE(r2.ok()) << bad;
    if (!r2.ok()) {
      EXPECT_EQ(r2.status().code(), Status::Code::kCorruption) << bad;
    }
  }
  EXPECT_FALSE(RolloutControl::FromJson(Json{{"seq", 1}, {"action", "explode"}}).ok());
  EXPECT_FALSE(RolloutRequest::FromJson(Json{{"id", 1}}).ok());
}

TEST(RolloutPlanner, BatchesFollowTheRampAndWaitForHealth) {
  Holder h;
  std::vector<NodeView> nodes;
  for (int i = 0; i < 6; ++i) nodes.push_back(Node("n" + std::to_string(i), "old"));
  const RolloutPolicy p = Policy(Json::array({1, "50%"}), 10s);
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  ASSERT_TRUE(h.record);
  EXPECT_EQ(h.record->state, "running");
  EXPECT_EQ(h.record->from, "old");  // every node ran it healthily
  EXPECT_EQ(h.record->ballot, 7u);
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));

  // Not done before it reports the revision, nor before min_healthy.
  EXPECT_FALSE(h.Step(p, nodes, T(1)).write);
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(2));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
  h.Step(p, nodes, T(12));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1", "n2", "n3"}));  // 50% of 6
  EXPECT_TRUE(h.record->nodes["n0"].done);

  // Unhealthy restarts the min_healthy clock.
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(13));
  nodes[2].healthy = false;
  h.Step(p, nodes, T(20));
  nodes[2].healthy = true;
  h.Step(p, nodes, T(24));
  // n1 and n3 are done and stay in the batch until n2 is too.
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1", "n2", "n3"}));
  EXPECT_TRUE(h.record->nodes["n1"].done);
  EXPECT_FALSE(h.record->nodes["n2"].done);
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[1], true), "done");
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[2], true), "upgrading");
  h.Step(p, nodes, T(34));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n4", "n5"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(35));
  h.Step(p, nodes, T(45));
  EXPECT_EQ(h.record->state, "succeeded");
  EXPECT_TRUE(h.record->batch.empty());
}

TEST(RolloutPlanner, RoleOrderTakesOneRoleAtATime) {
  Holder h;
  std::vector<NodeView> nodes = {Node("a", "old", {"web"}), Node("b", "old", {"db"}), Node("c", "old", {"db"}),
                                 Node("d", "old", {})};
  RolloutPolicy p = Policy(10);
  p.role_order = {"db", "web"};
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"b", "c"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(1));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"a"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(2));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"d"}));  // no role in the order: last
}

TEST(RolloutPlanner, AFailureRevertsTheTouchedNodesFailedFirst) {
  Holder h;
  std::vector<NodeView> nodes;
  for (int i = 0; i < 4; ++i) nodes.push_back(Node("n" + std::to_string(i), "old"));
  const RolloutPolicy p = Policy(1);
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(1));
  ASSERT_EQ(h.record->batch, (std::vector<std::string>{"n1"}));
  nodes[1].phase = "failed";
  nodes[1].target = "new";
  nodes[1].healthy = false;
  h.Step(p, nodes, T(2));
  EXPECT_TRUE(h.record->reverting);
  EXPECT_EQ(h.record->state, "running");
  EXPECT_EQ(h.record->target(), "old");
  // The failed node first, though it still reports "old" as applied.
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1"}));
  nodes[1] = Node("n1", "old");
  h.Step(p, nodes, T(3));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
  nodes[0] = Node("n0", "old");
  h.Step(p, nodes, T(4));
  EXPECT_EQ(h.record->state, "reverted");
  EXPECT_EQ(h.record->nodes.count("n2"), 0u);  // never touched
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[0], false), "reverted");
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[1], false), "reverted");
}

TEST(RolloutPlanner, WithoutAnEarlierHealthyRevisionAFailureJustStops) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "other")};
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(Policy(1), nodes, T(0));
  EXPECT_EQ(h.record->from, "");  // the nodes disagreed
  nodes[0].phase = "failed";
  nodes[0].target = "new";
  h.Step(Policy(1), nodes, T(1));
  EXPECT_EQ(h.record->state, "failed");
  EXPECT_NE(h.record->reason.find("no earlier revision"), std::string::npos) << h.record->reason;
}

TEST(RolloutPlanner, ToleratesFailuresUpToTheThresholdButTheyUseRoom) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old"), Node("n3", "old")};
  RolloutPolicy p = Policy(2);
  p.failure_threshold = 1;
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  ASSERT_EQ(h.record->batch, (std::vector<std::string>{"n0", "n1"}));
  nodes[0].phase = "failed";
  nodes[0].target = "new";
  nodes[0].healthy = false;
  nodes[1].applied = "new";
  h.Step(p, nodes, T(1));
  EXPECT_EQ(h.record->state, "running");
  // n0 is still out of service: one node of room left in a batch of 2.
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n2"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(2));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n3"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(3));
  // Tolerated, but n0 is not on the revision: the rollout says so.
  EXPECT_EQ(h.record->state, "incomplete");
  EXPECT_NE(h.record->reason.find("n0 (failed)"), std::string::npos) << h.record->reason;
}

TEST(RolloutPlanner, NodesOutOfServiceUseTheRoomAndMoveFirst) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old"), Node("n3", "new")};
  nodes[2].healthy = false;  // a candidate already out of service
  nodes[3].healthy = false;  // on the target but unhealthy
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(Policy(2), nodes, T(0));
  // Two out already: only n2 moves, it costs nothing.
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n2"}));
}

TEST(RolloutPlanner, PauseResumeAndAbort) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old")};
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(Policy(1), nodes, T(0));
  h.control = RolloutControl{1, 1, "pause", "op"};
  h.Step(Policy(1), nodes, T(1));
  EXPECT_EQ(h.record->state, "paused");
  Finish(nodes, *h.record, "new");
  h.Step(Policy(1), nodes, T(2));  // the batch in flight finishes...
  EXPECT_TRUE(h.record->batch.empty());
  h.Step(Policy(1), nodes, T(3));  // ...and no new one starts
  EXPECT_TRUE(h.record->batch.empty());
  h.control = RolloutControl{2, 1, "resume", "op"};
  h.Step(Policy(1), nodes, T(4));
  EXPECT_EQ(h.record->state, "running");
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1"}));
  h.control = RolloutControl{3, 1, "abort", "op"};
  h.Step(Policy(1), nodes, T(5));
  EXPECT_EQ(h.record->state, "failed");
  EXPECT_EQ(h.record->reason, "aborted by op");
  // A control for another rollout does nothing.
  h.request = RolloutRequest{2, "newer", "op", false};
  h.Step(Policy(1), nodes, T(6));
  h.control = RolloutControl{4, 1, "pause", "op"};
  h.Step(Policy(1), nodes, T(7));
  EXPECT_EQ(h.record->state, "running");
}

TEST(RolloutPlanner, FrozenLeavesTheRequestWaiting) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old")};
  h.frozen = true;
  h.request = RolloutRequest{1, "new", "op", false};
  EXPECT_FALSE(h.Step(Policy(1), nodes, T(0)).write);
  h.frozen = false;
  h.Step(Policy(1), nodes, T(1));
  EXPECT_EQ(h.record->state, "running");
}

TEST(RolloutPlanner, ADownNodeHoldsBackTheNextBatchUntilItsDeadlineThenFailsAndUsesRoomUntilBack) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old")};
  RolloutPolicy p = Policy(1);  // node deadline 60 s
  p.failure_threshold = 1;
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  nodes[0].reachable = false;
  h.Step(p, nodes, T(30));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[0], false), "down");
  EXPECT_EQ(h.Step(p, nodes, T(59)).write, std::nullopt) << "the next batch started while n0 was down";
  h.Step(p, nodes, T(61));
  // Past its deadline it counts as failed (tolerated here). It may only be
  // cut off from the holder, with its service stopped by the rollout: it
  // uses the batch's room while down, so n1 waits.
  EXPECT_EQ(h.record->failed, (std::set<std::string>{"n0"}));
  EXPECT_TRUE(h.record->batch.empty());
  EXPECT_NE(h.record->reason.find("waiting for room: out of service: n0"), std::string::npos) << h.record->reason;
  // Back and serving its old revision: the rollout goes on without it.
  nodes[0].reachable = true;
  h.Step(p, nodes, T(70));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(72));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n2"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(73));
  // It ran through with n0 off the revision: not a success.
  EXPECT_EQ(h.record->state, "incomplete");
  EXPECT_NE(h.record->reason.find("n0 (failed)"), std::string::npos) << h.record->reason;
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[0], false), "failed");
}

TEST(RolloutPlanner, AFailedNodeCutOffDuringTheRevertUsesRoom) {
  // n2 of the second batch is cut off from the holder mid-apply (its
  // service stopped), and fails by its deadline. The revert must not take a
  // full batch besides it: n2 may be out of service where it is.
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old"), Node("n3", "old"),
                                 Node("n4", "old")};
  RolloutPolicy p = Policy(Json::array({1, 3}));  // node deadline 60 s
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  ASSERT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(1));
  ASSERT_EQ(h.record->batch, (std::vector<std::string>{"n1", "n2", "n3"}));
  nodes[2].reachable = false;
  nodes[2].phase = "applying";
  nodes[1].applied = nodes[1].target = nodes[3].applied = nodes[3].target = "new";
  h.Step(p, nodes, T(62));
  ASSERT_TRUE(h.record->reverting) << h.record->ToJson().dump();
  EXPECT_EQ(h.record->batch.size(), 2u) << "n2 is out where it is: two more, not three; "
                                        << h.record->ToJson().dump();
}

TEST(RolloutPlanner, ADeadNodeOnAStaleHealthyReportIsNotDone) {
  // Killed just after it reported healthy: membership suspects it, then
  // declares it failed; its last report still says healthy on the revision.
  for (const char* how : {"suspect", "failed", "stale report"}) {
    SCOPED_TRACE(how);
    Holder h;
    std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old")};
    const RolloutPolicy p = Policy(1);
    h.request = RolloutRequest{1, "new", "op", false};
    h.Step(p, nodes, T(0));
    ASSERT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
    Finish(nodes, *h.record, "new");
    if (std::string(how) == "suspect") nodes[0].suspect = true;
    if (std::string(how) == "failed") nodes[0].reachable = false;
    if (std::string(how) == "stale report") nodes[0].fresh = false;
    h.Step(p, nodes, T(1));
    EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"})) << "the next batch started";
    EXPECT_FALSE(h.record->nodes["n0"].done);
    EXPECT_NE(NodeRolloutPhase(*h.record, nodes[0], true), "done");
    // Alive again on a fresh report: done, and the next batch starts.
    nodes[0].suspect = false;
    nodes[0].reachable = true;
    nodes[0].fresh = true;
    h.Step(p, nodes, T(2));
    EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1"}));
  }
}

TEST(RolloutPlanner, ADoneNodeThatDiesBeforeTheNextBatchHoldsItBack) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old")};
  const RolloutPolicy p = Policy(2);
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  ASSERT_EQ(h.record->batch, (std::vector<std::string>{"n0", "n1"}));
  nodes[0].applied = "new";
  h.Step(p, nodes, T(1));
  EXPECT_TRUE(h.record->nodes["n0"].done);
  // n0 dies while n1 is still on its way; then n1 is done.
  nodes[0].reachable = false;
  nodes[1].applied = "new";
  h.Step(p, nodes, T(2));
  EXPECT_FALSE(h.record->nodes["n0"].done);
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0", "n1"})) << "the next batch started with n0 down";
  // Back and healthy: the batch is done, the next one starts.
  nodes[0].reachable = true;
  h.Step(p, nodes, T(3));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n2"}));
}

TEST(RolloutPlanner, ARolloutForChosenNodesMovesExactlyThoseAndTheNextOneTheRest) {
  Holder h;
  std::vector<NodeView> nodes;
  for (int i = 0; i < 5; ++i) nodes.push_back(Node("n" + std::to_string(i), "old"));
  const RolloutPolicy p = Policy(1);
  RolloutRequest req{1, "new", "op", false};
  req.only = {"n1", "n3"};
  req.batch = 2;  // instead of the policy's 1
  h.request = req;
  h.Step(p, nodes, T(0));
  ASSERT_TRUE(h.record);
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1", "n3"}));
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[0], false), "excluded");
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(1));
  EXPECT_EQ(h.record->state, "succeeded") << h.record->reason;
  // Settled, the catch-up leaves the others where they are.
  for (int t = 2; t < 6; ++t) h.Step(p, nodes, T(t));
  EXPECT_TRUE(h.record->batch.empty());
  for (const char* kept : {"n0", "n2", "n4"}) EXPECT_EQ(h.record->nodes.count(kept), 0u) << kept;
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[1], true), "done");

  // A later rollout of every node: the revert target is still "old", since
  // the partial one did not leave "new" everywhere; it moves the other three
  // at the policy's batch size.
  h.request = RolloutRequest{2, "new", "op", false};
  h.Step(p, nodes, T(10));
  EXPECT_EQ(h.record->id, 2u);
  EXPECT_EQ(h.record->from, "old");
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
  for (int t = 11; t < 20 && h.record->state == "running"; ++t) {
    Finish(nodes, *h.record, "new");
    h.Step(p, nodes, T(t));
  }
  EXPECT_EQ(h.record->state, "succeeded");
  for (const auto& v : nodes) EXPECT_EQ(v.applied, "new") << v.name;
}

TEST(RolloutPlanner, AChosenNodeOutOfTheRolloutStillTakesRoomWhenDown) {
  Holder h;
  std::vector<NodeView> nodes = {Node("a", "old"), Node("b", "old"), Node("c", "old")};
  nodes[2].reachable = false;  // not chosen, but down: the cluster is one short already
  RolloutRequest req{1, "new", "op", false};
  req.only = {"a", "b"};
  h.request = req;
  h.Step(Policy(1), nodes, T(0));
  ASSERT_TRUE(h.record);
  EXPECT_TRUE(h.record->batch.empty());
  EXPECT_NE(h.record->reason.find("c"), std::string::npos) << h.record->reason;
  nodes[2].reachable = true;
  h.Step(Policy(1), nodes, T(1));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"a"}));
}

// Parsed once per write of the register: the same stamp is the same value,
// a new write (or a delete) is read again.
TEST(RolloutRecord, TheReaderParsesOncePerWrite) {
  store::State st;
  RecordReader<RolloutRecord> reader(kRolloutKey);
  EXPECT_TRUE(reader.Changed(st));
  EXPECT_EQ(reader.Read(st), nullptr);
  EXPECT_FALSE(reader.Changed(st));
  RolloutRecord r;
  r.id = 1;
  r.state = "running";
  st.Put(kRolloutKey, store::Register{r.ToJson().dump(), store::Stamp{{10, 0}, 1, 1}, 0});
  EXPECT_TRUE(reader.Changed(st));
  ASSERT_NE(reader.Read(st), nullptr);
  EXPECT_EQ(reader.Read(st)->id, 1u);
  EXPECT_FALSE(reader.Changed(st));
  r.id = 2;
  st.Put(kRolloutKey, store::Register{r.ToJson().dump(), store::Stamp{{11, 0}, 1, 2}, 0});
  EXPECT_TRUE(reader.Changed(st));
  EXPECT_EQ(reader.Read(st)->id, 2u);
  // A second reader of the same write (another node's, the agent's) shares
  // the parsed record instead of holding its own copy.
  RecordReader<RolloutRecord> other(kRolloutKey);
  EXPECT_EQ(other.Read(st), reader.Read(st));
  st.Put(kRolloutKey, store::Register{std::nullopt, store::Stamp{{12, 0}, 1, 3}, 0});
  EXPECT_EQ(reader.Read(st), nullptr);
  EXPECT_EQ(other.Read(st), nullptr);
}

TEST(RolloutRecord, BatchSizesParseFromTheCliAndBadOnesAreRefused) {
  EXPECT_EQ(*ParseBatchSize("2"), Json(2));
  EXPECT_EQ(*ParseBatchSize("25%"), Json("25%"));
  EXPECT_EQ(*ParseBatchSize("1,50%"), Json::array({1, "50%"}));
  for (const char* bad : {"", "0", "-1", "101%", "0%", "x", "1,,2", "2.5", "50%%", "99999999999"}) {
    auto b = ParseBatchSize(bad);
    EXPECT_FALSE(b.ok()) << bad;
    if (!b.ok()) {
      EXPECT_NE(b.status().message().find(std::string("'") + bad + "'"), std::string::npos) << b.status().message();
    }
  }
  RolloutRecord r;
  r.state = "running";
  r.only = {"a", "b"};
  r.batch_size = Json::array({1, "50%"});
  auto back = RolloutRecord::FromJson(r.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, r);
  Json bad = r.ToJson();
  bad["batch_size"] = "0%";
  EXPECT_FALSE(RolloutRecord::FromJson(bad).ok());
  bad["batch_size"] = nullptr;
  bad["only"] = Json::array({1});
  EXPECT_FALSE(RolloutRecord::FromJson(bad).ok());
}

TEST(RolloutPlanner, ANodeDownBeforeItsBatchLeavesTheRolloutIncompleteUntilItCatchesUp) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old")};
  nodes[2].reachable = false;  // down before the rollout
  const RolloutPolicy p = Policy(1);
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(1));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(2));
  EXPECT_EQ(h.record->state, "incomplete");
  EXPECT_NE(h.record->reason.find("n2 (down)"), std::string::npos) << h.record->reason;
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[2], false), "down");
  // Back, it is caught up, and the rollout is a success after all.
  nodes[2].reachable = true;
  h.Step(p, nodes, T(3));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n2"}));
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(4));
  EXPECT_EQ(h.record->state, "succeeded");
}

TEST(RolloutPlanner, AStaleOrSuspectNodeTakesRoomAndCostsRoom) {
  // n0's last word says it is unhealthy, but that word is stale: it may be
  // serving. It counts as out, and moving it is not free.
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old")};
  nodes[0].healthy = false;
  nodes[0].fresh = false;
  const RolloutPolicy p = Policy(2);
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  // Room for one in-service node; n0 costs room like any other.
  ASSERT_EQ(h.record->batch.size(), 1u);
  // With a fresh report that it is out, moving it is free.
  Holder fresh;
  nodes[0].fresh = true;
  fresh.request = h.request;
  fresh.Step(p, nodes, T(0));
  EXPECT_EQ(fresh.record->batch, (std::vector<std::string>{"n0", "n1"}));
}

TEST(RolloutPlanner, ANodeThatLeftIsNotBatchedAndLeavesItsBatch) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old")};
  nodes[0].left = true;
  nodes[0].reachable = false;
  const RolloutPolicy p = Policy(1);
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1"})) << "a node that left was batched";
  // n1 leaves while in the batch: the rollout does not wait for it.
  nodes[1].left = true;
  nodes[1].reachable = false;
  h.Step(p, nodes, T(1));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n2"}));
  EXPECT_TRUE(h.record->failed.empty());
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(2));
  EXPECT_EQ(h.record->state, "succeeded");
  EXPECT_EQ(NodeRolloutPhase(*h.record, nodes[0], false), "left");
}

TEST(RolloutPlanner, BatchesCountFromOneInEachRollout) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old")};
  const RolloutPolicy p = Policy(1);
  h.request = RolloutRequest{1, "new", "op", false};
  auto s = h.Step(p, nodes, T(0));
  EXPECT_NE(s.log.find("batch 1 of rollout 1"), std::string::npos) << s.log;
  Finish(nodes, *h.record, "new");
  s = h.Step(p, nodes, T(1));
  EXPECT_NE(s.log.find("batch 2 of rollout 1"), std::string::npos) << s.log;
  Finish(nodes, *h.record, "new");
  h.Step(p, nodes, T(2));
  ASSERT_EQ(h.record->state, "succeeded");
  h.request = RolloutRequest{2, "newer", "op", false};
  s = h.Step(p, nodes, T(3));
  EXPECT_NE(s.log.find("batch 1 of rollout 2"), std::string::npos) << s.log;
  EXPECT_EQ(h.record->batches, 1u);
  EXPECT_EQ(h.record->batch_no, 3u);  // the fencing sequence goes on
}

TEST(RolloutPlanner, NodesThatRunTheTargetsContentGetNoBatch) {
  // "mid" differs from "new" only in what does not reach these nodes (a
  // freeze, say): n0 and n1 run it and have nothing to change.
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "mid"), Node("n1", "mid"), Node("n2", "old")};
  const RolloutPolicy p = Policy(1);
  h.request = RolloutRequest{1, "new", "op", false};
  RolloutPlanner::Inputs in{h.record, h.request, h.control, p, nodes, h.ballot, false, T(0), 1000,
                            [](const NodeView& v, const std::string& rev) {
                              return v.applied == rev || (v.applied == "mid" && rev == "new");
                            }};
  auto s = h.planner.Advance(in);
  ASSERT_TRUE(s.write);
  EXPECT_EQ(s.write->batch, (std::vector<std::string>{"n2"}));
  h.record = *s.write;
  Finish(nodes, *h.record, "new");
  in.current = h.record;
  in.nodes = nodes;
  in.now = T(1);
  s = h.planner.Advance(in);
  ASSERT_TRUE(s.write);
  EXPECT_EQ(s.write->state, "succeeded");
  EXPECT_EQ(NodeRolloutPhase(*s.write, nodes[0], true), "done");
}

TEST(RolloutPlanner, ANodeIsDoneOnlyOnAWordFromAfterMinHealthy) {
  // n0 passes a health check at 1 s and no check after (killed before
  // membership noticed, or its check hangs while the daemon refreshes its
  // report): its report still reads healthy, but no check since min_healthy.
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old")};
  const RolloutPolicy p = Policy(1, 10s);
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(p, nodes, T(0));
  ASSERT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
  Finish(nodes, *h.record, "new");
  nodes[0].checked = T(1);
  h.Step(p, nodes, T(1));
  h.Step(p, nodes, T(20));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"})) << "counted on its check from 1 s";
  EXPECT_FALSE(h.record->nodes.at("n0").done);
  // A restart the coordinator did not see: the time starts again.
  nodes[0].generation = 2;
  nodes[0].checked = T(21);
  h.Step(p, nodes, T(21));
  h.Step(p, nodes, T(25));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"})) << "counted on its time before the restart";
  // A check from 31 s, min_healthy after it was seen healthy in this run.
  nodes[0].checked = T(31);
  h.Step(p, nodes, T(31));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n1"}));
  // A daemon that predates check counts is judged on its last word.
  Holder old;
  std::vector<NodeView> olds = {Node("n0", "old"), Node("n1", "old")};
  olds[0].counts_checks = false;
  old.request = RolloutRequest{1, "new", "op", false};
  old.Step(p, olds, T(0));
  Finish(olds, *old.record, "new");
  olds[0].heard = T(12);
  old.Step(p, olds, T(1));
  old.Step(p, olds, T(12));
  EXPECT_EQ(old.record->batch, (std::vector<std::string>{"n1"}));
}

TEST(RolloutPlanner, ASuspectPastItsDeadlineIsJudgedOnceMembershipDecides) {
  // The coordinator died with its own node in the batch; the new holder's
  // membership still suspects it when the deadline passes.
  for (const bool comes_back : {false, true}) {
    SCOPED_TRACE(comes_back ? "it was alive after all" : "it was down");
    Holder h;
    std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old")};
    const RolloutPolicy p = Policy(1);  // node deadline 60 s
    h.request = RolloutRequest{1, "new", "op", false};
    h.Step(p, nodes, T(0));
    ASSERT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
    nodes[0].suspect = true;
    h.Step(p, nodes, T(61));
    EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"})) << "judged while still suspect";
    EXPECT_TRUE(h.record->failed.empty());
    nodes[0].suspect = false;
    nodes[0].reachable = comes_back;
    h.Step(p, nodes, T(70));
    // Alive and still not on the revision past its deadline, or down past
    // it: either way a failure, and the next batch does not start.
    EXPECT_EQ(h.record->failed, (std::set<std::string>{"n0"}));
    EXPECT_TRUE(std::find(h.record->batch.begin(), h.record->batch.end(), "n1") == h.record->batch.end());
  }
}

TEST(RolloutPlanner, NodesBusyOnTheirOwnTakeRoomInTheBatch) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old"), Node("n2", "old")};
  nodes[2].phase = "verifying";  // restarting on its own
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(Policy(2), nodes, T(0));
  EXPECT_EQ(h.record->batch, (std::vector<std::string>{"n0"}));
}

TEST(RolloutPlanner, WritesItsBallotOnTakeoverButNotOnEveryRenewal) {
  Holder h;
  std::vector<NodeView> nodes = {Node("n0", "old"), Node("n1", "old")};
  h.request = RolloutRequest{1, "new", "op", false};
  h.Step(Policy(1), nodes, T(0));
  h.ballot = 8;  // a renewal
  EXPECT_FALSE(h.Step(Policy(1), nodes, T(1)).write);
  RolloutPlanner successor;
  auto s = successor.Advance({h.record, h.request, h.control, Policy(1), nodes, 20, false, T(2), 1000, {}});
  ASSERT_TRUE(s.write);
  EXPECT_EQ(s.write->ballot, 20u);
  EXPECT_EQ(s.write->batch, h.record->batch);  // resumes the batch in flight
}

}  // namespace
}  // namespace starling::node

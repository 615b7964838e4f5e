// User events, queries and event handlers on virtual time: every member gets
// every event under loss, a query is answered by exactly the members its
// filters pick, and handler runs are ordered and coalesced.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <deque>
#include <set>

#include "event_handlers.h"
#include "events.h"
#include "starling/membership/user_channels.h"
#include "starling/sim/simulator.h"

namespace starling::node {
namespace {

using namespace std::chrono_literals;

struct Stack {
  std::unique_ptr<membership::UserChannels> channels;
  std::unique_ptr<UserEvents> events;
  std::unique_ptr<Queries> queries;
  std::set<std::pair<uint64_t, std::string>> got;  // (ltime, name) delivered
  uint64_t deliveries = 0;
};

// Boots every node with the event and query protocols; node i's query
// handler answers "answer from n<i>".
void Attach(sim::Cluster& c, std::vector<Stack>& nodes) {
  c.OnBoot([&](int i) {
    Stack& s = nodes[i];
    s.channels = std::make_unique<membership::UserChannels>(c.node(i));
    s.events = std::make_unique<UserEvents>(*s.channels, c.clock(i), [&s](const UserEvent& e) {
      s.got.insert({e.ltime, e.name});
      ++s.deliveries;
    });
    s.queries = std::make_unique<Queries>(*s.channels, c.clock(i), c.random(i),
                                          [&c, i](const QueryEvent&, std::function<void(std::string)> respond) {
                                            respond("answer from " + c.name(i));
                                          });
  });
  c.OnCrash([&](int i) {
    nodes[i].queries.reset();
    nodes[i].events.reset();
    nodes[i].channels.reset();
  });
}

TEST(EventsSim, HundredEventsReachEveryMemberUnderFivePercentLoss) {
  spdlog::set_level(spdlog::level::err);
  constexpr int kNodes = 10, kEvents = 100;
  std::vector<Stack> nodes(kNodes);
  sim::Cluster c(sim::SeedOr(2601), sim::ProfileConfig("lan"));
  for (int i = 0; i < kNodes; ++i) c.Add();
  Attach(c, nodes);
  ASSERT_TRUE(c.FormAll(2s));
  c.SetLoss(0.05);
  const sim::NetStats before = c.net_stats();
  // From random members, ten a second: as a deploy script would send them.
  SeededRandom pick(c.seed());
  std::set<std::pair<uint64_t, std::string>> sent;
  for (int k = 0; k < kEvents; ++k) {
    const int from = static_cast<int>(pick.Uniform(kNodes));
    const std::string name = "deploy-" + std::to_string(k);
    Result<uint64_t> ltime = nodes[from].events->Send(name, "payload " + std::to_string(k), false);
    ASSERT_TRUE(ltime.ok()) << ltime.status().ToString();
    sent.insert({*ltime, name});
    c.loop().RunFor(100ms);
  }
  auto all_got = [&] {
    for (const Stack& s : nodes)
      if (s.got != sent) return false;
    return true;
  };
  const Time start = c.Now();
  EXPECT_TRUE(c.loop().RunUntil(all_got, 30s)) << "seed " << c.seed();
  size_t worst = kEvents;
  uint64_t duplicates = 0;
  for (const Stack& s : nodes) {
    worst = std::min(worst, s.got.size());
    duplicates += s.events->counts().duplicates;
    EXPECT_EQ(s.deliveries, static_cast<uint64_t>(kEvents)) << "a member handed an event on twice";
  }
  const sim::NetStats& after = c.net_stats();
  std::printf("user events: %d events to %d members under 5%% loss: the fewest any member got %zu/%d, all within "
              "%.1f s after the last was sent; %.1f copies per delivery; %llu datagrams, %llu dropped\n",
              kEvents, kNodes, worst, kEvents,
              std::chrono::duration<double>(c.Now() - start).count(),
              1.0 + static_cast<double>(duplicates) / (kEvents * kNodes),
              static_cast<unsigned long long>(after.packets_sent - before.packets_sent),
              static_cast<unsigned long long>(after.packets_dropped - before.packets_dropped));
  EXPECT_EQ(worst, static_cast<size_t>(kEvents));
}

TEST(EventsSim, AnEventSentJustBeforeItsSenderDiesStillReachesEveryone) {
  spdlog::set_level(spdlog::level::err);
  constexpr int kNodes = 8;
  std::vector<Stack> nodes(kNodes);
  sim::Cluster c(sim::SeedOr(2602), sim::ProfileConfig("lan"));
  for (int i = 0; i < kNodes; ++i) c.Add();
  Attach(c, nodes);
  ASSERT_TRUE(c.FormAll(2s));
  c.SetLoss(0.05);
  ASSERT_TRUE(nodes[3].events->Send("last-words", "", false).ok());
  // One gossip round, then kill -9: the members that heard it hand it on.
  c.loop().RunFor(250ms);
  c.Crash(3);
  EXPECT_TRUE(c.loop().RunUntil(
      [&] {
        for (int i = 0; i < kNodes; ++i)
          if (i != 3 && nodes[i].got.size() != 1) return false;
        return true;
      },
      20s))
      << "seed " << c.seed();
}

TEST(EventsSim, ARestartedMembersEventsAreDeliveredThoughItsClockStartsAgain) {
  spdlog::set_level(spdlog::level::err);
  constexpr int kNodes = 5;
  std::vector<Stack> nodes(kNodes);
  sim::Cluster c(sim::SeedOr(2606), sim::ProfileConfig("lan"));
  for (int i = 0; i < kNodes; ++i) c.Add();
  Attach(c, nodes);
  ASSERT_TRUE(c.FormAll(2s));
  // Far more Lamport times than Serf's buffer of 512 holds.
  for (int k = 0; k < 700; ++k) {
    ASSERT_TRUE(nodes[k % 2].events->Send("tick-" + std::to_string(k), "", false).ok());
    c.loop().RunFor(10ms);
  }
  c.loop().RunFor(5s);
  c.Crash(4);
  c.Restart(4, 0);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 30s));
  Result<uint64_t> ltime = nodes[4].events->Send("after-restart", "", false);
  ASSERT_TRUE(ltime.ok());
  EXPECT_LT(*ltime, 10u) << "the restarted member has witnessed nothing yet";
  EXPECT_TRUE(c.loop().RunUntil(
      [&] {
        for (const Stack& s : nodes)
          if (!s.got.count({*ltime, "after-restart"})) return false;
        return true;
      },
      20s))
      << "seed " << c.seed();
  // And the restarted member's clock catches up with what it hears.
  Result<uint64_t> later = nodes[0].events->Send("later", "", false);
  ASSERT_TRUE(later.ok());
  EXPECT_GT(*later, 300u);
  c.loop().RunFor(3s);
  EXPECT_GE(nodes[4].events->ltime(), *later);
}

TEST(EventsSim, AQueryIsAnsweredByExactlyTheMembersItsFiltersPickEvenUnderLoss) {
  spdlog::set_level(spdlog::level::err);
  constexpr int kNodes = 10;
  std::vector<Stack> nodes(kNodes);
  sim::Cluster c(sim::SeedOr(2603), sim::ProfileConfig("lan"));
  for (int i = 0; i < kNodes; ++i) {
    membership::Config cfg = sim::ProfileConfig("lan");
    cfg.tags = {{"role", i % 3 == 0 ? "web" : (i % 3 == 1 ? "webcache" : "db")}, {"zone", i < 5 ? "a" : "b"}};
    c.Add(cfg);
  }
  Attach(c, nodes);
  ASSERT_TRUE(c.FormAll(2s));
  c.SetLoss(0.10);

  auto ask = [&](QueryParams p) {
    std::set<std::string> acked, answered;
    std::optional<QuerySummary> summary;
    Result<uint32_t> id = nodes[1].queries->Ask(
        std::move(p),
        [&](const QueryArrival& a) {
          if (a.ack) {
            EXPECT_TRUE(acked.insert(a.from).second) << "two acks from " << a.from;
          } else {
            EXPECT_EQ(a.payload, "answer from " + a.from);
            EXPECT_TRUE(answered.insert(a.from).second) << "two responses from " << a.from;
          }
        },
        [&](const QuerySummary& s) { summary = s; });
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    EXPECT_TRUE(c.loop().RunUntil([&] { return summary.has_value(); }, 60s));
    return std::make_tuple(acked, answered, summary.value_or(QuerySummary{}));
  };

  // role=web is a whole match: webcache members stay out.
  QueryParams web;
  web.name = "version";
  web.tags = {{"role", "web"}};
  web.timeout = 3s;
  auto [acked, answered, summary] = ask(web);
  const std::set<std::string> expect = {"n0", "n3", "n6", "n9"};
  EXPECT_EQ(acked, expect) << "seed " << c.seed();
  EXPECT_EQ(answered, expect) << "seed " << c.seed();
  EXPECT_TRUE(summary.silent.empty());
  EXPECT_EQ(std::set<std::string>(summary.matched.begin(), summary.matched.end()), expect);

  // Two filters and a node list: all must hold.
  QueryParams narrow;
  narrow.name = "version";
  narrow.tags = {{"role", "web.*"}, {"zone", "b"}};
  narrow.nodes = {"n6", "n7", "n2"};
  narrow.timeout = 3s;
  narrow.relay_factor = 2;
  auto [acked2, answered2, summary2] = ask(narrow);
  EXPECT_EQ(answered2, (std::set<std::string>{"n6", "n7"}));

  // A matching member that is down is named silent.
  c.Crash(9);
  QueryParams down = web;
  down.no_ack = true;
  auto [acked3, answered3, summary3] = ask(down);
  EXPECT_TRUE(acked3.empty()) << "--no-ack: acks came";
  EXPECT_EQ(answered3, (std::set<std::string>{"n0", "n3", "n6"}));
  EXPECT_EQ(summary3.silent, std::vector<std::string>{"n9"});
}

TEST(EventsSim, BadMessagesAreDroppedAndCounted) {
  spdlog::set_level(spdlog::level::off);
  std::vector<Stack> nodes(2);
  sim::Cluster c(sim::SeedOr(2604), sim::ProfileConfig("lan"));
  c.Add();
  c.Add();
  Attach(c, nodes);
  ASSERT_TRUE(c.FormAll(1s));
  const Bytes garbage = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  nodes[0].channels->SendPacket(membership::Channel::kEvents, c.addr(1), garbage);
  nodes[0].channels->SendPacket(membership::Channel::kQuery, c.addr(1), garbage);
  nodes[0].channels->SendPacket(membership::Channel::kQuery, c.addr(1), {});
  // A relay towards an address that is not the asker's: refused.
  QueryResponseMessage relay{1, 1, "n0", "n1", false, "x", "127.0.0.1:9"};
  Bytes framed = EncodeQueryResponse(relay);
  framed.insert(framed.begin(), 'r');
  nodes[0].channels->SendPacket(membership::Channel::kQuery, c.addr(1), framed);
  c.loop().RunFor(1s);
  EXPECT_EQ(nodes[1].events->counts().rejected, 1u);
  EXPECT_EQ(nodes[1].queries->counts().rejected, 3u);
  EXPECT_EQ(nodes[1].queries->counts().relayed, 0u);
  // Too large, and a bad name: refused at the sender with the reason.
  Result<uint64_t> big = nodes[0].events->Send("big", std::string(600, 'x'), false);
  ASSERT_FALSE(big.ok());
  EXPECT_NE(big.status().message().find("at most 512"), std::string::npos);
  EXPECT_FALSE(nodes[0].events->Send("", "", false).ok());
  EXPECT_FALSE(nodes[0].events->Send("a\nb", "", false).ok());
}

// ---- event handlers -------------------------------------------------------------------------

// Records each run and finishes it after `took` of virtual time.
class ScriptedExec final : public HookExec {
 public:
  ScriptedExec(Clock& clock, Duration took, std::string output = "")
      : clock_(clock), took_(took), output_(std::move(output)) {}
  void Run(HookRequest request, std::function<void(Result<HookResult>)> done) override {
    runs.push_back(request);
    ++running;
    max_running = std::max(max_running, running);
    clock_.Schedule(took_, [this, done = std::move(done)] {
      --running;
      HookResult r;
      r.exit_code = 0;
      r.output = output_;
      done(r);
    });
  }
  std::vector<HookRequest> runs;
  int running = 0, max_running = 0;

 private:
  Clock& clock_;
  Duration took_;
  std::string output_;
};

TEST(EventHandlersSim, ABurstOfJoinsIsOneRunAndRunsAreOneAtATimeInOrder) {
  spdlog::set_level(spdlog::level::err);
  sim::Cluster c(sim::SeedOr(2605), sim::ProfileConfig("lan"));
  membership::Config first = sim::ProfileConfig("lan");
  first.tags = {{"roles", "web"}, {"rack-id", "r1"}};
  c.Add(first);
  for (int i = 1; i < 6; ++i) c.Add();
  std::unique_ptr<ScriptedExec> all, users;
  std::unique_ptr<EventHandlers> handlers;
  c.OnBoot([&](int i) {
    if (i != 0) return;
    all = std::make_unique<ScriptedExec>(c.clock(0), 300ms, "the answer\n");
    users = std::make_unique<ScriptedExec>(c.clock(0), 50ms);
    std::vector<EventHandlerSpec> specs = {{{}, "/h/all", "all", all.get()},
                                           {{"user:deploy", "member-failed"}, "/h/users", "users", users.get()}};
    handlers = std::make_unique<EventHandlers>(c.clock(0), c.node(0), std::move(specs),
                                               EventHandlerConfig{.extra_env = {{"STARLING_SOCKET", "/s"}}});
  });
  c.OnEvent([&](int i, const membership::Event& e) {
    if (i == 0 && handlers) handlers->OnMember(e);
  });
  c.Start(0);
  for (int i = 1; i < 6; ++i) c.StartAndJoin(i, 0);
  ASSERT_TRUE(c.loop().RunUntil([&] { return c.Converged(); }, 30s));
  c.loop().RunFor(5s);
  // Five joins within a second: one member-join run with five lines. (Our
  // own join came before the handlers were attached; the daemon attaches
  // them first.)
  ASSERT_EQ(all->runs.size(), 1u);
  const HookRequest& join = all->runs[0];
  EXPECT_EQ(join.env.at("STARLING_EVENT"), "member-join");
  EXPECT_EQ(join.env.at("STARLING_SELF_NAME"), "n0");
  EXPECT_EQ(join.env.at("STARLING_SELF_ROLE"), "web");
  EXPECT_EQ(join.env.at("STARLING_TAG_RACK_ID"), "r1");
  EXPECT_EQ(join.env.at("STARLING_SOCKET"), "/s");
  EXPECT_EQ(std::count(join.input.begin(), join.input.end(), '\n'), 5);
  EXPECT_NE(join.input.find("n3\t" + c.addr(3) + "\t"), std::string::npos) << join.input;
  EXPECT_TRUE(users->runs.empty()) << "a handler ran for an event its filter leaves out";

  // Events while one runs wait their turn, in order; filters pick the handlers.
  handlers->OnUser(UserEvent{"deploy", "v2", 7, false});
  handlers->OnUser(UserEvent{"other", "x", 8, false});
  std::optional<std::string> answer;
  handlers->OnQuery(QueryEvent{"status", "", "n4", 9, 1, 10s}, [&](std::string out) { answer = out; });
  c.loop().RunFor(5s);
  ASSERT_EQ(all->runs.size(), 4u);
  EXPECT_EQ(all->runs[1].env.at("STARLING_USER_EVENT"), "deploy");
  EXPECT_EQ(all->runs[1].env.at("STARLING_USER_LTIME"), "7");
  EXPECT_EQ(all->runs[1].input, "v2");
  EXPECT_EQ(all->runs[2].env.at("STARLING_USER_EVENT"), "other");
  EXPECT_EQ(all->runs[3].env.at("STARLING_QUERY_NAME"), "status");
  ASSERT_EQ(users->runs.size(), 1u);
  EXPECT_EQ(users->runs[0].env.at("STARLING_USER_EVENT"), "deploy");
  EXPECT_EQ(all->max_running + users->max_running, 2) << "runs overlapped";
  EXPECT_EQ(answer, "the answer\n");

  // Coalesced user events: only the newest of a name runs.
  for (uint64_t t = 20; t < 25; ++t) handlers->OnUser(UserEvent{"deploy", "v" + std::to_string(t), t, true});
  c.loop().RunFor(5s);
  ASSERT_EQ(users->runs.size(), 2u);
  EXPECT_EQ(users->runs[1].input, "v24");

  // A crash: member-failed for the users handler too.
  c.Crash(5);
  ASSERT_TRUE(c.loop().RunUntil([&] { return users->runs.size() == 3; }, 60s));
  EXPECT_EQ(users->runs[2].env.at("STARLING_EVENT"), "member-failed");
  EXPECT_EQ(users->runs[2].input.substr(0, 3), "n5\t");
}

TEST(EventHandlersSim, FiltersParseAndNameWhatIsWrong) {
  auto h = ParseEventHandler("member-join,user:deploy=/usr/local/bin/x");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->first, (std::vector<std::string>{"member-join", "user:deploy"}));
  EXPECT_EQ(h->second, "/usr/local/bin/x");
  auto plain = ParseEventHandler("/opt/handlers/a=b");
  ASSERT_TRUE(plain.ok());
  EXPECT_TRUE(plain->first.empty());
  EXPECT_EQ(plain->second, "/opt/handlers/a=b");
  auto typo = ParseEventHandler("member-jion=/x");
  ASSERT_FALSE(typo.ok());
  EXPECT_NE(typo.status().message().find("member-jion"), std::string::npos);
  EXPECT_FALSE(ParseEventHandler("user=").ok());
  EXPECT_TRUE(FilterMatches({"user"}, "user", "anything"));
  EXPECT_TRUE(FilterMatches({"query:status"}, "query", "status"));
  EXPECT_FALSE(FilterMatches({"query:status"}, "query", "other"));
  EXPECT_FALSE(FilterMatches({"user:status"}, "query", "status"));
  EXPECT_TRUE(FilterMatches({}, "member-reap", ""));
  EXPECT_FALSE(ParseTagFilter("role").ok());
  EXPECT_FALSE(ParseTagFilter("role=(web").ok());
  EXPECT_TRUE(MatchesFilters("n1", {{"role", "web"}}, {}, {{"role", "web|db"}}));
  EXPECT_FALSE(MatchesFilters("n1", {{"role", "webcache"}}, {}, {{"role", "web"}}));
  EXPECT_FALSE(MatchesFilters("n1", {}, {}, {{"role", ".*"}}));
  EXPECT_FALSE(MatchesFilters("n1", {{"role", "web"}}, {"n2"}, {}));
}

TEST(EventsCodec, RoundTripsAndRefusesWhatIsOutOfRange) {
  UserEvent e{"deploy", std::string("\x00\x01payload", 9), 42, true};
  Result<UserEvent> back = DecodeUserEvent(EncodeUserEvent(e));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, e);
  QueryMessage q;
  q.id = 7;
  q.ltime = 3;
  q.origin = "n1";
  q.origin_addr = "127.0.0.1:7946";
  q.params.name = "status";
  q.params.payload = "p";
  q.params.nodes = {"n2"};
  q.params.tags = {{"role", "web"}};
  q.params.timeout = 2s;
  q.params.relay_factor = 2;
  q.attempt = 1;
  q.heard = {"n3"};
  Result<QueryMessage> qb = DecodeQuery(EncodeQuery(q));
  ASSERT_TRUE(qb.ok()) << qb.status().ToString();
  EXPECT_EQ(*qb, q);
  q.params.relay_factor = 9;
  EXPECT_FALSE(DecodeQuery(EncodeQuery(q)).ok());
  q.params.relay_factor = 1;
  q.params.timeout = 0s;
  EXPECT_FALSE(DecodeQuery(EncodeQuery(q)).ok());
  QueryResponseMessage r{7, 3, "n1", "n2", true, "not empty", ""};
  EXPECT_FALSE(DecodeQueryResponse(EncodeQueryResponse(r)).ok()) << "an ack with a payload";
  r.ack = false;
  EXPECT_TRUE(DecodeQueryResponse(EncodeQueryResponse(r)).ok());
  e.payload = std::string(kMaxEventBytes, 'x');
  EXPECT_FALSE(DecodeUserEvent(EncodeUserEvent(e)).ok());
  for (size_t n = 0; n < 64; n += 8) EXPECT_FALSE(DecodeUserEvent(Bytes(n, 0xff)).ok());
}

}  // namespace
}  // namespace starling::node

// Event handlers (`--event-handler [FILTER=]PATH`): programs the operator
// gives to run on membership events, user events and queries, as Serf's
// agent runs its handlers.
//
//  * Filters: member-join, member-leave, member-failed, member-update,
//    member-reap, user, user:NAME, query, query:NAME; none means every event.
//    A member that comes back from failed is a member-join, as in Serf.
//  * Each run is a hook run (HookExec): an executable, a clean environment,
//    a timeout, output captured. Environment: STARLING_EVENT, STARLING_SELF_NAME,
//    STARLING_SELF_ROLE (the `roles` tag), STARLING_TAG_<KEY> for each of
//    this node's tags (KEY upper-cased, other than A-Z 0-9 as '_'), then
//    STARLING_USER_EVENT and STARLING_USER_LTIME for a user event,
//    STARLING_QUERY_NAME and STARLING_QUERY_LTIME for a query, plus what the
//    host adds (`extra_env`: the API socket).
//  * stdin: for a member event, one `name<TAB>address<TAB>tags` line per
//    member it is about (tags as k=v joined by ','); for a user event or a
//    query, its payload.
//  * Runs are in order, one at a time, off the protocol thread (the HookExec
//    runs them on a worker). A burst of member events is coalesced: the
//    newest event of each member within `quiescent` of the last one (at
//    most `coalesce` after the first) is kept, then one run per event kind.
//    User events sent with --coalesce: only the newest of each name within
//    the same windows runs.
//  * A query's response is the output of the first handler that runs for it
//    and exits 0 with some output.
//  * At most `max_queue` runs wait; more drop the oldest (counted, logged).
// Single-threaded on the protocol thread.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "events.h"
#include "hook.h"
#include "starling/env.h"
#include "starling/membership/memberlist.h"

namespace starling::node {

struct EventHandlerSpec {
  std::vector<std::string> filters;  // empty: every event
  std::string path;                  // what the operator gave, for messages
  std::string name;                  // what `exec` runs
  HookExec* exec = nullptr;
};

// "member-join,user:deploy" into filters; kInvalidArgument names a filter that is not one.
Result<std::vector<std::string>> ParseEventFilters(const std::string& text);
// "[FILTER=]PATH": the filters (empty for all) and the path.
Result<std::pair<std::vector<std::string>, std::string>> ParseEventHandler(const std::string& text);
// Whether a handler with `filters` runs for `event` ("member-join", "user", "query") named `name`.
bool FilterMatches(const std::vector<std::string>& filters, const std::string& event, const std::string& name);

struct EventHandlerConfig {
  Duration quiescent = std::chrono::milliseconds(500);
  Duration coalesce = std::chrono::seconds(2);
  Duration timeout = std::chrono::seconds(60);
  size_t max_queue = 1024;
  std::map<std::string, std::string> extra_env;
};

// One run's record, for tests and the log.
struct EventRun {
  std::string event;  // member-join, user, query, ...
  std::string handler;
  HookResult result;
};

class EventHandlers {
 public:
  // `members` must outlive this.
  EventHandlers(Clock& clock, membership::Memberlist& members, std::vector<EventHandlerSpec> handlers,
                EventHandlerConfig config);
  ~EventHandlers();
  EventHandlers(const EventHandlers&) = delete;
  EventHandlers& operator=(const EventHandlers&) = delete;

  void OnMember(const membership::Event& event);
  void OnUser(const UserEvent& event);
  // `respond` gets the first good handler's output (not called when none gives one).
  void OnQuery(const QueryEvent& event, std::function<void(std::string)> respond);

  bool empty() const { return handlers_.empty(); }
  struct Counts {
    uint64_t runs = 0, failed = 0, dropped = 0;
  };
  const Counts& counts() const { return counts_; }
  void OnRun(std::function<void(const EventRun&)> fn) { on_run_ = std::move(fn); }

 private:
  struct Job {
    std::string event, name;  // name: the user event's or query's
    std::map<std::string, std::string> env;
    std::string input;
    Duration timeout{0};
    std::function<void(std::string)> respond;
  };
  void Enqueue(Job job);
  void Pump();
  void RunNext(std::shared_ptr<Job> job, size_t from);
  void ArmFlush();
  void Flush();
  std::map<std::string, std::string> BaseEnv(const std::string& event) const;

  Clock& clock_;
  membership::Memberlist& members_;
  std::vector<EventHandlerSpec> handlers_;
  EventHandlerConfig config_;
  // Coalescing: member name -> its newest event kind and view; user events by name.
  std::map<std::string, std::pair<std::string, membership::MemberView>> member_burst_;
  std::map<std::string, UserEvent> user_burst_;
  std::optional<Time> burst_first_;
  std::optional<Clock::TimerId> flush_timer_;
  std::deque<Job> queue_;
  bool running_ = false;
  Counts counts_;
  std::function<void(const EventRun&)> on_run_;
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
};

}  // namespace starling::node

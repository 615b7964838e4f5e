#include "event_handlers.h"

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "starling/text.h"

namespace starling::node {

namespace {

const std::vector<std::string>& MemberKinds() {
  static const std::vector<std::string> kinds = {"member-join", "member-update", "member-leave", "member-failed",
                                                 "member-reap"};
  return kinds;
}

// Serf's names for what membership reports; suspicion is no event of its own.
std::optional<std::string> MemberKind(membership::EventType t) {
  switch (t) {
    case membership::EventType::kJoined:
    case membership::EventType::kAlive:  // back from failed: a join again
      return "member-join";
    case membership::EventType::kUpdated:
      return "member-update";
    case membership::EventType::kLeft:
      return "member-leave";
    case membership::EventType::kFailed:
      return "member-failed";
    case membership::EventType::kReaped:
      return "member-reap";
    case membership::EventType::kSuspect:
      return std::nullopt;
  }
  return std::nullopt;
}

std::string EnvKey(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    out += ((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) ? c : '_';
  }
  return out;
}

std::string TagsText(const membership::Tags& tags) {
  std::string out;
  for (const auto& [k, v] : tags) {
    if (!out.empty()) out += ',';
    out += k + "=" + v;
  }
  return out;
}

std::string OneLine(const std::string& s) {
  std::string out = s;
  std::replace_if(out.begin(), out.end(), [](char c) { return c == '\t' || c == '\n' || c == '\r'; }, ' ');
  return out;
}

}  // namespace

Result<std::vector<std::string>> ParseEventFilters(const std::string& text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = text.find(',', start);
    std::string f = text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    const bool member = std::find(MemberKinds().begin(), MemberKinds().end(), f) != MemberKinds().end();
    const bool named = (f.rfind("user:", 0) == 0 && f.size() > 5) || (f.rfind("query:", 0) == 0 && f.size() > 6);
    if (!member && !named && f != "user" && f != "query")
      return Status::InvalidArgument("event filter '" + f +
                                     "' is not one of member-join, member-leave, member-failed, member-update, "
                                     "member-reap, user, user:NAME, query, query:NAME");
    out.push_back(std::move(f));
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

Result<std::pair<std::vector<std::string>, std::string>> ParseEventHandler(const std::string& text) {
  // A filter holds no '/', a path's directory part does: the first '=' before
  // any '/' ends the filters.
  const size_t eq = text.find('=');
  const size_t slash = text.find('/');
  std::vector<std::string> filters;
  std::string path = text;
  if (eq != std::string::npos && (slash == std::string::npos || eq < slash)) {
    Result<std::vector<std::string>> f = ParseEventFilters(text.substr(0, eq));
    if (!f.ok()) return Status::InvalidArgument("--event-handler '" + text + "': " + f.status().message());
    filters = std::move(*f);
    path = text.substr(eq + 1);
  }
  if (path.empty()) return Status::InvalidArgument("--event-handler '" + text + "' names no program");
  return std::make_pair(std::move(filters), std::move(path));
}

bool FilterMatches(const std::vector<std::string>& filters, const std::string& event, const std::string& name) {
  if (filters.empty()) return true;
  for (const std::string& f : filters) {
    if (f == event) return true;
    if ((event == "user" || event == "query") && f == event + ":" + name) return true;
  }
  return false;
}

EventHandlers::EventHandlers(Clock& clock, membership::Memberlist& members, std::vector<EventHandlerSpec> handlers,
                             EventHandlerConfig config)
    : clock_(clock), members_(members), handlers_(std::move(handlers)), config_(std::move(config)) {}

EventHandlers::~EventHandlers() {
  *alive_ = false;
  if (flush_timer_) clock_.Cancel(*flush_timer_);
}

static bool AnyHandles(const std::vector<EventHandlerSpec>& handlers, const std::string& event, const std::string& name) {
  return std::any_of(handlers.begin(), handlers.end(),
                     [&](const EventHandlerSpec& h) { return FilterMatches(h.filters, event, name); });
}

void EventHandlers::OnMember(const membership::Event& event) {
  std::optional<std::string> kind = MemberKind(event.type);
  if (!kind || !AnyHandles(handlers_, *kind, "")) return;
  member_burst_[event.member.name] = {*kind, event.member};
  ArmFlush();
}

void EventHandlers::OnUser(const UserEvent& event) {
  if (!AnyHandles(handlers_, "user", event.name)) return;
  if (event.coalesce) {
    auto [it, fresh] = user_burst_.try_emplace(event.name, event);
    if (!fresh && it->second.ltime < event.ltime) it->second = event;
    ArmFlush();
    return;
  }
  Job job{"user", event.name, BaseEnv("user"), event.payload, config_.timeout, nullptr};
  job.env["STARLING_USER_EVENT"] = event.name;
  job.env["STARLING_USER_LTIME"] = std::to_string(event.ltime);
  Enqueue(std::move(job));
}

void EventHandlers::OnQuery(const QueryEvent& event, std::function<void(std::string)> respond) {
  if (!AnyHandles(handlers_, "query", event.name)) return;
  Job job{"query", event.name, BaseEnv("query"), event.payload, std::min(config_.timeout, event.timeout),
          std::move(respond)};
  job.env["STARLING_QUERY_NAME"] = event.name;
  job.env["STARLING_QUERY_LTIME"] = std::to_string(event.ltime);
  Enqueue(std::move(job));
}

void EventHandlers::ArmFlush() {
  const Time now = clock_.Now();
  if (!burst_first_) burst_first_ = now;
  if (flush_timer_) clock_.Cancel(*flush_timer_);
  // Quiet for `quiescent`, or `coalesce` since the burst began, whichever is first.
  const Duration wait = std::max(Duration::zero(), std::min(config_.quiescent, *burst_first_ + config_.coalesce - now));
  std::weak_ptr<bool> alive = alive_;
  flush_timer_ = clock_.Schedule(wait, [this, alive] {
    if (!alive.lock()) return;
    flush_timer_.reset();
    Flush();
  });
}

void EventHandlers::Flush() {
  burst_first_.reset();
  auto members = std::move(member_burst_);
  member_burst_.clear();
  for (const std::string& kind : MemberKinds()) {
    std::string input;
    for (const auto& [name, e] : members)
      if (e.first == kind) input += OneLine(name) + "\t" + e.second.addr + "\t" + OneLine(TagsText(e.second.tags)) + "\n";
    if (!input.empty()) Enqueue(Job{kind, "", BaseEnv(kind), std::move(input), config_.timeout, nullptr});
  }
  auto users = std::move(user_burst_);
  user_burst_.clear();
  std::vector<UserEvent> ordered;
  for (auto& [name, e] : users) ordered.push_back(std::move(e));
  std::sort(ordered.begin(), ordered.end(), [](const UserEvent& a, const UserEvent& b) { return a.ltime < b.ltime; });
  for (UserEvent& e : ordered) {
    Job job{"user", e.name, BaseEnv("user"), std::move(e.payload), config_.timeout, nullptr};
    job.env["STARLING_USER_EVENT"] = e.name;
    job.env["STARLING_USER_LTIME"] = std::to_string(e.ltime);
    Enqueue(std::move(job));
  }
}

std::map<std::string, std::string> EventHandlers::BaseEnv(const std::string& event) const {
  std::map<std::string, std::string> env = config_.extra_env;
  const membership::MemberView self = members_.Self();
  env["STARLING_EVENT"] = event;
  env["STARLING_SELF_NAME"] = self.name;
  auto roles = self.tags.find("roles");
  env["STARLING_SELF_ROLE"] = roles == self.tags.end() ? "" : roles->second;
  for (const auto& [k, v] : self.tags) env["STARLING_TAG_" + EnvKey(k)] = v;
  return env;
}

void EventHandlers::Enqueue(Job job) {
  if (queue_.size() >= config_.max_queue) {
    ++counts_.dropped;
    spdlog::warn("event handlers: {} runs waiting; dropped the oldest ({})", queue_.size(), queue_.front().event);
    queue_.pop_front();
  }
  queue_.push_back(std::move(job));
  Pump();
}

void EventHandlers::Pump() {
  if (running_ || queue_.empty()) return;
  running_ = true;
  auto job = std::make_shared<Job>(std::move(queue_.front()));
  queue_.pop_front();
  RunNext(std::move(job), 0);
}

void EventHandlers::RunNext(std::shared_ptr<Job> job, size_t from) {
  size_t i = from;
  while (i < handlers_.size() && !FilterMatches(handlers_[i].filters, job->event, job->name)) ++i;
  if (i == handlers_.size()) {
    running_ = false;
    return Pump();
  }
  const EventHandlerSpec& h = handlers_[i];
  HookRequest request{h.name, job->env, job->input, job->timeout};
  std::weak_ptr<bool> alive = alive_;
  h.exec->Run(std::move(request), [this, alive, job, i](Result<HookResult> r) {
    if (!alive.lock()) return;
    const EventHandlerSpec& h = handlers_[i];
    ++counts_.runs;
    if (!r.ok()) {
      ++counts_.failed;
      spdlog::warn("event handler {} for {} could not run: {}", h.path, job->event, r.status().message());
    } else {
      if (!r->ok()) {
        ++counts_.failed;
        spdlog::warn("event handler {} for {}: {}; output: {}", h.path, job->event, r->Describe(),
                     text::Printable(r->output, true));
      } else {
        spdlog::debug("event handler {} for {}: {} in {} ms", h.path, job->event, r->Describe(),
                      std::chrono::duration_cast<std::chrono::milliseconds>(r->took).count());
        if (job->respond && !r->output.empty()) {
          auto respond = std::move(job->respond);
          job->respond = nullptr;
          respond(r->output);
        }
      }
      if (on_run_) on_run_(EventRun{job->event, h.path, *r});
    }
    RunNext(job, i + 1);
  });
}

}  // namespace starling::node

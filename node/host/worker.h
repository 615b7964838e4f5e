// Blocking work off the protocol thread: a worker thread that runs one job at
// a time, and the HookExec that runs hooks as child processes on its own
// worker.
//
// Each job's `done` is handed to `post`, which must run it on the protocol
// thread (the daemon posts to its io_context). The thread is detached: a job
// still running at exit must not hold the exit up (a hook is killed at its
// own timeout), and it posts nothing once the Worker is destroyed.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "hook.h"
#include "hook_runner.h"

namespace starling::node {

class Worker {
 public:
  using Post = std::function<void(std::function<void()>)>;
  explicit Worker(Post post);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs `work` on the worker thread, then `done` through `post`. Any thread.
  void Run(std::function<void()> work, std::function<void()> done);

 private:
  struct Shared {
    Post post;
    std::mutex mu;
    std::condition_variable cv;
    std::deque<std::pair<std::function<void()>, std::function<void()>>> queue;  // guarded by mu
    bool stopped = false;                                                       // guarded by mu
  };
  static void Loop(Shared& s);
  std::shared_ptr<Shared> shared_;
};

// Hooks run on a worker of their own, so that a long hook does not hold up
// artifact work.
class ThreadHookExec final : public HookExec {
 public:
  ThreadHookExec(Worker::Post post, std::string hooks_dir, bool follow_symlinks = false);
  void Run(HookRequest request, std::function<void(Result<HookResult>)> done) override;

 private:
  std::shared_ptr<HookRunner> runner_;  // shared with a job that may outlive this
  Worker worker_;
};

}  // namespace starling::node

#include "worker.h"

#include <thread>

#include "guard.h"

namespace starling::node {

Worker::Worker(Post post) : shared_(std::make_shared<Shared>()) {
  shared_->post = std::move(post);
  std::thread([s = shared_] { Loop(*s); }).detach();
}

Worker::~Worker() {
  std::lock_guard lock(shared_->mu);
  shared_->stopped = true;
  shared_->cv.notify_all();
}

void Worker::Run(std::function<void()> work, std::function<void()> done) {
  std::lock_guard lock(shared_->mu);
  shared_->queue.emplace_back(std::move(work), std::move(done));
  shared_->cv.notify_one();
}

void Worker::Loop(Shared& s) {
  for (;;) {
    std::unique_lock lock(s.mu);
    s.cv.wait(lock, [&] { return s.stopped || !s.queue.empty(); });
    if (s.stopped) return;
    auto [work, done] = std::move(s.queue.front());
    s.queue.pop_front();
    lock.unlock();
    RunGuarded("worker job", work);
    lock.lock();
    if (s.stopped) return;
    s.post([done = std::move(done)] { RunGuarded("worker result", done); });
  }
}

ThreadHookExec::ThreadHookExec(Worker::Post post, std::string hooks_dir, bool follow_symlinks)
    : runner_(std::make_shared<HookRunner>(std::move(hooks_dir))), worker_(std::move(post)) {
  runner_->FollowSymlinksOut(follow_symlinks);
}

void ThreadHookExec::Run(HookRequest request, std::function<void(Result<HookResult>)> done) {
  auto result = std::make_shared<Result<HookResult>>(Status::Internal("the hook did not run"));
  worker_.Run([runner = runner_, request = std::move(request), result] { *result = runner->Run(request); },
              [done = std::move(done), result] { done(std::move(*result)); });
}

}  // namespace starling::node

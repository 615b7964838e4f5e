// Runs a handler so that no exception escapes into io_context::run().
#pragma once

#include <string_view>
#include <utility>

namespace starling::node {

// Logs (at error level) and swallows whatever `fn` throws, including
// kj::Exception, which is not a std::exception.
void LogUncaught(std::string_view where);

template <typename Fn>
void RunGuarded(std::string_view where, Fn&& fn) {
  try {
    std::forward<Fn>(fn)();
  } catch (...) {
    LogUncaught(where);
  }
}

}  // namespace starling::node

#include "hook.h"

#include <cstring>

namespace starling::node {

std::string HookResult::Describe() const {
  if (timed_out) return "timed out after " + std::to_string(std::chrono::duration_cast<std::chrono::seconds>(took).count()) + " s";
  if (signal != 0) return "killed by signal " + std::to_string(signal) + " (" + strsignal(signal) + ")";
  return "exit " + std::to_string(exit_code);
}

}  // namespace starling::node

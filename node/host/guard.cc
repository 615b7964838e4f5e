#include "guard.h"

#include <kj/exception.h>
#include <spdlog/spdlog.h>

#include <exception>

namespace starling::node {

void LogUncaught(std::string_view where) {
  // Called from inside a catch (...): rethrow to learn what was caught.
  try {
    throw;
  } catch (const std::exception& e) {
    spdlog::error("{}: unexpected exception: {}", where, e.what());
  } catch (const kj::Exception& e) {
    spdlog::error("{}: unexpected exception: {}", where, e.getDescription().cStr());
  } catch (...) {
    spdlog::error("{}: unexpected exception of unknown type", where);
  }
}

}  // namespace starling::node

// Contract checks inside fuzz targets. libFuzzer keeps an input only when the
// process dies, so a decoder that answers wrongly without crashing (accepts
// what it cannot encode again, says two things about one input) must be
// turned into an abort here to be caught and saved.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>

namespace starling::fuzz {

[[noreturn]] inline void Fail(const char* file, int line, const char* what, const std::string& detail) {
  std::fprintf(stderr, "%s:%d: contract broken: %s\n  %s\n", file, line, what, detail.c_str());
  std::abort();
}

}  // namespace starling::fuzz

#define FUZZ_CHECK(cond, detail)                                              \
  do {                                                                        \
    if (!(cond)) ::starling::fuzz::Fail(__FILE__, __LINE__, #cond, (detail)); \
  } while (0)

// FUZZ_CHECK for the fuzz targets: a broken invariant prints the target's
// name, the condition and a detail, then aborts, so that libFuzzer keeps the
// input as a crash file and the replay fails on it. (envelope_fuzz.cpp has
// its own copy, older than this header.)
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

namespace edgesync::fuzz {

[[noreturn]] inline void Fail(const char* target, const char* what, std::string_view detail) {
  std::fprintf(stderr, "%s: invariant broken: %s %.*s\n", target, what, static_cast<int>(detail.size()),
               detail.data());
  std::abort();
}

}  // namespace edgesync::fuzz

// Each target defines kTarget (its name) before using this.
#define FUZZ_CHECK(cond, detail)                                  \
  do {                                                            \
    if (!(cond)) ::edgesync::fuzz::Fail(kTarget, #cond, detail);  \
  } while (0)

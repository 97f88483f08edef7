// The working directory of one test: harness::TempDir, made or the test fails.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>

#include "harness/process.h"

namespace edgesync::testing {

inline harness::TempDir NewTempDir() {
  Result<harness::TempDir> dir = harness::TempDir::Create("edgesync-test");
  if (!dir.ok()) {
    ADD_FAILURE() << "cannot make a test directory: " << dir.status().ToString();
    std::abort();
  }
  return std::move(dir).value();
}

}  // namespace edgesync::testing

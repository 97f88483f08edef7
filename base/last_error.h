// The last error of a stage (ingest, buffer, upload), for the health records
// and the status command: what went wrong most recently and when. Set from
// the stage's own thread, read from any.
#pragma once

#include <cstdint>
#include <mutex>
#include <string>

#include "base/env.h"

namespace edgesync {

struct ErrorNote {
  std::string what;   // empty: none since start
  int64_t at_us = 0;  // wall clock
};

class LastError {
 public:
  // `env` (its wall clock says when) must outlive it.
  explicit LastError(Env* env) : env_(env) {}
  void Set(std::string what) {
    const int64_t now = env_->NowMicros();
    std::lock_guard<std::mutex> lock(mu_);
    note_.what = std::move(what);
    note_.at_us = now;
  }
  ErrorNote Get() const {
    std::lock_guard<std::mutex> lock(mu_);
    return note_;
  }

 private:
  Env* env_;
  mutable std::mutex mu_;
  ErrorNote note_;
};

}  // namespace edgesync

// Capped exponential backoff with full jitter, the retry pause everywhere in
// edgesync (MQTT reconnects, Kafka redelivery): a uniformly random pause in
// [0, min(max_us, initial_us * 2^attempt)], so a fleet that lost its uplink
// at once does not come back at once.
#pragma once

#include <cstdint>

#include "base/env.h"

namespace edgesync {

// `unit` is a random number in [0, 1).
inline int64_t BackoffMicros(int attempt, int64_t initial_us, int64_t max_us, double unit) {
  int64_t ceiling = initial_us;
  for (int i = 0; i < attempt && ceiling < max_us; ++i) ceiling *= 2;
  if (ceiling > max_us) ceiling = max_us;
  return static_cast<int64_t>(unit * static_cast<double>(ceiling));
}

// Holds the attempt count; the jitter comes from `env` (Env::RandomU64),
// which must outlive it. Not thread-safe.
class Backoff {
 public:
  Backoff(int64_t initial_us, int64_t max_us, Env* env)
      : initial_us_(initial_us), max_us_(max_us), env_(env) {}
  // The next pause; each call doubles the ceiling up to the cap.
  int64_t NextMicros() {
    return BackoffMicros(attempt_++, initial_us_, max_us_, env_->RandomUnit());
  }
  void Reset() { attempt_ = 0; }
  int attempts() const { return attempt_; }

 private:
  int64_t initial_us_, max_us_;
  Env* env_;
  int attempt_ = 0;
};

}  // namespace edgesync

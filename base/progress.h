// Whether a stage's thread is making progress, for the systemd watchdog and
// `edgesync status`: the thread marks when it starts or advances a piece of
// work, and when it goes back to waiting for more. A stage that has been on
// one piece of work for too long is wedged (a stuck plugin, a dead flash
// device, a hung library call); one that waits for work is not.
#pragma once

#include <atomic>
#include <cstdint>

namespace edgesync {

class Progress {
 public:
  // Working, and made progress at `now_us` (monotonic).
  void Advance(int64_t now_us) { since_.store(now_us, std::memory_order_relaxed); }
  // Waiting for work: not wedged however long it waits.
  void Wait() { since_.store(0, std::memory_order_relaxed); }
  // How long the stage has been on its current work without progress; 0 while it waits.
  int64_t StuckMicros(int64_t now_us) const {
    const int64_t since = since_.load(std::memory_order_relaxed);
    return since == 0 || now_us < since ? 0 : now_us - since;
  }

 private:
  std::atomic<int64_t> since_{0};
};

}  // namespace edgesync

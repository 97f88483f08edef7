// VirtualClockEnv: an Env whose clocks move only when the test says so
// (Advance), over another Env for everything else (files: Env::Default()
// or a MemEnv). Sleeps and CondVar waits with a deadline return when the
// virtual time reaches it (or, for a CondVar, on a Notify, as usual); a
// Notify still works at once. So a week of an agent's timers runs in
// however long its work takes, and the same each time.
//
// Both clocks advance together: NowMicros starts at `wall_start_us`,
// MonotonicMicros at 1,000,000,000 µs (an arbitrary start, as a real
// monotonic clock has). RandomU64 is a seeded sequence.
//
// Determinism: IdleWaiters() counts the threads blocked in a sleep or a
// timed wait of this Env whose deadline has not come and that no Notify
// has woken since. A test that knows how many threads wait on the clock
// (the sealer, the uploader...) advances, then awaits IdleWaiters() == n
// before looking: every thread has done what the new time asked of it.
#pragma once

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <random>
#include <set>

#include "base/env.h"

namespace edgesync::testing {

class VirtualClockEnv : public EnvWrapper {
 public:
  static constexpr int64_t kMonotonicStart = 1'000'000'000;

  explicit VirtualClockEnv(Env* target, int64_t wall_start_us = 1'800'000'000'000'000,
                           uint64_t seed = 1)
      : EnvWrapper(target), wall_start_us_(wall_start_us), rng_(seed) {}

  int64_t NowMicros() override {
    std::lock_guard<std::mutex> lock(mu_);
    return wall_start_us_ + elapsed_;
  }
  int64_t MonotonicMicros() override {
    std::lock_guard<std::mutex> lock(mu_);
    return kMonotonicStart + elapsed_;
  }

  // Moves both clocks forward by `micros` and wakes every sleep and wait
  // whose deadline that reaches.
  void Advance(int64_t micros) {
    std::lock_guard<std::mutex> lock(mu_);
    elapsed_ += std::max<int64_t>(micros, 0);
    for (Cond* c : conds_) c->cv.notify_all();
  }

  // Threads blocked in a sleep or timed wait that the current time and
  // no Notify have ended (see above).
  int IdleWaiters() {
    std::lock_guard<std::mutex> lock(mu_);
    return IdleWaitersLocked();
  }

  // Waits (in real time, up to `real_timeout`) until IdleWaiters() >= n:
  // woken whenever a thread starts waiting, the only thing that adds one.
  bool AwaitIdleWaiters(int n, std::chrono::milliseconds real_timeout = std::chrono::seconds(30)) {
    std::unique_lock<std::mutex> lock(mu_);
    return idle_cv_.wait_for(lock, real_timeout, [&] { return IdleWaitersLocked() >= n; });
  }

  void SleepForMicros(int64_t micros) override {
    std::unique_ptr<CondVar> cv = NewCondVar();
    std::mutex m;
    std::unique_lock<std::mutex> lock(m);
    const int64_t deadline = MonotonicMicros() + micros;
    while (cv->WaitUntil(lock, deadline)) {
    }
  }

  std::unique_ptr<CondVar> NewCondVar() override { return std::make_unique<VirtualCondVar>(this); }

  uint64_t RandomU64() override {
    std::lock_guard<std::mutex> lock(mu_);
    return rng_();
  }

 private:
  struct Cond {
    std::condition_variable cv;  // waits on mu_
    uint64_t generation = 0;     // bumped by every Notify
  };
  struct Waiter {
    const Cond* cond;
    uint64_t generation;
    int64_t deadline;
  };

  // Every CondVar's state lives under the Env's one mutex, so Advance can
  // wake a waiter without a lost wakeup: a waiter takes mu_ before it
  // releases the caller's lock, and a Notify (made under or after the
  // caller's lock) and an Advance both need mu_.
  class VirtualCondVar final : public CondVar {
   public:
    explicit VirtualCondVar(VirtualClockEnv* env) : env_(env) {
      std::lock_guard<std::mutex> lock(env_->mu_);
      env_->conds_.insert(&cond_);
    }
    ~VirtualCondVar() override {
      std::lock_guard<std::mutex> lock(env_->mu_);
      env_->conds_.erase(&cond_);
    }
    void Wait(std::unique_lock<std::mutex>& lock) override {
      (void)WaitUntil(lock, std::numeric_limits<int64_t>::max());
    }
    bool WaitUntil(std::unique_lock<std::mutex>& lock, int64_t deadline_us) override {
      std::unique_lock<std::mutex> env_lock(env_->mu_);
      if (kMonotonicStart + env_->elapsed_ >= deadline_us) return false;
      Waiter w{&cond_, cond_.generation, deadline_us};
      env_->waiters_.insert(&w);
      env_->idle_cv_.notify_all();
      lock.unlock();
      cond_.cv.wait(env_lock, [&] {
        return cond_.generation != w.generation || kMonotonicStart + env_->elapsed_ >= deadline_us;
      });
      const bool notified = cond_.generation != w.generation;
      env_->waiters_.erase(&w);
      env_lock.unlock();
      lock.lock();
      return notified;
    }
    void NotifyOne() override { NotifyAll(); }  // spurious wakeups are allowed
    void NotifyAll() override {
      std::lock_guard<std::mutex> lock(env_->mu_);
      ++cond_.generation;
      cond_.cv.notify_all();
    }

   private:
    VirtualClockEnv* env_;
    Cond cond_;
  };

  int IdleWaitersLocked() const {
    int n = 0;
    for (const Waiter* w : waiters_) n += (w->cond->generation == w->generation &&
                                           kMonotonicStart + elapsed_ < w->deadline);
    return n;
  }

  std::mutex mu_;
  std::condition_variable idle_cv_;  // on mu_: a thread began to wait
  int64_t elapsed_ = 0;
  const int64_t wall_start_us_;
  std::mt19937_64 rng_;
  std::set<Cond*> conds_;
  std::set<const Waiter*> waiters_;
};

}  // namespace edgesync::testing

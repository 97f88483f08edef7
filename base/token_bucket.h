// Token bucket for a byte rate (kafka.max_bytes_per_sec on metered links).
//
// The bucket fills at `rate` bytes per second up to `burst` bytes. A send
// takes its whole size at once, even more than is in the bucket (the balance
// goes negative): a message larger than the burst still goes out, and the
// next one waits until the debt is paid. Over any stretch of time the bytes
// sent are at most burst + rate * elapsed + one message.
//
// Times are passed in (monotonic µs), so it is a pure calculation: testable
// without a clock. Not thread-safe.
#pragma once

#include <algorithm>
#include <cstdint>

namespace edgesync {

class TokenBucket {
 public:
  // rate 0: unlimited (Wait always 0).
  TokenBucket(uint64_t rate_per_sec, uint64_t burst, int64_t now_us)
      : rate_(rate_per_sec), burst_(static_cast<double>(burst)), tokens_(burst_), last_us_(now_us) {}

  bool unlimited() const { return rate_ == 0; }

  // Microseconds until a send may start (0: now).
  int64_t WaitMicros(int64_t now_us) {
    if (unlimited()) return 0;
    Refill(now_us);
    if (tokens_ >= 0) return 0;
    return static_cast<int64_t>(-tokens_ * 1e6 / static_cast<double>(rate_)) + 1;
  }

  // Accounts for `bytes` sent at `now_us`.
  void Take(uint64_t bytes, int64_t now_us) {
    if (unlimited()) return;
    Refill(now_us);
    tokens_ -= static_cast<double>(bytes);
  }

 private:
  void Refill(int64_t now_us) {
    if (now_us > last_us_) {
      tokens_ = std::min(burst_, tokens_ + static_cast<double>(now_us - last_us_) *
                                               static_cast<double>(rate_) / 1e6);
      last_us_ = now_us;
    }
  }

  uint64_t rate_;
  double burst_;
  double tokens_;
  int64_t last_us_;
};

}  // namespace edgesync

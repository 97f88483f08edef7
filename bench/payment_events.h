// The payment events the benchmarks generate: ~300-byte JSON as a fleet of
// card terminals publishes it, with the fields that differ in real traffic.
// Shared by edgesync-bench-envelope and edgesync-bench-drain.
#pragma once

#include <algorithm>
#include <cstdint>
#include <random>
#include <string>

namespace edgesync::bench {

// Payment events as a terminal fleet publishes them: ~300 bytes of JSON with
// the fields that differ from event to event in real traffic (ids, amounts,
// card numbers, codes, times), so compression sees realistic entropy rather
// than a template with a counter. Deterministic for a seed and start time.
// Receive times start at `start_us` (µs since the epoch) and advance 1 to
// 41 ms an event (21 ms on average). Not thread-safe.
class EventGenerator {
 public:
  static constexpr int64_t kDefaultStartUs = 1'795'000'000'000'000;
  // The mean step between two events' receive times, for choosing start_us.
  static constexpr int64_t kMeanStepUs = 21'000;

  explicit EventGenerator(uint64_t seed, int64_t start_us = kDefaultStartUs)
      : rng_(seed), now_us_(start_us) {}

  struct Event {
    std::string topic, payload;
    int64_t received_at_us;
  };

  Event Next() {
    static const char* kTypes[] = {"authorization", "authorization", "authorization", "capture",
                                   "refund", "reversal"};
    static const char* kCurrencies[] = {"EUR", "EUR", "EUR", "USD", "GBP", "CHF"};
    struct Bin { const char* bin; const char* scheme; };
    static const Bin kBins[] = {{"411111", "VISA"}, {"453201", "VISA"}, {"550000", "MASTERCARD"},
                                {"522222", "MASTERCARD"}, {"676770", "MAESTRO"}, {"371449", "AMEX"}};
    static const char* kCodes[] = {"00", "00", "00", "00", "00", "00", "05", "51", "54", "91"};
    const int terminal = Pick(kTerminals);
    const std::string term = "term-" + Digits(terminal, 4);
    const char* type = kTypes[Pick(6)];
    const Bin& card = kBins[Pick(6)];
    const std::string code = kCodes[Pick(10)];
    now_us_ += 1000 + Pick(40000);  // events a few ms apart
    const uint64_t seq = ++seq_[terminal];
    const int64_t now_s = now_us_ / 1'000'000;

    Event e;
    e.topic = "terminal/" + term + "/payment/" + type;
    e.received_at_us = now_us_;
    // A random transaction id and auth code, an amount, the card's last
    // digits: what makes each event unique. The retrieval reference number
    // is time and terminal sequence, as acquirers build it.
    e.payload = R"({"id":")" + Hex(16) + R"(","device":")" + term + R"(","seq":)" +
                std::to_string(seq) + R"(,"ts":)" + std::to_string(now_us_ / 1000) + R"(,"type":")" +
                type + R"(","merchant":"MID)" + Digits(100000 + terminal / 4, 9) +
                R"(","amount":{"value":)" + std::to_string(50 + Pick(250000)) +
                R"(,"currency":")" + kCurrencies[Pick(6)] + R"("},"card":{"bin":")" + card.bin +
                R"(","last4":")" + Digits(Pick(10000), 4) + R"(","scheme":")" + card.scheme +
                R"("},"result":{"approved":)" + (code == "00" ? "true" : "false") + R"(,"code":")" +
                code + R"(","auth":")" + Alnum(6) + R"(","rrn":")" +
                Digits(static_cast<int>(now_s / 86400 % 1000), 3) +
                Digits(static_cast<int>(now_s / 3600 % 24), 2) +
                Digits(static_cast<int>(seq % 10'000'000), 7) + R"("}})";
    return e;
  }

 private:
  int Pick(int n) { return static_cast<int>(rng_() % static_cast<uint64_t>(n)); }
  static std::string Digits(int v, int width) {
    std::string s = std::to_string(v);
    return std::string(static_cast<size_t>(std::max(0, width - static_cast<int>(s.size()))), '0') + s;
  }
  std::string Hex(int bytes) {
    static const char* kHex = "0123456789abcdef";
    std::string s;
    for (int i = 0; i < 2 * bytes; ++i) s.push_back(kHex[Pick(16)]);
    return s;
  }
  std::string Alnum(int n) {
    static const char* kChars = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789";
    std::string s;
    for (int i = 0; i < n; ++i) s.push_back(kChars[Pick(34)]);
    return s;
  }

  static constexpr int kTerminals = 48;
  std::mt19937_64 rng_;
  int64_t now_us_;
  uint64_t seq_[kTerminals] = {};
};

}  // namespace edgesync::bench

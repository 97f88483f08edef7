// The agent's logging: spdlog to stderr. On a terminal each line has a
// timestamp and a level name; under systemd's journal it has neither
// (journald adds the time) but a "<N>" syslog priority journald reads. Either
// way a message repeated within a minute is written once, then counted: an
// error that comes with every event (a broker that refuses us, a full disk)
// must not write the flash once per event.
#pragma once

#include <spdlog/sinks/base_sink.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace edgesync {

enum class LogTarget { kTerminal, kJournal };

// Installs the default logger for `target`.
void SetUpLogging(LogTarget target);
// Writes the counts of repeats whose minute is over. Called now and then
// (every second by the agent) so a count is not held until the next message.
void FlushLog();

// Passes a message on to `inner` once per `window`; repeats of it (same level
// and text) within the window are counted, and at its end one line tells how
// many there were and starts the next window. Trace and debug messages pass
// unfolded: whoever turns them on wants them all. At most kMaxHeld distinct
// messages are held; a new one beyond that ends the oldest one's window.
class RepeatFoldingSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  static constexpr size_t kMaxHeld = 64;
  RepeatFoldingSink(std::shared_ptr<spdlog::sinks::sink> inner, std::chrono::microseconds window)
      : inner_(std::move(inner)), window_(window) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override;

 private:
  struct Held {
    spdlog::level::level_enum level;
    std::string text;
    spdlog::log_clock::time_point window_start;
    uint64_t repeats = 0;
  };
  // Ends the windows that are over at `now` (all of them with `all`).
  void EndWindows(spdlog::log_clock::time_point now, bool all);
  void Report(Held& h, spdlog::log_clock::time_point now);

  std::shared_ptr<spdlog::sinks::sink> inner_;
  const std::chrono::microseconds window_;
  std::map<std::string, Held> held_;  // by level and text
};

// Writes "<N>message\n" to `out`, N the syslog priority of the level
// (journald's SyslogLevelPrefix), with no timestamp.
class JournalSink : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit JournalSink(FILE* out) : out_(out) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override;
  void flush_() override { std::fflush(out_); }

 private:
  FILE* out_;
};

}  // namespace edgesync

#include "agent/logging.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>

#include "base/printable.h"

namespace edgesync {

namespace {

constexpr std::chrono::seconds kRepeatWindow{60};

int SyslogPriority(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::critical: return 2;
    case spdlog::level::err: return 3;
    case spdlog::level::warn: return 4;
    case spdlog::level::info: return 6;
    default: return 7;
  }
}

}  // namespace

void RepeatFoldingSink::sink_it_(const spdlog::details::log_msg& raw) {
  // Messages carry what devices and the network sent (topics, file names,
  // errors): one message is one line, whatever it holds (base/printable.h).
  std::string escaped;
  spdlog::details::log_msg msg = raw;
  if (NeedsEscaping(std::string_view(raw.payload.data(), raw.payload.size()))) {
    AppendPrintable(std::string_view(raw.payload.data(), raw.payload.size()), &escaped);
    msg.payload = escaped;
  }
  EndWindows(msg.time, false);
  if (msg.level < spdlog::level::info) {
    inner_->log(msg);
    return;
  }
  std::string key(1, static_cast<char>('0' + msg.level));
  key.append(msg.payload.data(), msg.payload.size());
  auto it = held_.find(key);
  if (it != held_.end()) {
    ++it->second.repeats;
    return;
  }
  if (held_.size() >= kMaxHeld) {
    auto oldest = held_.begin();
    for (auto h = held_.begin(); h != held_.end(); ++h) {
      if (h->second.window_start < oldest->second.window_start) oldest = h;
    }
    if (oldest->second.repeats > 0) Report(oldest->second, msg.time);
    held_.erase(oldest);
  }
  held_.emplace(std::move(key), Held{msg.level, std::string(msg.payload.data(), msg.payload.size()), msg.time, 0});
  inner_->log(msg);
}

void RepeatFoldingSink::flush_() {
  EndWindows(spdlog::log_clock::now(), false);
  inner_->flush();
}

void RepeatFoldingSink::EndWindows(spdlog::log_clock::time_point now, bool all) {
  for (auto it = held_.begin(); it != held_.end();) {
    Held& h = it->second;
    if (!all && now - h.window_start < window_) {
      ++it;
      continue;
    }
    if (h.repeats == 0) {
      it = held_.erase(it);
      continue;
    }
    // Still repeating: one line for this window, and a new window, so a
    // message that never stops costs one line per window.
    Report(h, now);
    h.window_start = now;
    h.repeats = 0;
    ++it;
  }
}

void RepeatFoldingSink::Report(Held& h, spdlog::log_clock::time_point now) {
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(now - h.window_start).count();
  const std::string text = h.text + " (repeated " + std::to_string(h.repeats) + " times in " +
                           std::to_string(seconds) + " s)";
  spdlog::details::log_msg report(now, spdlog::source_loc{}, "", h.level, text);
  inner_->log(report);
}

void JournalSink::sink_it_(const spdlog::details::log_msg& msg) {
  spdlog::memory_buf_t line;
  const char prefix[3] = {'<', static_cast<char>('0' + SyslogPriority(msg.level)), '>'};
  line.append(prefix, prefix + 3);
  formatter_->format(msg, line);  // "%v" and a newline: see SetUpLogging
  std::fwrite(line.data(), 1, line.size(), out_);  // one write: lines of threads never mix
}

void SetUpLogging(LogTarget target) {
  std::shared_ptr<spdlog::sinks::sink> out;
  if (target == LogTarget::kJournal) {
    out = std::make_shared<JournalSink>(stderr);
    out->set_pattern("%v");
  } else {
    out = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
    out->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  auto folding = std::make_shared<RepeatFoldingSink>(out, kRepeatWindow);
  auto logger = std::make_shared<spdlog::logger>("edgesync", folding);
  logger->flush_on(spdlog::level::warn);
  spdlog::set_default_logger(std::move(logger));
}

void FlushLog() { spdlog::default_logger_raw()->flush(); }

}  // namespace edgesync

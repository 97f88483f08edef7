// Monitor: the agent's monitor thread. Every second it samples the event
// rates, pings the systemd watchdog unless a stage is wedged and flushes the
// log; it answers the status socket, and sends health records and writes
// the metrics file when they are due. What it reports it asks the agent for
// through MonitorHooks, called on this thread.
#pragma once

#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/status_socket.h"
#include "base/env.h"
#include "base/status.h"

namespace spdlog {
class logger;
}

namespace edgesync {

// Rates (events/s in and out) are measured over this window.
constexpr int64_t kRateWindowUs = 10'000'000;

struct MonitorOptions {
  Env* env = Env::Default();
  std::shared_ptr<spdlog::logger> logger;  // null: spdlog's default logger
  int64_t heartbeat_us = 0;                // health records; 0: none
  std::string metrics_textfile;            // empty: none
  int64_t metrics_us = 15'000'000;
  StatusSocket* status_socket = nullptr;   // answered on the monitor thread; may be null
};

struct MonitorHooks {
  // Events accepted and uploaded so far, per stream (always the same length).
  std::function<void(std::vector<uint64_t>* in, std::vector<uint64_t>* out)> counts;
  // "" while every stage makes progress, else which one is wedged and how long.
  std::function<std::string()> wedged;
  // The text systemd shows (STATUS=...), given whether a stage is wedged.
  std::function<std::string(const std::string& wedged)> systemd_status;
  // Sends a health record (when heartbeat_us is set and it is due).
  std::function<void()> emit_health;
  // The status socket's answer.
  std::function<std::string()> health_record;
  // The metrics file's text.
  std::function<std::string()> metrics_text;
};

class Monitor {
 public:
  Monitor(MonitorOptions options, MonitorHooks hooks);
  ~Monitor();
  Status Start();
  // Stops the thread and waits for it. The watchdog is pinged until then.
  void Stop();
  // Events/s in and out per stream over the last kRateWindowUs (zeros until
  // two samples are there).
  void Rates(std::vector<double>* in, std::vector<double>* out) const;

 private:
  struct RateSample {
    int64_t at_us;
    std::vector<uint64_t> in, out;
  };
  void Loop();
  void SampleRates();
  void NotifySystemd();
  void WriteMetrics();

  const MonitorOptions options_;
  const MonitorHooks hooks_;
  const std::shared_ptr<spdlog::logger> log_;
  std::thread thread_;
  int stop_fd_ = -1;  // an eventfd: written to stop the thread
  // The last STATUS= sent. The monitor thread is the only one to send
  // STATUS=, so that what systemd shows is always its latest text.
  std::string systemd_status_;
  bool wedged_logged_ = false;  // the wedge is in the log; monitor thread only
  mutable std::mutex rates_mu_;
  std::deque<RateSample> rates_;  // the last kRateWindowUs of samples, oldest first; guarded by rates_mu_
};

}  // namespace edgesync

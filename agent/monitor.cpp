#include "agent/monitor.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/systemd.h"

namespace edgesync {

Monitor::Monitor(MonitorOptions options, MonitorHooks hooks)
    : options_(std::move(options)),
      hooks_(std::move(hooks)),
      log_(options_.logger != nullptr ? options_.logger : spdlog::default_logger()) {}

Monitor::~Monitor() { Stop(); }

Status Monitor::Start() {
  stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (stop_fd_ < 0) return Status::FromErrno("eventfd", errno);
  thread_ = std::thread([this] { Loop(); });
  return Status::OK();
}

void Monitor::Stop() {
  if (!thread_.joinable()) return;
  const uint64_t one = 1;
  if (::write(stop_fd_, &one, sizeof(one)) < 0) log_->error("eventfd: {}", std::strerror(errno));
  thread_.join();
  ::close(stop_fd_);
  stop_fd_ = -1;
}

void Monitor::Loop() {
  Env* env = options_.env;
  int64_t now = env->MonotonicMicros();
  int64_t next_tick = now, next_health = now + options_.heartbeat_us, next_metrics = now;
  for (;;) {
    now = env->MonotonicMicros();
    if (now >= next_tick) {
      SampleRates();
      NotifySystemd();
      log_->flush();
      next_tick = now + 1'000'000;
    }
    if (options_.heartbeat_us > 0 && now >= next_health) {
      hooks_.emit_health();
      next_health = now + options_.heartbeat_us;
    }
    if (!options_.metrics_textfile.empty() && now >= next_metrics) {
      WriteMetrics();
      next_metrics = now + options_.metrics_us;
    }
    const int socket_fd = options_.status_socket != nullptr ? options_.status_socket->fd() : -1;
    pollfd fds[2] = {{.fd = stop_fd_, .events = POLLIN, .revents = 0},
                     {.fd = socket_fd, .events = POLLIN, .revents = 0}};
    const int64_t wait_ms = std::max<int64_t>(0, (next_tick - env->MonotonicMicros() + 999) / 1000);
    if (::poll(fds, 2, static_cast<int>(wait_ms)) < 0 && errno != EINTR) {
      log_->error("status: poll: {}", std::strerror(errno));
      env->SleepForMicros(1'000'000);
    }
    if (fds[0].revents != 0) return;
    if (fds[1].revents != 0) options_.status_socket->Serve(hooks_.health_record);
  }
}

void Monitor::SampleRates() {
  RateSample sample{options_.env->MonotonicMicros(), {}, {}};
  hooks_.counts(&sample.in, &sample.out);
  std::lock_guard<std::mutex> lock(rates_mu_);
  rates_.push_back(std::move(sample));
  while (rates_.size() > 2 && rates_.back().at_us - rates_[1].at_us >= kRateWindowUs) rates_.pop_front();
}

void Monitor::Rates(std::vector<double>* in, std::vector<double>* out) const {
  std::lock_guard<std::mutex> lock(rates_mu_);
  in->clear();
  out->clear();
  if (rates_.size() < 2) return;
  const RateSample& a = rates_.front();
  const RateSample& b = rates_.back();
  const double secs = static_cast<double>(b.at_us - a.at_us) / 1e6;
  for (size_t i = 0; i < b.in.size() && i < a.in.size() && secs > 0; ++i) {
    in->push_back(static_cast<double>(b.in[i] - a.in[i]) / secs);
    out->push_back(static_cast<double>(b.out[i] - a.out[i]) / secs);
  }
}

void Monitor::NotifySystemd() {
  const std::string wedged = hooks_.wedged();
  // Logged when it starts and when it ends, not every second in between.
  if (wedged.empty()) {
    systemd::Notify("WATCHDOG=1");
    if (wedged_logged_) log_->warn("watchdog: every stage makes progress again");
    wedged_logged_ = false;
  } else if (!wedged_logged_) {
    log_->error("watchdog: {}; no longer telling systemd all is well, so that it restarts the agent", wedged);
    wedged_logged_ = true;
  }
  const std::string status = "STATUS=" + hooks_.systemd_status(wedged);
  if (status != systemd_status_) {
    systemd::Notify(status);
    systemd_status_ = status;
  }
}

void Monitor::WriteMetrics() {
  const std::string& path = options_.metrics_textfile;
  // node_exporter reads only *.prom files: the temporary one is skipped.
  // No fsync: losing the file to a power cut costs one interval; syncing
  // it every interval would cost flash.
  // Readable by node_exporter's user, as a plain open(2) would make it.
  Status st = options_.env->WriteFileAtomically(path, hooks_.metrics_text(),
                                                AtomicWriteOptions{.sync = false, .mode = 0666});
  if (!st.ok()) log_->warn("metrics.textfile: cannot write {}: {}", path, st.ToString());
}

}  // namespace edgesync

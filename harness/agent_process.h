// The agent (`edgesync run`) as a child process, for the integration tests,
// the demo and the benchmarks: start it on a config, wait until it is
// subscribed (before that the broker keeps nothing for it), stop or kill it.
#pragma once

#include <chrono>
#include <string>
#include <thread>

#include "base/status.h"
#include "harness/process.h"

namespace edgesync::harness {

// Returns `toml` with the value lines `port = …` (in [mqtt]), `brokers = …`
// (in [kafka]) and `state_dir = …` (in [agent]) replaced, keeping everything
// else as written. A line missing from its section is added to it.
std::string PointConfigAt(const std::string& toml, int mqtt_port, const std::string& brokers,
                          const std::string& state_dir);

// Starts ProgramPath("edgesync") run --config `config_path`, stderr to
// `log_path`, and waits until its log says it is subscribed (Unavailable
// with the log's tail when it is not within `timeout`, or when it exited).
Result<Process> StartAgent(const std::string& config_path, const std::string& log_path,
                           std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Polls `pred` every `step` until it holds (true) or `timeout` passes
// (false, after one last try). For state in another process that offers
// nothing to block on: a file growing, a log line appearing.
template <typename Pred>
bool PollUntil(Pred pred, std::chrono::milliseconds timeout,
               std::chrono::milliseconds step = std::chrono::milliseconds(20)) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(step);
  }
  return pred();
}


}  // namespace edgesync::harness

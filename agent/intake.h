// Intake: what the agent does with one MQTT message, on the MQTT loop thread
// (Ingest's), between the broker and the journal: triage, the stream's chain
// of plugins, the dead-letter stream, and the journal append that must
// succeed before the broker's acknowledgement goes out (backpressure).
//
// It owns no thread. OnMessage runs on the MQTT loop thread only; Reload,
// stats() and progress() may be called from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "agent/ingest.h"
#include "agent/pipeline.h"
#include "agent/triage.h"
#include "base/env.h"
#include "base/progress.h"
#include "buffer/sealer.h"
#include "format/record.h"
#include "plugins/json.h"

namespace spdlog {
class logger;
}

namespace edgesync {

struct IntakeOptions {
  Env* env = Env::Default();
  Sealer* sealer = nullptr;                // the journal appends go here; outlives the Intake
  std::shared_ptr<spdlog::logger> logger;  // null: spdlog's default logger
  std::string status_topic;  // the agent's own retained status: ignored when it comes back
  std::string fleet_topic;   // fleet.mqtt_topic: payloads go to the bundle sink instead
};

struct IntakeStats {
  uint64_t dead_letters[static_cast<int>(DeadLetterReason::kCount)] = {};
  uint64_t unmatched_dropped = 0;
  uint64_t filtered = 0;             // dropped by a plugin
  uint64_t reloads = 0;              // pipelines taken over by live reload
  uint64_t backpressure_events = 0;  // events that had to wait for the journal
  bool backpressure = false;         // waiting for the journal right now
  std::vector<uint64_t> accepted;    // events journaled per lane (sealer order)
};

class Intake {
 public:
  Intake(IntakeOptions options, std::shared_ptr<const Pipeline> pipeline);

  // Returning acknowledges the message to the broker, so it returns only
  // once the event is in a journal (its lane's, or the dead-letter stream's
  // with the reason), or a plugin dropped it. While the journal refuses,
  // it waits and retries; after StopWaiting it exits the process instead
  // (the broker delivers the event again to the next run).
  void OnMessage(const IngestMessage& m);
  // Where a payload published to the fleet topic goes (set before the MQTT
  // loop starts).
  void OnBundle(std::function<void(std::string_view)> sink) { bundle_sink_ = std::move(sink); }
  // `next` replaces the pipeline between two events: OnMessage takes it at
  // the next message. Its lanes must be the running pipeline's.
  void Reload(std::shared_ptr<const Pipeline> next);
  // The agent is stopping: a journal that still refuses ends the process.
  void StopWaiting() { stopping_.store(true); }
  IntakeStats stats() const;
  // The MQTT loop thread's progress through a message, for the watchdog.
  const Progress& progress() const { return progress_; }

 private:
  void RunChain(const Pipeline& pl, size_t stream, Record& r, std::string_view payload);
  void DeadLetter(const Pipeline& pl, Record& r, DeadLetterReason reason, const std::string& stream,
                  const std::string& error);
  void AcceptDurably(size_t lane, const Record& r);

  const IntakeOptions options_;
  const std::shared_ptr<spdlog::logger> log_;
  std::shared_ptr<const Pipeline> pipeline_;  // MQTT loop thread only
  std::mutex reload_mu_;
  std::shared_ptr<const Pipeline> pending_;  // guarded by reload_mu_
  std::atomic<bool> reload_pending_{false};
  const size_t dead_letter_lane_;
  Json json_;       // the payload the chain edits; MQTT loop thread only
  Record scratch_;  // OnMessage's record, reused; MQTT loop thread only
  std::function<void(std::string_view)> bundle_sink_;
  Progress progress_;
  std::unique_ptr<std::atomic<uint64_t>[]> accepted_;  // per lane
  const size_t lanes_;
  std::atomic<uint64_t> dead_letters_[static_cast<int>(DeadLetterReason::kCount)] = {};
  std::atomic<uint64_t> unmatched_dropped_{0}, filtered_{0}, reloads_{0}, backpressure_events_{0};
  std::atomic<bool> backpressure_{false};
  std::atomic<bool> stopping_{false};
};

}  // namespace edgesync

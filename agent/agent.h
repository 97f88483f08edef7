// Agent: the running product. Wires ingest -> router -> sealer (journal,
// store) -> uploader, owns their lifetimes and the state directory.
//
// Lifecycle: Open (takes the state_dir lock, opens the store, recovers the
// journal) -> Start (threads) -> Shutdown (stop intake, seal what is open,
// upload within agent.shutdown_timeout). Open/Start/Shutdown from one thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/config.h"
#include "agent/ingest.h"
#include "agent/pipeline.h"
#include "agent/status_socket.h"
#include "agent/triage.h"
#include "base/env.h"
#include "base/progress.h"
#include "base/status.h"
#include "buffer/sealer.h"
#include "buffer/store.h"
#include "plugins/route.h"
#include "sync/uploader.h"

namespace edgesync {

// Rates (events/s in and out) are measured over this window.
constexpr int64_t kRateWindowUs = 10'000'000;

// One stream's figures (its derived lanes folded in), for the health
// records, `edgesync status` and the metrics file.
struct StreamStats {
  std::string name;
  StoreCounts buffered;
  uint64_t accepted = 0;         // events journaled since start
  uint64_t uploaded_events = 0;  // events Kafka acknowledged since start
  int64_t last_upload_us = 0;    // wall clock; 0: none since start
  double in_per_s = 0;           // accepted, over the last seconds (kRateWindowUs)
  double out_per_s = 0;          // uploaded, over the same window
  uint64_t gaps = 0;             // gaps recorded, younger than buffer.max_age
  uint64_t gap_events = 0;
};

// Fleet rollout (agent/fleet.h): the bundle running and the state of the
// newest bundle the agent was given.
struct FleetStatus {
  bool enabled = false;   // fleet.public_keys set
  uint64_t version = 0;   // the bundle running; 0: the device file alone
  uint64_t bundle = 0;    // the bundle `state` is about
  std::string state;      // "", "probation", "applied", "rolled-back" or "refused"
  std::string reason;     // why it was refused or rolled back
  int64_t at_us = 0;      // wall clock of the state change
  bool operator==(const FleetStatus&) const = default;
};

struct AgentStats {
  IngestStats ingest;
  SealerStats sealer;
  UploaderStats uploader;
  uint64_t dead_letters[static_cast<int>(DeadLetterReason::kCount)] = {};
  uint64_t unmatched_dropped = 0;
  uint64_t filtered = 0;             // dropped by a plugin
  uint64_t reloads = 0;              // configurations taken over by live reload
  uint64_t backpressure_events = 0;  // events that had to wait for the journal
  bool backpressure = false;         // waiting for the journal right now
  StoreCounts buffered;
  uint64_t gaps = 0;        // gaps recorded (younger than buffer.max_age)
  uint64_t gap_events = 0;  // events they gave up
  std::vector<StreamStats> streams;  // the configured ones, then dead-letter and _agent
  std::string wedged;       // "" or the stage with no progress for too long, and for how long
  FleetStatus fleet;
};

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> Open(const Config& config, Env* env);
  ~Agent();
  Status Start();
  // Stops intake, seals every open batch, uploads until the store is empty
  // or agent.shutdown_timeout passes. Unavailable: batches were left in the
  // store (they go out on the next start); not an error for the exit code.
  // `restarting`: the process goes on with another configuration, so
  // nothing waits for uploads (the store keeps what is left).
  Status Shutdown(bool restarting = false);
  AgentStats stats() const;
  // The stage (ingest, buffer, upload) that has been on one piece of work
  // without progress for longer than `limit_us`, and for how long; "" when
  // none. The systemd watchdog is pinged only while this is empty.
  std::string Wedged(int64_t limit_us) const;
  // One line of counters for the log.
  std::string StatsLine() const;
  // The health record now (agent/health.h), as sent on the _agent stream.
  std::string HealthRecord(const char* state) const;
  Uploader* uploader() { return uploader_.get(); }  // for tests
  // Where a payload published to fleet.mqtt_topic goes instead of a stream
  // (called on the MQTT thread; set before Start).
  void OnBundle(std::function<void(std::string_view)> sink) { bundle_sink_ = std::move(sink); }
  // The fleet rollout's state, for health records, status and metrics.
  void SetFleetStatus(const FleetStatus& f);
  // The thread that owns the agent (main: signals, reloads, fleet bundles)
  // as a fourth stage the watchdog watches ("control"); it outlives this
  // Agent. Set before Start; null: not watched.
  void WatchControl(const Progress* control) { control_progress_ = control; }

  // Live reload of the chains: `config` (already parsed and checked)
  // replaces the running chains between two events, with the buffer, MQTT
  // session and sequence numbers untouched. InvalidArgument, and nothing
  // changes, when it differs in more than plugins and chains or would
  // change the lanes: main then restarts the pipeline (Shutdown(true), and
  // a new Agent on the same store).
  Status Reload(const Config& config);

 private:
  Agent(const Config& config, Env* env);
  void OnMessage(const IngestMessage& m);
  // Runs stream `stream`'s chain over `r` (its payload parsed in json_ for
  // a JSON stream) and journals it where the chain routes it.
  void RunChain(const Pipeline& pl, size_t stream, Record& r, std::string_view payload);
  // Sends `r` (payload set) to the dead-letter stream with `reason`, after
  // the dead-letter chain (the every_stream plugins, e.g. pci).
  void DeadLetter(const Pipeline& pl, Record& r, DeadLetterReason reason, const std::string& stream,
                  const std::string& error);
  // Makes `r` durable in `stream`, waiting (and so holding the broker's
  // acknowledgement) while the journal cannot take it.
  void AcceptDurably(size_t stream, const Record& r);
  // Appends a health record to the _agent stream. A journal that cannot
  // take it is logged, not retried: the next record tells the same and more.
  void EmitHealth(const char* state);
  // The monitor thread: every second it samples the rates, pings the
  // systemd watchdog unless a stage is wedged and folds log repeats; it
  // answers the status socket, and sends health records and writes the
  // metrics file when they are due.
  void MonitorLoop();
  void SampleRates();
  void NotifySystemd();
  void WriteMetrics();

  Config config_;
  Env* env_;
  std::unique_ptr<FileLock> lock_;  // one agent per state_dir
  // What the sealer seals with (declared before it: it holds pointers to them).
  std::optional<Recipient> recipient_;
  std::optional<DeviceSigner> device_key_;
  std::shared_ptr<const Dictionary> dictionary_;
  std::unique_ptr<Store> store_;
  // The pipeline the MQTT loop thread runs (its own copy of the pointer),
  // and the one a reload left for it to take at the next event.
  std::shared_ptr<const Pipeline> pipeline_;
  std::mutex reload_mu_;
  std::shared_ptr<const Pipeline> pending_;  // guarded by reload_mu_
  std::atomic<bool> reload_pending_{false};
  std::vector<StreamSpec> pipeline_lanes_;  // the lanes the sealer was opened with
  Json json_;  // the payload the chain edits; MQTT loop thread only
  std::unique_ptr<Sealer> sealer_;
  std::unique_ptr<Uploader> uploader_;
  std::unique_ptr<Ingest> ingest_;
  Record scratch_;  // OnMessage's record, reused; MQTT loop thread only
  size_t dead_letter_stream_ = 0;  // index of the built-in streams in the sealer
  size_t agent_stream_ = 0;
  int64_t started_us_ = 0;         // monotonic
  std::thread monitor_thread_;
  int monitor_stop_fd_ = -1;       // an eventfd: written to stop the monitor thread
  std::unique_ptr<StatusSocket> status_socket_;
  int64_t wedged_after_us_ = 0;    // a stage stuck this long is wedged
  // The last STATUS= sent. The monitor thread is the only one to send
  // STATUS=, so that what systemd shows is always its latest text.
  std::string systemd_status_;
  bool wedged_logged_ = false;     // the wedge is in the log; monitor thread only
  // Per lane (sealer order): its stream's index in stream_names_, and events journaled.
  std::vector<std::string> stream_names_;
  std::vector<size_t> lane_stream_;
  std::unique_ptr<std::atomic<uint64_t>[]> lane_accepted_;
  Progress ingest_progress_;       // the MQTT loop thread's, inside OnMessage
  const Progress* control_progress_ = nullptr;  // main's (WatchControl)
  // Rate samples: (monotonic time, accepted and uploaded per stream), the
  // last kRateWindowUs of them, oldest first.
  struct RateSample {
    int64_t at_us;
    std::vector<uint64_t> in, out;
  };
  mutable std::mutex rates_mu_;
  std::deque<RateSample> rates_;   // guarded by rates_mu_
  std::atomic<uint64_t> dead_letters_[static_cast<int>(DeadLetterReason::kCount)] = {};
  std::atomic<uint64_t> unmatched_dropped_{0}, backpressure_events_{0}, filtered_{0}, reloads_{0};
  std::atomic<bool> backpressure_{false};
  std::atomic<bool> shutting_down_{false}, restarting_{false};
  bool started_ = false;
  std::function<void(std::string_view)> bundle_sink_;
  mutable std::mutex fleet_mu_;
  FleetStatus fleet_;  // guarded by fleet_mu_
};

}  // namespace edgesync

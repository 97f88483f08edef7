// Agent: the running product, composed of narrow modules, each behind one
// header and each handed the Env and the logger:
//
//   Ingest (agent/ingest.h)   the MQTT client; runs the MQTT loop thread
//   Intake (agent/intake.h)   triage, chains, dead letters, the journal append
//                             and backpressure, on that thread
//   Sealer (buffer/sealer.h)  journals, batches, sealing; the sealer thread
//   Store  (buffer/store.h)   sealed batches and gaps in SQLite
//   Uploader (sync/uploader.h) to Kafka; the uploader thread (and librdkafka's)
//   Monitor (agent/monitor.h) rates, watchdog, health records, metrics file,
//                             status socket; the monitor thread
//
// The Agent owns their lifetimes and the state directory, wires them, and
// adds up their figures; the fleet rollout (agent/fleet.h) and signals run
// on main's thread, which owns the Agent.
//
// Lifecycle: Open (takes the state_dir lock, opens the store, recovers the
// journal) -> Start (threads) -> Shutdown (stop intake, seal what is open,
// upload within agent.shutdown_timeout). Open/Start/Shutdown from one thread.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/ingest.h"
#include "agent/spool.h"
#include "agent/intake.h"
#include "agent/monitor.h"
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

namespace spdlog {
class logger;
}

namespace edgesync {

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
  IntakeStats intake;  // dead letters, drops, reloads, backpressure
  StoreCounts buffered;
  uint64_t gaps = 0;        // gaps recorded (younger than buffer.max_age)
  uint64_t gap_events = 0;  // events they gave up
  std::vector<StreamStats> streams;  // the configured ones, then dead-letter and _agent
  std::string wedged;       // "" or the stage with no progress for too long, and for how long
  FleetStatus fleet;
};

class Agent {
 public:
  // `logger`: where the agent and its modules log; null: spdlog's default.
  static Result<std::unique_ptr<Agent>> Open(const Config& config, Env* env,
                                             std::shared_ptr<spdlog::logger> logger = nullptr);
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
  void OnBundle(std::function<void(std::string_view)> sink) { intake_->OnBundle(std::move(sink)); }
  // The fleet rollout's state, for health records, status and metrics.
  void SetFleetStatus(const FleetStatus& f);
  // The thread that owns the agent (main: signals, reloads, fleet bundles)
  // as a fourth stage the watchdog watches ("control"); it outlives this
  // Agent. Set before Start; null: not watched.
  void WatchControl(const Progress* control) { control_progress_ = control; }

  // Once nothing has moved (accepted, sealed, uploaded) for 2 s after it
  // last did, gives back what the burst left behind: SQLite's page cache
  // and malloc's free memory in every arena (malloc_trim); after 5 s, the
  // pages of code and constants the burst mapped (base/resident.h). Once
  // per quiet spell, and the code pages also at the first call whatever
  // flows; the thread that owns the agent (main) calls it about every
  // second from its start.
  void ReleaseMemoryWhenQuiet();

  // Live reload of the chains: `config` (already parsed and checked)
  // replaces the running chains between two events, with the buffer, MQTT
  // session and sequence numbers untouched. InvalidArgument, and nothing
  // changes, when it differs in more than plugins and chains or would
  // change the lanes: main then restarts the pipeline (Shutdown(true), and
  // a new Agent on the same store).
  Status Reload(const Config& config);

 private:
  Agent(const Config& config, Env* env, std::shared_ptr<spdlog::logger> logger);
  // Appends a health record to the _agent stream. A journal that cannot
  // take it is logged, not retried: the next record tells the same and more.
  void EmitHealth(const char* state);
  // What systemd's STATUS= says now.
  std::string SystemdStatus(const std::string& wedged) const;
  std::string MetricsText() const;
  // Events accepted and uploaded per stream (lanes folded in).
  void StreamCounts(std::vector<uint64_t>* in, std::vector<uint64_t>* out) const;
  IngestStats IngestNow() const;  // the MQTT client's, or the spool reader's

  Config config_;
  Env* env_;
  std::shared_ptr<spdlog::logger> log_;
  std::unique_ptr<FileLock> lock_;  // one agent per state_dir
  // What the sealer seals with (declared before it: it holds pointers to them).
  std::optional<Recipient> recipient_;
  std::optional<DeviceSigner> device_key_;
  std::shared_ptr<const Dictionary> dictionary_;
  std::unique_ptr<Store> store_;
  std::vector<StreamSpec> pipeline_lanes_;  // the lanes the sealer was opened with
  std::unique_ptr<Sealer> sealer_;
  std::unique_ptr<Uploader> uploader_;
  std::unique_ptr<Intake> intake_;  // before ingest_, which calls it
  std::unique_ptr<Ingest> ingest_;       // mqtt.mode = "client"
  std::unique_ptr<SpoolReader> spool_;   // mqtt.mode = "broker-plugin" (calls intake_ too)
  std::unique_ptr<StatusSocket> status_socket_;
  std::unique_ptr<Monitor> monitor_;
  size_t agent_stream_ = 0;        // index of the _agent lane in the sealer
  int64_t started_us_ = 0;         // monotonic
  int64_t wedged_after_us_ = 0;    // a stage stuck this long is wedged
  // Per lane (sealer order): its stream's index in stream_names_.
  std::vector<std::string> stream_names_;
  std::vector<size_t> lane_stream_;
  const Progress* control_progress_ = nullptr;  // main's (WatchControl)
  std::mutex health_mu_;  // the monitor's health records against Shutdown
  std::atomic<bool> shutting_down_{false}, restarting_{false};
  bool started_ = false;
  // ReleaseMemoryWhenQuiet's view of the counters (its caller's thread only).
  uint64_t last_moved_ = 0;
  int64_t last_move_us_ = 0;
  bool released_ = false;
  bool pages_released_ = false;  // the code pages, this quiet spell
  bool released_start_pages_ = false;
  mutable std::mutex fleet_mu_;
  FleetStatus fleet_;  // guarded by fleet_mu_
  // The store's figures stats() read last: what it reports while the
  // store's deferred check runs (it holds the store; stats never wait).
  struct StoreFigures {
    std::optional<StoreCounts> counts;
    std::optional<std::vector<Gap>> gaps;
    std::optional<std::map<std::string, StoreCounts>> by_stream;
  };
  mutable std::mutex store_figures_mu_;
  mutable StoreFigures store_figures_;  // guarded by store_figures_mu_
};

}  // namespace edgesync

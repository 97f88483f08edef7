// Agent: the running product. Wires ingest -> router -> sealer (journal,
// store) -> uploader, owns their lifetimes and the state directory.
//
// Lifecycle: Open (takes the state_dir lock, opens the store, recovers the
// journal) -> Start (threads) -> Shutdown (stop intake, seal what is open,
// upload within agent.shutdown_timeout). Open/Start/Shutdown from one thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include "agent/config.h"
#include "agent/ingest.h"
#include "agent/pipeline.h"
#include "agent/triage.h"
#include "base/env.h"
#include "base/status.h"
#include "buffer/sealer.h"
#include "buffer/store.h"
#include "plugins/route.h"
#include "sync/uploader.h"

namespace edgesync {

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
};

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> Open(const Config& config, Env* env);
  ~Agent();
  Status Start();
  // Stops intake, seals every open batch, uploads until the store is empty
  // or agent.shutdown_timeout passes. Unavailable: batches were left in the
  // store (they go out on the next start); not an error for the exit code.
  Status Shutdown();
  AgentStats stats() const;
  // One line of counters for the log.
  std::string StatsLine() const;
  // The health record now (agent/health.h), as sent on the _agent stream.
  std::string HealthRecord(const char* state) const;
  Uploader* uploader() { return uploader_.get(); }  // for tests

  // Live reload: `config` (already parsed and checked) replaces the running
  // chains between two events, with the buffer, MQTT session and sequence
  // numbers untouched. InvalidArgument, and nothing changes, when it
  // differs in more than plugins and chains (those settings need a restart),
  // or when it would change the lanes.
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
  void HealthLoop();

  Config config_;
  Env* env_;
  std::unique_ptr<FileLock> lock_;  // one agent per state_dir
  // What the sealer seals with (declared before it: it holds pointers to them).
  std::optional<Recipient> recipient_;
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
  std::thread health_thread_;
  std::mutex health_mu_;
  std::condition_variable health_cv_;
  bool health_stop_ = false;       // guarded by health_mu_
  std::atomic<uint64_t> dead_letters_[static_cast<int>(DeadLetterReason::kCount)] = {};
  std::atomic<uint64_t> unmatched_dropped_{0}, backpressure_events_{0}, filtered_{0}, reloads_{0};
  std::atomic<bool> backpressure_{false};
  std::atomic<bool> shutting_down_{false};
  bool started_ = false;
};

}  // namespace edgesync

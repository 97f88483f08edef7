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

 private:
  Agent(const Config& config, Env* env);
  void OnMessage(const IngestMessage& m);
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
  std::unique_ptr<Router> router_;
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
  std::atomic<uint64_t> unmatched_dropped_{0}, backpressure_events_{0};
  std::atomic<bool> backpressure_{false};
  std::atomic<bool> shutting_down_{false};
  bool started_ = false;
};

}  // namespace edgesync

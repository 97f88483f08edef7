// Agent: the running product. Wires ingest -> router -> sealer (journal,
// store) -> uploader, owns their lifetimes and the state directory.
//
// Lifecycle: Open (takes the state_dir lock, opens the store, recovers the
// journal) -> Start (threads) -> Shutdown (stop intake, seal what is open,
// upload within agent.shutdown_timeout). Open/Start/Shutdown from one thread.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "agent/config.h"
#include "agent/ingest.h"
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
  uint64_t unmatched = 0;
  StoreCounts buffered;
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

 private:
  Agent(const Config& config, Env* env);
  void OnMessage(std::string_view topic, std::string_view payload, int qos);

  Config config_;
  Env* env_;
  std::unique_ptr<FileLock> lock_;  // one agent per state_dir
  std::unique_ptr<Store> store_;
  std::unique_ptr<Router> router_;
  std::unique_ptr<Sealer> sealer_;
  std::unique_ptr<Uploader> uploader_;
  std::unique_ptr<Ingest> ingest_;
  std::atomic<uint64_t> unmatched_{0};
  std::atomic<bool> shutting_down_{false};
  bool started_ = false;
};

}  // namespace edgesync

// Sealer: turns accepted events into sealed batches in the store.
//
// Each stream has a lane: its journal and its open batch. Accept (ingest
// thread) appends the event to the lane's journal with one write() and to the
// open batch in memory; a batch closes when it reaches max_events or
// max_bytes (in Accept) or max_age (sealer thread). Closing rotates the
// journal, so a closed batch is exactly the closed journal segments. The
// sealer thread compresses the batch into an envelope and commits it to the
// store in one transaction together with the journal position it covers,
// then deletes those journal segments, and lets the store enforce its
// limits (quota, free space, age: see Store::Enforce). On Open, whatever the journal holds
// past the store's position is recovered and sealed before anything else.
//
// Threads: Accept from one ingest thread (or several: lanes are locked);
// the sealer thread runs from Start to Stop; Open/Start/Stop from the owner.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "base/option_table.h"
#include "base/last_error.h"
#include "base/progress.h"
#include "base/status.h"
#include "format/envelope.h"
#include "buffer/journal.h"
#include "format/record.h"
#include "buffer/store.h"

namespace spdlog {
class logger;
}

namespace edgesync {

// When a batch closes, and how often the journal is synced: the options the
// sealer owns (declared in sealer.cpp).
struct BatchLimits {
  uint32_t max_events = 1000;         // a batch closes at this many events,
  size_t max_bytes = 512 * 1024;      // or this many body bytes before compression,
  int64_t max_age_us = 2'000'000;     // or this long after its first event
  int64_t sync_interval_us = 1'000'000;  // journal fdatasync interval (power-cut window)
  static const OptionTable<BatchLimits>& Options();
  bool operator==(const BatchLimits&) const = default;
};

struct SealerOptions : BatchLimits {
  std::shared_ptr<spdlog::logger> logger;  // null: spdlog's default logger
  std::string device_id;
  std::string journal_dir;            // one subdirectory per stream
  size_t max_closed = 64;             // closed batches awaiting the sealer before Accept waits
  SealOptions seal;                   // its pointers must outlive the sealer
  std::optional<crypto::Key> journal_key;  // reads encrypted journal segments,
  bool encrypt_journal = false;            // and with this, writes new ones encrypted
};

struct SealerStats {
  uint64_t accepted = 0;
  uint64_t sealed_batches = 0;
  uint64_t sealed_events = 0;
  uint64_t recovered_events = 0;
  uint64_t torn_bytes = 0;
  uint64_t unreadable_segments = 0;  // journal segments set aside at start (see the log)
  ErrorNote last_error;              // journal, sealing and store errors
};

class Sealer {
 public:
  // Opens every stream's journal, seals what recovery found, and returns a
  // sealer ready to Start. `env` and `store` must outlive it.
  static Result<std::unique_ptr<Sealer>> Open(Env* env, Store* store, SealerOptions options,
                                              std::vector<StreamSpec> streams);
  ~Sealer();

  // Called after every committed batch, on the sealer thread (e.g. to wake the uploader).
  void SetOnSealed(std::function<void()> cb) { on_sealed_ = std::move(cb); }
  void Start();
  // Makes `r` durable in stream `stream`'s journal and adds it to the open
  // batch. Returns only after the write; an error means the event was NOT
  // accepted (nothing of it will be sealed).
  Status Accept(size_t stream, const Record& r);
  // Closes every open batch and seals all closed ones, then stops the thread.
  // Returns the first error that kept a batch from being sealed (its events
  // stay in the journal for the next start).
  Status Stop();
  // From now on Accept no longer waits for the sealer to catch up (it still
  // journals). Call before stopping the ingest thread, so a sealer that
  // cannot commit cannot hold shutdown.
  void StopWaitingForSpace();

  // fdatasyncs every journal written since its last sync: once it returns
  // ok, every event accepted before the call survives a power cut. The
  // sealer thread does this every sync_interval by itself.
  Status SyncJournals();

  SealerStats stats() const;
  // How long the sealer thread has been on one piece of work (closing,
  // sealing, syncing) without finishing it; 0 while it waits (base/progress.h).
  int64_t StuckMicros() const { return progress_.StuckMicros(env_->MonotonicMicros()); }
  size_t stream_count() const { return lanes_.size(); }
  // Streams whose batch buffer or journal compression context is allocated
  // (for tests: a quiet stream gives them back).
  size_t streams_holding_memory() const;

 private:
  struct Lane;
  struct Closed {
    size_t lane;
    std::string body;
    uint32_t events;
    int64_t first_us, last_us;
    JournalPosition end;
  };

  Sealer(Env* env, Store* store, SealerOptions options);
  // While the store's check runs, how often the sealer thread looks whether
  // it is over (it syncs the journals meanwhile as at any time).
  static constexpr int64_t kCheckPollUs = 50'000;
  // A lane with no event this long after its last batch closed is quiet.
  static constexpr int64_t kQuietLaneUs = 1'000'000;

  // With kDontWait, Unavailable while the store's check runs (nothing
  // committed: `c` is sealed again later).
  Status SealAndCommit(Closed& c, CheckWait wait = CheckWait::kWait);
  // Requires lane.mu held. Moves the open batch to closed_ (rotating the
  // journal). If no event comes to the lane for kQuietLaneUs after, the
  // sealer thread frees its buffers.
  Status CloseLocked(size_t lane_index);
  void Run();
  // fdatasyncs every lane's journal if `*next_sync` has passed; sealer thread.
  void SyncDue(int64_t* next_sync, bool force);
  void WarnAboutUnconfiguredJournals();
  // Lets the store give up what its limits demand; logs each gap. Sealer
  // thread. False when it did not run: kDontWait and the store's check runs.
  bool EnforceLimits(CheckWait wait);

  Env* env_;
  Store* store_;
  SealerOptions options_;
  std::vector<std::unique_ptr<Lane>> lanes_;
  std::function<void()> on_sealed_;

  std::mutex mu_;  // guards closed_, stopping_
  std::unique_ptr<CondVar> cv_;       // sealer thread waits for work (on env_'s clock)
  std::condition_variable space_cv_;  // Accept waits for room in closed_
  std::deque<Closed> closed_;
  std::atomic<size_t> closed_count_{0};  // closed_.size(), readable without mu_
  bool stopping_ = false;
  bool no_wait_ = false;  // guarded by mu_: see StopWaitingForSpace
  Status sticky_;  // last error sealing a batch (reported by Stop)
  std::thread thread_;

  std::atomic<uint64_t> accepted_{0}, sealed_batches_{0}, sealed_events_{0};
  LastError last_error_{env_};
  Progress progress_;
  uint64_t recovered_events_ = 0, torn_bytes_ = 0, unreadable_segments_ = 0;
};

}  // namespace edgesync

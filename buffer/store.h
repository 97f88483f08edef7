// Store: the SQLite database (WAL mode) holding sealed batches until Kafka
// has them, and the per-stream state that makes batch sequences gapless and
// journal recovery exact.
//
// Durability: every commit is synchronous (synchronous=FULL): when Commit
// returns ok, the batch survives a power cut, so the journal part it came
// from may be deleted.
//
// Thread safety: all methods may be called from any thread; one internal
// mutex serialises them (the sealer commits, the uploader reads and deletes).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/status.h"
#include "buffer/journal.h"

struct sqlite3;

namespace edgesync {

enum class Priority : int { kLow = 0, kNormal = 1, kHigh = 2 };

struct SealedBatch {
  int64_t id = 0;              // row id, set by the store
  std::string stream;
  std::string kafka_topic;
  Priority priority = Priority::kNormal;
  uint64_t seq = 0;
  uint32_t events = 0;
  int64_t first_event_us = 0;
  int64_t last_event_us = 0;
  std::string envelope;
};

struct StreamState {
  uint64_t next_seq = 1;       // sequence the next sealed batch gets
  JournalPosition sealed;      // journal position up to which batches hold the events
};

struct StoreCounts {
  uint64_t batches = 0;
  uint64_t events = 0;
  uint64_t bytes = 0;
};

class Store {
 public:
  // Opens or creates the database at `path` and migrates its schema.
  static Result<std::unique_ptr<Store>> Open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // State of `stream` (defaults for a stream never seen).
  Result<StreamState> LoadStream(const std::string& stream);
  // In one transaction: inserts `batch` (its seq must be the stream's
  // next_seq) and advances the stream to next_seq+1 and `sealed`.
  // Sets batch->id.
  Status Commit(SealedBatch* batch, JournalPosition sealed);
  // Up to `limit` batches whose id is not in `skip`: highest priority first,
  // oldest first.
  Result<std::vector<SealedBatch>> Next(size_t limit, const std::vector<int64_t>& skip);
  // Removes a batch once Kafka has acknowledged it. Removing a missing id is ok.
  Status Delete(int64_t id);
  Result<StoreCounts> Counts();

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql);
  Status Migrate();

  std::mutex mu_;  // serialises every use of db_
  sqlite3* db_;
};

}  // namespace edgesync

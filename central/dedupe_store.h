// DedupeStore: edgesync-unpack's memory of which batches it has already
// emitted, kept in a local SQLite file so that de-duplication by (device,
// stream, batch sequence) survives a restart. It holds the SequenceTracker
// state of every (device, stream) seen within the retention age; nothing
// else. Layout: one row per stream (see the schema in dedupe_store.cpp).
//
// Contract with the consumer loop: Save() the tracker's dirty streams after
// a round's output is flushed and before its Kafka offsets are stored, so a
// committed offset is never ahead of the saved state. A crash between the
// two re-reads the round; the saved state then drops what was already
// emitted, except the last round if the crash fell between its output and
// its Save (at least once, never lost).
//
// One process at a time: the file is opened in exclusive locking mode, so a
// second edgesync-unpack on the same file fails at Open. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "central/unpack.h"

struct sqlite3;

namespace edgesync {

class DedupeStore {
 public:
  // Opens or creates the file at `path`. InvalidArgument for a file of a
  // newer schema, Unavailable when another process holds it, IOError or
  // Corruption as SQLite reports.
  static Result<std::unique_ptr<DedupeStore>> Open(const std::string& path);
  ~DedupeStore();
  DedupeStore(const DedupeStore&) = delete;
  DedupeStore& operator=(const DedupeStore&) = delete;

  // Deletes the streams last seen before `cutoff_us`, then restores every
  // other one into `tracker`. Returns how many were restored.
  Result<size_t> Load(int64_t cutoff_us, SequenceTracker* tracker);
  // Writes these streams' state, replacing what was saved for them, in one
  // durable transaction.
  Status Save(const std::vector<SequenceTracker::SavedStream>& streams);
  // Deletes the streams last seen before `cutoff_us`; returns how many.
  Result<size_t> ForgetSeenBefore(int64_t cutoff_us);

 private:
  explicit DedupeStore(sqlite3* db) : db_(db) {}
  Status Exec(const char* sql, const std::string& what);
  sqlite3* db_;
};

}  // namespace edgesync

// DedupeStore over SQLite. One table, one row per (device, stream): the
// SequenceTracker::StreamState of that stream. The out-of-order ranges are
// a blob of little-endian u64 pairs (first, last): at most 16,384 of them,
// written and read whole with their stream. Schema 2 adds `reported` (NULL
// in rows of schema 1: read as `highest`).
#include "central/dedupe_store.h"

#include <sqlite3.h>

#include "base/coding.h"
#include "base/sqlite_util.h"

namespace edgesync {

namespace {

constexpr int kSchemaVersion = 2;

// Sequences are u64 and times i64; SQLite integers are i64, so sequences
// are stored bit for bit as i64 and read back as u64.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE IF NOT EXISTS streams (
  device       BLOB NOT NULL,
  stream       BLOB NOT NULL,
  contiguous   INTEGER NOT NULL,
  highest      INTEGER NOT NULL,
  above        BLOB NOT NULL,
  last_seen_us INTEGER NOT NULL,
  PRIMARY KEY (device, stream)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS streams_last_seen ON streams (last_seen_us);
)sql";

using sqlite::Stmt;

Status SqlError(sqlite3* db, const std::string& what) {
  Status st = sqlite::Error(db, what);
  if (st.code() == Status::Code::kUnavailable) {
    return Status::Unavailable(st.message() + " (is another edgesync-unpack using this file?)");
  }
  return st;
}

std::string EncodeRanges(const std::map<uint64_t, uint64_t>& above) {
  std::string out;
  out.reserve(above.size() * 16);
  for (const auto& [first, last] : above) {
    PutU64(&out, first);
    PutU64(&out, last);
  }
  return out;
}

Status DecodeRanges(std::string_view blob, std::map<uint64_t, uint64_t>* above) {
  if (blob.size() % 16 != 0) return Status::Corruption("dedupe db: ranges blob of odd length");
  ByteReader in(blob);
  while (in.remaining() > 0) {
    uint64_t first = in.U64();
    uint64_t last = in.U64();
    if (last < first) return Status::Corruption("dedupe db: a range ends before it starts");
    above->emplace_hint(above->end(), first, last);
  }
  return Status::OK();
}

}  // namespace

Result<std::unique_ptr<DedupeStore>> DedupeStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    Status st = Status::IOError("open dedupe db " + path + ": " +
                                (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);
    return st;
  }
  std::unique_ptr<DedupeStore> store(new DedupeStore(db));
  // Exclusive locking: the first read takes the lock and keeps it until
  // close, so a second process on the same file fails here instead of
  // silently interleaving its state with ours. (The kernel drops the lock
  // when a process dies, so a crash never leaves it stale.)
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA locking_mode=EXCLUSIVE", "dedupe db " + path));
  // WAL: a round's save appends its pages instead of rewriting them twice.
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL", "dedupe db " + path));
  // FULL, not NORMAL: offsets are committed to Kafka right after a Save;
  // NORMAL could lose the last saves in a power cut while Kafka keeps the
  // offsets, and the batches of those rounds, if sent again by an agent,
  // would be emitted twice (or reported missing). One fsync per round (at
  // most ten a second) costs little on a central server.
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL", "dedupe db " + path));
  int version = 0;
  {
    Stmt q(db, "PRAGMA user_version");
    if (!q.ok() || sqlite3_step(q.get()) != SQLITE_ROW) return SqlError(db, "dedupe db " + path);
    version = static_cast<int>(q.ColInt(0));
  }
  if (version > kSchemaVersion) {
    return Status::InvalidArgument("dedupe db " + path + " has schema version " +
                                   std::to_string(version) + ", newer than this edgesync-unpack (" +
                                   std::to_string(kSchemaVersion) + "); upgrade it");
  }
  if (version < kSchemaVersion) {
    sqlite::Transaction txn(db);
    if (!txn.Begun().ok()) return SqlError(db, "dedupe db " + path);
    if (version < 1) EDGESYNC_RETURN_IF_ERROR(store->Exec(kSchemaV1, "create dedupe db schema"));
    EDGESYNC_RETURN_IF_ERROR(
        store->Exec("ALTER TABLE streams ADD COLUMN reported INTEGER", "upgrade dedupe db schema"));
    EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA user_version=2", "upgrade dedupe db schema"));
    EDGESYNC_RETURN_IF_ERROR(txn.Commit("create dedupe db schema"));
  }
  return store;
}

DedupeStore::~DedupeStore() { sqlite3_close(db_); }

Status DedupeStore::Exec(const char* sql, const std::string& what) {
  if (sqlite3_exec(db_, sql, nullptr, nullptr, nullptr) != SQLITE_OK) return SqlError(db_, what);
  return Status::OK();
}

Result<size_t> DedupeStore::Load(int64_t cutoff_us, SequenceTracker* tracker) {
  Result<size_t> forgotten = ForgetSeenBefore(cutoff_us);
  if (!forgotten.ok()) return forgotten.status();
  Stmt q(db_, "SELECT device, stream, contiguous, highest, above, last_seen_us, reported FROM streams");
  if (!q.ok()) return SqlError(db_, "read dedupe db");
  size_t n = 0;
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    SequenceTracker::StreamState s;
    s.contiguous = static_cast<uint64_t>(q.ColInt(2));
    s.highest = static_cast<uint64_t>(q.ColInt(3));
    EDGESYNC_RETURN_IF_ERROR(DecodeRanges(q.ColBlob(4), &s.above));
    s.last_seen_us = q.ColInt(5);
    s.reported = sqlite3_column_type(q.get(), 6) == SQLITE_NULL ? s.highest
                                                                 : static_cast<uint64_t>(q.ColInt(6));
    tracker->Restore(q.ColBlob(0), q.ColBlob(1), std::move(s));
    ++n;
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "read dedupe db");
  return n;
}

Status DedupeStore::Save(const std::vector<SequenceTracker::SavedStream>& streams) {
  if (streams.empty()) return Status::OK();
  sqlite::Transaction txn(db_);
  if (!txn.Begun().ok()) return SqlError(db_, "save dedupe state");
  Stmt put(db_,
           "INSERT OR REPLACE INTO streams (device, stream, contiguous, highest, above, "
           "last_seen_us, reported) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)");
  Status st = put.ok() ? Status::OK() : SqlError(db_, "save dedupe state");
  for (size_t i = 0; st.ok() && i < streams.size(); ++i) {
    const SequenceTracker::SavedStream& s = streams[i];
    std::string ranges = EncodeRanges(s.state.above);
    put.Blob(1, s.device);
    put.Blob(2, s.stream);
    put.Int(3, static_cast<int64_t>(s.state.contiguous));
    put.Int(4, static_cast<int64_t>(s.state.highest));
    put.Blob(5, ranges);
    put.Int(6, s.state.last_seen_us);
    put.Int(7, static_cast<int64_t>(s.state.reported));
    if (sqlite3_step(put.get()) != SQLITE_DONE) st = SqlError(db_, "save dedupe state");
    sqlite3_reset(put.get());
  }
  if (!st.ok()) return st;  // rolled back as txn goes
  return txn.Commit("save dedupe state");
}

Result<size_t> DedupeStore::ForgetSeenBefore(int64_t cutoff_us) {
  Stmt del(db_, "DELETE FROM streams WHERE last_seen_us < ?1");
  if (!del.ok()) return SqlError(db_, "forget old streams in dedupe db");
  del.Int(1, cutoff_us);
  if (sqlite3_step(del.get()) != SQLITE_DONE) return SqlError(db_, "forget old streams in dedupe db");
  return static_cast<size_t>(sqlite3_changes(db_));
}

}  // namespace edgesync

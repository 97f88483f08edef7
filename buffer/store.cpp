#include "buffer/store.h"

#include <sqlite3.h>

#include <algorithm>

namespace edgesync {

namespace {

constexpr int kSchemaVersion = 1;

// Schema version 1. Later versions add a migration step below, never edit this.
constexpr const char* kSchemaV1 = R"sql(
CREATE TABLE streams (
  name            TEXT PRIMARY KEY,
  next_seq        INTEGER NOT NULL,
  journal_segment INTEGER NOT NULL,
  journal_offset  INTEGER NOT NULL
);
CREATE TABLE batches (
  id          INTEGER PRIMARY KEY AUTOINCREMENT,
  stream      TEXT NOT NULL,
  kafka_topic TEXT NOT NULL,
  priority    INTEGER NOT NULL,
  seq         INTEGER NOT NULL,
  events      INTEGER NOT NULL,
  first_us    INTEGER NOT NULL,
  last_us     INTEGER NOT NULL,
  size        INTEGER NOT NULL,
  envelope    BLOB NOT NULL,
  UNIQUE (stream, seq)
);
CREATE INDEX batches_drain ON batches (priority DESC, id);
)sql";

// Owns a prepared statement; finalizes it on scope exit.
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return s_; }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

Status SqlError(sqlite3* db, const std::string& what) {
  int code = sqlite3_errcode(db);
  std::string msg = what + ": " + sqlite3_errmsg(db);
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return Status::Corruption(msg);
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return Status::Unavailable(msg);
  return Status::IOError(msg);
}

}  // namespace

Result<std::unique_ptr<Store>> Store::Open(const std::string& path) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                           nullptr);
  if (rc != SQLITE_OK) {
    Status st = Status::IOError("open store " + path + ": " +
                                (db ? sqlite3_errmsg(db) : sqlite3_errstr(rc)));
    sqlite3_close(db);
    return st;
  }
  std::unique_ptr<Store> store(new Store(db));
  sqlite3_busy_timeout(db, 5000);
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL"));
  EDGESYNC_RETURN_IF_ERROR(store->Migrate());
  return store;
}

Store::~Store() { sqlite3_close(db_); }

Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    int code = sqlite3_errcode(db_);
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return Status::Corruption(msg);
    return Status::IOError(std::string("sqlite: ") + msg);
  }
  return Status::OK();
}

Status Store::Migrate() {
  Stmt q(db_, "PRAGMA user_version");
  if (!q.ok() || sqlite3_step(q.get()) != SQLITE_ROW) return SqlError(db_, "read schema version");
  int version = sqlite3_column_int(q.get(), 0);
  if (version > kSchemaVersion) {
    return Status::InvalidArgument("store schema version " + std::to_string(version) +
                                   " is newer than this agent supports (" +
                                   std::to_string(kSchemaVersion) + "); upgrade the agent");
  }
  if (version == 0) {
    EDGESYNC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
    Status st = Exec(kSchemaV1);
    if (st.ok()) st = Exec("PRAGMA user_version=1");
    if (!st.ok()) {
      (void)Exec("ROLLBACK");
      return st;
    }
    EDGESYNC_RETURN_IF_ERROR(Exec("COMMIT"));
  }
  return Status::OK();
}

Result<StreamState> Store::LoadStream(const std::string& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt q(db_, "SELECT next_seq, journal_segment, journal_offset FROM streams WHERE name=?");
  if (!q.ok()) return SqlError(db_, "prepare stream query");
  sqlite3_bind_text(q.get(), 1, stream.data(), static_cast<int>(stream.size()), SQLITE_TRANSIENT);
  StreamState s;
  int rc = sqlite3_step(q.get());
  if (rc == SQLITE_ROW) {
    s.next_seq = static_cast<uint64_t>(sqlite3_column_int64(q.get(), 0));
    s.sealed.segment = static_cast<uint64_t>(sqlite3_column_int64(q.get(), 1));
    s.sealed.offset = static_cast<uint64_t>(sqlite3_column_int64(q.get(), 2));
  } else if (rc != SQLITE_DONE) {
    return SqlError(db_, "load stream " + stream);
  }
  return s;
}

Status Store::Commit(SealedBatch* b, JournalPosition sealed) {
  std::lock_guard<std::mutex> lock(mu_);
  EDGESYNC_RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  auto fail = [&](const std::string& what) {
    Status st = SqlError(db_, what);
    (void)Exec("ROLLBACK");
    return st;
  };
  {
    Stmt ins(db_,
             "INSERT INTO batches (stream, kafka_topic, priority, seq, events, first_us, "
             "last_us, size, envelope) VALUES (?,?,?,?,?,?,?,?,?)");
    if (!ins.ok()) return fail("prepare batch insert");
    sqlite3_stmt* s = ins.get();
    sqlite3_bind_text(s, 1, b->stream.data(), static_cast<int>(b->stream.size()), SQLITE_STATIC);
    sqlite3_bind_text(s, 2, b->kafka_topic.data(), static_cast<int>(b->kafka_topic.size()),
                      SQLITE_STATIC);
    sqlite3_bind_int(s, 3, static_cast<int>(b->priority));
    sqlite3_bind_int64(s, 4, static_cast<sqlite3_int64>(b->seq));
    sqlite3_bind_int64(s, 5, b->events);
    sqlite3_bind_int64(s, 6, b->first_event_us);
    sqlite3_bind_int64(s, 7, b->last_event_us);
    sqlite3_bind_int64(s, 8, static_cast<sqlite3_int64>(b->envelope.size()));
    sqlite3_bind_blob(s, 9, b->envelope.data(), static_cast<int>(b->envelope.size()),
                      SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE) return fail("insert batch");
    b->id = sqlite3_last_insert_rowid(db_);
  }
  {
    Stmt up(db_,
            "INSERT INTO streams (name, next_seq, journal_segment, journal_offset) "
            "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET "
            "next_seq=?2, journal_segment=?3, journal_offset=?4");
    if (!up.ok()) return fail("prepare stream update");
    sqlite3_stmt* s = up.get();
    sqlite3_bind_text(s, 1, b->stream.data(), static_cast<int>(b->stream.size()), SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, static_cast<sqlite3_int64>(b->seq + 1));
    sqlite3_bind_int64(s, 3, static_cast<sqlite3_int64>(sealed.segment));
    sqlite3_bind_int64(s, 4, static_cast<sqlite3_int64>(sealed.offset));
    if (sqlite3_step(s) != SQLITE_DONE) return fail("update stream");
  }
  if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return fail("commit batch");
  }
  return Status::OK();
}

Result<std::vector<SealedBatch>> Store::Next(size_t limit, const std::vector<int64_t>& skip) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt q(db_,
         "SELECT id, stream, kafka_topic, priority, seq, events, first_us, last_us, envelope "
         "FROM batches ORDER BY priority DESC, id LIMIT ?");
  if (!q.ok()) return SqlError(db_, "prepare drain query");
  sqlite3_bind_int64(q.get(), 1, static_cast<sqlite3_int64>(limit + skip.size()));
  std::vector<SealedBatch> out;
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW && out.size() < limit) {
    sqlite3_stmt* s = q.get();
    int64_t id = sqlite3_column_int64(s, 0);
    if (std::find(skip.begin(), skip.end(), id) != skip.end()) continue;
    SealedBatch b;
    b.id = id;
    b.stream = reinterpret_cast<const char*>(sqlite3_column_text(s, 1));
    b.kafka_topic = reinterpret_cast<const char*>(sqlite3_column_text(s, 2));
    b.priority = static_cast<Priority>(sqlite3_column_int(s, 3));
    b.seq = static_cast<uint64_t>(sqlite3_column_int64(s, 4));
    b.events = static_cast<uint32_t>(sqlite3_column_int64(s, 5));
    b.first_event_us = sqlite3_column_int64(s, 6);
    b.last_event_us = sqlite3_column_int64(s, 7);
    const void* blob = sqlite3_column_blob(s, 8);
    b.envelope.assign(static_cast<const char*>(blob),
                      static_cast<size_t>(sqlite3_column_bytes(s, 8)));
    out.push_back(std::move(b));
  }
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return SqlError(db_, "read batches");
  return out;
}

Status Store::Delete(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt d(db_, "DELETE FROM batches WHERE id=?");
  if (!d.ok()) return SqlError(db_, "prepare delete");
  sqlite3_bind_int64(d.get(), 1, id);
  if (sqlite3_step(d.get()) != SQLITE_DONE) return SqlError(db_, "delete batch");
  return Status::OK();
}

Result<StoreCounts> Store::Counts() {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt q(db_, "SELECT COUNT(*), COALESCE(SUM(events),0), COALESCE(SUM(size),0) FROM batches");
  if (!q.ok() || sqlite3_step(q.get()) != SQLITE_ROW) return SqlError(db_, "count batches");
  StoreCounts c;
  c.batches = static_cast<uint64_t>(sqlite3_column_int64(q.get(), 0));
  c.events = static_cast<uint64_t>(sqlite3_column_int64(q.get(), 1));
  c.bytes = static_cast<uint64_t>(sqlite3_column_int64(q.get(), 2));
  return c;
}

}  // namespace edgesync

#include "buffer/store.h"

#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <ctime>
#include <functional>
#include <map>
#include <string_view>
#include <tuple>

#include "format/format.h"
#include "base/sqlite_util.h"
#include "buffer/sqlite_vfs.h"

namespace edgesync {

namespace {

constexpr int kSchemaVersion = 2;

// Schema version 1. Never edit a released version: add a migration below.
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

// Version 2: gap records travel in `batches` (gap=1, seq = first lost
// sequence) and are sent before batches, so the central side learns of a
// loss before it sees the sequence jump; `gaps` is the log of every gap,
// pointing at its pending record until that is uploaded; `meta` holds the
// device id.
constexpr const char* kMigrateToV2 = R"sql(
ALTER TABLE batches ADD COLUMN gap INTEGER NOT NULL DEFAULT 0;
CREATE INDEX batches_evict ON batches (priority, id);
CREATE INDEX batches_send ON batches (gap DESC, priority DESC, id);
CREATE TABLE gaps (
  id        INTEGER PRIMARY KEY AUTOINCREMENT,
  stream    TEXT NOT NULL,
  first_seq INTEGER NOT NULL,
  last_seq  INTEGER NOT NULL,
  events    INTEGER NOT NULL,
  bytes     INTEGER NOT NULL,
  first_us  INTEGER NOT NULL,
  last_us   INTEGER NOT NULL,
  reason    TEXT NOT NULL,
  at_us     INTEGER NOT NULL,
  record_id INTEGER
);
CREATE INDEX gaps_pending ON gaps (record_id);
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
)sql";

// An index holding every column the totals read (LoadTotals at Open,
// Counts, CountsByStream), so they read a few dozen compact pages instead of
// the table's leaf pages, about one per batch and scattered between the
// envelopes' overflow pages: with a full store that was ~800 random reads,
// 80 ms of a cold start. Not a schema version: an older agent (after a
// downgrade) opens the file as before, and SQLite keeps the index up to
// date under it. Made once, at the first open that lacks it.
constexpr const char* kTotalsIndex =
    "CREATE INDEX IF NOT EXISTS batches_counts ON batches (stream, gap, events, size, first_us)";

// Every statement the store runs must prepare against its schema.
constexpr const char* kSchemaProbe[] = {
    "SELECT name, next_seq, journal_segment, journal_offset FROM streams",
    "SELECT id, stream, kafka_topic, priority, seq, events, first_us, last_us, size, envelope, "
    "gap FROM batches",
    "SELECT id, stream, first_seq, last_seq, events, bytes, first_us, last_us, reason, at_us, "
    "record_id FROM gaps",
    "SELECT key, value FROM meta",
};

constexpr uint64_t kVacuumMinBytes = 4u << 20;     // free pages worth returning
constexpr int64_t kWalLimitBytes = 4 << 20;        // WAL truncated to this after checkpoints

using sqlite::Stmt;

Status SqlError(sqlite3* db, const std::string& what) { return sqlite::Error(db, what); }

// Opens `path` through an EnvVfs over `env` (left in *vfs, which must
// outlive the connection) in exclusive locking mode, as it has no shared
// memory for the WAL index: production and the power-cut tests run this
// one setup. On failure the caller still closes *db.
Status OpenDatabase(Env* env, const std::string& path, int flags, std::unique_ptr<EnvVfs>* vfs,
                    sqlite3** db) {
  *vfs = std::make_unique<EnvVfs>(env);
  int rc = sqlite3_open_v2(path.c_str(), db, flags | SQLITE_OPEN_NOMUTEX, (*vfs)->name());
  if (rc != SQLITE_OK) {
    return Status::IOError("open store " + path + ": " +
                           (*db ? sqlite3_errmsg(*db) : sqlite3_errstr(rc)));
  }
  if (sqlite3_exec(*db, "PRAGMA locking_mode=EXCLUSIVE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    return SqlError(*db, "exclusive locking");
  }
  return Status::OK();
}

using sqlite::Transaction;

// The columns of a batch row in the order the SELECTs below list them.
constexpr const char* kBatchColumns =
    "id, stream, kafka_topic, priority, seq, events, first_us, last_us, gap, size";

SealedBatch ReadBatchRow(Stmt& q) {
  SealedBatch b;
  b.id = q.ColInt(0);
  b.stream = q.ColText(1);
  b.kafka_topic = q.ColText(2);
  b.priority = static_cast<Priority>(q.ColInt(3));
  b.seq = static_cast<uint64_t>(q.ColInt(4));
  b.events = static_cast<uint32_t>(q.ColInt(5));
  b.first_event_us = q.ColInt(6);
  b.last_event_us = q.ColInt(7);
  b.gap_record = q.ColInt(8) != 0;
  return b;
}

}  // namespace

Store::Store(Env* env, std::string path, StoreOptions options)
    : env_(env), path_(std::move(path)), options_(std::move(options)) {
  if (options_.logger == nullptr) options_.logger = spdlog::default_logger();
}

Result<std::unique_ptr<Store>> Store::Open(Env* env, const std::string& path,
                                           StoreOptions options) {
  std::unique_ptr<Store> store(new Store(env, path, std::move(options)));
  EDGESYNC_RETURN_IF_ERROR(OpenDatabase(env, path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE,
                                        &store->vfs_, &store->db_));
  sqlite3* db = store->db_;
  sqlite3_busy_timeout(db, 5000);
  // Only take effect on a new, empty database (older ones migrate to
  // incremental vacuum; their page size stays).
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA page_size=1024"));
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA auto_vacuum=INCREMENTAL"));
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL"));
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA synchronous=FULL"));
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA temp_store=MEMORY"));
  // Debian builds SQLite with secure_delete on: every deleted batch would be
  // written again as zeros (flash wear, and a full disk could not evict).
  // Envelopes are sealed; FAST zeroes only what costs no extra I/O.
  EDGESYNC_RETURN_IF_ERROR(store->Exec("PRAGMA secure_delete=FAST"));
  EDGESYNC_RETURN_IF_ERROR(store->Exec(
      ("PRAGMA journal_size_limit=" + std::to_string(kWalLimitBytes)).c_str()));
  // SQLite's default page cache is 2000 KiB: on a 64 MiB board that is the
  // agent's largest heap item once a check or a burst has filled it. A
  // commit or a lease touches a few dozen 1 KiB pages (an envelope's
  // overflow chain, the b-tree paths), and what falls out of the cache is
  // one pread() away in the OS page cache: a drain, which deletes batches
  // it read a moment before, spends more CPU with a small cache.
  EDGESYNC_RETURN_IF_ERROR(store->Exec(
      ("PRAGMA cache_size=-" + std::to_string(std::max<uint64_t>(store->options_.cache_bytes / 1024, 1))).c_str()));
  EDGESYNC_RETURN_IF_ERROR(store->Migrate());
  // The mark a clean close left (see store.h). A file too damaged to say
  // has none, and is checked in full.
  bool clean = false;
  {
    Stmt m(db, "SELECT value FROM meta WHERE key='clean_close'");
    clean = m.ok() && sqlite3_step(m.get()) == SQLITE_ROW && m.ColText(0) == "1";
  }
  const bool defer = clean && store->options_.defer_check;
  EDGESYNC_RETURN_IF_ERROR(store->CheckIntegrity(/*deep=*/!defer));
  EDGESYNC_RETURN_IF_ERROR(store->Exec(kTotalsIndex));  // after the schema probe: its tables are there
  store->check_pending_ = defer;
  store->verified_ = !defer;
  EDGESYNC_RETURN_IF_ERROR(store->LoadTotals());
  store->ReleaseMemory();  // what the check read through the cache
  store->device_id_ = store->options_.device_id;
  if (store->device_id_.empty()) {
    Stmt m(db, "SELECT value FROM meta WHERE key='device_id'");
    store->device_id_ = m.ok() && sqlite3_step(m.get()) == SQLITE_ROW ? m.ColText(0) : "unknown";
  }
  if (!store->options_.device_id.empty() || clean) {
    // One transaction, one sync: the device id, and the mark cleared, so
    // that a crash from here on is an unclean stop.
    Transaction txn(db);
    EDGESYNC_RETURN_IF_ERROR(txn.Begun());
    if (!store->options_.device_id.empty()) {
      Stmt m(db, "INSERT INTO meta (key, value) VALUES ('device_id', ?1) "
                 "ON CONFLICT(key) DO UPDATE SET value=?1");
      m.Text(1, store->device_id_);
      if (!m.ok() || sqlite3_step(m.get()) != SQLITE_DONE) return txn.Fail("write device id");
    }
    if (clean) {
      Stmt m(db, "DELETE FROM meta WHERE key='clean_close'");
      if (!m.ok() || sqlite3_step(m.get()) != SQLITE_DONE) return txn.Fail("clear the clean-close mark");
    }
    EDGESYNC_RETURN_IF_ERROR(txn.Commit("commit store metadata"));
  }
  return store;
}

Result<std::unique_ptr<Store>> Store::OpenReadOnly(Env* env, const std::string& path) {
  if (!env->Exists(path)) return Status::NotFound(path + " does not exist");
  std::unique_ptr<Store> store(new Store(env, path, StoreOptions{}));
  store->read_only_ = true;
  EDGESYNC_RETURN_IF_ERROR(OpenDatabase(env, path, SQLITE_OPEN_READONLY, &store->vfs_, &store->db_));
  sqlite3_busy_timeout(store->db_, 1000);
  for (const char* probe : kSchemaProbe) {
    Stmt q(store->db_, probe);
    if (!q.ok() && sqlite3_errcode(store->db_) == SQLITE_BUSY) {
      return Status::Unavailable(path + " is locked: an agent has it open");
    }
    if (!q.ok()) return Status::Corruption(path + ": not an edgesync store of this version");
  }
  return store;
}

void Store::StopCheck() {
  closing_ = true;
  if (!check_thread_.joinable()) return;
  // closing_ alone stops the check through its progress handler, but
  // SQLite 3.40 (Debian 12) calls that handler only between the VM's steps,
  // not during quick_check's page walk (about half of it, measured), which
  // notices sqlite3_interrupt between pages. One sent before its
  // statement began is forgotten as it begins, hence again until the thread
  // is done. Only while that statement runs: the connection is shared, and
  // an interrupt must never end a commit of the sealer's or the uploader's
  // (Check clears one that arrives as the statement ends).
  while (!check_done_.load()) {
    {
      std::lock_guard<std::mutex> lock(interrupt_mu_);
      if (check_running_) sqlite3_interrupt(db_);
    }
    env_->SleepForMicros(1000);
  }
  check_thread_.join();
}

Store::~Store() {
  StopCheck();
  if (db_ != nullptr && !read_only_ && verified_) {
    // Clean close of a store a check found sound: the next Open may skip
    // quick_check (store.h). Synchronous, like every commit.
    if (sqlite3_exec(db_, "INSERT INTO meta (key, value) VALUES ('clean_close', '1') "
                          "ON CONFLICT(key) DO UPDATE SET value='1'",
                     nullptr, nullptr, nullptr) != SQLITE_OK) {
      options_.logger->warn("store: marking the clean close: {}; the next start checks the whole store",
                            sqlite3_errmsg(db_));
    }
  }
  sqlite3_close(db_);  // before vfs_ goes away
}

void Store::ReleaseMemory() {
  std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
  if (!Lock(CheckWait::kDontWait, &lock)) return;  // the caller runs it again once quiet
  sqlite3_db_release_memory(db_);
}

Status Store::Exec(const char* sql) {
  char* err = nullptr;
  if (sqlite3_exec(db_, sql, nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    return SqlError(db_, std::string("sqlite: ") + msg);
  }
  return Status::OK();
}

Status Store::Migrate() {
  int version;
  {
    Stmt q(db_, "PRAGMA user_version");
    if (!q.ok() || sqlite3_step(q.get()) != SQLITE_ROW) return SqlError(db_, "read schema version");
    version = static_cast<int>(q.ColInt(0));
  }
  if (version > kSchemaVersion) {
    return Status::InvalidArgument("store schema version " + std::to_string(version) +
                                   " is newer than this agent supports (" +
                                   std::to_string(kSchemaVersion) + "); upgrade the agent");
  }
  // Each step in its own transaction, so a crash leaves a whole version.
  auto step = [&](const char* sql, int to) -> Status {
    Transaction txn(db_);
    EDGESYNC_RETURN_IF_ERROR(txn.Begun());
    EDGESYNC_RETURN_IF_ERROR(Exec(sql));
    EDGESYNC_RETURN_IF_ERROR(Exec(("PRAGMA user_version=" + std::to_string(to)).c_str()));
    return txn.Commit("commit schema version " + std::to_string(to));
  };
  if (version < 1) EDGESYNC_RETURN_IF_ERROR(step(kSchemaV1, 1));
  if (version < 2) {
    EDGESYNC_RETURN_IF_ERROR(step(kMigrateToV2, 2));
    if (version == 1) {
      // A version-1 file was created without incremental vacuum; switching
      // takes a full VACUUM, once.
      EDGESYNC_RETURN_IF_ERROR(Exec("PRAGMA auto_vacuum=INCREMENTAL"));
      EDGESYNC_RETURN_IF_ERROR(Exec("VACUUM"));
    }
  }
  return Status::OK();
}

Status Store::PageCounts(int64_t* page_size, int64_t* pages, int64_t* free_pages) {
  for (auto [pragma, out] : {std::pair{"PRAGMA page_size", page_size}, std::pair{"PRAGMA page_count", pages},
                             std::pair{"PRAGMA freelist_count", free_pages}}) {
    Stmt q(db_, pragma);
    if (!q.ok() || sqlite3_step(q.get()) != SQLITE_ROW) return SqlError(db_, pragma);
    *out = q.ColInt(0);
  }
  return Status::OK();
}

Status Store::CheckIntegrity(bool deep) {
  if (!deep) {
    // What reading the header costs: a freelist longer than the file, or a
    // page count beyond what the file and its WAL can hold, is damage.
    int64_t page_size = 0, pages = 0, free_pages = 0;
    EDGESYNC_RETURN_IF_ERROR(PageCounts(&page_size, &pages, &free_pages));
    Result<uint64_t> on_disk = FileBytes();
    if (page_size <= 0 || free_pages < 0 || free_pages >= std::max<int64_t>(pages, 1) ||
        (on_disk.ok() && static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size) > *on_disk)) {
      return Status::Corruption("store " + path_ + " has an inconsistent header: " + std::to_string(pages) +
                                " pages of " + std::to_string(page_size) + " bytes, " +
                                std::to_string(free_pages) + " free, " +
                                std::to_string(on_disk.ok() ? *on_disk : 0) + " bytes on disk");
    }
  } else {
    Stmt q(db_, "PRAGMA quick_check");
    if (!q.ok()) return SqlError(db_, "quick_check");
    int rc = sqlite3_step(q.get());
    if (rc != SQLITE_ROW) return SqlError(db_, "quick_check");
    std::string verdict = q.ColText(0);
    if (verdict != "ok") return Status::Corruption("store " + path_ + " fails quick_check: " + verdict);
  }
  for (const char* probe : kSchemaProbe) {
    Stmt q(db_, probe);
    if (!q.ok()) {
      return Status::Corruption("store " + path_ + " does not have the expected schema: " +
                                sqlite3_errmsg(db_));
    }
  }
  return Status::OK();
}

Status Store::LoadTotals() {
  Stmt q(db_, "SELECT COALESCE(SUM(size),0) FROM batches");
  if (!q.ok() || sqlite3_step(q.get()) != SQLITE_ROW) return SqlError(db_, "sum batch sizes");
  bytes_ = static_cast<uint64_t>(q.ColInt(0));
  return Status::OK();
}

Result<StreamState> Store::LoadStream(const std::string& stream) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt q(db_, "SELECT next_seq, journal_segment, journal_offset FROM streams WHERE name=?");
  if (!q.ok()) return SqlError(db_, "prepare stream query");
  q.Text(1, stream);
  StreamState s;
  int rc = sqlite3_step(q.get());
  if (rc == SQLITE_ROW) {
    s.next_seq = static_cast<uint64_t>(q.ColInt(0));
    s.sealed.segment = static_cast<uint64_t>(q.ColInt(1));
    s.sealed.offset = static_cast<uint64_t>(q.ColInt(2));
  } else if (rc != SQLITE_DONE) {
    return SqlError(db_, "load stream " + stream);
  }
  return s;
}

namespace {

// Inserts or updates a stream's row (next_seq, journal position).
bool WriteStream(sqlite3* db, const std::string& name, const StreamState& s) {
  Stmt up(db,
          "INSERT INTO streams (name, next_seq, journal_segment, journal_offset) "
          "VALUES (?1, ?2, ?3, ?4) ON CONFLICT(name) DO UPDATE SET "
          "next_seq=?2, journal_segment=?3, journal_offset=?4");
  if (!up.ok()) return false;
  up.Text(1, name);
  up.Int(2, static_cast<int64_t>(s.next_seq));
  up.Int(3, static_cast<int64_t>(s.sealed.segment));
  up.Int(4, static_cast<int64_t>(s.sealed.offset));
  return sqlite3_step(up.get()) == SQLITE_DONE;
}

}  // namespace

Status Store::SeedStream(const std::string& stream, StreamState state) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!WriteStream(db_, stream, state)) return SqlError(db_, "seed stream " + stream);
  return Status::OK();
}

Status Store::Commit(SealedBatch* b, JournalPosition sealed, CheckWait wait) {
  std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
  if (!Lock(wait, &lock)) return CheckRunning();
  Transaction txn(db_);
  EDGESYNC_RETURN_IF_ERROR(txn.Begun());
  auto fail = [&](const std::string& what) { return txn.Fail(what); };
  {
    Stmt ins(db_,
             "INSERT INTO batches (stream, kafka_topic, priority, seq, events, first_us, "
             "last_us, size, envelope, gap) VALUES (?,?,?,?,?,?,?,?,?,0)");
    if (!ins.ok()) return fail("prepare batch insert");
    ins.Text(1, b->stream);
    ins.Text(2, b->kafka_topic);
    ins.Int(3, static_cast<int>(b->priority));
    ins.Int(4, static_cast<int64_t>(b->seq));
    ins.Int(5, b->events);
    ins.Int(6, b->first_event_us);
    ins.Int(7, b->last_event_us);
    ins.Int(8, static_cast<int64_t>(b->envelope.size()));
    ins.Blob(9, b->envelope);
    if (sqlite3_step(ins.get()) != SQLITE_DONE) return fail("insert batch");
    b->id = sqlite3_last_insert_rowid(db_);
  }
  if (!WriteStream(db_, b->stream, StreamState{b->seq + 1, sealed})) return fail("update stream");
  EDGESYNC_RETURN_IF_ERROR(txn.Commit("commit batch"));
  bytes_ += b->envelope.size();
  return Status::OK();
}

Result<std::vector<SealedBatch>> Store::Next(size_t limit, const std::set<std::string>& skip_topics) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string sql = std::string("SELECT ") + kBatchColumns + ", envelope FROM batches";
  if (!skip_topics.empty()) {
    sql += " WHERE kafka_topic NOT IN (?";
    for (size_t i = 1; i < skip_topics.size(); ++i) sql += ",?";
    sql += ")";
  }
  sql += " ORDER BY gap DESC, priority DESC, id LIMIT ?";
  Stmt q(db_, sql.c_str());
  if (!q.ok()) return SqlError(db_, "prepare drain query");
  int param = 1;
  for (const std::string& t : skip_topics) q.Text(param++, t);
  q.Int(param, static_cast<int64_t>(limit + leased_.size()));
  std::vector<SealedBatch> out;
  int rc = SQLITE_DONE;
  while (out.size() < limit && (rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    if (leased_.count(q.ColInt(0))) continue;
    SealedBatch b = ReadBatchRow(q);
    b.envelope = q.ColBlob(10);
    out.push_back(std::move(b));
  }
  if (out.size() < limit && rc != SQLITE_DONE) return SqlError(db_, "read batches");
  for (const SealedBatch& b : out) leased_.insert(b.id);
  return out;
}

void Store::Release(int64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  leased_.erase(id);
}

Status Store::Delete(int64_t id) { return Delete(std::vector<int64_t>{id}); }

Status Store::Delete(const std::vector<int64_t>& ids) {
  if (ids.empty()) return Status::OK();
  std::lock_guard<std::mutex> lock(mu_);
  for (int64_t id : ids) leased_.erase(id);
  Transaction txn(db_);
  EDGESYNC_RETURN_IF_ERROR(txn.Begun());
  auto fail = [&](const std::string& what) { return txn.Fail(what); };
  Stmt d(db_, "DELETE FROM batches WHERE id=? RETURNING size, gap");
  Stmt u(db_, "UPDATE gaps SET record_id=NULL WHERE record_id=?");
  if (!d.ok() || !u.ok()) return fail("prepare delete");
  uint64_t freed = 0;
  for (int64_t id : ids) {
    sqlite3_reset(d.get());
    d.Int(1, id);
    bool gap = false;
    int rc = sqlite3_step(d.get());
    if (rc == SQLITE_ROW) {
      freed += static_cast<uint64_t>(d.ColInt(0));
      gap = d.ColInt(1) != 0;
      rc = sqlite3_step(d.get());
    }
    if (rc != SQLITE_DONE) return fail("delete batch");
    if (gap) {
      sqlite3_reset(u.get());
      u.Int(1, id);
      if (sqlite3_step(u.get()) != SQLITE_DONE) return fail("mark gap uploaded");
    }
  }
  EDGESYNC_RETURN_IF_ERROR(txn.Commit("commit delete"));
  bytes_ -= std::min<uint64_t>(bytes_, freed);
  return Status::OK();
}

Result<std::vector<Store::Victim>> Store::CandidatesLocked(
    const char* where, int64_t arg, const std::function<bool(uint64_t)>& enough) {
  Stmt q(db_, (std::string("SELECT ") + kBatchColumns + " FROM batches WHERE gap=0 " + where +
               " ORDER BY priority, id")
                  .c_str());
  if (!q.ok()) return SqlError(db_, "prepare eviction query");
  if (*where != '\0') q.Int(1, arg);
  std::vector<Victim> out;
  uint64_t taken = 0;
  int rc;
  while (!enough(taken) && (rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    if (leased_.count(q.ColInt(0))) continue;
    Victim v{ReadBatchRow(q), static_cast<uint64_t>(q.ColInt(9))};
    taken += v.size;
    out.push_back(std::move(v));
  }
  if (!enough(taken) && rc != SQLITE_DONE) return SqlError(db_, "read eviction candidates");
  return out;
}

Result<std::vector<Gap>> Store::Enforce(CheckWait wait) {
  std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
  if (!Lock(wait, &lock)) return CheckRunning();
  std::vector<Gap> gaps;
  const int64_t now = env_->NowMicros();
  const int64_t mono = env_->MonotonicMicros();
  bool evicted = false;

  // Age: checked once a minute (it reads every row's time).
  if (options_.max_age_us > 0 && mono >= next_age_check_) {
    next_age_check_ = mono + 60'000'000;
    const int64_t cutoff = now - options_.max_age_us;
    Result<std::vector<Victim>> v =
        CandidatesLocked("AND last_us < ?1", cutoff, [](uint64_t) { return false; });
    if (!v.ok()) return v.status();
    EDGESYNC_RETURN_IF_ERROR(EvictLocked(*v, format::kGapExpired, &gaps));
    evicted = evicted || !v->empty();
    Stmt prune(db_, "DELETE FROM gaps WHERE record_id IS NULL AND at_us < ?");
    if (!prune.ok()) return SqlError(db_, "prepare gap pruning");
    prune.Int(1, cutoff);
    if (sqlite3_step(prune.get()) != SQLITE_DONE) return SqlError(db_, "prune gaps");
  }

  // Quota: the store's own size.
  if (bytes_ > options_.max_bytes) {
    const uint64_t excess = bytes_ - options_.max_bytes;
    Result<std::vector<Victim>> v =
        CandidatesLocked("", 0, [&](uint64_t taken) { return taken >= excess; });
    if (!v.ok()) return v.status();
    EDGESYNC_RETURN_IF_ERROR(EvictLocked(*v, format::kGapQuota, &gaps));
    evicted = evicted || !v->empty();
  }

  // Free space on the file system, whoever used it up.
  bool disk_short = false;
  Result<uint64_t> free_bytes = env_->FreeBytes(DirName(path_));
  if (free_bytes.ok() && *free_bytes < options_.min_free_bytes) {
    disk_short = true;
    const uint64_t need = options_.min_free_bytes - *free_bytes;
    Result<std::vector<Victim>> v =
        CandidatesLocked("", 0, [&](uint64_t taken) { return taken >= need; });
    if (!v.ok()) return v.status();
    EDGESYNC_RETURN_IF_ERROR(EvictLocked(*v, format::kGapDiskFull, &gaps));
    evicted = evicted || !v->empty();
  }
  Status space = GiveBackSpaceLocked(evicted || disk_short);
  // What was evicted stays evicted; the space comes back on a later call.
  if (!space.ok()) options_.logger->warn("store: giving space back: {}", space.ToString());
  return gaps;
}

Status Store::EvictLocked(std::vector<Victim> victims, const char* reason,
                          std::vector<Gap>* gaps) {
  if (victims.empty()) return Status::OK();
  std::sort(victims.begin(), victims.end(), [](const Victim& a, const Victim& b) {
    return std::tie(a.batch.stream, a.batch.seq) < std::tie(b.batch.stream, b.batch.seq);
  });
  const int64_t now = env_->NowMicros();
  Transaction txn(db_);
  EDGESYNC_RETURN_IF_ERROR(txn.Begun());
  auto fail = [&](const std::string& what) { return txn.Fail(what); };
  int64_t bytes_delta = 0;
  std::vector<Gap> recorded;
  Stmt d(db_, "DELETE FROM batches WHERE id=?");
  if (!d.ok()) return fail("prepare eviction");
  for (size_t i = 0; i < victims.size();) {
    // One run: consecutive sequences of one stream.
    size_t j = i + 1;
    while (j < victims.size() && victims[j].batch.stream == victims[i].batch.stream &&
           victims[j].batch.seq == victims[j - 1].batch.seq + 1) {
      ++j;
    }
    Gap g;
    g.stream = victims[i].batch.stream;
    g.first_seq = victims[i].batch.seq;
    g.last_seq = victims[j - 1].batch.seq;
    g.first_event_us = victims[i].batch.first_event_us;
    g.last_event_us = victims[i].batch.last_event_us;
    g.reason = reason;
    g.at_us = now;
    for (size_t k = i; k < j; ++k) {
      const Victim& v = victims[k];
      sqlite3_reset(d.get());
      d.Int(1, v.batch.id);
      if (sqlite3_step(d.get()) != SQLITE_DONE) return fail("evict batch");
      g.events += v.batch.events;
      g.bytes += v.size;
      g.first_event_us = std::min(g.first_event_us, v.batch.first_event_us);
      g.last_event_us = std::max(g.last_event_us, v.batch.last_event_us);
      bytes_delta -= static_cast<int64_t>(v.size);
    }
    Result<int64_t> grown = AddGapLocked(g, victims[i].batch.kafka_topic, victims[i].batch.priority);
    if (!grown.ok()) return grown.status();
    bytes_delta += *grown;
    recorded.push_back(std::move(g));
    i = j;
  }
  EDGESYNC_RETURN_IF_ERROR(txn.Commit("commit eviction"));
  bytes_ = static_cast<uint64_t>(static_cast<int64_t>(bytes_) + bytes_delta);
  gaps->insert(gaps->end(), recorded.begin(), recorded.end());
  return Status::OK();
}

Result<int64_t> Store::AddGapLocked(const Gap& g, const std::string& kafka_topic,
                                    Priority priority) {
  Result<std::string> env = SealGapRecord(device_id_, g, options_.signer ? &*options_.signer : nullptr);
  if (!env.ok()) return env.status();
  Stmt ib(db_,
          "INSERT INTO batches (stream, kafka_topic, priority, seq, events, first_us, last_us, "
          "size, envelope, gap) VALUES (?,?,?,?,0,?,?,?,?,1)");
  if (!ib.ok()) return SqlError(db_, "prepare gap record insert");
  ib.Text(1, g.stream);
  ib.Text(2, kafka_topic);
  ib.Int(3, static_cast<int>(priority));
  ib.Int(4, static_cast<int64_t>(g.first_seq));
  ib.Int(5, g.first_event_us);
  ib.Int(6, g.last_event_us);
  ib.Int(7, static_cast<int64_t>(env->size()));
  ib.Blob(8, *env);
  if (sqlite3_step(ib.get()) != SQLITE_DONE) return SqlError(db_, "insert gap record");
  const int64_t record_id = sqlite3_last_insert_rowid(db_);
  Stmt ig(db_,
          "INSERT INTO gaps (stream, first_seq, last_seq, events, bytes, first_us, last_us, "
          "reason, at_us, record_id) VALUES (?,?,?,?,?,?,?,?,?,?)");
  if (!ig.ok()) return SqlError(db_, "prepare gap insert");
  ig.Text(1, g.stream);
  ig.Int(2, static_cast<int64_t>(g.first_seq));
  ig.Int(3, static_cast<int64_t>(g.last_seq));
  ig.Int(4, static_cast<int64_t>(g.events));
  ig.Int(5, static_cast<int64_t>(g.bytes));
  ig.Int(6, g.first_event_us);
  ig.Int(7, g.last_event_us);
  ig.Text(8, g.reason);
  ig.Int(9, g.at_us);
  ig.Int(10, record_id);
  if (sqlite3_step(ig.get()) != SQLITE_DONE) return SqlError(db_, "insert gap");
  return static_cast<int64_t>(env->size());
}

Status Store::RecordGap(const Gap& gap, const std::string& kafka_topic, Priority priority) {
  std::lock_guard<std::mutex> lock(mu_);
  Transaction txn(db_);
  EDGESYNC_RETURN_IF_ERROR(txn.Begun());
  Result<int64_t> grown = AddGapLocked(gap, kafka_topic, priority);
  if (!grown.ok()) return grown.status();
  EDGESYNC_RETURN_IF_ERROR(txn.Commit("commit gap"));
  bytes_ += static_cast<uint64_t>(*grown);
  return Status::OK();
}

Status Store::GiveBackSpaceLocked(bool force) {
  // The pages only move with rows: a store idle since the last look is not
  // looked at again (the sealer calls this every second), unless that look
  // failed (a full disk, an I/O error) a minute ago or more.
  // sqlite3_total_changes (not its 64-bit form, SQLite 3.37+) is only
  // compared for equality.
  constexpr int64_t kRetryUs = 60'000'000;
  const int changes = sqlite3_total_changes(db_);
  const int64_t now = env_->MonotonicMicros();
  if (!force && space_looked_at_ && changes == space_looked_at_changes_ &&
      (space_retry_at_ == 0 || now < space_retry_at_)) {
    return Status::OK();
  }
  // Until this look succeeds, it counts as failed.
  space_looked_at_ = true;
  space_looked_at_changes_ = changes;
  space_retry_at_ = now + kRetryUs;
  auto looked = [&] {
    space_retry_at_ = 0;
    return Status::OK();
  };
  int64_t page_size = 0, pages = 0, free_pages = 0;
  EDGESYNC_RETURN_IF_ERROR(PageCounts(&page_size, &pages, &free_pages));
  const uint64_t free_bytes = static_cast<uint64_t>(free_pages * page_size);
  const uint64_t live_bytes = static_cast<uint64_t>((pages - free_pages) * page_size);
  // Vacuuming moves live pages into the holes: worth its writes only when
  // the file is mostly holes (after a drained backlog), or the disk is short.
  const bool vacuum = free_bytes > 0 && (force || (free_bytes >= kVacuumMinBytes &&
                                                   free_bytes >= live_bytes));
  if (!vacuum && !force) return looked();
  EDGESYNC_RETURN_IF_ERROR(Exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  // In steps, each checkpointed: the moved pages pass through the WAL, so
  // one big step would need as much free space as it gives back.
  constexpr int64_t kStepBytes = 256 << 10;
  const std::string step = "PRAGMA incremental_vacuum(" + std::to_string(kStepBytes / page_size) + ")";
  for (int64_t left = vacuum ? free_pages : 0; left > 0; left -= kStepBytes / page_size) {
    EDGESYNC_RETURN_IF_ERROR(Exec(step.c_str()));
    EDGESYNC_RETURN_IF_ERROR(Exec("PRAGMA wal_checkpoint(TRUNCATE)"));
  }
  return looked();
}

namespace {

// The columns CountsFromRow reads, from `batches` (grouped or not).
constexpr const char* kCountColumns =
    "COALESCE(SUM(gap=0),0), COALESCE(SUM(events),0), "
    "COALESCE(SUM(CASE WHEN gap=0 THEN size ELSE 0 END),0), COALESCE(SUM(gap),0), "
    "COALESCE(MIN(CASE WHEN gap=0 THEN first_us END),0)";

StoreCounts CountsFromRow(Stmt& q, int first) {
  StoreCounts c;
  c.batches = static_cast<uint64_t>(q.ColInt(first));
  c.events = static_cast<uint64_t>(q.ColInt(first + 1));
  c.bytes = static_cast<uint64_t>(q.ColInt(first + 2));
  c.gap_records = static_cast<uint64_t>(q.ColInt(first + 3));
  c.oldest_event_us = q.ColInt(first + 4);
  return c;
}

}  // namespace

Result<StoreCounts> Store::Counts(CheckWait wait) {
  std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
  if (!Lock(wait, &lock)) return CheckRunning();
  Stmt q(db_, (std::string("SELECT ") + kCountColumns + " FROM batches").c_str());
  if (!q.ok() || sqlite3_step(q.get()) != SQLITE_ROW) return SqlError(db_, "count batches");
  return CountsFromRow(q, 0);
}

Result<std::map<std::string, StoreCounts>> Store::CountsByStream(CheckWait wait) {
  std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
  if (!Lock(wait, &lock)) return CheckRunning();
  Stmt q(db_, (std::string("SELECT stream, ") + kCountColumns + " FROM batches GROUP BY stream").c_str());
  if (!q.ok()) return SqlError(db_, "prepare batch count");
  std::map<std::string, StoreCounts> out;
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) out[q.ColText(0)] = CountsFromRow(q, 1);
  if (rc != SQLITE_DONE) return SqlError(db_, "count batches by stream");
  return out;
}

Result<std::vector<std::string>> Store::StreamsOfTopic(const std::string& kafka_topic) {
  std::lock_guard<std::mutex> lock(mu_);
  Stmt q(db_, "SELECT DISTINCT stream FROM batches WHERE kafka_topic=? ORDER BY stream");
  if (!q.ok()) return SqlError(db_, "prepare stream query");
  q.Text(1, kafka_topic);
  std::vector<std::string> out;
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) out.push_back(q.ColText(0));
  if (rc != SQLITE_DONE) return SqlError(db_, "read streams");
  return out;
}

Result<std::vector<Gap>> Store::Gaps(CheckWait wait) {
  std::unique_lock<std::mutex> lock(mu_, std::defer_lock);
  if (!Lock(wait, &lock)) return CheckRunning();
  Stmt q(db_,
         "SELECT stream, first_seq, last_seq, events, bytes, first_us, last_us, reason, at_us "
         "FROM gaps ORDER BY id");
  if (!q.ok()) return SqlError(db_, "prepare gap query");
  std::vector<Gap> out;
  int rc;
  while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
    Gap g;
    g.stream = q.ColText(0);
    g.first_seq = static_cast<uint64_t>(q.ColInt(1));
    g.last_seq = static_cast<uint64_t>(q.ColInt(2));
    g.events = static_cast<uint64_t>(q.ColInt(3));
    g.bytes = static_cast<uint64_t>(q.ColInt(4));
    g.first_event_us = q.ColInt(5);
    g.last_event_us = q.ColInt(6);
    g.reason = q.ColText(7);
    g.at_us = q.ColInt(8);
    out.push_back(std::move(g));
  }
  if (rc != SQLITE_DONE) return SqlError(db_, "read gaps");
  return out;
}

bool Store::check_pending() const { return check_pending_.load(); }

bool Store::checking() const { return checking_.load(); }

bool Store::Lock(CheckWait wait, std::unique_lock<std::mutex>* lock) {
  if (wait == CheckWait::kWait) {
    lock->lock();
    return true;
  }
  // Under gate_mu_: Check cannot claim the store between this test and
  // the lock, so mu_ is held at most by a short call (a commit, a read).
  std::lock_guard<std::mutex> gate(gate_mu_);
  if (checking_) return false;
  lock->lock();
  return true;
}

namespace {
constexpr std::string_view kCheckRunning = " is being checked (quick_check): try again after it";
}  // namespace

Status Store::CheckRunning() const {
  return Status::Unavailable("store " + path_ + std::string(kCheckRunning));
}

bool Store::IsCheckRunning(const Status& st) {
  return st.code() == Status::Code::kUnavailable && st.message().ends_with(kCheckRunning);
}

Status Store::Check() {
  {
    // Claimed before mu_ is taken: from here kDontWait callers back off.
    std::lock_guard<std::mutex> gate(gate_mu_);
    checking_ = true;
  }
  std::lock_guard<std::mutex> lock(mu_);
  struct Release {
    std::atomic<bool>* checking;
    ~Release() { *checking = false; }  // before mu_ is released
  } release{&checking_};
  if (closing_) return Status::Aborted("store " + path_ + " closing: check not run");
  // Prepared while no interrupt can be pending (none is sent before
  // check_running_): stepped after the check, it clears one that arrived
  // as quick_check's statement ended. SQLite 3.40 ignores such a leftover
  // when it prepares, but newer versions check it there and would fail the
  // next BEGIN or DELETE with SQLITE_INTERRUPT.
  Stmt clear(db_, "SELECT 1");
  // Asks SQLite to give up once closing_ is set; only around this
  // statement, so it can never end anybody else's.
  sqlite3_progress_handler(
      db_, 100, [](void* self) -> int { return static_cast<Store*>(self)->closing_.load() ? 1 : 0; },
      this);
  {
    std::lock_guard<std::mutex> running(interrupt_mu_);
    check_running_ = true;
  }
  Status st = CheckIntegrity(/*deep=*/true);
  {
    std::lock_guard<std::mutex> running(interrupt_mu_);
    check_running_ = false;
  }
  sqlite3_progress_handler(db_, 0, nullptr, nullptr);
  const bool interrupted = sqlite3_errcode(db_) == SQLITE_INTERRUPT;
  if (clear.ok()) {
    // Before mu_ is released: no interrupt reaches the next statement.
    // A statement starting while none runs resets the connection's flag.
    (void)sqlite3_step(clear.get());
    sqlite3_reset(clear.get());
  }
  if (!st.ok() && (closing_ || interrupted)) {
    return Status::Aborted("store " + path_ + " closing: check interrupted");
  }
  check_pending_ = false;
  verified_ = st.ok();
  return st;
}

void Store::StartCheck(std::function<void(const Status&)> done) {
  if (!check_pending_ || check_thread_.joinable()) return;
  check_thread_ = std::thread([this, done = std::move(done)] {
    const int64_t start = env_->MonotonicMicros();
    Status st = Check();
    if (st.ok()) {
      options_.logger->info("store: integrity check passed ({} ms, after intake started)",
                            (env_->MonotonicMicros() - start) / 1000);
    } else if (st.code() == Status::Code::kCorruption) {
      options_.logger->error("store: {}. Batches already in it may be unreadable; the agent keeps "
                             "running, and at its next start moves the store aside and starts a new one "
                             "with a store-corrupt gap per stream: restart edgesync to do that now",
                             st.message());
    } else if (st.code() != Status::Code::kAborted) {
      options_.logger->warn("store: integrity check failed to run: {}; the next start checks the "
                            "whole store before intake", st.ToString());
    }
    if (done) done(st);
    check_done_ = true;
  });
}

Result<uint64_t> Store::FileBytes() {
  uint64_t total = 0;
  for (const std::string& p : {path_, path_ + "-wal"}) {
    Result<uint64_t> n = env_->FileSize(p);
    if (n.ok()) total += *n;
  }
  return total;
}

namespace {

// What a damaged store still tells.
struct Remains {
  struct Stream {
    bool state_known = false;
    StreamState state;
    uint64_t batches = 0, events = 0, bytes = 0, min_seq = 0, max_seq = 0;
    int64_t first_us = 0, last_us = 0;
  };
  bool batches_known = false;  // the batches table could be read to its end
  std::map<std::string, Stream> streams;
};

// Reads whatever the file at `path` still answers; every failure just
// leaves the corresponding facts unknown.
Remains ReadRemains(Env* env, const std::string& path) {
  Remains out;
  std::unique_ptr<EnvVfs> vfs;
  sqlite3* db = nullptr;
  if (!OpenDatabase(env, path, SQLITE_OPEN_READWRITE, &vfs, &db).ok()) {
    sqlite3_close(db);
    return out;
  }
  {
    Stmt q(db, "SELECT name, next_seq, journal_segment, journal_offset FROM streams");
    while (q.ok() && sqlite3_step(q.get()) == SQLITE_ROW) {
      Remains::Stream& r = out.streams[q.ColText(0)];
      r.state_known = true;
      r.state.next_seq = static_cast<uint64_t>(q.ColInt(1));
      r.state.sealed = {static_cast<uint64_t>(q.ColInt(2)), static_cast<uint64_t>(q.ColInt(3))};
    }
  }
  // Gap records are not batches; a version-1 file has no gap column.
  for (const char* where : {"WHERE gap=0", ""}) {
    Stmt q(db, (std::string("SELECT stream, COUNT(*), SUM(events), SUM(size), MIN(seq), "
                            "MAX(seq), MIN(first_us), MAX(last_us) FROM batches ") +
                where + " GROUP BY stream")
                   .c_str());
    if (!q.ok()) continue;
    int rc;
    while ((rc = sqlite3_step(q.get())) == SQLITE_ROW) {
      Remains::Stream& r = out.streams[q.ColText(0)];
      r.batches = static_cast<uint64_t>(q.ColInt(1));
      r.events = static_cast<uint64_t>(q.ColInt(2));
      r.bytes = static_cast<uint64_t>(q.ColInt(3));
      r.min_seq = static_cast<uint64_t>(q.ColInt(4));
      r.max_seq = static_cast<uint64_t>(q.ColInt(5));
      r.first_us = q.ColInt(6);
      r.last_us = q.ColInt(7);
    }
    out.batches_known = rc == SQLITE_DONE;
    break;
  }
  sqlite3_close(db);
  return out;
}

std::string UtcStamp(int64_t us) {
  std::time_t t = static_cast<std::time_t>(us / 1'000'000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

}  // namespace

Result<std::unique_ptr<Store>> OpenOrReplaceStore(Env* env, const std::string& path,
                                                  StoreOptions options,
                                                  const std::vector<StreamSpec>& streams,
                                                  StoreReplacement* replacement) {
  Result<std::unique_ptr<Store>> store = Store::Open(env, path, options);
  if (store.ok() || store.status().code() != Status::Code::kCorruption) return store;

  // Move it aside, never delete it: it is evidence.
  replacement->replaced = true;
  replacement->reason = store.status().message();
  std::string moved = path + ".corrupt-" + UtcStamp(env->NowMicros());
  for (int n = 2; env->Exists(moved); ++n) {
    moved = path + ".corrupt-" + UtcStamp(env->NowMicros()) + "-" + std::to_string(n);
  }
  EDGESYNC_RETURN_IF_ERROR(env->Rename(path, moved));
  if (env->Exists(path + "-wal")) EDGESYNC_RETURN_IF_ERROR(env->Rename(path + "-wal", moved + "-wal"));
  (void)env->RemoveFile(path + "-shm");  // the WAL index is rebuilt from the WAL
  EDGESYNC_RETURN_IF_ERROR(env->SyncDir(DirName(path)));
  replacement->moved_to = moved;
  Remains remains = ReadRemains(env, moved);

  store = Store::Open(env, path, options);
  if (!store.ok()) return store;
  // A sequence no batch of the old store can have reached, for streams
  // whose state is unreadable: reusing one would make the central side drop
  // new batches as duplicates. Microseconds since the epoch grow faster than
  // any stream's batches; 2^40 covers a device whose clock was reset.
  const uint64_t fresh = std::max<uint64_t>(static_cast<uint64_t>(env->NowMicros()), 1ull << 40);
  for (const StreamSpec& s : streams) {
    auto it = remains.streams.find(s.name);
    Remains::Stream r = it == remains.streams.end() ? Remains::Stream{} : it->second;
    StreamState state;
    if (r.state_known) {
      state = r.state;
    } else {
      state.next_seq = std::max(fresh, r.max_seq + 1);
    }
    EDGESYNC_RETURN_IF_ERROR((*store)->SeedStream(s.name, state));
    if (remains.batches_known && r.batches == 0 && r.state_known) continue;  // nothing was lost
    if (state.next_seq <= 1) continue;  // the stream never sealed a batch
    Gap g;
    g.stream = s.name;
    g.first_seq = remains.batches_known && r.batches > 0 ? r.min_seq : 1;
    g.last_seq = state.next_seq - 1;
    g.events = r.events;
    g.bytes = r.bytes;
    g.first_event_us = r.first_us;
    g.last_event_us = r.last_us;
    g.reason = format::kGapStoreCorrupt;
    g.at_us = env->NowMicros();
    EDGESYNC_RETURN_IF_ERROR((*store)->RecordGap(g, s.kafka_topic, s.priority));
    replacement->gaps.push_back(std::move(g));
  }
  return store;
}

}  // namespace edgesync

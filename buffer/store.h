// Store: the SQLite database (WAL mode) holding sealed batches until Kafka
// has them, the per-stream state that makes batch sequences gapless and
// journal recovery exact, and the record of every gap: batches the agent
// had to give up (quota, full disk, age, a corrupt store). A gap is itself
// queued for upload as a small gap record, so the central side learns what
// it will never get.
//
// Durability: every commit is synchronous (synchronous=FULL): when Commit
// returns ok, the batch survives a power cut, so the journal part it came
// from may be deleted. Space is given back as batches leave (incremental
// vacuum) and the WAL is checkpointed and truncated so it stays small.
//
// Integrity: a store closed cleanly after a check that passed (quick_check
// at Open or Check) records so in its `meta` table; Open clears the mark.
// With StoreOptions::defer_check, Open skips quick_check (it reads every
// page: seconds for a full store on eMMC) when it finds the mark, and runs
// only cheap checks (header, freelist, schema); the owner then runs Check
// off the start's critical path (StartCheck: on a thread of the store's own,
// once intake runs). After an unclean stop, or a check that failed or never
// finished, the mark is missing and Open runs quick_check as before.
//
// I/O: through EnvVfs (buffer/sqlite_vfs.h) over the store's Env, in
// exclusive locking mode, in production as in the tests that cut power,
// fill the disk or fail I/O under SQLite. While a store is open nothing
// else can open it (OpenReadOnly is Unavailable, the sqlite3 shell finds it
// locked): a running agent tells its figures through its status socket.
//
// Thread safety: all methods may be called from any thread; one internal
// mutex serialises them (the sealer commits and evicts, the uploader reads
// and deletes). The deferred check holds it for its whole run, so the
// callers that must not wait that long pass CheckWait::kDontWait (the
// sealer's periodic work, the agent's figures) and get Unavailable at once
// while the check runs; ReleaseMemory never waits for it.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/env.h"
#include "base/option_table.h"
#include "base/priority.h"
#include "base/status.h"
#include "format/envelope.h"
#include "buffer/journal.h"

struct sqlite3;

namespace spdlog {
class logger;
}

namespace edgesync {

class EnvVfs;

// A stream as the buffer sees it.
struct StreamSpec {
  std::string name;         // the journal directory name: no '/', not "." or ".."
  std::string kafka_topic;
  Priority priority = Priority::kNormal;
  bool operator==(const StreamSpec&) const = default;
};

struct SealedBatch {
  int64_t id = 0;              // row id, set by the store
  std::string stream;
  std::string kafka_topic;
  Priority priority = Priority::kNormal;
  uint64_t seq = 0;            // batch sequence; for a gap record, its first lost sequence
  uint32_t events = 0;         // 0 for a gap record
  int64_t first_event_us = 0;
  int64_t last_event_us = 0;
  bool gap_record = false;     // the envelope reports a gap instead of holding events
  std::string envelope;
};

struct StreamState {
  uint64_t next_seq = 1;       // sequence the next sealed batch gets
  JournalPosition sealed;      // journal position up to which batches hold the events
};

struct StoreCounts {
  uint64_t batches = 0;        // sealed batches waiting for Kafka
  uint64_t events = 0;
  uint64_t bytes = 0;          // their envelope bytes
  uint64_t gap_records = 0;    // gap records waiting for Kafka
  int64_t oldest_event_us = 0; // first event time of the oldest buffered batch; 0: none
};

// Adds `c` to `sum` (the oldest event is the older of the two).
inline void AddCounts(const StoreCounts& c, StoreCounts* sum) {
  sum->batches += c.batches;
  sum->events += c.events;
  sum->bytes += c.bytes;
  sum->gap_records += c.gap_records;
  if (c.oldest_event_us > 0 && (sum->oldest_event_us == 0 || c.oldest_event_us < sum->oldest_event_us)) {
    sum->oldest_event_us = c.oldest_event_us;
  }
}

// What the store keeps: the [buffer] options it owns (declared in store.cpp).
struct StoreLimits {
  uint64_t max_bytes = 256ull << 20;           // envelope bytes held; above: evict
  uint64_t min_free_bytes = 64ull << 20;       // free space kept on the file system
  int64_t max_age_us = 7ll * 24 * 3600 * 1'000'000;  // older batches expire; 0: never
  uint64_t cache_bytes = 512u << 10;           // SQLite's page cache (given back when quiet)
  static const OptionTable<StoreLimits>& Options();
  bool operator==(const StoreLimits&) const = default;
};

// Whether a call waits for a running Check (seconds on eMMC) or returns
// Unavailable at once, without touching the store.
enum class CheckWait { kWait, kDontWait };

struct StoreOptions : StoreLimits {
  std::shared_ptr<spdlog::logger> logger;      // null: spdlog's default logger
  std::string device_id;                       // written into gap records
  std::optional<DeviceSigner> signer;          // signs gap records (the agent's device key)
  // After a clean close, Open skips quick_check and leaves it to Check or
  // StartCheck (see the top of this file). Off: Open always checks.
  bool defer_check = false;
};

class Store {
 public:
  // Opens or creates the database at `path` and migrates its schema, then
  // checks it (quick_check, unless deferred: see above; header, freelist,
  // schema). Corruption when the file is damaged or not a store: see
  // OpenOrReplaceStore. `env` must outlive the store.
  static Result<std::unique_ptr<Store>> Open(Env* env, const std::string& path,
                                             StoreOptions options = {});
  // Opens an existing store for reading only (`edgesync status` while the
  // agent is stopped): no migration, no check, nothing written. Only the
  // counting queries (Counts, CountsByStream, Gaps) are meant for it.
  // Unavailable while an agent has the store open (its lock: sqlite_vfs.h).
  static Result<std::unique_ptr<Store>> OpenReadOnly(Env* env, const std::string& path);
  // Waits for (interrupts) a running StartCheck; marks a clean close when a
  // check passed since Open.
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Frees what SQLite caches for this connection and does not need (its
  // page cache beyond dirty pages): after a burst, for a small board.
  // Does nothing while a check runs (it would wait for it).
  void ReleaseMemory();

  // State of `stream` (defaults for a stream never seen).
  Result<StreamState> LoadStream(const std::string& stream);
  // Sets the state of a stream that has no batches yet (a replaced store
  // continuing the old one's sequences).
  Status SeedStream(const std::string& stream, StreamState state);
  // In one transaction: inserts `batch` (its seq must be the stream's
  // next_seq) and advances the stream to next_seq+1 and `sealed`.
  // Sets batch->id. With kDontWait, Unavailable while a check runs.
  Status Commit(SealedBatch* batch, JournalPosition sealed, CheckWait wait = CheckWait::kWait);

  // Up to `limit` batches and gap records not handed out yet: gap records
  // first, then highest priority first, oldest first, leaving out rows for
  // `skip_topics` (Kafka topics the uploader cannot send to now). Each
  // returned row is leased until Delete or Release: not handed out again,
  // never evicted.
  Result<std::vector<SealedBatch>> Next(size_t limit, const std::set<std::string>& skip_topics = {});
  // Ends the lease of a row that was not delivered: it is sent again later.
  void Release(int64_t id);
  // Removes a row once Kafka has acknowledged it and ends its lease.
  // Removing a missing id is ok.
  Status Delete(int64_t id);
  // The same for several rows in one transaction (one sync for them all).
  Status Delete(const std::vector<int64_t>& ids);

  // Gives up batches as the limits demand, in this order: expired ones
  // (older than max_age, by their last event), then lowest priority and
  // oldest first while the store holds more than max_bytes, then while the
  // file system has less than min_free_bytes free. Leased rows and gap
  // records are never evicted. Each run of consecutive sequences evicted
  // becomes a Gap, recorded and queued for upload in the same transaction
  // as the deletion. A gap record never changes once written, so a copy
  // sent twice is recognisably the same. Returns the gaps recorded.
  // With kDontWait, Unavailable while a check runs.
  Result<std::vector<Gap>> Enforce(CheckWait wait = CheckWait::kWait);
  // Records `gap` and queues its gap record for upload to `kafka_topic`.
  Status RecordGap(const Gap& gap, const std::string& kafka_topic, Priority priority);

  // With kDontWait (here, in CountsByStream and Gaps), Unavailable while a
  // check runs.
  Result<StoreCounts> Counts(CheckWait wait = CheckWait::kWait);
  // The same per stream (the batches' stream: a lane's name).
  Result<std::map<std::string, StoreCounts>> CountsByStream(CheckWait wait = CheckWait::kWait);
  // The streams that have batches or gap records queued for `kafka_topic`.
  Result<std::vector<std::string>> StreamsOfTopic(const std::string& kafka_topic);
  // Every gap recorded (uploaded or not) younger than max_age, oldest first.
  Result<std::vector<Gap>> Gaps(CheckWait wait = CheckWait::kWait);

  // Bytes of the database and its WAL on disk, for tests and status.
  Result<uint64_t> FileBytes();

  // True while Open deferred quick_check and no Check has finished yet.
  bool check_pending() const;
  // True while Check holds (or is about to take) the store's lock: calls
  // with CheckWait::kDontWait return Unavailable meanwhile.
  bool checking() const;
  // True for the Unavailable a kDontWait call returns because a check runs
  // (SQLITE_BUSY and others are Unavailable too).
  static bool IsCheckRunning(const Status& st);
  // Runs the deferred quick_check now (again, if it ran already), holding
  // the store's lock: calls that wait for it (the uploader's reads, the
  // default) wait, so it never shares the connection with them; calls with
  // CheckWait::kDontWait never wait for it (a brief handshake: once
  // checking() is seen false, such a call takes the lock before the check). Corruption when it
  // fails: the store then stays unmarked, so the next Open checks at once
  // and OpenOrReplaceStore moves it aside as at any start; Aborted when the
  // destructor interrupted it.
  Status Check();
  // Runs Check on a thread of the store's own if it is pending; `done` (may
  // be empty) gets its result on that thread. StopCheck or the destructor
  // interrupts and joins it.
  void StartCheck(std::function<void(const Status&)> done = {});
  // Interrupts the check StartCheck runs (a progress handler installed only
  // around its statement; and, as SQLite 3.40 never calls that handler
  // during quick_check's page walk, sqlite3_interrupt, sent only while that
  // statement runs, its flag cleared before the lock is released) and waits
  // for its thread: a stop never waits for the check. The check then counts
  // as not finished, so the next Open runs it. No check runs on this store
  // afterwards.
  void StopCheck();

 private:
  Store(Env* env, std::string path, StoreOptions options);
  struct Victim {
    SealedBatch batch;  // without its envelope
    uint64_t size;
  };
  Status Exec(const char* sql);
  Status Migrate();
  // quick_check, unless `deep` is false: then the cheap checks only.
  Status CheckIntegrity(bool deep);
  // PRAGMA page_size, page_count and freelist_count.
  Status PageCounts(int64_t* page_size, int64_t* pages, int64_t* free_pages);
  Status LoadTotals();
  // Takes mu_ into `lock` (unlocked on entry); with kDontWait, only unless
  // a check holds or claimed it: false then, mu_ not taken.
  bool Lock(CheckWait wait, std::unique_lock<std::mutex>* lock);
  Status CheckRunning() const;
  // The methods below require mu_.
  // Evictable rows (not leased, not gap records) matching `where` (which
  // may use ?1 = arg), lowest priority and oldest first, until `enough`
  // says the bytes taken so far suffice.
  Result<std::vector<Victim>> CandidatesLocked(const char* where, int64_t arg,
                                               const std::function<bool(uint64_t)>& enough);
  // In one transaction: deletes the victims and records their gaps.
  Status EvictLocked(std::vector<Victim> victims, const char* reason, std::vector<Gap>* gaps);
  // Inside a transaction: records `gap` and queues its gap record. Returns
  // the record's size.
  Result<int64_t> AddGapLocked(const Gap& gap, const std::string& kafka_topic, Priority priority);
  // Returns free pages to the file system when the file is mostly free (or
  // `force`), and truncates the WAL.
  Status GiveBackSpaceLocked(bool force);

  Env* env_;
  std::string path_;
  StoreOptions options_;
  std::unique_ptr<EnvVfs> vfs_;  // set when env_ is not the POSIX Env
  std::mutex mu_;                // serialises every use of db_ and the fields below
  sqlite3* db_ = nullptr;
  std::set<int64_t> leased_;
  std::string device_id_;        // for gap records: the option, else what the store knows
  uint64_t bytes_ = 0;           // SUM(size) of all rows
  int64_t next_age_check_ = 0;   // monotonic µs
  // sqlite3_total_changes at GiveBackSpaceLocked's last look, and when to
  // look again though nothing changed if that look failed (0: it did not).
  bool space_looked_at_ = false;
  int space_looked_at_changes_ = 0;
  int64_t space_retry_at_ = 0;  // monotonic µs
  bool read_only_ = false;
  std::atomic<bool> check_pending_{false};  // Open deferred quick_check
  std::atomic<bool> verified_{false};       // a quick_check passed since Open
  std::atomic<bool> closing_{false};        // the destructor runs: a check in progress gives up
  std::atomic<bool> check_done_{false};     // check_thread_ has finished its work
  // Check sets checking_ under gate_mu_ before it takes mu_; a kDontWait
  // caller tests it and takes mu_ under gate_mu_, so the check can never
  // take mu_ between that caller's test and its lock. Order: gate_mu_, mu_.
  std::mutex gate_mu_;
  std::atomic<bool> checking_{false};
  std::mutex interrupt_mu_;                 // orders check_running_ and sqlite3_interrupt
  bool check_running_ = false;              // Check's statement runs; guarded by interrupt_mu_
  std::thread check_thread_;
};

// What OpenOrReplaceStore found in a store it had to replace.
struct StoreReplacement {
  bool replaced = false;
  std::string reason;            // what was wrong with it
  std::string moved_to;          // where the old file now is (kept for forensics)
  std::vector<Gap> gaps;         // one per stream, reason store-corrupt, with what could be read
};

// Opens the store at `path`; when it is corrupt (damaged, or not a store),
// moves it (and its WAL) aside to `<path>.corrupt-<UTC time>`, never
// deleting it, opens a fresh one and continues each stream's sequences
// after what the old file still tells (or, where it tells nothing, after
// a value no earlier batch can have reached), recording a store-corrupt
// gap per stream. `streams` are the configured streams (name, Kafka topic,
// priority). Other errors (permission, I/O) are returned as they are.
Result<std::unique_ptr<Store>> OpenOrReplaceStore(Env* env, const std::string& path,
                                                  StoreOptions options,
                                                  const std::vector<StreamSpec>& streams,
                                                  StoreReplacement* replacement);

}  // namespace edgesync

// edgesync-bench-buffer: what the buffer costs the disk and how fast its
// store is, each beside a baseline measured in the same run on the same
// file system.
//
// 1. Bytes written per payload byte: the real agent on a real broker and the
//    Kafka mock (up, so batches are uploaded and deleted: a device's steady
//    state), fed 300-byte JSON events at a fixed rate. The agent's
//    /proc/<pid>/io write_bytes over a steady-state window, divided by the
//    payload bytes published in it. Baseline: a thread of this process that
//    write()s each payload to a file at the same rate and fdatasyncs once a
//    second (the least a durable journal of raw payloads costs). At each of
//    --rates (10, 100, 1000 and 5000 events/s), then encrypted at 100 and
//    1000. With --series DIR, the bytes written per event by rate as
//    DIR/bytes_per_event.tsv (bench/plots/bytes_per_event.gp).
// 2. Store accept rate: Store::Commit of real 1000-event envelopes, beside
//    the same bytes appended to a plain file with one fdatasync each.
// 3. Store::Open of a store holding 1,000,000 events, beside sqlite3_open_v2
//    and SELECT count(*) on the same file.
//
// write_bytes counts the pages a process dirties in the page cache of a
// block-device file system (not tmpfs), not the file system's own metadata
// and journal. Figures go to stdout as key=value lines; per-run details to
// stderr.
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "format/crypto.h"
#include "format/envelope.h"
#include "format/format.h"
#include "buffer/journal.h"
#include "format/record.h"
#include "harness/agent_figures.h"
#include "bench/median.h"
#include "bench/series.h"
#include "buffer/store.h"
#include "harness/agent_process.h"
#include "harness/kafka_cluster.h"
#include "harness/mosquitto.h"
#include "harness/process.h"
#include "harness/publisher.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace h = edgesync::harness;

constexpr const char* kTopic = "bench/t1/payment/authorization";
constexpr uint64_t kPayloadBytes = 300;    // h::PaymentEvent's size
constexpr uint32_t kBatchEvents = 1000;    // events per envelope in parts 2 and 3
constexpr long kTmpfsMagic = 0x01021994;   // statfs f_type of tmpfs (linux/magic.h)

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

using edgesync::bench::Median;

// write_bytes and cancelled_write_bytes of a /proc/.../io file.
struct Io {
  bool ok = false;
  uint64_t write_bytes = 0;
  uint64_t cancelled = 0;
};

Io ReadIo(const std::string& path) {
  Io io;
  std::ifstream in(path);
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "write_bytes:") {
      io.write_bytes = value;
      io.ok = true;
    } else if (key == "cancelled_write_bytes:") {
      io.cancelled = value;
    }
  }
  return io;
}

// The I/O of the calling thread only (other threads of this process publish
// or run the baseline meanwhile).
Io ThreadIo() { return ReadIo("/proc/thread-self/io"); }

bool IsTmpfs(const std::string& path) {
  struct statfs s {};
  return ::statfs(path.c_str(), &s) == 0 && static_cast<long>(s.f_type) == kTmpfsMagic;
}

std::string ExeDir() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string(".") : exe.parent_path().string();
}

uint64_t FileSize(const std::string& path) {
  std::error_code ec;
  auto n = std::filesystem::file_size(path, ec);
  return ec ? 0 : n;
}

// A fresh directory under `base`, removed with its contents at the end.
class WorkDir {
 public:
  explicit WorkDir(const std::string& base) {
    std::error_code ec;
    std::filesystem::create_directories(base, ec);
    std::string tmpl = base + "/edgesync-bench-buffer.XXXXXX";
    if (::mkdtemp(tmpl.data()) != nullptr) path_ = tmpl;
  }
  ~WorkDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Calls step(i) for i = 0, 1, ... on a thread, `rate` times per second on a
// fixed schedule (sleeping to it, catching up when late), until Stop().
class Paced {
 public:
  Paced(double rate, std::function<bool(uint64_t)> step)
      : thread_([this, rate, fn = std::move(step)] {
          tid_ = ::gettid();
          started_ = true;
          started_.notify_all();
          const auto start = Clock::now();
          for (uint64_t i = 0; !stop_; ++i) {
            std::this_thread::sleep_until(start + std::chrono::duration_cast<Clock::duration>(
                                                      std::chrono::duration<double>(i / rate)));
            if (!fn(i)) {
              failed_ = true;
              return;
            }
            done_.store(i + 1, std::memory_order_release);
          }
        }) {
    started_.wait(false);
  }
  ~Paced() { Stop(); }
  Paced(const Paced&) = delete;
  Paced& operator=(const Paced&) = delete;

  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  uint64_t done() const { return done_.load(std::memory_order_acquire); }
  bool failed() const { return failed_; }
  // The I/O of the stepping thread alone.
  Io ThreadIoOf() const { return ReadIo("/proc/self/task/" + std::to_string(tid_) + "/io"); }

 private:
  std::atomic<bool> stop_{false}, failed_{false}, started_{false};
  std::atomic<uint64_t> done_{0};
  pid_t tid_ = 0;
  std::thread thread_;  // last: starts once the fields above exist
};

// Bytes one event takes in the journal, measured by writing the events the
// publisher sends (as the agent records them: topic, receive time, QoS,
// payload; MQTT 3.1.1 brings no content type or properties) through a real
// Journal, a segment per `per_segment` events as the agent's batches rotate.
// With `key`, the journal is encrypted as the agent's is with [encryption].
double JournalBytesPerEvent(const std::string& topic, const std::string& dir, int per_segment,
                            const edgesync::crypto::Key* key) {
  const int kEvents = 4 * per_segment;
  edgesync::JournalRecovery rec;
  auto j = edgesync::Journal::Open(edgesync::Env::Default(), dir, {}, &rec, key, key != nullptr);
  if (!j.ok()) return 0;
  edgesync::Record r;
  r.topic = topic;
  r.qos = 1;
  std::string encoded;
  for (int i = 0; i < kEvents; ++i) {
    r.received_at_us = edgesync::Env::Default()->NowMicros();
    r.payload = h::PaymentEvent("bench", static_cast<uint64_t>(i + 1));
    encoded.clear();
    edgesync::EncodeRecord(r, &encoded);
    if (!(*j)->Append(encoded).ok()) return 0;
    if ((i + 1) % per_segment == 0 && !(*j)->Rotate().ok()) return 0;
  }
  j->reset();
  uint64_t bytes = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) bytes += entry.file_size();
  return static_cast<double>(bytes) / kEvents;
}

// Batch totals of the live store, as the agent tells them on its status
// socket (it holds the store locked while it runs).
struct StoreView {
  uint64_t sealed = 0;   // batches sealed by this run of the agent
  uint64_t pending = 0;  // batches waiting for Kafka
};

StoreView ReadStore(const std::string& state_dir) {
  const edgesync::harness::AgentFigures st = edgesync::harness::ReadAgentFigures(state_dir);
  return StoreView{st.sealed_batches, st.buffered_batches};
}

// --- 1. Bytes written per payload byte --------------------------------------

struct Sample {
  Io agent, baseline;
  uint64_t published = 0, appended = 0, sealed = 0, log_bytes = 0;
  Clock::time_point at;
};

struct AmpResult {
  bool ok = false;
  double seconds = 0;
  uint64_t write_bytes = 0, cancelled = 0, events = 0;
  uint64_t baseline_write_bytes = 0, baseline_events = 0;
  uint64_t batches = 0, pending_at_end = 0, log_bytes = 0, store_file_bytes = 0;
  uint64_t journal_bytes = 0;  // frames appended for the window's events
};

// `public_key`: empty, or a key file that turns [encryption] on.
AmpResult WriteAmplification(h::MosquittoBroker* broker, h::KafkaCluster* cluster,
                             const std::string& dir, int rate, int warmup_s, int window_s,
                             const std::string& public_key) {
  AmpResult r;
  const std::string name = "rate" + std::to_string(rate) + (public_key.empty() ? "" : "-enc");
  const std::string base = dir + "/" + name, state = base + "-state";
  const std::string kafka_topic = "bench.buffer." + name;
  // A topic of its own per rate: the broker keeps queueing for the stopped
  // agent of an earlier rate (persistent session), but nothing matches it.
  const std::string topic = "bench/" + name + "/payment/authorization";
  if (!cluster->CreateTopic(kafka_topic, 1).ok()) return r;
  // The product's defaults for everything the bench need not point somewhere:
  // batches of 1000 events / 512 KiB / 2 s, journal fdatasync every 1 s.
  const std::string cfg = R"([agent]
device_id = "bench-device"
stats_interval = 0
[mqtt]
host = "127.0.0.1"
client_id = "edgesync-bench-buffer-)" + name + R"("
[[streams]]
name = "payments"
topics = ["bench/)" + name + R"(/payment/#"]
kafka_topic = ")" + kafka_topic + "\"\n" +
                          (public_key.empty() ? "" : "[encryption]\npublic_key = \"" + public_key + "\"\n");
  std::ofstream(base + ".toml") << h::PointConfigAt(cfg, broker->port(), cluster->bootstrap(), state);
  auto agent = h::StartAgent(base + ".toml", base + ".log");
  if (!agent.ok()) {
    std::fprintf(stderr, "bench: %s\n", agent.status().ToString().c_str());
    return r;
  }
  const std::string agent_io = "/proc/" + std::to_string(agent->pid()) + "/io";
  if (!ReadIo(agent_io).ok) {
    std::fprintf(stderr, "bench: cannot read %s\n", agent_io.c_str());
    return r;
  }
  auto pub = h::Publisher::Connect("127.0.0.1", broker->port(), "bench-buffer-pub-" + name, 100);
  if (!pub.ok()) return r;
  const int fd = ::open((base + "-baseline.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
  if (fd < 0) return r;

  h::Publisher* p = pub->get();
  Paced publisher(rate, [p, &topic](uint64_t i) {
    return p->Publish(topic, h::PaymentEvent("bench", i + 1), 1).ok();
  });
  // The baseline: one write() per payload, fdatasync once a second.
  auto next_sync = Clock::now() + 1s;
  Paced appender(rate, [fd, &next_sync](uint64_t i) {
    const std::string payload = h::PaymentEvent("bench", i + 1);
    if (::write(fd, payload.data(), payload.size()) != static_cast<ssize_t>(payload.size())) return false;
    if (Clock::now() >= next_sync) {
      if (::fdatasync(fd) != 0) return false;
      next_sync += 1s;
    }
    return true;
  });

  auto sample = [&] {
    Sample s;
    s.at = Clock::now();
    s.agent = ReadIo(agent_io);
    s.baseline = appender.ThreadIoOf();
    s.published = publisher.done();
    s.appended = appender.done();
    s.sealed = ReadStore(state).sealed;
    s.log_bytes = FileSize(base + ".log");
    return s;
  };
  std::this_thread::sleep_for(std::chrono::seconds(warmup_s));
  const Sample a = sample();
  std::this_thread::sleep_for(std::chrono::seconds(window_s));
  const Sample b = sample();
  publisher.Stop();
  appender.Stop();
  ::close(fd);
  const StoreView end = ReadStore(state);
  r.store_file_bytes = FileSize(state + "/store.db") + FileSize(state + "/store.db-wal");
  const bool alive = agent->Running();
  (void)(*pub)->WaitAcked(30s);
  (void)agent->Stop(30s);
  if (publisher.failed() || appender.failed() || !alive || !a.agent.ok || !b.agent.ok ||
      !a.baseline.ok || !b.baseline.ok) {
    std::fprintf(stderr, "bench: %d events/s: %s\n", rate,
                 !alive ? "the agent exited (see its log)" : "publishing or sampling failed");
    return r;
  }
  r.seconds = Seconds(b.at - a.at);
  r.write_bytes = b.agent.write_bytes - a.agent.write_bytes;
  r.cancelled = b.agent.cancelled - a.agent.cancelled;
  r.events = b.published - a.published;
  r.baseline_write_bytes = b.baseline.write_bytes - a.baseline.write_bytes;
  r.baseline_events = b.appended - a.appended;
  r.batches = b.sealed - a.sealed;
  // Batches close at 1000 events or after 2 s: per segment, whichever first.
  // The same key material as the agent's is not needed: any key costs the same.
  const edgesync::crypto::Key journal_key{};
  r.journal_bytes = static_cast<uint64_t>(
      static_cast<double>(r.events) *
      JournalBytesPerEvent(topic, base + "-journal-estimate", std::min(1000, 2 * rate),
                           public_key.empty() ? nullptr : &journal_key));
  r.pending_at_end = end.pending;
  r.log_bytes = b.log_bytes - a.log_bytes;
  r.ok = r.events > 0 && r.baseline_events > 0;
  return r;
}

// --- 2. and 3. The store in this process ------------------------------------

// A real envelope: `events` PaymentEvents sealed as the sealer seals them.
std::string RealEnvelope(uint32_t events) {
  const int64_t t0 = 1'700'000'000'000'000;  // receive times 1 ms apart
  edgesync::Record r;
  r.topic = kTopic;
  r.qos = 1;
  std::string body;
  for (uint32_t i = 1; i <= events; ++i) {
    r.received_at_us = t0 + i * 1000;
    r.payload = h::PaymentEvent("bench", i);
    edgesync::AppendToBody(r, &body);
  }
  edgesync::BatchHeader header;
  header.device_id = "bench-device";
  header.stream = "payments";
  header.batch_seq = 1;
  header.event_count = events;
  header.first_event_us = t0 + 1000;
  header.last_event_us = t0 + int64_t{events} * 1000;
  auto sealed = edgesync::SealEnvelope(header, body);
  return sealed.ok() ? *sealed : std::string();
}

edgesync::SealedBatch BatchOf(const std::string& envelope) {
  edgesync::SealedBatch b;
  b.stream = "payments";
  b.kafka_topic = "edge.payments";
  b.events = kBatchEvents;
  b.first_event_us = 1'700'000'000'001'000;
  b.last_event_us = b.first_event_us + (kBatchEvents - 1) * 1000;
  b.envelope = envelope;
  return b;
}

// Commits the envelope as batch 1, 2, ... `count` times or for `seconds`.
// Returns the batches committed, 0 on error.
uint64_t CommitBatches(edgesync::Store* store, const std::string& envelope, uint64_t count,
                       double seconds) {
  edgesync::SealedBatch b = BatchOf(envelope);
  const auto start = Clock::now();
  uint64_t n = 0;
  while (n < count && Seconds(Clock::now() - start) < seconds) {
    b.seq = n + 1;
    auto st = store->Commit(&b, edgesync::JournalPosition{n + 1, 0});
    if (!st.ok()) {
      std::fprintf(stderr, "bench: commit: %s\n", st.ToString().c_str());
      return 0;
    }
    ++n;
  }
  return n;
}

void RemoveStore(const std::string& path) {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix, ec);
}

struct Rate {
  double per_sec = 0;
  double write_bytes_per_batch = 0;
};

Rate StoreAcceptRun(const std::string& dir, const std::string& envelope, double seconds, int run) {
  Rate r;
  const std::string path = dir + "/accept-" + std::to_string(run) + ".db";
  {
    auto store = edgesync::Store::Open(edgesync::Env::Default(), path);
    if (!store.ok()) {
      std::fprintf(stderr, "bench: %s\n", store.status().ToString().c_str());
      return r;
    }
    const Io before = ThreadIo();
    const auto start = Clock::now();
    const uint64_t n = CommitBatches(store->get(), envelope, UINT64_MAX, seconds);
    const double took = Seconds(Clock::now() - start);
    const Io after = ThreadIo();
    if (n > 0) {
      r.per_sec = static_cast<double>(n) / took;
      r.write_bytes_per_batch = static_cast<double>(after.write_bytes - before.write_bytes) / n;
    }
  }
  RemoveStore(path);
  return r;
}

// The same bytes appended to a plain file, one fdatasync per batch.
Rate AppendRun(const std::string& dir, const std::string& envelope, double seconds, int run) {
  Rate r;
  const std::string path = dir + "/append-" + std::to_string(run) + ".bin";
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
  if (fd < 0) return r;
  const Io before = ThreadIo();
  const auto start = Clock::now();
  uint64_t n = 0;
  bool ok = true;
  while (ok && Seconds(Clock::now() - start) < seconds) {
    ok = ::write(fd, envelope.data(), envelope.size()) == static_cast<ssize_t>(envelope.size()) &&
         ::fdatasync(fd) == 0;
    n += ok;
  }
  const double took = Seconds(Clock::now() - start);
  const Io after = ThreadIo();
  ::close(fd);
  std::error_code ec;
  std::filesystem::remove(path, ec);
  if (ok && n > 0) {
    r.per_sec = static_cast<double>(n) / took;
    r.write_bytes_per_batch = static_cast<double>(after.write_bytes - before.write_bytes) / n;
  }
  return r;
}

// Drops the file's clean pages from the page cache, so the next open reads
// it from the device (as after a reboot).
void Evict(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return;
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  ::close(fd);
}

// Milliseconds of Store::Open (the store is closed again outside the clock).
double TimeStoreOpen(const std::string& path, bool cold) {
  if (cold) Evict(path);
  const auto start = Clock::now();
  auto store = edgesync::Store::Open(edgesync::Env::Default(), path);
  const double ms = Seconds(Clock::now() - start) * 1000;
  if (!store.ok()) {
    std::fprintf(stderr, "bench: open: %s\n", store.status().ToString().c_str());
    return -1;
  }
  return ms;
}

// Milliseconds of sqlite3_open_v2 + SELECT count(*) FROM batches.
double TimeSqliteOpenCount(const std::string& path, bool cold) {
  if (cold) Evict(path);
  const auto start = Clock::now();
  sqlite3* db = nullptr;
  int64_t rows = -1;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) == SQLITE_OK) {
    sqlite3_stmt* q = nullptr;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM batches", -1, &q, nullptr) == SQLITE_OK &&
        sqlite3_step(q) == SQLITE_ROW) {
      rows = sqlite3_column_int64(q, 0);
    }
    sqlite3_finalize(q);
  }
  const double ms = Seconds(Clock::now() - start) * 1000;
  sqlite3_close(db);
  return rows == kBatchEvents ? ms : -1;  // 1000 batches of 1000 events
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 3, window_s = 60, warmup_s = 10;
  double store_seconds = 3;
  std::string dir, series_dir;
  // 100 and 1000 are the figures of RESULTS.md (and the encrypted runs' rates).
  std::vector<int> rates = {10, 100, 1000, 5000};
  CLI::App app{"edgesync-bench-buffer: disk bytes written per payload byte, store accept rate "
               "and store open time, each beside a baseline"};
  app.add_option("--runs", runs, "runs of the store figures (median reported)")->capture_default_str();
  app.add_option("--window-seconds", window_s, "steady-state window of the write figure")
      ->capture_default_str();
  app.add_option("--warmup-seconds", warmup_s, "agent warm-up before the window")->capture_default_str();
  app.add_option("--store-seconds", store_seconds, "length of one store accept run")->capture_default_str();
  app.add_option("--rates", rates, "events/s of the plain write figures")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--series", series_dir,
                 "write bytes written per event by rate (bytes_per_event.tsv) into this directory");
  app.add_option("--dir", dir,
                 "where to put the working directory (default: $TMPDIR or /tmp unless that is "
                 "tmpfs, else next to this program); must not be tmpfs");
  CLI11_PARSE(app, argc, argv);
  if (runs < 1 || window_s < 1 || warmup_s < 0 || store_seconds <= 0 ||
      std::any_of(rates.begin(), rates.end(), [](int r) { return r < 1; })) {
    std::fprintf(stderr, "bench: --runs, --window-seconds, --store-seconds and --rates must be positive\n");
    return 2;
  }

  // write_bytes sees only block-device I/O: keep everything off tmpfs.
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    dir = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    if (IsTmpfs(dir)) dir = ExeDir() + "/bench-buffer-work";
  }
  WorkDir work(dir);
  if (work.path().empty()) {
    std::fprintf(stderr, "bench: cannot create a directory under %s\n", dir.c_str());
    return 1;
  }
  if (IsTmpfs(work.path())) {
    std::fprintf(stderr, "bench: WARNING: %s is on tmpfs: write_bytes will read 0; pass --dir "
                 "on a disk\n", work.path().c_str());
  }
  std::fprintf(stderr, "bench: working in %s\n", work.path().c_str());

  // 1. Bytes written per payload byte, at each of `rates`, then encrypted at
  // 100 and 1000 events/s.
  {
    h::BrokerOptions bo;
    bo.max_queued_messages = -1;
    bo.max_inflight_messages = 100;
    auto broker = h::MosquittoBroker::Start(work.path() + "/broker", bo);
    auto cluster = h::KafkaCluster::Start(1);
    if (!broker.ok() || !cluster.ok()) {
      std::fprintf(stderr, "bench: cannot start the broker or the Kafka mock cluster\n");
      return 1;
    }
    // The central key for the encrypted runs.
    edgesync::crypto::Key central{};
    (void)edgesync::crypto::Random(&central);
    const std::string pub_path = work.path() + "/central.pub";
    std::ofstream(pub_path) << edgesync::crypto::PublicKeyPem(*edgesync::crypto::X25519PublicKey(central));
    std::vector<std::pair<int, bool>> runs_of_rates;
    for (int rate : rates) runs_of_rates.emplace_back(rate, false);
    runs_of_rates.insert(runs_of_rates.end(), {{100, true}, {1000, true}});
    // Bytes written per event by rate: the agent plain, the baseline beside
    // it, the agent encrypted.
    edgesync::bench::Series agent_per_event, baseline_per_event, encrypted_per_event;
    for (const auto& [rate, encrypted] : runs_of_rates) {
      AmpResult r = WriteAmplification(broker->get(), cluster->get(), work.path(), rate, warmup_s,
                                       window_s, encrypted ? pub_path : "");
      if (!r.ok) {
        std::fprintf(stderr, "bench: write figure at %d events/s failed\n", rate);
        return 1;
      }
      const double payload = static_cast<double>(r.events * kPayloadBytes);
      const double per_byte = static_cast<double>(r.write_bytes) / payload;
      const double base = static_cast<double>(r.baseline_write_bytes) /
                          static_cast<double>(r.baseline_events * kPayloadBytes);
      // Where the bytes go. The journal: the frames appended, plus the tail
      // page each fdatasync cleans and the next append dirties again, which
      // the baseline (same rate, same sync interval) pays too: its bytes over
      // its payload. The rest is the store (SQLite WAL, checkpoints into
      // store.db) and whatever else the agent wrote (its log, counted apart).
      const uint64_t resync = r.baseline_write_bytes > r.baseline_events * kPayloadBytes
                                  ? r.baseline_write_bytes - r.baseline_events * kPayloadBytes
                                  : 0;
      const uint64_t journal = std::min(r.write_bytes, r.journal_bytes + resync);
      const uint64_t rest = r.write_bytes - journal;
      std::fprintf(stderr,
                   "bench: %d events/s%s: %.1f s window, %llu events (%.0f/s), agent write_bytes %llu "
                   "(cancelled %llu) = %.2f per payload byte; journal ~%llu (%.2f per payload "
                   "byte), store and rest ~%llu over %llu batches = %.0f per batch; log %llu; "
                   "store+WAL at end %llu bytes, %llu batches pending; baseline write+fdatasync/s "
                   "%llu bytes for %llu payloads = %.2f per payload byte\n",
                   rate, encrypted ? " (encrypted)" : "", r.seconds, static_cast<unsigned long long>(r.events),
                   static_cast<double>(r.events) / r.seconds,
                   static_cast<unsigned long long>(r.write_bytes),
                   static_cast<unsigned long long>(r.cancelled), per_byte,
                   static_cast<unsigned long long>(journal), static_cast<double>(journal) / payload,
                   static_cast<unsigned long long>(rest), static_cast<unsigned long long>(r.batches),
                   r.batches ? static_cast<double>(rest) / static_cast<double>(r.batches) : 0.0,
                   static_cast<unsigned long long>(r.log_bytes),
                   static_cast<unsigned long long>(r.store_file_bytes),
                   static_cast<unsigned long long>(r.pending_at_end),
                   static_cast<unsigned long long>(r.baseline_write_bytes),
                   static_cast<unsigned long long>(r.baseline_events), base);
      (encrypted ? encrypted_per_event : agent_per_event).emplace_back(rate, per_byte * kPayloadBytes);
      if (!encrypted) baseline_per_event.emplace_back(rate, base * kPayloadBytes);
      const std::string k = std::to_string(rate) + (encrypted ? "_enc" : "");
      std::printf("bytes_written_per_payload_byte_%s=%.2f\n", k.c_str(), per_byte);
      std::printf("baseline_append_sync_per_payload_byte_%s=%.2f\n", k.c_str(), base);
      std::printf("write_ratio_%s=%.2f\n", k.c_str(), per_byte / base);
      std::printf("write_bytes_%s=%llu\n", k.c_str(), static_cast<unsigned long long>(r.write_bytes));
      std::printf("events_%s=%llu\n", k.c_str(), static_cast<unsigned long long>(r.events));
      std::printf("journal_bytes_%s=%llu\n", k.c_str(), static_cast<unsigned long long>(journal));
      std::printf("store_bytes_%s=%llu\n", k.c_str(), static_cast<unsigned long long>(rest));
      std::printf("batches_%s=%llu\n", k.c_str(), static_cast<unsigned long long>(r.batches));
      std::fflush(stdout);
    }
    std::printf("window_seconds=%d\n", window_s);
    if (!series_dir.empty() &&
        !edgesync::bench::WriteSeries(
            series_dir + "/bytes_per_event.tsv",
            "edgesync-bench-buffer: disk bytes written (write_bytes) per 300-byte event by events/s, " +
                std::to_string(window_s) + " s steady-state window each, Kafka up",
            "events_per_sec\tbytes_written_per_event",
            {{"agent", agent_per_event},
             {"baseline: write() each payload + fdatasync once a second", baseline_per_event},
             {"agent, [encryption] on", encrypted_per_event}})) {
      std::fprintf(stderr, "bench: cannot write %s/bytes_per_event.tsv\n", series_dir.c_str());
      return 1;
    }
  }

  const std::string envelope = RealEnvelope(kBatchEvents);
  if (envelope.empty()) {
    std::fprintf(stderr, "bench: cannot seal an envelope\n");
    return 1;
  }

  // 2. Store accept rate, interleaved with its baseline.
  std::vector<double> store_rates, append_rates, store_wb, append_wb;
  for (int run = 0; run < runs; ++run) {
    Rate b = AppendRun(work.path(), envelope, store_seconds, run);
    Rate s = StoreAcceptRun(work.path(), envelope, store_seconds, run);
    if (b.per_sec <= 0 || s.per_sec <= 0) {
      std::fprintf(stderr, "bench: store run %d failed\n", run);
      return 1;
    }
    store_rates.push_back(s.per_sec);
    append_rates.push_back(b.per_sec);
    store_wb.push_back(s.write_bytes_per_batch);
    append_wb.push_back(b.write_bytes_per_batch);
    std::fprintf(stderr,
                 "bench: store run %d: Store::Commit %.0f batches/s (%.0f bytes written each), "
                 "write+fdatasync %.0f batches/s (%.0f bytes written each); envelope %zu bytes\n",
                 run + 1, s.per_sec, s.write_bytes_per_batch, b.per_sec, b.write_bytes_per_batch,
                 envelope.size());
  }
  const double store_rate = Median(store_rates), append_rate = Median(append_rates);
  std::printf("store_batches_per_sec=%.0f\n", store_rate);
  std::printf("store_mb_per_sec=%.2f\n", store_rate * static_cast<double>(envelope.size()) / 1e6);
  std::printf("store_events_per_sec=%.0f\n", store_rate * kBatchEvents);
  std::printf("baseline_append_fdatasync_batches_per_sec=%.0f\n", append_rate);
  std::printf("store_ratio=%.2f\n", store_rate / append_rate);
  std::printf("store_write_bytes_per_batch=%.0f\n", Median(store_wb));
  std::printf("baseline_append_write_bytes_per_batch=%.0f\n", Median(append_wb));
  std::printf("envelope_bytes=%zu\n", envelope.size());
  std::fflush(stdout);

  // 3. Open time of a store holding 1,000,000 events (1000 batches of 1000).
  const std::string big = work.path() + "/open-1m.db";
  {
    auto store = edgesync::Store::Open(edgesync::Env::Default(), big);
    if (!store.ok() || CommitBatches(store->get(), envelope, 1000, 1e9) != 1000) {
      std::fprintf(stderr, "bench: cannot build the 1M-event store\n");
      return 1;
    }
  }  // closing checkpoints the WAL into the file
  const double mib = static_cast<double>(FileSize(big)) / (1 << 20);
  std::vector<double> open_ms, base_ms, open_cold_ms, base_cold_ms;
  for (int run = 0; run < runs; ++run) {
    base_ms.push_back(TimeSqliteOpenCount(big, false));
    open_ms.push_back(TimeStoreOpen(big, false));
    base_cold_ms.push_back(TimeSqliteOpenCount(big, true));
    open_cold_ms.push_back(TimeStoreOpen(big, true));
    if (base_ms.back() < 0 || open_ms.back() < 0 || base_cold_ms.back() < 0 || open_cold_ms.back() < 0) {
      std::fprintf(stderr, "bench: open run %d failed\n", run);
      return 1;
    }
    std::fprintf(stderr,
                 "bench: open run %d (%.1f MiB): Store::Open %.1f ms (cold %.1f ms), "
                 "sqlite3_open_v2 + count(*) %.2f ms (cold %.2f ms)\n",
                 run + 1, mib, open_ms.back(), open_cold_ms.back(), base_ms.back(), base_cold_ms.back());
  }
  const double open = Median(open_ms), base_open = Median(base_ms);
  const double open_cold = Median(open_cold_ms), base_open_cold = Median(base_cold_ms);
  std::printf("store_open_ms_1m_events=%.1f\n", open);
  std::printf("baseline_sqlite_open_count_ms=%.2f\n", base_open);
  std::printf("store_open_ratio=%.1f\n", open / base_open);
  std::printf("store_open_cold_ms_1m_events=%.1f\n", open_cold);
  std::printf("baseline_sqlite_open_count_cold_ms=%.2f\n", base_open_cold);
  std::printf("store_open_cold_ratio=%.1f\n", open_cold / base_open_cold);
  std::printf("store_file_mib_1m_events=%.1f\n", mib);
  std::printf("buffer_runs=%d\n", runs);
  return 0;
}

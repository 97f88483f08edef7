#include "buffer/sealer.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "harness/agent_process.h"
#include "tests/support/fault_env.h"
#include "tests/support/slow_reads_env.h"
#include "tests/support/temp_dir.h"
#include "tests/support/virtual_clock_env.h"

namespace edgesync {
namespace {

struct Fixture {
  harness::TempDir dir = testing::NewTempDir();
  std::unique_ptr<Store> store;
  SealerOptions options;
  std::vector<StreamSpec> streams = {{"payments", "edge.payments", Priority::kHigh},
                                     {"telemetry", "edge.telemetry", Priority::kLow}};
  Fixture() {
    StoreOptions so;
    so.max_age_us = 0;  // the events below were received in 1970
    store = std::move(Store::Open(Env::Default(), dir / "store.db", so)).value();
    options.device_id = "term-0001";
    options.journal_dir = dir / "journal";
    options.max_events = 10;
    options.max_age_us = 3'600'000'000;  // tests close batches by count or Stop
  }
};

Record Event(int i) {
  Record r;
  r.topic = "terminal/t1/payment/capture";
  r.received_at_us = 1000 + i;
  r.qos = 1;
  r.payload = "{\"seq\":" + std::to_string(i) + "}";
  return r;
}

// All records in the store, batches in sequence order, per stream.
std::vector<Record> StoredRecords(Store* store, const std::string& stream) {
  std::vector<Record> out;
  auto batches = store->Next(100000);
  EXPECT_TRUE(batches.ok());
  for (const auto& b : *batches) store->Release(b.id);  // only looking
  std::vector<OpenedEnvelope> envs;
  for (const auto& b : *batches) {
    if (b.stream != stream || b.gap_record) continue;
    auto e = OpenEnvelope(b.envelope);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->header.batch_seq, b.seq);
    envs.push_back(std::move(e).value());
  }
  std::sort(envs.begin(), envs.end(),
            [](const auto& a, const auto& b) { return a.header.batch_seq < b.header.batch_seq; });
  for (size_t i = 0; i < envs.size(); ++i) {
    EXPECT_EQ(envs[i].header.batch_seq, i + 1) << "batch sequences have a gap";
    for (auto& r : envs[i].records) out.push_back(r);
  }
  return out;
}

// Counts the journal's fdatasyncs, and makes every page read of the store
// slow (a slow eMMC): its deferred check then runs for seconds.
class SlowStoreEnv : public testing::SlowReadsEnv {
 public:
  using SlowReadsEnv::SlowReadsEnv;
  Result<std::unique_ptr<AppendFile>> OpenAppend(const std::string& path) override {
    auto f = SlowReadsEnv::OpenAppend(path);
    if (!f.ok()) return f;
    return std::unique_ptr<AppendFile>(new Journal(std::move(f).value(), &syncs_));
  }
  int syncs() const { return syncs_.load(); }

 private:
  class Journal : public AppendFile {
   public:
    Journal(std::unique_ptr<AppendFile> f, std::atomic<int>* syncs) : f_(std::move(f)), syncs_(syncs) {}
    Status Append(std::string_view data) override { return f_->Append(data); }
    Status Sync() override {
      ++*syncs_;
      return f_->Sync();
    }
    Status Close() override { return f_->Close(); }

   private:
    std::unique_ptr<AppendFile> f_;
    std::atomic<int>* syncs_;
  };
  std::atomic<int> syncs_{0};
};

// The store's deferred check holds the store for its whole run; the
// journal sync (the power-cut window) must not wait for it, nor may the
// sealer thread stand still; what it would have sealed follows the check.
TEST(Sealer, KeepsSyncingTheJournalWhileTheStoresCheckRuns) {
  harness::TempDir dir = testing::NewTempDir();
  SlowStoreEnv env(Env::Default());
  StoreOptions so;
  so.max_age_us = 0;
  so.max_bytes = 64ull << 20;
  so.defer_check = true;
  {
    // 2 MiB of batches, checked at creation and closed cleanly.
    auto store = Store::Open(&env, dir / "store.db", so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (uint64_t seq = 1; seq <= 500; ++seq) {
      SealedBatch b;
      b.stream = "filler";
      b.kafka_topic = "edge.filler";
      b.seq = seq;
      b.envelope = std::string(4096, static_cast<char>('a' + seq % 26));
      ASSERT_TRUE((*store)->Commit(&b, {}).ok());
    }
  }
  env.SetReadDelayMicros(1000);  // about 1 ms a page: a check of several seconds
  auto opened = Store::Open(&env, dir / "store.db", so);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  std::unique_ptr<Store> store = std::move(opened).value();
  ASSERT_TRUE(store->check_pending());
  SealerOptions options;
  options.device_id = "term-0001";
  options.journal_dir = dir / "journal";
  options.max_events = 10;
  options.max_age_us = 3'600'000'000;
  options.sync_interval_us = 20'000;
  std::vector<StreamSpec> streams = {{"payments", "edge.payments", Priority::kHigh}};
  auto sealer = Sealer::Open(&env, store.get(), options, streams);
  ASSERT_TRUE(sealer.ok()) << sealer.status().ToString();
  (*sealer)->Start();
  std::atomic<bool> checked{false};
  store->StartCheck([&](const Status&) { checked = true; });
  ASSERT_TRUE(harness::PollUntil([&] { return store->checking() || checked; }, std::chrono::seconds(10)));
  ASSERT_TRUE(store->checking()) << "the check was over before the test began";
  // An open batch: its journal is synced by the sealer thread.
  int before = env.syncs();
  for (int i = 0; i < 9; ++i) ASSERT_TRUE((*sealer)->Accept(0, Event(i)).ok());
  ASSERT_TRUE(harness::PollUntil([&] { return env.syncs() > before; }, std::chrono::seconds(10)));
  // Full: the sealer would commit it now, but the store is busy.
  ASSERT_TRUE((*sealer)->Accept(0, Event(9)).ok());
  // The next open batch, journaled after that: synced while the check runs.
  before = env.syncs();
  for (int i = 10; i < 15; ++i) ASSERT_TRUE((*sealer)->Accept(0, Event(i)).ok());
  ASSERT_TRUE(harness::PollUntil([&] { return env.syncs() > before || checked; }, std::chrono::seconds(30)));
  EXPECT_GT(env.syncs(), before);
  EXPECT_TRUE(store->checking()) << "the journal was synced only once the check had finished";
  EXPECT_EQ((*sealer)->stats().sealed_batches, 0u) << "sealed while the check held the store";
  // After the check, the batch closed meanwhile is sealed; the stop seals the rest.
  env.SetReadDelayMicros(0);
  ASSERT_TRUE(harness::PollUntil([&] { return checked.load(); }, std::chrono::seconds(60)));
  ASSERT_TRUE(harness::PollUntil([&] { return (*sealer)->stats().sealed_batches == 1; },
                                 std::chrono::seconds(10)));
  ASSERT_TRUE((*sealer)->Stop().ok());
  std::vector<Record> got = StoredRecords(store.get(), "payments");
  ASSERT_EQ(got.size(), 15u);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(got[i], Event(i));
}

TEST(Sealer, SealsFullBatchesAndTheRestOnStop) {
  Fixture f;
  auto sealer = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
  ASSERT_TRUE(sealer.ok()) << sealer.status().ToString();
  std::atomic<int> sealed_calls{0};
  (*sealer)->SetOnSealed([&] { ++sealed_calls; });
  (*sealer)->Start();
  for (int i = 0; i < 25; ++i) ASSERT_TRUE((*sealer)->Accept(0, Event(i)).ok());
  ASSERT_TRUE((*sealer)->Accept(1, Event(100)).ok());
  ASSERT_TRUE((*sealer)->Stop().ok());
  EXPECT_EQ(sealed_calls.load(), 4);  // 10 + 10 + 5 on payments, 1 on telemetry
  std::vector<Record> got = StoredRecords(f.store.get(), "payments");
  ASSERT_EQ(got.size(), 25u);
  for (int i = 0; i < 25; ++i) EXPECT_EQ(got[i], Event(i));
  EXPECT_EQ(StoredRecords(f.store.get(), "telemetry").size(), 1u);
  auto stats = (*sealer)->stats();
  EXPECT_EQ(stats.accepted, 26u);
  EXPECT_EQ(stats.sealed_events, 26u);
  // Everything is sealed, so the journal holds only empty open segments.
  auto names = Env::Default()->ListDir(f.options.journal_dir + "/payments");
  ASSERT_TRUE(names.ok());
  for (const auto& n : *names) {
    EXPECT_EQ(Env::Default()->ReadFile(f.options.journal_dir + "/payments/" + n, kMaxOwnFileBytes)->size(), 0u) << n;
  }
}

TEST(Sealer, ClosesBatchesByAge) {
  Fixture f;
  f.options.max_age_us = 50'000;
  auto sealer = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
  ASSERT_TRUE(sealer.ok());
  std::mutex mu;
  std::condition_variable cv;
  bool sealed = false;
  (*sealer)->SetOnSealed([&] {
    std::lock_guard<std::mutex> l(mu);
    sealed = true;
    cv.notify_all();
  });
  (*sealer)->Start();
  ASSERT_TRUE((*sealer)->Accept(0, Event(1)).ok());
  std::unique_lock<std::mutex> l(mu);
  ASSERT_TRUE(cv.wait_for(l, std::chrono::seconds(10), [&] { return sealed; }))
      << "a batch of one event was not sealed by age";
  l.unlock();
  EXPECT_EQ(f.store->Counts()->events, 1u);
  ASSERT_TRUE((*sealer)->Stop().ok());
}

// A stream gone quiet gives its batch buffer and journal compression
// context (about 1 MiB once used) back a second after its last batch
// closed, whether that batch closed full or by age; events less than a
// second apart keep them (no allocation per batch).
TEST(Sealer, AStreamQuietForASecondGivesItsMemoryBackHoweverItsLastBatchClosed) {
  Fixture f;
  testing::VirtualClockEnv clock(Env::Default());
  f.options.max_age_us = 5'000'000;
  auto sealer = Sealer::Open(&clock, f.store.get(), f.options, f.streams);
  ASSERT_TRUE(sealer.ok()) << sealer.status().ToString();
  std::mutex mu;
  std::condition_variable cv;
  int sealed = 0;
  (*sealer)->SetOnSealed([&] {
    std::lock_guard<std::mutex> l(mu);
    ++sealed;
    cv.notify_all();
  });
  auto await_sealed = [&](int n) {
    std::unique_lock<std::mutex> l(mu);
    return cv.wait_for(l, std::chrono::seconds(10), [&] { return sealed >= n; });
  };
  // The sealer thread waits on the clock once its pass is done.
  auto await_idle = [&] { return clock.AwaitIdleWaiters(1); };
  (*sealer)->Start();
  // Full (max_events 10): sealed at once, the lane still has what it used.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE((*sealer)->Accept(0, Event(i)).ok());
  ASSERT_TRUE(await_sealed(1));
  ASSERT_TRUE(await_idle());
  EXPECT_EQ((*sealer)->streams_holding_memory(), 1u) << "released with no time passing";
  clock.Advance(900'000);
  ASSERT_TRUE(await_idle());
  EXPECT_EQ((*sealer)->streams_holding_memory(), 1u) << "released before a quiet second";
  clock.Advance(100'000);
  ASSERT_TRUE(await_idle());
  EXPECT_EQ((*sealer)->streams_holding_memory(), 0u) << "a stream whose last batch closed full kept its memory";

  // By age: one event, its batch closed after max_age, a second of quiet.
  ASSERT_TRUE((*sealer)->Accept(1, Event(100)).ok());
  EXPECT_EQ((*sealer)->streams_holding_memory(), 1u);
  clock.Advance(f.options.max_age_us);
  ASSERT_TRUE(await_sealed(2));
  ASSERT_TRUE(await_idle());
  EXPECT_EQ((*sealer)->streams_holding_memory(), 1u);
  clock.Advance(1'000'000);
  ASSERT_TRUE(await_idle());
  EXPECT_EQ((*sealer)->streams_holding_memory(), 0u) << "a stream whose last batch closed by age kept its memory";
  ASSERT_TRUE((*sealer)->Stop().ok());
  EXPECT_EQ(StoredRecords(f.store.get(), "payments").size(), 10u);
  EXPECT_EQ(StoredRecords(f.store.get(), "telemetry").size(), 1u);
}

TEST(Sealer, CrashBeforeSealingIsRecoveredExactlyOnce) {
  Fixture f;
  {
    auto sealer = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
    ASSERT_TRUE(sealer.ok());
    // Not started: nothing is sealed, like a crash right after the writes.
    // 23 events: two batches close (and would be sealed by the thread), 3 stay open.
    for (int i = 0; i < 23; ++i) ASSERT_TRUE((*sealer)->Accept(0, Event(i)).ok());
    // Never started, so destroying it seals nothing: what is left is only
    // the journal, as after a crash.
    sealer->reset();
  }
  auto sealer = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
  ASSERT_TRUE(sealer.ok()) << sealer.status().ToString();
  EXPECT_EQ((*sealer)->stats().recovered_events, 23u);
  std::vector<Record> got = StoredRecords(f.store.get(), "payments");
  ASSERT_EQ(got.size(), 23u);
  for (int i = 0; i < 23; ++i) EXPECT_EQ(got[i], Event(i));

  // A second restart recovers nothing more: no duplicates.
  (*sealer)->Start();
  ASSERT_TRUE((*sealer)->Accept(0, Event(23)).ok());
  ASSERT_TRUE((*sealer)->Stop().ok());
  sealer->reset();
  auto again = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->stats().recovered_events, 0u);
  EXPECT_EQ(StoredRecords(f.store.get(), "payments").size(), 24u);
}

TEST(Sealer, RecoveryWithAZeroFilledTailSealsEveryRecord) {
  Fixture f;
  {
    auto sealer = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
    ASSERT_TRUE(sealer.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*sealer)->Accept(0, Event(i)).ok());
  }
  std::string dir = f.options.journal_dir + "/payments";
  for (const auto& name : *Env::Default()->ListDir(dir)) {
    std::ofstream(dir + "/" + name, std::ios::binary | std::ios::app) << std::string(16, '\0');
  }
  auto sealer = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
  ASSERT_TRUE(sealer.ok());
  EXPECT_EQ((*sealer)->stats().recovered_events, 3u);
  (*sealer)->Start();
  ASSERT_TRUE((*sealer)->Accept(0, Event(3)).ok());
  ASSERT_TRUE((*sealer)->Stop().ok());
  EXPECT_EQ(StoredRecords(f.store.get(), "payments").size(), 4u);
}

TEST(Sealer, JournalOfARemovedStreamIsKeptNotDeleted) {
  Fixture f;
  {
    auto sealer = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
    ASSERT_TRUE(sealer.ok());
    ASSERT_TRUE((*sealer)->Accept(1, Event(7)).ok());  // telemetry, never sealed
  }
  // Telemetry is dropped from the configuration: its events must survive.
  auto only_payments = Sealer::Open(Env::Default(), f.store.get(), f.options, {f.streams[0]});
  ASSERT_TRUE(only_payments.ok());
  only_payments->reset();
  auto back = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ((*back)->stats().recovered_events, 1u);
  EXPECT_EQ(StoredRecords(f.store.get(), "telemetry").size(), 1u);
}

// The logger handed in through SealerOptions is the one the sealer writes
// to (as LevelDB's info_log): a recovery at open says so there.
TEST(Sealer, LogsToTheLoggerItIsHandedIn) {
  Fixture f;
  {
    auto sealer = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
    ASSERT_TRUE(sealer.ok());
    ASSERT_TRUE((*sealer)->Accept(0, Event(1)).ok());  // journaled, never sealed: recovered below
  }
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(64);
  f.options.logger = std::make_shared<spdlog::logger>("handed-in", sink);
  auto again = Sealer::Open(Env::Default(), f.store.get(), f.options, f.streams);
  ASSERT_TRUE(again.ok());
  std::string lines;
  for (const std::string& l : sink->last_formatted()) lines += l;
  EXPECT_NE(lines.find("journal recovery: stream payments: sealed 1 recovered events"), std::string::npos)
      << lines;
}

TEST(Sealer, FailedJournalWriteIsNotAccepted) {
  Fixture f;
  testing::FaultEnv env(Env::Default());
  auto sealer = Sealer::Open(&env, f.store.get(), f.options, f.streams);
  ASSERT_TRUE(sealer.ok());
  (*sealer)->Start();
  ASSERT_TRUE((*sealer)->Accept(0, Event(1)).ok());
  env.fail_appends = true;
  EXPECT_FALSE((*sealer)->Accept(0, Event(2)).ok());
  env.fail_appends = false;
  ASSERT_TRUE((*sealer)->Accept(0, Event(3)).ok());
  ASSERT_TRUE((*sealer)->Stop().ok());
  std::vector<Record> got = StoredRecords(f.store.get(), "payments");
  ASSERT_EQ(got.size(), 2u);
  EXPECT_EQ(got[0], Event(1));
  EXPECT_EQ(got[1], Event(3));
}

}  // namespace
}  // namespace edgesync

// Power cuts, full disks and I/O errors under the journal and the store,
// through MemEnv (tests/support/mem_env.h): every byte the buffer writes,
// SQLite's included, goes through the Env the tests replace.
//
// The power-cut proof: for 1,000 random cut points (the machine dies at the
// n-th write, sync, rename or delete, then comes back with every unsynced
// write dropped or torn at a random byte), the store always opens, nothing
// that was synced is lost, nothing is duplicated, and what survives is
// exactly the events accepted before some point: a prefix, in order.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <thread>

#include "buffer/sealer.h"
#include "buffer/store.h"
#include "harness/agent_process.h"
#include "tests/support/mem_env.h"

namespace edgesync {
namespace {

using testing::MemEnv;
using namespace std::chrono_literals;

const std::vector<StreamSpec> kStreams = {{"pay", "edge.pay", Priority::kHigh}};
constexpr int kEvents = 60;
constexpr int kSyncEvery = 5;

Record Event(int i) {
  Record r;
  r.topic = "terminal/t1/payment";
  r.received_at_us = 1'000'000 + i;
  r.qos = 1;
  r.payload = "{\"n\":" + std::to_string(i) + ",\"pad\":\"" + std::string(40 + i % 50, 'x') + "\"}";
  return r;
}

int EventNumber(const Record& r) { return std::stoi(r.payload.substr(5)); }

StoreOptions Options() {
  StoreOptions o;
  o.device_id = "term-0001";
  o.max_age_us = 0;  // the events were received in 1970
  o.min_free_bytes = 0;
  return o;
}

SealerOptions Sealing() {
  SealerOptions o;
  o.device_id = "term-0001";
  o.journal_dir = "/state/journal";
  o.max_events = 7;                    // many batches, many commits
  o.max_age_us = 3'600'000'000;        // batches close by count or at Stop
  o.sync_interval_us = 3'600'000'000;  // the test syncs explicitly
  return o;
}

struct Recovered {
  std::vector<int> events;  // in batch order
  bool store_replaced = false;
  std::string problem;
};

// Reopens the buffer as the agent does after a reboot and reads back every
// event, checking the batch sequences on the way.
Recovered Recover(MemEnv* env) {
  Recovered out;
  StoreReplacement replaced;
  auto store = OpenOrReplaceStore(env, "/state/store.db", Options(), kStreams, &replaced);
  if (!store.ok()) {
    out.problem = "store does not open: " + store.status().ToString();
    return out;
  }
  out.store_replaced = replaced.replaced;
  {
    auto sealer = Sealer::Open(env, store->get(), Sealing(), kStreams);
    if (!sealer.ok()) {
      out.problem = "sealer does not open: " + sealer.status().ToString();
      return out;
    }
    (*sealer)->Start();
    Status st = (*sealer)->Stop();
    if (!st.ok()) out.problem = "sealer stop: " + st.ToString();
  }
  auto batches = (*store)->Next(1'000'000);
  if (!batches.ok()) {
    out.problem = "reading batches: " + batches.status().ToString();
    return out;
  }
  std::map<uint64_t, std::vector<int>> by_seq;
  for (const SealedBatch& b : *batches) {
    auto e = OpenEnvelope(b.envelope);
    if (!e.ok()) {
      out.problem = "bad envelope: " + e.status().ToString();
      return out;
    }
    for (const Record& r : e->records) by_seq[b.seq].push_back(EventNumber(r));
  }
  uint64_t expect = 1;
  for (auto& [seq, events] : by_seq) {
    if (seq != expect++) out.problem = "batch sequence jumps to " + std::to_string(seq);
    out.events.insert(out.events.end(), events.begin(), events.end());
  }
  return out;
}

// A buffer on `env`, sealing: the store and a started sealer; false (with
// the store and sealer left as far as they got) when one does not open.
struct Buffer {
  std::unique_ptr<Store> store;
  std::unique_ptr<Sealer> sealer;
  bool Open(MemEnv* env, SealerOptions o = Sealing()) {
    if (!env->CreateDirs("/state").ok()) return false;
    auto st = Store::Open(env, "/state/store.db", Options());
    if (!st.ok()) return false;
    store = std::move(st).value();
    auto se = Sealer::Open(env, store.get(), o, kStreams);
    if (!se.ok()) return false;
    sealer = std::move(se).value();
    sealer->Start();
    return true;
  }
  // Stops and closes everything, as a dying or stopping agent does.
  Status Close() {
    Status st;
    if (sealer) {
      sealer->StopWaitingForSpace();
      st = sealer->Stop();
    }
    sealer.reset();
    store.reset();
    return st;
  }
};

struct Workload {
  int accepted = 0;  // Accept returned ok for events 0..accepted-1
  int durable = 0;   // a SyncJournals that returned ok covered events 0..durable-1
};

// Feeds the events until the power goes, syncing every few events.
Workload RunWorkload(MemEnv* env) {
  Workload w;
  Buffer b;
  if (b.Open(env)) {
    for (int i = 0; i < kEvents; ++i) {
      if (!b.sealer->Accept(0, Event(i)).ok()) break;
      w.accepted = i + 1;
      if (w.accepted % kSyncEvery == 0 && b.sealer->SyncJournals().ok()) w.durable = w.accepted;
    }
  }
  (void)b.Close();
  return w;
}

class PowerCut : public ::testing::TestWithParam<int> {};

TEST_P(PowerCut, RandomCutPointsLoseNothingSyncedAndDuplicateNothing) {
  constexpr int kShards = 4, kCutsPerShard = 250;
  spdlog::set_level(spdlog::level::off);  // a dying disk makes every run log errors
  // How many mutating operations the whole workload takes, uncut.
  uint64_t total_ops;
  {
    MemEnv env(1);
    Workload w = RunWorkload(&env);
    ASSERT_EQ(w.accepted, kEvents);
    total_ops = env.mutating_ops();
    Recovered r = Recover(&env);
    ASSERT_EQ(r.problem, "");
    ASSERT_EQ(r.events.size(), static_cast<size_t>(kEvents));
  }
  ASSERT_GT(total_ops, 100u);
  int torn_runs = 0, lost_unsynced = 0;
  for (int k = 0; k < kCutsPerShard; ++k) {
    const uint64_t seed = static_cast<uint64_t>(GetParam() * kCutsPerShard + k + 1);
    std::mt19937_64 rng(seed);
    const uint64_t cut = rng() % (total_ops + 1);
    const bool tear = seed % 2 == 0;
    MemEnv env(seed);
    env.CutPowerAfter(cut);
    Workload w = RunWorkload(&env);
    env.PowerCut(tear ? MemEnv::CutMode::kTear : MemEnv::CutMode::kDrop);
    Recovered r = Recover(&env);
    const std::string where = "seed " + std::to_string(seed) + ", cut after " +
                              std::to_string(cut) + " of " + std::to_string(total_ops) +
                              " ops, " + (tear ? "torn" : "dropped") + ", accepted " +
                              std::to_string(w.accepted) + ", synced " + std::to_string(w.durable);
    ASSERT_EQ(r.problem, "") << where;
    ASSERT_FALSE(r.store_replaced) << "a power cut must never corrupt the store: " << where;
    // A prefix of what was accepted, in order, no duplicates...
    ASSERT_LE(r.events.size(), static_cast<size_t>(w.accepted)) << where;
    for (size_t i = 0; i < r.events.size(); ++i) {
      ASSERT_EQ(r.events[i], static_cast<int>(i)) << "event " << i << " out of place: " << where;
    }
    // ...holding at least everything synced.
    ASSERT_GE(r.events.size(), static_cast<size_t>(w.durable)) << "synced events lost: " << where;
    torn_runs += tear;
    lost_unsynced += r.events.size() < static_cast<size_t>(w.accepted);
  }
  // The cuts must actually have bitten: some runs lost their unsynced tail.
  EXPECT_GT(lost_unsynced, 0);
  EXPECT_GT(torn_runs, 0);
  static_assert(kShards * kCutsPerShard == 1000);
}

INSTANTIATE_TEST_SUITE_P(Shards, PowerCut, ::testing::Range(0, 4));

// The sealer's own interval sync bounds what a cut can take, without help.
TEST(PowerCutWindow, EventsOlderThanTheSyncIntervalSurvive) {
  MemEnv env(7);
  SealerOptions o = Sealing();
  o.max_events = 1000;
  o.sync_interval_us = 50'000;
  Buffer b;
  ASSERT_TRUE(b.Open(&env, o));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(b.sealer->Accept(0, Event(i)).ok());
  // Wait until the segment holding them has been synced by the sealer thread.
  std::string segment;
  for (const auto& name : *env.ListDir("/state/journal/pay")) segment = "/state/journal/pay/" + name;
  ASSERT_TRUE(harness::PollUntil([&] {
    return env.SyncedContent(segment).size() == *env.FileSize(segment) &&
           env.SyncedContent(segment).size() > 0;
  }, 10s));
  env.CutPowerAfter(0);  // dies now, mid-batch, before any batch was sealed
  (void)b.Close();
  env.PowerCut(MemEnv::CutMode::kTear);
  Recovered r = Recover(&env);
  ASSERT_EQ(r.problem, "");
  EXPECT_EQ(r.events.size(), 10u);
}

TEST(DiskFull, AcceptFailsCleanlyAndResumesWhenThereIsRoom) {
  MemEnv env(3);
  Buffer b;
  ASSERT_TRUE(b.Open(&env));
  int accepted = 0;
  for (; accepted < 20; ++accepted) ASSERT_TRUE(b.sealer->Accept(0, Event(accepted)).ok());
  env.SetCapacity(env.UsedBytes() + 4);  // room for nothing more
  Status full = b.sealer->Accept(0, Event(accepted));
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.code(), Status::Code::kNoSpace) << full.ToString();
  env.SetCapacity(0);
  // The refused event is offered again (the broker redelivers) and goes in.
  for (; accepted < 40; ++accepted) ASSERT_TRUE(b.sealer->Accept(0, Event(accepted)).ok());
  ASSERT_TRUE(b.Close().ok());
  Recovered r = Recover(&env);
  ASSERT_EQ(r.problem, "");
  ASSERT_EQ(r.events.size(), 40u);
  for (int i = 0; i < 40; ++i) EXPECT_EQ(r.events[i], i);
}

TEST(IoError, StoreWriteErrorsKeepEventsInTheJournalUntilTheyClear) {
  MemEnv env(4);
  Buffer b;
  ASSERT_TRUE(b.Open(&env));
  env.FailWrites("store.db");  // the store's disk area goes bad
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(b.sealer->Accept(0, Event(i)).ok());
  EXPECT_FALSE(b.Close().ok()) << "sealing cannot succeed while the store fails";
  env.ClearFailures();
  Recovered r = Recover(&env);
  ASSERT_EQ(r.problem, "");
  ASSERT_EQ(r.events.size(), 30u) << "the journal kept every event the store could not take";
  for (int i = 0; i < 30; ++i) EXPECT_EQ(r.events[i], i);
}

TEST(IoError, JournalWriteErrorIsReportedAndLosesNothingElse) {
  MemEnv env(5);
  Buffer b;
  ASSERT_TRUE(b.Open(&env));
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(b.sealer->Accept(0, Event(i)).ok());
  env.FailWrites("/journal/");
  Status st = b.sealer->Accept(0, Event(10));
  EXPECT_EQ(st.code(), Status::Code::kIOError) << st.ToString();
  env.ClearFailures();
  for (int i = 10; i < 20; ++i) ASSERT_TRUE(b.sealer->Accept(0, Event(i)).ok());
  ASSERT_TRUE(b.Close().ok());
  Recovered r = Recover(&env);
  ASSERT_EQ(r.problem, "");
  ASSERT_EQ(r.events.size(), 20u);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(r.events[i], i);
}

}  // namespace
}  // namespace edgesync

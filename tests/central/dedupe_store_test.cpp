#include "central/dedupe_store.h"

#include <gtest/gtest.h>

#include <sqlite3.h>

#include <fstream>

#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

constexpr int64_t kDay = 86'400'000'000;

class DedupeStoreTest : public ::testing::Test {
 protected:
  std::unique_ptr<DedupeStore> OpenStore() {
    Result<std::unique_ptr<DedupeStore>> s = DedupeStore::Open(path_);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  harness::TempDir dir_ = testing::NewTempDir();
  std::string path_ = dir_ / "dedupe.db";
  std::vector<SequenceTracker::Gap> gaps_;
};

TEST_F(DedupeStoreTest, StateSurvivesReopenExactly) {
  SequenceTracker before(true);
  before.SetTime(10 * kDay);
  for (uint64_t seq : {1, 2, 3, 7, 8, 12}) ASSERT_TRUE(before.Observe("dev-1", "payments", seq, &gaps_));
  ASSERT_TRUE(before.ObserveRange("dev-1", "payments", 20, 1ull << 40, &gaps_));  // huge: u64 round trip
  ASSERT_TRUE(before.Observe("dev-2", std::string("bin\0ary", 7), 5, &gaps_));
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Save(before.TakeDirty()).ok());
  }
  SequenceTracker after(true);
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    Result<size_t> n = store->Load(9 * kDay, &after);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(*n, 2u);
  }
  for (const auto& [device, stream] : {std::pair<std::string, std::string>{"dev-1", "payments"},
                                       {"dev-2", std::string("bin\0ary", 7)}}) {
    const SequenceTracker::StreamState* a = before.Find(device, stream);
    const SequenceTracker::StreamState* b = after.Find(device, stream);
    ASSERT_TRUE(a && b) << stream;
    EXPECT_EQ(*a, *b) << stream;
  }
  // De-duplication continues where it stopped: seen batches are
  // duplicates, the holes are still open, and no new gap is reported.
  std::vector<SequenceTracker::Gap> gaps;
  after.SetTime(10 * kDay);
  EXPECT_FALSE(after.Observe("dev-1", "payments", 2, &gaps));
  EXPECT_FALSE(after.Observe("dev-1", "payments", 8, &gaps));
  EXPECT_FALSE(after.Observe("dev-1", "payments", 123456, &gaps));
  EXPECT_TRUE(after.Observe("dev-1", "payments", 5, &gaps));
  EXPECT_TRUE(after.Observe("dev-1", "payments", (1ull << 40) + 1, &gaps));
  EXPECT_TRUE(gaps.empty());
}

TEST_F(DedupeStoreTest, SaveReplacesAStreamsRowAndOnlyDirtyStreamsAreWritten) {
  SequenceTracker t(true);
  t.SetTime(kDay);
  ASSERT_TRUE(t.Observe("d", "a", 1, &gaps_));
  ASSERT_TRUE(t.Observe("d", "b", 1, &gaps_));
  auto store = OpenStore();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Save(t.TakeDirty()).ok());
  ASSERT_TRUE(t.Observe("d", "a", 2, &gaps_));
  std::vector<SequenceTracker::SavedStream> dirty = t.TakeDirty();
  ASSERT_EQ(dirty.size(), 1u);
  ASSERT_TRUE(store->Save(dirty).ok());
  store.reset();
  SequenceTracker loaded(true);
  store = OpenStore();
  ASSERT_TRUE(store->Load(0, &loaded).ok());
  ASSERT_NE(loaded.Find("d", "a"), nullptr);
  EXPECT_EQ(loaded.Find("d", "a")->contiguous, 2u);
  ASSERT_NE(loaded.Find("d", "b"), nullptr);
  EXPECT_EQ(loaded.Find("d", "b")->contiguous, 1u);
}

TEST_F(DedupeStoreTest, StreamsNotSeenWithinTheAgeAreForgottenOnDiskAndInMemory) {
  SequenceTracker t(true);
  t.SetTime(1 * kDay);
  ASSERT_TRUE(t.Observe("old-device", "s", 1, &gaps_));
  t.SetTime(8 * kDay);
  ASSERT_TRUE(t.Observe("new-device", "s", 1, &gaps_));
  auto store = OpenStore();
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Save(t.TakeDirty()).ok());
  store.reset();

  // A restart on day 9 with a 7-day age: the old device is gone for good.
  SequenceTracker loaded(true);
  store = OpenStore();
  Result<size_t> n = store->Load(9 * kDay - 7 * kDay, &loaded);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(loaded.Find("old-device", "s"), nullptr);
  EXPECT_NE(loaded.Find("new-device", "s"), nullptr);
  store.reset();
  SequenceTracker everything(true);
  store = OpenStore();
  ASSERT_EQ(*store->Load(0, &everything), 1u) << "deleted from the file, not only skipped";

  // While running: day 16, the new device too.
  EXPECT_EQ(everything.ForgetSeenBefore(16 * kDay - 7 * kDay), 1u);
  Result<size_t> gone = store->ForgetSeenBefore(16 * kDay - 7 * kDay);
  ASSERT_TRUE(gone.ok());
  EXPECT_EQ(*gone, 1u);
  SequenceTracker empty(true);
  EXPECT_EQ(*store->Load(0, &empty), 0u);
}

TEST_F(DedupeStoreTest, ASecondUserOfTheFileIsRefused) {
  auto first = OpenStore();
  ASSERT_TRUE(first);
  SequenceTracker t(true);
  ASSERT_TRUE(first->Load(0, &t).ok());
  Result<std::unique_ptr<DedupeStore>> second = DedupeStore::Open(path_);
  Status st = second.ok() ? (*second)->Load(0, &t).status() : second.status();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("another edgesync-unpack"), std::string::npos) << st.ToString();
}

TEST_F(DedupeStoreTest, AFileThatIsNotADedupeDbIsRefused) {
  std::ofstream(path_) << std::string(8192, 'x');
  Result<std::unique_ptr<DedupeStore>> s = DedupeStore::Open(path_);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), Status::Code::kCorruption) << s.status().ToString();
}

// A file of schema 1 (before `reported`) opens, is upgraded, and its
// streams read as if every hole below `highest` had been reported.
TEST_F(DedupeStoreTest, ASchemaOneFileIsUpgradedInPlace) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db,
                         "CREATE TABLE streams (device BLOB NOT NULL, stream BLOB NOT NULL, "
                         "contiguous INTEGER NOT NULL, highest INTEGER NOT NULL, above BLOB NOT NULL, "
                         "last_seen_us INTEGER NOT NULL, PRIMARY KEY (device, stream)) WITHOUT ROWID;"
                         "INSERT INTO streams VALUES (X'6431', X'73', 3, 9, X'', 864000000000000);"
                         "PRAGMA user_version=1;",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  SequenceTracker t(true);
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    Result<size_t> n = store->Load(9 * kDay, &t);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(*n, 1u);
  }
  const SequenceTracker::StreamState* s = t.Find("d1", "s");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->contiguous, 3u);
  EXPECT_EQ(s->reported, 9u);
  // The old reader reported 4..8 when 9 came: the next batch reports only what is new.
  std::vector<SequenceTracker::Gap> gaps;
  t.SetTime(10 * kDay);
  EXPECT_TRUE(t.Observe("d1", "s", 12, &gaps));
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].first, 10u);
  EXPECT_EQ(gaps[0].last, 11u);
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Save(t.TakeDirty()).ok());
    SequenceTracker again(true);
    ASSERT_TRUE(store->Load(9 * kDay, &again).ok());
    ASSERT_NE(again.Find("d1", "s"), nullptr);
    EXPECT_EQ(*again.Find("d1", "s"), *t.Find("d1", "s"));
  }
}

}  // namespace
}  // namespace edgesync

#include "buffer/store.h"

#include <gtest/gtest.h>

#include <fstream>

#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

SealedBatch Batch(const std::string& stream, uint64_t seq, Priority p) {
  SealedBatch b;
  b.stream = stream;
  b.kafka_topic = "edge." + stream;
  b.priority = p;
  b.seq = seq;
  b.events = 10;
  b.first_event_us = 1;
  b.last_event_us = 2;
  b.envelope = "envelope-" + stream + "-" + std::to_string(seq);
  return b;
}

TEST(Store, CommitAdvancesStreamStateAtomically) {
  harness::TempDir dir = testing::NewTempDir();
  auto store = Store::Open(dir / "store.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto fresh = (*store)->LoadStream("payments");
  ASSERT_TRUE(fresh.ok());
  EXPECT_EQ(fresh->next_seq, 1u);

  SealedBatch b = Batch("payments", 1, Priority::kNormal);
  ASSERT_TRUE((*store)->Commit(&b, JournalPosition{3, 0}).ok());
  EXPECT_GT(b.id, 0);
  auto st = (*store)->LoadStream("payments");
  EXPECT_EQ(st->next_seq, 2u);
  EXPECT_EQ(st->sealed, (JournalPosition{3, 0}));

  // The same sequence twice is refused and changes nothing.
  SealedBatch dup = Batch("payments", 1, Priority::kNormal);
  EXPECT_FALSE((*store)->Commit(&dup, JournalPosition{9, 0}).ok());
  EXPECT_EQ((*store)->LoadStream("payments")->sealed, (JournalPosition{3, 0}));
  EXPECT_EQ((*store)->Counts()->batches, 1u);
}

TEST(Store, SurvivesReopen) {
  harness::TempDir dir = testing::NewTempDir();
  {
    auto store = Store::Open(dir / "store.db");
    ASSERT_TRUE(store.ok());
    SealedBatch b = Batch("s", 1, Priority::kHigh);
    ASSERT_TRUE((*store)->Commit(&b, JournalPosition{2, 17}).ok());
  }
  auto store = Store::Open(dir / "store.db");
  ASSERT_TRUE(store.ok());
  auto next = (*store)->Next(10, {});
  ASSERT_TRUE(next.ok());
  ASSERT_EQ(next->size(), 1u);
  EXPECT_EQ((*next)[0].envelope, "envelope-s-1");
  EXPECT_EQ((*next)[0].priority, Priority::kHigh);
  EXPECT_EQ((*store)->LoadStream("s")->sealed, (JournalPosition{2, 17}));
}

TEST(Store, NextDrainsHighestPriorityFirstThenOldest) {
  harness::TempDir dir = testing::NewTempDir();
  auto store = Store::Open(dir / "store.db");
  ASSERT_TRUE(store.ok());
  std::vector<SealedBatch> in = {Batch("low", 1, Priority::kLow), Batch("norm", 1, Priority::kNormal),
                                 Batch("high", 1, Priority::kHigh), Batch("norm", 2, Priority::kNormal),
                                 Batch("high", 2, Priority::kHigh)};
  for (auto& b : in) ASSERT_TRUE((*store)->Commit(&b, {}).ok());
  auto next = (*store)->Next(10, {});
  ASSERT_TRUE(next.ok());
  std::vector<std::string> order;
  for (const auto& b : *next) order.push_back(b.stream + std::to_string(b.seq));
  EXPECT_EQ(order, (std::vector<std::string>{"high1", "high2", "norm1", "norm2", "low1"}));

  // Skipping in-flight ids and limiting.
  auto rest = (*store)->Next(2, {in[2].id, in[4].id});
  ASSERT_TRUE(rest.ok());
  ASSERT_EQ(rest->size(), 2u);
  EXPECT_EQ((*rest)[0].stream + std::to_string((*rest)[0].seq), "norm1");

  ASSERT_TRUE((*store)->Delete(in[2].id).ok());
  ASSERT_TRUE((*store)->Delete(in[2].id).ok());  // idempotent
  auto counts = (*store)->Counts();
  EXPECT_EQ(counts->batches, 4u);
  EXPECT_EQ(counts->events, 40u);
}

TEST(Store, NotADatabaseIsReportedAsCorruption) {
  harness::TempDir dir = testing::NewTempDir();
  {
    std::ofstream f(dir / "store.db", std::ios::binary);
    f << std::string(8192, 'x');
  }
  auto store = Store::Open(dir / "store.db");
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), Status::Code::kCorruption) << store.status().ToString();
}

}  // namespace
}  // namespace edgesync

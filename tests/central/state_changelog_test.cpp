// The state topic's records (central/state_changelog.h): keys and values
// round-trip, and values that no writer makes are refused, not restored.
#include "central/state_changelog.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "base/coding.h"
#include "format/format.h"

namespace edgesync {
namespace {

TEST(StateKey, RoundTripsAnyBytesAndRefusesWhatIsNotThreeFields) {
  const std::string topic = "edge.fleet", device("dev\0\xff", 5), stream = "payments@edge.x@high";
  std::string t, d, s;
  ASSERT_TRUE(ParseStateKey(StateKey(topic, device, stream), &t, &d, &s));
  EXPECT_EQ(t, topic);
  EXPECT_EQ(d, device);
  EXPECT_EQ(s, stream);
  const std::string key = StateKey(topic, device, stream);
  for (size_t cut = 0; cut < key.size(); ++cut) {
    EXPECT_FALSE(ParseStateKey(key.substr(0, cut), &t, &d, &s)) << cut;
  }
  EXPECT_FALSE(ParseStateKey(key + "x", &t, &d, &s));
}

TEST(StreamStateRecord, WhatATrackerHoldsComesBackTheSame) {
  SequenceTracker tracker(false);
  tracker.SetTime(1'795'000'000'000'000);
  std::vector<SequenceTracker::Gap> gaps;
  for (uint64_t seq : {1, 2, 3, 7, 8, 12, 20, 21, 22, 5}) tracker.Observe("d", "s", seq, &gaps);
  const SequenceTracker::StreamState* state = tracker.Find("d", "s");
  ASSERT_NE(state, nullptr);
  ASSERT_FALSE(state->above.empty());
  Result<SequenceTracker::StreamState> back = DecodeStreamState(EncodeStreamState(*state));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, *state);

  // Restored into a fresh tracker, it answers as the first one does.
  SequenceTracker restored(false);
  restored.Restore("d", "s", *back);
  for (uint64_t seq = 1; seq <= 25; ++seq) {
    SequenceTracker a = tracker, b = restored;
    std::vector<SequenceTracker::Gap> ga, gb;
    EXPECT_EQ(a.Observe("d", "s", seq, &ga), b.Observe("d", "s", seq, &gb)) << seq;
    EXPECT_EQ(ga.size(), gb.size()) << seq;
  }
}

TEST(StreamStateRecord, VersionOneReadsAsEveryHoleBelowHighestReported) {
  std::string v1;
  PutU8(&v1, 1);
  PutU64(&v1, 3);   // contiguous
  PutU64(&v1, 9);   // highest
  PutI64(&v1, 42);  // last_seen_us
  PutU32(&v1, 1);
  PutU64(&v1, 9);
  PutU64(&v1, 9);
  Result<SequenceTracker::StreamState> s = DecodeStreamState(v1);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->contiguous, 3u);
  EXPECT_EQ(s->reported, 9u);
  EXPECT_EQ(s->last_seen_us, 42);
  EXPECT_EQ(s->above, (std::map<uint64_t, uint64_t>{{9, 9}}));
}

TEST(StreamStateRecord, ValuesNoWriterMakesAreRefused) {
  SequenceTracker::StreamState s;
  s.contiguous = 10;
  s.highest = 30;
  s.above = {{12, 14}, {20, 30}};
  const std::string good = EncodeStreamState(s);
  ASSERT_TRUE(DecodeStreamState(good).ok());

  EXPECT_FALSE(DecodeStreamState("").ok());
  std::string v = good;
  v[0] = 3;  // a version this reader does not know
  EXPECT_FALSE(DecodeStreamState(v).ok());
  for (size_t cut = 0; cut < good.size(); ++cut) {
    EXPECT_FALSE(DecodeStreamState(good.substr(0, cut)).ok()) << cut;
  }
  EXPECT_FALSE(DecodeStreamState(good + std::string(16, '\0')).ok());

  auto bad = [](SequenceTracker::StreamState st) { return !DecodeStreamState(EncodeStreamState(st)).ok(); };
  SequenceTracker::StreamState t = s;
  t.highest = 5;  // below contiguous
  EXPECT_TRUE(bad(t));
  t = s;
  t.above = {{11, 14}};  // adjacent to contiguous: would have been absorbed
  EXPECT_TRUE(bad(t));
  t = s;
  t.above = {{12, 14}, {15, 16}};  // adjacent ranges
  EXPECT_TRUE(bad(t));
  t = s;
  t.above = {{20, 31}};  // past highest
  EXPECT_TRUE(bad(t));

  t = s;
  t.reported = 31;  // above highest
  EXPECT_TRUE(bad(t));
  t = s;
  t.highest = format::kMaxBatchSeq + 1;  // no batch has it: the arithmetic on it would wrap
  EXPECT_TRUE(bad(t));
  t = s;
  t.contiguous = t.highest = UINT64_MAX;
  t.above.clear();
  EXPECT_TRUE(bad(t));

  // A count that claims more ranges than the bytes hold, or than a
  // tracker keeps, is refused before anything is allocated for it.
  std::string huge;
  PutU8(&huge, 2);
  PutU64(&huge, 0);
  PutU64(&huge, UINT64_MAX);
  PutU64(&huge, 0);
  PutI64(&huge, 0);
  PutU32(&huge, UINT32_MAX);
  EXPECT_FALSE(DecodeStreamState(huge).ok());

  // Random bytes never crash the decoder, and what it takes is well formed.
  std::mt19937_64 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string r = good;
    r[rng() % r.size()] = static_cast<char>(rng());
    Result<SequenceTracker::StreamState> d = DecodeStreamState(r);
    if (!d.ok()) continue;
    EXPECT_GE(d->highest, d->contiguous);
    uint64_t floor = d->contiguous + 1;
    for (const auto& [first, last] : d->above) {
      EXPECT_GT(first, floor);
      EXPECT_LE(first, last);
      floor = last + 1;
    }
  }
}

}  // namespace
}  // namespace edgesync

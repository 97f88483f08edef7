// Fragments: an envelope cut for a broker that refuses it whole, and put
// back together centrally.
#include "buffer/fragment.h"

#include <gtest/gtest.h>

#include <random>

#include "buffer/format.h"

namespace edgesync {
namespace {

using Kind = FragmentAssembler::Outcome::Kind;

std::string RandomBytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

const FragmentAssembler::Source kA{"t", 0, "dev-a"}, kB{"t", 0, "dev-b"};

// Feeds `parts` from offset `first` on; returns the outcome of the last.
FragmentAssembler::Outcome Feed(FragmentAssembler& a, const FragmentAssembler::Source& src,
                                const std::vector<std::string>& parts, int64_t first = 0) {
  FragmentAssembler::Outcome out;
  for (size_t i = 0; i < parts.size(); ++i) {
    out = a.Add(src, first + static_cast<int64_t>(i), parts[i]);
    if (i + 1 < parts.size()) {
      EXPECT_EQ(out.kind, Kind::kIncomplete) << "fragment " << i;
    }
  }
  return out;
}

TEST(Fragment, RoundTripsOverSizesAndLimits) {
  for (size_t size : {2, 3, 17, 100, 1000, 4097, 65536}) {
    const std::string envelope = RandomBytes(size, size);
    for (size_t max : {format::kFragmentHeaderSize + 1, format::kFragmentHeaderSize + 2, size_t{50},
                       size / 2 + format::kFragmentHeaderSize, size + 100}) {
      auto parts = SplitEnvelope(envelope, max);
      if (!parts.ok()) {
        // Only when more than 65535 fragments would be needed.
        EXPECT_GT((size + max - format::kFragmentHeaderSize - 1) / (max - format::kFragmentHeaderSize), 65535u);
        continue;
      }
      ASSERT_GE(parts->size(), 2u) << size << "/" << max;
      for (const std::string& p : *parts) {
        EXPECT_LE(p.size(), std::max(max, format::kFragmentHeaderSize + (size + 1) / 2)) << size << "/" << max;
        EXPECT_TRUE(IsFragment(p));
        std::string_view slice;
        ASSERT_TRUE(ParseFragment(p, &slice).ok());
        EXPECT_FALSE(slice.empty());
      }
      FragmentAssembler a(1 << 20, 1 << 20);
      auto out = Feed(a, kA, *parts);
      ASSERT_EQ(out.kind, Kind::kComplete) << out.why;
      EXPECT_EQ(out.envelope, envelope) << size << "/" << max;
      EXPECT_EQ(a.pending_bytes(), 0u);
    }
  }
  EXPECT_FALSE(SplitEnvelope("x", 100).ok()) << "one byte cannot make two fragments";
  EXPECT_FALSE(SplitEnvelope(RandomBytes(100, 1), format::kFragmentHeaderSize).ok());
  EXPECT_FALSE(IsFragment("EDGS...")) << "an envelope is not a fragment";
}

TEST(Fragment, EveryBitFlipIsRefusedOrFailsTheWholeCheck) {
  const std::string envelope = RandomBytes(300, 7);
  auto parts = SplitEnvelope(envelope, 120);
  ASSERT_TRUE(parts.ok());
  for (size_t which = 0; which < parts->size(); ++which) {
    for (size_t bit = 0; bit < (*parts)[which].size() * 8; ++bit) {
      std::vector<std::string> bad = *parts;
      bad[which][bit / 8] = static_cast<char>(bad[which][bit / 8] ^ (1 << (bit % 8)));
      FragmentAssembler a(1 << 20, 1 << 20);
      FragmentAssembler::Outcome out;
      for (size_t i = 0; i < bad.size(); ++i) out = a.Add(kA, static_cast<int64_t>(i), bad[i]);
      EXPECT_FALSE(out.kind == Kind::kComplete && out.envelope != envelope)
          << "fragment " << which << " bit " << bit << " gave other bytes";
      EXPECT_NE(out.kind, Kind::kComplete) << "fragment " << which << " bit " << bit;
    }
  }
}

TEST(Fragment, ResentSetsInterleavedSourcesAndBrokenSequences) {
  const std::string e1 = RandomBytes(500, 1), e2 = RandomBytes(400, 2);
  auto p1 = *SplitEnvelope(e1, 118), p2 = *SplitEnvelope(e2, 118);
  ASSERT_GE(p1.size(), 4u);
  FragmentAssembler a(1 << 20, 1 << 20);
  // A partial attempt, then the whole set again: one abandoned, one complete.
  EXPECT_EQ(a.Add(kA, 0, p1[0]).kind, Kind::kIncomplete);
  EXPECT_EQ(a.Add(kA, 1, p1[1]).kind, Kind::kIncomplete);
  EXPECT_EQ(a.OldestPending("t", 0), 0);
  // Another device's set in between, in the same partition.
  EXPECT_EQ(a.Add(kB, 2, p2[0]).kind, Kind::kIncomplete);
  auto restart = a.Add(kA, 3, p1[0]);
  EXPECT_EQ(restart.kind, Kind::kIncomplete);
  EXPECT_EQ(restart.abandoned, 1u);
  EXPECT_EQ(a.OldestPending("t", 0), 2) << "dev-b's set began at 2";
  for (size_t i = 1; i < p1.size(); ++i) {
    auto out = a.Add(kA, static_cast<int64_t>(3 + i), p1[i]);
    if (i + 1 == p1.size()) {
      ASSERT_EQ(out.kind, Kind::kComplete);
      EXPECT_EQ(out.envelope, e1);
      EXPECT_EQ(out.first_offset, 3);
    }
  }
  auto b = Feed(a, kB, std::vector<std::string>(p2.begin() + 1, p2.end()), 100);
  ASSERT_EQ(b.kind, Kind::kComplete);
  EXPECT_EQ(b.envelope, e2);
  EXPECT_FALSE(a.OldestPending("t", 0).has_value());

  // A fragment without those before it, and a skipped one.
  auto orphan = a.Add(kA, 200, p1[2]);
  EXPECT_EQ(orphan.kind, Kind::kRejected);
  EXPECT_NE(orphan.why.find("without the ones before it"), std::string::npos) << orphan.why;
  EXPECT_EQ(a.Add(kA, 201, p1[0]).kind, Kind::kIncomplete);
  auto skipped = a.Add(kA, 202, p1[2]);
  EXPECT_EQ(skipped.kind, Kind::kRejected);
  EXPECT_EQ(skipped.abandoned, 1u);
  // Fragments of another envelope do not continue this one.
  EXPECT_EQ(a.Add(kA, 203, p1[0]).kind, Kind::kIncomplete);
  auto mixed = a.Add(kA, 204, p2[1]);
  EXPECT_EQ(mixed.kind, Kind::kRejected);
  EXPECT_EQ(mixed.abandoned, 1u);
}

TEST(Fragment, LimitsBoundMemory) {
  const std::string big = RandomBytes(10'000, 3);
  auto parts = *SplitEnvelope(big, 1000);
  // Over the envelope limit: refused at the first fragment, nothing kept.
  FragmentAssembler small(5'000, 1 << 20);
  auto out = small.Add(kA, 0, parts[0]);
  EXPECT_EQ(out.kind, Kind::kRejected);
  EXPECT_NE(out.why.find("over the limit"), std::string::npos) << out.why;
  EXPECT_EQ(small.pending_bytes(), 0u);
  // Pending bytes over the limit: the oldest partial set goes.
  FragmentAssembler tight(20'000, 15'000);
  EXPECT_EQ(tight.Add(kA, 0, parts[0]).kind, Kind::kIncomplete);
  auto second = tight.Add(kB, 1, parts[0]);
  EXPECT_EQ(second.kind, Kind::kIncomplete);
  EXPECT_EQ(second.abandoned, 1u);
  EXPECT_LE(tight.pending_bytes(), 15'000u);
  EXPECT_EQ(tight.OldestPending("t", 0), 1);
  // A declared length that does not match the slices is refused.
  std::string lying = parts[1];
  lying[11] = static_cast<char>(lying[11] + 2);  // total_len + 512
  std::string_view slice;
  EXPECT_FALSE(ParseFragment(lying, &slice).ok());
}

}  // namespace
}  // namespace edgesync

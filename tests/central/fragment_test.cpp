// Fragments: an envelope cut for a broker that refuses it whole, and put
// back together centrally.
#include "central/fragment_assembler.h"

#include <gtest/gtest.h>

#include <random>

#include "format/format.h"
#include "format/identity.h"

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
  // A partial attempt, then the whole set again (a resend after a failed
  // delivery): what the set holds is skipped, the rest completes it.
  EXPECT_EQ(a.Add(kA, 0, p1[0]).kind, Kind::kIncomplete);
  EXPECT_EQ(a.Add(kA, 1, p1[1]).kind, Kind::kIncomplete);
  EXPECT_EQ(a.OldestPending("t", 0), 0);
  // Another device's set in between, in the same partition.
  EXPECT_EQ(a.Add(kB, 2, p2[0]).kind, Kind::kIncomplete);
  auto resent = a.Add(kA, 3, p1[0]);
  EXPECT_EQ(resent.kind, Kind::kIncomplete);
  EXPECT_TRUE(resent.duplicate);
  EXPECT_EQ(resent.abandoned, 0u);
  EXPECT_TRUE(a.Add(kA, 4, p1[1]).duplicate);
  for (size_t i = 2; i < p1.size(); ++i) {
    auto out = a.Add(kA, static_cast<int64_t>(3 + i), p1[i]);
    if (i + 1 == p1.size()) {
      ASSERT_EQ(out.kind, Kind::kComplete);
      EXPECT_EQ(out.envelope, e1);
      EXPECT_EQ(out.first_offset, 0) << "the set began at 0";
    }
  }
  EXPECT_EQ(a.OldestPending("t", 0), 2) << "dev-b's set began at 2";
  auto b = Feed(a, kB, std::vector<std::string>(p2.begin() + 1, p2.end()), 100);
  ASSERT_EQ(b.kind, Kind::kComplete);
  EXPECT_EQ(b.envelope, e2);
  EXPECT_FALSE(a.OldestPending("t", 0).has_value());

  // A fragment without those before it, and a skipped one: refused, and the
  // set they would break goes on.
  auto orphan = a.Add(kA, 200, p1[2]);
  EXPECT_EQ(orphan.kind, Kind::kRejected);
  EXPECT_NE(orphan.why.find("without the ones before it"), std::string::npos) << orphan.why;
  EXPECT_EQ(a.Add(kA, 201, p1[0]).kind, Kind::kIncomplete);
  auto skipped = a.Add(kA, 202, p1[2]);
  EXPECT_EQ(skipped.kind, Kind::kRejected);
  EXPECT_NE(skipped.why.find("out of order"), std::string::npos) << skipped.why;
  EXPECT_EQ(skipped.abandoned, 0u);
  // Fragments of another envelope do not continue this one; a replayed
  // first fragment of another starts a set of its own beside it.
  auto mixed = a.Add(kA, 203, p2[1]);
  EXPECT_EQ(mixed.kind, Kind::kRejected);
  EXPECT_EQ(mixed.abandoned, 0u);
  EXPECT_EQ(a.Add(kA, 204, p2[0]).kind, Kind::kIncomplete);
  auto done = Feed(a, kA, std::vector<std::string>(p1.begin() + 1, p1.end()), 205);
  ASSERT_EQ(done.kind, Kind::kComplete);
  EXPECT_EQ(done.envelope, e1);
  EXPECT_EQ(done.first_offset, 201);
}

TEST(Fragment, LimitsBoundMemoryPerSignerAndOverall) {
  const std::string big = RandomBytes(10'000, 3);
  auto parts = *SplitEnvelope(big, 1000);
  // Over the envelope limit: refused at the first fragment, nothing kept.
  FragmentAssembler small(5'000, 1 << 20);
  auto out = small.Add(kA, 0, parts[0]);
  EXPECT_EQ(out.kind, Kind::kRejected);
  EXPECT_NE(out.why.find("over the limit"), std::string::npos) << out.why;
  EXPECT_EQ(small.pending_bytes(), 0u);
  // A first fragment costs what it holds, not the length it claims.
  FragmentAssembler lazy(20'000, 1 << 20);
  EXPECT_EQ(lazy.Add(kA, 0, parts[0]).kind, Kind::kIncomplete);
  EXPECT_LT(lazy.pending_bytes(), 1000u);

  // Signed sets, as the central side reads them (the signer is in each
  // fragment; the keys are checked elsewhere).
  const DeviceSigner a = *DeviceSigner::Generate(), b = *DeviceSigner::Generate();
  auto signed_parts = [&](const DeviceSigner& s, uint32_t seed) {
    return *SplitEnvelope(RandomBytes(10'000, seed), 1000, &s);
  };
  // One signer's sets: at most kMaxSetsPerSigner, its own oldest goes first.
  FragmentAssembler cap(20'000, 1 << 20);
  auto others = signed_parts(b, 9);
  EXPECT_EQ(cap.Add(kB, 0, others[0]).kind, Kind::kIncomplete);
  for (uint32_t i = 0; i < FragmentAssembler::kMaxSetsPerSigner; ++i) {
    const FragmentAssembler::Source src{"t", 0, "key-" + std::to_string(i)};  // any message key
    EXPECT_EQ(cap.Add(src, 1 + i, signed_parts(a, 10 + i)[0]).abandoned, 0u) << i;
  }
  auto one_more = cap.Add({"t", 0, "key-x"}, 10, signed_parts(a, 20)[0]);
  EXPECT_EQ(one_more.abandoned, 1u);
  EXPECT_EQ(cap.OldestPending("t", 0), 0) << "dev-b's set is still there";
  EXPECT_EQ(Feed(cap, kB, std::vector<std::string>(others.begin() + 1, others.end()), 100).kind, Kind::kComplete);

  // Overall: the signer holding the most bytes gives up first, even when
  // its set is the one growing.
  FragmentAssembler tight(20'000, 4'000);
  EXPECT_EQ(tight.Add(kA, 0, others[0]).kind, Kind::kIncomplete);  // b's, ~900 bytes
  auto greedy = signed_parts(a, 30);
  FragmentAssembler::Outcome last;
  for (size_t i = 0; i < greedy.size() && last.kind != Kind::kRejected; ++i) {
    last = tight.Add(kB, static_cast<int64_t>(1 + i), greedy[i]);
  }
  EXPECT_EQ(last.kind, Kind::kRejected);
  EXPECT_NE(last.why.find("largest"), std::string::npos) << last.why;
  EXPECT_LE(tight.pending_bytes(), 4'000u);
  EXPECT_EQ(tight.OldestPending("t", 0), 0) << "the small set stays";

  // A set not continued within kStaleMessages of its partition is given up.
  FragmentAssembler stale(20'000, 1 << 20);
  EXPECT_EQ(stale.Add(kA, 0, parts[0]).kind, Kind::kIncomplete);
  EXPECT_EQ(stale.Expire("t", 1, 1'000'000), 0u) << "another partition";
  EXPECT_EQ(stale.Expire("t", 0, FragmentAssembler::kStaleMessages), 0u);
  EXPECT_EQ(stale.Expire("t", 0, FragmentAssembler::kStaleMessages + 1), 1u);
  EXPECT_FALSE(stale.OldestPending("t", 0).has_value());
  // Re-sending a fragment the set holds does not keep it alive: it would
  // hold the partition's committed offset back for as long as it went on.
  EXPECT_EQ(stale.Add(kA, 0, parts[0]).kind, Kind::kIncomplete);
  const auto resent = stale.Add(kA, FragmentAssembler::kStaleMessages, parts[0]);
  EXPECT_TRUE(resent.duplicate);
  EXPECT_EQ(stale.Expire("t", 0, FragmentAssembler::kStaleMessages + 1), 1u);

  // A declared length that does not match the slices is refused.
  std::string lying = parts[1];
  lying[11] = static_cast<char>(lying[11] + 2);  // total_len + 512
  std::string_view slice;
  EXPECT_FALSE(ParseFragment(lying, &slice).ok());
}

}  // namespace
}  // namespace edgesync

#include "buffer/journal.h"

#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "base/coding.h"
#include "base/crc32c.h"
#include "format/format.h"
#include "tests/support/fault_env.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

// A body as long as a real record (a journal refuses frames shorter than one).
std::string R(const std::string& s) { return s + std::string(24, '.'); }

std::vector<std::string> Bodies(const JournalRecovery& r) {
  std::vector<std::string> out;
  for (const auto& e : r.entries) out.push_back(e.record);
  return out;
}

TEST(Journal, AppendedRecordsAreRecoveredAfterReopen) {
  harness::TempDir dir = testing::NewTempDir();
  {
    JournalRecovery rec;
    auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    EXPECT_TRUE(rec.entries.empty());
    for (int i = 0; i < 100; ++i) ASSERT_TRUE((*j)->Append("event-" + std::to_string(i) + std::string(20, '.')).ok());
    // No Sync, no close: like a process crash after write().
  }
  JournalRecovery rec;
  auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
  ASSERT_TRUE(j.ok());
  ASSERT_EQ(rec.entries.size(), 100u);
  EXPECT_EQ(rec.entries[0].record, "event-0" + std::string(20, '.'));
  EXPECT_EQ(rec.entries[99].record, "event-99" + std::string(20, '.'));
  EXPECT_EQ(rec.torn_bytes, 0u);
  // Appends after recovery go to a new segment, never after a possibly torn tail.
  EXPECT_GT((*j)->current_segment(), rec.entries.back().end.segment);
}

// Records that do not compress away: 100 bytes of letters from a fixed LCG.
std::string Noisy(int i) {
  std::string r = "record-" + std::to_string(i) + "-";
  uint32_t x = 2654435761u * static_cast<uint32_t>(i + 1);
  while (r.size() < 100) {
    x = x * 1664525u + 1013904223u;
    r.push_back(static_cast<char>('a' + (x >> 27) % 26));
  }
  return r;
}

TEST(Journal, TornTailKeepsEveryWholeRecord) {
  harness::TempDir dir = testing::NewTempDir();
  std::string seg_path;
  {
    JournalRecovery rec;
    auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
    ASSERT_TRUE(j.ok());
    for (int i = 0; i < 10; ++i) ASSERT_TRUE((*j)->Append(Noisy(i)).ok());
  }
  auto names = Env::Default()->ListDir(dir.path());
  ASSERT_TRUE(names.ok());
  ASSERT_EQ(names->size(), 1u);
  seg_path = dir / (*names)[0];
  std::string bytes = *Env::Default()->ReadFile(seg_path, kMaxOwnFileBytes);
  SegmentScan whole = ScanSegment(bytes);
  ASSERT_EQ(whole.records.size(), 10u);
  ASSERT_EQ(whole.valid_bytes, bytes.size());
  for (int i = 0; i < 10; ++i) EXPECT_EQ(whole.records[i].first, Noisy(i));
  const size_t end7 = whole.records[6].second, end8 = whole.records[7].second;

  // Cut in the middle of the 8th record's frame, as a power cut could.
  for (size_t cut : {end7 + 3, end7 + 9, (end7 + end8) / 2, end8 - 1}) {
    {
      std::ofstream out(seg_path, std::ios::binary | std::ios::trunc);
      out << bytes.substr(0, cut);
    }
    JournalRecovery rec;
    // Recovery is read-only on old segments, so the same file can be scanned again.
    auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
    ASSERT_TRUE(j.ok());
    ASSERT_EQ(rec.entries.size(), 7u) << "cut at " << cut;
    EXPECT_EQ(rec.entries[6].record, Noisy(6));
    EXPECT_EQ(rec.torn_bytes, cut - end7);
    EXPECT_EQ(rec.problems.size(), 1u);
  }
  // A flipped bit in record 3 keeps records 0..2 only.
  std::string bad = bytes;
  bad[whole.records[2].second + 10] ^= 0x10;
  SegmentScan scan = ScanSegment(bad);
  EXPECT_EQ(scan.records.size(), 3u);
  EXPECT_EQ(scan.valid_bytes, whole.records[2].second);
}

TEST(Journal, RecordsAreStoredCompressed) {
  harness::TempDir dir = testing::NewTempDir();
  const std::string event =
      R"({"device":"term-0001","type":"authorization","amount":1250,"currency":"EUR",)"
      R"("merchant":"m-77","terminal":"t1","status":"approved","seq":)";
  {
    JournalRecovery rec;
    auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
    ASSERT_TRUE(j.ok());
    for (int i = 0; i < 100; ++i) ASSERT_TRUE((*j)->Append(event + std::to_string(i) + "}").ok());
  }
  auto names = Env::Default()->ListDir(dir.path());
  const uint64_t size = *Env::Default()->FileSize(dir / (*names)[0]);
  EXPECT_LT(size, 100 * event.size() / 2) << "similar events share the segment's stream";
  JournalRecovery rec;
  ASSERT_TRUE(Journal::Open(Env::Default(), dir.path(), {}, &rec).ok());
  ASSERT_EQ(rec.entries.size(), 100u);
  EXPECT_EQ(rec.entries[99].record, event + "99}");
}

TEST(Journal, VersionOneSegmentsAreStillRecovered) {
  harness::TempDir dir = testing::NewTempDir();
  std::string v1;
  AppendJournalFrame(R("old-1"), &v1);
  AppendJournalFrame(R("old-2"), &v1);
  {
    std::ofstream out(dir / "0000000000000003.log", std::ios::binary);
    out << v1;
  }
  JournalRecovery rec;
  auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ(Bodies(rec), (std::vector<std::string>{R("old-1"), R("old-2")}));
  EXPECT_EQ(rec.torn_bytes, 0u);
  ASSERT_TRUE((*j)->Append(R("new")).ok());
  j->reset();
  JournalRecovery rec2;
  ASSERT_TRUE(Journal::Open(Env::Default(), dir.path(), {}, &rec2).ok());
  EXPECT_EQ(Bodies(rec2), (std::vector<std::string>{R("old-1"), R("old-2"), R("new")}));
}

TEST(Journal, SealedPositionSkipsAndRetires) {
  harness::TempDir dir = testing::NewTempDir();
  JournalRecovery rec;
  auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE((*j)->Append(R("a")).ok());
  ASSERT_TRUE((*j)->Append(R("b")).ok());
  auto after_ab = (*j)->Rotate();
  ASSERT_TRUE(after_ab.ok());
  ASSERT_TRUE((*j)->Append(R("c")).ok());
  ASSERT_TRUE((*j)->SyncIfDirty().ok());
  j->reset();

  // The store says a batch holds everything before after_ab: only "c" comes back.
  JournalRecovery rec2;
  auto j2 = Journal::Open(Env::Default(), dir.path(), *after_ab, &rec2);
  ASSERT_TRUE(j2.ok());
  EXPECT_EQ(Bodies(rec2), std::vector<std::string>{R("c")});
  EXPECT_EQ(Env::Default()->ListDir(dir.path())->size(), 2u);  // c's segment + the new one

  // A position inside a segment skips the records before it.
  JournalRecovery rec3;
  auto j3 = Journal::Open(Env::Default(), dir.path(), rec2.entries[0].end, &rec3);
  ASSERT_TRUE(j3.ok());
  EXPECT_TRUE(rec3.entries.empty());
  ASSERT_TRUE((*j3)->Retire(JournalPosition{(*j3)->current_segment(), 0}).ok());
  EXPECT_EQ(Env::Default()->ListDir(dir.path())->size(), 1u);  // only the open segment
}

TEST(Journal, FailedAppendReportsTheError) {
  harness::TempDir dir = testing::NewTempDir();
  testing::FaultEnv env(Env::Default());
  JournalRecovery rec;
  auto j = Journal::Open(&env, dir.path(), {}, &rec);
  ASSERT_TRUE(j.ok());
  ASSERT_TRUE((*j)->Append(R("ok")).ok());
  env.fail_appends = true;
  Status st = (*j)->Append(R("lost?"));
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(st.retriable());
  env.fail_appends = false;
  ASSERT_TRUE((*j)->Append(R("again")).ok());
  j->reset();
  JournalRecovery rec2;
  ASSERT_TRUE(Journal::Open(&env, dir.path(), {}, &rec2).ok());
  EXPECT_EQ(Bodies(rec2), (std::vector<std::string>{R("ok"), R("again")}));
}

TEST(Journal, ZeroFilledTailIsTornNotEmptyRecords) {
  harness::TempDir dir = testing::NewTempDir();
  std::string seg;
  {
    JournalRecovery rec;
    auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
    ASSERT_TRUE(j.ok());
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*j)->Append(std::string(40, char('a' + i))).ok());
    seg = dir / (*Env::Default()->ListDir(dir.path()))[0];
  }
  {
    std::ofstream out(seg, std::ios::binary | std::ios::app);
    out << std::string(16, '\0');  // what a power cut can leave
  }
  JournalRecovery rec;
  ASSERT_TRUE(Journal::Open(Env::Default(), dir.path(), {}, &rec).ok());
  EXPECT_EQ(rec.entries.size(), 3u);
  EXPECT_EQ(rec.torn_bytes, 16u);
}

TEST(Journal, ShortWriteThenMoreAppendsAreAllRecovered) {
  harness::TempDir dir = testing::NewTempDir();
  testing::FaultEnv env(Env::Default());
  {
    JournalRecovery rec;
    auto j = Journal::Open(&env, dir.path(), {}, &rec);
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE((*j)->Append(std::string(40, '1')).ok());
    env.tear_appends = true;
    EXPECT_FALSE((*j)->Append(std::string(40, '2')).ok());  // half a frame on disk
    env.tear_appends = false;
    ASSERT_TRUE((*j)->Append(std::string(40, '3')).ok());
    ASSERT_TRUE((*j)->Append(std::string(40, '4')).ok());
  }
  JournalRecovery rec;
  ASSERT_TRUE(Journal::Open(&env, dir.path(), {}, &rec).ok());
  EXPECT_EQ(Bodies(rec), (std::vector<std::string>{std::string(40, '1'), std::string(40, '3'),
                                                   std::string(40, '4')}));
}

TEST(Journal, UnreadableSegmentIsSetAsideNotFatal) {
  harness::TempDir dir = testing::NewTempDir();
  {
    JournalRecovery rec;
    auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
    ASSERT_TRUE(j.ok());
    ASSERT_TRUE((*j)->Append(R("kept")).ok());
  }
  // A segment name read() refuses (EISDIR stands in for a bad sector).
  ASSERT_TRUE(Env::Default()->CreateDirs(dir / "00000000000000ff.log").ok());
  JournalRecovery rec;
  auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  EXPECT_EQ(rec.unreadable_segments, 1u);
  ASSERT_EQ(rec.problems.size(), 1u);
  EXPECT_NE(rec.problems[0].find("unreadable"), std::string::npos) << rec.problems[0];
  EXPECT_TRUE(Env::Default()->Exists(dir / "00000000000000ff.log.unreadable"));
  EXPECT_EQ(Bodies(rec), std::vector<std::string>{R("kept")});
  EXPECT_GT((*j)->current_segment(), 0xffu) << "never reuses the set-aside number";
}

crypto::Key TestJournalKey(uint8_t seed) {
  crypto::Key k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(seed * 7 + i);
  return k;
}

// Everything under `dir`, concatenated: what a reader of the flash would see.
std::string AllBytes(const std::string& dir) {
  std::string all;
  for (const std::string& name : *Env::Default()->ListDir(dir)) all += *Env::Default()->ReadFile(dir + "/" + name, kMaxOwnFileBytes);
  return all;
}

// Records whose tail is 48 random bytes: zstd cannot shrink them (no
// repeats, and bytes of every value leave its entropy coding nothing to
// gain), so a journal that is compressed but not encrypted holds each one
// as it is. Distinct per record, so each can be looked for on its own.
std::vector<std::string> IncompressibleRecords(int n) {
  std::mt19937_64 rng(24);
  std::vector<std::string> out;
  for (int i = 0; i < n; ++i) {
    std::string r = "PAN-4111111111111111/record-" + std::to_string(i) + "/";
    while (r.size() < 80) r.push_back(static_cast<char>(rng() & 0xff));
    out.push_back(std::move(r));
  }
  return out;
}

// Writes `records` into a journal under `dir` (a rotation after the first
// 50, so there are two segments); encrypted with `key` when `encrypt`.
void WriteJournal(const std::string& dir, const std::vector<std::string>& records, const crypto::Key* key,
                  bool encrypt) {
  JournalRecovery rec;
  auto j = Journal::Open(Env::Default(), dir, {}, &rec, key, encrypt);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_TRUE((*j)->Append(records[i]).ok());
    if (i == 49) {
      ASSERT_TRUE((*j)->Rotate().ok());
    }
  }
}

// How many of `records` (their random tails) are in `disk` as they are.
size_t FoundInTheClear(const std::string& disk, const std::vector<std::string>& records) {
  size_t found = 0;
  for (const std::string& r : records) found += disk.find(r.substr(r.size() - 48)) != std::string::npos;
  return found;
}

// A quiet stream gives its compression context back (ReleaseIdleMemory
// between segments) and makes a new one on its next event: every segment,
// before and after, decodes on its own, plain and encrypted. In the middle
// of a segment the call changes nothing, so the stream's later frames
// still decode after the earlier ones.
TEST(Journal, ReleasingAQuietStreamsMemoryKeepsEverySegmentReadable) {
  const crypto::Key key = TestJournalKey(3);
  for (const crypto::Key* k : {static_cast<const crypto::Key*>(nullptr), &key}) {
    SCOPED_TRACE(k != nullptr ? "encrypted" : "plain");
    harness::TempDir dir = testing::NewTempDir();
    std::vector<std::string> written;
    {
      JournalRecovery rec;
      auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec, k, k != nullptr);
      ASSERT_TRUE(j.ok()) << j.status().ToString();
      (*j)->ReleaseIdleMemory();  // before the first event: nothing to free yet
      int n = 0;
      for (int segment = 0; segment < 3; ++segment) {
        for (int i = 0; i < 20; ++i, ++n) {
          written.push_back(Noisy(n));
          ASSERT_TRUE((*j)->Append(written.back()).ok());
          if (i == 10) (*j)->ReleaseIdleMemory();  // mid-segment: must not end the stream
        }
        ASSERT_TRUE((*j)->Rotate().ok());
        (*j)->ReleaseIdleMemory();
      }
      written.push_back(Noisy(n));
      ASSERT_TRUE((*j)->Append(written.back()).ok());  // a fresh context after the release
    }
    JournalRecovery rec;
    auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec, k, false);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    EXPECT_EQ(Bodies(rec), written);
    EXPECT_EQ(rec.torn_bytes, 0u);
    EXPECT_EQ(rec.unreadable_segments, 0u);
  }
}

TEST(EncryptedJournal, RecoversWithTheKeyAndShowsNothingWithout) {
  const crypto::Key key = TestJournalKey(1);
  const std::vector<std::string> records = IncompressibleRecords(60);

  // The control: the same records, compressed but not encrypted, are on
  // disk for anyone to read, so the search below can find them.
  harness::TempDir plain = testing::NewTempDir();
  WriteJournal(plain.path(), records, nullptr, false);
  const std::string plain_disk = AllBytes(plain.path());
  EXPECT_EQ(FoundInTheClear(plain_disk, records), records.size());
  // (Their text prefix, "PAN-4111111111111111", is not there as it is:
  // zstd codes it as a run and matches. That is why a search for "PAN-"
  // alone proved nothing about encryption.)

  harness::TempDir dir = testing::NewTempDir();
  WriteJournal(dir.path(), records, &key, true);
  const std::string disk = AllBytes(dir.path());
  EXPECT_GE(disk.size(), 60u * 48u) << "the records are somewhere in there";
  EXPECT_EQ(FoundInTheClear(disk, records), 0u);
  EXPECT_EQ(disk.find("PAN-"), std::string::npos);
  EXPECT_EQ(disk.find("record-"), std::string::npos);

  // Read without the key, or with another one: no record comes out.
  const crypto::Key other = TestJournalKey(2);
  size_t segments = 0;
  for (const std::string& n : *Env::Default()->ListDir(dir.path())) {
    const std::string bytes = *Env::Default()->ReadFile(dir / n, kMaxOwnFileBytes);
    ++segments;
    for (const crypto::Key* k : {static_cast<const crypto::Key*>(nullptr), &other}) {
      SegmentScan scan = ScanSegment(bytes, k);
      EXPECT_TRUE(scan.records.empty()) << n << (k ? " with another key" : " without a key");
      EXPECT_FALSE(scan.unreadable.empty()) << n;
    }
    EXPECT_FALSE(ScanSegment(bytes, &key).records.empty()) << n << " with its key";
  }
  EXPECT_EQ(segments, 2u);
  for (const crypto::Key* k : {static_cast<const crypto::Key*>(nullptr), &other}) {
    harness::TempDir copy = testing::NewTempDir();
    for (const std::string& n : *Env::Default()->ListDir(dir.path())) {
      std::ofstream(copy / n, std::ios::binary) << *Env::Default()->ReadFile(dir / n, kMaxOwnFileBytes);
    }
    JournalRecovery rec;
    auto j = Journal::Open(Env::Default(), copy.path(), {}, &rec, k, false);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    EXPECT_TRUE(rec.entries.empty()) << (k ? "another key" : "no key");
    EXPECT_EQ(rec.unreadable_segments, 2u);
  }

  // With the key, everything comes back.
  JournalRecovery rec;
  auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec, &key, true);
  ASSERT_TRUE(j.ok());
  ASSERT_EQ(rec.entries.size(), 60u);
  for (int i = 0; i < 60; ++i) EXPECT_EQ(rec.entries[i].record, records[i]);
  EXPECT_EQ(rec.torn_bytes, 0u);
  EXPECT_EQ(rec.unreadable_segments, 0u);
}

TEST(EncryptedJournal, AMissingOrWrongKeyMovesTheSegmentAsideAndSaysWhy) {
  for (bool wrong : {false, true}) {
    harness::TempDir dir = testing::NewTempDir();
    const crypto::Key key = TestJournalKey(1), other = TestJournalKey(2);
    {
      JournalRecovery rec;
      auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec, &key, true);
      ASSERT_TRUE(j.ok());
      ASSERT_TRUE((*j)->Append(Noisy(1)).ok());
    }
    JournalRecovery rec;
    auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec, wrong ? &other : nullptr, false);
    ASSERT_TRUE(j.ok()) << j.status().ToString();
    EXPECT_TRUE(rec.entries.empty());
    EXPECT_EQ(rec.unreadable_segments, 1u);
    ASSERT_EQ(rec.problems.size(), 1u);
    EXPECT_NE(rec.problems[0].find(wrong ? "another journal key" : "no journal key"), std::string::npos)
        << rec.problems[0];
    // Set aside, not deleted: the right key can still read it by hand.
    bool kept = false;
    for (const std::string& n : *Env::Default()->ListDir(dir.path())) kept |= n.ends_with(".unreadable");
    EXPECT_TRUE(kept);
  }
}

TEST(EncryptedJournal, EveryCutAndEveryChangedFrameStopsRecoveryThere) {
  harness::TempDir dir = testing::NewTempDir();
  const crypto::Key key = TestJournalKey(3);
  {
    JournalRecovery rec;
    auto j = Journal::Open(Env::Default(), dir.path(), {}, &rec, &key, true);
    ASSERT_TRUE(j.ok());
    for (int i = 0; i < 8; ++i) ASSERT_TRUE((*j)->Append(Noisy(i)).ok());
  }
  auto names = Env::Default()->ListDir(dir.path());
  const std::string bytes = *Env::Default()->ReadFile(dir / (*names)[0], kMaxOwnFileBytes);
  SegmentScan whole = ScanSegment(bytes, &key);
  ASSERT_EQ(whole.records.size(), 8u);
  ASSERT_EQ(whole.valid_bytes, bytes.size());
  // A cut anywhere keeps exactly the frames wholly before it.
  for (size_t n = 0; n < bytes.size(); ++n) {
    SegmentScan cut = ScanSegment(std::string_view(bytes).substr(0, n), &key);
    size_t whole_frames = 0;
    while (whole_frames < 8 && whole.records[whole_frames].second <= n) ++whole_frames;
    ASSERT_EQ(cut.records.size(), whole_frames) << "cut at " << n;
  }
  // A changed byte in frame 3 whose CRC was fixed up: GCM refuses it, and
  // the frames before it survive. Frames cannot be reordered either (the
  // nonce is the frame's index).
  const size_t f3 = whole.records[2].second;  // start of the 4th frame
  std::string bad = bytes;
  bad[f3 + format::kJournalFrameHeader + 2] ^= 0x10;
  const uint32_t len = LoadU32(bad.data() + f3);
  StoreU32(bad.data() + f3 + 4, crc32c::Value(std::string_view(bad).substr(f3 + 8, len)));
  EXPECT_EQ(ScanSegment(bad, &key).records.size(), 3u);
  std::string swapped = bytes.substr(0, whole.records[0].second) +
                        bytes.substr(whole.records[1].second, whole.records[2].second - whole.records[1].second) +
                        bytes.substr(whole.records[0].second, whole.records[1].second - whole.records[0].second);
  EXPECT_EQ(ScanSegment(swapped, &key).records.size(), 1u);
}

}  // namespace
}  // namespace edgesync

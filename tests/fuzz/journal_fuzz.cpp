// libFuzzer target for journal recovery (buffer/journal.h): what the agent
// reads back from flash after a crash, a power cut or a bad sector. Also
// linked with replay_main.cpp into journal_fuzz_replay, which ctest runs
// over corpus/journal/ with any compiler.
//
// The input is the whole content of one segment file,
// j/0000000000000001.log, in an in-memory Env (tests/support/mem_env.h).
// The journal key is fixed (bytes 0x40..0x5f), so encrypted segments
// written with it decrypt.
//
// Besides "no crash, no leak, no ASan/UBSan report", these must hold:
//  - ScanSegment: no more records than frame headers fit in the input
//    (8 bytes each); frame ends strictly increasing, within valid_bytes,
//    valid_bytes within the input; the same result a second time;
//  - Journal::Open recovers exactly what ScanSegment found (the records
//    and their positions, torn_bytes = the bytes after valid_bytes), or
//    moves an unreadable segment aside and recovers nothing;
//  - a second Open recovers the same records, and a record appended after
//    the first Open comes back after them.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "format/format.h"
#include "buffer/journal.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/support/mem_env.h"

namespace {
constexpr const char* kTarget = "journal_fuzz";

using namespace edgesync;

crypto::Key JournalKey() {
  crypto::Key k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0x40 + i);
  return k;
}

bool SameScan(const SegmentScan& a, const SegmentScan& b) {
  return a.records == b.records && a.valid_bytes == b.valid_bytes && a.unreadable == b.unreadable;
}

std::vector<std::pair<std::string, JournalPosition>> Entries(const JournalRecovery& r) {
  std::vector<std::pair<std::string, JournalPosition>> out;
  for (const JournalRecovery::Entry& e : r.entries) out.emplace_back(e.record, e.end);
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const crypto::Key key = JournalKey();

  const SegmentScan scan = ScanSegment(bytes, &key);
  FUZZ_CHECK(SameScan(scan, ScanSegment(bytes, &key)), "scans differently a second time");
  FUZZ_CHECK(scan.valid_bytes <= size, "");
  FUZZ_CHECK(scan.records.size() <= size / format::kJournalFrameHeader, std::to_string(scan.records.size()));
  uint64_t previous_end = 0;
  for (const auto& [record, end] : scan.records) {
    FUZZ_CHECK(end > previous_end && end <= scan.valid_bytes, std::to_string(end));
    previous_end = end;
  }

  testing::MemEnv env;
  const std::string segment = "j/0000000000000001.log";
  {
    FUZZ_CHECK(env.CreateDirs("j").ok(), "");
    Result<std::unique_ptr<AppendFile>> f = env.OpenAppend(segment);
    FUZZ_CHECK(f.ok() && (*f)->Append(bytes).ok() && (*f)->Close().ok(), "cannot write the segment");
  }

  // First recovery, then one more record appended.
  JournalRecovery first;
  const std::string extra = "appended after recovery" + std::string(format::kMinRecordBytes, '.');
  {
    Result<std::unique_ptr<Journal>> j = Journal::Open(&env, "j", {}, &first, &key);
    FUZZ_CHECK(j.ok(), j.status().ToString());
    FUZZ_CHECK((*j)->current_segment() == 2, std::to_string((*j)->current_segment()));
    FUZZ_CHECK((*j)->Append(extra).ok(), "");
  }
  if (scan.unreadable.empty()) {
    FUZZ_CHECK(first.unreadable_segments == 0, "");
    FUZZ_CHECK(first.entries.size() == scan.records.size(), "");
    for (size_t i = 0; i < scan.records.size(); ++i) {
      FUZZ_CHECK(first.entries[i].record == scan.records[i].first, "");
      FUZZ_CHECK((first.entries[i].end == JournalPosition{1, scan.records[i].second}), "");
    }
    FUZZ_CHECK(first.torn_bytes == size - scan.valid_bytes, std::to_string(first.torn_bytes));
  } else {
    FUZZ_CHECK(first.unreadable_segments == 1 && first.entries.empty(), scan.unreadable);
    FUZZ_CHECK(env.Exists(segment + ".unreadable") && !env.Exists(segment), "");
  }

  // Second recovery: the same, then the appended record.
  JournalRecovery second;
  Result<std::unique_ptr<Journal>> j = Journal::Open(&env, "j", {}, &second, &key);
  FUZZ_CHECK(j.ok(), j.status().ToString());
  FUZZ_CHECK(second.unreadable_segments == 0, "");
  std::vector<std::pair<std::string, JournalPosition>> expected = Entries(first);
  std::vector<std::pair<std::string, JournalPosition>> got = Entries(second);
  FUZZ_CHECK(!got.empty() && got.back().first == extra && got.back().second.segment == 2, "appended record lost");
  got.pop_back();
  FUZZ_CHECK(got == expected, "second recovery differs");
  return 0;
}

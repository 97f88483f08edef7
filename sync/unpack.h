// The central side's decoding: envelope -> records -> NDJSON lines, with
// duplicate batches dropped and gaps in each (device, stream) batch sequence
// reported. Used by edgesync-unpack; no Kafka in here, so it is testable and
// reusable by other consumers. Not thread-safe: one Unpacker per consumer.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"
#include "buffer/envelope.h"

namespace edgesync {

// Remembers which batch sequences of each (device, stream) were seen.
// Memory per stream is O(ranges seen out of order), not O(all batches), and
// at most kMaxOutOfOrder ranges: past that, the oldest missing sequences are
// given up on (a batch arriving that late would be taken for a duplicate).
class SequenceTracker {
 public:
  struct Gap {
    std::string device, stream;
    uint64_t first, last;  // missing batch sequences, inclusive
  };
  // expect_first_batch: the stream is read from its start, so the first
  // batch must be 1 (else whatever comes first is the baseline).
  explicit SequenceTracker(bool expect_first_batch) : expect_first_(expect_first_batch) {}
  // True when (device, stream, seq) is new; false for a duplicate. A jump
  // past the highest sequence seen appends the skipped range to `gaps`.
  bool Observe(const std::string& device, const std::string& stream, uint64_t seq,
               std::vector<Gap>* gaps);
  // The same for a range of sequences (a gap record's): true when any of
  // them is new.
  bool ObserveRange(const std::string& device, const std::string& stream, uint64_t first,
                    uint64_t last, std::vector<Gap>* gaps);
  // Ranges held because they arrived past a gap, over all streams.
  size_t out_of_order() const;

 private:
  struct State {
    uint64_t contiguous = 0;  // every seq <= this was seen
    uint64_t highest = 0;
    // Seen ranges above contiguous + 1 (first -> last), disjoint, not adjacent.
    std::map<uint64_t, uint64_t> above;
  };
  static constexpr size_t kMaxOutOfOrder = 65536;
  bool expect_first_;
  std::map<std::pair<std::string, std::string>, State> streams_;
};

struct UnpackStats {
  uint64_t batches = 0;
  uint64_t records = 0;
  uint64_t duplicate_batches = 0;
  uint64_t missing_batches = 0;
  uint64_t bad_envelopes = 0;
  uint64_t gap_records = 0;   // the agent's reports of batches it gave up
  uint64_t lost_events = 0;   // events those reports count
};

class Unpacker {
 public:
  explicit Unpacker(bool expect_first_batch) : tracker_(expect_first_batch) {}
  // Decodes one envelope. New batch: appends one NDJSON line per record to
  // `out`. New gap record: appends one NDJSON line (GapToJson) to
  // `gaps_out`. Duplicate: appends nothing. Either way appends
  // human-readable notes (gaps, duplicates) to `notes`. A bad envelope
  // returns its error and changes nothing else.
  Status Process(std::string_view envelope, std::string* out, std::string* gaps_out,
                 std::vector<std::string>* notes);
  const UnpackStats& stats() const { return stats_; }

 private:
  SequenceTracker tracker_;
  UnpackStats stats_;
};

// One record as an NDJSON line (with '\n'): device, stream, batch, topic,
// received_at (RFC 3339, µs, UTC), qos, properties if any, and payload as a
// JSON value when it is valid JSON, else payload_b64.
std::string RecordToJson(const BatchHeader& h, const Record& r);

// A gap record as an NDJSON line: device, stream, first_batch, last_batch,
// events, bytes, reason, first_event_at, last_event_at, recorded_at.
std::string GapToJson(const std::string& device, const Gap& gap);

std::string Base64Encode(std::string_view data);
// Appends `s` as a quoted JSON string (valid UTF-8 required; see RecordToJson).
void AppendJsonString(std::string_view s, std::string* out);
// "2026-11-22T03:04:05.123456Z"
std::string FormatRfc3339Micros(int64_t us);

}  // namespace edgesync

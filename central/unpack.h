// The central side's decoding: envelope -> records, with duplicate batches
// dropped and gaps in each (device, stream) batch sequence reported. Used by
// edgesync-unpack; no Kafka in here, so it is testable and reusable by other
// consumers. Not thread-safe: one Unpacker per consumer.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/json_text.h"
#include "base/status.h"
#include "format/envelope.h"

namespace edgesync {

// Remembers which batch sequences of each (device, stream) were seen.
// Memory per stream is O(ranges seen out of order), not O(all batches), and
// at most kMaxOutOfOrder ranges: past that, the oldest missing sequences are
// given up on (a batch arriving that late would be taken for a duplicate).
// Its state can be taken out (TakeDirty) and put back (Restore), which is
// how DedupeStore (central/dedupe_store.h) keeps it across restarts.
class SequenceTracker {
 public:
  struct Gap {
    std::string device, stream;
    uint64_t first, last;  // missing batch sequences, inclusive
  };
  // What the tracker knows of one (device, stream).
  struct StreamState {
    uint64_t contiguous = 0;  // every seq <= this was seen
    uint64_t highest = 0;
    // Every seq <= this was seen, accounted for by a gap record, or
    // reported missing: the next batch reports the unseen ones above it.
    uint64_t reported = 0;
    // Seen ranges above contiguous + 1 (first -> last), disjoint, not adjacent.
    std::map<uint64_t, uint64_t> above;
    int64_t last_seen_us = 0;  // wall clock of the last Observe (SetTime)
    bool operator==(const StreamState&) const = default;
  };
  struct SavedStream {
    std::string device, stream;
    StreamState state;
  };

  // 16384 ranges keep a stream's state record (central/state_changelog.h)
  // at 256 KiB, well inside Kafka's default message size.
  static constexpr size_t kMaxOutOfOrder = 16384;

  // expect_first_batch: the stream is read from its start, so the first
  // batch must be 1 (else whatever comes first is the baseline).
  explicit SequenceTracker(bool expect_first_batch) : expect_first_(expect_first_batch) {}
  // True when (device, stream, seq) is new; false for a duplicate. A batch
  // appends to `gaps` every sequence below it not yet seen, accounted for
  // or reported (a hole a gap record jumped over included): each hole is
  // reported once.
  bool Observe(const std::string& device, const std::string& stream, uint64_t seq,
               std::vector<Gap>* gaps);
  // The same for a range of sequences: true when any of them is new. With
  // `gaps` nullptr (a gap record's range) it reports no hole: the agent
  // sends the gap records of one loss in no fixed order, and the holes
  // between them are the next batch's to report.
  bool ObserveRange(const std::string& device, const std::string& stream, uint64_t first,
                    uint64_t last, std::vector<Gap>* gaps);
  // Ranges held because they arrived past a gap, over all streams.
  size_t out_of_order() const;

  // The wall clock (µs) stamped as last_seen_us on the streams observed
  // from now on. Callers set it before each envelope (or round).
  void SetTime(int64_t now_us) { now_us_ = now_us; }
  int64_t time() const { return now_us_; }
  // The streams whose state changed since the last call, and forgets that
  // they changed: what has to be saved.
  std::vector<SavedStream> TakeDirty();
  // Puts back a stream's saved state (at start, before any Observe).
  void Restore(const std::string& device, const std::string& stream, StreamState state);
  // Forgets the streams last seen before `cutoff_us`; returns how many, and
  // appends their (device, stream) to `forgotten` if given. A batch of a
  // forgotten stream starts it afresh, like one never seen.
  size_t ForgetSeenBefore(int64_t cutoff_us,
                          std::vector<std::pair<std::string, std::string>>* forgotten = nullptr);
  // Forgets one stream (a state store's deletion).
  void Erase(const std::string& device, const std::string& stream);
  size_t size() const { return streams_.size(); }
  // The state of one stream, or nullptr (for tests and tools).
  const StreamState* Find(const std::string& device, const std::string& stream) const;

 private:
  using Key = std::pair<std::string, std::string>;
  bool expect_first_;
  int64_t now_us_ = 0;
  std::map<Key, StreamState> streams_;
  std::set<Key> dirty_;
};

// Counters of one Unpacker; edgesync-unpack prints them as key=value. Those
// that add what devices claim (lost_events, missing_batches) stop at
// UINT64_MAX rather than wrap.
struct UnpackStats {
  uint64_t batches = 0;
  uint64_t records = 0;
  uint64_t duplicate_batches = 0;
  uint64_t missing_batches = 0;  // the batches of the "missing" lines (Unpacked::missing)
  uint64_t bad_envelopes = 0; // every refused envelope, whatever the reason
  uint64_t gap_records = 0;   // the agent's reports of batches it gave up
  uint64_t lost_events = 0;   // events those reports count
  // Refused envelopes by reason: RejectionName() of each Rejection, plus the
  // reasons a caller adds (CountRejected). Every known reason is present,
  // zero or not, so the counters line always has the same keys.
  std::map<std::string, uint64_t> rejected;
};

// Refusals decided after the envelope opened (edgesync-unpack --output
// kafka): the output topic its (device, stream) yields is not a valid Kafka
// topic name; one of its records is larger than the output accepts.
constexpr const char* kRejectInvalidTopic = "invalid_topic";
constexpr const char* kRejectRecordTooLarge = "record_too_large";
constexpr const char* kRejectFragment = "fragment";  // a fragment that cannot be part of a whole envelope

// What one accepted envelope amounts to.
struct Unpacked {
  OpenedEnvelope envelope;  // records of a new batch, or a new gap record's gap
  bool duplicate = false;   // every sequence it covers was seen before: emit nothing
  // Sequences this batch skipped past, not seen (yet): missing batches.
  // (Always empty for a gap record: see Unpacker::Accept.)
  std::vector<SequenceTracker::Gap> missing;
};

class Unpacker {
 public:
  // `open` holds the keys, dictionaries, size limit and plaintext policy;
  // the pointers in it must outlive the Unpacker.
  explicit Unpacker(bool expect_first_batch, OpenOptions open = {});

  // Checks and decodes one envelope; changes no sequence state. A refused
  // envelope is counted under its reason (`*why` says which) and its error
  // returned.
  Result<OpenedEnvelope> Open(std::string_view envelope, Rejection* why = nullptr);
  // Takes an opened envelope as received: de-duplicates it and finds the
  // sequences it skipped. Call it only for envelopes whose output will be
  // written (its sequence is remembered from now on).
  Unpacked Accept(OpenedEnvelope envelope) { return Accept(std::move(envelope), &tracker_); }
  // The same against `tracker` (a partition's state) instead of the
  // Unpacker's own; the counters are the Unpacker's either way.
  Unpacked Accept(OpenedEnvelope envelope, SequenceTracker* tracker);
  // Counts an envelope the caller refused after Open, under `reason`.
  void CountRejected(const std::string& reason);

  // Open + Accept with NDJSON output. New batch: appends one line per record
  // to `out` (RecordToJson). New gap record: one line to `gaps_out`
  // (GapToJson, "kind":"lost"); each missing range: one line to `gaps_out`
  // (MissingToJson, "kind":"missing"). Duplicate: appends nothing. Either
  // way appends human-readable notes (gaps, duplicates) to `notes`. A bad
  // envelope returns its error and changes nothing else.
  Status Process(std::string_view envelope, std::string* out, std::string* gaps_out,
                 std::vector<std::string>* notes, Rejection* why = nullptr);

  const UnpackStats& stats() const { return stats_; }
  SequenceTracker& tracker() { return tracker_; }

 private:
  OpenOptions open_;
  SequenceTracker tracker_;
  UnpackStats stats_;
};

// The stderr notes for what Accept found (duplicates, missing ranges, the
// agent's losses), appended to `notes`.
void DescribeUnpacked(const Unpacked& u, std::vector<std::string>* notes);

// The NDJSON lines (FORMAT.md, "edgesync-unpack output"): valid UTF-8
// whatever the bytes, text that is not UTF-8 given in base64. `stream` is
// the stream's name, with route_topic and route_priority after it when the
// header's stream names a routed lane (ParseLane).
//
// One record as an NDJSON line (with '\n'): device, stream, batch, topic,
// received_at (RFC 3339, µs, UTC), qos, content_type and properties (an
// array of [name, value]) if any, and payload as a JSON value when it is
// valid JSON, else payload_b64.
std::string RecordToJson(const BatchHeader& h, const Record& r);

// A gap record as an NDJSON line: kind ("lost"), device, stream,
// first_batch, last_batch, events, bytes, reason, first_event_at,
// last_event_at, recorded_at.
std::string GapToJson(const std::string& device, const Gap& gap);

// Batches a sequence jump revealed as an NDJSON line: kind ("missing"),
// device, stream, first_batch, last_batch, detected_at (`now_us`).
std::string MissingToJson(const SequenceTracker::Gap& gap, int64_t now_us);

// --output kafka: the Kafka headers of one record (edgesync-device,
// edgesync-stream, for a routed lane edgesync-route-topic and
// edgesync-route-priority, ..., one edgesync-property.<name> per property;
// values are bytes, as they are) and its key (the route key a plugin chose,
// the edgesync.key property, else the device id).
using Headers = std::vector<std::pair<std::string, std::string>>;
Headers RecordHeaders(const BatchHeader& h, const Record& r);
// The first of them: edgesync-device, edgesync-stream (the stream's name)
// and, for a routed lane, edgesync-route-topic and edgesync-route-priority.
Headers DeviceAndStreamHeaders(const std::string& device, std::string_view lane_name);
std::string_view RecordKey(const BatchHeader& h, const Record& r);

// (Base64Encode, FormatRfc3339Micros and AppendJsonString: base/json_text.h.)

}  // namespace edgesync

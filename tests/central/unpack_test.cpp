#include "central/unpack.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <optional>

#include "base/backoff.h"
#include "base/coding.h"
#include "base/crc32c.h"
#include "format/crypto.h"
#include "tests/support/envelopes.h"

namespace edgesync {
namespace {

TEST(SequenceTracker, MemoryStaysBoundedAfterAGapThatNeverFills) {
  SequenceTracker t(true);
  std::vector<SequenceTracker::Gap> gaps;
  EXPECT_TRUE(t.Observe("d", "s", 1, &gaps));
  // Every even batch is missing: 200,000 separate ranges arrive past holes.
  for (uint64_t seq = 3; seq < 400'003; seq += 2) ASSERT_TRUE(t.Observe("d", "s", seq, &gaps)) << seq;
  EXPECT_EQ(gaps.size(), 200'000u);
  EXPECT_LE(t.out_of_order(), SequenceTracker::kMaxOutOfOrder);  // without the bound: 200,000
  EXPECT_FALSE(t.Observe("d", "s", 300'001, &gaps));  // still a duplicate
  EXPECT_FALSE(t.Observe("d", "s", 400'001, &gaps));
}

TEST(SequenceTracker, DropsDuplicatesAndReportsGaps) {
  SequenceTracker t(/*expect_first_batch=*/true);
  std::vector<SequenceTracker::Gap> gaps;
  EXPECT_TRUE(t.Observe("d", "s", 1, &gaps));
  EXPECT_TRUE(t.Observe("d", "s", 2, &gaps));
  EXPECT_FALSE(t.Observe("d", "s", 2, &gaps));
  EXPECT_FALSE(t.Observe("d", "s", 1, &gaps));
  EXPECT_TRUE(gaps.empty());
  EXPECT_TRUE(t.Observe("d", "s", 5, &gaps));
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].first, 3u);
  EXPECT_EQ(gaps[0].last, 4u);
  EXPECT_FALSE(t.Observe("d", "s", 5, &gaps));
  EXPECT_TRUE(t.Observe("d", "s", 3, &gaps));  // late, not a duplicate
  EXPECT_TRUE(t.Observe("d", "s", 4, &gaps));
  EXPECT_FALSE(t.Observe("d", "s", 4, &gaps));
  EXPECT_EQ(gaps.size(), 1u);
  // Streams and devices are independent.
  EXPECT_TRUE(t.Observe("d", "other", 1, &gaps));
  EXPECT_TRUE(t.Observe("e", "s", 1, &gaps));
  // Reading from the start, a first batch other than 1 is a gap.
  EXPECT_TRUE(t.Observe("f", "s", 3, &gaps));
  ASSERT_EQ(gaps.size(), 2u);
  EXPECT_EQ(gaps[1].first, 1u);

  SequenceTracker live(/*expect_first_batch=*/false);
  std::vector<SequenceTracker::Gap> none;
  EXPECT_TRUE(live.Observe("d", "s", 40, &none));
  EXPECT_TRUE(live.Observe("d", "s", 41, &none));
  EXPECT_TRUE(none.empty());
}

TEST(SequenceTracker, RangesAccountForGivenUpBatches) {
  SequenceTracker t(true);
  std::vector<SequenceTracker::Gap> gaps;
  EXPECT_TRUE(t.Observe("d", "s", 1, &gaps));
  // The agent gave up 2..4 and says so before 5 arrives: no hole is reported.
  EXPECT_TRUE(t.ObserveRange("d", "s", 2, 4, &gaps));
  EXPECT_TRUE(t.Observe("d", "s", 5, &gaps));
  EXPECT_TRUE(gaps.empty());
  EXPECT_FALSE(t.ObserveRange("d", "s", 2, 4, &gaps)) << "the same record twice";
  EXPECT_FALSE(t.ObserveRange("d", "s", 3, 3, &gaps));
  EXPECT_EQ(t.out_of_order(), 0u);
  // Out of order: a range past a hole, then the hole.
  EXPECT_TRUE(t.ObserveRange("d", "s", 8, 10, &gaps));
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_EQ(gaps[0].first, 6u);
  EXPECT_EQ(gaps[0].last, 7u);
  EXPECT_FALSE(t.Observe("d", "s", 9, &gaps));
  EXPECT_TRUE(t.ObserveRange("d", "s", 6, 9, &gaps)) << "6 and 7 are new";
  EXPECT_EQ(t.out_of_order(), 0u);
  EXPECT_FALSE(t.Observe("d", "s", 10, &gaps));
  // A store-corrupt record may cover a huge range: constant work.
  EXPECT_TRUE(t.ObserveRange("d", "s", 1, 1ull << 40, &gaps));
  EXPECT_FALSE(t.Observe("d", "s", 123'456'789, &gaps));
  EXPECT_TRUE(t.Observe("d", "s", (1ull << 40) + 1, &gaps));
  EXPECT_EQ(gaps.size(), 1u);
}

std::string Envelope(uint64_t seq, const std::vector<Record>& records,
                     const std::string& stream = "ocpp", const std::string& device = "cs-0007") {
  std::string body;
  for (const auto& r : records) {
    std::string enc;
    EncodeRecord(r, &enc);
    AppendToBody(enc, &body);
  }
  BatchHeader h;
  h.device_id = device;
  h.stream = stream;
  h.batch_seq = seq;
  h.event_count = static_cast<uint32_t>(records.size());
  return *SealEnvelope(h, body);
}

TEST(Unpacker, EmitsOneJsonLinePerRecordAndDropsDuplicateBatches) {
  Record json;
  json.topic = "charger/cs-0007/ocpp/MeterValues";
  json.received_at_us = 1'795'000'000'123'456;
  json.qos = 1;
  json.payload = "{ \"seq\": 1,\n  \"kWh\": 12.5 }";
  Record binary = json;
  binary.payload = std::string("\x00\xff\x10", 3);
  Record quote = json;
  quote.topic = "charger/\"odd\"\\topic";
  quote.payload = "not json";

  Unpacker u(true);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  ASSERT_TRUE(u.Process(Envelope(1, {json, binary, quote}), &out, &gaps_out, &notes).ok());
  EXPECT_TRUE(notes.empty());

  simdjson::dom::parser parser;
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < out.size()) {
    size_t nl = out.find('\n', start);
    ASSERT_NE(nl, std::string::npos);
    lines.push_back(out.substr(start, nl - start));
    start = nl + 1;
  }
  ASSERT_EQ(lines.size(), 3u);
  simdjson::dom::element e;
  ASSERT_EQ(parser.parse(lines[0]).get(e), simdjson::SUCCESS) << lines[0];
  EXPECT_EQ(std::string_view(e["device"]), "cs-0007");
  EXPECT_EQ(std::string_view(e["stream"]), "ocpp");
  EXPECT_EQ(uint64_t(e["batch"]), 1u);
  EXPECT_EQ(std::string_view(e["received_at"]), "2026-11-18T11:06:40.123456Z");
  EXPECT_EQ(double(e["payload"]["kWh"]), 12.5);
  ASSERT_EQ(parser.parse(lines[1]).get(e), simdjson::SUCCESS) << lines[1];
  EXPECT_EQ(std::string_view(e["payload_b64"]), "AP8Q");
  ASSERT_EQ(parser.parse(lines[2]).get(e), simdjson::SUCCESS) << lines[2];
  EXPECT_EQ(std::string_view(e["topic"]), "charger/\"odd\"\\topic");
  EXPECT_EQ(std::string_view(e["payload_b64"]), Base64Encode("not json"));

  out.clear();
  ASSERT_TRUE(u.Process(Envelope(1, {json}), &out, &gaps_out, &notes).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(u.stats().duplicate_batches, 1u);
  ASSERT_TRUE(u.Process(Envelope(3, {json}), &out, &gaps_out, &notes).ok());
  EXPECT_EQ(u.stats().missing_batches, 1u);
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_NE(notes[1].find("gap"), std::string::npos);

  std::string bad = Envelope(4, {json});
  bad[bad.size() / 2] ^= 1;
  EXPECT_FALSE(u.Process(bad, &out, &gaps_out, &notes).ok());
  EXPECT_EQ(u.stats().bad_envelopes, 1u);
  EXPECT_EQ(u.stats().records, 4u);
  // Batch 2 was skipped: one "missing" line, nothing for the bad envelope.
  EXPECT_EQ(std::count(gaps_out.begin(), gaps_out.end(), '\n'), 1) << gaps_out;
  EXPECT_NE(gaps_out.find("\"kind\":\"missing\""), std::string::npos) << gaps_out;
}

TEST(Unpacker, GapRecordsGoToTheGapsOutputOnce) {
  Unpacker u(true);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  Record r;
  r.topic = "t";
  r.payload = "{}";
  ASSERT_TRUE(u.Process(Envelope(1, {r}), &out, &gaps_out, &notes).ok());
  Gap g;
  g.stream = "ocpp";
  g.first_seq = 2;
  g.last_seq = 3;
  g.events = 20;
  g.bytes = 4096;
  g.reason = "quota";
  g.at_us = 1'795'000'000'000'000;
  const std::string record = *SealGapRecord("cs-0007", g);
  ASSERT_TRUE(u.Process(record, &out, &gaps_out, &notes).ok());
  ASSERT_TRUE(u.Process(record, &out, &gaps_out, &notes).ok());  // sent twice
  ASSERT_TRUE(u.Process(Envelope(4, {r}), &out, &gaps_out, &notes).ok());
  EXPECT_EQ(u.stats().missing_batches, 0u) << "2..3 are accounted for";
  EXPECT_EQ(u.stats().gap_records, 1u);
  EXPECT_EQ(u.stats().lost_events, 20u);
  EXPECT_EQ(u.stats().duplicate_batches, 1u);
  ASSERT_EQ(std::count(gaps_out.begin(), gaps_out.end(), '\n'), 1);
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  ASSERT_EQ(parser.parse(gaps_out).get(e), simdjson::SUCCESS) << gaps_out;
  EXPECT_EQ(std::string_view(e["kind"]), "lost");
  EXPECT_EQ(std::string_view(e["device"]), "cs-0007");
  EXPECT_EQ(std::string_view(e["stream"]), "ocpp");
  EXPECT_EQ(uint64_t(e["first_batch"]), 2u);
  EXPECT_EQ(uint64_t(e["last_batch"]), 3u);
  EXPECT_EQ(uint64_t(e["events"]), 20u);
  EXPECT_EQ(std::string_view(e["reason"]), "quota");
  EXPECT_EQ(std::string_view(e["recorded_at"]), "2026-11-18T11:06:40.000000Z");
}

// Counters add what devices claim: two gap records of 2^64-1 events each
// used to wrap lost_events to a small number.
TEST(Unpacker, CountersOfWhatDevicesClaimSaturateInsteadOfWrapping) {
  Unpacker u(true);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  Gap g;
  g.stream = "s";
  g.events = UINT64_MAX;
  g.reason = "quota";
  g.first_seq = 1;
  g.last_seq = 1;
  ASSERT_TRUE(u.Process(*SealGapRecord("d", g), &out, &gaps_out, &notes).ok());
  g.first_seq = 2;
  g.last_seq = 2;
  ASSERT_TRUE(u.Process(*SealGapRecord("d", g), &out, &gaps_out, &notes).ok());
  EXPECT_EQ(u.stats().lost_events, UINT64_MAX);
  // Holes of almost 2^63 batches (sequences end at 2^63-1), in three
  // streams: their sum does not fit.
  Record r;
  r.topic = "t";
  for (const char* stream : {"a", "b", "c"}) {
    ASSERT_TRUE(u.Process(Envelope(1, {r}, stream, "d"), &out, &gaps_out, &notes).ok());
    const std::string last = Envelope(format::kMaxBatchSeq, {r}, stream, "d");
    ASSERT_TRUE(u.Process(last, &out, &gaps_out, &notes).ok());
  }
  EXPECT_EQ(std::count(gaps_out.begin(), gaps_out.end(), '\n'), 2 + 3) << gaps_out;
  EXPECT_EQ(u.stats().missing_batches, UINT64_MAX) << "not wrapped";
}

TEST(Unpacker, SequenceJumpsGoToTheGapsOutputAsMissing) {
  Unpacker u(true);
  u.tracker().SetTime(1'795'000'000'000'000);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  Record r;
  r.topic = "t";
  r.payload = "{}";
  ASSERT_TRUE(u.Process(Envelope(1, {r}), &out, &gaps_out, &notes).ok());
  ASSERT_TRUE(u.Process(Envelope(5, {r}), &out, &gaps_out, &notes).ok());
  ASSERT_EQ(std::count(gaps_out.begin(), gaps_out.end(), '\n'), 1) << gaps_out;
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  ASSERT_EQ(parser.parse(gaps_out).get(e), simdjson::SUCCESS) << gaps_out;
  EXPECT_EQ(std::string_view(e["kind"]), "missing");
  EXPECT_EQ(std::string_view(e["device"]), "cs-0007");
  EXPECT_EQ(uint64_t(e["first_batch"]), 2u);
  EXPECT_EQ(uint64_t(e["last_batch"]), 4u);
  EXPECT_EQ(std::string_view(e["detected_at"]), "2026-11-18T11:06:40.000000Z");
  // A late batch fills the hole without a new line.
  ASSERT_TRUE(u.Process(Envelope(3, {r}), &out, &gaps_out, &notes).ok());
  EXPECT_EQ(std::count(gaps_out.begin(), gaps_out.end(), '\n'), 1);
}

TEST(Unpacker, AGapRecordAheadOfAnotherReportsNoMissingBatches) {
  Unpacker u(true);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  Gap late;
  late.stream = "ocpp";
  late.first_seq = late.last_seq = 3;
  late.reason = "quota";
  Gap early = late;
  early.first_seq = 1;
  early.last_seq = 2;
  ASSERT_TRUE(u.Process(*SealGapRecord("cs-0007", late), &out, &gaps_out, &notes).ok());
  ASSERT_TRUE(u.Process(*SealGapRecord("cs-0007", early), &out, &gaps_out, &notes).ok());
  Record r;
  r.topic = "t";
  r.payload = "{}";
  ASSERT_TRUE(u.Process(Envelope(4, {r}), &out, &gaps_out, &notes).ok());
  EXPECT_EQ(gaps_out.find("\"missing\""), std::string::npos) << gaps_out;
  EXPECT_EQ(std::count(gaps_out.begin(), gaps_out.end(), '\n'), 2);
  EXPECT_EQ(u.stats().missing_batches, 0u) << "nothing reported missing, nothing counted";
}

// The NDJSON lines of `text`, each parsed (and so valid UTF-8) on its own.
std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    lines.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return lines;
}

// The (first_batch, last_batch) of each "missing" line in `gaps_out`.
std::vector<std::pair<uint64_t, uint64_t>> MissingLines(const std::string& gaps_out) {
  std::vector<std::pair<uint64_t, uint64_t>> out;
  simdjson::dom::parser parser;
  for (const std::string& line : Lines(gaps_out)) {
    simdjson::dom::element e;
    EXPECT_EQ(parser.parse(line).get(e), simdjson::SUCCESS) << line;
    if (std::string_view(e["kind"]) == "missing") {
      out.emplace_back(uint64_t(e["first_batch"]), uint64_t(e["last_batch"]));
    }
  }
  return out;
}

// missing_batches counts the batches of the "missing" lines, nothing else:
// a gap record that jumps ahead used to count the sequences it jumped over
// (gap record 2..2, then batch 1: missing_batches=1, and no line said so).
TEST(Unpacker, MissingBatchesCountsExactlyTheBatchesOfTheMissingLines) {
  struct Step {
    uint64_t first, last;
    bool gap;  // a gap record for first..last, else batch `first`
  };
  struct Case {
    const char* name;
    std::vector<Step> steps;
    std::vector<std::pair<uint64_t, uint64_t>> missing;
  };
  const std::vector<Case> cases = {
      {"gap 2..2, batch 1", {{2, 2, true}, {1, 1, false}}, {}},
      {"gap 2..5, batch 1, batch 6", {{2, 5, true}, {1, 1, false}, {6, 6, false}}, {}},
      {"gap 4..6, gap 1..3, batch 7", {{4, 6, true}, {1, 3, true}, {7, 7, false}}, {}},
      // Jumped over by a gap record (2): reported by the next batch, with
      // the hole that batch jumps (5); by then no gap record accounted for it.
      {"batch 1, gap 3..4, batch 6", {{1, 1, false}, {3, 4, true}, {6, 6, false}}, {{2, 2}, {5, 5}}},
      // The gap record for it came first: only 5.
      {"batch 1, gap 3..4, gap 2..2, batch 6",
       {{1, 1, false}, {3, 4, true}, {2, 2, true}, {6, 6, false}},
       {{5, 5}}},
      // Holes between gap records and batches, each reported once.
      {"batch 1, gap 4..4, gap 8..9, batch 11, batch 12",
       {{1, 1, false}, {4, 4, true}, {8, 9, true}, {11, 11, false}, {12, 12, false}},
       {{2, 3}, {5, 7}, {10, 10}}},
      {"batch 1, batch 4, gap 2..2, batch 6",
       {{1, 1, false}, {4, 4, false}, {2, 2, true}, {6, 6, false}},
       {{2, 3}, {5, 5}}},
      // Reported, then arriving late or given up: the line was written, it counts.
      {"batch 3, batch 1, gap 2..2", {{3, 3, false}, {1, 1, false}, {2, 2, true}}, {{1, 2}}},
      {"batch 1, batch 1, batch 3, batch 3",
       {{1, 1, false}, {1, 1, false}, {3, 3, false}, {3, 3, false}},
       {{2, 2}}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    Unpacker u(/*expect_first_batch=*/true);
    std::string out, gaps_out;
    std::vector<std::string> notes;
    Record r;
    r.topic = "t";
    for (const Step& step : c.steps) {
      Gap g;
      g.stream = "ocpp";
      g.first_seq = step.first;
      g.last_seq = step.last;
      g.reason = "quota";
      const std::string e = step.gap ? *SealGapRecord("cs-0007", g) : Envelope(step.first, {r});
      ASSERT_TRUE(u.Process(e, &out, &gaps_out, &notes).ok());
    }
    const std::vector<std::pair<uint64_t, uint64_t>> lines = MissingLines(gaps_out);
    EXPECT_EQ(lines, c.missing) << gaps_out;
    uint64_t batches = 0;
    for (const auto& [first, last] : lines) batches += last - first + 1;
    EXPECT_EQ(u.stats().missing_batches, batches);
  }
}

// A batch header's stream names a lane; the lines name its stream, and its
// route when a plugin routed the events to another Kafka topic or priority.
TEST(Unpacker, RoutedLanesGiveTheStreamAndTheRouteApart) {
  const std::string routed = "ocpp@edge.urgent@high";
  Unpacker u(true);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  Record r;
  r.topic = "t";
  r.payload = "{}";
  ASSERT_TRUE(u.Process(Envelope(1, {r}), &out, &gaps_out, &notes).ok());
  ASSERT_TRUE(u.Process(Envelope(1, {r}, routed), &out, &gaps_out, &notes).ok());
  EXPECT_EQ(u.stats().duplicate_batches, 0u) << "a lane's sequence is its own";
  ASSERT_TRUE(u.Process(Envelope(4, {r}, routed), &out, &gaps_out, &notes).ok());  // 2..3 missing
  Gap g;
  g.stream = routed;
  g.first_seq = 5;
  g.last_seq = 6;
  g.reason = "quota";
  ASSERT_TRUE(u.Process(*SealGapRecord("cs-0007", g), &out, &gaps_out, &notes).ok());
  ASSERT_TRUE(u.Process(Envelope(3, {r}), &out, &gaps_out, &notes).ok());  // plain lane: 2 missing

  simdjson::dom::parser parser;
  simdjson::dom::element e;
  std::string_view text;
  const std::vector<std::string> records = Lines(out);
  ASSERT_EQ(records.size(), 4u) << out;
  for (size_t i = 0; i < records.size(); ++i) {
    ASSERT_EQ(parser.parse(records[i]).get(e), simdjson::SUCCESS) << records[i];
    EXPECT_EQ(std::string_view(e["stream"]), "ocpp") << records[i];
    if (i == 1 || i == 2) {
      EXPECT_EQ(std::string_view(e["route_topic"]), "edge.urgent") << records[i];
      EXPECT_EQ(std::string_view(e["route_priority"]), "high") << records[i];
    } else {
      EXPECT_NE(e["route_topic"].get(text), simdjson::SUCCESS) << records[i];
      EXPECT_NE(e["route_priority"].get(text), simdjson::SUCCESS) << records[i];
    }
  }
  // Gap lines: the routed lane's missing 2..3 and lost 5..6, the plain lane's missing 2.
  const std::vector<std::string> gaps = Lines(gaps_out);
  ASSERT_EQ(gaps.size(), 3u) << gaps_out;
  const char* kinds[] = {"missing", "lost", "missing"};
  const uint64_t firsts[] = {2, 5, 2};
  for (size_t i = 0; i < gaps.size(); ++i) {
    ASSERT_EQ(parser.parse(gaps[i]).get(e), simdjson::SUCCESS) << gaps[i];
    EXPECT_EQ(std::string_view(e["kind"]), kinds[i]) << gaps[i];
    EXPECT_EQ(uint64_t(e["first_batch"]), firsts[i]) << gaps[i];
    EXPECT_EQ(std::string_view(e["stream"]), "ocpp") << gaps[i];
    if (i < 2) {
      EXPECT_EQ(std::string_view(e["route_topic"]), "edge.urgent") << gaps[i];
      EXPECT_EQ(std::string_view(e["route_priority"]), "high") << gaps[i];
    } else {
      EXPECT_NE(e["route_topic"].get(text), simdjson::SUCCESS) << gaps[i];
    }
  }
  EXPECT_EQ(u.stats().missing_batches, 3u);

  // --output kafka: the same, as headers.
  BatchHeader h;
  h.device_id = "cs-0007";
  h.stream = routed;
  h.batch_seq = 1;
  Headers headers = RecordHeaders(h, r);
  auto value = [&headers](const std::string& name) -> std::optional<std::string> {
    for (const auto& [k, v] : headers) {
      if (k == name) return v;
    }
    return std::nullopt;
  };
  EXPECT_EQ(value("edgesync-stream"), "ocpp");
  EXPECT_EQ(value("edgesync-route-topic"), "edge.urgent");
  EXPECT_EQ(value("edgesync-route-priority"), "high");
  h.stream = "ocpp";
  headers = RecordHeaders(h, r);
  EXPECT_EQ(value("edgesync-stream"), "ocpp");
  EXPECT_EQ(value("edgesync-route-topic"), std::nullopt);
  EXPECT_EQ(value("edgesync-route-priority"), std::nullopt);
}

// Whatever bytes a device sends, every line is valid UTF-8 and JSON, and
// nothing is lost: properties keep their order and repeated names, and
// text that is not UTF-8 comes in base64.
TEST(Unpacker, LinesAreValidUtf8AndLoseNothingWhateverTheBytes) {
  const std::string bad_name("\xff\xfe", 2), bad_value("caf\xc3", 4);
  Record r;
  r.topic = "t/\xff";
  r.content_type = "text/\xfe";
  r.payload = "{}";
  r.properties = {{"origin", "pos-7"}, {"origin", "pos-8"}, {bad_name, "v"}, {"k", bad_value},
                  {"quote\"", "line\nbreak"}};
  const std::string device = "cs-\xe9";
  const std::string lane = "ocpp\xa0@edge.\xff@high";
  Unpacker u(true);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  ASSERT_TRUE(u.Process(Envelope(2, {r}, lane, device), &out, &gaps_out, &notes).ok());
  Gap g;
  g.stream = lane;
  g.first_seq = g.last_seq = 3;
  g.reason = "quota\x80";
  ASSERT_TRUE(u.Process(*SealGapRecord(device, g), &out, &gaps_out, &notes).ok());

  for (const std::string& line : Lines(out + gaps_out)) {
    EXPECT_TRUE(simdjson::validate_utf8(line.data(), line.size())) << line;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  std::string_view text;
  ASSERT_EQ(parser.parse(out).get(e), simdjson::SUCCESS) << out;
  EXPECT_EQ(std::string_view(e["device_b64"]), Base64Encode(device));
  EXPECT_NE(e["device"].get(text), simdjson::SUCCESS);
  EXPECT_EQ(std::string_view(e["stream_b64"]), Base64Encode("ocpp\xa0"));
  EXPECT_EQ(std::string_view(e["route_topic_b64"]), Base64Encode("edge.\xff"));
  EXPECT_EQ(std::string_view(e["route_priority"]), "high");
  EXPECT_EQ(std::string_view(e["topic_b64"]), Base64Encode(r.topic));
  EXPECT_EQ(std::string_view(e["content_type_b64"]), Base64Encode(r.content_type));
  simdjson::dom::array props;
  ASSERT_EQ(e["properties"].get(props), simdjson::SUCCESS) << out;
  ASSERT_EQ(props.size(), r.properties.size());
  size_t i = 0;
  for (simdjson::dom::element pair : props) {
    const auto& [name, value] = r.properties[i++];
    simdjson::dom::array nv;
    ASSERT_EQ(pair.get(nv), simdjson::SUCCESS);
    ASSERT_EQ(nv.size(), 2u);
    // Name and value: the string itself, or {"b64": ...} for bytes that are not UTF-8.
    const std::pair<simdjson::dom::element, std::string> both[] = {{nv.at(0).value(), name},
                                                                    {nv.at(1).value(), value}};
    for (const auto& [got, want] : both) {
      if (want == bad_name || want == bad_value) {
        EXPECT_EQ(std::string_view(got["b64"]), Base64Encode(want));
        EXPECT_EQ(simdjson::dom::object(got).size(), 1u);
      } else {
        EXPECT_EQ(std::string_view(got), want);
      }
    }
  }
  const std::string shape = R"("properties":[["origin","pos-7"],["origin","pos-8"],[{"b64":")";
  EXPECT_NE(out.find(shape), std::string::npos) << out;

  // Batch 1 missing, then the gap record's line.
  const std::vector<std::string> gaps = Lines(gaps_out);
  ASSERT_EQ(gaps.size(), 2u) << gaps_out;
  for (const std::string& line : gaps) {
    ASSERT_EQ(parser.parse(line).get(e), simdjson::SUCCESS) << line;
    EXPECT_EQ(std::string_view(e["device_b64"]), Base64Encode(device));
    EXPECT_EQ(std::string_view(e["stream_b64"]), Base64Encode("ocpp\xa0"));
    EXPECT_EQ(std::string_view(e["route_topic_b64"]), Base64Encode("edge.\xff"));
    EXPECT_EQ(std::string_view(e["route_priority"]), "high");
  }
  EXPECT_EQ(std::string_view(e["kind"]), "lost");
  EXPECT_EQ(std::string_view(e["reason_b64"]), Base64Encode(g.reason));

  // Kafka headers are bytes: as the device sent them.
  BatchHeader h;
  h.device_id = device;
  h.stream = lane;
  const Headers headers = RecordHeaders(h, r);
  EXPECT_NE(std::find(headers.begin(), headers.end(),
                      std::pair<std::string, std::string>("edgesync-property." + bad_name, "v")),
            headers.end());
  EXPECT_NE(std::find(headers.begin(), headers.end(),
                      std::pair<std::string, std::string>("edgesync-stream", "ocpp\xa0")),
            headers.end());
  EXPECT_EQ(std::count_if(headers.begin(), headers.end(),
                          [](const auto& kv) { return kv.first == "edgesync-property.origin"; }),
            2);
}

// --- Hostile input: each case refused with its own reason, counted once.

using KeyPair = testing::TestKeyPair;

std::string Body(int records) {
  std::string body;
  for (int i = 0; i < records; ++i) {
    Record r;
    r.topic = "charger/cs-0007/ocpp/MeterValues";
    r.received_at_us = 1'795'000'000'000'000 + i;
    r.qos = 1;
    r.payload = "{\"seq\":" + std::to_string(i) + ",\"kWh\":12.5,\"pad\":\"" +
                std::string(200, 'a') + "\"}";
    AppendToBody(r, &body);
  }
  return body;
}

std::string Sealed(uint64_t seq, const Recipient* to, int records = 3) {
  BatchHeader h;
  h.device_id = "cs-0007";
  h.stream = "ocpp";
  h.batch_seq = seq;
  h.event_count = static_cast<uint32_t>(records);
  SealOptions so;
  so.recipient = to;
  Result<std::string> e = SealEnvelope(h, Body(records), so);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? *e : std::string();
}

// What a forger who knows the format does after changing bytes.
using testing::WithFixedCrc;

class HostileInput : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(keys_.AddPrivate(central_.private_key).ok());
    open_.keys = &keys_;
    open_.require_encryption = true;
    open_.max_raw_bytes = 64 * 1024;
  }
  // Feeds `bytes` to a fresh Unpacker and checks it is refused for
  // `reason`, counted once under it and nowhere else, and emits nothing.
  void ExpectRejected(const std::string& bytes, Rejection reason) {
    Unpacker u(true, open_);
    std::string out, gaps_out;
    std::vector<std::string> notes;
    Rejection why = Rejection::kNone;
    Status st = u.Process(bytes, &out, &gaps_out, &notes, &why);
    EXPECT_FALSE(st.ok());
    EXPECT_EQ(why, reason) << st.ToString();
    EXPECT_FALSE(st.message().empty());
    EXPECT_TRUE(out.empty());
    EXPECT_TRUE(gaps_out.empty());
    EXPECT_EQ(u.stats().bad_envelopes, 1u);
    for (const auto& [name, n] : u.stats().rejected) {
      EXPECT_EQ(n, name == RejectionName(reason) ? 1u : 0u) << name;
    }
    // The same stream goes on: the refused envelope left no trace.
    ASSERT_TRUE(u.Process(Sealed(1, &to_), &out, &gaps_out, &notes).ok());
    EXPECT_EQ(u.stats().records, 3u);
    EXPECT_EQ(u.stats().missing_batches, 0u);
  }

  KeyPair central_;
  const Recipient to_ = Recipient::For(central_.public_key);
  Keyring keys_;
  OpenOptions open_;
};

TEST_F(HostileInput, FlippedBitInTheHeaderIsAChecksumError) {
  std::string e = Sealed(1, &to_);
  e[20] ^= 0x04;  // event_count
  ExpectRejected(e, Rejection::kChecksum);
}

TEST_F(HostileInput, FlippedBitInTheBodyIsAChecksumErrorOrWithAFixedCrcADecryptError) {
  std::string e = Sealed(1, &to_);
  e[e.size() - 30] ^= 0x01;
  ExpectRejected(e, Rejection::kChecksum);
  ExpectRejected(WithFixedCrc(e), Rejection::kDecrypt);
}

TEST_F(HostileInput, TruncatedMessageIsMalformed) {
  const std::string e = Sealed(1, &to_);
  ExpectRejected(e.substr(0, e.size() - 1), Rejection::kMalformed);
  ExpectRejected(e.substr(0, 30), Rejection::kMalformed);
  ExpectRejected("", Rejection::kMalformed);
}

TEST_F(HostileInput, EnvelopeForAnotherKeyIsAnUnknownKey) {
  KeyPair other;
  const Recipient to_other = Recipient::For(other.public_key);
  ExpectRejected(Sealed(1, &to_other), Rejection::kUnknownKey);
}

TEST_F(HostileInput, UnknownVersionIsRefusedEvenWithACorrectCrc) {
  std::string e = Sealed(1, &to_);
  e[4] = 3;  // 1 and 2 are known
  ExpectRejected(WithFixedCrc(e), Rejection::kVersion);
}

TEST_F(HostileInput, ZipBombAboveTheLimitIsRefused) {
  // 400 records of ~260 bytes: about 100 KiB raw, compressing to little.
  ExpectRejected(Sealed(1, &to_, 400), Rejection::kTooLarge);
  // Sealed, a changed raw_len fails authentication (the header is the AAD).
  std::string sealed = Sealed(1, &to_, 100);
  StoreU32(sealed.data() + 54, 1000);
  ExpectRejected(WithFixedCrc(sealed), Rejection::kDecrypt);
  // Plain, a body that decompresses past its stated raw_len is refused
  // without writing past it.
  open_.require_encryption = false;
  std::string plain = Sealed(1, nullptr, 100);
  StoreU32(plain.data() + 54, 1000);
  ExpectRejected(WithFixedCrc(plain), Rejection::kCodec);
}

TEST_F(HostileInput, PlainBatchIsRefusedWhenKeysAreHeldUnlessAllowed) {
  ExpectRejected(Sealed(1, nullptr), Rejection::kNotEncrypted);
  open_.require_encryption = false;  // --allow-plaintext
  Unpacker u(true, open_);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  EXPECT_TRUE(u.Process(Sealed(1, nullptr), &out, &gaps_out, &notes).ok());
  EXPECT_TRUE(u.Process(Sealed(2, &to_), &out, &gaps_out, &notes).ok());
  EXPECT_EQ(u.stats().records, 6u);
}

TEST_F(HostileInput, EveryReasonIsCountedSeparately) {
  Unpacker u(true, open_);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  std::string good = Sealed(1, &to_);
  std::string flipped = good;
  flipped[10] ^= 1;
  std::string version = good;
  version[4] = 7;
  for (const std::string& bad : {flipped, flipped, good.substr(0, 40), WithFixedCrc(version)}) {
    EXPECT_FALSE(u.Process(bad, &out, &gaps_out, &notes).ok());
  }
  u.CountRejected(kRejectInvalidTopic);
  EXPECT_EQ(u.stats().bad_envelopes, 5u);
  EXPECT_EQ(u.stats().rejected.at("checksum"), 2u);
  EXPECT_EQ(u.stats().rejected.at("malformed"), 1u);
  EXPECT_EQ(u.stats().rejected.at("unknown_version"), 1u);
  EXPECT_EQ(u.stats().rejected.at(kRejectInvalidTopic), 1u);
  EXPECT_EQ(u.stats().rejected.at("decrypt_failed"), 0u);  // present, zero
  EXPECT_TRUE(u.Process(good, &out, &gaps_out, &notes).ok());
  EXPECT_EQ(u.stats().records, 3u);
}

TEST(KeyRotation, EnvelopesForEitherKeyOpenAndNoOtherDoes) {
  KeyPair old_key, new_key, stranger;
  const Recipient to_old = Recipient::For(old_key.public_key);
  const Recipient to_new = Recipient::For(new_key.public_key);
  const Recipient to_stranger = Recipient::For(stranger.public_key);
  Keyring keys;
  ASSERT_TRUE(keys.AddPrivate(old_key.private_key).ok());
  ASSERT_TRUE(keys.AddPrivate(new_key.private_key).ok());
  OpenOptions open;
  open.keys = &keys;
  open.require_encryption = true;
  Unpacker u(true, open);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  ASSERT_TRUE(u.Process(Sealed(1, &to_old), &out, &gaps_out, &notes).ok());
  ASSERT_TRUE(u.Process(Sealed(2, &to_new), &out, &gaps_out, &notes).ok());
  ASSERT_TRUE(u.Process(Sealed(3, &to_old), &out, &gaps_out, &notes).ok());
  Rejection why = Rejection::kNone;
  EXPECT_FALSE(u.Process(Sealed(4, &to_stranger), &out, &gaps_out, &notes, &why).ok());
  EXPECT_EQ(why, Rejection::kUnknownKey);
  EXPECT_EQ(u.stats().batches, 3u);
  EXPECT_EQ(u.stats().records, 9u);
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 9);
}

TEST(SequenceTracker, DirtyStreamsAndForgettingByAge) {
  SequenceTracker t(false);
  std::vector<SequenceTracker::Gap> gaps;
  t.SetTime(1000);
  EXPECT_TRUE(t.Observe("d", "a", 1, &gaps));
  EXPECT_TRUE(t.Observe("d", "b", 1, &gaps));
  EXPECT_EQ(t.TakeDirty().size(), 2u);
  EXPECT_TRUE(t.TakeDirty().empty());
  t.SetTime(5000);
  EXPECT_FALSE(t.Observe("d", "a", 1, &gaps));  // a duplicate keeps the stream alive
  std::vector<SequenceTracker::SavedStream> dirty = t.TakeDirty();
  ASSERT_EQ(dirty.size(), 1u);
  EXPECT_EQ(dirty[0].stream, "a");
  EXPECT_EQ(dirty[0].state.last_seen_us, 5000);
  EXPECT_EQ(t.ForgetSeenBefore(2000), 1u);
  EXPECT_EQ(t.Find("d", "b"), nullptr);
  ASSERT_NE(t.Find("d", "a"), nullptr);
  // A forgotten stream starts afresh: its old batch is new again.
  EXPECT_TRUE(t.Observe("d", "b", 1, &gaps));
}

TEST(Base64, Rfc4648Vectors) {
  EXPECT_EQ(Base64Encode(""), "");
  EXPECT_EQ(Base64Encode("f"), "Zg==");
  EXPECT_EQ(Base64Encode("fo"), "Zm8=");
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Encode("foob"), "Zm9vYg==");
  EXPECT_EQ(Base64Encode("fooba"), "Zm9vYmE=");
  EXPECT_EQ(Base64Encode("foobar"), "Zm9vYmFy");
}

TEST(Backoff, FullJitterIsCappedExponential) {
  EXPECT_EQ(BackoffMicros(0, 100, 1000, 0.999999), 99);
  EXPECT_EQ(BackoffMicros(3, 100, 1000, 0.5), 400);
  EXPECT_EQ(BackoffMicros(10, 100, 1000, 0.5), 500);  // capped at 1000
  EXPECT_EQ(BackoffMicros(60, 100, 1000, 0.0), 0);    // no overflow
}

}  // namespace
}  // namespace edgesync

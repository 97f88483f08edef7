#include "sync/unpack.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include "base/backoff.h"

namespace edgesync {
namespace {

TEST(SequenceTracker, MemoryStaysBoundedAfterAGapThatNeverFills) {
  SequenceTracker t(true);
  std::vector<SequenceTracker::Gap> gaps;
  EXPECT_TRUE(t.Observe("d", "s", 1, &gaps));
  // Every even batch is missing: 200,000 separate ranges arrive past holes.
  for (uint64_t seq = 3; seq < 400'003; seq += 2) ASSERT_TRUE(t.Observe("d", "s", seq, &gaps)) << seq;
  EXPECT_EQ(gaps.size(), 200'000u);
  EXPECT_LE(t.out_of_order(), 65536u);  // without the bound: 200,000
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

std::string Envelope(uint64_t seq, const std::vector<Record>& records) {
  std::string body;
  for (const auto& r : records) {
    std::string enc;
    EncodeRecord(r, &enc);
    AppendToBody(enc, &body);
  }
  BatchHeader h;
  h.device_id = "cs-0007";
  h.stream = "ocpp";
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
  EXPECT_TRUE(gaps_out.empty());
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
  EXPECT_EQ(std::string_view(e["device"]), "cs-0007");
  EXPECT_EQ(std::string_view(e["stream"]), "ocpp");
  EXPECT_EQ(uint64_t(e["first_batch"]), 2u);
  EXPECT_EQ(uint64_t(e["last_batch"]), 3u);
  EXPECT_EQ(uint64_t(e["events"]), 20u);
  EXPECT_EQ(std::string_view(e["reason"]), "quota");
  EXPECT_EQ(std::string_view(e["recorded_at"]), "2026-11-18T11:06:40.000000Z");
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

#include <gtest/gtest.h>

#include "buffer/envelope.h"
#include "buffer/record.h"

namespace edgesync {
namespace {

Record MakeRecord(int i) {
  Record r;
  r.topic = "terminal/t" + std::to_string(i) + "/payment/authorization";
  r.received_at_us = 1'790'000'000'000'000 + i;
  r.qos = 1;
  if (i % 2) r.properties = {{"origin", "pos"}, {"k", std::string(3, char('a' + i % 26))}};
  if (i % 3 == 0) r.content_type = "application/json";
  r.payload = R"({"seq":)" + std::to_string(i) + R"(,"amount":1250})";
  return r;
}

TEST(Record, RoundTrip) {
  for (int i = 0; i < 4; ++i) {
    std::string enc;
    EncodeRecord(MakeRecord(i), &enc);
    Result<Record> back = DecodeRecord(enc);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, MakeRecord(i));
    // Every strict prefix is a clean error, never a crash or a wrong record.
    for (size_t n = 0; n < enc.size(); ++n) {
      EXPECT_FALSE(DecodeRecord(std::string_view(enc).substr(0, n)).ok()) << n;
    }
    EXPECT_FALSE(DecodeRecord(enc + "x").ok());
  }
}

BatchHeader Header(uint32_t events) {
  BatchHeader h;
  h.device_id = "term-0042";
  h.stream = "payments";
  h.batch_seq = 7;
  h.event_count = events;
  h.first_event_us = 100;
  h.last_event_us = 200;
  return h;
}

class EnvelopeCodec : public ::testing::TestWithParam<uint8_t> {};

TEST_P(EnvelopeCodec, SealThenOpenGivesTheRecordsBack) {
  std::string body;
  std::vector<Record> records;
  for (int i = 0; i < 50; ++i) {
    records.push_back(MakeRecord(i));
    std::string enc;
    EncodeRecord(records.back(), &enc);
    AppendToBody(enc, &body);
  }
  SealOptions opt;
  opt.codec = GetParam();
  Result<std::string> env = SealEnvelope(Header(50), body, opt);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  if (GetParam() == format::kCodecZstd) {
    EXPECT_LT(env->size(), body.size() / 2);
  }
  Result<OpenedEnvelope> opened = OpenEnvelope(*env);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->header.device_id, "term-0042");
  EXPECT_EQ(opened->header.stream, "payments");
  EXPECT_EQ(opened->header.batch_seq, 7u);
  EXPECT_EQ(opened->header.event_count, 50u);
  EXPECT_EQ(opened->header.first_event_us, 100);
  EXPECT_EQ(opened->header.last_event_us, 200);
  EXPECT_EQ(opened->header.codec, GetParam());
  EXPECT_EQ(opened->records, records);
}

INSTANTIATE_TEST_SUITE_P(Codecs, EnvelopeCodec,
                         ::testing::Values(format::kCodecNone, format::kCodecZstd));

TEST(Envelope, EverySingleByteFlipIsDetected) {
  std::string body, enc;
  EncodeRecord(MakeRecord(1), &enc);
  AppendToBody(enc, &body);
  Result<std::string> env = SealEnvelope(Header(1), body);
  ASSERT_TRUE(env.ok());
  for (size_t i = 0; i < env->size(); ++i) {
    std::string bad = *env;
    bad[i] ^= 0x01;
    EXPECT_FALSE(OpenEnvelope(bad).ok()) << "flip at " << i;
  }
  for (size_t n = 0; n < env->size(); ++n) {
    EXPECT_FALSE(OpenEnvelope(std::string_view(*env).substr(0, n)).ok()) << "prefix " << n;
  }
}

TEST(Envelope, CountMismatchAndUnknownVersionAreRefused) {
  std::string body, enc;
  EncodeRecord(MakeRecord(1), &enc);
  AppendToBody(enc, &body);
  Result<std::string> wrong_count = SealEnvelope(Header(2), body);
  ASSERT_TRUE(wrong_count.ok());
  Result<OpenedEnvelope> o = OpenEnvelope(*wrong_count);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), Status::Code::kCorruption);

  BatchHeader h = Header(1);
  h.version = 2;
  Result<std::string> v2 = SealEnvelope(h, body);
  ASSERT_TRUE(v2.ok());
  Result<OpenedEnvelope> o2 = OpenEnvelope(*v2);
  ASSERT_FALSE(o2.ok());
  EXPECT_EQ(o2.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(o2.status().message().find("version 2"), std::string::npos);

  EXPECT_FALSE(OpenEnvelope("not an envelope at all, just some text that is long enough to pass "
                            "the length check of the fixed header").ok());
}

TEST(Envelope, GapRecordRoundTripsAndIsChecked) {
  Gap g;
  g.stream = "payments";
  g.first_seq = 17;
  g.last_seq = 42;
  g.events = 26'000;
  g.bytes = 3'000'000;
  g.first_event_us = 1'700'000'000'000'000;
  g.last_event_us = 1'700'000'100'000'000;
  g.reason = format::kGapQuota;
  g.at_us = 1'700'000'200'000'000;
  Result<std::string> env = SealGapRecord("term-0042", g);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  Result<OpenedEnvelope> o = OpenEnvelope(*env);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->header.flags, format::kFlagGap);
  EXPECT_EQ(o->header.batch_seq, 17u);
  EXPECT_EQ(o->header.event_count, 0u);
  EXPECT_TRUE(o->records.empty());
  ASSERT_TRUE(o->gap.has_value());
  EXPECT_EQ(o->gap->stream, "payments");
  EXPECT_EQ(o->gap->last_seq, 42u);
  EXPECT_EQ(o->gap->events, 26'000u);
  EXPECT_EQ(o->gap->bytes, 3'000'000u);
  EXPECT_EQ(o->gap->reason, "quota");
  EXPECT_EQ(o->gap->at_us, g.at_us);
  EXPECT_EQ(o->gap->first_event_us, g.first_event_us);
  for (size_t i = 0; i < env->size(); ++i) {
    std::string bad = *env;
    bad[i] ^= 0x01;
    EXPECT_FALSE(OpenEnvelope(bad).ok()) << "flip at " << i;
  }
  // A body that disagrees with its header is refused even with a good checksum.
  BatchHeader h;
  h.flags = format::kFlagGap;
  h.device_id = "d";
  h.stream = "s";
  h.batch_seq = 5;
  std::string body(format::kGapBodyFixed - 1, '\0');  // too short
  SealOptions plain;
  plain.codec = format::kCodecNone;
  Result<std::string> short_body = SealEnvelope(h, body, plain);
  ASSERT_TRUE(short_body.ok());
  EXPECT_EQ(OpenEnvelope(*short_body).status().code(), Status::Code::kCorruption);
}

TEST(Envelope, UnknownFlagIsRefused) {
  std::string body, enc;
  EncodeRecord(MakeRecord(1), &enc);
  AppendToBody(enc, &body);
  BatchHeader h = Header(1);
  h.flags = 0x04;
  Result<std::string> env = SealEnvelope(h, body);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(OpenEnvelope(*env).status().code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace edgesync

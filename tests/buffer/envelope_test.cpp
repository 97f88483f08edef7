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

}  // namespace
}  // namespace edgesync

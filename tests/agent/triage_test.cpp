#include "agent/triage.h"

#include <gtest/gtest.h>

namespace edgesync {
namespace {

Config TwoStreams() {
  Result<Config> c = ParseConfig(R"([agent]
device_id = "d"
[mqtt]
max_payload = 100
[kafka]
brokers = "b:1"
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
format = "json"
[[streams]]
name = "raw"
topics = ["raw/#"]
)", "t.toml");
  EXPECT_TRUE(c.ok()) << c.status().message();
  return *c;
}

Verdict TriageWithoutProperties(std::string_view topic, std::string_view payload, const Config& c, const Router& r) {
  Json doc;
  return Triage(topic, payload, 0, 0, c, r, &doc);
}

Router RouterOf(const Config& c) {
  std::vector<std::vector<std::string>> f;
  for (const auto& s : c.streams) f.push_back(s.topics);
  return Router(f);
}

TEST(Triage, EachReason) {
  Config c = TwoStreams();
  Router r = RouterOf(c);
  Verdict ok = TriageWithoutProperties("terminal/t1/payment/x", "{\"a\":1}", c, r);
  EXPECT_EQ(ok.kind, Verdict::Kind::kStream);
  EXPECT_EQ(ok.stream, 0u);
  EXPECT_EQ(TriageWithoutProperties("raw/x", "not json, fine here", c, r).stream, 1u);

  Verdict bad_json = TriageWithoutProperties("terminal/t1/payment/x", "{\"a\":", c, r);
  EXPECT_EQ(bad_json.kind, Verdict::Kind::kDeadLetter);
  EXPECT_EQ(bad_json.reason, DeadLetterReason::kInvalidJson);
  EXPECT_EQ(bad_json.stream, 0u);  // it was meant for payments

  Verdict big = TriageWithoutProperties("raw/x", std::string(101, 'x'), c, r);
  EXPECT_EQ(big.reason, DeadLetterReason::kPayloadTooLarge);
  EXPECT_EQ(TriageWithoutProperties("raw/x", std::string(100, 'x'), c, r).kind, Verdict::Kind::kStream);

  Verdict utf8 = TriageWithoutProperties(std::string("raw/\xff\xfe"), "x", c, r);
  EXPECT_EQ(utf8.kind, Verdict::Kind::kDeadLetter);
  EXPECT_EQ(utf8.reason, DeadLetterReason::kInvalidUtf8Topic);

  Verdict none = TriageWithoutProperties("elsewhere", "x", c, r);
  EXPECT_EQ(none.kind, Verdict::Kind::kDeadLetter);
  EXPECT_EQ(none.reason, DeadLetterReason::kUnmatched);
  c.mqtt_unmatched = "drop";
  EXPECT_EQ(TriageWithoutProperties("elsewhere", "x", c, r).kind, Verdict::Kind::kDrop);
  Json doc;
  Verdict props = Triage("raw/x", "x", kMaxUserProperties + 1, 10, c, r, &doc);
  EXPECT_EQ(props.reason, DeadLetterReason::kPropertiesTooLarge);
  EXPECT_EQ(Triage("raw/x", "x", 3, 101, c, r, &doc).reason, DeadLetterReason::kPropertiesTooLarge);
  EXPECT_EQ(Triage("raw/x", "x", 3, 100, c, r, &doc).kind, Verdict::Kind::kStream);
  EXPECT_STREQ(DeadLetterReasonName(DeadLetterReason::kInvalidUtf8Topic), "invalid-utf8-topic");
}

}  // namespace
}  // namespace edgesync

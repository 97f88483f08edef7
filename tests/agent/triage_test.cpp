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

// A payload-too-large dead letter is cut: never in the middle of what may
// be a card number, whose first part pci could no longer tell from other
// digits.
TEST(Triage, ACutNeverEndsInTheMiddleOfACardNumber) {
  EXPECT_EQ(CardSafeCut("short", 100), 5u);
  const std::string text = std::string(90, 'z') + " card 4111 1111 1111 1111 more";
  // Cut at 100, inside the card number: back to before it.
  EXPECT_EQ(CardSafeCut(text, 100), 94u) << text.substr(0, CardSafeCut(text, 100));
  const std::string json = std::string(90, 'z') + "\"pan\":\"\\u0034\\u0031\\u0031\\u0031\"";
  EXPECT_EQ(json.substr(0, CardSafeCut(json, 105)), std::string(90, 'z') + "\"pan\":\"") << "escapes are digits too";
  const std::string arabic = "x" + std::string(20, 'z') + "\xD9\xA4\xD9\xA1\xD9\xA1\xD9\xA1";
  EXPECT_EQ(CardSafeCut(arabic, arabic.size() - 1), 21u) << "and non-ASCII digits, and a cut UTF-8 sequence";
  // Digits all the way back: cut where asked (no PAN is searched inside
  // such a run anyway).
  const std::string digits(2000, '7');
  EXPECT_EQ(CardSafeCut(digits, 1500), 1500u);
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

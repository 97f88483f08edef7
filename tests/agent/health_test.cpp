// Health records: the JSON the central side builds its fleet view from.
#include "agent/health.h"

#include <gtest/gtest.h>
#include <simdjson.h>

namespace edgesync {
namespace {

TEST(Health, RecordCarriesEveryCounterStateAndLastError) {
  AgentStats s;
  s.ingest.received = 1000;
  s.ingest.connected = true;
  s.ingest.subscribed = true;
  s.ingest.connects = 2;
  s.ingest.connection_failures = 3;
  s.ingest.last_error = {"connection lost to 127.0.0.1:1883: \"reset\"", 1'795'000'000'000'000};
  s.intake.unmatched_dropped = 7;
  s.intake.dead_letters[0] = 2;
  s.intake.dead_letters[3] = 1;
  s.sealer.sealed_batches = 9;
  s.sealer.sealed_events = 990;
  s.uploader.delivered_batches = 8;
  s.uploader.delivered_events = 900;
  s.uploader.delivered_bytes = 12345;
  s.uploader.kafka = KafkaState::kDown;
  s.uploader.blocked = {{"edge.payments", "TOPIC_AUTHORIZATION_FAILED (x)", 1'795'000'000'000'000}};
  s.buffered.batches = 1;
  s.buffered.events = 90;
  s.buffered.bytes = 4096;
  s.buffered.oldest_event_us = 1'795'000'000'000'000 - 120'000'000;
  s.gaps = 1;
  s.gap_events = 10;
  HealthContext c;
  c.device_id = "term-0042";
  c.version = "0.1.0";
  c.now_us = 1'795'000'000'000'000;
  c.uptime_us = 3'600'000'000;
  const std::string json = HealthRecordJson(s, c);

  simdjson::dom::parser parser;
  simdjson::dom::element e;
  ASSERT_EQ(parser.parse(json).get(e), simdjson::SUCCESS) << json;
  EXPECT_EQ(std::string_view(e["kind"]), "health");
  EXPECT_EQ(std::string_view(e["device"]), "term-0042");
  EXPECT_EQ(std::string_view(e["version"]), "0.1.0");
  EXPECT_EQ(std::string_view(e["state"]), "running");
  EXPECT_EQ(int64_t(e["uptime_s"]), 3600);
  EXPECT_EQ(uint64_t(e["received"]), 1000u);
  EXPECT_EQ(uint64_t(e["filtered_out"]), 7u);
  EXPECT_EQ(uint64_t(e["dead_lettered"]), 3u);
  EXPECT_EQ(uint64_t(e["sealed_events"]), 990u);
  EXPECT_EQ(uint64_t(e["uploaded_events"]), 900u);
  EXPECT_EQ(uint64_t(e["uploaded_bytes"]), 12345u);
  EXPECT_EQ(uint64_t(e["buffered"]["events"]), 90u);
  EXPECT_EQ(int64_t(e["buffered"]["oldest_age_s"]), 120);
  EXPECT_EQ(uint64_t(e["gaps"]["events"]), 10u);
  EXPECT_EQ(std::string_view(e["mqtt"]["state"]), "connected");
  EXPECT_EQ(std::string_view(e["kafka"]["state"]), "down");
  EXPECT_TRUE(e["kafka"]["last_delivery"].is_null());
  EXPECT_EQ(std::string_view(e["kafka"]["blocked_topics"].at(0)["topic"]), "edge.payments");
  EXPECT_EQ(std::string_view(e["last_error"]["ingest"]["error"]),
            "connection lost to 127.0.0.1:1883: \"reset\"");
  EXPECT_TRUE(e["last_error"]["buffer"].is_null());
  EXPECT_LT(json.size(), 1500u) << "a small record";
}

}  // namespace
}  // namespace edgesync

// Health records end to end: the agent's own `_agent` stream reaches Kafka
// (agent.health_topic) like any other, sealed, and edgesync-unpack explodes
// it into records the central side can build a fleet view from.
#include "format/identity.h"
#include "tests/integration/pipeline_fixture.h"
#include "tests/support/json_lines.h"

namespace edgesync::testing {
namespace {

struct Health {
  std::string state;
  uint64_t received = 0;
  uint64_t uploaded_events = 0;
  std::string mqtt, kafka;
  std::string device_key;
};

std::vector<Health> ReadHealth(const std::string& path) {
  std::vector<Health> out;
  ForEachJsonLine(path, [&](simdjson::dom::element e) {
    std::string_view stream;
    if (e["stream"].get(stream) != simdjson::SUCCESS || stream != "_agent") return;
    simdjson::dom::element p = e["payload"];
    Health h;
    h.state = std::string(std::string_view(p["state"]));
    h.received = uint64_t(p["received"]);
    h.uploaded_events = uint64_t(p["uploaded_events"]);
    h.mqtt = std::string(std::string_view(p["mqtt"]["state"]));
    h.kafka = std::string(std::string_view(p["kafka"]["state"]));
    h.device_key = std::string(std::string_view(p["device_key"]));
    out.push_back(h);
  });
  return out;
}

TEST_F(Pipeline, HealthRecordsReachKafkaOnTheirOwnTopicAndTellTheAgentsState) {
  heartbeat_interval_ = "\"500ms\"";
  WriteConfig();
  StartAgent();
  StartUnpack("edge.agent");
  auto pub = Connect();
  ASSERT_TRUE(pub);
  constexpr uint64_t kEvents = 50;
  for (uint64_t seq = 1; seq <= kEvents; ++seq) {
    ASSERT_TRUE(pub->Publish("terminal/t1/payment/authorization",
                             "{\"device\":\"pub\",\"seq\":" + std::to_string(seq) + "}", 1).ok());
  }
  ASSERT_TRUE(pub->WaitAcked(30s).ok());
  // A later record counts every event received and, once they are in
  // Kafka, uploaded; it sees both connections up.
  std::vector<Health> h;
  EXPECT_TRUE(harness::PollUntil([&] {
    h = ReadHealth(dir_ / "records.ndjson");
    return !h.empty() && h.back().received == kEvents && h.back().uploaded_events >= kEvents;
  }, 60s)) << h.size() << " health records\n" << AgentLogs();
  ASSERT_FALSE(h.empty());
  EXPECT_EQ(h.front().state, "starting");
  EXPECT_EQ(h.back().state, "running");
  EXPECT_EQ(h.back().mqtt, "connected");
  EXPECT_EQ(h.back().kafka, "up");
  // The id of the key that signs the device's batches, as its enrolment file says.
  Result<Enrolment> enrolled = ParseEnrolment(harness::ReadWholeFile(dir_ / "state/device.pub"), "device.pub");
  ASSERT_TRUE(enrolled.ok()) << enrolled.status().ToString();
  EXPECT_EQ(h.back().device_key, crypto::Hex(enrolled->key.key_id()));

  // A clean stop sends a last record saying so.
  ASSERT_TRUE(agent_->Stop(30s).ok());
  agent_.reset();
  EXPECT_TRUE(harness::PollUntil([&] {
    h = ReadHealth(dir_ / "records.ndjson");
    return !h.empty() && h.back().state == "stopping";
  }, 30s)) << AgentLogs();
  EXPECT_EQ(h.back().received, kEvents);
}

}  // namespace
}  // namespace edgesync::testing

// Fleet rollout end to end: signed bundles arrive through the drop
// directory and the retained MQTT topic, are applied under probation, and
// are refused (other key, replay, failing check) or rolled back (a Kafka
// topic that refuses the agent, a subscription that no longer matches, a
// crash during probation) with the reason in `edgesync status`. Events keep
// flowing and none is lost or doubled across the switches.
#include <csignal>

#include "tests/integration/fleet_fixture.h"

namespace edgesync::testing {
namespace {

constexpr const char* kDeadLetterTopic = "edge.dead-letter";

TEST_F(Fleet, ValidBundlesApplyAndForgedReplayedOrBrokenOnesAreRefused) {
  StartAgent();
  StartUnpack();
  StartTraffic();
  AwaitTraffic(50);
  EXPECT_EQ(Status().version, 0u);

  // Bundle 1 through the drop directory: chains only, swapped between two events.
  Drop("b1", Sign(1, PaymentsTagged("v1"), key_));
  AwaitFleet("applied", 1);
  EXPECT_FALSE(std::filesystem::exists(dir_ / "inbox/b1.bundle")) << "taken, then removed";
  const uint64_t after_1 = published_;
  AwaitTraffic(50);

  // Bundle 2 retained on the device's topic: a new stream too, so the
  // pipeline restarts in the process.
  auto fleet_pub = Connect("it-fleet");
  ASSERT_TRUE(fleet_pub);
  const std::string b2 = Sign(2, PaymentsTagged("v2") + "[[streams]]\nname = \"status\"\ntopics = [\"terminal/+/status\"]\n"
                                                        "kafka_topic = \"" + std::string(kTopic) + "\"\n", key_);
  ASSERT_TRUE(fleet_pub->Publish("fleet/config/it-device", b2, 1, /*retain=*/true).ok());
  AwaitFleet("applied", 2);
  EXPECT_NE(AgentLog(0).find("the pipeline restarted with the new configuration"), std::string::npos);
  const uint64_t after_2 = published_;
  AwaitTraffic(50);

  // Signed by a key the device does not hold.
  Drop("forged", Sign(3, PaymentsTagged("evil"), other_key_));
  FleetView v = AwaitFleet("refused", 0);
  EXPECT_NE(v.reason.find("not one of the fleet's public keys"), std::string::npos) << v.reason;
  EXPECT_EQ(v.version, 2u);
  // An old bundle again (replay): no going back.
  Drop("replay", Sign(1, PaymentsTagged("v1"), key_));
  v = AwaitFleet("refused", 1);
  EXPECT_NE(v.reason.find("not newer than 2"), std::string::npos) << v.reason;
  // Signed, but its configuration fails check.
  Drop("broken", Sign(4, PaymentsTagged("v4") + "[[plugins.tag.rules]]\nwhen = 'a =='\ndrop = true\n", key_));
  v = AwaitFleet("refused", 4);
  EXPECT_NE(v.reason.find("fails check"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("expected a value"), std::string::npos) << v.reason;
  EXPECT_EQ(v.version, 2u);
  // The retained bundle 2 comes back at every subscription: not taken again.
  EXPECT_EQ(AgentLogs().find("refused the bundle from topic"), std::string::npos) << AgentLogs();

  const uint64_t published = StopTraffic();
  ASSERT_TRUE(traffic_acked_);
  std::map<uint64_t, std::string> tag_of = AwaitAllOnce(published);
  // Each event has the tag of the chain that ran when it came in: v0, then
  // v1, then v2 (and never a refused bundle's).
  std::string last = "v0";
  for (const auto& [seq, tag] : tag_of) {
    ASSERT_TRUE(tag == "v0" || tag == "v1" || tag == "v2") << seq << ": " << tag;
    ASSERT_GE(tag, last) << seq << " went back from " << last << " to " << tag;
    last = tag;
  }
  EXPECT_EQ(tag_of[after_1 + 1], "v1");
  EXPECT_EQ(tag_of[after_2 + 1], "v2");
  EXPECT_EQ(tag_of[published], "v2");
}

TEST_F(Fleet, ABundleWhoseKafkaTopicRefusesTheAgentIsRolledBack) {
  // edge.refused is led by broker 3 alone, which answers every produce
  // request with TOPIC_AUTHORIZATION_FAILED (29).
  ASSERT_TRUE(cluster_->CreateTopic("edge.refused", 1).ok());
  ASSERT_TRUE(cluster_->SetLeader("edge.refused", 0, 3).ok());
  for (int p = 0; p < 3; ++p) ASSERT_TRUE(cluster_->SetLeader(kTopic, p, 1 + p % 2).ok());
  ASSERT_TRUE(cluster_->PushBrokerErrors(3, 0, 1000, 29).ok());
  probation_ = "20s";
  kafka_extra_ = "blocked_retry_interval = \"1s\"\n";
  WriteDevice();
  StartAgent();
  StartUnpack();
  StartTraffic();
  AwaitTraffic(50);

  Drop("b1", Sign(1, PaymentsTagged("v1", "edge.refused"), key_));
  FleetView v = AwaitFleet("rolled-back", 1);
  EXPECT_EQ(v.version, 0u) << "back on the device file alone";
  EXPECT_NE(v.reason.find("Kafka topic edge.refused refuses the agent"), std::string::npos) << v.reason;
  EXPECT_NE(v.reason.find("TOPIC_AUTHORIZATION_FAILED"), std::string::npos) << v.reason;
  EXPECT_NE(AgentLog(0).find("fleet: bundle 1 rolled back to the device file alone"), std::string::npos);
  const uint64_t rolled_back_at = published_;
  AwaitTraffic(50);

  // Events flow again as before the bundle (tag v0, to the payments topic).
  const uint64_t published = StopTraffic();
  ASSERT_TRUE(traffic_acked_);
  std::vector<Arrived> got;
  ASSERT_TRUE(harness::PollUntil([&] {
    got = ReadArrived(dir_ / "records.ndjson");
    for (const Arrived& a : got) {
      if (a.payload.find("\"seq\":" + std::to_string(published) + ",") != std::string::npos) return true;
    }
    return false;
  }, 60s)) << AgentLogs();
  std::set<uint64_t> seen;
  for (const Arrived& a : got) {
    simdjson::dom::parser p;
    simdjson::dom::element e = p.parse(a.payload);
    EXPECT_EQ(std::string_view(e["tag"]), "v0");
    EXPECT_TRUE(seen.insert(uint64_t(e["seq"])).second) << "twice: " << a.payload;
  }
  // What the bundle took in probation waits in the buffer for its topic
  // (blocked, not dropped); everything else arrived.
  for (uint64_t s = rolled_back_at + 1; s <= published; ++s) EXPECT_EQ(seen.count(s), 1u) << s;
  CommandResult r = RunStatus({"--config", config_path(), "--json"});
  simdjson::dom::parser p;
  simdjson::dom::element doc = p.parse(r.out);
  EXPECT_EQ(uint64_t(doc["buffered"]["events"]) + seen.size(), published) << r.out;
}

TEST_F(Fleet, ABundleThatBreaksTheSubscriptionIsRolledBackAfterProbation) {
  probation_ = "3s";
  WriteDevice();
  StartAgent();
  StartUnpackTopics({kTopic, kDeadLetterTopic});
  StartTraffic();
  AwaitTraffic(100);

  // A typo in the topic filter: the payments stream would take nothing.
  Drop("b1", Sign(1, PaymentsTagged("v1", kTopic, "terminal/+/paymnt/#"), key_));
  FleetView v = AwaitFleet("rolled-back", 1);
  EXPECT_EQ(v.version, 0u);
  EXPECT_NE(v.reason.find("stream payments took no events during probation"), std::string::npos) << v.reason;
  AwaitTraffic(50);

  // Nothing lost: what came in during probation went to the dead-letter
  // stream (the old subscription is still in the broker's session), the
  // rest to payments.
  const uint64_t published = StopTraffic();
  ASSERT_TRUE(traffic_acked_);
  std::map<uint64_t, std::string> tag_of = AwaitAllOnce(published);
  EXPECT_EQ(tag_of[published], "v0");
  EXPECT_EQ(tag_of[1], "v0");
}

TEST_F(Fleet, ACrashDuringProbationComesBackOnTheLastGoodBundle) {
  probation_ = "5s";
  WriteDevice();
  StartAgent();
  StartUnpack();
  StartTraffic();
  AwaitTraffic(20);
  Drop("b1", Sign(1, PaymentsTagged("v1"), key_));
  AwaitFleet("applied", 1);

  Drop("b2", Sign(2, PaymentsTagged("v2"), key_));
  ASSERT_TRUE(AwaitLog(0, "fleet: bundle 2 from"));
  EXPECT_EQ(Status().state, "probation");
  ASSERT_TRUE(agent_->Signal(SIGKILL).ok());
  (void)agent_->Wait(10s);
  agent_.reset();

  StartAgent();
  FleetView v = AwaitFleet("rolled-back", 2);
  EXPECT_EQ(v.version, 1u);
  EXPECT_NE(v.reason.find("stopped during probation"), std::string::npos) << v.reason;
  EXPECT_NE(AgentLog(1).find("fleet bundle 1"), std::string::npos) << AgentLog(1);
  const uint64_t restarted_at = published_;
  AwaitTraffic(50);

  const uint64_t published = StopTraffic();
  ASSERT_TRUE(traffic_acked_);
  std::map<uint64_t, std::string> tag_of = AwaitAllOnce(published, /*duplicates_allowed=*/true);
  for (uint64_t s = restarted_at + 1; s <= published; ++s) EXPECT_EQ(tag_of[s], "v1") << s;
}

}  // namespace
}  // namespace edgesync::testing

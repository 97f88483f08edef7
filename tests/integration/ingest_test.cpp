// The MQTT side with real processes: crashes, broker restarts, MQTT 5,
// bad input, status topic. TLS and credentials are in security_test.cpp.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <csignal>
#include <random>
#include <thread>

#include "tests/integration/arrived.h"
#include "tests/integration/pipeline_fixture.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;
using harness::Process;
using testing::Pipeline;

// Every NDJSON record edgesync-unpack wrote to `path`, parsed.
std::vector<simdjson::dom::document> ReadRecords(const std::string& path) {
  std::vector<simdjson::dom::document> out;
  std::ifstream in(path);
  std::string line;
  simdjson::dom::parser parser;
  while (std::getline(in, line)) {
    simdjson::dom::document doc;
    if (!line.empty() && parser.parse_into_document(doc, line).error() == simdjson::SUCCESS) {
      out.push_back(std::move(doc));
    }
  }
  return out;
}

// Runs a command to its end; its exit code (-1 if it did not run or end).
int RunCommand(std::vector<std::string> argv, const std::string& out = "") {
  Result<int> code = harness::RunToEnd(std::move(argv), out);
  return code.ok() ? *code : -1;
}

TEST_F(Pipeline, SigkillTenTimesDuringA100kStreamLosesNothing) {
  auto pub = StartPipeline();
  ASSERT_TRUE(pub);
  constexpr uint64_t kEvents = 100'000;
  std::thread publisher([&] { Publish(pub.get(), 1, kEvents); });
  std::mt19937 rng(20261122);
  for (int kill = 0; kill < 10; ++kill) {
    // A random moment: somewhere in the next tenth of the stream.
    uint64_t at = kEvents * static_cast<uint64_t>(kill) / 10 +
                  std::uniform_int_distribution<uint64_t>(1, kEvents / 10)(rng);
    ASSERT_TRUE(harness::PollUntil([&] { return pub->acked() >= at; }, 120s)) << AgentLogs();
    ASSERT_TRUE(agent_->Signal(SIGKILL).ok());
    auto code = agent_->Wait(30s);
    ASSERT_TRUE(code.ok());
    EXPECT_EQ(*code, 128 + SIGKILL);
    agent_.reset();
    StartAgent();
  }
  publisher.join();
  ASSERT_TRUE(pub->WaitAcked(120s).ok());
  harness::Tally t = AwaitArrival(kEvents, 300s);
  EXPECT_EQ(t.arrived, kEvents);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.unparsable, 0u);
  RecordProperty("duplicates", static_cast<int>(t.duplicates));
}

TEST_F(Pipeline, BrokerRestartedMidStreamLosesNothing) {
  auto pub = StartPipeline();
  ASSERT_TRUE(pub);
  constexpr uint64_t kEvents = 4'000;
  Publish(pub.get(), 1, kEvents / 2);
  ASSERT_TRUE(pub->WaitAcked(60s).ok());
  ASSERT_TRUE(broker_->Restart().ok());  // persistence: the agent's queue survives
  pub = Connect("it-publisher-2");
  ASSERT_TRUE(pub);
  Publish(pub.get(), kEvents / 2 + 1, kEvents);
  ASSERT_TRUE(pub->WaitAcked(60s).ok());
  harness::Tally t = AwaitArrival(kEvents);
  EXPECT_EQ(t.lost, 0u) << AgentLogs();
  EXPECT_NE(AgentLogs().find("connection to 127.0.0.1"), std::string::npos) << "the drop was reported";
}

TEST_F(Pipeline, BrokerDownAtAgentStartIsRetriedAndSaidSo) {
  ASSERT_TRUE(broker_->Stop().ok());
  harness::SpawnOptions o;
  o.argv = {harness::ProgramPath("edgesync"), "run", "--config", config_path()};
  o.stderr_path = dir_ / "agent-early.log";
  auto p = Process::Spawn(o);
  ASSERT_TRUE(p.ok());
  agent_.emplace(std::move(p).value());
  ASSERT_TRUE(harness::PollUntil([&] {
    return harness::ReadWholeFile(dir_ / "agent-early.log").find("cannot connect to 127.0.0.1") !=
           std::string::npos;
  }, 30s)) << harness::ReadWholeFile(dir_ / "agent-early.log");
  ASSERT_TRUE(broker_->Restart().ok());
  ASSERT_TRUE(harness::PollUntil([&] {
    return harness::ReadWholeFile(dir_ / "agent-early.log").find("mqtt: subscribed") != std::string::npos;
  }, 60s)) << harness::ReadWholeFile(dir_ / "agent-early.log");
  StartUnpack();
  auto pub = Connect();
  ASSERT_TRUE(pub);
  Publish(pub.get(), 1, 500);
  EXPECT_EQ(AwaitArrival(500).lost, 0u);
}

TEST_F(Pipeline, OneMiBPayloadIsDeadLetteredByDefaultAndDeliveredWhenAllowed) {
  // Compressible, so that the raised-limit batch stays small on the wire.
  std::string big = "{\"device\":\"pub\",\"seq\":1,\"blob\":\"" + std::string(1 << 20, 'a') + "\"}";
  StartAgent();
  StartUnpack("edge.dead-letter");
  auto pub = Connect();
  ASSERT_TRUE(pub);
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/big", big, 1).ok());
  ASSERT_TRUE(harness::PollUntil([&] { return !ReadRecords(dir_ / "records.ndjson").empty(); }, 60s))
      << AgentLogs();
  auto recs = ReadRecords(dir_ / "records.ndjson");
  simdjson::dom::element r = recs[0].root();
  EXPECT_EQ(std::string_view(r["stream"]), "dead-letter");
  EXPECT_EQ(testing::Property(r, "edgesync.reason"), "payload-too-large");
  EXPECT_EQ(testing::Property(r, "edgesync.original_size"), std::to_string(big.size()));
  EXPECT_EQ(std::string_view(r["payload_b64"]).size(), (256u * 1024 + 2) / 3 * 4) << "cut to max_payload";

  // Raised limit: the same payload goes to its stream, whole.
  ASSERT_TRUE(agent_->Stop(30s).ok());
  agent_.reset();
  ASSERT_TRUE(unpack_->Stop(5s).ok());
  unpack_.reset();
  WriteConfig("max_payload = \"2MiB\"\n");
  StartAgent();
  StartUnpack();
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/big", big, 1).ok());
  EXPECT_EQ(AwaitArrival(1).arrived, 1u) << AgentLogs();
}

TEST_F(Pipeline, TenThousandDistinctTopicsArrive) {
  auto pub = StartPipeline();
  ASSERT_TRUE(pub);
  constexpr uint64_t kTopics = 10'000;
  for (uint64_t i = 1; i <= kTopics; ++i) {
    ASSERT_TRUE(pub->Publish("terminal/t" + std::to_string(i) + "/payment/capture", harness::PaymentEvent("pub", i), 1).ok());
  }
  ASSERT_TRUE(pub->WaitAcked(60s).ok());
  ASSERT_EQ(AwaitArrival(kTopics).arrived, kTopics);
  std::set<std::string> topics;
  for (auto& d : ReadRecords(dir_ / "records.ndjson")) topics.insert(std::string(std::string_view(d.root()["topic"])));
  EXPECT_EQ(topics.size(), kTopics);
}

TEST_F(Pipeline, Qos2PublishesArrive) {
  auto pub = StartPipeline();
  ASSERT_TRUE(pub);
  Publish(pub.get(), 1, 2'000, /*qos=*/2);
  ASSERT_TRUE(pub->WaitAcked(60s).ok());
  harness::Tally t = AwaitArrival(2'000);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.duplicates, 0u);
}

TEST_F(Pipeline, Mqtt5UserPropertiesAndContentTypeAreCarried) {
  StartAgent();
  StartUnpack();
  ASSERT_EQ(RunCommand({"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()),
                        "-V", "5", "-q", "1", "-t", "terminal/t9/payment/authorization",
                        "-D", "publish", "user-property", "origin", "pos-7",
                        "-D", "publish", "content-type", "application/json",
                        "-m", "{\"device\":\"pub\",\"seq\":1}"}),
            0);
  ASSERT_EQ(AwaitArrival(1).arrived, 1u) << AgentLogs();
  auto recs = ReadRecords(dir_ / "records.ndjson");
  simdjson::dom::element r = recs[0].root();
  EXPECT_EQ(std::string_view(r["content_type"]), "application/json");
  EXPECT_EQ(testing::Property(r, "origin"), "pos-7");
}

TEST_F(Pipeline, Mqtt311AlsoWorks) {
  WriteConfig("protocol = \"3.1.1\"\n");
  auto pub = StartPipeline();
  ASSERT_TRUE(pub);
  Publish(pub.get(), 1, 1'000);
  EXPECT_EQ(AwaitArrival(1'000).lost, 0u);
  EXPECT_NE(AgentLogs().find("(MQTT 3.1.1)"), std::string::npos);
}

// Once connected, the agent runs its own loop (Ingest::Pump) instead of
// mosquitto_loop; keepalive must still go out from it. The broker drops a
// client it has heard nothing from for 1.5 keepalives (7.5 s here), which
// the agent would log as a lost connection.
TEST_F(Pipeline, AnIdleConnectionIsKeptAliveByTheAgentsOwnLoop) {
  WriteConfig("keepalive = 5\n");
  auto pub = StartPipeline();
  ASSERT_TRUE(pub);
  Publish(pub.get(), 1, 100);
  ASSERT_EQ(AwaitArrival(100).lost, 0u);
  // Idle for two of the broker's timeouts: nothing may happen.
  const bool lost = harness::PollUntil(
      [&] { return AgentLogs().find("connection to") != std::string::npos; }, 15s, 200ms);
  EXPECT_FALSE(lost) << AgentLogs();
  EXPECT_EQ(harness::ReadWholeFile(broker_->log_path()).find("exceeded timeout"), std::string::npos);
  Publish(pub.get(), 101, 200);
  EXPECT_EQ(AwaitArrival(200).lost, 0u);
  const std::string logs = AgentLogs();
  size_t connects = 0;
  for (size_t at = logs.find("mqtt: connected to"); at != std::string::npos;
       at = logs.find("mqtt: connected to", at + 1)) {
    ++connects;
  }
  EXPECT_EQ(connects, 1u) << logs;
}

TEST_F(Pipeline, UnmatchedAndInvalidJsonGoToTheDeadLetterStream) {
  // Subscribe to everything; the payments stream wants JSON.
  WriteConfig("subscribe = [\"#\"]\n", "", "format = \"json\"\n");
  StartAgent();
  StartUnpack("edge.dead-letter");
  auto pub = Connect();
  ASSERT_TRUE(pub);
  ASSERT_TRUE(pub->Publish("somewhere/else", "{\"n\":1}", 1).ok());
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/x", "{not json", 1).ok());
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/x", "{\"ok\":true}", 1).ok());  // not a dead letter
  ASSERT_TRUE(pub->WaitAcked(30s).ok());
  ASSERT_TRUE(harness::PollUntil([&] { return ReadRecords(dir_ / "records.ndjson").size() >= 2; }, 60s))
      << AgentLogs();
  std::map<std::string, std::string> reason_by_topic;
  for (auto& d : ReadRecords(dir_ / "records.ndjson")) {
    reason_by_topic[std::string(std::string_view(d.root()["topic"]))] =
        testing::Property(d.root(), "edgesync.reason").value_or("");
  }
  EXPECT_EQ(reason_by_topic["somewhere/else"], "unmatched");
  EXPECT_EQ(reason_by_topic["terminal/t1/payment/x"], "invalid-json");
  EXPECT_EQ(reason_by_topic.size(), 2u);
  ASSERT_TRUE(agent_->Stop(30s).ok());
  EXPECT_NE(AgentLogs().find("dead_letter.unmatched=1"), std::string::npos) << AgentLogs();
  EXPECT_NE(AgentLogs().find("dead_letter.invalid-json=1"), std::string::npos);
}

TEST_F(Pipeline, StatusTopicSaysOnlineAndOfflineRetained) {
  auto status = [&]() {
    std::string out = dir_ / "status.out";
    RunCommand({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()), "-t",
                "edgesync/edgesync-it/status", "-C", "1", "-W", "5"}, out);
    return harness::ReadWholeFile(out);
  };
  StartAgent();
  EXPECT_TRUE(harness::PollUntil([&] { return status() == "online\n"; }, 10s));
  ASSERT_TRUE(agent_->Stop(30s).ok());
  EXPECT_EQ(status(), "offline\n");
  StartAgent();
  EXPECT_TRUE(harness::PollUntil([&] { return status() == "online\n"; }, 10s));
  // A crash: the broker publishes the will once it notices the dead connection.
  ASSERT_TRUE(agent_->Signal(SIGKILL).ok());
  (void)agent_->Wait(10s);
  EXPECT_TRUE(harness::PollUntil([&] { return status() == "offline\n"; }, 30s));
}

}  // namespace
}  // namespace edgesync

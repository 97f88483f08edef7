// End to end, with real processes: mosquitto (Debian's broker) -> edgesync
// run -> the Kafka-protocol mock cluster -> edgesync-unpack, counted by
// (device, seq) inside each payload.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <fstream>
#include <sstream>
#include <thread>

#include "buffer/store.h"
#include "harness/agent_process.h"
#include "harness/kafka_cluster.h"
#include "harness/mosquitto.h"
#include "harness/process.h"
#include "harness/publisher.h"
#include "harness/tally.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;
using harness::Process;

constexpr const char* kTopic = "edge.test-payments";

// A ~300-byte JSON event carrying the (device, seq) the tally keys on.
std::string Event(const std::string& device, uint64_t seq) {
  std::string s = R"({"device":")" + device + R"(","seq":)" + std::to_string(seq) +
                  R"(,"type":"authorization","merchant_id":"MID000123456","amount":{"value":)" +
                  std::to_string(100 + seq % 9000) +
                  R"(,"currency":"EUR"},"card":{"pan":"411111******1111","scheme":"VISA"},)" +
                  R"("result":{"approved":true,"response_code":"00"},"pad":")";
  s.append(300 - std::min<size_t>(s.size(), 290), 'x');
  s += "\"}";
  return s;
}

class Pipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    // As the agent's broker drop-in configures it: queue without limit for
    // the agent (mosquitto's default of 1000 drops the rest).
    harness::BrokerOptions bo;
    bo.max_queued_messages = -1;
    bo.max_inflight_messages = 100;
    auto broker = harness::MosquittoBroker::Start(dir_ / "broker", bo);
    ASSERT_TRUE(broker.ok()) << broker.status().ToString();
    broker_ = std::move(broker).value();
    auto cluster = harness::KafkaCluster::Start(3, {{kTopic, 3}});
    ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
    cluster_ = std::move(cluster).value();
    std::ofstream(config_path()) << R"([agent]
device_id = "it-device"
state_dir = ")" << dir_ / "state" << R"("
log_level = "info"
shutdown_timeout = "20s"
stats_interval = "2s"
[mqtt]
host = "127.0.0.1"
port = )" << broker_->port() << R"(
client_id = "edgesync-it"
[batch]
max_events = 200
max_age = "200ms"
[kafka]
brokers = ")" << cluster_->bootstrap() << R"("
[kafka.properties]
"message.timeout.ms" = 120000
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
kafka_topic = ")" << kTopic << R"("
)";
  }

  void TearDown() override {
    if (agent_) (void)agent_->Stop(30s);
    if (unpack_) (void)unpack_->Stop(5s);
  }

  std::string config_path() const { return dir_ / "edgesync.toml"; }

  void StartAgent() {
    std::string log = dir_ / ("agent-" + std::to_string(agent_starts_++) + ".log");
    auto p = harness::StartAgent(config_path(), log);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    agent_.emplace(std::move(p).value());
  }

  std::string AgentLog(int start) {
    return harness::ReadWholeFile(dir_ / ("agent-" + std::to_string(start) + ".log"));
  }

  void StartUnpack() {
    harness::SpawnOptions o;
    o.argv = {harness::ProgramPath("edgesync-unpack"), "--brokers", cluster_->bootstrap(),
              "--topic", kTopic, "--from-beginning"};
    o.stdout_path = dir_ / "records.ndjson";
    o.stderr_path = dir_ / "unpack.log";
    auto p = Process::Spawn(o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    unpack_.emplace(std::move(p).value());
  }

  harness::Tally Count(uint64_t published) {
    std::ifstream in(dir_ / "records.ndjson");
    return harness::TallyLines(in, {{"pub", published}});
  }

  // Waits until every published event arrived centrally.
  harness::Tally AwaitArrival(uint64_t published, std::chrono::milliseconds timeout = 120s) {
    harness::Tally t;
    harness::PollUntil([&] { t = Count(published); return t.arrived == published; }, timeout);
    return t;
  }

  std::unique_ptr<harness::Publisher> Connect() {
    auto pub = harness::Publisher::Connect("127.0.0.1", broker_->port(), "it-publisher", 200);
    EXPECT_TRUE(pub.ok()) << pub.status().ToString();
    return pub.ok() ? std::move(pub).value() : nullptr;
  }

  void Publish(harness::Publisher* pub, uint64_t from, uint64_t to) {
    for (uint64_t seq = from; seq <= to; ++seq) {
      Status st = pub->Publish("terminal/t1/payment/authorization", Event("pub", seq), 1);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
  }

  std::string AgentLogs() {
    std::string all;
    for (int i = 0; i < agent_starts_; ++i) all += AgentLog(i);
    return all;
  }

  harness::TempDir dir_ = testing::NewTempDir();
  std::unique_ptr<harness::MosquittoBroker> broker_;
  std::unique_ptr<harness::KafkaCluster> cluster_;
  std::optional<Process> agent_, unpack_;
  int agent_starts_ = 0;
};

TEST_F(Pipeline, TenThousandEventsArriveExactlyOnce) {
  StartAgent();
  StartUnpack();
  auto pub = Connect();
  ASSERT_TRUE(pub);
  constexpr uint64_t kEvents = 10'000;
  Publish(pub.get(), 1, kEvents);
  ASSERT_TRUE(pub->WaitAcked(60s).ok());
  harness::Tally t = AwaitArrival(kEvents);
  EXPECT_EQ(t.arrived, kEvents) << AgentLogs();
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.duplicates, 0u);
  EXPECT_EQ(t.unparsable, 0u);
  ASSERT_TRUE(agent_->Stop(30s).ok());
  EXPECT_EQ(agent_->exit_status(), 0) << AgentLogs();
}

TEST_F(Pipeline, KafkaDownWhilePublishingThenUpLosesNothing) {
  StartAgent();
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  auto pub = Connect();
  ASSERT_TRUE(pub);
  constexpr uint64_t kEvents = 3'000;
  Publish(pub.get(), 1, kEvents);
  ASSERT_TRUE(pub->WaitAcked(60s).ok());
  // With Kafka down every event ends up sealed and buffered in the store.
  auto store = Store::Open(dir_ / "state/store.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  uint64_t buffered = 0;
  EXPECT_TRUE(harness::PollUntil([&] {
    auto c = (*store)->Counts();
    buffered = c.ok() ? c->events : 0;
    return buffered == kEvents;
  }, 60s)) << "buffered " << buffered << "\n" << AgentLogs();

  ASSERT_TRUE(cluster_->AllBrokersUp().ok());
  StartUnpack();
  harness::Tally t = AwaitArrival(kEvents);
  EXPECT_EQ(t.arrived, kEvents) << AgentLogs();
  EXPECT_EQ(t.lost, 0u);
  EXPECT_TRUE(harness::PollUntil([&] { return (*store)->Counts()->batches == 0; }, 60s))
      << "the store keeps batches Kafka has acknowledged";
}


class PipelineRestart : public Pipeline {
 protected:
  harness::Tally RunWithRestart(int sig) {
    StartAgent();
    StartUnpack();
    auto pub = Connect();
    EXPECT_TRUE(pub);
    if (!pub) return {};
    constexpr uint64_t kEvents = 6'000;
    std::atomic<bool> done{false};
    std::thread publisher([&] {
      Publish(pub.get(), 1, kEvents);
      done = true;
    });
    // Interrupt once a third of the stream has reached the agent's journal.
    EXPECT_TRUE(harness::PollUntil([&] { return pub->acked() >= kEvents / 3; }, 60s));
    EXPECT_TRUE(agent_->Signal(sig).ok());
    auto code = agent_->Wait(60s);
    EXPECT_TRUE(code.ok());
    if (sig == SIGTERM) {
      EXPECT_EQ(*code, 0) << AgentLogs();
    } else {
      EXPECT_EQ(*code, 128 + SIGKILL);
    }
    agent_.reset();
    // The broker keeps queueing for the agent's persistent session meanwhile.
    StartAgent();
    publisher.join();
    EXPECT_TRUE(done);
    EXPECT_TRUE(pub->WaitAcked(60s).ok());
    harness::Tally t = AwaitArrival(kEvents);
    EXPECT_EQ(t.arrived, kEvents) << AgentLogs();
    EXPECT_EQ(t.lost, 0u);
    return t;
  }
};

TEST_F(PipelineRestart, SigtermMidStreamThenRestartLosesNothing) {
  harness::Tally t = RunWithRestart(SIGTERM);
  // A clean stop acknowledges only what it journaled and seals it all.
  EXPECT_EQ(t.duplicates, 0u);
  EXPECT_NE(AgentLogs().find("signal SIGTERM received"), std::string::npos);
}

TEST_F(PipelineRestart, SigkillMidStreamThenRestartLosesNothing) {
  harness::Tally t = RunWithRestart(SIGKILL);
  // Events journaled but not yet acknowledged when the agent died come again
  // from the broker: at-least-once allows a few duplicates, never a loss.
  RecordProperty("duplicates", static_cast<int>(t.duplicates));
  EXPECT_LT(t.duplicates, 1000u);
}

TEST(Cli, CheckValidatesAndRunRefusesABadConfig) {
  harness::TempDir dir = testing::NewTempDir();
  std::ofstream(dir / "bad.toml") << "[agent]\ndevice_id = \"d\"\n[mqtt]\nport = \"x\"\n";
  harness::SpawnOptions o;
  o.argv = {harness::ProgramPath("edgesync"), "check", dir / "bad.toml"};
  o.stderr_path = dir / "err";
  auto p = Process::Spawn(o);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(*p->Wait(30s), 2);
  std::ifstream in(dir / "err");
  std::stringstream err;
  err << in.rdbuf();
  EXPECT_NE(err.str().find("bad.toml:4:8: mqtt.port: must be an integer"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("kafka.brokers: is required"), std::string::npos) << err.str();

  o.argv = {harness::ProgramPath("edgesync"), "run", "--config", dir / "bad.toml"};
  auto run = Process::Spawn(o);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(*run->Wait(30s), 2);
}

}  // namespace
}  // namespace edgesync

// A running pipeline for integration tests: a real mosquitto broker (as the
// agent's broker drop-in configures it), the Kafka-protocol mock cluster, the
// agent (`edgesync run`) and edgesync-unpack, on free loopback ports, in a
// test directory; all stopped at the end.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "harness/agent_process.h"
#include "harness/kafka_cluster.h"
#include "harness/mosquitto.h"
#include "harness/process.h"
#include "harness/publisher.h"
#include "harness/site.h"
#include "harness/tally.h"
#include "tests/support/temp_dir.h"

namespace edgesync::testing {

using namespace std::chrono_literals;
using harness::Process;

constexpr const char* kTopic = "edge.test-payments";

class Pipeline : public ::testing::Test {
 protected:
  void SetUp() override {
    // As the agent's broker drop-in configures it: queue without limit for
    // the agent (mosquitto's default of 1000 drops the rest).
    broker_options_.max_queued_messages = -1;
    broker_options_.max_inflight_messages = 100;
    broker_options_.max_packet_size = 16 << 20;
    ConfigureBroker(&broker_options_);
    auto broker = harness::MosquittoBroker::Start(dir_ / "broker", broker_options_);
    ASSERT_TRUE(broker.ok()) << broker.status().ToString();
    broker_ = std::move(broker).value();
    auto cluster = harness::KafkaCluster::Start(3, {{kTopic, 3}});
    ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
    cluster_ = std::move(cluster).value();
    WriteConfig();
  }

  // Tests that need a different broker (TLS, users) override this.
  virtual void ConfigureBroker(harness::BrokerOptions*) {}

  // `mqtt_extra` goes into [mqtt], `streams_extra` after the payments stream.
  void WriteConfig(const std::string& mqtt_extra = "", const std::string& streams_extra = "",
                   const std::string& stream_extra = "") {
    std::ofstream out(config_path());
    out << R"([agent]
device_id = "it-device"
state_dir = ")" << dir_ / "state" << R"("
log_level = ")" << log_level_ << R"("
shutdown_timeout = ")" << shutdown_timeout_ << R"("
stats_interval = "2s"
heartbeat_interval = )" << heartbeat_interval_ << "\n" << agent_extra_ << R"(
[mqtt]
host = "127.0.0.1"
port = )" << broker_->port() << R"(
client_id = "edgesync-it"
)" << mqtt_extra << R"(
[batch]
max_events = 200
max_age = "200ms"
[kafka]
brokers = ")" << cluster_->bootstrap() << R"("
)" << kafka_extra_ << R"(
[kafka.properties]
"message.timeout.ms" = )" << message_timeout_ms_ << R"(
"message.max.bytes" = 4000000
)" << kafka_properties_extra_ << "\n";
    if (payments_stream_) out << PaymentsStream(stream_extra);
    out << "\n" << streams_extra;
  }

  // The payments stream's table, with `extra` lines.
  static std::string PaymentsStream(const std::string& extra = "") {
    return std::string("[[streams]]\nname = \"payments\"\ntopics = [\"terminal/+/payment/#\"]\nkafka_topic = \"") +
           kTopic + "\"\n" + extra;
  }

  void TearDown() override {
    if (agent_) (void)agent_->Stop(30s);
    if (unpack_) (void)unpack_->Stop(5s);
  }

  std::string config_path() const { return dir_ / "edgesync.toml"; }
  // Health records are off unless a test wants them: they are events of
  // their own stream, which would change the counts of the others.
  std::string heartbeat_interval_ = "0";
  std::string shutdown_timeout_ = "20s";  // how long a stop keeps uploading
  std::string log_level_ = "info";
  std::string kafka_extra_;             // more lines for [kafka]
  std::string agent_extra_;             // more lines for [agent]
  bool payments_stream_ = true;         // false: the file has no [[streams]] of its own
  std::string kafka_properties_extra_;  // more lines for [kafka.properties]

  void StartAgent() {
    std::string log = dir_ / ("agent-" + std::to_string(agent_starts_++) + ".log");
    auto p = harness::StartAgent(config_path(), log);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    agent_.emplace(std::move(p).value());
  }

  // Starts the agent without waiting for it to subscribe (for tests of
  // failures); its log is agent-N.log, N returned.
  int SpawnAgent() {
    int n = agent_starts_++;
    harness::SpawnOptions o;
    o.argv = {harness::ProgramPath("edgesync"), "run", "--config", config_path()};
    o.stderr_path = dir_ / ("agent-" + std::to_string(n) + ".log");
    auto p = Process::Spawn(o);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    if (p.ok()) agent_.emplace(std::move(p).value());
    return n;
  }

  // Waits until the log of start `n` holds `text`.
  bool AwaitLog(int n, const std::string& text, std::chrono::milliseconds timeout = 30s) {
    return harness::PollUntil([&] { return AgentLog(n).find(text) != std::string::npos; }, timeout);
  }

  std::string AgentLog(int start) {
    return harness::ReadWholeFile(dir_ / ("agent-" + std::to_string(start) + ".log"));
  }

  // edgesync-unpack's --device-keys directory, with the agent's key enrolled
  // (made in its state directory first if the agent has not made it yet).
  std::string DeviceKeysDir() {
    Result<std::string> enrolled = harness::EnrolDevice("it-device", dir_ / "state", dir_ / "device-keys");
    EXPECT_TRUE(enrolled.ok()) << enrolled.status().ToString();
    return dir_ / "device-keys";
  }

  void StartUnpack(const std::string& topic = kTopic) { StartUnpackTopics({topic}); }
  void StartUnpackTopics(const std::vector<std::string>& topics) {
    harness::SpawnOptions o;
    o.argv = {harness::ProgramPath("edgesync-unpack"), "--brokers", cluster_->bootstrap(),
              "--from-beginning", "--gaps", dir_ / "gaps.ndjson", "--device-keys", DeviceKeysDir()};
    for (const std::string& t : topics) {
      o.argv.push_back("--topic");
      o.argv.push_back(t);
    }
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

  // The usual start of a test: the agent, edgesync-unpack, and a publisher
  // (null, with a failure recorded, when something did not start).
  std::unique_ptr<harness::Publisher> StartPipeline() {
    StartAgent();
    if (!agent_) return nullptr;
    StartUnpack();
    return Connect();
  }

  // max_inflight stays below the broker's max_inflight_messages (100): more
  // unacknowledged QoS 2 publishes make mosquitto drop the connection.
  std::unique_ptr<harness::Publisher> Connect(const std::string& id = "it-publisher",
                                              int max_inflight = 50) {
    auto pub = harness::Publisher::Connect("127.0.0.1", broker_->port(), id, max_inflight);
    EXPECT_TRUE(pub.ok()) << pub.status().ToString();
    return pub.ok() ? std::move(pub).value() : nullptr;
  }

  void Publish(harness::Publisher* pub, uint64_t from, uint64_t to, int qos = 1) {
    for (uint64_t seq = from; seq <= to; ++seq) {
      Status st = pub->Publish("terminal/t1/payment/authorization", harness::PaymentEvent("pub", seq), qos);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
  }

  struct CommandResult {
    int exit_code = -1;
    std::string out;  // stdout, then stderr
  };
  // `edgesync status ARGS`, run to its end.
  CommandResult RunStatus(const std::vector<std::string>& args) {
    std::vector<std::string> all = {"status"};
    all.insert(all.end(), args.begin(), args.end());
    return RunEdgesync(all);
  }

  // `edgesync ARGS`, run to its end within `timeout` (exit code -1 when it
  // did not end).
  CommandResult RunEdgesync(const std::vector<std::string>& args, std::chrono::milliseconds timeout = 30s) {
    harness::SpawnOptions o;
    o.argv = {harness::ProgramPath("edgesync")};
    o.argv.insert(o.argv.end(), args.begin(), args.end());
    o.stdout_path = dir_ / "command.out";
    o.stderr_path = dir_ / "command.err";
    CommandResult r;
    auto p = Process::Spawn(o);
    if (!p.ok()) return r;
    auto code = p->Wait(timeout);
    r.exit_code = code.ok() ? *code : -1;
    r.out = harness::ReadWholeFile(dir_ / "command.out") + harness::ReadWholeFile(dir_ / "command.err");
    return r;
  }

  std::string AgentLogs() {
    std::string all;
    for (int i = 0; i < agent_starts_; ++i) all += AgentLog(i);
    return all;
  }

  harness::TempDir dir_ = NewTempDir();
  int64_t message_timeout_ms_ = 120'000;  // how long librdkafka keeps trying one envelope
  harness::BrokerOptions broker_options_;
  std::unique_ptr<harness::MosquittoBroker> broker_;
  std::unique_ptr<harness::KafkaCluster> cluster_;
  std::optional<Process> agent_, unpack_;
  int agent_starts_ = 0;
};

}  // namespace edgesync::testing

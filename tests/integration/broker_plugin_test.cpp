// mqtt.mode = "broker-plugin" end to end: Debian's mosquitto 2.0.11 loads
// the edgesync plugin from the build directory, the agent reads the spool
// and uploads to the Kafka mock cluster, edgesync-unpack counts what
// arrived. Kills of the agent and of the broker, a full spool, card data on
// disk, an oversized message.
//
// Not in the sanitizer builds: mosquitto is not instrumented, so it cannot
// load an instrumented module (the spool's own code runs under the
// sanitizers in spool_test).
#include <gtest/gtest.h>

#include <signal.h>

#include <atomic>
#include <fstream>
#include <thread>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/spool.h"
#include "base/env.h"
#include "buffer/journal.h"
#include "tests/integration/pipeline_fixture.h"

namespace edgesync::testing {
namespace {

constexpr const char* kPan = "4111111111111111";

class BrokerPlugin : public Pipeline {
 protected:
  void SetUp() override {
#ifndef EDGESYNC_BROKER_PLUGIN
    GTEST_SKIP() << "the broker plugin is not built in sanitizer builds (mosquitto cannot load it)";
#else
    Pipeline::SetUp();
    if (HasFatalFailure()) return;
    WriteConfig("mode = \"" + mode_ + "\"\n" + mqtt_extra_, "[plugins.card-data]\ntype = \"pci\"\nevery_stream = true\n");
    // The fixture's broker has no plugin: this test's broker replaces it.
    ASSERT_TRUE(broker_->Stop().ok());
    broker_options_.port = 0;
    broker_options_.extra_config = {std::string("plugin ") + EDGESYNC_BROKER_PLUGIN,
                                    "plugin_opt_config " + config_path()};
    auto broker = harness::MosquittoBroker::Start(dir_ / "plugin-broker", broker_options_);
    ASSERT_TRUE(broker.ok()) << broker.status().ToString();
    broker_ = std::move(broker).value();
    if (mode_ == "broker-plugin") {
      ASSERT_NE(BrokerLog().find("edgesync: spooling the streams of"), std::string::npos) << BrokerLog();
    }
#endif
  }

  std::string BrokerLog() { return harness::ReadWholeFile(broker_->log_path()); }
  std::string SpoolDirPath() { return SpoolDir(dir_ / "state"); }

  // The agent in broker-plugin mode logs no subscription: wait for its reader.
  void StartPluginAgent() {
    const int n = SpawnAgent();
    ASSERT_TRUE(AwaitLog(n, "reading the broker plugin's spool")) << AgentLog(n);
  }

  void KillAgent() {
    ASSERT_TRUE(agent_->Signal(SIGKILL).ok());
    (void)agent_->Wait(10s);
    agent_.reset();
  }

  std::string mqtt_extra_;
  std::string mode_ = "broker-plugin";
};

TEST_F(BrokerPlugin, EventsArriveWithoutTheSecondHopAndCardDataIsMaskedInTheSpool) {
  // The broker acknowledges with no agent running: the spool holds them.
  auto pub = Connect();
  ASSERT_NE(pub, nullptr);
  Publish(pub.get(), 1, 300);
  const std::string pan_topic = std::string("terminal/") + kPan + "/payment/authorization";
  const std::string pan_payload = std::string(R"({"card":")") + kPan + R"(","cvv":"987","note":"card )" + kPan + R"("})";
  ASSERT_TRUE(pub->Publish(pan_topic, pan_payload, 1).ok());
  ASSERT_TRUE(pub->WaitAcked(30s).ok()) << BrokerLog();

  // Nothing of the card number on disk, in the files or in their records.
  Env* env = Env::Default();
  Result<std::vector<std::string>> names = env->ListDir(SpoolDirPath());
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  size_t records = 0;
  bool saw_masked = false;
  for (const std::string& n : *names) {
    Result<std::string> bytes = env->ReadFile(SpoolDirPath() + "/" + n, 1 << 30);
    ASSERT_TRUE(bytes.ok());
    EXPECT_EQ(bytes->find(kPan), std::string::npos) << n;
    for (const auto& [rec, end] : ScanSegment(*bytes).records) {
      ++records;
      EXPECT_EQ(rec.find(kPan), std::string::npos) << rec;
      if (rec.find("\"card\"") != std::string::npos) {
        EXPECT_EQ(rec.find("987"), std::string::npos) << rec;
      }
      saw_masked = saw_masked || rec.find("411111******1111") != std::string::npos;
    }
  }
  EXPECT_EQ(records, 301u);
  EXPECT_TRUE(saw_masked);

  StartPluginAgent();
  StartUnpack();
  harness::Tally t = AwaitArrival(300);
  EXPECT_EQ(t.arrived, 300u) << AgentLogs();
  EXPECT_EQ(t.duplicates, 0u);
  // The spool is read down to the segment the plugin writes.
  EXPECT_TRUE(harness::PollUntil(
      [&] {
        Result<std::vector<std::string>> left = env->ListDir(SpoolDirPath());
        return left.ok() && left->size() <= 1;
      },
      30s));
  EXPECT_EQ(harness::ReadWholeFile(dir_ / "records.ndjson").find(kPan), std::string::npos);
  // The agent opened no MQTT connection: the broker saw only the publisher.
  EXPECT_EQ(BrokerLog().find("edgesync-it"), std::string::npos);
}

TEST_F(BrokerPlugin, AKilledAgentNeverStallsTheBrokerAndEveryAcknowledgedEventArrives) {
  StartPluginAgent();
  StartUnpack();
  auto pub = Connect();
  ASSERT_NE(pub, nullptr);
  Publish(pub.get(), 1, 1000);
  KillAgent();
  // The broker goes on acknowledging with the agent dead.
  Publish(pub.get(), 1001, 2000);
  ASSERT_TRUE(pub->WaitAcked(30s).ok()) << BrokerLog();
  EXPECT_EQ(pub->acked(), 2000u);
  StartPluginAgent();
  harness::Tally t = AwaitArrival(2000);
  EXPECT_EQ(t.arrived, 2000u) << AgentLogs();
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.unexpected, 0u);
}

TEST_F(BrokerPlugin, AKilledBrokerLosesNothingItAcknowledged) {
  StartPluginAgent();
  StartUnpack();
  auto pub = Connect();
  ASSERT_NE(pub, nullptr);
  // Killed while publishes are in flight: those not acknowledged are sent
  // again by the publisher after its reconnect.
  Publish(pub.get(), 1, 1000);
  const uint64_t acked_before_kill = pub->acked();
  ASSERT_TRUE(broker_->Kill().ok());
  ASSERT_TRUE(broker_->Restart().ok()) << BrokerLog();
  Publish(pub.get(), 1001, 1500);
  ASSERT_TRUE(pub->WaitAcked(60s).ok()) << BrokerLog();
  harness::Tally t = AwaitArrival(1500);
  EXPECT_EQ(t.arrived, 1500u) << "acknowledged before the kill: " << acked_before_kill << "\n" << AgentLogs();
  EXPECT_EQ(t.lost, 0u);
}

class BrokerPluginSmallSpool : public BrokerPlugin {
 protected:
  void SetUp() override {
    // The smallest quota the configuration check allows for this max_payload
    // (2 x max_payload + 64 KiB): the events are far smaller.
    mqtt_extra_ = "max_payload = \"8KiB\"\nspool_max_bytes = \"80KiB\"\n";
    BrokerPlugin::SetUp();
  }
};

TEST_F(BrokerPluginSmallSpool, AFullSpoolSendsNoPubackAndNothingIsLostOnceTheAgentDrains) {
  constexpr uint64_t kEvents = 6000;  // several times what 80 KiB of spool holds
  auto pub = Connect();
  ASSERT_NE(pub, nullptr);
  std::atomic<bool> published{false};
  std::thread publisher([&] {
    Publish(pub.get(), 1, kEvents);
    published = true;
  });
  ASSERT_TRUE(harness::PollUntil([&] { return BrokerLog().find("refusing publishes") != std::string::npos; }, 60s))
      << BrokerLog();
  // No acknowledgement while it is full (the refusals close the
  // publisher's connection; it reconnects and sends again).
  const uint64_t acked = pub->acked();
  EXPECT_LT(acked, kEvents);
  EXPECT_FALSE(harness::PollUntil([&] { return pub->acked() > acked; }, 3s));
  EXPECT_EQ(BrokerLog().find("not authori"), std::string::npos);  // never ACL_DENIED
  // mosquitto 2.0.11's answer to the plugin's refusal: the publisher's
  // connection closed, no acknowledgement (src/loop.c, do_disconnect).
  EXPECT_NE(BrokerLog().find("been disconnected by administrative action"), std::string::npos) << BrokerLog();
  EXPECT_NE(BrokerLog().find("mosquitto version 2.0.11"), std::string::npos) << "the facts are 2.0.11's";
  StartPluginAgent();
  StartUnpack();
  harness::Tally t = AwaitArrival(kEvents, 180s);
  publisher.join();
  EXPECT_TRUE(published);
  EXPECT_TRUE(pub->WaitAcked(30s).ok());
  EXPECT_EQ(t.arrived, kEvents) << AgentLogs();
  EXPECT_EQ(t.lost, 0u);
  EXPECT_NE(BrokerLog().find("the spool takes messages again"), std::string::npos) << BrokerLog();
}

class BrokerPluginClientMode : public BrokerPlugin {
 protected:
  void SetUp() override {
    mode_ = "client";
    BrokerPlugin::SetUp();
  }
};

// The plugin reads only the device file: when it says the agent is an MQTT
// client, nothing would ever read the spool (it would fill, then refuse
// every publish). The plugin claims nothing and says so.
TEST_F(BrokerPluginClientMode, ClaimsNothingWhenTheAgentIsAClient) {
  EXPECT_NE(BrokerLog().find("the plugin spools nothing"), std::string::npos) << BrokerLog();
  auto pub = Connect();
  ASSERT_NE(pub, nullptr);
  Publish(pub.get(), 1, 50);
  EXPECT_TRUE(pub->WaitAcked(30s).ok());
  EXPECT_FALSE(Env::Default()->Exists(SpoolDirPath())) << "the plugin spooled in client mode";
}

TEST_F(BrokerPlugin, AnOversizedMessageNeitherCrashesTheBrokerNorLosesOthers) {
  StartPluginAgent();
  StartUnpack();
  auto pub = Connect();
  ASSERT_NE(pub, nullptr);
  Publish(pub.get(), 1, 100);
  // 4 MiB (mqtt.max_payload is 256 KiB): dead-lettered, cut, by the agent.
  std::string huge(4 << 20, '7');
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/authorization", huge, 1).ok());
  std::string binary(1000, '\0');
  for (size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i * 37);
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/authorization", binary, 1).ok());
  Publish(pub.get(), 101, 200);
  ASSERT_TRUE(pub->WaitAcked(30s).ok()) << BrokerLog();
  harness::Tally t = AwaitArrival(200);
  EXPECT_EQ(t.arrived, 200u) << AgentLogs();
  EXPECT_TRUE(broker_->Running());
}

// The agent's half alone, in this process (so also under the sanitizers):
// a spool the plugin's writer filled, with a damaged segment before it.
TEST_F(Pipeline, TheAgentReadsTheSpoolSetsADamagedSegmentAsideAndDeletesWhatItRead) {
  WriteConfig("mode = \"broker-plugin\"\n");
  Result<Config> cfg = LoadConfig(config_path());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  Env* env = Env::Default();
  const std::string spool = SpoolDir(cfg->state_dir);
  ASSERT_TRUE(env->CreateDirs(spool).ok());
  // Not a segment the journal code can read: its events are lost, and said so.
  ASSERT_TRUE(env->WriteFileAtomically(spool + "/0000000000000001.log", "EDGJ\x09garbage").ok());
  {
    Config fast = *cfg;
    fast.batch.sync_interval_us = 1;  // every tick closes the segment
    Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(fast);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    for (uint64_t seq = 1; seq <= 500; ++seq) {
      const std::string payload = harness::PaymentEvent("pub", seq);
      IngestMessage m;
      m.topic = "terminal/t1/payment/authorization";
      m.payload = payload;
      m.qos = 1;
      std::string why;
      bool episode = false;
      ASSERT_EQ((*w)->OnMessage(m, &why, &episode), SpoolWriter::Outcome::kStored) << why;
      if (seq % 100 == 0) (void)(*w)->Tick();
    }
  }  // closed: the broker stopped
  // The broker started again: the segment it had been writing is closed now.
  Result<std::unique_ptr<SpoolWriter>> restarted = SpoolWriter::Create(*cfg);
  ASSERT_TRUE(restarted.ok());
  std::string why;
  bool episode = false;
  IngestMessage other;
  other.topic = "not/ours";
  EXPECT_EQ((*restarted)->OnMessage(other, &why, &episode), SpoolWriter::Outcome::kIgnored);
  IngestMessage one;
  one.topic = "terminal/t1/payment/authorization";
  const std::string last = harness::PaymentEvent("pub", 501);
  one.payload = last;
  ASSERT_EQ((*restarted)->OnMessage(one, &why, &episode), SpoolWriter::Outcome::kStored) << why;

  auto agent = Agent::Open(*cfg, env);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  ASSERT_TRUE((*agent)->Start().ok());
  StartUnpack();
  harness::Tally t = AwaitArrival(500);
  EXPECT_EQ(t.arrived, 500u);
  EXPECT_EQ(t.duplicates, 0u);
  EXPECT_EQ((*agent)->stats().ingest.received, 500u);  // not 501: that segment is still being written
  EXPECT_TRUE(env->Exists(spool + "/0000000000000001.log.unreadable"));
  // The loss is counted where the journal's unreadable segments are.
  EXPECT_EQ((*agent)->stats().ingest.spool_unreadable_segments, 1u);
  EXPECT_NE((*agent)->StatsLine().find(" unreadable_spool_segments=1"), std::string::npos) << (*agent)->StatsLine();
  Result<std::vector<std::string>> left = env->ListDir(spool);
  ASSERT_TRUE(left.ok());
  EXPECT_EQ(left->size(), 2u);  // the one set aside and the one being written
  (void)(*agent)->Shutdown();
}

// An Env whose deletes of spool segments fail while `fail` is set (a
// read-only remount, a permission changed under the agent).
class UndeletableSpoolEnv : public EnvWrapper {
 public:
  using EnvWrapper::EnvWrapper;
  std::atomic<bool> fail{true};
  std::atomic<int> attempts{0};
  Status RemoveFile(const std::string& path) override {
    if (path.find("/spool/") != std::string::npos) {
      ++attempts;
      if (fail) return Status::IOError("injected: Read-only file system");
    }
    return target()->RemoveFile(path);
  }
};

// A segment whose records went to the intake but which cannot be deleted
// is not read again at every poll (that sent its events once per poll):
// only the delete is retried, and once it works nothing arrives twice.
TEST_F(Pipeline, ASpoolSegmentThatCannotBeDeletedIsNotReadAgain) {
  WriteConfig("mode = \"broker-plugin\"\n");
  Result<Config> cfg = LoadConfig(config_path());
  ASSERT_TRUE(cfg.ok()) << cfg.status().ToString();
  const std::string spool = SpoolDir(cfg->state_dir);
  {
    Config fast = *cfg;
    fast.batch.sync_interval_us = 1;  // the tick closes the segment
    Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(fast);
    ASSERT_TRUE(w.ok()) << w.status().ToString();
    for (uint64_t seq = 1; seq <= 100; ++seq) {
      const std::string payload = harness::PaymentEvent("pub", seq);
      IngestMessage m;
      m.topic = "terminal/t1/payment/authorization";
      m.payload = payload;
      m.qos = 1;
      std::string why;
      bool episode = false;
      ASSERT_EQ((*w)->OnMessage(m, &why, &episode), SpoolWriter::Outcome::kStored) << why;
    }
    (void)(*w)->Tick();
  }
  UndeletableSpoolEnv env(Env::Default());
  auto agent = Agent::Open(*cfg, &env);
  ASSERT_TRUE(agent.ok()) << agent.status().ToString();
  ASSERT_TRUE((*agent)->Start().ok());
  // Several polls' worth of failed deletes.
  ASSERT_TRUE(harness::PollUntil([&] { return env.attempts.load() >= 5; }, 30s));
  EXPECT_EQ((*agent)->stats().ingest.received, 100u);
  EXPECT_FALSE((*agent)->stats().ingest.connected);  // the failure shows
  env.fail = false;
  ASSERT_TRUE(harness::PollUntil(
      [&] {
        Result<std::vector<std::string>> left = env.ListDir(spool);
        return left.ok() && left->size() == 1;  // only the newest, which the writer left
      },
      30s));
  StartUnpack();
  harness::Tally t = AwaitArrival(100);
  EXPECT_EQ(t.arrived, 100u);
  EXPECT_EQ(t.duplicates, 0u);
  EXPECT_EQ((*agent)->stats().ingest.received, 100u);
  (void)(*agent)->Shutdown();
}

}  // namespace
}  // namespace edgesync::testing

// Backpressure: the journal refuses events (an injected I/O error, as from a
// full disk) for three MQTT keepalive periods. The agent must hold the
// broker's acknowledgements, lose nothing, and not storm the broker with
// reconnects. The agent runs in this process so that its Env can fail.
#include <gtest/gtest.h>
#include <mosquitto.h>

#include <thread>

#include "agent/agent.h"
#include "agent/config.h"
#include "tests/integration/pipeline_fixture.h"
#include "tests/support/fault_env.h"
#include "tests/support/slow_reads_env.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;
using testing::Pipeline;

TEST_F(Pipeline, JournalRefusingForThreeKeepalivesLosesNothingAndDoesNotStorm) {
  constexpr int kKeepalive = 5;
  WriteConfig("keepalive = " + std::to_string(kKeepalive) + "\n");
  Result<Config> cfg = LoadConfig(config_path());
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  mosquitto_lib_init();
  testing::FaultEnv env(Env::Default());
  {
    auto agent = Agent::Open(*cfg, &env);
    ASSERT_TRUE(agent.ok()) << agent.status().ToString();
    ASSERT_TRUE((*agent)->Start().ok());
    ASSERT_TRUE(harness::PollUntil([&] { return (*agent)->stats().ingest.subscribed; }, 30s));
    StartUnpack();
    auto pub = Connect();
    ASSERT_TRUE(pub);
    Publish(pub.get(), 1, 500);
    ASSERT_EQ(AwaitArrival(500).arrived, 500u);

    env.fail_appends = true;
    Publish(pub.get(), 501, 1500);  // the broker takes them and queues them for the agent
    ASSERT_TRUE(pub->WaitAcked(30s).ok());
    ASSERT_TRUE(harness::PollUntil([&] { return (*agent)->stats().intake.backpressure; }, 10s));
    // The scenario's length, not a wait for a condition: the journal stays
    // broken for three keepalive periods.
    std::this_thread::sleep_for(std::chrono::seconds(3 * kKeepalive));
    EXPECT_TRUE((*agent)->stats().intake.backpressure);
    EXPECT_EQ(Count(1500).arrived, 500u) << "nothing may pass a journal that refuses";
    env.fail_appends = false;

    harness::Tally t = AwaitArrival(1500);
    EXPECT_EQ(t.arrived, 1500u);
    EXPECT_EQ(t.lost, 0u);
    AgentStats st = (*agent)->stats();
    EXPECT_FALSE(st.intake.backpressure);
    EXPECT_GE(st.intake.backpressure_events, 1u);
    // At most the one drop the broker's keepalive timeout causes.
    EXPECT_LE(st.ingest.connects, 2u);
    EXPECT_LE(st.ingest.connection_failures, 2u);
    (void)(*agent)->Shutdown();
  }
  mosquitto_lib_cleanup();
}

// Every page read of SQLite's files slow once asked (a slow eMMC), counted:
// the store's deferred check then runs for seconds.
using SlowStoreEnv = testing::SlowReadsEnv;

// The store's deferred check holds the store for its whole run: the main
// thread's figures (the stats line, the status socket) and a stop must not
// wait for it. If stats() waited, the check would finish (and mark the
// store sound) before the stop below could end it.
TEST_F(Pipeline, TheStoresDeferredCheckHoldsNeitherTheFiguresNorAStop) {
  shutdown_timeout_ = "1s";  // Kafka is down at the second stop
  WriteConfig();
  Result<Config> cfg = LoadConfig(config_path());
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  mosquitto_lib_init();
  SlowStoreEnv env(Env::Default());
  {
    auto agent = Agent::Open(*cfg, &env);  // a new store: checked as it is made
    ASSERT_TRUE(agent.ok()) << agent.status().ToString();
    ASSERT_TRUE((*agent)->Start().ok());
    ASSERT_TRUE((*agent)->Shutdown().ok());  // a clean stop: the next start defers the check
  }
  {
    // Five batches waiting in the store (of a stream no longer configured),
    // closed cleanly after a passing check: the next start defers it.
    auto store = Store::Open(Env::Default(), dir_ / "state/store.db", StoreOptions{});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    for (uint64_t seq = 1; seq <= 5; ++seq) {
      SealedBatch b;
      b.stream = "retired";
      b.kafka_topic = testing::kTopic;
      b.seq = seq;
      b.events = 10;
      b.envelope = "not sent: the stop below comes first";
      ASSERT_TRUE((*store)->Commit(&b, JournalPosition{}).ok());
    }
  }
  // Kafka away: the batches stay in the store (the uploader could otherwise
  // take them all between its start and the check's).
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  {
    auto agent = Agent::Open(*cfg, &env);
    ASSERT_TRUE(agent.ok()) << agent.status().ToString();
    const uint64_t opened = env.reads();
    env.SetReadDelayMicros(100'000);  // every page read of the check takes 0.1 s
    ASSERT_TRUE((*agent)->Start().ok());
    // The check is reading (nothing else reads page after page now).
    ASSERT_TRUE(harness::PollUntil([&] { return env.reads() >= opened + 3; }, 30s));
    AgentStats st = (*agent)->stats();
    EXPECT_EQ(st.buffered.batches, 5u) << "the figures during the check are not the store's";
    (void)(*agent)->stats();
    env.SetReadDelayMicros(0);
    // Kafka is down: the batches stay for the next start, which it says.
    Status stopped = (*agent)->Shutdown();
    EXPECT_TRUE(stopped.ok() || stopped.code() == Status::Code::kUnavailable) << stopped.ToString();
  }
  // Ended by the stop, not finished: the next open checks the whole store.
  {
    StoreOptions so;
    so.defer_check = true;
    auto store = Store::Open(Env::Default(), dir_ / "state/store.db", so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    EXPECT_FALSE((*store)->check_pending()) << "the check finished before the stop: stats() waited for it";
  }
  mosquitto_lib_cleanup();
}

}  // namespace
}  // namespace edgesync

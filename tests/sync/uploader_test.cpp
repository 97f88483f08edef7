// The uploader against the Kafka-protocol mock cluster (a real process).
#include "sync/uploader.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "buffer/envelope.h"
#include "harness/agent_process.h"
#include "harness/consumer.h"
#include "harness/kafka_cluster.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;

constexpr const char* kTopic = "edge.uploader-test";

void CommitBatches(Store* store, int n) {
  for (int i = 1; i <= n; ++i) {
    Record r;
    r.topic = "t";
    r.payload = "event " + std::to_string(i);
    std::string enc, body;
    EncodeRecord(r, &enc);
    AppendToBody(enc, &body);
    BatchHeader h;
    h.device_id = "dev-1";
    h.stream = "s";
    h.batch_seq = static_cast<uint64_t>(i);
    h.event_count = 1;
    SealedBatch b;
    b.stream = "s";
    b.kafka_topic = kTopic;
    b.seq = static_cast<uint64_t>(i);
    b.events = 1;
    b.envelope = *SealEnvelope(h, body);
    ASSERT_TRUE(store->Commit(&b, {}).ok());
  }
}

class UploaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = harness::KafkaCluster::Start(3, {{kTopic, 1}});
    ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
    cluster_ = std::move(cluster).value();
    store_ = std::move(Store::Open(Env::Default(), dir_ / "store.db")).value();
  }

  std::unique_ptr<Uploader> Make() {
    UploaderOptions o;
    o.brokers = cluster_->bootstrap();
    o.device_id = "dev-1";
    o.backoff_initial_us = 50'000;
    o.backoff_max_us = 500'000;
    auto u = Uploader::Create(store_.get(), Env::Default(), o);
    EXPECT_TRUE(u.ok()) << u.status().ToString();
    return u.ok() ? std::move(u).value() : nullptr;
  }

  bool StoreEmpties() {
    return harness::PollUntil([&] { return store_->Counts()->batches == 0; }, 60s);
  }

  harness::TempDir dir_ = testing::NewTempDir();
  std::unique_ptr<harness::KafkaCluster> cluster_;
  std::unique_ptr<Store> store_;
};

TEST_F(UploaderTest, DeliversInOrderWithKeyAndHeadersThenDeletes) {
  CommitBatches(store_.get(), 20);
  auto up = Make();
  ASSERT_TRUE(up);
  up->Start();
  up->Notify();
  ASSERT_TRUE(StoreEmpties());
  EXPECT_EQ(up->stats().delivered_batches, 20u);
  ASSERT_TRUE(up->Stop(5'000'000).ok());

  auto msgs = harness::ReadTopic(cluster_->bootstrap(), kTopic, 30s);
  ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
  ASSERT_EQ(msgs->size(), 20u);
  for (size_t i = 0; i < msgs->size(); ++i) {
    const auto& m = (*msgs)[i];
    EXPECT_EQ(m.key, "dev-1");
    auto env = OpenEnvelope(m.value);
    ASSERT_TRUE(env.ok());
    EXPECT_EQ(env->header.batch_seq, i + 1) << "order within a stream";
    auto header = [&](const std::string& name) {
      auto it = std::find_if(m.headers.begin(), m.headers.end(),
                             [&](const auto& h) { return h.first == name; });
      return it == m.headers.end() ? std::string("<missing>") : it->second;
    };
    EXPECT_EQ(header("edgesync-format"), "1");
    EXPECT_EQ(header("edgesync-stream"), "s");
    EXPECT_EQ(header("edgesync-batch"), std::to_string(i + 1));
    EXPECT_EQ(header("edgesync-events"), "1");
  }
}

TEST_F(UploaderTest, RetriesThroughProduceErrorsAndAnOutage) {
  // NOT_ENOUGH_REPLICAS (19), retriable: librdkafka retries inside.
  ASSERT_TRUE(cluster_->PushRequestErrors(0, 3, 19).ok());
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  CommitBatches(store_.get(), 10);
  auto up = Make();
  ASSERT_TRUE(up);
  up->Start();
  up->Notify();
  // Nothing can leave while every broker is down.
  EXPECT_FALSE(harness::PollUntil([&] { return store_->Counts()->batches < 10; }, 1s));
  ASSERT_TRUE(cluster_->AllBrokersUp().ok());
  ASSERT_TRUE(StoreEmpties());
  ASSERT_TRUE(up->Stop(5'000'000).ok());
  auto msgs = harness::ReadTopic(cluster_->bootstrap(), kTopic, 30s);
  ASSERT_TRUE(msgs.ok());
  EXPECT_EQ(msgs->size(), 10u);  // idempotent producer: no duplicates from its retries
}

TEST_F(UploaderTest, StopWithKafkaDownKeepsTheBatches) {
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  CommitBatches(store_.get(), 3);
  auto up = Make();
  ASSERT_TRUE(up);
  up->Start();
  up->Notify();
  Status st = up->Stop(300'000);
  EXPECT_EQ(st.code(), Status::Code::kUnavailable) << st.ToString();
  EXPECT_EQ(store_->Counts()->batches, 3u);
}

TEST(UploaderConfig, RejectedPropertyIsNamed) {
  auto dir = testing::NewTempDir();
  auto store = Store::Open(Env::Default(), dir / "store.db");
  ASSERT_TRUE(store.ok());
  UploaderOptions o;
  o.brokers = "127.0.0.1:1";
  o.properties = {{"no.such.property", "1"}};
  auto u = Uploader::Create(store->get(), Env::Default(), o);
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(u.status().message().find("no.such.property"), std::string::npos) << u.status().message();
}

}  // namespace
}  // namespace edgesync

// The uploader against the Kafka-protocol mock cluster (a real process).
#include "sync/uploader.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <set>
#include <random>
#include <thread>

#include "format/envelope.h"
#include "harness/agent_process.h"
#include "harness/consumer.h"
#include "harness/kafka_cluster.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;

constexpr const char* kTopic = "edge.uploader-test";

struct Batches {
  std::string stream = "s";
  std::string topic = kTopic;
  Priority priority = Priority::kNormal;
  size_t payload_bytes = 0;  // random bytes (incompressible) added to each event
  uint64_t first_seq = 1;
};

// Commits `n` one-event batches; returns their envelopes, by sequence.
std::vector<std::string> CommitBatches(Store* store, int n, const Batches& spec = {}) {
  std::vector<std::string> envelopes;
  std::mt19937_64 rng(n);
  for (int i = 0; i < n; ++i) {
    const uint64_t seq = spec.first_seq + static_cast<uint64_t>(i);
    Record r;
    r.topic = "t";
    r.payload = "event " + std::to_string(seq);
    for (size_t k = 0; k < spec.payload_bytes; ++k) r.payload.push_back(static_cast<char>(rng()));
    std::string enc, body;
    EncodeRecord(r, &enc);
    AppendToBody(enc, &body);
    BatchHeader h;
    h.device_id = "dev-1";
    h.stream = spec.stream;
    h.batch_seq = seq;
    h.event_count = 1;
    SealedBatch b;
    b.stream = spec.stream;
    b.kafka_topic = spec.topic;
    b.priority = spec.priority;
    b.seq = seq;
    b.events = 1;
    b.envelope = *SealEnvelope(h, body);
    envelopes.push_back(b.envelope);
    EXPECT_TRUE(store->Commit(&b, {}).ok());
  }
  return envelopes;
}

std::string Header(const harness::KafkaMessage& m, const std::string& name) {
  auto it = std::find_if(m.headers.begin(), m.headers.end(), [&](const auto& h) { return h.first == name; });
  return it == m.headers.end() ? std::string("<missing>") : it->second;
}

// The batch sequences of `stream` in `msgs` (whole batches only), in topic order.
std::vector<uint64_t> Sequences(const std::vector<harness::KafkaMessage>& msgs, const std::string& stream) {
  std::vector<uint64_t> out;
  for (const auto& m : msgs) {
    if (Header(m, "edgesync-stream") == stream && Header(m, "edgesync-kind") == "batch") {
      out.push_back(std::stoull(Header(m, "edgesync-batch")));
    }
  }
  return out;
}

std::vector<uint64_t> OneTo(uint64_t n) {
  std::vector<uint64_t> v(n);
  for (uint64_t i = 0; i < n; ++i) v[i] = i + 1;
  return v;
}

class UploaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto cluster = harness::KafkaCluster::Start(3, {{kTopic, 1}});
    ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
    cluster_ = std::move(cluster).value();
    store_ = std::move(Store::Open(Env::Default(), dir_ / "store.db")).value();
  }

  std::unique_ptr<Uploader> Make(UploaderOptions o = {}) {
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
    auto header = [&](const std::string& name) { return Header(m, name); };
    EXPECT_EQ(header("edgesync-format"), "1");
    EXPECT_EQ(header("edgesync-stream"), "s");
    EXPECT_EQ(header("edgesync-batch"), std::to_string(i + 1));
    EXPECT_EQ(header("edgesync-events"), "1");
  }
}

TEST_F(UploaderTest, RetriesThroughProduceErrorsAndAnOutage) {
  // NOT_ENOUGH_REPLICAS (19), retriable: librdkafka retries inside. Pushed
  // on broker 1, which leads the topic's partition, so the test can see that the
  // errors were served.
  ASSERT_TRUE(cluster_->SetLeader(kTopic, 0, 1).ok());
  ASSERT_TRUE(cluster_->PushBrokerErrors(1, 0, 3, 19).ok());
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
  // The injected errors were served: three produce requests were refused
  // and retried before these got through.
  Result<size_t> left = cluster_->BrokerErrorsLeft(1, 0);
  ASSERT_TRUE(left.ok()) << left.status().ToString();
  EXPECT_EQ(*left, 0u);
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

// More batches waiting than may be in flight while Kafka is away: the
// uploader sleeps until a delivery report or its next timer (librdkafka
// reports back at most every 50 ms while batches are in flight), instead of
// asking the store again and again. It used to spin a core: millions of
// turns in these two seconds.
TEST_F(UploaderTest, WithKafkaDownAndNoRoomInFlightItSleeps) {
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  CommitBatches(store_.get(), 40);
  UploaderOptions o;
  o.max_in_flight = 4;
  auto up = Make(o);
  ASSERT_TRUE(up);
  up->Start();
  up->Notify();
  ASSERT_TRUE(harness::PollUntil([&] { return up->stats().in_flight == 4; }, 10s));
  const uint64_t before = up->stats().wakeups;
  // Two seconds of an outage (nothing to await: the point is what the
  // thread does while nothing happens).
  std::this_thread::sleep_for(2s);
  const uint64_t turns = up->stats().wakeups - before;
  EXPECT_LT(turns, 200u) << "the upload loop turned " << turns << " times in 2 s with nothing to do";
  EXPECT_EQ(store_->Counts()->batches, 40u);
  ASSERT_TRUE(cluster_->AllBrokersUp().ok());
  ASSERT_TRUE(StoreEmpties());
  ASSERT_TRUE(up->Stop(5'000'000).ok());
}

TEST_F(UploaderTest, AnUnauthorizedTopicIsBlockedWhileTheOthersFlowThenDrainsInOrder) {
  // The refused topic is led by broker 3 alone, whose next produce requests
  // answer TOPIC_AUTHORIZATION_FAILED (29); the other topic is led by broker 1.
  constexpr const char* kRefused = "edge.uploader-refused";
  constexpr int kRefusals = 6;
  ASSERT_TRUE(cluster_->CreateTopic(kRefused, 1).ok());
  ASSERT_TRUE(cluster_->SetLeader(kRefused, 0, 3).ok());
  ASSERT_TRUE(cluster_->SetLeader(kTopic, 0, 1).ok());
  ASSERT_TRUE(cluster_->PushBrokerErrors(3, 0, kRefusals, 29).ok());
  Batches refused;
  refused.stream = "r";
  refused.topic = kRefused;
  refused.priority = Priority::kHigh;  // first in the store's order: it must not hold the rest up
  CommitBatches(store_.get(), 10, refused);
  CommitBatches(store_.get(), 10);
  UploaderOptions o;
  o.blocked_retry_us = 300'000;
  auto up = Make(o);
  ASSERT_TRUE(up);
  up->Start();
  up->Notify();
  // The other topic drains while the refused one is blocked.
  ASSERT_TRUE(harness::PollUntil([&] { return !up->stats().blocked.empty(); }, 30s));
  UploaderStats st = up->stats();
  ASSERT_EQ(st.blocked.size(), 1u);
  EXPECT_EQ(st.blocked[0].topic, kRefused);
  EXPECT_NE(st.blocked[0].reason.find("TOPIC_AUTHORIZATION_FAILED"), std::string::npos) << st.blocked[0].reason;
  ASSERT_TRUE(harness::PollUntil([&] {
    auto streams = store_->StreamsOfTopic(kTopic);
    return streams.ok() && streams->empty();
  }, 30s)) << "the other topic keeps flowing";
  // Once the broker takes it again (its refusals used up by the rare
  // retries), the blocked topic drains: every batch once, in order.
  ASSERT_TRUE(StoreEmpties());
  EXPECT_TRUE(up->stats().blocked.empty());
  ASSERT_TRUE(up->Stop(5'000'000).ok());
  auto msgs = harness::ReadTopic(cluster_->bootstrap(), kRefused, 30s);
  ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
  EXPECT_EQ(Sequences(*msgs, "r"), OneTo(10));
}

TEST_F(UploaderTest, ATopicWhoseMetadataSaysUnauthorizedIsBlockedOnceItsBatchesTimeOut) {
  // librdkafka 2.0.2 holds batches for a topic whose metadata carries
  // TOPIC_AUTHORIZATION_FAILED until message.timeout.ms, like an outage; the
  // uploader asks the metadata and blocks that topic alone.
  constexpr const char* kRefused = "edge.uploader-refused";
  ASSERT_TRUE(cluster_->SetTopicError(kRefused, 29).ok());
  Batches refused;
  refused.stream = "r";
  refused.topic = kRefused;
  CommitBatches(store_.get(), 5, refused);
  UploaderOptions o;
  o.blocked_retry_us = 500'000;
  o.properties = {{"message.timeout.ms", "1500"}};
  auto up = Make(o);
  ASSERT_TRUE(up);
  up->Start();
  up->Notify();
  ASSERT_TRUE(harness::PollUntil([&] { return !up->stats().blocked.empty(); }, 30s));
  EXPECT_NE(up->stats().blocked[0].reason.find("TOPIC_AUTHORIZATION_FAILED"), std::string::npos)
      << up->stats().blocked[0].reason;
  // Meanwhile another topic flows without pauses.
  CommitBatches(store_.get(), 10);
  up->Notify();
  ASSERT_TRUE(harness::PollUntil([&] { return up->stats().delivered_batches == 10; }, 30s));
  EXPECT_EQ(store_->Counts()->batches, 5u);
  ASSERT_TRUE(cluster_->SetTopicError(kRefused, 0).ok());
  ASSERT_TRUE(StoreEmpties());
  ASSERT_TRUE(up->Stop(5'000'000).ok());
  auto msgs = harness::ReadTopic(cluster_->bootstrap(), kRefused, 30s);
  ASSERT_TRUE(msgs.ok());
  EXPECT_EQ(Sequences(*msgs, "r"), OneTo(5));
}

TEST_F(UploaderTest, AFatalErrorRebuildsTheProducerWithoutLosingOrReordering) {
  CommitBatches(store_.get(), 200);
  auto up = Make();
  ASSERT_TRUE(up);
  up->Start();
  up->Notify();
  ASSERT_TRUE(harness::PollUntil([&] { return up->stats().delivered_batches > 0; }, 30s));
  up->InjectFatalErrorForTest();
  ASSERT_TRUE(StoreEmpties());
  EXPECT_EQ(up->stats().producer_rebuilds, 1u);
  ASSERT_TRUE(up->Stop(5'000'000).ok());
  auto msgs = harness::ReadTopic(cluster_->bootstrap(), kTopic, 30s);
  ASSERT_TRUE(msgs.ok());
  // Batches in flight at the fatal moment may arrive twice (the central side
  // drops the copy); first arrivals are complete and in order.
  std::vector<uint64_t> first;
  std::set<uint64_t> seen;
  for (uint64_t seq : Sequences(*msgs, "s")) {
    if (seen.insert(seq).second) first.push_back(seq);
  }
  EXPECT_EQ(first, OneTo(200));
  EXPECT_LE(Sequences(*msgs, "s").size() - 200, UploaderOptions{}.max_in_flight);
}

TEST_F(UploaderTest, ABatchTheBrokerFindsTooLargeIsSentAsFragments) {
  // 3 batches of ~20 KB that do not compress; the broker refuses the first
  // produce request as too large (MSG_SIZE_TOO_LARGE, 10).
  Batches big;
  big.payload_bytes = 20'000;
  std::vector<std::string> envelopes = CommitBatches(store_.get(), 3, big);
  ASSERT_TRUE(cluster_->PushRequestErrors(0, 1, 10).ok());
  auto up = Make();
  ASSERT_TRUE(up);
  up->Start();
  up->Notify();
  ASSERT_TRUE(StoreEmpties());
  EXPECT_GE(up->stats().split_batches, 1u);
  ASSERT_TRUE(up->Stop(5'000'000).ok());
  auto msgs = harness::ReadTopic(cluster_->bootstrap(), kTopic, 30s);
  ASSERT_TRUE(msgs.ok());
  // Reassemble by the format (FORMAT.md "Fragments"): 18-byte header, then
  // the slice; the slices in order make the envelope.
  std::map<uint64_t, std::string> whole;
  size_t fragments = 0;
  for (const auto& m : *msgs) {
    const uint64_t seq = std::stoull(Header(m, "edgesync-batch"));
    if (Header(m, "edgesync-kind") == "batch") {
      whole[seq] = m.value;
      continue;
    }
    ASSERT_EQ(Header(m, "edgesync-kind"), "fragment");
    ASSERT_EQ(m.value.substr(0, 4), "EDGF");
    ++fragments;
    const uint16_t index = static_cast<uint8_t>(m.value[6]) | static_cast<uint8_t>(m.value[7]) << 8;
    if (index == 0) whole[seq].clear();
    whole[seq] += m.value.substr(18);
    EXPECT_LE(m.value.size(), envelopes[0].size() / 2 + 18) << "half the refused size";
  }
  EXPECT_GE(fragments, 2u);
  ASSERT_EQ(whole.size(), 3u);
  for (uint64_t seq = 1; seq <= 3; ++seq) EXPECT_EQ(whole[seq], envelopes[seq - 1]) << "batch " << seq;
}

TEST_F(UploaderTest, LiveHighPriorityPassesABacklogAndTheRateLimitHolds) {
  // 100 low-priority batches of ~4 KB behind a 40 KB/s limit (64 KiB burst):
  // about 8 s of backlog.
  Batches low;
  low.priority = Priority::kLow;
  low.payload_bytes = 4000;
  CommitBatches(store_.get(), 100, low);
  UploaderOptions o;
  o.max_bytes_per_sec = 40'000;
  auto up = Make(o);
  ASSERT_TRUE(up);
  const int64_t start = Env::Default()->MonotonicMicros();
  up->Start();
  up->Notify();
  ASSERT_TRUE(harness::PollUntil([&] { return up->stats().delivered_batches > 0; }, 30s));
  Batches live;
  live.stream = "live";
  live.priority = Priority::kHigh;
  CommitBatches(store_.get(), 1, live);
  up->Notify();
  ASSERT_TRUE(harness::PollUntil([&] {
    auto rows = store_->StreamsOfTopic(kTopic);
    return rows.ok() && std::find(rows->begin(), rows->end(), "live") == rows->end();
  }, 30s));
  EXPECT_GT(store_->Counts()->batches, 50u) << "the live batch went before most of the backlog";
  ASSERT_TRUE(StoreEmpties()) << store_->Counts()->batches << " left; delivered " << up->stats().delivered_batches << " in flight " << up->stats().in_flight;
  const int64_t elapsed = Env::Default()->MonotonicMicros() - start;
  const UploaderStats st = up->stats();
  // An upper bound only (a slow machine sends less, never more): the burst,
  // the rate over the time taken, one message of debt.
  EXPECT_LE(st.delivered_bytes, (64u << 10) + 40'000 * static_cast<uint64_t>(elapsed) / 1'000'000 + 5000)
      << "in " << elapsed / 1000 << " ms";
  ASSERT_TRUE(up->Stop(5'000'000).ok());
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

// librdkafka refuses a reconnect.backoff.max.ms below reconnect.backoff.ms:
// our 500 ms cap must not stop an agent whose properties set a larger base.
TEST(UploaderConfig, ALargerReconnectBackoffRaisesTheCapInsteadOfFailingTheStart) {
  auto dir = testing::NewTempDir();
  auto store = Store::Open(Env::Default(), dir / "store.db");
  ASSERT_TRUE(store.ok());
  UploaderOptions o;
  o.brokers = "127.0.0.1:1";
  o.properties = {{"reconnect.backoff.ms", "2000"}};
  auto u = Uploader::Create(store->get(), Env::Default(), o);
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ((*u)->ProducerPropertyForTest("reconnect.backoff.ms"), "2000");
  EXPECT_EQ((*u)->ProducerPropertyForTest("reconnect.backoff.max.ms"), "2000");
}

TEST(UploaderConfig, ReconnectBackoffCapIs500MsUnlessThePropertiesSetIt) {
  auto dir = testing::NewTempDir();
  auto store = Store::Open(Env::Default(), dir / "store.db");
  ASSERT_TRUE(store.ok());
  UploaderOptions o;
  o.brokers = "127.0.0.1:1";
  {
    auto u = Uploader::Create(store->get(), Env::Default(), o);
    ASSERT_TRUE(u.ok()) << u.status().ToString();
    EXPECT_EQ((*u)->ProducerPropertyForTest("reconnect.backoff.max.ms"), "500");
  }
  // An explicit cap is kept, whatever the base.
  o.properties = {{"reconnect.backoff.ms", "2000"}, {"reconnect.backoff.max.ms", "7000"}};
  auto u = Uploader::Create(store->get(), Env::Default(), o);
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ((*u)->ProducerPropertyForTest("reconnect.backoff.max.ms"), "7000");
  o.properties = {{"reconnect.backoff.max.ms", "100"}};
  u = Uploader::Create(store->get(), Env::Default(), o);
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  EXPECT_EQ((*u)->ProducerPropertyForTest("reconnect.backoff.max.ms"), "100");
}

}  // namespace
}  // namespace edgesync

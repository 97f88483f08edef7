// The buffer and the uploader on a virtual clock (tests/support/virtual_clock_env.h),
// against the Kafka-protocol mock cluster (a real process): timers of days
// or minutes run in the seconds the work takes.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "buffer/sealer.h"
#include "buffer/store.h"
#include "format/envelope.h"
#include "format/format.h"
#include "format/record.h"
#include "harness/agent_process.h"
#include "harness/consumer.h"
#include "harness/kafka_cluster.h"
#include "sync/uploader.h"
#include "tests/support/temp_dir.h"
#include "tests/support/virtual_clock_env.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;

constexpr int64_t kSecond = 1'000'000;
constexpr int64_t kMinute = 60 * kSecond;
constexpr int64_t kHour = 60 * kMinute;
constexpr int64_t kDay = 24 * kHour;

// Events in the batch of hour `h`: not all batches alike, so that event
// counts and batch counts cannot stand in for each other.
uint64_t EventsOfHour(uint64_t h) { return h % 5 + 1; }

// A week of Kafka away, the agent's buffer and uploader running all along
// (Store + Sealer + Uploader as the agent composes them, on one virtual
// clock): one batch an hour, buffer.max_age 3 days. What is older than
// max_age expires into gap records that account for every expired event;
// when Kafka is back the rest arrives, in order, and the gap records with
// it: every event is either delivered or counted in exactly one gap.
TEST(Outage, SevenDaysOfKafkaDownExpireWhatIsOlderThanMaxAgeIntoExactGapsAndTheRestArrivesInOrder) {
  constexpr const char* kTopic = "edge.week-outage";
  constexpr uint64_t kHours = 7 * 24;
  constexpr int64_t kMaxAge = 3 * kDay;
  auto cluster = harness::KafkaCluster::Start(1, {{kTopic, 1}});
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  ASSERT_TRUE((*cluster)->AllBrokersDown().ok());
  harness::TempDir dir = testing::NewTempDir();
  testing::VirtualClockEnv env(Env::Default());

  StoreOptions so;
  so.device_id = "dev-1";
  so.max_age_us = kMaxAge;
  auto store = Store::Open(&env, dir / "store.db", so);
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  SealerOptions sop;
  sop.device_id = "dev-1";
  sop.journal_dir = dir / "journal";
  sop.max_age_us = kMinute;  // batch.max_age: each hour's events make one batch
  auto sealer = Sealer::Open(&env, store->get(), sop, {StreamSpec{.name = "s", .kafka_topic = kTopic}});
  ASSERT_TRUE(sealer.ok()) << sealer.status().ToString();
  UploaderOptions uo;
  uo.brokers = (*cluster)->bootstrap();
  uo.device_id = "dev-1";
  uo.max_in_flight = 1;  // what is in flight is leased, and a leased batch never expires
  auto up = Uploader::Create(store->get(), &env, uo);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  (*sealer)->SetOnSealed([u = up->get()] { u->Notify(); });
  (*sealer)->Start();
  (*up)->Start();

  const int64_t start_us = env.NowMicros();
  uint64_t accepted = 0;
  for (uint64_t h = 0; h < kHours; ++h) {
    env.Advance(30 * kMinute);  // the events of hour h come at half past
    for (uint64_t k = 0; k < EventsOfHour(h); ++k) {
      Record r;
      r.topic = "t";
      r.received_at_us = env.NowMicros();
      r.payload = "hour " + std::to_string(h) + " event " + std::to_string(k);
      ASSERT_TRUE((*sealer)->Accept(0, r).ok());
      ++accepted;
    }
    env.Advance(30 * kMinute);  // past batch.max_age: sealed, then the store's limits enforced
    ASSERT_TRUE(harness::PollUntil([&] { return (*sealer)->stats().sealed_events == accepted; }, 30s, 1ms))
        << "hour " << h;
  }
  EXPECT_EQ(env.NowMicros() - start_us, 7 * kDay);
  // The age limit is enforced after each commit: the last pass expires
  // hour 95, leaving hours 96..167 and at most the one batch in flight.
  ASSERT_TRUE(harness::PollUntil([&] { return (*store)->Counts()->batches <= 72 + uo.max_in_flight; }, 30s, 1ms))
      << (*store)->Counts()->batches;
  EXPECT_EQ((*up)->stats().delivered_batches, 0u) << "Kafka was away all week";

  // Kafka is back. Its retries and the uploader's pauses take (virtual)
  // seconds: the clock moves 100 ms a poll, far less than the half hour
  // before the next batch (hour 96) would be old enough to expire.
  ASSERT_TRUE((*cluster)->AllBrokersUp().ok());
  ASSERT_TRUE(harness::PollUntil([&] {
    env.Advance(100'000);
    StoreCounts c = *(*store)->Counts();
    return c.batches == 0 && c.gap_records == 0;
  }, 120s)) << "the store empties once Kafka is back";
  EXPECT_LT(env.NowMicros() - start_us, 7 * kDay + 30 * kMinute);
  ASSERT_TRUE((*up)->Stop(5'000'000).ok());
  ASSERT_TRUE((*sealer)->Stop().ok());

  auto msgs = harness::ReadTopic((*cluster)->bootstrap(), kTopic, 30s);
  ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
  std::vector<uint64_t> delivered;          // batch sequences, in topic order
  std::map<uint64_t, uint64_t> seq_source;  // sequence -> 1 delivered, 2 in a gap
  uint64_t delivered_events = 0, gap_events = 0, gap_batches = 0;
  for (const harness::KafkaMessage& m : *msgs) {
    auto e = OpenEnvelope(m.value);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    if (e->gap) {
      const Gap& g = *e->gap;
      EXPECT_EQ(g.reason, format::kGapExpired);
      uint64_t expected_events = 0;
      for (uint64_t seq = g.first_seq; seq <= g.last_seq; ++seq) {
        EXPECT_TRUE(seq_source.emplace(seq, 2).second) << "sequence " << seq << " accounted for twice";
        expected_events += EventsOfHour(seq - 1);
        // Expired means older than max_age at the end: hour seq - 1 came at
        // (seq - 1):30, the end is 168:00, max_age 72 hours.
        EXPECT_LT(static_cast<int64_t>(seq - 1) * kHour + 30 * kMinute, 7 * kDay - kMaxAge)
            << "sequence " << seq << " expired younger than max_age";
      }
      EXPECT_EQ(g.events, expected_events) << "the gap record counts exactly the events it gave up";
      gap_events += g.events;
      gap_batches += g.last_seq - g.first_seq + 1;
    } else {
      const uint64_t seq = e->header.batch_seq;
      EXPECT_TRUE(seq_source.emplace(seq, 1).second) << "sequence " << seq << " accounted for twice";
      EXPECT_EQ(e->header.event_count, EventsOfHour(seq - 1));
      EXPECT_EQ(e->records.size(), EventsOfHour(seq - 1));
      delivered.push_back(seq);
      delivered_events += e->header.event_count;
    }
  }
  EXPECT_EQ(delivered_events + gap_events, accepted) << "every event delivered or counted in a gap";
  ASSERT_EQ(seq_source.size(), kHours) << "every batch sequence delivered or in a gap";
  EXPECT_EQ(seq_source.begin()->first, 1u);
  EXPECT_EQ(seq_source.rbegin()->first, kHours);
  EXPECT_TRUE(std::is_sorted(delivered.begin(), delivered.end())) << "in order";
  // Hours 0..95 were older than max_age at the end; all but the one batch
  // the uploader held in flight expired. Hours 96..167 were not.
  EXPECT_GE(gap_batches, 96u - uo.max_in_flight);
  EXPECT_LE(gap_batches, 96u);
  for (uint64_t seq = 97; seq <= kHours; ++seq) EXPECT_EQ(seq_source[seq], 1u) << "sequence " << seq;
}

// A topic Kafka refuses is blocked and probed once every
// kafka.blocked_retry_interval (5 minutes: the default), no sooner: with
// the clock standing a second short of it nothing is tried, at it one
// probe goes. Three refusals, so the third probe is taken and the topic
// drains, in order. On the real clock this took a shortened interval and
// real waits (UploaderTest.AnUnauthorizedTopicIsBlocked...).
TEST(UploaderOnAVirtualClock, ABlockedTopicIsProbedOnceEachRetryIntervalAndNoSooner) {
  constexpr const char* kRefused = "edge.refused-on-a-virtual-clock";
  constexpr int kRefusals = 3;
  constexpr int64_t kRetry = 300 * kSecond;
  auto cluster = harness::KafkaCluster::Start(1, {{kRefused, 1}});
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  ASSERT_TRUE((*cluster)->PushBrokerErrors(1, 0, kRefusals, 29).ok());  // TOPIC_AUTHORIZATION_FAILED
  harness::TempDir dir = testing::NewTempDir();
  testing::VirtualClockEnv env(Env::Default());
  auto store = Store::Open(&env, dir / "store.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  for (uint64_t seq = 1; seq <= 5; ++seq) {
    Record r;
    r.topic = "t";
    r.payload = "event " + std::to_string(seq);
    std::string enc, body;
    EncodeRecord(r, &enc);
    AppendToBody(enc, &body);
    BatchHeader h;
    h.device_id = "dev-1";
    h.stream = "r";
    h.batch_seq = seq;
    h.event_count = 1;
    SealedBatch b;
    b.stream = "r";
    b.kafka_topic = kRefused;
    b.seq = seq;
    b.events = 1;
    b.envelope = *SealEnvelope(h, body);
    ASSERT_TRUE((*store)->Commit(&b, {}).ok());
  }
  UploaderOptions uo;
  uo.brokers = (*cluster)->bootstrap();
  uo.device_id = "dev-1";
  uo.max_in_flight = 1;  // one produce request a try: one refusal each
  uo.backoff_initial_us = kSecond;
  uo.backoff_max_us = 10 * kSecond;
  uo.blocked_retry_us = kRetry;
  auto up = Uploader::Create(store->get(), &env, uo);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  (*up)->Start();
  (*up)->Notify();
  ASSERT_TRUE(harness::PollUntil([&] { return !(*up)->stats().blocked.empty(); }, 30s));
  EXPECT_EQ((*up)->stats().failed_deliveries, 1u);
  // Settled: the upload thread waits for its next timer.
  ASSERT_TRUE(env.AwaitIdleWaiters(1));
  for (int probe = 1; probe < kRefusals; ++probe) {
    env.Advance(kRetry - kSecond);
    ASSERT_TRUE(env.AwaitIdleWaiters(1));
    EXPECT_EQ((*up)->stats().failed_deliveries, static_cast<uint64_t>(probe)) << "no probe before the interval";
    EXPECT_EQ((*store)->Counts()->batches, 5u);
    env.Advance(kSecond);
    ASSERT_TRUE(harness::PollUntil([&] { return (*up)->stats().failed_deliveries == static_cast<uint64_t>(probe) + 1; },
                                   30s)) << "probe " << probe;
    ASSERT_TRUE(env.AwaitIdleWaiters(1));
    EXPECT_EQ((*up)->stats().blocked.size(), 1u) << "refused again: still blocked";
  }
  env.Advance(kRetry);  // the refusals are used up: this probe is taken
  ASSERT_TRUE(harness::PollUntil([&] {
    env.Advance(100'000);  // the uploader's pauses between sends
    return (*store)->Counts()->batches == 0;
  }, 60s));
  EXPECT_EQ((*up)->stats().failed_deliveries, static_cast<uint64_t>(kRefusals));
  EXPECT_TRUE((*up)->stats().blocked.empty());
  ASSERT_TRUE((*up)->Stop(5'000'000).ok());
  auto msgs = harness::ReadTopic((*cluster)->bootstrap(), kRefused, 30s);
  ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
  std::vector<uint64_t> seqs;
  for (const harness::KafkaMessage& m : *msgs) seqs.push_back(OpenEnvelope(m.value)->header.batch_seq);
  EXPECT_EQ(seqs, (std::vector<uint64_t>{1, 2, 3, 4, 5}));
}

// Kafka away for longer than kafka.retry_backoff_max (30 s by default) of
// the uploader's own time, its deliveries timing out again and again
// (message.timeout.ms, which is librdkafka's real time, shortened here).
// Each time-out was the pause: the uploader keeps one batch, the store's
// first, waiting in librdkafka as the probe, and nothing else, though
// more batches arrive and there is room for four in flight; once the
// cluster is back the store drains in order with the virtual clock
// standing still, so no timer of the uploader's stands between the
// cluster's return and the first batch. It used to pause up to
// retry_backoff_max after each failure.
TEST(UploaderOnAVirtualClock, AfterALongOutageOneProbeBatchWaitsAndTheRestFollowsItWithNoPauseOfOurs) {
  constexpr const char* kTopic = "edge.outage-probe";
  constexpr uint64_t kBatches = 12;
  auto cluster = harness::KafkaCluster::Start(1, {{kTopic, 1}});
  ASSERT_TRUE(cluster.ok()) << cluster.status().ToString();
  ASSERT_TRUE((*cluster)->AllBrokersDown().ok());
  harness::TempDir dir = testing::NewTempDir();
  testing::VirtualClockEnv env(Env::Default());
  auto store = Store::Open(&env, dir / "store.db");
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  auto commit = [&](uint64_t seq) {
    Record r;
    r.topic = "t";
    r.payload = "event " + std::to_string(seq);
    std::string enc, body;
    EncodeRecord(r, &enc);
    AppendToBody(enc, &body);
    BatchHeader h;
    h.device_id = "dev-1";
    h.stream = "s";
    h.batch_seq = seq;
    h.event_count = 1;
    SealedBatch b;
    b.stream = "s";
    b.kafka_topic = kTopic;
    b.seq = seq;
    b.events = 1;
    b.envelope = *SealEnvelope(h, body);
    return (*store)->Commit(&b, {});
  };
  // One batch at first: its time-out is the one failure before the probe
  // (with more in flight, some would time out and some be taken back, and
  // the test could not tell the last of them from the probe).
  ASSERT_TRUE(commit(1).ok());
  UploaderOptions uo;
  uo.brokers = (*cluster)->bootstrap();
  uo.device_id = "dev-1";
  uo.max_in_flight = 4;
  uo.properties = {{"message.timeout.ms", "1500"}};  // librdkafka's clock: real time
  auto up = Uploader::Create(store->get(), &env, uo);
  ASSERT_TRUE(up.ok()) << up.status().ToString();
  (*up)->Start();
  (*up)->Notify();
  // The first batch times out; then the probe, alone, again and again,
  // while the others arrive and the uploader's clock moves past
  // retry_backoff_max.
  ASSERT_TRUE(harness::PollUntil([&] { return (*up)->stats().failed_deliveries >= 1; }, 30s));
  for (uint64_t seq = 2; seq <= kBatches; ++seq) ASSERT_TRUE(commit(seq).ok());
  (*up)->Notify();
  for (int cycle = 0; cycle < 3; ++cycle) {
    const uint64_t failed = (*up)->stats().failed_deliveries;
    ASSERT_TRUE(harness::PollUntil([&] { return (*up)->stats().in_flight == 1; }, 30s))
        << "the probe is sent at once after the time-out, the clock standing still";
    ASSERT_TRUE(harness::PollUntil([&] {
      EXPECT_LE((*up)->stats().in_flight, 1u) << "only the probe waits in librdkafka while Kafka is away";
      return (*up)->stats().failed_deliveries > failed;
    }, 30s)) << "cycle " << cycle;
    EXPECT_EQ((*up)->stats().failed_deliveries, failed + 1) << "one batch at a time";
    env.Advance(uo.backoff_max_us + kSecond);
  }
  ASSERT_TRUE(harness::PollUntil([&] { return (*up)->stats().in_flight == 1; }, 30s));
  EXPECT_EQ((*store)->Counts()->batches, kBatches);
  EXPECT_EQ((*up)->stats().delivered_batches, 0u);

  // Back: the probe leaves when librdkafka reconnects, and the rest follows
  // it; the uploader's clock does not move.
  const int64_t clock_at_return = env.MonotonicMicros();
  ASSERT_TRUE((*cluster)->AllBrokersUp().ok());
  ASSERT_TRUE(harness::PollUntil([&] { return (*store)->Counts()->batches == 0; }, 60s))
      << (*store)->Counts()->batches << " batches left";
  EXPECT_EQ(env.MonotonicMicros(), clock_at_return);
  ASSERT_TRUE((*up)->Stop(5'000'000).ok());
  auto msgs = harness::ReadTopic((*cluster)->bootstrap(), kTopic, 30s);
  ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
  std::vector<uint64_t> seqs;
  for (const harness::KafkaMessage& m : *msgs) seqs.push_back(OpenEnvelope(m.value)->header.batch_seq);
  std::vector<uint64_t> want(kBatches);
  for (uint64_t i = 0; i < kBatches; ++i) want[i] = i + 1;
  EXPECT_EQ(seqs, want) << "in order, each once";
}

}  // namespace
}  // namespace edgesync

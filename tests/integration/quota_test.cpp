// The buffer quota end to end: Kafka is down longer than the quota lasts,
// the agent gives up its oldest batches, records each loss as a gap and
// uploads the gap records once Kafka is back, so that centrally
// published = arrived + counted in gaps, exactly.
#include <simdjson.h>

#include <fstream>
#include <random>
#include <set>

#include "buffer/store.h"
#include "tests/integration/agent_figures.h"
#include "tests/integration/pipeline_fixture.h"
#include "tests/support/json_lines.h"

namespace edgesync::testing {
namespace {

// A payment event that does not compress much (random hex), so a small quota
// fills with few events.
std::string NoisyEvent(uint64_t seq, std::mt19937_64& rng) {
  static const char kHex[] = "0123456789abcdef";
  std::string noise(1200, '0');
  for (char& c : noise) c = kHex[rng() & 15];
  return "{\"device\":\"pub\",\"seq\":" + std::to_string(seq) + ",\"noise\":\"" + noise + "\"}";
}

struct GapTotals {
  uint64_t events = 0;
  std::set<std::string> reasons;
};

GapTotals ReadGaps(const std::string& path) {
  GapTotals t;
  ForEachJsonLine(path, [&](simdjson::dom::element e) {
    t.events += uint64_t(e["events"]);
    t.reasons.insert(std::string(std::string_view(e["reason"])));
  });
  return t;
}

TEST_F(Pipeline, QuotaFullDuringAnOutageEveryLossIsAGapCountedCentrally) {
  // Envelopes in flight to Kafka are never given up; they come back to the
  // store when librdkafka gives up on them after message.timeout.ms.
  message_timeout_ms_ = 3000;
  WriteConfig("", "[buffer]\nmax_bytes = \"1MiB\"\n");
  StartAgent();
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  auto pub = Connect();
  ASSERT_TRUE(pub);
  constexpr uint64_t kEvents = 3000;  // about 2 MiB sealed: twice the quota
  std::mt19937_64 rng(42);
  for (uint64_t seq = 1; seq <= kEvents; ++seq) {
    ASSERT_TRUE(pub->Publish("terminal/t1/payment/authorization", NoisyEvent(seq, rng), 1).ok());
  }
  ASSERT_TRUE(pub->WaitAcked(60s).ok());

  // Everything is sealed: either still buffered or given up as a gap, as
  // the agent tells of its store.
  // (Right after a commit the store may hold one batch over the quota,
  // until the sealer enforces it a moment later.)
  uint64_t buffered = 0, lost = 0, bytes = 0;
  EXPECT_TRUE(harness::PollUntil([&] {
    AgentFigures f = ReadAgentFigures(dir_ / "state");
    if (!f.ok) return false;
    buffered = f.buffered_events;
    bytes = f.buffered_bytes;
    lost = f.gap_events;
    return buffered + lost == kEvents && bytes <= (1u << 20);
  }, 60s)) << "buffered " << buffered << " lost " << lost << " bytes " << bytes << "\n"
           << AgentLogs();
  EXPECT_GT(lost, 0u) << "the quota must have bitten";
  EXPECT_GT(buffered, 0u);
  EXPECT_NE(AgentLogs().find("recorded as a gap"), std::string::npos);

  ASSERT_TRUE(cluster_->AllBrokersUp().ok());
  StartUnpack();
  harness::Tally t;
  GapTotals gaps;
  EXPECT_TRUE(harness::PollUntil([&] {
    t = Count(kEvents);
    gaps = ReadGaps(dir_ / "gaps.ndjson");
    return t.arrived + gaps.events == kEvents;
  }, 120s)) << "arrived " << t.arrived << " + gap events " << gaps.events << " != " << kEvents
            << "\n" << AgentLogs();
  EXPECT_EQ(gaps.events, lost);
  EXPECT_EQ(gaps.reasons, std::set<std::string>{"quota"});
  EXPECT_EQ(t.duplicates, 0u);
  EXPECT_EQ(t.unexpected, 0u);
  EXPECT_EQ(t.unparsable, 0u);
  // The gap records account for every missing batch: unpack reports no hole.
  const std::string unpack_log = harness::ReadWholeFile(dir_ / "unpack.log");
  EXPECT_EQ(unpack_log.find("not (yet) seen"), std::string::npos) << unpack_log;
}

}  // namespace
}  // namespace edgesync::testing

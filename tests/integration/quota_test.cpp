// The buffer quota end to end: Kafka is down longer than the quota lasts,
// the agent gives up its oldest batches, records each loss as a gap and
// uploads the gap records once Kafka is back, so that centrally
// published = arrived + counted in gaps, exactly.
#include <simdjson.h>
#include <sqlite3.h>

#include <fstream>
#include <random>
#include <set>

#include "buffer/store.h"
#include "harness/agent_figures.h"
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
    harness::AgentFigures f = harness::ReadAgentFigures(dir_ / "state");
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

// A corrupt store end to end: the agent is killed with sealed batches in its
// store (Kafka down), the store is damaged (a table gone, as a bad page can
// make it), and the agent is started again. It must move the store aside,
// say so in its log, report what it lost as a store-corrupt gap record that
// reaches edgesync-unpack, and keep collecting: events published after the
// restart arrive, and published = arrived + counted in gaps, exactly.
TEST_F(Pipeline, ACorruptStoreIsMovedAsideReportedAsAGapAndTheAgentKeepsCollecting) {
  message_timeout_ms_ = 3000;
  WriteConfig();
  auto pub = StartPipeline();
  ASSERT_TRUE(pub);
  Publish(pub.get(), 1, 100);
  ASSERT_EQ(AwaitArrival(100).arrived, 100u) << AgentLogs();

  // Kafka away: the next 200 events are sealed into the store and stay there.
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  Publish(pub.get(), 101, 300);
  ASSERT_TRUE(pub->WaitAcked(60s).ok());
  uint64_t buffered = 0;
  EXPECT_TRUE(harness::PollUntil([&] {
    buffered = harness::ReadAgentFigures(dir_ / "state").buffered_events;
    return buffered == 200;
  }, 60s)) << "buffered " << buffered << "\n" << AgentLogs();
  ASSERT_TRUE(agent_->Signal(SIGKILL).ok());
  ASSERT_TRUE(agent_->Wait(30s).ok());
  agent_.reset();

  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open_v2((dir_ / "state/store.db").c_str(), &db, SQLITE_OPEN_READWRITE, nullptr), SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, "DROP TABLE gaps;", nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }
  {
    auto damaged = Store::Open(Env::Default(), dir_ / "state/store.db");
    ASSERT_FALSE(damaged.ok()) << "the damage must be what the store calls corrupt";
    EXPECT_EQ(damaged.status().code(), Status::Code::kCorruption) << damaged.status().ToString();
  }

  ASSERT_TRUE(cluster_->AllBrokersUp().ok());
  StartAgent();
  ASSERT_TRUE(agent_);
  ASSERT_TRUE(AwaitLog(1, "was corrupt")) << AgentLog(1);
  EXPECT_NE(AgentLog(1).find("moved it aside to " + (dir_ / "state/store.db.corrupt-")), std::string::npos)
      << AgentLog(1);
  EXPECT_NE(AgentLog(1).find("stream payments: batches"), std::string::npos) << AgentLog(1);
  EXPECT_NE(AgentLog(1).find("recorded as a store-corrupt gap and reported to Kafka"), std::string::npos)
      << AgentLog(1);
  bool kept = false;
  for (const std::string& n : *Env::Default()->ListDir(dir_ / "state")) kept |= n.starts_with("store.db.corrupt-");
  EXPECT_TRUE(kept) << "the damaged store is kept for forensics";

  // Intake goes on: events published after the restart arrive.
  Publish(pub.get(), 301, 400);
  ASSERT_TRUE(pub->WaitAcked(60s).ok());
  harness::Tally t;
  GapTotals gaps;
  EXPECT_TRUE(harness::PollUntil([&] {
    t = Count(400);
    gaps = ReadGaps(dir_ / "gaps.ndjson");
    return t.arrived + gaps.events == 400 && t.arrived >= 200;
  }, 120s)) << "arrived " << t.arrived << " + gap events " << gaps.events << " != 400\n" << AgentLogs();
  EXPECT_EQ(gaps.events, 200u) << "the gap counts the 200 events sealed in the damaged store";
  EXPECT_EQ(gaps.reasons, std::set<std::string>{"store-corrupt"});
  // Each of 301..400 arrived: those counted up to 400 less those up to 300.
  EXPECT_EQ(Count(400).arrived - Count(300).arrived, 100u) << "events published after the restart";
  EXPECT_EQ(Count(100).arrived, 100u);
  EXPECT_EQ(t.duplicates, 0u);
  EXPECT_EQ(t.unexpected, 0u);
  const std::string unpack_log = harness::ReadWholeFile(dir_ / "unpack.log");
  EXPECT_EQ(unpack_log.find("not (yet) seen"), std::string::npos) << "the gap record accounts for every batch\n"
                                                                   << unpack_log;
}

// The store's full check off the start's critical path (buffer/store.h):
// a new store is checked as it is made; after a clean stop the agent opens
// it with the cheap checks only and runs quick_check once intake runs (it
// logs the verdict); after kill -9 it checks at open, before intake, as
// every start did before. Events flow through all three starts.
TEST_F(Pipeline, AfterACleanStopTheStoreIsCheckedOnceIntakeRunsAndAfterAKillBeforeIt) {
  WriteConfig();
  auto pub = StartPipeline();
  ASSERT_TRUE(pub);
  Publish(pub.get(), 1, 100);
  ASSERT_EQ(AwaitArrival(100).arrived, 100u) << AgentLogs();
  ASSERT_TRUE(agent_->Stop(60s).ok());
  ASSERT_EQ(agent_->exit_status(), 0) << AgentLog(0);
  EXPECT_EQ(AgentLog(0).find("integrity check passed"), std::string::npos)
      << "a new store is checked as it is made, not after\n" << AgentLog(0);

  StartAgent();  // after a clean stop
  ASSERT_TRUE(AwaitLog(1, "store: integrity check passed (")) << AgentLog(1);
  EXPECT_NE(AgentLog(1).find("after intake started"), std::string::npos) << AgentLog(1);
  Publish(pub.get(), 101, 200);
  ASSERT_EQ(AwaitArrival(200).arrived, 200u) << AgentLogs();

  ASSERT_TRUE(agent_->Signal(SIGKILL).ok());
  ASSERT_TRUE(agent_->Wait(30s).ok());
  StartAgent();  // after a kill: the check runs at open, before intake
  Publish(pub.get(), 201, 300);
  ASSERT_EQ(AwaitArrival(300).arrived, 300u) << AgentLogs();
  EXPECT_EQ(AgentLog(2).find("integrity check passed"), std::string::npos)
      << "no deferred check after an unclean stop\n" << AgentLog(2);
  EXPECT_EQ(Count(300).unexpected, 0u);
}

}  // namespace
}  // namespace edgesync::testing

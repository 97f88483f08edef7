// MosquittoBroker, Publisher and the fleet simulator against a real
// mosquitto. Messages are read back with mosquitto_sub using a persistent
// session created before anything is published, so nothing depends on
// timing: the broker queues for the session until the reader connects.
#include "harness/mosquitto.h"

#include <gtest/gtest.h>
#include <simdjson.h>

#include <csignal>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "harness/fleet.h"
#include "harness/process.h"
#include "harness/publisher.h"
#include "harness/tally.h"

namespace edgesync::harness {
namespace {

using std::chrono::seconds;

class MosquittoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(FindProgram("mosquitto_sub").ok()) << "install mosquitto-clients (script/bootstrap)";
    Result<TempDir> d = TempDir::Create("harness-mosquitto");
    ASSERT_TRUE(d.ok()) << d.status().ToString();
    dir_.emplace(std::move(d.value()));
  }
  void TearDown() override {
    if (broker_) {
      EXPECT_TRUE(broker_->Stop().ok());
    }
    if (HasFailure() && dir_) {
      dir_->Keep();
      std::fprintf(stderr, "kept %s for inspection\n", dir_->path().c_str());
    }
  }

  void StartBroker(BrokerOptions opts = {}) {
    Result<std::unique_ptr<MosquittoBroker>> b = MosquittoBroker::Start(dir_->File("broker"), opts);
    ASSERT_TRUE(b.ok()) << b.status().ToString();
    broker_ = std::move(b.value());
  }

  std::vector<std::string> SubArgs(const std::string& client_id,
                                   const std::vector<std::string>& topics) {
    std::vector<std::string> argv = {"mosquitto_sub", "-h", "127.0.0.1",
                                     "-p", std::to_string(broker_->port()),
                                     "-i", client_id, "-c", "-q", "1", "-v"};
    for (const std::string& t : topics) {
      argv.push_back("-t");
      argv.push_back(t);
    }
    return argv;
  }

  // Creates a persistent session (clean_session=false) subscribed to
  // `topics` at QoS 1: mosquitto_sub -E exits once the SUBACK arrived.
  void CreateSession(const std::string& client_id, const std::vector<std::string>& topics) {
    SpawnOptions o;
    o.argv = SubArgs(client_id, topics);
    o.argv.push_back("-E");
    Result<Process> p = Process::Spawn(o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    Result<int> code = p->Wait(seconds(30));
    ASSERT_TRUE(code.ok()) << code.status().ToString();
    ASSERT_EQ(*code, 0);
  }

  // Resumes the session and streams "topic payload" lines.
  Process Reader(const std::string& client_id, const std::vector<std::string>& topics) {
    SpawnOptions o;
    o.argv = SubArgs(client_id, topics);
    o.pipe_stdout = true;
    Result<Process> p = Process::Spawn(o);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return std::move(p.value());
  }

  // `n` lines from `reader`, each split into (topic, payload).
  std::vector<std::pair<std::string, std::string>> ReadMessages(Process& reader, size_t n) {
    std::vector<std::pair<std::string, std::string>> out;
    while (out.size() < n) {
      Result<std::string> line = reader.ReadLine(seconds(30));
      EXPECT_TRUE(line.ok()) << "after " << out.size() << " of " << n << ": "
                             << line.status().ToString();
      if (!line.ok()) break;
      size_t sp = line->find(' ');
      out.emplace_back(line->substr(0, sp), sp == std::string::npos ? "" : line->substr(sp + 1));
    }
    return out;
  }

  std::optional<TempDir> dir_;
  std::unique_ptr<MosquittoBroker> broker_;
};

TEST_F(MosquittoTest, PublisherDeliversInOrderWithBoundedInflight) {
  StartBroker();
  CreateSession("reader-1", {"test/#"});
  Result<std::unique_ptr<Publisher>> pub =
      Publisher::Connect("127.0.0.1", broker_->port(), "writer-1", /*max_inflight=*/8);
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  constexpr int kCount = 300;
  for (int i = 1; i <= kCount; ++i) {
    ASSERT_TRUE((*pub)->Publish("test/seq", "message " + std::to_string(i)).ok());
    ASSERT_LE((*pub)->inflight(), 8u);
  }
  ASSERT_TRUE((*pub)->WaitAcked(seconds(30)).ok());
  EXPECT_EQ((*pub)->acked(), static_cast<uint64_t>(kCount));
  EXPECT_EQ((*pub)->inflight(), 0u);
  ASSERT_TRUE((*pub)->Disconnect().ok());

  Process reader = Reader("reader-1", {"test/#"});
  auto msgs = ReadMessages(reader, kCount);
  ASSERT_EQ(msgs.size(), static_cast<size_t>(kCount));
  for (int i = 0; i < kCount; ++i) {
    EXPECT_EQ(msgs[i].first, "test/seq");
    EXPECT_EQ(msgs[i].second, "message " + std::to_string(i + 1));
  }
  EXPECT_TRUE(reader.Stop(seconds(5)).ok());
}

TEST_F(MosquittoTest, ConnectToNothingIsUnavailable) {
  int port = FreeLoopbackPort();
  Result<std::unique_ptr<Publisher>> pub =
      Publisher::Connect("127.0.0.1", port, "nobody-home", 10, std::chrono::milliseconds(500));
  EXPECT_EQ(pub.status().code(), Status::Code::kUnavailable);
}

TEST_F(MosquittoTest, RestartKeepsQueuedMessagesOfAPersistentSession) {
  StartBroker();
  int port = broker_->port();
  CreateSession("agent-1", {"dev/#"});
  {
    Result<std::unique_ptr<Publisher>> pub = Publisher::Connect("127.0.0.1", port, "device-1");
    ASSERT_TRUE(pub.ok()) << pub.status().ToString();
    for (int i = 1; i <= 5; ++i) ASSERT_TRUE((*pub)->Publish("dev/e", "queued " + std::to_string(i)).ok());
    ASSERT_TRUE((*pub)->WaitAcked(seconds(30)).ok());
  }
  ASSERT_TRUE(broker_->Restart().ok());
  EXPECT_EQ(broker_->port(), port);
  EXPECT_TRUE(WaitForTcp("127.0.0.1", port, seconds(1)).ok());

  Process reader = Reader("agent-1", {"dev/#"});
  auto msgs = ReadMessages(reader, 5);
  ASSERT_EQ(msgs.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(msgs[i].second, "queued " + std::to_string(i + 1));
  EXPECT_TRUE(reader.Stop(seconds(5)).ok());
}

TEST_F(MosquittoTest, PublisherRidesOutABrokerRestart) {
  StartBroker();
  CreateSession("reader-3", {"test/#"});
  Result<std::unique_ptr<Publisher>> pub = Publisher::Connect("127.0.0.1", broker_->port(), "writer-3");
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  ASSERT_TRUE((*pub)->Publish("test/r", "before 1").ok());
  ASSERT_TRUE((*pub)->WaitAcked(seconds(30)).ok());
  // Publishes while the broker is away are queued, not refused (the fleet
  // simulator goes on through the soak's broker restarts).
  ASSERT_TRUE(broker_->Stop().ok());
  for (int i = 1; i <= 3; ++i) {
    Status s = (*pub)->Publish("test/r", "during " + std::to_string(i));
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  ASSERT_TRUE(broker_->Restart().ok());
  ASSERT_TRUE((*pub)->WaitAcked(seconds(30)).ok());
  EXPECT_EQ((*pub)->acked(), 4u);

  Process reader = Reader("reader-3", {"test/#"});
  auto msgs = ReadMessages(reader, 4);
  std::set<std::string> payloads;
  for (const auto& m : msgs) payloads.insert(m.second);
  EXPECT_EQ(payloads, (std::set<std::string>{"before 1", "during 1", "during 2", "during 3"}));
  EXPECT_TRUE(reader.Stop(seconds(5)).ok());
}

TEST_F(MosquittoTest, KillStopsTheBrokerAtOnceAndRestartBringsItBack) {
  StartBroker();
  int port = broker_->port();
  ASSERT_TRUE(broker_->Kill().ok());
  EXPECT_FALSE(broker_->Running());
  EXPECT_EQ(WaitForTcp("127.0.0.1", port, std::chrono::milliseconds(100)).code(),
            Status::Code::kUnavailable);
  ASSERT_TRUE(broker_->Restart().ok());
  EXPECT_TRUE(broker_->Running());
  Result<std::unique_ptr<Publisher>> pub = Publisher::Connect("127.0.0.1", port, "after-kill");
  EXPECT_TRUE(pub.ok()) << pub.status().ToString();
}

TEST_F(MosquittoTest, SecondBrokerOnATakenPortFails) {
  StartBroker();
  BrokerOptions same;
  same.port = broker_->port();
  Result<std::unique_ptr<MosquittoBroker>> clash = MosquittoBroker::Start(dir_->File("clash"), same);
  EXPECT_FALSE(clash.ok());
}

// Every event a fleet reports as published arrives, each device's sequence
// complete from 1; the tally over the arrivals agrees.
void ExpectComplete(const std::vector<std::pair<std::string, std::string>>& msgs,
                    const std::vector<std::pair<std::string, uint64_t>>& published) {
  simdjson::dom::parser parser;
  std::map<std::string, std::set<uint64_t>> seen;
  std::string ndjson;
  for (const auto& [topic, payload] : msgs) {
    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(payload).get(doc), simdjson::SUCCESS) << payload;
    std::string_view device = doc["device"].get_string().value();
    EXPECT_NE(topic.find(std::string(device)), std::string::npos) << topic;
    seen[std::string(device)].insert(doc["seq"].get_uint64().value());
    ndjson += R"({"device":"edge","stream":"s","batch":1,"topic":")" + topic +
              R"(","received_at":"x","payload":)" + payload + "}\n";
  }
  std::map<std::string, uint64_t> manifest;
  for (const auto& [device, n] : published) {
    manifest[device] = n;
    ASSERT_EQ(seen[device].size(), n) << device;
    if (n > 0) {
      EXPECT_EQ(*seen[device].begin(), 1u);
      EXPECT_EQ(*seen[device].rbegin(), n);
    }
  }
  std::istringstream in(ndjson);
  Tally t = TallyLines(in, manifest);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.duplicates, 0u);
  EXPECT_EQ(t.arrived, msgs.size());
}

TEST_F(MosquittoTest, FleetInProcessPublishesEveryEventOnce) {
  StartBroker();
  const std::vector<std::string> topics = {"terminal/#", "charger/#"};
  CreateSession("central-1", topics);
  FleetOptions opts;
  opts.port = broker_->port();
  opts.terminals = 4;
  opts.chargers = 3;
  opts.count = 400;
  opts.rate = 0;  // unpaced
  opts.seed = 11;
  Result<FleetReport> report = RunFleet(opts);
  ASSERT_TRUE(report.ok()) << report.status().ToString();
  EXPECT_EQ(report->total, 400u);
  EXPECT_FALSE(report->interrupted);
  ASSERT_EQ(report->published.size(), 7u);
  uint64_t sum = 0;
  for (const auto& [device, n] : report->published) sum += n;
  EXPECT_EQ(sum, 400u);

  Process reader = Reader("central-1", topics);
  auto msgs = ReadMessages(reader, 400);
  ASSERT_EQ(msgs.size(), 400u);
  ExpectComplete(msgs, report->published);
  EXPECT_TRUE(reader.Stop(seconds(5)).ok());
}

TEST_F(MosquittoTest, FleetProgramStopsCleanlyOnSigterm) {
  StartBroker();
  const std::vector<std::string> topics = {"terminal/#", "charger/#"};
  CreateSession("central-2", topics);
  Process reader = Reader("central-2", topics);

  SpawnOptions o;
  std::string manifest = dir_->File("manifest.csv");
  o.argv = {ProgramPath("edgesync-fleet"), "--port", std::to_string(broker_->port()),
            "--rate", "200", "--seconds", "120", "--seed", "5", "--quiet",
            "--manifest", manifest};
  o.pipe_stdout = true;
  Result<Process> fleet = Process::Spawn(o);
  ASSERT_TRUE(fleet.ok()) << fleet.status().ToString();

  // Stop it mid-run, once events are known to be flowing.
  auto first = ReadMessages(reader, 20);
  ASSERT_EQ(first.size(), 20u);
  ASSERT_TRUE(fleet->Signal(SIGTERM).ok());
  Result<int> code = fleet->Wait(seconds(60));
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 0);
  Result<std::string> line = fleet->ReadLine(seconds(5));
  ASSERT_TRUE(line.ok()) << line.status().ToString();
  ASSERT_EQ(line->rfind("published=", 0), 0u) << *line;
  uint64_t published = std::stoull(line->substr(10));
  EXPECT_GE(published, 20u);
  EXPECT_LT(published, 200u * 120u);  // stopped early

  std::ifstream mf(manifest);
  Result<std::map<std::string, uint64_t>> m = ParseManifest(mf);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->size(), 5u);  // 3 terminals + 2 chargers by default
  uint64_t sum = 0;
  std::vector<std::pair<std::string, uint64_t>> per_device;
  for (const auto& [device, n] : *m) {
    sum += n;
    per_device.emplace_back(device, n);
  }
  EXPECT_EQ(sum, published);

  auto rest = ReadMessages(reader, published - first.size());
  first.insert(first.end(), rest.begin(), rest.end());
  ExpectComplete(first, per_device);
  EXPECT_TRUE(reader.Stop(seconds(5)).ok());
}

}  // namespace
}  // namespace edgesync::harness

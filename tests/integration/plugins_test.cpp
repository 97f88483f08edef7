// Chains end to end: the agent runs each stream's plugins between the broker
// and the journal, pci covers every stream (and dead letters) unless one
// opts out, and SIGHUP swaps the chains between two events (or restarts
// the pipeline in the process for other changes) without touching the
// buffer or the batch sequences.
#include <csignal>
#include <fstream>
#include <map>

#include "tests/integration/pipeline_fixture.h"
#include "tests/integration/arrived.h"

namespace edgesync::testing {
namespace {

constexpr const char* kPlugins = R"(
[[streams]]
name = "other"
topics = ["other/#"]
kafka_topic = "edge.test-payments"
format = "json"

[[streams]]
name = "opted-out"
topics = ["lab/#"]
kafka_topic = "edge.test-payments"
skip_plugins = ["card-data"]

[plugins.card-data]
type = "pci"
every_stream = true

[plugins.shape]
type = "rules"
[[plugins.shape.rules]]
when = 'type == "heartbeat"'
drop = true
[[plugins.shape.rules]]
set = { site = "berlin" }
route = { key_from = "device" }
)";

TEST_F(Pipeline, ChainsRunPerStreamAndPciCoversEveryStreamAndDeadLetters) {
  WriteConfig("subscribe = [\"#\"]\n", kPlugins, "format = \"json\"\nplugins = [\"shape\"]\n");
  StartAgent();
  StartUnpackTopics({kTopic, "edge.dead-letter"});
  auto pub = Connect();
  ASSERT_TRUE(pub);
  const std::string pan = "4111111111111111", masked = "411111******1111";
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/a", R"({"device":"t1","type":"sale","pan":")" + pan + R"(","cvv":"123"})").ok());
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/a", R"({"device":"t1","type":"heartbeat"})").ok());
  ASSERT_TRUE(pub->Publish("other/x", R"({"note":"card )" + pan + R"("})").ok());
  ASSERT_TRUE(pub->Publish("lab/x", "test card " + pan).ok());
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/a", "{broken " + pan).ok());  // not JSON
  ASSERT_TRUE(pub->Publish("nowhere/x", "pan=" + pan).ok());                  // unmatched
  ASSERT_TRUE(pub->WaitAcked(30s).ok());
  std::vector<Arrived> got;
  ASSERT_TRUE(harness::PollUntil([&] { return (got = ReadArrived(dir_ / "records.ndjson")).size() >= 5; }, 60s))
      << got.size() << "\n" << AgentLogs();
  std::map<std::string, Arrived> by;  // by stream, or by dead-letter reason
  for (const Arrived& a : got) by[a.reason.empty() ? a.stream : a.reason] = a;
  EXPECT_EQ(got.size(), 5u);  // the heartbeat was dropped
  EXPECT_EQ(by["payments"].payload, R"({"device":"t1","type":"sale","pan":")" + masked + R"(","site":"berlin"})");
  EXPECT_EQ(by["payments"].key, "t1");
  EXPECT_EQ(by["other"].payload, R"({"note":"card )" + masked + R"("})");  // a stream the chain does not name
  EXPECT_NE(by["opted-out"].payload.find(pan), std::string::npos);         // opted out, explicitly
  EXPECT_NE(by["invalid-json"].payload.find(masked), std::string::npos) << by["invalid-json"].payload;
  EXPECT_NE(by["unmatched"].payload.find(masked), std::string::npos) << by["unmatched"].payload;
  for (const Arrived& a : got) {
    if (a.stream != "opted-out") {
      EXPECT_EQ(a.payload.find(pan), std::string::npos) << a.stream << ": " << a.payload;
    }
  }
  ASSERT_TRUE(agent_->Stop(30s).ok());
  EXPECT_NE(AgentLogs().find("filtered=1"), std::string::npos) << AgentLogs();
}

TEST_F(Pipeline, AScriptOrPluginErrorGoesToTheDeadLetterStreamWithTheReason) {
  std::ofstream(dir_ / "fleet.lua") << "function process(e)\n"
                                       "  if e.payload.action == 'Authorize' then e.payload.checked = true end\n"
                                       "  return e\n"
                                       "end\n"
                                       "function broken(e)\n"
                                       "  return e.payload.nothing.here\n"
                                       "end\n";
  WriteConfig("", R"(
[[streams]]
name = "scripted"
topics = ["lab/#"]
kafka_topic = "edge.test-payments"
format = "json"
plugins = ["broken"]

[plugins.ocpp]
type = "ocpp"
[plugins.script]
type = "lua"
script = "fleet.lua"
[plugins.broken]
type = "lua"
script = "fleet.lua"
function = "broken"
)", "format = \"json\"\nplugins = [\"ocpp\", \"script\"]\n");
  StartAgent();
  StartUnpackTopics({kTopic, "edge.dead-letter"});
  auto pub = Connect();
  ASSERT_TRUE(pub);
  ASSERT_TRUE(pub->Publish("terminal/CP1/payment/x", R"({"not":"a frame"})").ok());
  ASSERT_TRUE(pub->Publish("terminal/CP1/payment/x", R"([2,"id","Authorize",{"idTag":"A"}])").ok());
  ASSERT_TRUE(pub->Publish("lab/x", R"({"n":1})").ok());
  ASSERT_TRUE(pub->WaitAcked(30s).ok());
  std::vector<Arrived> got;
  ASSERT_TRUE(harness::PollUntil([&] { return (got = ReadArrived(dir_ / "records.ndjson")).size() >= 3; }, 60s))
      << AgentLogs();
  std::map<std::string, Arrived> by;  // by the edgesync.error's start, or "" when none
  for (const Arrived& a : got) by[a.error.substr(0, a.error.find(':'))] = a;
  EXPECT_EQ(by["ocpp"].payload, R"({"not":"a frame"})");
  EXPECT_EQ(by["ocpp"].reason, "plugin-error");
  EXPECT_EQ(by["lua"].payload, R"({"n":1})");  // never dropped: kept as it came
  EXPECT_EQ(by["lua"].reason, "plugin-error");
  EXPECT_NE(by["lua"].error.find("fleet.lua:6: attempt to index a nil value"), std::string::npos) << by["lua"].error;
  // ocpp, then the script (which sorts the members it writes back).
  EXPECT_EQ(by[""].payload,
            R"({"action":"Authorize","charger_id":"CP1","checked":true,"message_type":"CALL","payload":{"idTag":"A"},"unique_id":"id"})");
}

std::string Tagging(const std::string& tag) {
  return "\n[plugins.tag]\ntype = \"rules\"\n[[plugins.tag.rules]]\nset = { tag = \"" + tag + "\" }\n";
}

TEST_F(Pipeline, SighupSwapsTheChainsOrRestartsThePipelineAndKeepsBufferAndSequences) {
  const std::string stream = "format = \"json\"\nplugins = [\"tag\"]\n";
  WriteConfig("", Tagging("v1"), stream);
  StartAgent();
  StartUnpack();
  auto pub = Connect();
  ASSERT_TRUE(pub);
  uint64_t seq = 0;
  auto publish = [&](int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(pub->Publish("terminal/t1/payment/x", "{\"seq\":" + std::to_string(++seq) + "}").ok());
    }
    ASSERT_TRUE(pub->WaitAcked(30s).ok());
  };
  auto reloads = [&](const std::string& text) {
    const size_t before = AgentLog(0).size();
    EXPECT_TRUE(agent_->Signal(SIGHUP).ok());
    EXPECT_TRUE(harness::PollUntil([&] { return AgentLog(0).find(text, before) != std::string::npos; }, 30s))
        << text << "\n" << AgentLog(0);
  };
  // The publisher's acknowledgements come from the broker: wait until the
  // agent has taken the events (they arrive centrally) before changing.
  auto arrived = [&](size_t n) {
    ASSERT_TRUE(harness::PollUntil([&] { return ReadArrived(dir_ / "records.ndjson").size() >= n; }, 60s))
        << AgentLogs();
  };
  publish(100);
  arrived(100);
  WriteConfig("", Tagging("v2"), stream);
  reloads("take over at the next event");
  publish(100);
  arrived(200);
  // An invalid configuration: the running one stays, the error says where.
  WriteConfig("", Tagging("v3") + "[[plugins.tag.rules]]\nwhen = 'a =='\ndrop = true\n", stream);
  reloads("keeping the running configuration");
  EXPECT_NE(AgentLog(0).find("rules[1].when: column 5: expected a value"), std::string::npos) << AgentLog(0);
  // More than chains changed: the pipeline restarts in the process, with
  // the buffer and the sequences.
  WriteConfig("", Tagging("v4") + "[buffer]\nsync_interval = \"3s\"\n", stream);
  reloads("the pipeline restarted with the new configuration");
  arrived(200);
  publish(100);

  std::vector<Arrived> got;
  ASSERT_TRUE(harness::PollUntil([&] { return (got = ReadArrived(dir_ / "records.ndjson")).size() >= 300; }, 60s))
      << got.size() << "\n" << AgentLogs();
  ASSERT_EQ(got.size(), 300u);
  std::map<uint64_t, std::string> tag_of;
  std::map<uint64_t, int> batches;
  for (const Arrived& a : got) {
    simdjson::dom::parser p;
    simdjson::dom::element e = p.parse(a.payload);
    tag_of[uint64_t(e["seq"])] = std::string(std::string_view(e["tag"]));
    batches[a.batch]++;
  }
  ASSERT_EQ(tag_of.size(), 300u);  // each event once
  for (uint64_t s = 1; s <= 300; ++s) EXPECT_EQ(tag_of[s], s <= 100 ? "v1" : s <= 200 ? "v2" : "v4") << s;
  // One stream, its batch sequence continues across the reloads and the
  // restart: 1..n.
  EXPECT_EQ(batches.begin()->first, 1u);
  EXPECT_EQ(batches.rbegin()->first, batches.size());

  // The log level is reloaded too: debug lines (a dead letter's: not JSON) appear
  // only after it.
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/before", "not json").ok());
  ASSERT_TRUE(pub->WaitAcked(30s).ok());
  // Taken by the agent (the stats line counts it) before the reload.
  ASSERT_TRUE(harness::PollUntil([&] { return AgentLog(0).find(" dead_letter.") != std::string::npos; }, 30s))
      << AgentLog(0);
  WriteConfig("", Tagging("v2"), stream);
  std::string text = harness::ReadWholeFile(config_path());
  text.replace(text.find("log_level = \"info\""), 18, "log_level = \"debug\"");
  std::ofstream(config_path()) << text;
  reloads("log level debug");
  ASSERT_TRUE(pub->Publish("terminal/t1/payment/after", "not json").ok());
  EXPECT_TRUE(harness::PollUntil([&] { return AgentLog(0).find("on topic terminal/t1/payment/after") != std::string::npos; }, 30s))
      << AgentLog(0);
  EXPECT_EQ(AgentLog(0).find("on topic terminal/t1/payment/before"), std::string::npos) << AgentLog(0);
}

}  // namespace
}  // namespace edgesync::testing

// External plugins through the C ABI: the example plugin as configured, the
// outputs of the ABI applied to JSON and raw events, and every refusal the
// loader makes, with its message. The .so files come from the build:
// EDGESYNC_EXAMPLE_PLUGIN_DIR (plugins/examples) and EDGESYNC_TEST_PLUGIN_DIR
// (tests/plugins/*.c).
#include "plugins/external.h"

#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/env.h"
#include "edgesync/plugin.h"

namespace edgesync {
namespace {

const std::string kExampleDir = EDGESYNC_EXAMPLE_PLUGIN_DIR;
const std::string kTestDir = EDGESYNC_TEST_PLUGIN_DIR;

// Loads the plugin `toml_text` ([plugins.x]'s body) configures from `dir`.
Result<std::shared_ptr<const Plugin>> Load(const std::string& toml_text, const std::string& dir,
                                            const ExternalPluginOptions& options = {}) {
  const toml::table t = toml::parse(std::string_view(toml_text), std::string_view("test.toml"));
  Settings s(t, "plugins.x");
  Result<std::shared_ptr<const Plugin>> r = LoadExternalPlugin(s, dir, options);
  // The result and the noted problems say the same.
  if (r.ok()) {
    EXPECT_TRUE(s.ok()) << s.problems().front();
  } else {
    EXPECT_FALSE(s.ok());
  }
  return r;
}

std::shared_ptr<const Plugin> MustLoad(const std::string& toml_text, const std::string& dir,
                                       const ExternalPluginOptions& options = {}) {
  Result<std::shared_ptr<const Plugin>> r = Load(toml_text, dir, options);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : nullptr;
}

// The loader's message for a configuration it refuses.
std::string Refusal(const std::string& toml_text, const std::string& dir,
                    const ExternalPluginOptions& options = {}) {
  Result<std::shared_ptr<const Plugin>> r = Load(toml_text, dir, options);
  EXPECT_FALSE(r.ok());
  if (r.ok()) return "";
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  return r.status().message();
}

// An event on a JSON stream, with its own payload document and properties.
struct JsonEvent {
  explicit JsonEvent(std::string_view topic, std::string_view payload = R"({"amount": 10.50})") {
    EXPECT_TRUE(json.Parse(payload).ok());
    e.topic = topic;
    e.received_at_us = 1700000000123456;
    e.properties = &properties;
    e.json = &json;
    e.route = {"payments", "edge.payments", Priority::kNormal, ""};
  }
  std::string Text() const {
    std::string s;
    json.Serialize(&s);
    return s;
  }
  Json json;
  std::vector<std::pair<std::string, std::string>> properties{{"trace", "abc"}, {"site", "north"}};
  Event e;
};

struct RawEvent {
  explicit RawEvent(std::string_view topic, std::string payload) : raw(std::move(payload)) {
    e.topic = topic;
    e.received_at_us = 42;
    e.raw = &raw;
    e.route = {"logs", "edge.logs", Priority::kLow, "k"};
  }
  std::string raw;
  Event e;
};

std::string Config(const std::string& file, const std::string& settings = "") {
  return "type = \"external\"\nfile = \"" + file + "\"\n" +
         (settings.empty() ? "" : "settings = { " + settings + " }\n");
}

const std::string kTopicKey = "edgesync-topic-key.so";
const std::string kScripted = "edgesync-test-scripted.so";
const std::string kNegotiating = "edgesync-test-negotiating.so";

// The loader as an agent from before ABI 2 would load: describe only.
ExternalPluginOptions OldAgent() {
  ExternalPluginOptions o;
  o.max_abi = 1;
  return o;
}

// The lines the agent's logger writes while it lives, as "LEVEL message".
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000)) {
    sink_->set_pattern("%l %v");
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::vector<std::string> Lines() const {
    std::vector<std::string> lines = sink_->last_formatted();
    for (std::string& l : lines) {
      while (!l.empty() && (l.back() == '\n' || l.back() == '\r')) l.pop_back();
    }
    return lines;
  }
  size_t Count(const std::string& line) const {
    const std::vector<std::string> lines = Lines();
    return static_cast<size_t>(std::count(lines.begin(), lines.end(), line));
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_;
};

using Counters = std::vector<std::pair<std::string, uint64_t>>;

// --- the example plugin ---

TEST(TopicKeyExample, KeysByTheSecondTopicLevelByDefault) {
  auto p = MustLoad(Config(kTopicKey), kExampleDir);
  ASSERT_TRUE(p);
  JsonEvent ev("terminal/t17/payment/capture");
  EXPECT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_EQ(ev.e.route.key, "t17");
  EXPECT_FALSE(ev.json.dirty());  // the payload is untouched
  EXPECT_EQ(ev.e.route.stream, "payments");
}

TEST(TopicKeyExample, KeysByTheConfiguredLevelAndKeepsTheKeyOfShortTopics) {
  auto p = MustLoad(Config(kTopicKey, "level = 2"), kExampleDir);
  ASSERT_TRUE(p);
  JsonEvent ev("terminal/t17/payment/capture");
  EXPECT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_EQ(ev.e.route.key, "payment");

  JsonEvent last("terminal/t17/status");  // the last level, no '/' after it
  EXPECT_EQ(p->Process(last.e), Action::kKeep);
  EXPECT_EQ(last.e.route.key, "status");

  JsonEvent shallow("terminal/t17");
  shallow.e.route.key = "before";
  EXPECT_EQ(p->Process(shallow.e), Action::kKeep);
  EXPECT_EQ(shallow.e.route.key, "before");

  auto first = MustLoad(Config(kTopicKey, "level = 0"), kExampleDir);
  ASSERT_TRUE(first);
  JsonEvent ev0("terminal/t17");
  EXPECT_EQ(first->Process(ev0.e), Action::kKeep);
  EXPECT_EQ(ev0.e.route.key, "terminal");
}

TEST(TopicKeyExample, DropsTheConfiguredPrefixAndWorksOnRawStreams) {
  auto p = MustLoad(Config(kTopicKey, R"(drop_prefix = "test/")"), kExampleDir);
  ASSERT_TRUE(p);
  JsonEvent test("test/t1/payment");
  EXPECT_EQ(p->Process(test.e), Action::kDrop);
  JsonEvent almost("tests/t1/payment");  // a prefix, not a level
  EXPECT_EQ(p->Process(almost.e), Action::kKeep);
  EXPECT_EQ(almost.e.route.key, "t1");

  RawEvent raw("charger/cs9/log", "plain text\n");
  EXPECT_EQ(p->Process(raw.e), Action::kKeep);
  EXPECT_EQ(raw.e.route.key, "cs9");
  EXPECT_EQ(raw.raw, "plain text\n");
  RawEvent dropped("test/cs9/log", "x");
  EXPECT_EQ(p->Process(dropped.e), Action::kDrop);
}

TEST(TopicKeyExample, NegotiatesAbi2LogsItsSetupAndCounts) {
  LogCapture log;
  auto p = MustLoad(Config(kTopicKey, R"(drop_prefix = "test/")"), kExampleDir);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->LoadInfo(), "external " + kTopicKey + ", plugin ABI 2 (plugin lists 1, 2; agent speaks 1, 2)");
  EXPECT_EQ(log.Count("info plugin topic-key: keying events by topic level 1, dropping topics starting with "
                      "\"test/\""),
            1u);
  EXPECT_EQ(p->Counters(), (Counters{{"keyed", 0}, {"dropped", 0}}));
  JsonEvent a("terminal/t1/payment"), b("terminal/t2/payment"), c("test/t3/payment"), d("terminal");
  EXPECT_EQ(p->Process(a.e), Action::kKeep);
  EXPECT_EQ(p->Process(b.e), Action::kKeep);
  EXPECT_EQ(p->Process(c.e), Action::kDrop);
  EXPECT_EQ(p->Process(d.e), Action::kKeep);  // too few levels: not keyed
  EXPECT_EQ(b.e.route.key, "t2");
  EXPECT_EQ(d.e.route.key, "");
  EXPECT_EQ(p->Counters(), (Counters{{"keyed", 2}, {"dropped", 1}}));
}

TEST(TopicKeyExample, StillWorksInAnAgentFromBeforeAbi2) {
  LogCapture log;
  auto p = MustLoad(Config(kTopicKey, R"(level = 2, drop_prefix = "test/")"), kExampleDir, OldAgent());
  ASSERT_TRUE(p);
  EXPECT_EQ(p->LoadInfo(), "external " + kTopicKey + ", plugin ABI 1 (no version list; agent speaks 1)");
  JsonEvent ev("terminal/t17/payment/capture"), test("test/t1/x");
  EXPECT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_EQ(ev.e.route.key, "payment");
  EXPECT_EQ(p->Process(test.e), Action::kDrop);
  EXPECT_TRUE(p->Counters().empty());
  EXPECT_TRUE(log.Lines().empty());  // no host, no log
}

TEST(TopicKeyExample, RefusesBadSettingsWithItsReason) {
  EXPECT_EQ(Refusal(Config(kTopicKey, "level = -1"), kExampleDir),
            "test.toml:2:8: plugins.x.file: plugin topic-key refused its settings: "
            "level must be a topic level number from 0, not \"-1\"");
  EXPECT_NE(Refusal(Config(kTopicKey, "levle = 1"), kExampleDir)
                .find("unknown setting \"levle\" (this plugin's settings: level, drop_prefix)"),
            std::string::npos);
}

// --- what the plugin sees, and what it changes ---

TEST(ExternalPlugin, SeesTheEventAndItsRewrittenPayloadReachesTheJson) {
  auto p = MustLoad(Config(kScripted, "echo = true"), kTestDir);  // a boolean, as "true"
  ASSERT_TRUE(p);
  JsonEvent ev("terminal/t1/payment", R"({"amount": 10.50, "pan": "4111"})");
  // An earlier plugin's edit: the plugin sees the edited text, not the original.
  ev.json.Remove(ev.json.Find(ev.json.root(), "pan"));
  ev.e.route.key = "k1";
  ASSERT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_TRUE(ev.json.dirty());
  std::string scratch;
  EXPECT_EQ(ev.json.str(ev.json.FindPath("topic"), &scratch), "terminal/t1/payment");
  EXPECT_EQ(ev.json.str(ev.json.FindPath("payload"), &scratch), R"({"amount":10.50})");
  EXPECT_EQ(ev.json.raw(ev.json.FindPath("payload_is_json")), "1");
  EXPECT_EQ(ev.json.raw(ev.json.FindPath("received_at_us")), "1700000000123456");
  EXPECT_EQ(ev.json.str(ev.json.FindPath("stream"), &scratch), "payments");
  EXPECT_EQ(ev.json.str(ev.json.FindPath("kafka_topic"), &scratch), "edge.payments");
  EXPECT_EQ(ev.json.str(ev.json.FindPath("priority"), &scratch), "normal");
  EXPECT_EQ(ev.json.str(ev.json.FindPath("key"), &scratch), "k1");
  EXPECT_EQ(ev.json.str(ev.json.FindPath("properties.1.0"), &scratch), "site");
  EXPECT_EQ(ev.json.str(ev.json.FindPath("properties.1.1"), &scratch), "north");

  // An untouched document is handed over as its original text.
  JsonEvent fresh("a/b", R"( { "amount" : 1.0 } )");
  ASSERT_EQ(p->Process(fresh.e), Action::kKeep);
  EXPECT_EQ(fresh.json.str(fresh.json.FindPath("payload"), &scratch), R"( { "amount" : 1.0 } )");
}

TEST(ExternalPlugin, ReplacesThePayloadOfJsonAndRawEvents) {
  auto p = MustLoad(Config(kScripted, R"(payload = '{"masked": "****", "n": 10.50}')"), kTestDir);
  ASSERT_TRUE(p);
  JsonEvent ev("a/b");
  ASSERT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_TRUE(ev.json.dirty());  // so the agent writes it back
  EXPECT_EQ(ev.Text(), R"({"masked": "****", "n": 10.50})");  // as the plugin wrote it

  RawEvent raw("a/b", "card 4111 1111 1111 1111");
  ASSERT_EQ(p->Process(raw.e), Action::kKeep);
  EXPECT_EQ(raw.raw, R"({"masked": "****", "n": 10.50})");

  auto echo = MustLoad(Config(kScripted, "echo = true"), kTestDir);
  ASSERT_TRUE(echo);
  RawEvent seen("x/y", "raw \"bytes\"");
  ASSERT_EQ(echo->Process(seen.e), Action::kKeep);
  Json j;
  ASSERT_TRUE(j.Parse(seen.raw).ok()) << seen.raw;
  std::string scratch;
  EXPECT_EQ(j.str(j.FindPath("payload"), &scratch), "raw \"bytes\"");
  EXPECT_EQ(j.raw(j.FindPath("payload_is_json")), "0");
  EXPECT_EQ(j.str(j.FindPath("priority"), &scratch), "low");
  EXPECT_EQ(j.size(j.FindPath("properties")), 0u);  // a raw event without properties
}

TEST(ExternalPlugin, ChangesTheRoute) {
  auto p = MustLoad(
      Config(kScripted, R"(stream = "alerts", kafka_topic = "edge.alerts", priority = "high", key = "t9")"),
      kTestDir);
  ASSERT_TRUE(p);
  JsonEvent ev("a/b");
  ASSERT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_EQ(ev.e.route.stream, "alerts");
  EXPECT_EQ(ev.e.route.kafka_topic, "edge.alerts");
  EXPECT_EQ(ev.e.route.priority, Priority::kHigh);
  EXPECT_EQ(ev.e.route.key, "t9");
  EXPECT_FALSE(ev.json.dirty());
}

TEST(ExternalPlugin, InvalidJsonFromThePluginDeadLettersTheEventUnchanged) {
  auto p = MustLoad(Config(kScripted, R"(payload = '{"broken": ', stream = "alerts")"), kTestDir);
  ASSERT_TRUE(p);
  JsonEvent ev("a/b", R"({"amount": 10.50, "pan": "4111"})");
  ASSERT_EQ(p->Process(ev.e), Action::kDeadLetter);
  EXPECT_EQ(ev.e.error.rfind("scripted: the new payload is not JSON (invalid JSON at byte", 0), 0u) << ev.e.error;
  EXPECT_EQ(ev.Text(), R"({"amount": 10.50, "pan": "4111"})");
  EXPECT_FALSE(ev.json.dirty());
  EXPECT_EQ(ev.e.route.stream, "payments");  // the route change is not applied either

  // An earlier plugin's edit survives, still marked as a change.
  JsonEvent edited("a/b", R"({"amount": 10.50, "pan": "4111"})");
  edited.json.Remove(edited.json.Find(edited.json.root(), "pan"));
  ASSERT_EQ(p->Process(edited.e), Action::kDeadLetter);
  EXPECT_TRUE(edited.json.dirty());
  EXPECT_EQ(edited.Text(), R"({"amount":10.50})");
}

TEST(ExternalPlugin, UnknownActionsAndRouteChangesDeadLetterTheEvent) {
  auto seven = MustLoad(Config(kScripted, R"(action = "7", key = "k")"), kTestDir);
  ASSERT_TRUE(seven);
  JsonEvent ev("a/b");
  ASSERT_EQ(seven->Process(ev.e), Action::kDeadLetter);
  EXPECT_EQ(ev.e.error,
            "scripted: process returned 7, which is not EDGESYNC_KEEP (0), EDGESYNC_DROP (1) or "
            "EDGESYNC_DEAD_LETTER (2): fix the plugin");
  EXPECT_EQ(ev.e.route.key, "");

  auto urgent = MustLoad(Config(kScripted, R"(priority = "urgent", stream = "alerts")"), kTestDir);
  ASSERT_TRUE(urgent);
  JsonEvent u("a/b");
  ASSERT_EQ(urgent->Process(u.e), Action::kDeadLetter);
  EXPECT_EQ(u.e.error, "scripted: priority \"urgent\" is not high, normal or low");
  EXPECT_EQ(u.e.route.stream, "payments");
  EXPECT_EQ(u.e.route.priority, Priority::kNormal);

  auto field = MustLoad(Config(kScripted, "route_field = 9"), kTestDir);
  ASSERT_TRUE(field);
  RawEvent f("a/b", "x");
  ASSERT_EQ(field->Process(f.e), Action::kDeadLetter);
  EXPECT_EQ(f.e.error, "scripted: set_route with unknown field 9 (the plugin ABI knows 1 to 4)");
}

TEST(ExternalPlugin, DropsAndDeadLettersWithItsReason) {
  auto drop = MustLoad(Config(kScripted, R"(action = "drop")"), kTestDir);
  ASSERT_TRUE(drop);
  JsonEvent d("a/b");
  EXPECT_EQ(drop->Process(d.e), Action::kDrop);

  auto dead = MustLoad(Config(kScripted, R"(action = "dead_letter", error = "no amount", key = "k")"), kTestDir);
  ASSERT_TRUE(dead);
  JsonEvent e("a/b");
  ASSERT_EQ(dead->Process(e.e), Action::kDeadLetter);
  EXPECT_EQ(e.e.error, "scripted: no amount");
  EXPECT_EQ(e.e.route.key, "");

  auto silent = MustLoad(Config(kScripted, R"(action = "dead_letter")"), kTestDir);
  ASSERT_TRUE(silent);
  JsonEvent s("a/b");
  ASSERT_EQ(silent->Process(s.e), Action::kDeadLetter);
  EXPECT_EQ(s.e.error, "scripted: dead-lettered the event and gave no reason");
}

TEST(ExternalPlugin, CleanupRunsOnceWhenTheLastReferenceGoes) {
  int cleanups = 0;
  const std::string address = std::to_string(reinterpret_cast<uintptr_t>(&cleanups));
  auto p = MustLoad(Config(kScripted, "cleanup_counter = \"" + address + "\""), kTestDir);
  ASSERT_TRUE(p);
  std::shared_ptr<const edgesync::Plugin> copy = p;
  p.reset();
  EXPECT_EQ(cleanups, 0);
  copy.reset();
  EXPECT_EQ(cleanups, 1);
}

// --- ABI versions: negotiation, host services, size fields ---

TEST(PluginAbi, AnOldAbi1PluginLoadsAsAbi1WithoutHostServices) {
  // scripted.c is built against the frozen ABI 1 header (tests/plugins/abi1).
  auto p = MustLoad(Config(kScripted, R"(key = "k7")"), kTestDir);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->LoadInfo(), "external " + kScripted + ", plugin ABI 1 (no version list; agent speaks 1, 2)");
  JsonEvent ev("a/b");
  ASSERT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_EQ(ev.e.route.key, "k7");
  EXPECT_TRUE(p->Counters().empty());
}

TEST(PluginAbi, ANewPluginGetsTheNewestCommonVersion) {
  auto p = MustLoad(Config(kNegotiating), kTestDir);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->LoadInfo(), "external " + kNegotiating + ", plugin ABI 2 (plugin lists 1, 2; agent speaks 1, 2)");
  JsonEvent ev("a/b");
  ASSERT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_EQ(ev.e.route.key, "abi2");  // its ABI 2 process ran
}

TEST(PluginAbi, ANewPluginStillWorksThroughAbi1InAnOldAgent) {
  auto p = MustLoad(Config(kNegotiating, R"(counter = "seen", init_log = "hello")"), kTestDir, OldAgent());
  ASSERT_TRUE(p);
  EXPECT_EQ(p->LoadInfo(), "external " + kNegotiating + ", plugin ABI 1 (no version list; agent speaks 1)");
  JsonEvent ev("a/b");
  ASSERT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_EQ(ev.e.route.key, "abi1");  // its ABI 1 descriptor, the only one an old agent asks for
  EXPECT_TRUE(p->Counters().empty());

  // An old agent finds nothing in a plugin that speaks only versions after 1.
  EXPECT_EQ(Refusal(Config("edgesync-test-short-descriptor.so"), kTestDir, OldAgent()),
            "test.toml:2:8: plugins.x.file: edgesync-test-short-descriptor.so is not an edgesync plugin: it "
            "exports no edgesync_plugin_describe (see plugins/include/edgesync/plugin.h)");
}

TEST(PluginAbi, RefusesAPluginThatSpeaksOnlyVersionsTheAgentDoesNot) {
  EXPECT_EQ(Refusal(Config("edgesync-test-future-only.so"), kTestDir),
            "test.toml:2:8: plugins.x.file: edgesync-test-future-only.so speaks edgesync plugin ABI 99, 3; "
            "this agent speaks 1, 2: use a build of the plugin that also lists one of this agent's versions "
            "(plugins/include/edgesync/plugin.h), or an agent that speaks the plugin's");
}

TEST(PluginAbi, RefusesADescriptorShorterThanItsVersionNeeds) {
  EXPECT_EQ(Refusal(Config("edgesync-test-short-descriptor.so"), kTestDir),
            "test.toml:2:8: plugins.x.file: edgesync-test-short-descriptor.so: its ABI 2 descriptor is " +
                std::to_string(offsetof(edgesync_plugin_v2, process)) +
                " bytes (struct_size), shorter than the " + std::to_string(sizeof(edgesync_plugin_v2)) +
                " every ABI 2 descriptor has: set struct_size = sizeof(struct edgesync_plugin_v2)");
}

TEST(PluginAbi, HostLogGoesToTheAgentsLogWithThePluginsNameBounded) {
  LogCapture log;
  const std::string long_line(EDGESYNC_LOG_MAX_BYTES + 100, 'x');
  auto p = MustLoad(Config(kNegotiating, R"(init_log = "starting\nforged line")"), kTestDir);
  ASSERT_TRUE(p);
  EXPECT_EQ(log.Count("info plugin negotiating: starting\\nforged line"), 1u);  // escaped, one line

  auto loud = MustLoad(Config(kNegotiating, "log = \"" + long_line + "\""), kTestDir);
  ASSERT_TRUE(loud);
  JsonEvent ev("a/b");
  ASSERT_EQ(loud->Process(ev.e), Action::kKeep);
  EXPECT_EQ(log.Count("warning plugin negotiating: " + std::string(EDGESYNC_LOG_MAX_BYTES, 'x') +
                      "... (cut at " + std::to_string(EDGESYNC_LOG_MAX_BYTES) + " bytes)"),
            1u);
}

TEST(PluginAbi, HostLogWritesAtMostItsLimitAMinute) {
  LogCapture log;
  auto p = MustLoad(Config(kNegotiating, R"(log = "again", log_repeat = 25)"), kTestDir);
  ASSERT_TRUE(p);
  JsonEvent ev("a/b");
  ASSERT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_EQ(log.Count("warning plugin negotiating: again"), static_cast<size_t>(EDGESYNC_LOG_MAX_PER_MINUTE));
  JsonEvent more("a/b");
  ASSERT_EQ(p->Process(more.e), Action::kKeep);
  EXPECT_EQ(log.Count("warning plugin negotiating: again"), static_cast<size_t>(EDGESYNC_LOG_MAX_PER_MINUTE));
  // The limit is per plugin instance: another one logs.
  auto other = MustLoad(Config(kNegotiating, R"(log = "again")"), kTestDir);
  ASSERT_TRUE(other);
  JsonEvent ev2("a/b");
  ASSERT_EQ(other->Process(ev2.e), Action::kKeep);
  EXPECT_EQ(log.Count("warning plugin negotiating: again"), static_cast<size_t>(EDGESYNC_LOG_MAX_PER_MINUTE) + 1);
}

TEST(PluginAbi, HostCountersAreReadThroughThePlugin) {
  auto p = MustLoad(Config(kNegotiating, R"(counter = "events_seen", delta = 3)"), kTestDir);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->Counters(), (Counters{{"events_seen", 0}}));  // registered in init
  JsonEvent a("a/b"), b("a/c");
  ASSERT_EQ(p->Process(a.e), Action::kKeep);
  ASSERT_EQ(p->Process(b.e), Action::kKeep);
  EXPECT_EQ(p->Counters(), (Counters{{"events_seen", 6}}));

  // A name the host refuses registers nothing (the plugin gets -1 and adds nothing).
  for (const std::string& bad : {std::string("has space"), std::string(""), std::string(65, 'c')}) {
    auto q = MustLoad(Config(kNegotiating, "counter = \"" + bad + "\""), kTestDir);
    ASSERT_TRUE(q);
    JsonEvent ev("a/b");
    ASSERT_EQ(q->Process(ev.e), Action::kKeep);
    EXPECT_TRUE(q->Counters().empty()) << bad;
  }
  auto longest = MustLoad(Config(kNegotiating, "counter = \"" + std::string(64, 'c') + "\""), kTestDir);
  ASSERT_TRUE(longest);
  EXPECT_EQ(longest->Counters(), (Counters{{std::string(64, 'c'), 0}}));
}

TEST(PluginAbi, TheStructsCarryTheAgentsSizes) {
  auto p = MustLoad(Config(kNegotiating, "echo_sizes = true"), kTestDir);
  ASSERT_TRUE(p);
  RawEvent ev("a/b", "x");
  ASSERT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_EQ(ev.raw, "{\"event_size\":" + std::to_string(sizeof(edgesync_event_v2)) +
                        ",\"output_size\":" + std::to_string(sizeof(edgesync_output_v2)) +
                        ",\"host_size\":" + std::to_string(sizeof(edgesync_host)) +
                        // a member a later header appends is absent from this agent's event
                        ",\"site\":\"absent\",\"host_has_counters\":1}");
}

TEST(PluginAbi, APluginReadsNothingPastAShorterHostTable) {
  LogCapture log;
  ExternalPluginOptions older;  // an agent whose table ends before the counters
  older.host_struct_size = offsetof(edgesync_host, counter);
  auto p = MustLoad(Config(kNegotiating, R"(counter = "seen", echo_sizes = true)"), kTestDir, older);
  ASSERT_TRUE(p);
  EXPECT_EQ(log.Count("warning plugin negotiating: the agent's host table has no counters: counting nothing"), 1u);
  RawEvent ev("a/b", "x");
  ASSERT_EQ(p->Process(ev.e), Action::kKeep);
  EXPECT_NE(ev.raw.find("\"host_size\":" + std::to_string(offsetof(edgesync_host, counter)) + ","),
            std::string::npos)
      << ev.raw;
  EXPECT_NE(ev.raw.find("\"host_has_counters\":0"), std::string::npos) << ev.raw;
  EXPECT_TRUE(p->Counters().empty());
}

// --- refusals ---

TEST(LoadExternalPlugin, RefusesAPluginBuiltForAnotherAbi) {
  EXPECT_EQ(Refusal(Config("edgesync-test-abi99.so"), kTestDir),
            "test.toml:2:8: plugins.x.file: edgesync-test-abi99.so was built for edgesync plugin ABI 99 and "
            "lists no versions (edgesync_plugin_abi_versions); this agent speaks 1, 2: rebuild it against "
            "plugins/include/edgesync/plugin.h");
}

TEST(LoadExternalPlugin, RefusesASharedObjectWithoutTheDescribeSymbol) {
  EXPECT_EQ(Refusal(Config("edgesync-test-no-describe.so"), kTestDir),
            "test.toml:2:8: plugins.x.file: edgesync-test-no-describe.so is not an edgesync plugin: it "
            "exports no edgesync_plugin_describe and no edgesync_plugin_abi_versions (see "
            "plugins/include/edgesync/plugin.h)");
}

TEST(LoadExternalPlugin, PassesOnTheReasonInitRefusedWith) {
  EXPECT_EQ(Refusal(Config("edgesync-test-init-refuses.so", R"(a = "1", b = 2)"), kTestDir),
            "test.toml:2:8: plugins.x.file: plugin init-refuses refused its settings: "
            "needs a licence key (2 settings given): set settings.licence");
}

TEST(LoadExternalPlugin, LoadsOnlyPlainFileNamesFromTheConfiguredDirectory) {
  EXPECT_NE(Refusal(Config(kTopicKey), "").find("plugins.x.file: no plugins directory to load "
                                                "\"edgesync-topic-key.so\" from: set plugins.dir"),
            std::string::npos);
  for (const std::string& file :
       std::vector<std::string>{"../lib/" + kTopicKey, "/usr/lib/x.so", "sub/x.so", "..", "x..so", ""}) {
    const std::string why = Refusal(Config(file), kExampleDir);
    EXPECT_NE(why.find("must be a plain file name (no '/', no \"..\"): plugins load only from plugins.dir"),
              std::string::npos)
        << file << ": " << why;
  }
  EXPECT_EQ(Refusal(Config("missing.so"), kTestDir),
            "test.toml:2:8: plugins.x.file: no such file: " + kTestDir +
                "/missing.so (put the plugin in plugins.dir)");
  EXPECT_EQ(Refusal("type = \"external\"\n", kTestDir),
            "test.toml:1:1: plugins.x.file: required: the plugin's .so file name inside plugins.dir");
}

TEST(LoadExternalPlugin, PassesOnTheDlopenError) {
  const std::string dir = ::testing::TempDir() + "edgesync-external-test";
  ASSERT_TRUE(Env::Default()->CreateDirs(dir).ok());
  const std::string path = dir + "/not-elf.so";
  (void)Env::Default()->RemoveFile(path);
  auto f = Env::Default()->OpenAppend(path);
  ASSERT_TRUE(f.ok());
  ASSERT_TRUE((*f)->Append("not a shared object\n").ok());
  ASSERT_TRUE((*f)->Close().ok());
  const std::string why = Refusal(Config("not-elf.so"), dir);
  EXPECT_NE(why.find("plugins.x.file: cannot load " + path + ": "), std::string::npos) << why;
  EXPECT_NE(why.find("not-elf.so"), why.rfind("not-elf.so")) << "dlerror's text follows: " << why;
}

TEST(LoadExternalPlugin, RefusesUnknownKeysAndSettingsOfOtherTypes) {
  EXPECT_EQ(Refusal(Config(kTopicKey) + "levle = 2\n", kExampleDir),
            "test.toml:3:9: plugins.x.levle: unknown key (this plugin's keys: file, settings)");
  EXPECT_EQ(Refusal(Config(kTopicKey, "level = 1.5"), kExampleDir),
            "test.toml:3:22: plugins.x.settings.level: must be a string, an integer or a boolean");
  EXPECT_EQ(Refusal(Config(kTopicKey) + "settings = 3\n", kExampleDir),
            "test.toml:3:12: plugins.x.settings: must be a table");
  EXPECT_EQ(Refusal("type = \"external\"\nfile = 7\n", kExampleDir),
            "test.toml:2:8: plugins.x.file: must be a string");
}

}  // namespace
}  // namespace edgesync

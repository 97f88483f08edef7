#include "agent/config.h"

#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "sync/uploader.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

// The example from docs/operating.md: an operator can start from it.
constexpr const char* kMinimal = R"(
[agent]
device_id = "term-0042"
state_dir = "/var/lib/edgesync"
[mqtt]
host = "127.0.0.1"
port = 1883
client_id = "edgesync"
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
kafka_topic = "edge.payments"
[kafka]
brokers = "127.0.0.1:9092"
)";

TEST(Config, MinimalExampleParsesWithDefaults) {
  Result<Config> c = ParseConfig(kMinimal, "edgesync.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->device_id, "term-0042");
  EXPECT_EQ(c->mqtt.port, 1883);
  EXPECT_EQ(c->kafka_brokers, "127.0.0.1:9092");
  ASSERT_EQ(c->streams.size(), 1u);
  EXPECT_EQ(c->streams[0].topics, std::vector<std::string>{"terminal/+/payment/#"});
  EXPECT_EQ(c->streams[0].priority, Priority::kNormal);
  EXPECT_EQ(c->batch.sync_interval_us, 1'000'000);
  EXPECT_EQ(c->batch.max_events, 1000u);
}

TEST(Config, DurationsSizesAndProperties) {
  std::string doc = R"(
[agent]
device_id = "d"
[buffer]
sync_interval = "250ms"
[batch]
max_bytes = "64KiB"
max_age = 5
[kafka]
brokers = "b:1"
[kafka.properties]
"message.timeout.ms" = 60000
"socket.keepalive.enable" = true
[[streams]]
name = "s"
topics = ["#"]
)";
  Result<Config> c = ParseConfig(doc, "x.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->batch.sync_interval_us, 250'000);
  EXPECT_EQ(c->batch.max_bytes, 64u * 1024);
  EXPECT_EQ(c->batch.max_age_us, 5'000'000);
  EXPECT_EQ(c->streams[0].kafka_topic, "edge.s");  // the default
  ASSERT_EQ(c->kafka_properties.size(), 2u);
  EXPECT_EQ(c->kafka_properties[0], (std::pair<std::string, std::string>{"message.timeout.ms", "60000"}));
  EXPECT_EQ(c->kafka_properties[1].second, "true");
}

TEST(Config, ErrorsNameTheKeyAndTheLine) {
  const char* doc = R"([agent]
device_id = "d"
[mqtt]
port = 99999
prot = 1883
[batch]
max_age = "soon"
[kafka]
brokers = "b:1"
[[streams]]
name = "bad name"
topics = ["a/#/b"]
)";
  Result<Config> c = ParseConfig(doc, "bad.toml");
  ASSERT_FALSE(c.ok());
  const std::string& m = c.status().message();
  EXPECT_NE(m.find("bad.toml:4:8: mqtt.port: must be between 1 and 65535"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.toml:5:8: mqtt.prot: unknown key"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.toml:7:11: batch.max_age: not a duration"), std::string::npos) << m;
  EXPECT_NE(m.find("bad.toml:11:8: streams[0].name"), std::string::npos) << m;
  EXPECT_NE(m.find("streams[0].topics: '#' must be the last level"), std::string::npos) << m;
}

TEST(Config, MissingRequiredKeysAndSyntaxErrors) {
  Result<Config> c = ParseConfig("[agent]\n", "empty.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("agent.device_id: is required"), std::string::npos);
  EXPECT_NE(c.status().message().find("kafka.brokers: is required"), std::string::npos);
  EXPECT_NE(c.status().message().find("[[streams]]"), std::string::npos);

  Result<Config> s = ParseConfig("[agent\ndevice_id = 1\n", "syntax.toml");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("syntax.toml:1:"), std::string::npos) << s.status().message();

  Result<Config> dup = ParseConfig(R"(
[agent]
device_id = "d"
[kafka]
brokers = "b"
[[streams]]
name = "s"
topics = ["a"]
[[streams]]
name = "s"
topics = ["b"]
)", "dup.toml");
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.status().message().find("defined twice"), std::string::npos);
}

TEST(Config, KafkaPropertiesAreCheckedByLibrdkafka) {
  Result<Config> c = ParseConfig(R"([agent]
device_id = "d"
[kafka]
brokers = "b:1"
[kafka.properties]
"linger.ms" = "soon"
"no.such.thing" = 1
[[streams]]
name = "s"
topics = ["a"]
)", "k.toml");
  ASSERT_FALSE(c.ok());
  const std::string& m = c.status().message();
  EXPECT_NE(m.find("k.toml:6:15: kafka.properties.linger.ms: Invalid value"), std::string::npos) << m;
  EXPECT_NE(m.find("kafka.properties.no.such.thing: No such configuration property"), std::string::npos) << m;
}

// The broker plugin loads the agent's file without librdkafka: the values
// are kept for the agent to check, but what loads code or changes the
// connection is still refused.
TEST(Config, WithoutTheKafkaCheckPropertiesAreKeptAndTheUnsafeOnesStillRefused) {
  const std::string text = std::string(kMinimal) + "[kafka.properties]\n\"linger.ms\" = \"soon\"\n";
  Result<Config> unchecked = ParseConfig(text, "k.toml", "", Env::Default(), /*check_kafka_property=*/nullptr);
  ASSERT_TRUE(unchecked.ok()) << unchecked.status().ToString();
  ASSERT_EQ(unchecked->kafka_properties.size(), 1u);
  EXPECT_EQ(unchecked->kafka_properties[0], (std::pair<std::string, std::string>{"linger.ms", "soon"}));
  EXPECT_FALSE(ParseConfig(text, "k.toml").ok()) << "the default checks with librdkafka";

  Result<Config> unsafe = ParseConfig(std::string(kMinimal) + "[kafka.properties]\n\"plugin.library.paths\" = \"x.so\"\n",
                                      "k.toml", "", Env::Default(), nullptr);
  ASSERT_FALSE(unsafe.ok());
  EXPECT_NE(unsafe.status().message().find("kafka.allow_unsafe_properties"), std::string::npos)
      << unsafe.status().message();
}

TEST(Config, TypedKafkaSettingsBecomeClientPropertiesAndPropertiesWin) {
  auto dir = testing::NewTempDir();
  std::ofstream(dir / "kafka.pw") << "s3cret\n";
  Result<Config> c = ParseConfig(R"([agent]
device_id = "d"
heartbeat_interval = "30s"
health_topic = "fleet.health"
[kafka]
brokers = "b:1"
security_protocol = "sasl_ssl"
ssl_ca_file = "/etc/ssl/kafka-ca.pem"
sasl_mechanism = "SCRAM-SHA-512"
sasl_username = "term-0042"
sasl_password_file = ")" + std::string(dir / "kafka.pw") + R"("
max_in_flight = 4
max_in_flight_bytes = "1MiB"
max_bytes_per_sec = "64KiB"
blocked_retry_interval = "10m"
[kafka.properties]
"sasl.username" = "override"
[[streams]]
name = "s"
topics = ["a"]
)", "k.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->heartbeat_interval, 30);
  EXPECT_EQ(c->health_topic, "fleet.health");
  EXPECT_EQ(c->upload.max_in_flight, 4u);
  EXPECT_EQ(c->upload.max_in_flight_bytes, 1u << 20);
  EXPECT_EQ(c->upload.max_bytes_per_sec, 64u << 10);
  EXPECT_EQ(c->upload.blocked_retry_us, 600'000'000);
  auto props = KafkaProperties(*c);
  ASSERT_TRUE(props.ok()) << props.status().message();
  using P = std::pair<std::string, std::string>;
  EXPECT_EQ(*props, (std::vector<P>{{"security.protocol", "sasl_ssl"},
                                    {"ssl.ca.location", "/etc/ssl/kafka-ca.pem"},
                                    {"sasl.mechanisms", "SCRAM-SHA-512"},
                                    {"sasl.username", "term-0042"},
                                    {"sasl.password", "s3cret"},
                                    {"sasl.username", "override"}}))
      << "typed first, then kafka.properties, which librdkafka applies last (so they win)";
  for (const auto& [k, v] : *props) EXPECT_TRUE(CheckProducerProperty(k, v).ok()) << k;
}

TEST(Config, KafkaSecuritySettingsMustGoTogether) {
  const std::pair<const char*, const char*> cases[] = {
      {"security_protocol = \"sasl_plaintext\"\n",
       "needs kafka.sasl_mechanism, kafka.sasl_username and kafka.sasl_password_file"},
      {"sasl_username = \"u\"\n", "SASL settings need kafka.security_protocol"},
      {"ssl_ca_file = \"ca.pem\"\n", "TLS files need kafka.security_protocol"},
      {"security_protocol = \"ssl\"\nssl_cert_file = \"c.pem\"\n", "ssl_cert_file and ssl_key_file go together"},
      {"security_protocol = \"kerberos\"\n",
       "kafka.security_protocol: must be one of plaintext, ssl, sasl_plaintext, sasl_ssl"},
      {"blocked_retry_interval = \"10ms\"\n", "kafka.blocked_retry_interval: must be at least 1s"},
  };
  for (const auto& [kafka, says] : cases) {
    auto c = ParseConfig(std::string("[agent]\ndevice_id = \"d\"\n[kafka]\nbrokers = \"b:1\"\n") + kafka +
                             "[[streams]]\nname = \"s\"\ntopics = [\"a\"]\n",
                         "k.toml");
    ASSERT_FALSE(c.ok()) << kafka;
    EXPECT_NE(c.status().message().find(says), std::string::npos) << c.status().message();
  }
}

TEST(Config, BuiltInStreamNamesAreReserved) {
  for (const char* name : {"dead-letter", "_agent"}) {
    auto c = ParseConfig(std::string("[agent]\ndevice_id = \"d\"\n[kafka]\nbrokers = \"b:1\"\n"
                                     "[[streams]]\nname = \"") + name + "\"\ntopics = [\"a\"]\n",
                         "k.toml");
    ASSERT_FALSE(c.ok()) << name;
    EXPECT_NE(c.status().message().find("is a built-in stream"), std::string::npos) << c.status().message();
  }
}

TEST(Config, ReferenceListsEveryOption) {
  std::string ref = ConfigReference();
  for (const char* key : {"agent.device_id", "agent.state_dir", "mqtt.port", "buffer.sync_interval",
                          "batch.max_events", "kafka.brokers", "kafka.properties"}) {
    EXPECT_NE(ref.find(key), std::string::npos) << key;
  }
}

}  // namespace
}  // namespace edgesync

namespace edgesync {
namespace {

// kMinimal with the stream last, so that lines added after it are its keys.
constexpr const char* kStreamLast = R"(
[agent]
device_id = "term-0042"
[kafka]
brokers = "127.0.0.1:9092"
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
)";

TEST(ConfigPlugins, ChainsEveryStreamPluginsAndOptOuts) {
  Result<Config> c = ParseConfig(std::string(kStreamLast) + R"(
format = "json"
plugins = ["shape"]
[[streams]]
name = "lab"
topics = ["lab/#"]
skip_plugins = ["cards"]
[[streams]]
name = "other"
topics = ["other/#"]
[plugins.cards]
type = "pci"
every_stream = true
[plugins.shape]
type = "rules"
[[plugins.shape.rules]]
drop = true
)", "c.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  const PluginConfig* cards = c->FindPlugin("cards");
  const PluginConfig* shape = c->FindPlugin("shape");
  ASSERT_TRUE(cards && shape);
  using Chain = std::vector<std::shared_ptr<const Plugin>>;
  EXPECT_EQ(c->Chain(0), (Chain{shape->plugin, cards->plugin}));  // its own, then every_stream
  EXPECT_EQ(c->Chain(1), Chain{});                                // opted out
  EXPECT_EQ(c->Chain(2), Chain{cards->plugin});                   // names none: pci still runs
  EXPECT_EQ(c->Chain(3), Chain{cards->plugin});                   // the dead-letter stream

  // Every_stream plugins run in name order, those of type pci last: no
  // plugin after pci can put card data back.
  Result<Config> ordered = ParseConfig(std::string(kStreamLast) + R"(
[plugins.a-cards]
type = "pci"
every_stream = true
[plugins.z-shape]
type = "rules"
every_stream = true
[[plugins.z-shape.rules]]
set = { x = 1 }
)", "c.toml");
  ASSERT_TRUE(ordered.ok()) << ordered.status().ToString();
  EXPECT_EQ(ordered->Chain(0), (Chain{ordered->FindPlugin("z-shape")->plugin, ordered->FindPlugin("a-cards")->plugin}));
}

TEST(ConfigPlugins, MistakesNameTheKeyAndWhere) {
  struct Case {
    const char* extra;
    const char* says;
  } cases[] = {
      {"plugins = [\"nope\"]\n", "streams[0].plugins: no plugin \"nope\""},
      {"skip_plugins = [\"x\"]\n[plugins.x]\ntype = \"pci\"\n", "\"x\" is not an every_stream plugin"},
      {"[plugins.x]\ntype = \"magic\"\n", "unknown plugin type \"magic\""},
      {"[plugins.x]\nmode = \"mask\"\n", "plugins.x.type: is required"},
      {"[plugins.x]\ntype = \"pci\"\nmode = \"hide\"\n", "c.toml:11:8: plugins.x.mode: must be \"mask\""},
      {"[plugins.x]\ntype = \"rules\"\n[[plugins.x.rules]]\nwhen = 'a >'\ndrop = true\n",
       "plugins.x.rules[0].when: column 4: expected a value"},
  };
  for (const Case& k : cases) {
    Result<Config> c = ParseConfig(std::string(kStreamLast) + k.extra, "c.toml");
    ASSERT_FALSE(c.ok()) << k.extra;
    EXPECT_NE(c.status().message().find(k.says), std::string::npos) << k.extra << "\n" << c.status().message();
  }
}

TEST(ConfigPlugins, AProfileLiesUnderTheDeviceFile) {
  auto dir = testing::NewTempDir();
  std::ofstream(dir / "fleet.toml") << R"([agent]
stats_interval = "7s"
heartbeat_interval = "9s"
[[streams]]
name = "payments"
topics = ["profile/#"]
[[streams]]
name = "status"
topics = ["status/#"]
[plugins.cards]
type = "pci"
every_stream = true
mode = "mask"
)";
  std::ofstream(dir / "device.toml") << R"([agent]
device_id = "d1"
profile = "fleet.toml"
stats_interval = "3s"
[kafka]
brokers = "b:9092"
[[streams]]
name = "payments"
topics = ["terminal/#"]
[[streams]]
name = "extra"
topics = ["extra/#"]
[plugins.cards]
sensitive_fields = ["secret"]
)";
  Result<Config> c = LoadConfig(dir / "device.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->profile, "fleet.toml");
  EXPECT_EQ(c->stats_interval, 3);      // the device file wins
  EXPECT_EQ(c->heartbeat_interval, 9);  // the profile fills in
  ASSERT_EQ(c->streams.size(), 3u);
  EXPECT_EQ(c->streams[0].name, "payments");
  EXPECT_EQ(c->streams[0].topics, std::vector<std::string>{"terminal/#"});  // replaced by name
  EXPECT_EQ(c->streams[1].name, "status");
  EXPECT_EQ(c->streams[2].name, "extra");
  ASSERT_NE(c->FindPlugin("cards"), nullptr);
  EXPECT_TRUE(c->FindPlugin("cards")->every_stream);  // tables merge key by key
  // A problem inside the profile names the profile's file and line.
  std::ofstream(dir / "fleet.toml", std::ios::app) << "[plugins.bad]\ntype = \"ocpp\"\ncharger_id_level = -1\n";
  c = LoadConfig(dir / "device.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("fleet.toml:16:20: plugins.bad.charger_id_level"), std::string::npos)
      << c.status().message();
  std::ofstream(dir / "nested.toml") << "[agent]\ndevice_id = \"d\"\nprofile = \"device.toml\"\n";
  c = LoadConfig(dir / "nested.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("a profile cannot name another profile"), std::string::npos);
  c = ParseConfig("[agent]\ndevice_id = \"d\"\nprofile = \"missing.toml\"\n", dir / "x.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("cannot read"), std::string::npos);
}

TEST(ConfigPlugins, TheShippedProfilesAndExamplesAreValid) {
  for (const char* f : {"examples/demo.toml", "examples/charger-demo.toml"}) {
    Result<Config> c = LoadConfig(std::string(EDGESYNC_SOURCE_DIR) + "/" + f);
    EXPECT_TRUE(c.ok()) << f << ": " << c.status().ToString();
    if (c.ok()) {
      EXPECT_FALSE(c->plugins.empty()) << f;
    }
  }
}

TEST(ConfigPlugins, OnlyPluginsAndChainsCanChangeLive) {
  Result<Config> a = ParseConfig(kStreamLast, "c.toml");
  Result<Config> b = ParseConfig(std::string(kStreamLast) + "plugins = [\"x\"]\n[plugins.x]\ntype = \"pci\"\n", "c.toml");
  Result<Config> d = ParseConfig(std::string(kStreamLast) + "[batch]\nmax_events = 5\n", "c.toml");
  ASSERT_TRUE(a.ok() && b.ok() && d.ok());
  EXPECT_TRUE(SameButPlugins(*a, *b));
  EXPECT_FALSE(SameButPlugins(*a, *d));
  Config level = *a;
  level.log_level = "debug";
  EXPECT_TRUE(SameButPlugins(*a, level));  // main applies it after the reload
}

TEST(ConfigMetrics, TextfileMustBeAPromFileInAnExistingDirectory) {
  Result<Config> ok = ParseConfig(std::string(kStreamLast) + "[metrics]\ntextfile = \"/tmp/edgesync.prom\"\ninterval = \"5s\"\n", "c.toml");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  EXPECT_EQ(ok->metrics_textfile, "/tmp/edgesync.prom");
  EXPECT_EQ(ok->metrics_interval, 5);
  Result<Config> bad = ParseConfig(std::string(kStreamLast) + "[metrics]\ntextfile = \"/tmp/edgesync.txt\"\ninterval = \"0s\"\n", "c.toml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("metrics.textfile: must end in .prom"), std::string::npos) << bad.status().message();
  EXPECT_NE(bad.status().message().find("metrics.interval: must be at least 1s"), std::string::npos) << bad.status().message();
}

}  // namespace
}  // namespace edgesync

namespace edgesync {
namespace {

TEST(ConfigPlugins, ExternalPluginsLoadFromPluginsDir) {
  const std::string base = R"([agent]
device_id = "d"
[kafka]
brokers = "b:1"
[[streams]]
name = "s"
topics = ["s/#"]
plugins = ["keys"]
[plugins.keys]
type = "external"
file = "edgesync-topic-key.so"
settings = { level = 1 }
)";
  Result<Config> c = ParseConfig(base + "[plugins]\ndir = \"" + EDGESYNC_EXAMPLE_PLUGIN_DIR + "\"\n", "c.toml");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->Chain(0).size(), 1u);
  std::string raw = "x";
  Event e;
  e.topic = "s/meter-9/x";
  e.raw = &raw;
  EXPECT_EQ(c->Chain(0)[0]->Process(e), Action::kKeep);
  EXPECT_EQ(e.route.key, "meter-9");
  c = ParseConfig(base, "c.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("plugins.dir"), std::string::npos) << c.status().message();
}

}  // namespace
}  // namespace edgesync

namespace edgesync {
namespace {

std::string Repeat(const std::string& s, size_t n, const std::string& sep = "") {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += (i ? sep : "") + s;
  return out;
}

// toml++ builds and frees nested tables recursively: tens of thousands of
// dotted parts used to overflow the stack (SIGSEGV in check, at a reload,
// in a fleet bundle). Such text is refused before toml++ reads it.
TEST(ConfigBounds, TablesNestedTooDeepAreRefusedBeforeTheParserSeesThem) {
  const std::string deep = Repeat("a", 40'000, ".");
  for (const std::string& text : {std::string(kMinimal) + deep + " = 1\n",                  // a dotted key
                                  std::string(kMinimal) + "[" + deep + "]\nx = 1\n",         // a table header
                                  std::string(kMinimal) + "[[" + deep + "]]\n",              // an array of tables
                                  std::string(kMinimal) + "[agent.x]\n" + Repeat("b", 31, ".") + " = 1\n",
                                  std::string(kMinimal) + "v = " + Repeat("{a = ", 40) + "1" + Repeat("}", 40) + "\n",
                                  std::string(kMinimal) + "w = " + Repeat("[", 40) + Repeat("]", 40) + "\n"}) {
    Result<Config> c = ParseConfig(text, "deep.toml");
    ASSERT_FALSE(c.ok());
    EXPECT_NE(c.status().message().find("deep.toml:"), std::string::npos) << c.status().message().substr(0, 300);
    EXPECT_NE(c.status().message().find("nested deeper than 32"), std::string::npos)
        << c.status().message().substr(0, 300);
  }
  // Dots and brackets inside strings and comments, and floats, are not depth.
  const std::string fine = std::string(kMinimal) + "# " + deep + "\n[agent.x]\n\"" + deep + "\" = '" + deep +
                           "'\ny = [1.5, 2.5, \"[[[[\", '''{{{{''', \"\"\"a.b.c\"\"\"]\nz = {a.b.c = 1, d = {}}\n";
  Result<Config> c = ParseConfig(fine, "fine.toml");
  ASSERT_FALSE(c.ok());  // agent.x is not an option: toml++ parsed it, the checks refuse it
  EXPECT_EQ(c.status().message().find("nested deeper"), std::string::npos) << c.status().message().substr(0, 300);
  EXPECT_NE(c.status().message().find("unknown key"), std::string::npos) << c.status().message().substr(0, 300);
}

// A field path builds objects on the way (`set`): a path deeper than a
// document may be is refused at check, not met as a crash at the first event.
TEST(ConfigBounds, RuleFieldPathsAreBoundedAndErrorsStayShort) {
  const std::string plugin = "[plugins.shape]\ntype = \"rules\"\n[[plugins.shape.rules]]\n";
  Result<Config> c = ParseConfig(std::string(kMinimal) + plugin + "set = { \"" + Repeat("a", 100'000, ".") + "\" = 1 }\n",
                                 "r.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("bad field path (dotted names, none empty, at most 63 of them)"),
            std::string::npos) << c.status().message().substr(0, 300);
  EXPECT_LT(c.status().message().size(), 1000u) << "the path is not echoed whole";
  c = ParseConfig(std::string(kMinimal) + plugin + "when = 'exists(" + Repeat("a", 64, ".") + ")'\ndrop = true\n",
                  "r.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("bad field path"), std::string::npos) << c.status().message();
  c = ParseConfig(std::string(kMinimal) + plugin + "set = { \"" + Repeat("a", 63, ".") + "\" = 1 }\n", "r.toml");
  EXPECT_TRUE(c.ok()) << c.status().message();
  c = ParseConfig(std::string(kMinimal) + plugin + "when = '" + Repeat("not ", 100'000) + "exists(a)'\ndrop = true\n",
                  "r.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_LT(c.status().message().size(), 1000u) << "the expression is not echoed whole";
}

// librdkafka properties that load code, run a program or read a file of the
// value's choosing: refused (before librdkafka sees them: setting
// plugin.library.paths loads the library) unless the device file opts in.
TEST(ConfigBounds, KafkaPropertiesThatLoadCodeRunProgramsOrReadFilesNeedTheDeviceFilesOptIn) {
  for (const char* prop : {"plugin.library.paths", "ssl.engine.location", "ssl.providers", "sasl.kerberos.kinit.cmd",
                           "ssl.ca.location", "ssl.key.location", "ssl.keystore.location", "sasl.kerberos.keytab"}) {
    Result<Config> c = ParseConfig(std::string(kMinimal) + "[kafka.properties]\n\"" + prop + "\" = \"/tmp/x\"\n",
                                   "k.toml");
    ASSERT_FALSE(c.ok()) << prop;
    EXPECT_NE(c.status().message().find(std::string("kafka.properties.\"") + prop + "\""), std::string::npos)
        << c.status().message();
    EXPECT_NE(c.status().message().find("kafka.allow_unsafe_properties"), std::string::npos) << c.status().message();
  }
  // Opted in by the device file: passed to librdkafka (which checks the value).
  auto dir = testing::NewTempDir();
  std::ofstream(dir / "ca.pem") << "not a certificate";
  Result<Config> c = ParseConfig(std::string(kMinimal) + "allow_unsafe_properties = [\"ssl.ca.location\"]\n"
                                 "[kafka.properties]\n\"ssl.ca.location\" = \"" + (dir / "ca.pem") + "\"\n", "k.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->kafka_allow_unsafe_properties, std::vector<std::string>{"ssl.ca.location"});
}

// A profile or a fleet bundle may not set what belongs to the device file:
// its identity and state, its keys, where native code comes from, the
// opt-ins above, [fleet], and the brokers' address and security (properties
// win over the device file's typed keys).
TEST(ConfigBounds, AProfileOrBundleSettingWhatBelongsToTheDeviceFileIsRefused) {
  auto dir = testing::NewTempDir();
  const std::string device = "[agent]\ndevice_id = \"term-7\"\nstate_dir = \"/s\"\nprofile = \"p.toml\"\n"
                             "[kafka]\nbrokers = \"127.0.0.1:9092\"\nsecurity_protocol = \"ssl\"\n";
  const std::string stream = "[[streams]]\nname = \"s\"\ntopics = [\"s/#\"]\n";
  const std::pair<std::string, std::string> cases[] = {
      {"[agent]\nstate_dir = \"/elsewhere\"\n", "agent.state_dir"},
      {"[agent]\ndevice_id = \"term-8\"\n", "agent.device_id"},
      {"[agent]\ndevice_key = \"/elsewhere/device.key\"\n", "agent.device_key"},
      {"[encryption]\njournal_key = \"/k\"\n", "encryption.journal_key"},
      {"[plugins]\ndir = \".\"\n", "plugins.dir"},
      {"[fleet]\npublic_keys = [\"/mine.pub\"]\n", "fleet"},
      {"[kafka]\nallow_unsafe_properties = [\"plugin.library.paths\"]\n", "kafka.allow_unsafe_properties"},
      // The broker plugin reads only the device file.
      {"[mqtt]\nmode = \"broker-plugin\"\n", "mqtt.mode"},
      {"[mqtt]\nspool_max_bytes = \"1GiB\"\n", "mqtt.spool_max_bytes"},
      {"[kafka.properties]\n\"plugin.library.paths\" = \"evil.so\"\n", "kafka.properties.\"plugin.library.paths\""},
      {"[kafka.properties]\n\"security.protocol\" = \"plaintext\"\n", "kafka.properties.\"security.protocol\""},
      {"[kafka.properties]\n\"enable.ssl.certificate.verification\" = false\n",
       "kafka.properties.\"enable.ssl.certificate.verification\""},
      {"[kafka.properties]\n\"bootstrap.servers\" = \"evil:9092\"\n", "kafka.properties.\"bootstrap.servers\""},
  };
  for (const auto& [layer, key] : cases) {
    std::ofstream(dir / "p.toml") << layer << stream;
    Result<Config> c = ParseConfig(device, dir / "d.toml");
    ASSERT_FALSE(c.ok()) << key;
    EXPECT_NE(c.status().message().find((dir / "p.toml") + ":"), std::string::npos) << c.status().message();
    EXPECT_NE(c.status().message().find(key), std::string::npos) << c.status().message();
    std::filesystem::create_directories(dir / "bundle");
    std::ofstream(dir / "bundle/edgesync.toml") << layer << stream;
    c = ParseConfig(device, dir / "d.toml", dir / "bundle/edgesync.toml");
    ASSERT_FALSE(c.ok()) << key;
    EXPECT_NE(c.status().message().find((dir / "bundle/edgesync.toml") + ":"), std::string::npos)
        << c.status().message();
  }
  // Tuning is the fleet's to set.
  std::ofstream(dir / "p.toml") << "[kafka.properties]\n\"linger.ms\" = 20\n" << stream;
  Result<Config> c = ParseConfig(device, dir / "d.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
}

TEST(ConfigBounds, TheDeviceIdIsPrintableText) {
  // It names the device in every batch header and in its enrolment file's
  // first line: no line breaks or control characters (TOML escapes below).
  auto with_id = [](const std::string& id) {
    std::string text = kMinimal;
    const std::string from = "device_id = \"term-0042\"";
    text.replace(text.find(from), from.size(), "device_id = \"" + id + "\"");
    return ParseConfig(text, "m.toml");
  };
  for (const char* id : {R"(a\nedgesync-device: b)", R"(t\u0001)", R"(t\u001b[2J)"}) {
    Result<Config> c = with_id(id);
    ASSERT_FALSE(c.ok()) << id;
    EXPECT_NE(c.status().message().find("agent.device_id"), std::string::npos) << c.status().message();
  }
  Result<Config> c = with_id("Ladesäule-7");
  EXPECT_TRUE(c.ok()) << c.status().message();
}

TEST(ConfigBounds, TheAnnouncedPacketSizeLeavesRoomForADeadLetter) {
  Result<Config> c = ParseConfig(kMinimal, "m.toml");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->mqtt.max_packet_size, 16u << 20);
  std::string small = kMinimal;
  small.replace(small.find("[mqtt]\n"), 7, "[mqtt]\nmax_payload = \"1MiB\"\nmax_packet_size = \"1MiB\"\n");
  c = ParseConfig(small, "m.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("mqtt.max_packet_size: must be at least mqtt.max_payload + 64KiB"),
            std::string::npos) << c.status().message();
}

// Every file the configuration names is read as the agent reads it: only
// regular files, and never by blocking on a FIFO or reading a device forever.
TEST(ConfigBounds, FilesItNamesMustBeRegularFilesOfASaneSize) {
  auto dir = testing::NewTempDir();
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  for (const std::string& path : {dir / "fifo", std::string("/dev/zero"), dir.path()}) {
    std::ofstream(dir / "c.toml") << kMinimal << "[encryption]\npublic_key = \"" << path << "\"\n";
    Result<Config> c = LoadConfig(dir / "c.toml");
    ASSERT_FALSE(c.ok()) << path;
    EXPECT_NE(c.status().message().find("not a regular file"), std::string::npos) << c.status().message();
    std::string with_profile = kMinimal;
    with_profile.replace(with_profile.find("[agent]\n"), 8, "[agent]\nprofile = \"" + path + "\"\n");
    std::ofstream(dir / "c.toml") << with_profile;
    c = LoadConfig(dir / "c.toml");
    ASSERT_FALSE(c.ok()) << path;
    EXPECT_NE(c.status().message().find("not a regular file"), std::string::npos) << c.status().message();
  }
  Result<Config> c = LoadConfig("/dev/zero");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("not a regular file"), std::string::npos) << c.status().message();
}

}  // namespace
}  // namespace edgesync

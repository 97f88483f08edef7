// The fleet rollout's pieces that need no broker: the [fleet] settings, a
// bundle's configuration taking the profile's place under the device file,
// and the state file.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <filesystem>
#include <fstream>

#include "agent/config.h"
#include "agent/fleet.h"
#include "agent/health.h"
#include "agent/status_cli.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

constexpr const char* kDevice = R"([agent]
device_id = "term-7"
state_dir = "/var/lib/edgesync"
[mqtt]
client_id = "edgesync"
[kafka]
brokers = "127.0.0.1:9092"
)";

constexpr const char* kStream = R"(
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
)";

TEST(ConfigFleet, KeysNeedAWayInAndAWayInNeedsKeys) {
  Result<Config> c = ParseConfig(std::string(kDevice) + "[fleet]\npublic_keys = [\"fleet.pub\"]\n" + kStream, "d.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("fleet.public_keys: bundles need a way in"), std::string::npos)
      << c.status().message();
  c = ParseConfig(std::string(kDevice) + "[fleet]\ndrop_dir = \"/x\"\n" + kStream, "d.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("bundles are taken only when signed"), std::string::npos);
  c = ParseConfig(std::string(kDevice) + "[fleet]\npublic_keys = [\"k\"]\nmqtt_topic = \"fleet/+/x\"\n" + kStream,
                  "d.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("fleet.mqtt_topic: must be one topic"), std::string::npos);
  c = ParseConfig(std::string(kDevice) + "[fleet]\npublic_keys = [\"k\"]\nmqtt_topic = \"x\"\nprobation = \"0s\"\n" +
                      kStream, "d.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("fleet.probation: must be at least 1s"), std::string::npos);

  c = ParseConfig(std::string(kDevice) + "[fleet]\npublic_keys = [\"k\"]\nmqtt_topic = \"fleet/config/{device_id}\"\n" +
                      kStream, "d.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->fleet_mqtt_topic, "fleet/config/term-7");
  EXPECT_EQ(c->fleet_probation, 120);
  EXPECT_EQ(c->fleet_public_keys, std::vector<std::string>{"k"});
}

TEST(ConfigFleet, ABundleTakesTheProfilesPlaceUnderTheDeviceFile) {
  auto dir = testing::NewTempDir();
  std::ofstream(dir / "profile.toml") << "[[streams]]\nname = \"from-profile\"\ntopics = [\"p/#\"]\n";
  std::filesystem::create_directories(dir / "bundle/profiles");
  // The bundle's own profile lies under it; paths are its own.
  std::ofstream(dir / "bundle/profiles/base.toml")
      << "[agent]\nheartbeat_interval = \"9s\"\n[[streams]]\nname = \"base\"\ntopics = [\"b/#\"]\n";
  std::ofstream(dir / "bundle/edgesync.toml")
      << "[agent]\nprofile = \"profiles/base.toml\"\nstats_interval = \"5s\"\nshutdown_timeout = \"3s\"\n"
         "[[streams]]\nname = \"payments\"\ntopics = [\"terminal/+/payment/#\"]\nkafka_topic = \"edge.from-bundle\"\n";
  const std::string text = "[agent]\ndevice_id = \"term-7\"\nstate_dir = \"/s\"\nshutdown_timeout = \"4s\"\n"
                           "profile = \"profile.toml\"\n[kafka]\nbrokers = \"127.0.0.1:9092\"\n";

  Result<Config> alone = ParseConfig(text, dir / "device.toml");
  ASSERT_TRUE(alone.ok()) << alone.status().message();
  ASSERT_EQ(alone->streams.size(), 1u);
  EXPECT_EQ(alone->streams[0].name, "from-profile");

  Result<Config> c = ParseConfig(text, dir / "device.toml", dir / "bundle/edgesync.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  ASSERT_EQ(c->streams.size(), 2u) << "the device's profile is not used";
  EXPECT_EQ(c->streams[0].name, "base");
  EXPECT_EQ(c->streams[1].name, "payments");
  EXPECT_EQ(c->streams[1].kafka_topic, "edge.from-bundle");
  EXPECT_EQ(c->shutdown_timeout, 4) << "the device file wins";
  EXPECT_EQ(c->stats_interval, 5) << "the bundle fills in";
  EXPECT_EQ(c->heartbeat_interval, 9) << "and its profile under it";

  // A mistake in the bundle names the bundle's file.
  std::ofstream(dir / "bundle/edgesync.toml") << "[batch]\nmax_events = \"many\"\n";
  c = ParseConfig(text, dir / "device.toml", dir / "bundle/edgesync.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find((dir / "bundle/edgesync.toml") + ":2:"), std::string::npos)
      << c.status().message();
}

TEST(FleetState, SurvivesItsFileAndSkipsWhatItDoesNotKnow) {
  FleetState s;
  s.running = 7;
  s.good = 6;
  s.highest = 9;
  s.running_digest = "ab";
  s.good_digest = "cd";
  s.highest_digest = "ef";
  s.status = FleetStatus{.enabled = true, .version = 7, .bundle = 9, .state = "refused",
                         .reason = "version 9: its configuration fails check: x = y", .at_us = 1234};
  FleetState back = ParseFleetState(FormatFleetState(s) + "future_key=1\nnot a line\n");
  EXPECT_EQ(back.running, 7u);
  EXPECT_EQ(back.good, 6u);
  EXPECT_EQ(back.highest, 9u);
  EXPECT_EQ(back.running_digest, "ab");
  EXPECT_EQ(back.good_digest, "cd");
  EXPECT_EQ(back.highest_digest, "ef");
  EXPECT_EQ(back.status.version, 7u);
  EXPECT_EQ(back.status.bundle, 9u);
  EXPECT_EQ(back.status.state, "refused");
  EXPECT_EQ(back.status.reason, s.status.reason);
  EXPECT_EQ(back.status.at_us, 1234);

  auto dir = testing::NewTempDir();
  Result<FleetStatus> none = ReadFleetStatus(Env::Default(), dir.path());
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->enabled);
  std::filesystem::create_directories(dir / "fleet");
  std::ofstream(dir / "fleet/state") << FormatFleetState(s);
  Result<FleetStatus> read = ReadFleetStatus(Env::Default(), dir.path());
  ASSERT_TRUE(read.ok());
  EXPECT_TRUE(read->enabled);
  EXPECT_EQ(read->state, "refused");
  EXPECT_EQ(read->version, 7u);
}

}  // namespace
}  // namespace edgesync

namespace edgesync {
namespace {

TEST(FleetStatusOut, HealthRecordStatusTextAndMetricsCarryTheRollout) {
  AgentStats s;
  HealthContext c;
  c.device_id = "term-7";
  c.version = "0.1.0";
  c.now_us = 1'795'000'000'000'000;
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  // Without [fleet]: null, and no fleet line or metric.
  std::string json = HealthRecordJson(s, c);
  ASSERT_EQ(parser.parse(json).get(e), simdjson::SUCCESS) << json;
  EXPECT_TRUE(e["fleet"].is_null());
  EXPECT_EQ(MetricsText(s, c).find("edgesync_fleet"), std::string::npos);

  s.fleet = FleetStatus{.enabled = true, .version = 6, .bundle = 7, .state = "rolled-back",
                        .reason = "stream payments took no events during probation, though it took events before",
                        .at_us = c.now_us - 90'000'000};
  json = HealthRecordJson(s, c);
  ASSERT_EQ(parser.parse(json).get(e), simdjson::SUCCESS) << json;
  EXPECT_EQ(uint64_t(e["fleet"]["version"]), 6u);
  EXPECT_EQ(uint64_t(e["fleet"]["bundle"]), 7u);
  EXPECT_EQ(std::string_view(e["fleet"]["state"]), "rolled-back");
  EXPECT_EQ(std::string_view(e["fleet"]["reason"]),
            "stream payments took no events during probation, though it took events before");
  Result<std::string> text = FormatStatusText(json, c.now_us);
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("fleet    bundle 6; bundle 7 rolled-back 90s ago\n         why: stream payments took no"),
            std::string::npos) << *text;
  EXPECT_NE(text->find("\n              events before\n"), std::string::npos) << "wrapped, not cut: " << *text;
  const std::string metrics = MetricsText(s, c);
  EXPECT_NE(metrics.find("edgesync_fleet_bundle_version 6\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("edgesync_fleet_state{state=\"rolled-back\"} 1\n"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("edgesync_fleet_state{state=\"applied\"} 0\n"), std::string::npos) << metrics;

  // A stopped agent's status reads the state file.
  s.fleet.enabled = true;
  const std::string stored = StoredStatusDocument(s, "term-7", c.now_us);
  ASSERT_EQ(parser.parse(stored).get(e), simdjson::SUCCESS) << stored;
  EXPECT_EQ(std::string_view(e["fleet"]["state"]), "rolled-back");
}

}  // namespace
}  // namespace edgesync

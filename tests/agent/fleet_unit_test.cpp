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

#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>

#include "fleet/bundle.h"
#include "harness/process.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;

// A device with [fleet]: its file, the fleet's key pair, a drop directory.
class RolloutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Result<std::pair<std::string, std::string>> keys = fleet::GenerateSigningKey();
    ASSERT_TRUE(keys.ok());
    private_key_ = keys->first;
    std::ofstream(dir_ / "fleet.pub") << keys->second;
    std::filesystem::create_directories(dir_ / "inbox");
    std::ofstream(dir_ / "device.toml") << "[agent]\ndevice_id = \"term-7\"\nstate_dir = \"" << (dir_ / "state")
                                        << "\"\n[kafka]\nbrokers = \"127.0.0.1:9092\"\n[fleet]\npublic_keys = [\""
                                        << (dir_ / "fleet.pub") << "\"]\ndrop_dir = \"" << (dir_ / "inbox")
                                        << "\"\n" << kStream;
  }

  std::unique_ptr<Rollout> Open() {
    Result<Config> device = LoadConfig(dir_ / "device.toml");
    EXPECT_TRUE(device.ok()) << device.status().message();
    if (!device.ok()) return nullptr;
    Result<std::unique_ptr<Rollout>> r = Rollout::Open(dir_ / "device.toml", *device, Env::Default());
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? std::move(r).value() : nullptr;
  }

  std::string Bundle(uint64_t version, const std::string& config = "[agent]\nstats_interval = \"7s\"\n") {
    Result<std::string> b = fleet::SignBundle(version, {{"edgesync.toml", config}}, private_key_);
    EXPECT_TRUE(b.ok()) << b.status().message();
    return b.ok() ? *b : "";
  }

  // Tick, which must return: a FIFO or a device in the drop directory used
  // to block it (and with it the agent's main thread) for good.
  std::optional<Config> Tick(Rollout* r) {
    auto done = std::async(std::launch::async, [&] { return r->Tick([] { return AgentStats{}; }, 1); });
    if (done.wait_for(20s) != std::future_status::ready) {
      ADD_FAILURE() << "Rollout::Tick did not return within 20 s";
      std::_Exit(1);
    }
    return done.get();
  }

  harness::TempDir dir_ = testing::NewTempDir();
  std::string private_key_;
};

TEST_F(RolloutTest, WhatIsNotABundleFileInTheDropDirectoryIsSetAsideOnceAndTheNextBundleIsTaken) {
  const std::string inbox = dir_ / "inbox";
  ASSERT_EQ(::symlink("/dev/zero", (inbox + "/a.bundle").c_str()), 0);
  ASSERT_EQ(::mkfifo((inbox + "/b.bundle").c_str(), 0600), 0);
  std::filesystem::create_directories(inbox + "/c.bundle/inside");
  std::ofstream(inbox + "/d.bundle").close();
  std::filesystem::resize_file(inbox + "/d.bundle", fleet::kMaxBundleBytes + 1);  // sparse
  ASSERT_EQ(::symlink("/nonexistent", (inbox + "/e.bundle").c_str()), 0);
  std::ofstream(inbox + "/f.bundle") << Bundle(3);
  std::unique_ptr<Rollout> r = Open();
  ASSERT_TRUE(r);
  std::optional<Config> next = Tick(r.get());
  ASSERT_TRUE(next) << r->status().reason;
  EXPECT_EQ(next->stats_interval, 7);
  EXPECT_EQ(r->status().state, "probation");
  EXPECT_EQ(r->status().version, 3u);
  for (const char* name : {"a", "b", "c", "d", "e"}) {
    const std::string entry = inbox + "/" + name + ".bundle";
    EXPECT_FALSE(std::filesystem::exists(std::filesystem::symlink_status(entry))) << entry << " is still there";
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::symlink_status(entry + ".refused"))) << entry;
  }
  EXPECT_FALSE(std::filesystem::exists(inbox + "/f.bundle")) << "taken";
}

TEST_F(RolloutTest, AnEntryThatCannotBeMovedAsideIsPassedOverFromThenOn) {
  const std::string inbox = dir_ / "inbox";
  std::filesystem::create_directories(inbox + "/a.bundle");
  std::filesystem::create_directories(inbox + "/a.bundle.refused/full");  // renaming onto it fails
  std::unique_ptr<Rollout> r = Open();
  ASSERT_TRUE(r);
  EXPECT_FALSE(Tick(r.get()));
  EXPECT_EQ(r->status().state, "refused");
  EXPECT_NE(r->status().reason.find("passed over from now on"), std::string::npos) << r->status().reason;
  std::ofstream(inbox + "/b.bundle") << Bundle(1);
  EXPECT_TRUE(Tick(r.get())) << "the channel is not blocked: " << r->status().reason;
}

// A bundle whose check kills the agent (a parser crash) must not kill it at
// every start: its version is used up, and the state says "checking", before
// it is unpacked or checked; a start that finds "checking" refuses it.
TEST_F(RolloutTest, ABundleTheAgentDiedCheckingIsRefusedAtTheNextStartAndNotTakenAgain) {
  const std::string bytes = Bundle(5);
  {
    std::unique_ptr<Rollout> r = Open();
    ASSERT_TRUE(r);
    // What Take saves before it unpacks: written here as a crash would leave it.
    FleetState s = ParseFleetState(harness::ReadWholeFile(dir_ / "state/fleet/state"));
    s.highest = 5;
    s.highest_digest = fleet::Sha256Hex(bytes);
    s.status.state = "checking";
    s.status.bundle = 5;
    std::ofstream(dir_ / "state/fleet/state") << FormatFleetState(s);
  }
  std::unique_ptr<Rollout> r = Open();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status().state, "refused");
  EXPECT_EQ(r->status().bundle, 5u);
  EXPECT_NE(r->status().reason.find("stopped while it unpacked or checked"), std::string::npos) << r->status().reason;
  EXPECT_EQ(r->config().stats_interval, 60) << "what ran before runs on";
  r->Offer(bytes);  // the same bundle, retained on the topic, comes back
  EXPECT_FALSE(Tick(r.get()));
  EXPECT_EQ(r->status().state, "refused");
}

TEST_F(RolloutTest, ABundleThatFailsItsCheckUsesUpItsVersion) {
  // The state file as Take leaves it when the check finds a mistake: the
  // version is used up either way (refused), and nothing is left "checking".
  std::unique_ptr<Rollout> r = Open();
  ASSERT_TRUE(r);
  r->Offer(Bundle(2, "[batch]\nmax_events = \"many\"\n"));
  EXPECT_FALSE(Tick(r.get()));
  FleetState s = ParseFleetState(harness::ReadWholeFile(dir_ / "state/fleet/state"));
  EXPECT_EQ(s.highest, 2u);
  EXPECT_EQ(s.status.state, "refused");
  r->Offer(Bundle(2));
  EXPECT_FALSE(Tick(r.get())) << "version 2 is used up";
  r->Offer(Bundle(3));
  EXPECT_TRUE(Tick(r.get()));
}

// One bundle signed with a huge version would make every later one "not
// newer": versions may not jump more than kMaxBundleVersionStep.
TEST_F(RolloutTest, AVersionThatJumpsTooFarIsRefusedAndDoesNotUseUpTheSpace) {
  std::unique_ptr<Rollout> r = Open();
  ASSERT_TRUE(r);
  r->Offer(Bundle(fleet::kMaxBundleVersionStep + 1));
  EXPECT_FALSE(Tick(r.get()));
  EXPECT_EQ(r->status().state, "refused");
  EXPECT_NE(r->status().reason.find("may not jump that far"), std::string::npos) << r->status().reason;
  r->Offer(Bundle(fleet::kMaxBundleVersionStep));
  ASSERT_TRUE(Tick(r.get())) << r->status().reason;
  EXPECT_EQ(r->status().version, fleet::kMaxBundleVersionStep);
  EXPECT_FALSE(fleet::SignBundle(fleet::kMaxBundleVersion + 1, {{"edgesync.toml", ""}}, private_key_).ok());
  EXPECT_FALSE(fleet::SignBundle(UINT64_MAX, {{"edgesync.toml", ""}}, private_key_).ok());
}

}  // namespace
}  // namespace edgesync

// The standing attack suite: what a hostile device, the network, a careless
// fleet operator or a forged bundle sends, against the real agent (and
// edgesync-unpack), each attack as it was first found from outside the code.
// Every test checks that the agent keeps collecting and that every event
// published around the attack is accounted for centrally, besides what the
// attack itself must not achieve (a crash, a hang, a spinning core, memory
// past the unit's MemoryMax, code loaded from a bundle, a forged log line,
// card data at the centre).
#include <dlfcn.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <functional>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "format/envelope.h"
#include "format/format.h"
#include "harness/consumer.h"
#include "tests/integration/fleet_fixture.h"
#include "tests/support/envelopes.h"

namespace edgesync::testing {
namespace {

// What /proc says of a process: peak resident memory (VmHWM) in KiB, and
// CPU time used in seconds.
uint64_t PeakRssKiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  }
  return 0;
}

double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces): state is field 3,
  // utime and stime fields 14 and 15.
  std::istringstream rest(text.substr(text.rfind(')') + 2));
  std::string field;
  uint64_t utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stoull(field);
    if (i == 15) stime = std::stoull(field);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

bool Running(Process* p) { return p != nullptr && ::kill(p->pid(), 0) == 0 && !p->Wait(0ms).ok(); }

// The sanitizer builds run the same attacks; their memory is not the
// product's, so peak RSS is judged only in the normal build.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMeasuresMemory = false;
#else
constexpr bool kMeasuresMemory = true;
#endif
// systemd/edgesync.service: MemoryMax=192M. An attack may cost memory for a
// moment, but well under that.
constexpr uint64_t kPeakRssLimitKiB = 96 << 10;

class Hostile : public Fleet {
 protected:
  // The usual start: agent, edgesync-unpack, and the device's traffic.
  void StartCollecting() {
    StartAgent();
    ASSERT_TRUE(agent_);
    StartUnpack();
    StartTraffic();
    AwaitTraffic(20);
  }

  // Another edgesync-unpack, for the dead-letter stream: its records in
  // dead-letters.ndjson.
  void StartDeadLetterUnpack() {
    harness::SpawnOptions o;
    o.argv = {harness::ProgramPath("edgesync-unpack"), "--brokers", cluster_->bootstrap(), "--from-beginning",
              "--topic", "edge.dead-letter", "--device-keys", DeviceKeysDir()};
    o.stdout_path = dir_ / "dead-letters.ndjson";
    o.stderr_path = dir_ / "unpack-dead-letters.log";
    auto p = Process::Spawn(o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    dead_letter_unpack_.emplace(std::move(p).value());
  }

  void TearDown() override {
    if (dead_letter_unpack_) (void)dead_letter_unpack_->Stop(5s);
    Fleet::TearDown();
  }

  // Batches in the agent's store, as `edgesync status --json` tells.
  uint64_t BufferedBatches() {
    CommandResult r = RunStatus({"--config", config_path(), "--json"});
    simdjson::dom::parser p;
    simdjson::dom::element doc;
    uint64_t n = 0;
    if (p.parse(r.out).get(doc) != simdjson::SUCCESS || doc["buffered"]["batches"].get(n) != simdjson::SUCCESS) return 0;
    return n;
  }

  std::optional<Process> dead_letter_unpack_;

  // Traffic goes on for `n` more events, then stops; every event published
  // arrived once, and the agent still runs.
  void AwaitStillCollecting(uint64_t n = 30) {
    AwaitTraffic(n);
    const uint64_t published = StopTraffic();
    EXPECT_TRUE(traffic_acked_);
    AwaitAllOnce(published);
    EXPECT_TRUE(Running(&*agent_)) << AgentLogs();
  }
};

// ---- Configuration, profiles and bundles -----------------------------------

// toml++ overflowed its stack on a dotted key of 40,000 parts: through
// SIGHUP the agent died (exit 139) without a word.
TEST_F(Hostile, ADeepTomlKeyThroughSighupIsRefusedAndTheAgentRunsOn) {
  StartCollecting();
  std::string deep = "a";
  for (int i = 0; i < 40'000; ++i) deep += ".a";
  std::ofstream(config_path(), std::ios::app) << "\n" << deep << " = 1\n";
  ASSERT_TRUE(agent_->Signal(SIGHUP).ok());
  ASSERT_TRUE(AwaitLog(0, "reload: keeping the running configuration")) << AgentLogs().substr(0, 4000);
  EXPECT_NE(AgentLog(0).find("tables nested deeper than 32 levels"), std::string::npos);
  AwaitStillCollecting();
}

// Signed by the fleet and still hostile: the same key in a bundle retained on
// the device's topic crash-looped the agent (3 of 3 starts), before
// probation could roll it back.
TEST_F(Hostile, ADeepTomlKeyInASignedRetainedBundleIsRefusedWithoutACrashLoop) {
  StartCollecting();
  std::string deep = "[agent]\nstats_interval = \"9s\"\n[x]\na";
  for (int i = 0; i < 40'000; ++i) deep += ".a";
  deep += " = 1\n";
  const std::string bundle = Sign(1, deep, key_);
  // `bundle verify` called it valid: the signature holds, but no device can take it.
  std::ofstream(dir_ / "deep.bundle", std::ios::binary) << bundle;
  CommandResult r = RunEdgesync({"bundle", "verify", "--key", dir_ / "fleet.pub", dir_ / "deep.bundle"});
  EXPECT_EQ(r.exit_code, 2) << r.out.substr(0, 2000);
  EXPECT_NE(r.out.find("nested deeper"), std::string::npos) << r.out.substr(0, 2000);
  auto fleet_pub = Connect("it-fleet");
  ASSERT_TRUE(fleet_pub);
  ASSERT_TRUE(fleet_pub->Publish("fleet/config/it-device", bundle, 1, /*retain=*/true).ok());
  FleetView v = AwaitFleet("refused", 1);
  EXPECT_NE(v.reason.find("nested deeper"), std::string::npos) << v.reason;
  // Restarted, the agent meets the retained bundle again: refused, not
  // taken again.
  ASSERT_TRUE(agent_->Stop(30s).ok());
  StartAgent();
  ASSERT_TRUE(agent_);
  v = AwaitFleet("refused", 1);
  EXPECT_EQ(v.version, 0u);
  AwaitStillCollecting();
}

// A rules `set` path 100,000 levels deep passed check, then crashed the agent
// on the first event, and at every start after (the event came again).
TEST_F(Hostile, ADeepRuleFieldPathIsRefusedByCheck) {
  std::string path = "a";
  for (int i = 0; i < 100'000; ++i) path += ".a";
  WriteConfig("", "[plugins.deep]\ntype = \"rules\"\n[[plugins.deep.rules]]\nset = { \"" + path + "\" = 1 }\n",
              "format = \"json\"\nplugins = [\"deep\"]\n");
  CommandResult r = RunEdgesync({"check", config_path()});
  EXPECT_EQ(r.exit_code, 2) << r.out.substr(0, 2000);
  EXPECT_NE(r.out.find("bad field path"), std::string::npos) << r.out.substr(0, 2000);
}

// Configuration and its files are read only when they are regular files: a
// FIFO blocked `check` in open(), /dev/zero as a profile never ended.
TEST_F(Hostile, CheckRefusesFifosAndDevicesWhereFilesBelong) {
  ASSERT_EQ(::mkfifo((dir_ / "fifo").c_str(), 0600), 0);
  for (const std::string& where : {dir_ / "fifo", std::string("/dev/zero")}) {
    agent_extra_ = "profile = \"" + where + "\"\n";
    WriteDevice();
    CommandResult r = RunEdgesync({"check", config_path()});
    EXPECT_EQ(r.exit_code, 2) << where << ": " << r.out;
    EXPECT_NE(r.out.find("not a regular file"), std::string::npos) << r.out;
  }
  CommandResult r = RunEdgesync({"check", dir_ / "fifo"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
}

// A symbolic link to /dev/zero named *.bundle grew the agent's memory without
// bound (4.6 GB in 10 s), at every start; a FIFO blocked the main thread (and
// its signals); a directory named x.bundle blocked the channel for good.
TEST_F(Hostile, TheDropDirectoryTakesOnlyBundleFilesAndNeverBlocks) {
  const std::string inbox = dir_ / "inbox";
  ASSERT_EQ(::symlink("/dev/zero", (inbox + "/a.bundle").c_str()), 0);
  ASSERT_EQ(::mkfifo((inbox + "/b.bundle").c_str(), 0600), 0);
  std::filesystem::create_directories(inbox + "/c.bundle");
  StartCollecting();
  Drop("d", Sign(1, PaymentsTagged("v1"), key_));
  AwaitFleet("applied", 1);
  for (const char* name : {"a", "b", "c"}) {
    EXPECT_TRUE(std::filesystem::exists(std::filesystem::symlink_status(inbox + "/" + name + ".bundle.refused")))
        << name;
  }
  if (kMeasuresMemory) {
    EXPECT_LT(PeakRssKiB(agent_->pid()), kPeakRssLimitKiB);
  }
  // The main thread still takes signals.
  ASSERT_TRUE(agent_->Signal(SIGHUP).ok());
  ASSERT_TRUE(AwaitLog(0, "SIGHUP: reloading"));
  AwaitStillCollecting();
}

// A signed bundle shipped a shared object and named it in
// kafka.properties."plugin.library.paths": its constructor ran in the agent
// on apply and at every start, and in `check`. Bundles setting
// agent.state_dir or [fleet] were taken.
TEST_F(Hostile, ABundleCannotLoadCodeOrSetWhatBelongsToTheDevice) {
  const std::string marker = dir_ / "constructor-ran";
  ::setenv("EDGESYNC_HOSTILE_MARKER", marker.c_str(), 1);  // where the library's constructor would write
  const std::string library = harness::ProgramPath("edgesync_hostile_constructor.so");
  ASSERT_TRUE(std::filesystem::exists(library)) << library;
  StartCollecting();
  const std::string evil = PaymentsTagged("evil") + "[kafka.properties]\n\"plugin.library.paths\" = \"" + library + "\"\n";
  Drop("b1", Sign(1, evil, key_));
  FleetView v = AwaitFleet("refused", 1);
  EXPECT_NE(v.reason.find("plugin.library.paths"), std::string::npos) << v.reason;
  Drop("b2", Sign(2, PaymentsTagged("v2") + "[agent]\nstate_dir = \"" + (dir_ / "elsewhere") + "\"\n", key_));
  v = AwaitFleet("refused", 2);
  EXPECT_NE(v.reason.find("agent.state_dir"), std::string::npos) << v.reason;
  Drop("b3", Sign(3, PaymentsTagged("v3") + "[fleet]\npublic_keys = [\"" + (dir_ / "mine.pub") + "\"]\n", key_));
  v = AwaitFleet("refused", 3);
  EXPECT_NE(v.reason.find("fleet"), std::string::npos) << v.reason;
  Drop("b4", Sign(4, PaymentsTagged("v4") + "[plugins]\ndir = \"/usr/lib\"\n", key_));
  v = AwaitFleet("refused", 4);
  EXPECT_NE(v.reason.find("plugins.dir"), std::string::npos) << v.reason;
  // `check` of such a configuration refuses it without loading the
  // library, and `bundle sign` does not sign it.
  std::filesystem::create_directories(dir_ / "conf");
  std::ofstream(dir_ / "conf/edgesync.toml") << evil;
  CommandResult r = RunEdgesync({"check", "--bundle", dir_ / "conf/edgesync.toml", config_path()});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("plugin.library.paths"), std::string::npos) << r.out;
  std::ofstream(dir_ / "fleet.key") << key_;
  r = RunEdgesync({"bundle", "sign", "--key", dir_ / "fleet.key", "--in", dir_ / "conf", "--out",
                   dir_ / "evil.bundle", "--version", "9"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("every device would refuse"), std::string::npos) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "evil.bundle"));
  EXPECT_FALSE(std::filesystem::exists(marker)) << "the bundle's library was loaded";
  AwaitStillCollecting();
  EXPECT_FALSE(std::filesystem::exists(marker)) << "the bundle's library was loaded";
}

// `bundle sign --version 18446744073709551615` was accepted, and the device
// then refused every later bundle for good.
TEST_F(Hostile, ABundleCannotUseUpTheVersionSpace) {
  std::filesystem::create_directories(dir_ / "conf");
  std::ofstream(dir_ / "conf/edgesync.toml") << PaymentsTagged("v1");
  std::ofstream(dir_ / "fleet.key") << key_;
  CommandResult r = RunEdgesync({"bundle", "sign", "--key", dir_ / "fleet.key", "--in", dir_ / "conf", "--out",
                              dir_ / "huge.bundle", "--version", "18446744073709551615"});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "huge.bundle"));
  StartCollecting();
  Drop("b1", Sign(uint64_t{1} << 40, PaymentsTagged("far"), key_));
  FleetView v = AwaitFleet("refused", uint64_t{1} << 40);
  EXPECT_NE(v.reason.find("may not jump"), std::string::npos) << v.reason;
  Drop("b2", Sign(2, PaymentsTagged("v2"), key_));
  AwaitFleet("applied", 2);
  AwaitStillCollecting();
}

// ---- Lua ------------------------------------------------------------------

constexpr const char* kGoodScript = "function process(e) return e end\n";
// Finalizers ran outside the instruction budget, with hooks off: on reload
// the MQTT thread spun forever and SIGTERM never finished; in `check` it
// never returned; in a bundle the main thread spun with signals ignored.
constexpr const char* kFinalizerScript =
    "setmetatable({}, {__gc = function() while true do end end})\n"
    "function process(e) return e end\n";

class HostileLua : public Hostile {
 protected:
  void SetUp() override {
    Hostile::SetUp();
    if (HasFatalFailure()) return;
    std::ofstream(dir_ / "enrich.lua") << kGoodScript;
    // The payments stream (JSON, tagged by the profile's rules) runs the script too.
    std::ofstream(dir_ / "profile.toml") << PaymentsTagged("v0") << "\n[plugins.enrich]\ntype = \"lua\"\nscript = \""
                                         << (dir_ / "enrich.lua") << "\"\nevery_stream = true\n";
  }
};

TEST_F(HostileLua, AReloadWithAFinalizerThatNeverEndsIsRefusedAndStopStillStops) {
  StartCollecting();
  std::ofstream(dir_ / "enrich.lua") << kFinalizerScript;
  ASSERT_TRUE(agent_->Signal(SIGHUP).ok());
  ASSERT_TRUE(AwaitLog(0, "reload: keeping the running configuration")) << AgentLogs();
  EXPECT_NE(AgentLog(0).find("__gc"), std::string::npos) << AgentLogs();
  AwaitStillCollecting();
  ASSERT_TRUE(agent_->Stop(30s).ok()) << "SIGTERM did not end the agent";
}

TEST_F(HostileLua, CheckReturnsOnAFinalizerAndOnAScriptThatIsAFifoOrADevice) {
  std::ofstream(dir_ / "enrich.lua") << kFinalizerScript;
  CommandResult r = RunEdgesync({"check", config_path()});
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("__gc"), std::string::npos) << r.out;
  ASSERT_EQ(::mkfifo((dir_ / "fifo.lua").c_str(), 0600), 0);
  for (const std::string& script : {dir_ / "fifo.lua", std::string("/dev/zero")}) {
    std::ofstream(dir_ / "profile.toml") << PaymentsTagged("v0") << "\n[plugins.enrich]\ntype = \"lua\"\nscript = \""
                                         << script << "\"\nevery_stream = true\n";
    r = RunEdgesync({"check", config_path()});
    EXPECT_EQ(r.exit_code, 2) << script << ": " << r.out;
    EXPECT_NE(r.out.find("not a regular file"), std::string::npos) << r.out;
  }
}

// Through a signed bundle the main thread spun: signals ignored, status
// healthy, the watchdog none the wiser. Now the bundle is refused at its
// check, and the agent answers signals and status as before.
TEST_F(HostileLua, ABundleWithAFinalizerIsRefusedAndTheAgentAnswersAsBefore) {
  StartCollecting();
  Drop("b1", [&] {
    Result<std::string> b = fleet::SignBundle(
        1, {{"edgesync.toml", PaymentsTagged("v1") + "\n[plugins.enrich]\ntype = \"lua\"\nscript = \"bad.lua\"\n"
                              "every_stream = true\n"},
            {"bad.lua", kFinalizerScript}},
        key_);
    return b.ok() ? *b : std::string();
  }());
  FleetView v = AwaitFleet("refused", 1);
  EXPECT_NE(v.reason.find("__gc"), std::string::npos) << v.reason;
  ASSERT_TRUE(agent_->Signal(SIGHUP).ok());
  ASSERT_TRUE(AwaitLog(0, "SIGHUP: reloading"));
  AwaitStillCollecting();
}

// Work Lua does in C without running an instruction (a backtracking
// pattern, table.insert into a table whose __len says 10^15, table.move to
// maxinteger) is charged to the budget: the event goes to the dead-letter
// stream with the reason, and the next one runs.
TEST_F(HostileLua, WorkInsideTheLibraryIsBudgetedPerEvent) {
  std::ofstream(dir_ / "enrich.lua")
      << "function process(e)\n"
         "  if e.payload.attack == 1 then string.find(string.rep('a', 5000), string.rep('a*', 20) .. 'b') end\n"
         "  if e.payload.attack == 2 then\n"
         "    table.insert(setmetatable({}, {__len = function() return 1e15 end}), 1, 'x')\n"
         "  end\n"
         "  if e.payload.attack == 3 then table.move({}, 1, math.maxinteger - 1, 1, {}) end\n"
         "  return e\n"
         "end\n";
  StartCollecting();
  StartDeadLetterUnpack();
  auto pub = Connect("it-attacker");
  ASSERT_TRUE(pub);
  for (int attack = 1; attack <= 3; ++attack) {
    ASSERT_TRUE(pub->Publish("terminal/t9/payment/x", "{\"attack\":" + std::to_string(attack) + "}").ok());
  }
  ASSERT_TRUE(pub->WaitAcked(60s).ok()) << "an event hung the agent";
  std::vector<Arrived> dead;
  ASSERT_TRUE(harness::PollUntil([&] { return (dead = ReadArrived(dir_ / "dead-letters.ndjson")).size() >= 3; }, 60s))
      << AgentLogs();
  for (const Arrived& a : dead) {
    EXPECT_EQ(a.reason, "plugin-error");
    EXPECT_TRUE(a.error.find("budget") != std::string::npos || a.error.find("time limit") != std::string::npos)
        << a.error;
  }
  AwaitStillCollecting();
}

// ---- MQTT ------------------------------------------------------------------

// A 250 MB publish took the agent's memory to 509 MB (MemoryMax is 192M),
// and under an 800 MB address-space limit it reconnected again and again
// with "Out of memory", ingesting nothing more. With the broker set up as
// the drop-in sets it, such a publish is refused at the door; a message
// between mqtt.max_payload and the packet limit is dead-lettered, cut.
TEST_F(Hostile, OneHugeMessageCannotExhaustTheAgent) {
  StartCollecting();
  StartDeadLetterUnpack();
  auto big = Connect("it-big");
  ASSERT_TRUE(big);
  ASSERT_TRUE(big->Publish("terminal/t1/payment/big", std::string(2 << 20, 'x')).ok());
  ASSERT_TRUE(big->WaitAcked(30s).ok());
  ASSERT_TRUE(big->Publish("terminal/t1/payment/huge", std::string(250u << 20, 'y')).ok());
  EXPECT_FALSE(big->WaitAcked(5s).ok()) << "the broker took a packet over its max_packet_size";
  (void)big->Disconnect();
  std::vector<Arrived> got;
  ASSERT_TRUE(harness::PollUntil([&] {
    got = ReadArrived(dir_ / "dead-letters.ndjson");
    return std::any_of(got.begin(), got.end(), [](const Arrived& a) { return a.reason == "payload-too-large"; });
  }, 60s)) << AgentLogs();
  if (kMeasuresMemory) {
    EXPECT_LT(PeakRssKiB(agent_->pid()), kPeakRssLimitKiB);
  }
  AwaitStillCollecting();
}

// With a broker that does not bound packets (not the drop-in's), the
// agent's own Maximum Packet Size (MQTT 5) keeps the message away from it:
// the broker drops it for the agent, which collects on unharmed.
class HostileBareBroker : public Hostile {
 protected:
  void ConfigureBroker(harness::BrokerOptions* o) override { o->max_packet_size = 0; }
};

TEST_F(HostileBareBroker, TheAgentsMaximumPacketSizeKeepsAHugeMessageAway) {
  StartCollecting();
  auto big = Connect("it-big");
  ASSERT_TRUE(big);
  ASSERT_TRUE(big->Publish("terminal/t1/payment/huge", std::string(250u << 20, 'y')).ok());
  ASSERT_TRUE(big->WaitAcked(60s).ok()) << "this broker takes it";
  (void)big->Disconnect();
  AwaitTraffic(50);  // the broker has handed on what came after it
  if (kMeasuresMemory) {
    EXPECT_LT(PeakRssKiB(agent_->pid()), kPeakRssLimitKiB);
  }
  AwaitStillCollecting();
}

// ---- Kafka -------------------------------------------------------------------

// With Kafka away and more batches buffered than kafka.max_in_flight, the
// uploader polled librdkafka with a zero timeout in a loop: a full core.
TEST_F(Hostile, AnOutageWithABacklogCostsNoCpu) {
  kafka_extra_ = "max_in_flight = 2\n";
  WriteDevice();
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  StartAgent();
  ASSERT_TRUE(agent_);
  StartTraffic();
  // 200 ms batches: more of them than may be in flight.
  ASSERT_TRUE(harness::PollUntil([&] { return BufferedBatches() >= 6; }, 30s)) << AgentLogs();
  const uint64_t published = StopTraffic();
  ASSERT_TRUE(traffic_acked_);
  const double before = CpuSeconds(agent_->pid());
  std::this_thread::sleep_for(3s);  // a window of nothing happening: there is no condition to await
  const double used = CpuSeconds(agent_->pid()) - before;
  EXPECT_LT(used, 0.6) << "the agent used " << used << " s of CPU in 3 s of an outage";
  ASSERT_TRUE(cluster_->AllBrokersUp().ok());
  StartUnpack();
  AwaitAllOnce(published);
}

// ---- Card data --------------------------------------------------------------

// The digits of `text` in order, Unicode digits of the common blocks folded
// to ASCII, everything else left out: an oracle independent of the
// scanner's rules (a PAN spelled with separators, invisible characters or
// other digits still shows here; a mask shows at most 10 of its digits).
std::string DigitStream(std::string_view text) {
  std::string out;
  for (size_t i = 0; i < text.size();) {
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c >= '0' && c <= '9') {
      out.push_back(static_cast<char>(c));
      ++i;
      continue;
    }
    size_t n = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (i + n > text.size()) break;
    uint32_t cp = n == 1 ? c : c & (0xFF >> (n + 1));
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
    for (uint32_t zero : {0x660u, 0x6F0u, 0x966u, 0xFF10u, 0x1D7CEu}) {
      if (cp >= zero && cp <= zero + 9) out.push_back(static_cast<char>('0' + (cp - zero)));
    }
    i += n;
  }
  return out;
}

// Every string of every record edgesync-unpack wrote to `path` (names and
// values, topics, properties, keys, payloads: those in base64, `<field>_b64`
// and {"b64": ...}, decoded too).
std::vector<std::string> StringsOfRecords(const std::string& path) {
  std::vector<std::string> out;
  std::function<void(simdjson::dom::element)> walk = [&](simdjson::dom::element e) {
    if (e.is_object()) {
      for (auto [k, v] : simdjson::dom::object(e)) {
        out.emplace_back(k);
        walk(v);
        std::string_view b64;
        if ((k == "b64" || k.ends_with("_b64")) && v.get(b64) == simdjson::SUCCESS) {
          out.push_back(FromBase64(b64));
        }
      }
    } else if (e.is_array()) {
      for (simdjson::dom::element v : simdjson::dom::array(e)) walk(v);
    } else if (e.is_string()) {
      out.emplace_back(std::string_view(e));
    } else {
      out.push_back(simdjson::minify(e));
    }
  };
  ForEachJsonLine(path, walk);
  return out;
}

// The attack's shapes end to end: card numbers in a topic, a user property
// name, the content type, the key; as JSON numbers in exponent form, as
// JSON escapes in a raw payload and in a dead letter; behind every
// separator; in other digits; from issuers outside 2-6; CVV and track data
// in raw streams, in text and in dead letters. Nothing reaches the centre,
// nor the agent's own log at debug level.
TEST_F(Hostile, NoCardDataReachesTheCentreOnAnyPath) {
  log_level_ = "debug";
  payments_stream_ = true;  // raw (format defaults to "raw")
  WriteConfig("", R"(
[[streams]]
name = "json-events"
topics = ["json/#"]
kafka_topic = ")" + std::string(kTopic) + R"("
format = "json"
plugins = ["keyed"]

[plugins.keyed]
type = "rules"
[[plugins.keyed.rules]]
route = { key_from = "pan" }

[plugins.card-data]
type = "pci"
every_stream = true
)");
  StartAgent();
  ASSERT_TRUE(agent_);
  StartUnpack();
  StartDeadLetterUnpack();
  const std::vector<std::string> pans = {"4111111111111111", "4982965724920861", "5555555555554444",
                                         "378282246310005"};
  // A Luhn-valid Troy number: 979200000000000 + check digit.
  auto with_check = [](std::string body) {
    int sum = 0;
    for (size_t i = 0; i < body.size(); ++i) {
      int d = body[body.size() - 1 - i] - '0';
      if (i % 2 == 0) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
      sum += d;
    }
    return body + static_cast<char>('0' + (10 - sum % 10) % 10);
  };
  const std::string troy = with_check("979200000000000");
  const std::string uatp = with_check("13541234567891");
  auto pub = Connect();
  ASSERT_TRUE(pub);
  const std::string raw = "terminal/t1/payment/x";
  std::vector<std::pair<std::string, std::string>> events = {
      {raw, R"({"pan":"4111111111111111","cvv":"987","track2":";4111111111111111=25121010000012345678?"})"},
      {raw, "auth ok pan=4111111111111111&cvv2=987&exp=2512"},
      {raw, "data ;4982965724920861=25121010000012345678? end"},
      {raw, "%B5555555555554444^DOE/JOHN^2512101000000000000000?"},
      {raw, "{broken \"pan\":\"\\u0034\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031"
            "\\u0031\\u0031\\u0031\\u0031\" cvv: 987"},
      {raw, "4111.1111.1111.1111 4111/1111/1111/1111 4111_1111_1111_1111 4111,1111,1111,1111"},
      {raw, "4111\t1111\t1111\t1111 4111\n1111\n1111\n1111 4111\xC2\xA0""1111\xC2\xA0""1111\xC2\xA0""1111"},
      {raw, "4\xE2\x80\x8B""111111111111111 4111\xC2\xAD""111111111111 4111\xE2\x80\x93""1111\xE2\x80\x93""1111\xE2\x80\x93""1111"},
      {raw, "\xD9\xA4\xD9\xA1\xD9\xA1\xD9\xA1\xD9\xA1\xD9\xA1\xD9\xA1\xD9\xA1\xD9\xA1\xD9\xA1\xD9\xA1\xD9\xA1\xD9\xA1"
            "\xD9\xA1\xD9\xA1\xD9\xA1"},  // Arabic-Indic
      {raw, "\xEF\xBC\x94\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91"
            "\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91\xEF\xBC\x91"},  // fullwidth
      {raw, "uatp " + uatp + " troy " + troy + " amex 378282246310005"},
      {"terminal/4111111111111111/payment/x", "in the topic"},
      {"json/a", R"({"pan":"5555555555554444","amount":4.982965724920861e15,"n":4982965724920861.0,"cvv":"987"})"},
      {"json/a", "{not json, pan 4111111111111111, \"cvv\":\"987\"}"},  // a dead letter (invalid-json)
  };
  for (const auto& [topic, payload] : events) ASSERT_TRUE(pub->Publish(topic, payload).ok());
  ASSERT_TRUE(pub->WaitAcked(30s).ok());
  // MQTT 5: a card number as a user property's name and as the content type.
  CommandResult mqtt5 = [&] {
    harness::SpawnOptions o;
    o.argv = {"mosquitto_pub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()), "-V", "mqttv5", "-q", "1",
              "-t", raw, "-m", "props", "-D", "publish", "user-property", "4111111111111111", "v",
              "-D", "publish", "user-property", "note", "card 5555 5555 5555 4444",
              "-D", "publish", "content-type", "text/plain; ref=378282246310005"};
    o.stderr_path = dir_ / "mosquitto_pub.err";
    CommandResult r;
    auto p = Process::Spawn(o);
    if (p.ok()) {
      auto code = p->Wait(30s);
      r.exit_code = code.ok() ? *code : -1;
    }
    return r;
  }();
  ASSERT_EQ(mqtt5.exit_code, 0) << harness::ReadWholeFile(dir_ / "mosquitto_pub.err");
  const size_t expected = events.size() + 1;
  std::vector<std::string> strings;
  ASSERT_TRUE(harness::PollUntil([&] {
    return ReadArrived(dir_ / "records.ndjson").size() + ReadArrived(dir_ / "dead-letters.ndjson").size() >= expected;
  }, 60s)) << AgentLogs();
  strings = StringsOfRecords(dir_ / "records.ndjson");
  for (std::string& s : StringsOfRecords(dir_ / "dead-letters.ndjson")) strings.push_back(std::move(s));
  std::vector<std::string> all_pans = pans;
  all_pans.push_back(troy);
  all_pans.push_back(uatp);
  for (const std::string& s : strings) {
    const std::string digits = DigitStream(s);
    for (const std::string& pan : all_pans) {
      EXPECT_EQ(digits.find(pan), std::string::npos) << pan << " reached the centre in: " << s;
    }
    std::string lower = s;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(lower.find("cvv"), std::string::npos) << "a CVV field reached the centre in: " << s;
    EXPECT_EQ(digits.find("2512101"), std::string::npos) << "track data reached the centre in: " << s;
  }
  ASSERT_TRUE(agent_->Stop(30s).ok());
  const std::string log = AgentLogs();
  EXPECT_NE(log.find("to the dead-letter stream"), std::string::npos) << "the debug lines are there";
  for (const std::string& pan : all_pans) {
    EXPECT_EQ(DigitStream(log).find(pan), std::string::npos) << pan << " is in the agent's log";
  }
}

// ---- The central side --------------------------------------------------------

// edgesync-unpack printed a gap record's reason raw: a device could end the
// line and write the next one. Two records of 2^64-1 events wrapped
// lost_events.
TEST_F(Hostile, TheCentreEscapesWhatADeviceWroteAndItsCountersDoNotWrap) {
  Gap g;
  g.stream = "payments";
  g.events = UINT64_MAX;
  g.reason = "quota\nedgesync-unpack: batches=0 forged=1\x1b[2J \xff";
  g.first_seq = g.last_seq = 1;
  std::vector<harness::KafkaMessage> msgs(2);
  msgs[0].key = msgs[1].key = "dev-x";
  msgs[0].value = *SealGapRecord("dev-x", g);
  g.first_seq = g.last_seq = 2;
  msgs[1].value = *SealGapRecord("dev-x", g);
  ASSERT_TRUE(harness::WriteTopic(cluster_->bootstrap(), kTopic, msgs, 30s).ok());
  harness::SpawnOptions o;
  o.argv = {harness::ProgramPath("edgesync-unpack"), "--brokers", cluster_->bootstrap(), "--topic", kTopic,
            "--from-beginning", "--exit-at-end", "--gaps", dir_ / "gaps.ndjson", "--trust-device-ids"};
  o.stdout_path = dir_ / "records.ndjson";
  o.stderr_path = dir_ / "unpack.log";
  auto p = Process::Spawn(o);
  ASSERT_TRUE(p.ok());
  auto code = p->Wait(60s);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  const std::string log = harness::ReadWholeFile(dir_ / "unpack.log");
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    EXPECT_EQ(line.rfind("edgesync-unpack: ", 0), 0u) << "a line the device wrote: " << line;
    EXPECT_EQ(line.find("\x1b"), std::string::npos) << line;
  }
  EXPECT_NE(log.find("quota\\nedgesync-unpack: batches=0 forged=1\\x1B[2J \\xFF"), std::string::npos) << log;
  EXPECT_NE(log.find("lost_events=18446744073709551615"), std::string::npos) << log;
  // The gaps output is JSON, one line per record.
  size_t records = 0;
  ForEachJsonLine(dir_ / "gaps.ndjson", [&](simdjson::dom::element) { ++records; });
  EXPECT_EQ(records, 2u);
}

// Envelopes are sealed for the central public key, which every device
// holds, so anyone who could write to an edge topic could write as any
// device. One gap record in another device's name (its batches 1..1000000)
// made edgesync-unpack drop that device's real batches as duplicates, and
// the gap line said events:0. Now every batch, gap record and fragment is
// signed with the device's own key: what is unsigned, signed by no enrolled
// key, or signed by another device's key is refused with its reason before
// it touches the state of the device it names.
TEST_F(Hostile, ForgedBatchesAndGapRecordsInAnotherDevicesNameAreRefused) {
  // A compromised terminal of the same fleet, enrolled under its own name,
  // and a key nobody enrolled.
  const DeviceSigner evil = *DeviceSigner::Generate(), stranger = *DeviceSigner::Generate();
  const std::string keys = DeviceKeysDir();
  std::ofstream(keys + "/evil-7.pub") << EnrolmentText("evil-7", evil);
  // The device's own key before a rotation, revoked since (a stolen image).
  const DeviceSigner old_key = *DeviceSigner::Generate();
  std::filesystem::create_directories(keys + "/revoked");
  std::ofstream(keys + "/revoked/it-device-2025.pub") << EnrolmentText("it-device", old_key);
  // And its current key, as a thief with the disk would hold it: a batch it
  // signed, changed after signing.
  Result<DeviceSigner> mine = DeviceSigner::FromPem(harness::ReadWholeFile(dir_ / "state/device.key"), "device.key");
  ASSERT_TRUE(mine.ok()) << mine.status().ToString();
  Gap g;
  g.stream = "payments";
  g.first_seq = 1;
  g.last_seq = 1'000'000;
  g.reason = format::kGapQuota;
  BatchHeader h;
  h.device_id = "it-device";
  h.stream = "payments";
  h.batch_seq = 1;
  h.event_count = 1;
  Record r;
  r.topic = "terminal/t1/payment/authorization";
  r.payload = R"({"forged":true,"amount":100000})";
  std::string body;
  AppendToBody(r, &body);
  SealOptions by_evil;
  by_evil.signer = &evil;
  SealOptions by_device;
  by_device.signer = &*mine;
  std::string altered = *SealEnvelope(h, body, by_device);
  altered[altered.size() - format::kEnvelopeTrailer - format::kSignatureBlock - 1] ^= 1;  // the body's last byte
  altered = WithFixedCrc(altered);
  std::vector<harness::KafkaMessage> forged(7);
  for (harness::KafkaMessage& m : forged) m.key = "it-device";  // the device's partition
  forged[0].value = *SealGapRecord("it-device", g);             // unsigned (format version 1)
  forged[1].value = *SealGapRecord("it-device", g, &stranger);  // a key not enrolled for it
  forged[2].value = *SealGapRecord("it-device", g, &evil);      // another device's key
  forged[3].value = *SealEnvelope(h, body, by_evil);            // fake records in its name
  forged[4].value = *SealGapRecord("ghost-1", g, &stranger);    // a device nobody enrolled
  forged[5].value = *SealGapRecord("it-device", g, &old_key);   // a revoked key of its own
  forged[6].value = altered;                                    // its key, bytes changed after
  ASSERT_TRUE(harness::WriteTopic(cluster_->bootstrap(), kTopic, forged, 30s).ok());

  // The device's real traffic, after the forgeries: every event arrives once.
  auto pub = StartPipeline();
  ASSERT_TRUE(pub);
  Publish(pub.get(), 1, 500);
  harness::Tally t = AwaitArrival(500);
  EXPECT_EQ(t.arrived, 500u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.duplicates, 0u);
  ASSERT_TRUE(unpack_->Stop(10s).ok());
  const std::string log = harness::ReadWholeFile(dir_ / "unpack.log");
  for (const char* reason : {"reason=unsigned", "reason=unknown_device", "reason=wrong_key", "reason=revoked_key",
                             "reason=bad_signature"}) {
    EXPECT_NE(log.find(reason), std::string::npos) << reason << " missing from:\n" << log;
  }
  for (const char* count : {"rejected_unsigned=1", "rejected_wrong_key=3", "rejected_unknown_device=1",
                            "rejected_revoked_key=1", "rejected_bad_signature=1"}) {
    EXPECT_NE(log.find(count), std::string::npos) << count << " missing from:\n" << log;
  }
  EXPECT_NE(log.find("gap_records=0"), std::string::npos) << log;
  EXPECT_EQ(harness::ReadWholeFile(dir_ / "records.ndjson").find("forged"), std::string::npos);
  EXPECT_EQ(harness::ReadWholeFile(dir_ / "gaps.ndjson").find("\"lost\""), std::string::npos);

  // The same topic read without device keys (--trust-device-ids): the
  // forged gap record hides the device's real batches. The attack is real.
  harness::SpawnOptions o;
  o.argv = {harness::ProgramPath("edgesync-unpack"), "--brokers", cluster_->bootstrap(), "--topic", kTopic,
            "--from-beginning", "--exit-at-end", "--trust-device-ids"};
  o.stdout_path = dir_ / "trusting.ndjson";
  o.stderr_path = dir_ / "trusting.log";
  Result<int> code = harness::RunToEnd(o);
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  std::ifstream in(dir_ / "trusting.ndjson");
  EXPECT_LT(harness::TallyLines(in, {{"pub", 500}}).arrived, 500u)
      << "without device keys a forged gap record drops real batches as duplicates";
}

}  // namespace
}  // namespace edgesync::testing

// edgesync-demo: the whole product on this machine, end to end. Starts a
// mosquitto broker and a Kafka-protocol mock cluster on free loopback ports,
// the agent on the given config (pointed at them), edgesync-unpack reading
// every stream's topic, and a simulated fleet publishing over QoS 1. The
// batches are encrypted for a key pair made for the run (edgesync keygen):
// the agent gets the public key, edgesync-unpack the private one. Midway,
// Kafka goes away for a while, to show the buffer at work. When the fleet
// stops it waits for the drain, stops everything it started and prints
//   summary: published=N arrived=N lost=N duplicates=N
// as its last line. Exit 0 when nothing was lost.
#include <CLI/CLI.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>

#include "agent/config.h"
#include "buffer/store.h"
#include "harness/agent_process.h"
#include "harness/kafka_cluster.h"
#include "harness/mosquitto.h"
#include "harness/process.h"
#include "harness/site.h"
#include "harness/tally.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace h = edgesync::harness;

void Say(const std::string& line) {
  std::printf("demo: %s\n", line.c_str());
  std::fflush(stdout);
}

int Fail(const std::string& what, const edgesync::Status& st) {
  std::fprintf(stderr, "demo: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 1;
}

// Prints the NDJSON lines that arrived since the last call, at most `max`.
class Sampler {
 public:
  explicit Sampler(std::string path) : path_(std::move(path)) {}
  size_t PrintNew(size_t max) {
    std::ifstream in(path_);
    in.seekg(static_cast<std::streamoff>(offset_));
    std::string line;
    size_t printed = 0;
    while (std::getline(in, line)) {
      if (in.eof()) break;  // a partial last line: read it next time
      offset_ += line.size() + 1;
      if (printed < max) {
        if (line.size() > 200) line = line.substr(0, 197) + "...";
        std::printf("central: %s\n", line.c_str());
        ++printed;
      }
    }
    std::fflush(stdout);
    return printed;
  }

 private:
  std::string path_;
  size_t offset_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  std::string config_path = "examples/demo.toml";
  int seconds = 30, terminals = 3, chargers = 2, drain_timeout = 120;
  double rate = 40;
  bool outage = true, keep = false;
  CLI::App app{"edgesync-demo: the product end to end on loopback"};
  app.add_option("--config", config_path, "agent configuration to run")->capture_default_str();
  app.add_option("--seconds", seconds, "how long the fleet publishes")->capture_default_str();
  app.add_option("--terminals", terminals, "simulated payment terminals")->capture_default_str();
  app.add_option("--chargers", chargers, "simulated EV chargers")->capture_default_str();
  app.add_option("--rate", rate, "events per second, whole fleet")->capture_default_str();
  app.add_option("--drain-timeout", drain_timeout, "seconds to wait for the drain")->capture_default_str();
  app.add_flag("!--no-outage", outage, "do not take Kafka down midway");
  app.add_flag("--keep", keep, "keep the working directory (logs, records) for a look afterwards");
  CLI11_PARSE(app, argc, argv);
  h::CatchInterrupts();

  edgesync::Result<edgesync::Config> cfg = edgesync::LoadConfig(config_path);
  if (!cfg.ok()) return Fail("configuration", cfg.status());
  auto work = h::TempDir::Create("edgesync-demo");
  if (!work.ok()) return Fail("working directory", work.status());
  if (keep) work->Keep();

  auto broker = h::StartSiteBroker(*work / "broker");
  if (!broker.ok()) return Fail("mosquitto", broker.status());
  std::vector<std::pair<std::string, int>> topics;
  for (const auto& s : cfg->streams) topics.emplace_back(s.kafka_topic, 3);
  topics.emplace_back(cfg->dead_letter_topic, 1);
  std::vector<std::pair<std::string, int>> all_topics = topics;
  all_topics.emplace_back(cfg->health_topic, 1);
  auto cluster = h::KafkaCluster::Start(3, all_topics);
  if (!cluster.ok()) return Fail("Kafka mock cluster", cluster.status());
  Say("mosquitto on 127.0.0.1:" + std::to_string((*broker)->port()) +
      "; Kafka mock cluster (3 brokers) at " + (*cluster)->bootstrap());

  // The central key pair, as an operator makes it once.
  auto key_line = h::MakeCentralKeys(*work / "keys");
  if (!key_line.ok()) return Fail("edgesync keygen", key_line.status());
  h::SiteConfig site;
  site.source_path = config_path;
  site.profile = cfg->profile;
  site.mqtt_port = (*broker)->port();
  site.kafka_brokers = (*cluster)->bootstrap();
  site.state_dir = *work / "state";
  if (cfg->encryption_public_key.empty()) site.public_key = *work / "keys/edgesync.pub";
  const std::string agent_config = *work / "agent.toml";
  if (auto st = h::WriteSiteConfig(site, agent_config); !st.ok()) return Fail("agent configuration", st);
  Say("batches are encrypted for the central key pair (edgesync keygen: " + *key_line +
      "); edgesync-unpack holds the private key");
  // The device's own signing key, enrolled with the central side as a
  // fleet does: edgesync-unpack refuses batches no enrolled key signed.
  auto enrolled = h::EnrolDevice(cfg->device_id, *work / "state", *work / "device-keys");
  if (!enrolled.ok()) return Fail("enrolling the device", enrolled.status());
  Say("device key made and enrolled (edgesync keygen --device: " + *enrolled +
      "); its device.pub copied into edgesync-unpack's --device-keys " + *work / "device-keys");
  auto agent = h::StartAgent(agent_config, *work / "agent.log");
  if (!agent.ok()) return Fail("agent", agent.status());
  Say("agent running: device " + cfg->device_id + ", " + std::to_string(cfg->streams.size()) +
      " streams (log: " + *work / "agent.log" + ")");

  std::vector<std::string> topic_names;
  for (const auto& [t, parts] : topics) topic_names.push_back(t);
  auto unpack = h::StartUnpack((*cluster)->bootstrap(), topic_names, *work / "keys/edgesync.key",
                               *work / "device-keys", *work / "records.ndjson", *work / "unpack.log");
  if (!unpack.ok()) return Fail("edgesync-unpack", unpack.status());

  h::FleetRun fr;
  fr.port = (*broker)->port();
  fr.terminals = terminals;
  fr.chargers = chargers;
  fr.rate = rate;
  fr.seconds = seconds;
  fr.manifest_path = *work / "manifest.csv";
  fr.out_path = *work / "fleet.out";
  fr.log_path = *work / "fleet.log";
  auto fleet = h::StartFleet(fr);
  if (!fleet.ok()) return Fail("edgesync-fleet", fleet.status());
  Say("fleet: " + std::to_string(terminals) + " payment terminals and " + std::to_string(chargers) +
      " chargers, " + std::to_string(static_cast<int>(rate)) + " events/s over QoS 1, for " +
      std::to_string(seconds) + " s");

  auto store = edgesync::Store::Open(edgesync::Env::Default(), *work / "state/store.db");
  auto buffered = [&]() -> uint64_t {
    if (!store.ok()) return 0;
    auto c = (*store)->Counts();
    return c.ok() ? c->events : 0;
  };
  auto arrived_so_far = [&]() -> uint64_t {
    std::ifstream in(*work / "records.ndjson");
    return static_cast<uint64_t>(std::count(std::istreambuf_iterator<char>(in), {}, '\n'));
  };

  Sampler sampler(*work / "records.ndjson");
  const auto start = Clock::now();
  const int outage_at = seconds / 3, outage_for = std::max(3, seconds / 6);
  bool down = false;
  for (int tick = 0; fleet->Running() && !h::Interrupted(); ++tick) {
    std::this_thread::sleep_for(1s);
    int t = static_cast<int>(std::chrono::duration_cast<std::chrono::seconds>(Clock::now() - start).count());
    if (outage && !down && t >= outage_at && t < outage_at + outage_for) {
      (void)(*cluster)->AllBrokersDown();
      down = true;
      Say("Kafka is down (all brokers) for " + std::to_string(outage_for) + " s: the agent buffers");
    } else if (down && t >= outage_at + outage_for) {
      (void)(*cluster)->AllBrokersUp();
      down = false;
      Say("Kafka is back: the agent drains its buffer");
    }
    sampler.PrintNew(tick < 3 ? 3 : (tick % 5 == 0 ? 1 : 0));
    if (tick % 5 == 4) {
      Say(std::to_string(t) + " s: arrived centrally " + std::to_string(arrived_so_far()) +
          ", buffered on the device " + std::to_string(buffered()));
    }
  }
  if (down) (void)(*cluster)->AllBrokersUp();
  if (h::Interrupted()) (void)fleet->Signal(SIGTERM);
  auto fleet_code = fleet->Wait(60s);
  if (!fleet_code.ok() || *fleet_code != 0) {
    std::fprintf(stderr, "demo: the fleet simulator failed; see %s\n", (*work / "fleet.log").c_str());
  }

  auto manifest_total = h::ManifestTotal(*work / "manifest.csv");
  const uint64_t published = manifest_total.ok() ? *manifest_total : 0;
  Say("fleet done: published " + std::to_string(published) + "; waiting for the drain");
  h::Tally tally;
  h::PollUntil([&] {
    auto t = h::TallyFiles(*work / "records.ndjson", *work / "manifest.csv");
    if (t.ok()) tally = *t;
    return h::Interrupted() || (t.ok() && tally.arrived == published);
  }, std::chrono::seconds(drain_timeout), 250ms);
  sampler.PrintNew(2);
  Say("stopping the agent, edgesync-unpack, Kafka and mosquitto");
  (void)agent->Stop(30s);
  if (agent->exit_status() != 0) {
    std::fprintf(stderr, "demo: the agent exited with %d; see %s\n", agent->exit_status().value_or(-1),
                 (*work / "agent.log").c_str());
  }
  // The agent's health records (its own _agent stream), as the central side
  // reads them: the last one is the one it sent while stopping.
  h::SpawnOptions ho;
  ho.argv = {h::ProgramPath("edgesync-unpack"), "--brokers", (*cluster)->bootstrap(), "--from-beginning",
             "--exit-at-end", "--private-key", *work / "keys/edgesync.key", "--device-keys", *work / "device-keys",
             "--topic", cfg->health_topic};
  ho.stdout_path = *work / "health.ndjson";
  ho.stderr_path = *work / "health-unpack.log";
  auto health = h::RunToEnd(ho);
  if (health.ok() && *health == 0) {
    std::ifstream in(*work / "health.ndjson");
    std::string line, last;
    size_t count = 0;
    while (std::getline(in, line)) {
      if (!line.empty()) last = line, ++count;
    }
    const size_t at = last.find("\"payload\":");
    Say(std::to_string(count) + " health records arrived on " + cfg->health_topic + "; the last: " +
        (at == std::string::npos ? "(none)" : last.substr(at + 10, 400) + " ..."));
  }
  (void)unpack->Stop(10s);
  (void)(*cluster)->Stop();
  (void)(*broker)->Stop();
  auto final_tally = h::TallyFiles(*work / "records.ndjson", *work / "manifest.csv");
  if (final_tally.ok()) tally = *final_tally;
  if (keep) Say("kept " + work->path());
  std::printf("%s\n", h::FormatSummary(tally).c_str());
  return tally.lost == 0 && published > 0 ? 0 : 1;
}

// edgesync-bench-broker: what the broker plugin (mqtt.mode = "broker-plugin")
// costs the broker, and the CPU per event of each ingest mode beside
// `mosquitto_sub -q 1` on the same events, in the same run.
//
// Each run starts fresh brokers (Debian's mosquitto) and, interleaved:
//   bare     a broker without the plugin, nobody subscribed: a QoS 1
//            publisher's time for N acknowledged publishes, the broker's CPU,
//            its RSS at start and its peak
//   plugin   the same with the edgesync plugin loaded (spooling every event;
//            no agent reading): the plugin's extra broker time per message
//   sub      the bare broker with `mosquitto_sub -q 1` (persistent session)
//            receiving the N: its own CPU, and the broker's extra CPU
//            delivering to it (broker CPU minus bare's)
//   agent-plugin  the plugin broker and the agent in broker-plugin mode,
//            until its store holds all N (Kafka down: taken in durably)
//   agent-client  the bare broker and the agent in client mode, the same
// CPU is user + system of every thread (/proc/PID/stat), from the first
// publish to the end. 300-byte payment JSON, up to 500 in flight. Prints
// key=value lines (medians of --runs) and, with --markdown, a section for
// bench/RESULTS.md.
#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "base/env.h"
#include "bench/median.h"
#include "bench/proc_stats.h"
#include "harness/agent_figures.h"
#include "harness/agent_process.h"
#include "harness/kafka_cluster.h"
#include "harness/mosquitto.h"
#include "harness/process.h"
#include "harness/publisher.h"
#include "harness/site.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace h = edgesync::harness;
using edgesync::bench::CpuSeconds;

constexpr const char* kTopic = "bench/t1/payment/authorization";

struct Sample {
  double publish_s = -1;  // first publish to the last PUBACK
  double broker_cpu = -1;
  double client_cpu = -1;  // mosquitto_sub's or the agent's
  double broker_idle_mib = 0;  // VmRSS once it accepts connections
  double broker_peak_mib = 0;  // VmHWM after the publishes
};

bool PublishAll(int port, uint64_t n) {
  auto pub = h::Publisher::Connect("127.0.0.1", port, "bench-publisher", 500);
  if (!pub.ok()) return false;
  for (uint64_t i = 1; i <= n; ++i) {
    if (!(*pub)->Publish(kTopic, h::PaymentEvent("bench", i), 1).ok()) return false;
  }
  return (*pub)->WaitAcked(300s).ok();
}

// The agent's configuration for `mode`, its state in `base`-state.
std::string AgentConfig(const std::string& mode, int port, const std::string& brokers, const std::string& base) {
  std::string cfg = std::string(R"([agent]
device_id = "bench-device"
stats_interval = 0
[mqtt]
host = "127.0.0.1"
client_id = "edgesync-bench"
mode = ")") + mode + R"("
[[streams]]
name = "payments"
topics = ["bench/+/payment/#"]
kafka_topic = "bench.broker"
[batch]
max_age = "50ms"
)";
  return h::PointConfigAt(cfg, port, brokers, base + "-state");
}

edgesync::Result<std::unique_ptr<h::MosquittoBroker>> StartBroker(const std::string& dir, const std::string& plugin,
                                                           const std::string& config) {
  h::BrokerOptions o;
  o.max_queued_messages = -1;
  o.max_inflight_messages = 100;
  o.persistence = false;
  if (!plugin.empty()) o.extra_config = {"plugin " + plugin, "plugin_opt_config " + config};
  return h::MosquittoBroker::Start(dir, o);
}

// bare or plugin: publisher time and broker CPU, nobody reading.
Sample BrokerOnly(const std::string& dir, const std::string& plugin, const std::string& brokers, uint64_t n) {
  Sample s;
  (void)edgesync::Env::Default()->CreateDirs(dir);
  const std::string base = dir + "/agent";
  std::ofstream(base + ".toml") << AgentConfig("broker-plugin", 1883, brokers, base);
  auto broker = StartBroker(dir + "/broker", plugin, base + ".toml");
  if (!broker.ok()) {
    std::fprintf(stderr, "bench: %s\n", broker.status().ToString().c_str());
    return s;
  }
  s.broker_idle_mib = static_cast<double>(edgesync::bench::StatusKib((*broker)->pid(), "VmRSS")) / 1024.0;
  const double cpu0 = CpuSeconds((*broker)->pid());
  const auto start = Clock::now();
  if (!PublishAll((*broker)->port(), n)) return s;
  s.publish_s = std::chrono::duration<double>(Clock::now() - start).count();
  s.broker_cpu = CpuSeconds((*broker)->pid()) - cpu0;
  s.broker_peak_mib = static_cast<double>(edgesync::bench::StatusKib((*broker)->pid(), "VmHWM")) / 1024.0;
  return s;
}

Sample Subscriber(const std::string& dir, uint64_t n) {
  Sample s;
  auto broker = StartBroker(dir + "/broker", "", "");
  if (!broker.ok()) return s;
  std::vector<std::string> common = {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string((*broker)->port()),
                                     "-q", "1", "-t", "bench/#", "-c", "-i", "bench-sub"};
  h::SpawnOptions make;
  make.argv = common;
  make.argv.push_back("-E");
  auto session = h::Process::Spawn(make);
  if (!session.ok() || !session->Wait(10s).ok()) return s;
  h::SpawnOptions o;
  o.argv = common;
  o.argv.insert(o.argv.end(), {"-C", std::to_string(n)});
  o.stdout_path = dir + "/sub.out";
  const double children0 = edgesync::bench::ChildrenCpuSeconds();
  auto sub = h::Process::Spawn(o);
  if (!sub.ok()) return s;
  const double cpu0 = CpuSeconds((*broker)->pid());
  const auto start = Clock::now();
  if (!PublishAll((*broker)->port(), n)) return s;
  s.publish_s = std::chrono::duration<double>(Clock::now() - start).count();
  if (!sub->Wait(120s).ok()) return s;
  s.broker_cpu = CpuSeconds((*broker)->pid()) - cpu0;
  s.client_cpu = edgesync::bench::ChildrenCpuSeconds() - children0;
  return s;
}

Sample Agent(const std::string& dir, const std::string& plugin, const std::string& brokers, uint64_t n) {
  Sample s;
  const bool plugin_mode = !plugin.empty();
  (void)edgesync::Env::Default()->CreateDirs(dir);
  const std::string base = dir + "/agent";
  // The broker's port is known only once it runs; the plugin needs the file first.
  std::ofstream(base + ".toml") << AgentConfig(plugin_mode ? "broker-plugin" : "client", 1883, brokers, base);
  auto broker = StartBroker(dir + "/broker", plugin, base + ".toml");
  if (!broker.ok()) return s;
  std::ofstream(base + ".toml") << AgentConfig(plugin_mode ? "broker-plugin" : "client", (*broker)->port(),
                                               brokers, base);
  h::SpawnOptions ao;
  ao.argv = {h::ProgramPath("edgesync"), "run", "--config", base + ".toml"};
  ao.stderr_path = base + ".log";
  auto agent = h::Process::Spawn(ao);
  if (!agent.ok()) return s;
  const std::string ready = plugin_mode ? "reading the broker plugin's spool" : "subscribed";
  if (!h::PollUntil([&] { return h::ReadWholeFile(base + ".log").find(ready) != std::string::npos; }, 30s)) {
    std::fprintf(stderr, "bench: the agent did not start: %s\n", h::ReadWholeFile(base + ".log").c_str());
    return s;
  }
  const double broker0 = CpuSeconds((*broker)->pid()), agent0 = CpuSeconds(agent->pid());
  const auto start = Clock::now();
  if (!PublishAll((*broker)->port(), n)) return s;
  s.publish_s = std::chrono::duration<double>(Clock::now() - start).count();
  const std::string state = base + "-state";
  if (!h::PollUntil([&] { return h::ReadAgentFigures(state).buffered_events >= n; }, 300s, 20ms)) {
    std::fprintf(stderr, "bench: not every event reached the store\n");
    return s;
  }
  s.broker_cpu = CpuSeconds((*broker)->pid()) - broker0;
  s.client_cpu = CpuSeconds(agent->pid()) - agent0;
  (void)agent->Stop(30s);
  return s;
}

double Med(const std::vector<Sample>& v, double Sample::*f) {
  std::vector<double> x;
  for (const Sample& s : v) x.push_back(s.*f);
  return edgesync::bench::Median(x);
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t events = 50000;
  int runs = 3;
  bool markdown = false;
  std::string plugin = EDGESYNC_BROKER_PLUGIN;
  CLI::App app{"edgesync-bench-broker: the broker plugin's cost and CPU per event of each ingest mode"};
  app.add_option("--events", events, "events per run")->capture_default_str();
  app.add_option("--runs", runs, "runs of each (medians reported)")->capture_default_str();
  app.add_option("--plugin", plugin, "the edgesync_broker.so to load")->capture_default_str();
  app.add_flag("--markdown", markdown, "print a section for bench/RESULTS.md after the key=value lines");
  CLI11_PARSE(app, argc, argv);

  auto tmp = h::TempDir::Create("edgesync-bench-broker");
  if (!tmp.ok()) return 1;
  auto cluster = h::KafkaCluster::Start(1, {{"bench.broker", 1}});
  if (!cluster.ok() || !(*cluster)->AllBrokersDown().ok()) {
    std::fprintf(stderr, "bench: no Kafka mock cluster\n");
    return 1;
  }
  const std::string brokers = (*cluster)->bootstrap();
  std::map<std::string, std::vector<Sample>> got;
  for (int r = 0; r < runs; ++r) {
    const std::string d = *tmp / ("run" + std::to_string(r));
    got["bare"].push_back(BrokerOnly(d + "-bare", "", brokers, events));
    got["plugin"].push_back(BrokerOnly(d + "-plugin", plugin, brokers, events));
    got["sub"].push_back(Subscriber(d + "-sub", events));
    got["agent_plugin"].push_back(Agent(d + "-agent-plugin", plugin, brokers, events));
    got["agent_client"].push_back(Agent(d + "-agent-client", "", brokers, events));
    std::fprintf(stderr, "bench: run %d done\n", r + 1);
  }
  for (auto& [name, v] : got) {
    for (const Sample& s : v) {
      if (s.publish_s < 0 || s.broker_cpu < 0) {
        std::fprintf(stderr, "bench: a %s run failed\n", name.c_str());
        return 1;
      }
    }
  }
  const double us = 1e6 / static_cast<double>(events);
  const double bare_broker = Med(got["bare"], &Sample::broker_cpu) * us;
  const double plugin_broker = Med(got["plugin"], &Sample::broker_cpu) * us;
  const double bare_pub = Med(got["bare"], &Sample::publish_s) * us;
  const double plugin_pub = Med(got["plugin"], &Sample::publish_s) * us;
  const double sub_cpu = Med(got["sub"], &Sample::client_cpu) * us;
  const double sub_broker_extra = Med(got["sub"], &Sample::broker_cpu) * us - bare_broker;
  const double ap_cpu = Med(got["agent_plugin"], &Sample::client_cpu) * us;
  const double ap_broker_extra = Med(got["agent_plugin"], &Sample::broker_cpu) * us - bare_broker;
  const double ac_cpu = Med(got["agent_client"], &Sample::client_cpu) * us;
  const double ac_broker_extra = Med(got["agent_client"], &Sample::broker_cpu) * us - bare_broker;
  std::printf("broker_events=%llu\nbroker_runs=%d\n", static_cast<unsigned long long>(events), runs);
  std::printf("broker_cpu_us_per_msg_bare=%.2f\nbroker_cpu_us_per_msg_plugin=%.2f\n", bare_broker, plugin_broker);
  std::printf("broker_publish_us_per_msg_bare=%.2f\nbroker_publish_us_per_msg_plugin=%.2f\n", bare_pub, plugin_pub);
  const double idle_bare = Med(got["bare"], &Sample::broker_idle_mib), idle_plugin = Med(got["plugin"], &Sample::broker_idle_mib);
  const double peak_bare = Med(got["bare"], &Sample::broker_peak_mib), peak_plugin = Med(got["plugin"], &Sample::broker_peak_mib);
  std::printf("broker_idle_rss_mib_bare=%.1f\nbroker_idle_rss_mib_plugin=%.1f\n", idle_bare, idle_plugin);
  std::printf("broker_peak_rss_mib_bare=%.1f\nbroker_peak_rss_mib_plugin=%.1f\n", peak_bare, peak_plugin);
  std::printf("broker_sub_cpu_us=%.2f\nbroker_sub_broker_extra_us=%.2f\n", sub_cpu, sub_broker_extra);
  std::printf("broker_agent_plugin_cpu_us=%.2f\nbroker_agent_plugin_broker_extra_us=%.2f\n", ap_cpu, ap_broker_extra);
  std::printf("broker_agent_client_cpu_us=%.2f\nbroker_agent_client_broker_extra_us=%.2f\n", ac_cpu, ac_broker_extra);
  if (markdown) {
    auto ratio = [](double a, double b) { return b > 0 ? a / b : 0.0; };
    std::printf("\n| figure | value | baseline (same run) | ratio |\n|---|---|---|---|\n");
    std::printf("| broker CPU per QoS 1 publish, µs, with the plugin spooling it | %.2f | without the plugin: %.2f | %.2f |\n",
                plugin_broker, bare_broker, ratio(plugin_broker, bare_broker));
    std::printf("| a QoS 1 publisher's time per acknowledged publish (500 in flight), µs, with the plugin | %.2f | without: %.2f | %.2f |\n",
                plugin_pub, bare_pub, ratio(plugin_pub, bare_pub));
    std::printf("| broker RSS at start (VmRSS), MiB, with the plugin loaded | %.1f | without: %.1f | %.2f |\n", idle_plugin,
                idle_bare, ratio(idle_plugin, idle_bare));
    std::printf("| broker peak RSS (VmHWM) after the publishes, MiB, with the plugin | %.1f | without: %.1f | %.2f |\n",
                peak_plugin, peak_bare, ratio(peak_plugin, peak_bare));
    std::printf("| broker-plugin mode: the agent's own CPU per event, µs | %.2f | mosquitto_sub -q 1: %.2f | %.2f |\n",
                ap_cpu, sub_cpu, ratio(ap_cpu, sub_cpu));
    std::printf("| broker-plugin mode: the device's total per event (agent + the broker's extra for it), µs | %.2f | mosquitto_sub -q 1: %.2f | %.2f |\n",
                ap_cpu + ap_broker_extra, sub_cpu, ratio(ap_cpu + ap_broker_extra, sub_cpu));
    std::printf("| client mode: the agent's own CPU per event, µs | %.2f | mosquitto_sub -q 1: %.2f | %.2f |\n", ac_cpu,
                sub_cpu, ratio(ac_cpu, sub_cpu));
    std::printf("| client mode: the device's total per event (agent + the broker's extra for it), µs | %.2f | mosquitto_sub -q 1: %.2f | %.2f |\n",
                ac_cpu + ac_broker_extra, sub_cpu, ratio(ac_cpu + ac_broker_extra, sub_cpu));
    std::printf("| mosquitto_sub -q 1 with the broker's extra delivering to it, µs | %.2f | mosquitto_sub -q 1: %.2f | %.2f |\n",
                sub_cpu + sub_broker_extra, sub_cpu, ratio(sub_cpu + sub_broker_extra, sub_cpu));
  }
  return 0;
}

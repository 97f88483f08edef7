// edgesync-bench-ingest: how many events per second the agent takes from its
// broker and delivers to Kafka, beside what `mosquitto_sub -q 1` takes from
// the same broker for the same stream (the baseline: a subscriber that does
// nothing with the messages). Both measured in the same run, interleaved,
// median of --runs. Also the agent's peak RSS (VmHWM). With --series DIR,
// the events/s of each over time (sampled every 100 ms) in the run of the
// median agent rate, as DIR/ingest_rate.tsv (bench/plots/ingest_rate.gp).
//
// Agent time: first publish -> the last event decoded by edgesync-unpack
// (journal, batch, zstd, SQLite, Kafka mock, decode all included).
// Baseline time: first publish -> mosquitto_sub has received the last event.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/median.h"
#include "bench/series.h"
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

constexpr auto kSampleEvery = 100ms;  // of the --series counts

uint64_t CountLines(const std::string& path, const std::string& needle) {
  std::ifstream in(path);
  std::string line;
  uint64_t n = 0;
  while (std::getline(in, line)) n += line.find(needle) != std::string::npos;
  return n;
}

// Counts the complete lines of a file another process appends to, reading
// only what was added since the last call; with a `needle`, only the lines
// that contain it.
class LineCounter {
 public:
  LineCounter(std::string path, std::string needle) : path_(std::move(path)), needle_(std::move(needle)) {}
  uint64_t Count() {
    std::ifstream in(path_, std::ios::binary);
    if (!in) return lines_;
    in.seekg(static_cast<std::streamoff>(offset_));
    std::string chunk((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    offset_ += chunk.size();
    partial_ += chunk;
    size_t begin = 0;
    for (size_t nl; (nl = partial_.find('\n', begin)) != std::string::npos; begin = nl + 1) {
      lines_ += needle_.empty() || partial_.find(needle_, begin) < nl;
    }
    partial_.erase(0, begin);
    return lines_;
  }

 private:
  const std::string path_, needle_;
  uint64_t offset_ = 0, lines_ = 0;
  std::string partial_;  // the last line, not complete yet
};

// Publishes `n` events at full speed (QoS 1, up to 500 in flight).
bool PublishAll(int port, uint64_t n, const std::string& topic) {
  auto pub = h::Publisher::Connect("127.0.0.1", port, "bench-publisher", 500);
  if (!pub.ok()) return false;
  for (uint64_t i = 1; i <= n; ++i) {
    if (!(*pub)->Publish(topic, h::PaymentEvent("bench", i), 1).ok()) return false;
  }
  return (*pub)->WaitAcked(120s).ok();
}

struct Run {
  double seconds = -1;
  double peak_rss_mib = 0;       // agent only
  edgesync::bench::Series rate;  // (seconds since the first publish, events/s)
};

// One baseline run: seconds until mosquitto_sub -q 1 got all n. Its session
// is made first (-c with -E: subscribe, then exit), so the counting
// subscriber needs no readiness signal and prints nothing but the payloads,
// one a line, to a file in `dir`, fully buffered (its lines, counted every
// kSampleEvery, give the rate over time).
Run BaselineRun(h::MosquittoBroker* broker, uint64_t n, const std::string& dir, int run) {
  Run r;
  const std::string id = "bench-sub-" + std::to_string(run);
  std::vector<std::string> common = {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker->port()),
                                     "-q", "1", "-t", "bench/#", "-c", "-i", id};
  h::SpawnOptions make;
  make.argv = common;
  make.argv.push_back("-E");
  auto session = h::Process::Spawn(make);
  if (!session.ok() || !session->Wait(10s).ok()) return r;
  h::SpawnOptions o;
  o.argv = common;
  o.argv.insert(o.argv.end(), {"-C", std::to_string(n)});
  o.stdout_path = dir + "/sub-" + std::to_string(run) + ".out";
  LineCounter received(o.stdout_path, "");
  edgesync::bench::CountSampler sampler([&received] { return static_cast<double>(received.Count()); },
                                        kSampleEvery);
  auto start = Clock::now();
  auto sub = h::Process::Spawn(o);
  if (!sub.ok()) return r;
  if (!PublishAll(broker->port(), n, "bench/t1/payment/authorization")) return r;
  if (!sub->Wait(120s).ok()) return r;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.rate = edgesync::bench::PerSecond(sampler.Stop());
  return r;
}

// durable_only: Kafka is down for the run, and the clock stops once the
// store holds every event (taken in durably: journaled, sealed, committed).
// The rate over time counts what the clock waits for: events in the store
// (durable_only), or events decoded by edgesync-unpack.
Run AgentRunOnce(h::MosquittoBroker* broker, h::KafkaCluster* cluster, uint64_t n,
                 const std::string& dir, int run, bool durable_only) {
  Run r;
  std::string topic = "bench.run" + std::to_string(run);
  if (!cluster->CreateTopic(topic, 1).ok()) return r;
  std::string base = dir + "/agent-" + std::to_string(run);
  std::string cfg = std::string(R"([agent]
device_id = "bench-device"
stats_interval = 0
[mqtt]
host = "127.0.0.1"
client_id = "edgesync-bench-)") + std::to_string(run) + R"("
[[streams]]
name = "payments"
topics = ["bench/+/payment/#"]
kafka_topic = ")" + topic + "\"\n[batch]\nmax_age = \"50ms\"\n";
  std::ofstream(base + ".toml") << h::PointConfigAt(cfg, broker->port(), cluster->bootstrap(),
                                                    base + "-state");
  // The central side checks every batch's signature, as in production.
  if (!h::EnrolDevice("bench-device", base + "-state", base + "-keys").ok()) return r;
  auto agent = h::StartAgent(base + ".toml", base + ".log");
  if (!agent.ok()) {
    std::fprintf(stderr, "bench: %s\n", agent.status().ToString().c_str());
    return r;
  }
  h::SpawnOptions uo;
  uo.argv = {h::ProgramPath("edgesync-unpack"), "--brokers", cluster->bootstrap(), "--topic", topic,
             "--from-beginning", "--device-keys", base + "-keys"};
  uo.stdout_path = base + ".ndjson";
  uo.stderr_path = base + "-unpack.log";
  auto unpack = h::Process::Spawn(uo);
  if (!unpack.ok()) return r;

  if (durable_only && !cluster->AllBrokersDown().ok()) return r;
  // Events in the store, as the agent tells them on its status socket (it
  // holds the store locked). Each ask builds a health record in the agent:
  // a few store counts, well under 1 % of its time at these rates.
  const std::string state = base + "-state";
  auto stored = [&state] { return edgesync::harness::ReadAgentFigures(state).buffered_events; };
  LineCounter decoded(base + ".ndjson", "\"seq\"");
  edgesync::bench::CountSampler sampler(
      [&] { return static_cast<double>(durable_only ? stored() : decoded.Count()); }, kSampleEvery);
  auto start = Clock::now();
  if (!PublishAll(broker->port(), n, "bench/t1/payment/authorization")) return r;
  bool done = durable_only
                  ? h::PollUntil([&] { return stored() >= n; }, 300s, 10ms)
                  : h::PollUntil([&] { return CountLines(base + ".ndjson", "\"seq\"") >= n; }, 300s, 10ms);
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.rate = edgesync::bench::PerSecond(sampler.Stop());
  if (durable_only) (void)cluster->AllBrokersUp();
  if (!done) {
    std::fprintf(stderr, "bench: run %d: not everything arrived\n", run);
    return r;
  }
  std::ifstream status("/proc/" + std::to_string(agent->pid()) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) r.peak_rss_mib = std::stod(line.substr(6)) / 1024.0;
  }
  (void)agent->Stop(30s);
  (void)unpack->Stop(5s);
  return r;
}

using edgesync::bench::Median;

}  // namespace

int main(int argc, char** argv) {
  uint64_t events = 20000;
  int runs = 5;
  std::string series_dir;
  CLI::App app{"edgesync-bench-ingest: agent ingest rate beside mosquitto_sub -q 1"};
  app.add_option("--events", events, "events per run")->capture_default_str();
  app.add_option("--runs", runs, "runs of each (median reported)")->capture_default_str();
  app.add_option("--series", series_dir, "write the rate over time (ingest_rate.tsv) into this directory");
  CLI11_PARSE(app, argc, argv);

  auto work = h::TempDir::Create("edgesync-bench");
  if (!work.ok()) return 1;
  h::BrokerOptions bo;
  bo.max_queued_messages = -1;
  bo.max_inflight_messages = 100;
  auto broker = h::MosquittoBroker::Start(*work / "broker", bo);
  auto cluster = h::KafkaCluster::Start(1);
  if (!broker.ok() || !cluster.ok()) {
    std::fprintf(stderr, "bench: cannot start the broker or the Kafka mock cluster\n");
    return 1;
  }
  std::vector<double> base_rates, agent_rates, durable_rates, rss;
  std::vector<std::vector<std::pair<std::string, edgesync::bench::Series>>> series;  // per run
  for (int run = 0; run < runs; ++run) {
    Run b = BaselineRun(broker->get(), events, work->path(), run);
    Run a = AgentRunOnce(broker->get(), cluster->get(), events, work->path(), 2 * run, false);
    Run d = AgentRunOnce(broker->get(), cluster->get(), events, work->path(), 2 * run + 1, true);
    if (b.seconds <= 0 || a.seconds <= 0 || d.seconds <= 0) {
      std::fprintf(stderr, "bench: run %d failed\n", run);
      return 1;
    }
    series.push_back({{"agent to Kafka (decoded by edgesync-unpack)", std::move(a.rate)},
                      {"agent durable (in the store, Kafka down)", std::move(d.rate)},
                      {"baseline: mosquitto_sub -q 1", std::move(b.rate)}});
    base_rates.push_back(static_cast<double>(events) / b.seconds);
    agent_rates.push_back(static_cast<double>(events) / a.seconds);
    durable_rates.push_back(static_cast<double>(events) / d.seconds);
    rss.push_back(std::max(a.peak_rss_mib, d.peak_rss_mib));
    std::fprintf(stderr,
                 "bench: run %d: mosquitto_sub %.0f events/s, agent to Kafka %.0f events/s, "
                 "agent durable %.0f events/s, peak RSS %.1f MiB\n",
                 run + 1, base_rates.back(), agent_rates.back(), durable_rates.back(), rss.back());
  }
  double base = Median(base_rates), agent = Median(agent_rates), durable = Median(durable_rates);
  if (!series_dir.empty()) {
    // The run whose agent-to-Kafka rate is the median (Median picks one of them).
    const size_t at = std::find(agent_rates.begin(), agent_rates.end(), agent) - agent_rates.begin();
    const std::string comment = "edgesync-bench-ingest: events/s over time, sampled every 0.1 s from "
                                "the first publish, run " + std::to_string(at + 1) + " of " +
                                std::to_string(runs) +
                                " (the median agent-to-Kafka rate), " + std::to_string(events) + " events";
    if (!edgesync::bench::WriteSeries(series_dir + "/ingest_rate.tsv", comment, "t_s\tevents_per_sec",
                                      series[at])) {
      std::fprintf(stderr, "bench: cannot write %s/ingest_rate.tsv\n", series_dir.c_str());
      return 1;
    }
  }
  // Machine-readable lines for script/bench.
  std::printf("ingest_events_per_sec=%.0f\n", agent);
  std::printf("durable_events_per_sec=%.0f\n", durable);
  std::printf("baseline_mosquitto_sub_events_per_sec=%.0f\n", base);
  std::printf("ratio=%.2f\n", agent / base);
  std::printf("durable_ratio=%.2f\n", durable / base);
  std::printf("agent_peak_rss_mib=%.1f\n", Median(rss));
  std::printf("events_per_run=%llu\nruns=%d\n", static_cast<unsigned long long>(events), runs);
  return 0;
}

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
//
// CPU per event (client mode): user + system seconds of the agent (all its
// threads, /proc/<pid>/stat) from the first publish until edgesync-unpack
// has decoded the last event, plain and with [encryption] on; of
// mosquitto_sub (getrusage of the reaped child) from its start to its exit;
// and of the broker over each of those windows. The broker's CPU delivering
// to a subscriber is its CPU in that subscriber's run less its CPU in a run
// of the same publisher with no subscriber at all (in the same round).
// Syscalls per event: a separate run of each under `strace -f -c` (strace
// slows what it traces), the agent attached once it is subscribed.
// --compare-agent DIR: another build's agent in the same rounds, for its CPU.
#include <dirent.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench/median.h"
#include "bench/proc_stats.h"
#include "bench/series.h"
#include "format/crypto.h"
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
  double own_cpu_s = -1;         // the subscriber's own (agent or mosquitto_sub)
  double broker_cpu_s = -1;      // the broker's over the same window
  edgesync::bench::Series rate;  // (seconds since the first publish, events/s)
};

// The broker's pid, for its CPU time (the harness starts it as
// `mosquitto -c <work_dir>/mosquitto.conf`).
pid_t BrokerPid(const h::MosquittoBroker& broker) {
  return edgesync::bench::PidWithArgument(broker.work_dir() + "/mosquitto.conf");
}

// Ends a client's persistent session. The broker here keeps unlimited
// queues (as the agent's drop-in sets it up), so a session left behind
// would have it queue every later run's events for a client that is gone,
// and its CPU in later runs would grow with the number of runs. Connecting
// with the same client id and a clean session discards the old one.
void ForgetSession(int port, const std::string& client_id) {
  (void)h::RunToEnd({"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(port), "-i", client_id, "-t",
                     "bench-forget/none", "-E"},
                    "", 10s);
}

// strace -c's summary table: calls per syscall, most first, and the total.
struct SyscallCounts {
  uint64_t total = 0;
  std::vector<std::pair<std::string, uint64_t>> by_name;
};

SyscallCounts ReadStraceSummary(const std::string& path) {
  SyscallCounts c;
  std::ifstream in(path);
  std::string line;
  bool table = false;
  while (std::getline(in, line)) {
    if (line.rfind("------", 0) == 0) {
      table = true;
      continue;
    }
    if (!table) continue;
    // % time, seconds, usecs/call, calls, [errors,] syscall
    std::istringstream fields(line);
    std::vector<std::string> f((std::istream_iterator<std::string>(fields)), std::istream_iterator<std::string>());
    if (f.size() < 5 || f[3].find_first_not_of("0123456789") != std::string::npos) continue;
    const uint64_t calls = std::stoull(f[3]);
    if (f.back() == "total") {
      c.total = calls;
    } else {
      c.by_name.emplace_back(f.back(), calls);
    }
  }
  std::sort(c.by_name.begin(), c.by_name.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return c;
}

// "4.81 read, 2.90 write, ..." per event, the `top` most frequent.
std::string PerEvent(const SyscallCounts& c, uint64_t n, size_t top) {
  std::string out;
  char buf[96];
  for (size_t i = 0; i < c.by_name.size() && i < top; ++i) {
    std::snprintf(buf, sizeof buf, "%s%.2f %s", out.empty() ? "" : ", ",
                  static_cast<double>(c.by_name[i].second) / static_cast<double>(n), c.by_name[i].first.c_str());
    out += buf;
  }
  return out;
}

// One baseline run: seconds until mosquitto_sub -q 1 got all n. Its session
// is made first (-c with -E: subscribe, then exit), so the counting
// subscriber needs no readiness signal and prints nothing but the payloads,
// one a line, to a file in `dir`, fully buffered (its lines, counted every
// kSampleEvery, give the rate over time). With `strace_to`, the subscriber
// runs under strace -f -c, which writes its summary there.
Run BaselineRun(h::MosquittoBroker* broker, uint64_t n, const std::string& dir, const std::string& id,
                const std::string& strace_to = "") {
  Run r;
  std::vector<std::string> common = {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker->port()),
                                     "-q", "1", "-t", "bench/#", "-c", "-i", id};
  h::SpawnOptions make;
  make.argv = common;
  make.argv.push_back("-E");
  auto session = h::Process::Spawn(make);
  if (!session.ok() || !session->Wait(10s).ok()) return r;
  h::SpawnOptions o;
  if (!strace_to.empty()) o.argv = {"strace", "-f", "-c", "-o", strace_to};
  o.argv.insert(o.argv.end(), common.begin(), common.end());
  o.argv.insert(o.argv.end(), {"-C", std::to_string(n)});
  o.stdout_path = dir + "/" + id + ".out";
  LineCounter received(o.stdout_path, "");
  edgesync::bench::CountSampler sampler([&received] { return static_cast<double>(received.Count()); },
                                        kSampleEvery);
  const pid_t broker_pid = BrokerPid(*broker);
  const double broker_before = edgesync::bench::CpuSeconds(broker_pid);
  const double children_before = edgesync::bench::ChildrenCpuSeconds();
  auto start = Clock::now();
  auto sub = h::Process::Spawn(o);
  if (!sub.ok()) return r;
  if (!PublishAll(broker->port(), n, "bench/t1/payment/authorization")) return r;
  if (!sub->Wait(120s).ok()) return r;
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  // The only child reaped since `children_before`: the subscriber.
  r.own_cpu_s = edgesync::bench::ChildrenCpuSeconds() - children_before;
  r.broker_cpu_s = edgesync::bench::CpuSeconds(broker_pid) - broker_before;
  r.rate = edgesync::bench::PerSecond(sampler.Stop());
  ForgetSession(broker->port(), id);
  return r;
}

// The broker's CPU taking the n events from the same publisher with no
// subscriber: what is left of a subscriber's run once delivery is taken out.
double BrokerAloneCpu(h::MosquittoBroker* broker, uint64_t n) {
  const pid_t broker_pid = BrokerPid(*broker);
  const double before = edgesync::bench::CpuSeconds(broker_pid);
  if (!PublishAll(broker->port(), n, "bench/t1/payment/authorization")) return -1;
  return edgesync::bench::CpuSeconds(broker_pid) - before;
}

struct AgentRunOptions {
  // Kafka is down for the run, and the clock stops once the store holds
  // every event (taken in durably: journaled, sealed, committed).
  bool durable_only = false;
  std::string public_key, private_key;  // PEM files: [encryption] on
  std::string strace_to;                // attach strace -f -c, summary here
};

// The rate over time counts what the clock waits for: events in the store
// (durable_only), or events decoded by edgesync-unpack.
Run AgentRunOnce(h::MosquittoBroker* broker, h::KafkaCluster* cluster, uint64_t n, const std::string& dir,
                 const std::string& name, const AgentRunOptions& ro) {
  Run r;
  const bool durable_only = ro.durable_only;
  std::string topic = "bench." + name;
  if (!cluster->CreateTopic(topic, 1).ok()) return r;
  std::string base = dir + "/agent-" + name;
  const std::string client_id = "edgesync-bench-" + name;
  std::string cfg = std::string(R"([agent]
device_id = "bench-device"
stats_interval = 0
[mqtt]
host = "127.0.0.1"
client_id = ")") + client_id + R"("
[[streams]]
name = "payments"
topics = ["bench/+/payment/#"]
kafka_topic = ")" + topic + "\"\n[batch]\nmax_age = \"50ms\"\n";
  if (!ro.public_key.empty()) cfg += "[encryption]\npublic_key = \"" + ro.public_key + "\"\n";
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
  if (!ro.private_key.empty()) uo.argv.insert(uo.argv.end(), {"--private-key", ro.private_key});
  uo.stdout_path = base + ".ndjson";
  uo.stderr_path = base + "-unpack.log";
  auto unpack = h::Process::Spawn(uo);
  if (!unpack.ok()) return r;

  if (durable_only && !cluster->AllBrokersDown().ok()) return r;
  std::optional<h::Process> strace;
  if (!ro.strace_to.empty()) {
    h::SpawnOptions so;
    so.argv = {"strace", "-f", "-c", "-o", ro.strace_to, "-p", std::to_string(agent->pid())};
    so.stderr_path = base + "-strace.log";
    auto spawned = h::Process::Spawn(so);
    if (!spawned.ok()) return r;
    strace.emplace(std::move(*spawned));
    // Attached once every thread of the agent has strace as its tracer.
    const std::string tasks = "/proc/" + std::to_string(agent->pid()) + "/task";
    auto all_traced = [&tasks] {
      DIR* d = ::opendir(tasks.c_str());
      if (d == nullptr) return false;
      bool all = true;
      while (dirent* e = ::readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream st(tasks + "/" + e->d_name + "/status");
        std::string line;
        while (std::getline(st, line)) {
          if (line.rfind("TracerPid:", 0) == 0) all = all && std::stol(line.substr(10)) != 0;
        }
      }
      ::closedir(d);
      return all;
    };
    if (!h::PollUntil(all_traced, 10s, 10ms)) {
      std::fprintf(stderr,
                   "bench: strace did not attach to the agent (see %s-strace.log; attaching needs root or "
                   "kernel.yama.ptrace_scope = 0; --strace-events 0 skips these runs)\n",
                   base.c_str());
      return r;
    }
  }
  // Events in the store, as the agent tells them on its status socket (it
  // holds the store locked). Each ask builds a health record in the agent:
  // a few store counts, well under 1 % of its time at these rates.
  const std::string state = base + "-state";
  auto stored = [&state] { return edgesync::harness::ReadAgentFigures(state).buffered_events; };
  LineCounter decoded(base + ".ndjson", "\"seq\"");
  edgesync::bench::CountSampler sampler(
      [&] { return static_cast<double>(durable_only ? stored() : decoded.Count()); }, kSampleEvery);
  const pid_t broker_pid = BrokerPid(*broker);
  const double broker_before = edgesync::bench::CpuSeconds(broker_pid);
  const double agent_before = edgesync::bench::CpuSeconds(agent->pid());
  auto start = Clock::now();
  if (!PublishAll(broker->port(), n, "bench/t1/payment/authorization")) return r;
  bool done = durable_only
                  ? h::PollUntil([&] { return stored() >= n; }, 300s, 10ms)
                  : h::PollUntil([&] { return CountLines(base + ".ndjson", "\"seq\"") >= n; }, 300s, 10ms);
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.own_cpu_s = edgesync::bench::CpuSeconds(agent->pid()) - agent_before;
  r.broker_cpu_s = edgesync::bench::CpuSeconds(broker_pid) - broker_before;
  r.rate = edgesync::bench::PerSecond(sampler.Stop());
  if (strace) (void)strace->Stop(10s);  // SIGTERM: strace detaches and writes its summary
  if (durable_only) (void)cluster->AllBrokersUp();
  if (!done) {
    std::fprintf(stderr, "bench: run %s: not everything arrived\n", name.c_str());
    return r;
  }
  r.peak_rss_mib = static_cast<double>(edgesync::bench::StatusKib(agent->pid(), "VmHWM")) / 1024.0;
  (void)agent->Stop(30s);
  (void)unpack->Stop(5s);
  ForgetSession(broker->port(), client_id);
  return r;
}

using edgesync::bench::Median;

}  // namespace

int main(int argc, char** argv) {
  uint64_t events = 20000;
  uint64_t strace_events = 20000;
  int runs = 5;
  std::string series_dir;
  CLI::App app{"edgesync-bench-ingest: agent ingest rate, CPU and syscalls per event beside mosquitto_sub -q 1"};
  app.add_option("--events", events, "events per run")->capture_default_str();
  app.add_option("--runs", runs, "runs of each (median reported)")->capture_default_str();
  app.add_option("--series", series_dir, "write the rate over time (ingest_rate.tsv) into this directory");
  app.add_option("--strace-events", strace_events, "events of the strace runs (0: none)")->capture_default_str();
  std::string compare_bin;
  app.add_option("--compare-agent", compare_bin,
                 "a directory with another build's edgesync (e.g. the commit before a change): each round "
                 "also runs it to Kafka, plain and encrypted, for its CPU per event in the same rounds");
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
  if (BrokerPid(**broker) <= 0) {
    std::fprintf(stderr, "bench: cannot find the broker's process\n");
    return 1;
  }
  // The central key for the encrypted runs (edgesync-unpack opens them with
  // the private half).
  edgesync::crypto::Key central{};
  (void)edgesync::crypto::Random(&central);
  const std::string pub_path = work->path() + "/central.pub", key_path = work->path() + "/central.key";
  std::ofstream(pub_path) << edgesync::crypto::PublicKeyPem(*edgesync::crypto::X25519PublicKey(central));
  std::ofstream(key_path) << edgesync::crypto::PrivateKeyPem(central);

  const double n = static_cast<double>(events);
  std::vector<double> base_rates, agent_rates, durable_rates, rss, rss_enc;
  // CPU, µs per event.
  std::vector<double> sub_cpu, agent_cpu, agent_enc_cpu, broker_alone, broker_sub, broker_agent, broker_agent_enc;
  // Per-run ratios to mosquitto_sub's own CPU in the same round.
  std::vector<double> agent_cpu_ratio, agent_enc_cpu_ratio, device_ratio, device_enc_ratio;
  // --compare-agent: the other build's, µs per event and per-round ratios to mosquitto_sub's.
  std::vector<double> other_cpu, other_enc_cpu, other_cpu_ratio, other_enc_cpu_ratio;
  std::vector<std::vector<std::pair<std::string, edgesync::bench::Series>>> series;  // per run
  for (int run = 0; run < runs; ++run) {
    const std::string id = std::to_string(run);
    const double alone = BrokerAloneCpu(broker->get(), events);
    Run b = BaselineRun(broker->get(), events, work->path(), "bench-sub-" + id);
    Run a = AgentRunOnce(broker->get(), cluster->get(), events, work->path(), "run" + id, {});
    AgentRunOptions durable;
    durable.durable_only = true;
    Run d = AgentRunOnce(broker->get(), cluster->get(), events, work->path(), "durable" + id, durable);
    AgentRunOptions encrypted;
    encrypted.public_key = pub_path;
    encrypted.private_key = key_path;
    Run e = AgentRunOnce(broker->get(), cluster->get(), events, work->path(), "enc" + id, encrypted);
    if (alone < 0 || b.seconds <= 0 || a.seconds <= 0 || d.seconds <= 0 || e.seconds <= 0) {
      std::fprintf(stderr, "bench: run %d failed\n", run);
      return 1;
    }
    if (!compare_bin.empty()) {
      // The harness starts EDGESYNC_BIN_DIR's programs when it has them:
      // here only edgesync, for these two runs.
      ::setenv("EDGESYNC_BIN_DIR", compare_bin.c_str(), 1);
      Run o = AgentRunOnce(broker->get(), cluster->get(), events, work->path(), "other" + id, {});
      Run oe = AgentRunOnce(broker->get(), cluster->get(), events, work->path(), "other-enc" + id, encrypted);
      ::unsetenv("EDGESYNC_BIN_DIR");
      if (o.seconds <= 0 || oe.seconds <= 0) {
        std::fprintf(stderr, "bench: run %d of %s/edgesync failed\n", run, compare_bin.c_str());
        return 1;
      }
      other_cpu.push_back(o.own_cpu_s * 1e6 / n);
      other_enc_cpu.push_back(oe.own_cpu_s * 1e6 / n);
      const double sub_us = b.own_cpu_s * 1e6 / n;
      other_cpu_ratio.push_back(other_cpu.back() / sub_us);
      other_enc_cpu_ratio.push_back(other_enc_cpu.back() / sub_us);
      std::fprintf(stderr, "bench: run %d: CPU us/event of %s/edgesync: %.2f, encrypted %.2f\n", run + 1,
                   compare_bin.c_str(), other_cpu.back(), other_enc_cpu.back());
    }
    series.push_back({{"agent to Kafka (decoded by edgesync-unpack)", std::move(a.rate)},
                      {"agent durable (in the store, Kafka down)", std::move(d.rate)},
                      {"baseline: mosquitto_sub -q 1", std::move(b.rate)}});
    base_rates.push_back(n / b.seconds);
    agent_rates.push_back(n / a.seconds);
    durable_rates.push_back(n / d.seconds);
    rss.push_back(std::max(a.peak_rss_mib, d.peak_rss_mib));
    rss_enc.push_back(e.peak_rss_mib);
    auto us = [n](double s) { return s * 1e6 / n; };
    sub_cpu.push_back(us(b.own_cpu_s));
    agent_cpu.push_back(us(a.own_cpu_s));
    agent_enc_cpu.push_back(us(e.own_cpu_s));
    broker_alone.push_back(us(alone));
    broker_sub.push_back(us(b.broker_cpu_s - alone));
    broker_agent.push_back(us(a.broker_cpu_s - alone));
    broker_agent_enc.push_back(us(e.broker_cpu_s - alone));
    agent_cpu_ratio.push_back(agent_cpu.back() / sub_cpu.back());
    agent_enc_cpu_ratio.push_back(agent_enc_cpu.back() / sub_cpu.back());
    device_ratio.push_back((agent_cpu.back() + broker_agent.back()) / sub_cpu.back());
    device_enc_ratio.push_back((agent_enc_cpu.back() + broker_agent_enc.back()) / sub_cpu.back());
    std::fprintf(stderr,
                 "bench: run %d: mosquitto_sub %.0f events/s, agent to Kafka %.0f events/s, "
                 "agent durable %.0f events/s, peak RSS %.1f MiB (encrypted %.1f)\n",
                 run + 1, base_rates.back(), agent_rates.back(), durable_rates.back(), rss.back(), rss_enc.back());
    std::fprintf(stderr,
                 "bench: run %d: CPU us/event: mosquitto_sub %.2f (broker delivering %.2f), agent %.2f "
                 "(broker delivering %.2f), agent encrypted %.2f (broker delivering %.2f), broker with no "
                 "subscriber %.2f\n",
                 run + 1, sub_cpu.back(), broker_sub.back(), agent_cpu.back(), broker_agent.back(),
                 agent_enc_cpu.back(), broker_agent_enc.back(), broker_alone.back());
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
  // Syscalls per event: one run of each under strace, after the timed ones.
  SyscallCounts sub_calls, agent_calls;
  if (strace_events > 0) {
    const std::string sub_out = work->path() + "/strace-sub.txt", agent_out = work->path() + "/strace-agent.txt";
    Run b = BaselineRun(broker->get(), strace_events, work->path(), "bench-sub-strace", sub_out);
    AgentRunOptions traced;
    traced.strace_to = agent_out;
    Run a = AgentRunOnce(broker->get(), cluster->get(), strace_events, work->path(), "strace", traced);
    sub_calls = ReadStraceSummary(sub_out);
    agent_calls = ReadStraceSummary(agent_out);
    if (b.seconds <= 0 || a.seconds <= 0 || sub_calls.total == 0 || agent_calls.total == 0) {
      std::fprintf(stderr, "bench: the strace runs failed (is strace installed? script/bootstrap installs it)\n");
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
  std::printf("agent_enc_peak_rss_mib=%.1f\n", Median(rss_enc));
  std::printf("cpu_us_per_event_mosquitto_sub=%.2f\n", Median(sub_cpu));
  std::printf("cpu_us_per_event_agent=%.2f\n", Median(agent_cpu));
  std::printf("cpu_us_per_event_agent_enc=%.2f\n", Median(agent_enc_cpu));
  std::printf("cpu_us_per_event_broker_alone=%.2f\n", Median(broker_alone));
  std::printf("cpu_us_per_event_broker_for_sub=%.2f\n", Median(broker_sub));
  std::printf("cpu_us_per_event_broker_for_agent=%.2f\n", Median(broker_agent));
  std::printf("cpu_us_per_event_broker_for_agent_enc=%.2f\n", Median(broker_agent_enc));
  std::printf("cpu_agent_ratio=%.2f\n", Median(agent_cpu_ratio));
  std::printf("cpu_agent_enc_ratio=%.2f\n", Median(agent_enc_cpu_ratio));
  std::printf("cpu_device_ratio=%.2f\n", Median(device_ratio));
  std::printf("cpu_device_enc_ratio=%.2f\n", Median(device_enc_ratio));
  if (!compare_bin.empty()) {
    std::printf("compare_cpu_us_per_event_agent=%.2f\n", Median(other_cpu));
    std::printf("compare_cpu_us_per_event_agent_enc=%.2f\n", Median(other_enc_cpu));
    std::printf("compare_cpu_agent_ratio=%.2f\n", Median(other_cpu_ratio));
    std::printf("compare_cpu_agent_enc_ratio=%.2f\n", Median(other_enc_cpu_ratio));
  }
  if (strace_events > 0) {
    const double sn = static_cast<double>(strace_events);
    std::printf("syscalls_per_event_agent=%.2f\n", static_cast<double>(agent_calls.total) / sn);
    std::printf("syscalls_per_event_mosquitto_sub=%.2f\n", static_cast<double>(sub_calls.total) / sn);
    std::printf("syscalls_agent_top=%s\n", PerEvent(agent_calls, strace_events, 6).c_str());
    std::printf("syscalls_mosquitto_sub_top=%s\n", PerEvent(sub_calls, strace_events, 6).c_str());
    std::printf("strace_events=%llu\n", static_cast<unsigned long long>(strace_events));
  }
  std::printf("events_per_run=%llu\nruns=%d\n", static_cast<unsigned long long>(events), runs);
  return 0;
}

// edgesync-bench-drain: how fast the agent empties a backlog into Kafka after
// an outage, beside `kcat -P -z zstd` producing the same records from a file
// to the same cluster in the same run (the baseline: librdkafka's own
// producer, batching and compressing per message set). Medians of --runs.
//
// 1. The backlog: N generated payment events (~300-byte JSON, random ids;
//    bench/payment_events.h) accepted in this process by the buffer library
//    exactly as the agent accepts them (Store + Sealer with the options the
//    agent derives from the same config file: device id, stream, topic,
//    batch limits, zstd level), into a state directory (store.db, journal/)
//    that the agent then opens as its own. Built once; each run drains a
//    fresh copy. The same payloads go to a file, one per line, for kcat.
// 2. Agent: `edgesync run --config` on the copy, its local mosquitto up
//    (nothing published), the Kafka mock cluster up. The clock runs from
//    the spawn until the store holds no batch: every batch delivered
//    (acks=all, idempotent) and deleted on its delivery report. The store's
//    counts are polled every 10 ms on the agent's status socket (the agent
//    holds the store locked), and the agent's VmRSS at each poll;
//    VmHWM and CPU (utime+stime of all its threads) read once the store is
//    empty, before SIGTERM. Also on stderr, from the same polling: when the
//    first batch left the store, and the longest time the store's row count
//    stood still after that (a stall: nothing delivered and deleted). Then,
//    outside the clock, the agent is watched until its CPU time stops
//    growing (the store gives its space back after a drain): CPU and disk
//    bytes written (/proc/<pid>/io write_bytes) at the drain's end and then.
// 3. Baseline: kcat -P -z zstd -l FILE with acks=all, enable.idempotence
//    and linger.ms=5 (the agent's settings), into a fresh topic of the same
//    cluster. The clock runs from the spawn until kcat exits (it exits once
//    every message is acknowledged). CPU from getrusage(RUSAGE_CHILDREN).
// With --series DIR, the VmRSS samples of the agent and of kcat over their
// clocks in the run of the median agent rate, as DIR/drain_rss.tsv
// (bench/plots/drain_rss.gp).
//
// The mock cluster (librdkafka's, harness/kafka_mock_main.cpp) keeps at most
// 5 MiB and 100,000 message sets per partition and silently drops the oldest
// beyond that: the backlog does not fit, but the delivery reports still
// succeed, so this measures throughput, not what a consumer could read back.
//
// Figures go to stdout as key=value lines (drain_*); per-run details to stderr.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/config.h"
#include "harness/agent_figures.h"
#include "bench/agent_buffer.h"
#include "bench/median.h"
#include "bench/proc_stats.h"
#include "bench/payment_events.h"
#include "bench/series.h"
#include "format/record.h"
#include "buffer/sealer.h"
#include "buffer/store.h"
#include "harness/agent_process.h"
#include "harness/kafka_cluster.h"
#include "harness/mosquitto.h"
#include "harness/process.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace h = edgesync::harness;
using edgesync::bench::ChildrenCpuSeconds;
using edgesync::bench::CpuSeconds;
using edgesync::bench::Median;
using edgesync::bench::StatusKib;

constexpr int kPartitions = 3;                  // of every topic
constexpr const char* kAgentTopic = "bench.drain.agent";
constexpr auto kPoll = 10ms;                    // store / exit polling
constexpr int kRssEvery = 1;                    // polls between RSS samples (10 ms: a drain of
                                                // 1,000,000 events takes well under a second)
constexpr long kTmpfsMagic = 0x01021994;        // statfs f_type of tmpfs

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Mib(uint64_t kib) { return static_cast<double>(kib) / 1024.0; }

// The agent's configuration without the lines PointConfigAt fills in: the
// product's defaults (batches of 1000 events / 512 KiB / 2 s, zstd 3) for
// everything but where things are, and no health records (the counts
// checked after the drain are the backlog's alone).
std::string AgentConfig(const std::string& client_id) {
  return std::string(R"([agent]
device_id = "site-0001"
stats_interval = 0
heartbeat_interval = 0
[mqtt]
host = "127.0.0.1"
client_id = ")") + client_id + R"("
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
kafka_topic = ")" + kAgentTopic + "\"\n";
}



// write_bytes of /proc/<pid>/io: bytes the process dirtied in the page
// cache of a block device (see bench/README.md, buffer); 0 when unreadable.
uint64_t WriteBytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/io");
  std::string key;
  uint64_t value = 0;
  while (in >> key >> value) {
    if (key == "write_bytes:") return value;
  }
  return 0;
}


// Rows (batches and gap records) in the live store, as the agent tells them
// on its status socket (it holds the store locked while it runs). -1 when
// it does not answer.
int64_t RowsLeft(const std::string& state_dir) {
  const edgesync::harness::AgentFigures st = edgesync::harness::ReadAgentFigures(state_dir);
  return st.ok ? static_cast<int64_t>(st.buffered_batches + st.buffered_gap_records) : -1;
}

// --- 1. The backlog ----------------------------------------------------------

struct Backlog {
  bool ok = false;
  uint64_t events = 0, batches = 0;
  uint64_t envelope_bytes = 0;  // what the agent sends: the envelopes
  uint64_t json_bytes = 0;      // the payloads (kcat's messages)
};

// Accepts `n` generated events through a Sealer into `state` as the agent
// configured by `config_text` would have (the agent's Open, without MQTT
// and Kafka), and writes their payloads, one a line, to `lines_path`.
Backlog BuildBacklog(const std::string& config_text, const std::string& state, uint64_t n,
                     const std::string& lines_path) {
  Backlog b;
  edgesync::Env* env = edgesync::Env::Default();
  std::optional<edgesync::bench::AgentBuffer> buf =
      edgesync::bench::OpenAgentBuffer(config_text, "drain-bench.toml", state);
  if (!buf) return b;
  edgesync::Sealer* sealer = buf->sealer.get();
  edgesync::Store* store = buf->store.get();
  std::FILE* lines = std::fopen(lines_path.c_str(), "w");
  if (lines == nullptr) return b;
  sealer->Start();
  // Receive times of an outage that ends now (the store's max_age, 7 days,
  // must not expire any of it).
  const int64_t start_us = env->NowMicros() - static_cast<int64_t>(n) * edgesync::bench::EventGenerator::kMeanStepUs;
  edgesync::bench::EventGenerator gen(7, start_us);
  edgesync::Record r;
  r.qos = 1;
  bool ok = true;
  for (uint64_t i = 0; i < n && ok; ++i) {
    edgesync::bench::EventGenerator::Event e = gen.Next();
    r.topic = std::move(e.topic);
    r.received_at_us = e.received_at_us;
    r.payload = std::move(e.payload);
    b.json_bytes += r.payload.size();
    ok = std::fwrite(r.payload.data(), 1, r.payload.size(), lines) == r.payload.size() &&
         std::fputc('\n', lines) != EOF;
    edgesync::Status st = sealer->Accept(0, r);  // stream 0: "payments"
    if (!st.ok()) {
      std::fprintf(stderr, "bench: accept: %s\n", st.ToString().c_str());
      ok = false;
    }
  }
  ok = std::fclose(lines) == 0 && ok;
  edgesync::Status stopped = sealer->Stop();
  if (!stopped.ok()) {
    std::fprintf(stderr, "bench: sealing: %s\n", stopped.ToString().c_str());
    ok = false;
  }
  auto counts = store->Counts();
  if (!ok || !counts.ok() || counts->events != n || counts->gap_records != 0) {
    std::fprintf(stderr, "bench: the backlog is not what was accepted\n");
    return b;
  }
  b.events = counts->events;
  b.batches = counts->batches;
  b.envelope_bytes = counts->bytes;
  b.ok = true;
  return b;  // closing the store checkpoints its WAL into store.db
}

// A copy of the state directory, written through to the disk so that its
// write-back does not fall into the measured drain.
bool CopyState(const std::string& from, const std::string& to) {
  std::error_code ec;
  std::filesystem::remove_all(to, ec);
  std::filesystem::copy(from, to, std::filesystem::copy_options::recursive, ec);
  if (ec) {
    std::fprintf(stderr, "bench: copying %s: %s\n", from.c_str(), ec.message().c_str());
    return false;
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(to)) {
    const int fd = ::open(entry.path().c_str(), O_RDONLY);
    if (fd < 0) return false;
    const bool synced = ::fsync(fd) == 0;
    ::close(fd);
    if (!synced) return false;
  }
  return true;
}

// --- 2. and 3. The runs ------------------------------------------------------

struct RunResult {
  double seconds = -1;
  double cpu_seconds = 0;
  double peak_rss_mib = 0;     // VmHWM at the end (kcat: the last one read)
  double max_sampled_rss_mib = 0;
  double startup_seconds = 0;  // agent: until its log says it runs
  double first_out_seconds = 0;  // agent: until the first batch left the store
  double longest_stall_seconds = 0;  // agent: longest time the store's row count stood still
  int64_t stall_rows = 0;            // the rows left during that stall
  uint64_t write_bytes = 0;          // agent: /proc/<pid>/io write_bytes when drained
  // Agent: once drained, until its CPU time stops growing (the store gives
  // back its space by an incremental vacuum after a drain; see store.h).
  double idle_after_seconds = 0, cpu_seconds_idle = 0;
  uint64_t write_bytes_idle = 0;
  edgesync::bench::Series rss;  // (seconds since the spawn, VmRSS MiB) every kRssEvery polls
};

// Samples `p`'s RSS every kRssEvery polls while `done()` is false and `p`
// runs, into r->rss with the time since `start` (its spawn). Returns false
// on timeout.
template <typename Done>
bool Watch(h::Process* p, Clock::time_point start, Done done, RunResult* r, std::chrono::seconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (int i = 0;; ++i) {
    if (done()) return true;
    if (Clock::now() > deadline) return false;
    if (i % kRssEvery == 0) {
      const double rss = Mib(StatusKib(p->pid(), "VmRSS"));
      if (rss > 0) r->rss.emplace_back(Seconds(Clock::now() - start), rss);  // 0: it has exited
      r->max_sampled_rss_mib = std::max(r->max_sampled_rss_mib, rss);
      const uint64_t hwm = StatusKib(p->pid(), "VmHWM");
      if (hwm > 0) r->peak_rss_mib = Mib(hwm);
    }
    std::this_thread::sleep_for(kPoll);
  }
}

// The last value of `key` (e.g. "uploaded=") in the agent's log; -1 if none.
int64_t LastCounter(const std::string& log, const std::string& key) {
  const size_t at = log.rfind(" " + key);
  if (at == std::string::npos) return -1;
  return std::atoll(log.c_str() + at + 1 + key.size());
}

RunResult AgentRun(h::MosquittoBroker* broker, h::KafkaCluster* cluster, const std::string& dir,
                   const std::string& pristine, const Backlog& backlog, int run, bool no_mqtt) {
  RunResult r;
  const std::string base = dir + "/agent-" + std::to_string(run), state = base + "-state";
  if (!CopyState(pristine, state)) return r;
  const int port = no_mqtt ? h::FreeLoopbackPort() : broker->port();
  std::ofstream(base + ".toml") << h::PointConfigAt(
      AgentConfig("edgesync-bench-drain-" + std::to_string(run)), port, cluster->bootstrap(), state);
  h::SpawnOptions o;
  o.argv = {h::ProgramPath("edgesync"), "run", "--config", base + ".toml"};
  o.stderr_path = base + ".log";
  const auto start = Clock::now();
  auto agent = h::Process::Spawn(o);
  if (!agent.ok()) {
    std::fprintf(stderr, "bench: %s\n", agent.status().ToString().c_str());
    return r;
  }
  bool running_logged = false;
  bool exited = false;
  int64_t last_rows = -1;
  Clock::time_point last_change = start;
  const bool drained = Watch(&*agent, start, [&] {
    const auto now = Clock::now();
    if (!running_logged && h::ReadWholeFile(base + ".log").find("running: device") != std::string::npos) {
      running_logged = true;
      r.startup_seconds = Seconds(now - start);
    }
    if (!agent->Running()) {
      exited = true;
      return true;
    }
    const int64_t rows = RowsLeft(state);
    if (rows < 0) return false;
    if (rows != last_rows) {
      // A stall: time the row count stood still once uploading had begun.
      if (last_rows >= 0 && r.first_out_seconds > 0 && Seconds(now - last_change) > r.longest_stall_seconds) {
        r.longest_stall_seconds = Seconds(now - last_change);
        r.stall_rows = last_rows;
      }
      if (last_rows >= 0 && r.first_out_seconds == 0) r.first_out_seconds = Seconds(now - start);
      last_rows = rows;
      last_change = now;
    }
    return rows == 0;
  }, &r, 600s);
  const double took = Seconds(Clock::now() - start);
  if (!drained || exited) {
    std::fprintf(stderr, "bench: agent run %d: %s; its log: %s\n", run,
                 exited ? "the agent exited" : "the store did not empty in 600 s", o.stderr_path.c_str());
    return r;
  }
  r.cpu_seconds = CpuSeconds(agent->pid());
  r.peak_rss_mib = Mib(StatusKib(agent->pid(), "VmHWM"));
  r.write_bytes = WriteBytes(agent->pid());
  // Outside the clock: what the agent still does for the drain once the store is empty.
  const auto drained_at = Clock::now();
  double cpu = r.cpu_seconds, still_since = 0;
  while (Seconds(Clock::now() - drained_at) < 30 && Seconds(Clock::now() - drained_at) - still_since < 1) {
    std::this_thread::sleep_for(100ms);
    const double now_cpu = CpuSeconds(agent->pid());
    if (now_cpu - cpu >= 0.02) {
      cpu = now_cpu;
      still_since = Seconds(Clock::now() - drained_at);
    }
  }
  r.idle_after_seconds = still_since;
  r.cpu_seconds_idle = cpu;
  r.write_bytes_idle = WriteBytes(agent->pid());
  (void)agent->Stop(30s);
  // Delivered, not given up: the agent's shutdown line counts what Kafka acknowledged.
  const std::string log = h::ReadWholeFile(o.stderr_path);
  const int64_t uploaded = LastCounter(log, "uploaded=");
  if (uploaded != static_cast<int64_t>(backlog.events) || log.find("gave up") != std::string::npos ||
      agent->exit_status() != 0) {
    std::fprintf(stderr, "bench: agent run %d: uploaded=%lld of %llu, exit %d; see %s\n", run,
                 static_cast<long long>(uploaded), static_cast<unsigned long long>(backlog.events),
                 agent->exit_status().value_or(-1), o.stderr_path.c_str());
    return r;
  }
  std::error_code ec;
  std::filesystem::remove_all(state, ec);
  r.seconds = took;
  return r;
}

// kcat's producer settings comparable to the agent's (sync/uploader.cpp):
// acks=all, idempotence, linger.ms=5; it compresses message sets with zstd
// where the agent sends envelopes compressed already. kcat's default
// partitioner spreads the (keyless) lines over the topic's partitions,
// while the agent's device-id key puts all of one device's batches on one.
RunResult KcatRun(h::KafkaCluster* cluster, const std::string& dir, const std::string& lines,
                  int run) {
  RunResult r;
  const std::string topic = "bench.drain.kcat." + std::to_string(run);
  if (!cluster->CreateTopic(topic, kPartitions).ok()) return r;
  h::SpawnOptions o;
  o.argv = {"kcat", "-P", "-b", cluster->bootstrap(), "-t", topic, "-z", "zstd",
            "-X", "acks=all", "-X", "enable.idempotence=true", "-X", "linger.ms=5", "-l", lines};
  o.stdout_path = dir + "/kcat-" + std::to_string(run) + ".out";
  o.stderr_path = dir + "/kcat-" + std::to_string(run) + ".log";
  const double cpu_before = ChildrenCpuSeconds();
  const auto start = Clock::now();
  auto kcat = h::Process::Spawn(o);
  if (!kcat.ok()) {
    std::fprintf(stderr, "bench: kcat: %s (script/bootstrap installs it)\n",
                 kcat.status().ToString().c_str());
    return r;
  }
  const bool exited = Watch(&*kcat, start, [&] { return !kcat->Running(); }, &r, 600s);
  const double took = Seconds(Clock::now() - start);
  if (!exited || kcat->exit_status() != 0) {
    std::fprintf(stderr, "bench: kcat run %d: %s; see %s\n", run,
                 exited ? "failed" : "still running after 600 s", o.stderr_path.c_str());
    return r;
  }
  const std::string log = h::ReadWholeFile(o.stderr_path);
  if (log.find("ERROR") != std::string::npos || log.find("failed") != std::string::npos) {
    std::fprintf(stderr, "bench: kcat run %d reported errors; see %s\n", run, o.stderr_path.c_str());
    return r;
  }
  r.cpu_seconds = ChildrenCpuSeconds() - cpu_before;  // kcat is the only child reaped meanwhile
  r.seconds = took;
  return r;
}

bool IsTmpfs(const std::string& path) {
  struct statfs s {};
  return ::statfs(path.c_str(), &s) == 0 && static_cast<long>(s.f_type) == kTmpfsMagic;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t events = 1'000'000;
  int runs = 3;
  bool no_mqtt = false;
  std::string series_dir;
  CLI::App app{"edgesync-bench-drain: the agent draining a backlog to Kafka, beside kcat -P -z zstd"};
  app.add_option("--events", events, "events in the backlog")->capture_default_str();
  app.add_option("--runs", runs, "runs of each (median reported)")->capture_default_str();
  app.add_flag("--no-mqtt", no_mqtt, "start no mosquitto: the agent's MQTT side cannot connect");
  app.add_option("--series", series_dir, "write the RSS over time (drain_rss.tsv) into this directory");
  CLI11_PARSE(app, argc, argv);
  if (runs < 1 || events < 1) {
    std::fprintf(stderr, "bench: --runs and --events must be positive\n");
    return 2;
  }

  auto work = h::TempDir::Create("edgesync-bench-drain");
  if (!work.ok()) {
    std::fprintf(stderr, "bench: %s\n", work.status().ToString().c_str());
    return 1;
  }
  if (IsTmpfs(work->path())) {
    std::fprintf(stderr, "bench: WARNING: %s is on tmpfs: the store's fsyncs cost nothing there; "
                 "set TMPDIR to a directory on a disk\n", work->path().c_str());
  }
  const std::string pristine = *work / "backlog-state", lines = *work / "backlog.jsonl";
  const auto build_start = Clock::now();
  const Backlog backlog = BuildBacklog(h::PointConfigAt(AgentConfig("edgesync-bench-drain"), 1883,
                                                        "127.0.0.1:9092", pristine),
                                       pristine, events, lines);
  if (!backlog.ok) return 1;
  std::fprintf(stderr,
               "bench: backlog of %llu events in %llu batches built in %.1f s: %llu bytes of JSON, "
               "%llu bytes of envelopes (%.3f per JSON byte)\n",
               static_cast<unsigned long long>(backlog.events),
               static_cast<unsigned long long>(backlog.batches), Seconds(Clock::now() - build_start),
               static_cast<unsigned long long>(backlog.json_bytes),
               static_cast<unsigned long long>(backlog.envelope_bytes),
               static_cast<double>(backlog.envelope_bytes) / static_cast<double>(backlog.json_bytes));

  std::unique_ptr<h::MosquittoBroker> broker;
  if (!no_mqtt) {
    auto b = h::MosquittoBroker::Start(*work / "broker");
    if (!b.ok()) {
      std::fprintf(stderr, "bench: mosquitto: %s\n", b.status().ToString().c_str());
      return 1;
    }
    broker = std::move(b).value();
  }
  auto cluster = h::KafkaCluster::Start(1, {{kAgentTopic, kPartitions}});
  if (!cluster.ok()) {
    std::fprintf(stderr, "bench: Kafka mock cluster: %s\n", cluster.status().ToString().c_str());
    return 1;
  }

  std::vector<double> agent_rates, kcat_rates, rss, agent_cpu, kcat_cpu, kcat_rss, agent_cpu_idle,
      agent_written, agent_written_idle;
  std::vector<std::pair<edgesync::bench::Series, edgesync::bench::Series>> rss_series;  // agent, kcat per run
  for (int run = 0; run < runs; ++run) {
    const RunResult k = KcatRun(cluster->get(), work->path(), lines, run);
    const RunResult a = AgentRun(broker.get(), cluster->get(), work->path(), pristine, backlog, run, no_mqtt);
    if (k.seconds <= 0 || a.seconds <= 0) {
      std::fprintf(stderr, "bench: run %d failed (working directory kept: %s)\n", run + 1,
                   work->path().c_str());
      work->Keep();
      return 1;
    }
    const double n = static_cast<double>(backlog.events);
    kcat_rates.push_back(n / k.seconds);
    agent_rates.push_back(n / a.seconds);
    rss.push_back(a.peak_rss_mib);
    agent_cpu.push_back(a.cpu_seconds / n * 1e6);
    kcat_cpu.push_back(k.cpu_seconds / n * 1e6);
    kcat_rss.push_back(k.peak_rss_mib);
    agent_cpu_idle.push_back(a.cpu_seconds_idle / n * 1e6);
    agent_written.push_back(static_cast<double>(a.write_bytes) / static_cast<double>(backlog.envelope_bytes));
    agent_written_idle.push_back(static_cast<double>(a.write_bytes_idle) / static_cast<double>(backlog.envelope_bytes));
    rss_series.emplace_back(a.rss, k.rss);
    std::fprintf(stderr,
                 "bench: run %d: kcat %.2f s = %.0f events/s, CPU %.2f s, peak RSS >= %.1f MiB; "
                 "agent %.2f s = %.0f events/s, CPU %.2f s, peak RSS %.1f MiB (largest VmRSS sample "
                 "%.1f MiB), logged running after %.2f s, first batch out after %.2f s, longest "
                 "stall %.2f s at %lld rows left, wrote %.1f MiB; after the drain busy for %.1f s "
                 "more, reaching CPU %.2f s and %.1f MiB written; ratio %.2f\n",
                 run + 1, k.seconds, kcat_rates.back(), k.cpu_seconds, k.peak_rss_mib, a.seconds,
                 agent_rates.back(), a.cpu_seconds, a.peak_rss_mib, a.max_sampled_rss_mib,
                 a.startup_seconds, a.first_out_seconds, a.longest_stall_seconds,
                 static_cast<long long>(a.stall_rows), Mib(a.write_bytes >> 10), a.idle_after_seconds,
                 a.cpu_seconds_idle, Mib(a.write_bytes_idle >> 10), agent_rates.back() / kcat_rates.back());
  }
  const double agent = Median(agent_rates), kcat = Median(kcat_rates);
  if (!series_dir.empty()) {
    // The run whose agent rate is the median (Median picks one of them).
    const size_t at = std::find(agent_rates.begin(), agent_rates.end(), agent) - agent_rates.begin();
    const std::string comment = "edgesync-bench-drain: VmRSS (MiB) every 10 ms from the spawn, run " +
                                std::to_string(at + 1) + " of " + std::to_string(runs) +
                                " (the median agent rate), " + std::to_string(backlog.events) + " events";
    if (!edgesync::bench::WriteSeries(
            series_dir + "/drain_rss.tsv", comment, "t_s\trss_mib",
            {{"agent: edgesync run, until its store is empty", rss_series[at].first},
             {"baseline: kcat -P -z zstd, until it exits", rss_series[at].second}})) {
      std::fprintf(stderr, "bench: cannot write %s/drain_rss.tsv\n", series_dir.c_str());
      return 1;
    }
  }
  std::printf("drain_agent_events_per_sec=%.0f\n", agent);
  std::printf("drain_kcat_events_per_sec=%.0f\n", kcat);
  std::printf("drain_ratio=%.2f\n", agent / kcat);
  std::printf("drain_agent_peak_rss_mib=%.1f\n", Median(rss));
  std::printf("drain_agent_peak_rss_mib_max=%.1f\n", *std::max_element(rss.begin(), rss.end()));
  std::printf("drain_agent_cpu_s_per_million=%.2f\n", Median(agent_cpu));
  std::printf("drain_kcat_cpu_s_per_million=%.2f\n", Median(kcat_cpu));
  std::printf("drain_agent_cpu_s_per_million_until_idle=%.2f\n", Median(agent_cpu_idle));
  std::printf("drain_agent_written_per_envelope_byte=%.2f\n", Median(agent_written));
  std::printf("drain_agent_written_per_envelope_byte_until_idle=%.2f\n", Median(agent_written_idle));
  std::printf("drain_kcat_peak_rss_mib=%.1f\n", Median(kcat_rss));
  std::printf("drain_envelope_bytes=%llu\n", static_cast<unsigned long long>(backlog.envelope_bytes));
  std::printf("drain_json_bytes=%llu\n", static_cast<unsigned long long>(backlog.json_bytes));
  std::printf("drain_envelope_per_json_byte=%.3f\n",
              static_cast<double>(backlog.envelope_bytes) / static_cast<double>(backlog.json_bytes));
  std::printf("drain_batches=%llu\n", static_cast<unsigned long long>(backlog.batches));
  std::printf("drain_events=%llu\ndrain_runs=%d\n", static_cast<unsigned long long>(backlog.events), runs);
  return 0;
}

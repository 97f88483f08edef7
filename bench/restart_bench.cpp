// edgesync-bench-restart: how soon the agent takes events again after a
// restart with a full store, and how soon it uploads again after a Kafka
// outage; each beside a baseline measured in the same run. Medians of --runs.
//
// 1. The store: N events (default 1,000,000) of ~330-byte JSON whose 300
//    random base64 characters leave ~240 bytes an event after zstd, accepted
//    in this process by the buffer library as the agent accepts them (Store +
//    Sealer, the agent's options from the same config file), so the store is
//    about the default quota (256 MiB) full. Built once, closed cleanly.
// 2. Restart to first event: `edgesync run` on that state directory, its
//    mosquitto up with a publisher sending QoS 1 events all along (the
//    broker queues them for the agent's persistent session while it is
//    away), the Kafka mock cluster's brokers down (nothing leaves the store,
//    so every run starts from the same full store). The clock runs from the
//    spawn until a write to the stream's journal grows a segment past what
//    it held before the spawn (inotify on the journal directory): the first
//    new event journaled. Cold: every file of the state directory (and the
//    config) dropped from the page cache with posix_fadvise(DONTNEED) first,
//    as after a reboot (the agent's binary and libraries stay cached; a
//    virtual disk may still be cached by its host). Warm: right after the
//    previous run. Each run after a clean stop (SIGTERM) and each after an
//    unclean one (SIGKILL: the store then runs quick_check at open, as every
//    start did before the check was deferred). After a clean stop the agent
//    logs how long its deferred check took once intake ran: reported too
//    (cold and warm). Baselines, same run: exec of `true` (the floor of
//    starting any process) and `sqlite3 STORE 'SELECT count(*) FROM
//    batches'`, cold and warm (the least a reader of the store does).
// 3. Resume after an outage: the agent on an empty state directory, the
//    publisher at 500 events/s, Kafka up until a batch was uploaded; then
//    every broker down for --outage-seconds, then up. The clock runs from
//    the brokers' return until the agent's status socket counts one more
//    uploaded batch (polled every 5 ms). The agent runs under `strace -f
//    --seccomp-bpf -e trace=connect`, which stops it only at connect(), so
//    its connection attempts to the cluster during the outage are counted
//    (per minute of outage). Baseline, same run, same cluster: the agent
//    with kafka.properties reconnect.backoff.max.ms = 10000, librdkafka's
//    default, which the agent used before.
//
// Prints a Markdown section (script/bench adds the machine, date and commit
// columns); per-run details to stderr.
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "agent/config.h"
#include "agent/status_socket.h"
#include "bench/agent_buffer.h"
#include "bench/median.h"
#include "buffer/sealer.h"
#include "buffer/store.h"
#include "format/record.h"
#include "harness/agent_process.h"
#include "harness/kafka_cluster.h"
#include "harness/mosquitto.h"
#include "harness/process.h"
#include "harness/publisher.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace h = edgesync::harness;
using edgesync::bench::Median;

constexpr const char* kTopic = "bench.restart";
constexpr const char* kStream = "payments";
constexpr long kTmpfsMagic = 0x01021994;  // statfs f_type of tmpfs

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// The product's defaults (health records every 60 s, one at start) but
// for where things are.
std::string AgentConfig(const std::string& extra_kafka = "") {
  return std::string(R"([agent]
device_id = "site-0001"
stats_interval = 0
[mqtt]
host = "127.0.0.1"
client_id = "edgesync-bench-restart"
[kafka]
)") + extra_kafka + R"(
[[streams]]
name = ")" + kStream + R"("
topics = ["terminal/+/payment/#"]
kafka_topic = ")" + kTopic + "\"\n";
}

// ~330 bytes of JSON, 300 of them random base64: ~240 bytes after zstd.
std::string Payload(std::mt19937_64& rng, uint64_t seq) {
  static const char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string p = "{\"terminal\":\"t-" + std::to_string(seq % 97) + "\",\"seq\":" + std::to_string(seq) +
                  ",\"token\":\"";
  for (int i = 0; i < 300; ++i) p.push_back(kB64[rng() & 63]);
  return p + "\"}";
}

// --- 1. The full store -------------------------------------------------------

struct Built {
  bool ok = false;
  uint64_t events = 0, batches = 0, bytes = 0, file_bytes = 0;
};

Built BuildStore(const std::string& config_text, const std::string& state, uint64_t n) {
  Built b;
  edgesync::Env* env = edgesync::Env::Default();
  {
    std::optional<edgesync::bench::AgentBuffer> buf =
        edgesync::bench::OpenAgentBuffer(config_text, "restart-bench.toml", state);
    if (!buf) return b;
    edgesync::Sealer* sealer = buf->sealer.get();
    edgesync::Store* store = buf->store.get();
    sealer->Start();
    std::mt19937_64 rng(11);
    const int64_t start_us = env->NowMicros() - static_cast<int64_t>(n) * 1000;  // within max_age
    edgesync::Record r;
    r.qos = 1;
    for (uint64_t i = 0; i < n; ++i) {
      r.topic = "terminal/t-" + std::to_string(i % 97) + "/payment/auth";
      r.received_at_us = start_us + static_cast<int64_t>(i) * 1000;
      r.payload = Payload(rng, i);
      edgesync::Status st = sealer->Accept(0, r);
      if (!st.ok()) {
        std::fprintf(stderr, "bench: accept: %s\n", st.ToString().c_str());
        return b;
      }
    }
    if (edgesync::Status st = sealer->Stop(); !st.ok()) {
      std::fprintf(stderr, "bench: sealing: %s\n", st.ToString().c_str());
      return b;
    }
    auto counts = store->Counts();
    if (!counts.ok() || counts->events != n || counts->gap_records != 0) {
      std::fprintf(stderr, "bench: the store does not hold the %llu events accepted (quota reached?)\n",
                   static_cast<unsigned long long>(n));
      return b;
    }
    b.events = counts->events;
    b.batches = counts->batches;
    b.bytes = counts->bytes;
  }  // closed cleanly after the check at its (first) open: the agent's start may defer it
  std::error_code ec;
  b.file_bytes = std::filesystem::file_size(state + "/store.db", ec);
  b.ok = !ec;
  return b;
}

// --- 2. Restart to first event -----------------------------------------------

// Drops the clean pages of every file under `dir` (and of `also`) from the page cache.
void EvictTree(const std::string& dir, const std::vector<std::string>& also = {}) {
  std::vector<std::string> files = also;
  std::error_code ec;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir, ec)) {
    if (e.is_regular_file()) files.push_back(e.path());
  }
  for (const std::string& f : files) {
    const int fd = ::open(f.c_str(), O_RDONLY);
    if (fd < 0) continue;
    (void)::fdatasync(fd);  // dirty pages cannot be dropped
    (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    ::close(fd);
  }
}

std::map<std::string, uint64_t> SegmentSizes(const std::string& dir) {
  std::map<std::string, uint64_t> out;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".log") out[e.path().filename()] = e.file_size(ec);
  }
  return out;
}

// Milliseconds from `start` until a segment in `dir` (watched by `ifd`)
// grows past its size in `before` (8, a bare header, for a new one); -1 on
// timeout.
double AwaitJournalGrowth(int ifd, const std::string& dir, const std::map<std::string, uint64_t>& before,
                          Clock::time_point start, std::chrono::seconds timeout) {
  alignas(inotify_event) char buf[8192];
  const auto deadline = start + timeout;
  while (Clock::now() < deadline) {
    pollfd p{ifd, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const ssize_t n = ::read(ifd, buf, sizeof buf);
    const auto at = Clock::now();
    for (ssize_t off = 0; off < n;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
      if (ev->len == 0) continue;
      const std::string name = ev->name;
      if (name.size() < 4 || name.substr(name.size() - 4) != ".log") continue;
      struct stat st {};
      if (::stat((dir + "/" + name).c_str(), &st) != 0) continue;
      auto it = before.find(name);
      const uint64_t had = it == before.end() ? 8 : it->second;
      if (static_cast<uint64_t>(st.st_size) > had) return Ms(at - start);
    }
  }
  return -1;
}

struct StartRun {
  double first_event_ms = -1;
  double check_ms = -1;  // how long the deferred check took, as the agent logs it; -1: none logged
};

// One start of the agent: `kill` ends it with SIGKILL (an unclean stop),
// else SIGTERM. `expect_deferred_check`: the stop before was clean, so the
// store defers its check, whose time the agent logs.
StartRun AgentStart(const std::string& config, const std::string& state, const std::string& log, bool cold,
                    bool kill, bool expect_deferred_check) {
  StartRun r;
  const std::string jdir = state + "/journal/" + kStream;
  std::error_code ec;
  std::filesystem::create_directories(jdir, ec);
  const auto before = SegmentSizes(jdir);
  if (cold) EvictTree(state, {config});
  const int ifd = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (ifd < 0 || ::inotify_add_watch(ifd, jdir.c_str(), IN_MODIFY | IN_CREATE) < 0) {
    std::fprintf(stderr, "bench: inotify on %s failed\n", jdir.c_str());
    if (ifd >= 0) ::close(ifd);
    return r;
  }
  std::filesystem::remove(log, ec);
  h::SpawnOptions o;
  o.argv = {h::ProgramPath("edgesync"), "run", "--config", config};
  o.stderr_path = log;
  const auto start = Clock::now();
  auto agent = h::Process::Spawn(o);
  if (!agent.ok()) {
    ::close(ifd);
    std::fprintf(stderr, "bench: %s\n", agent.status().ToString().c_str());
    return r;
  }
  r.first_event_ms = AwaitJournalGrowth(ifd, jdir, before, start, 120s);
  ::close(ifd);
  if (r.first_event_ms < 0) std::fprintf(stderr, "bench: no event journaled in 120 s; see %s\n", log.c_str());
  // Up before it is stopped; after a clean stop, its deferred check done
  // (up to 300 s for a cold 256 MiB file on a slow disk), so that this
  // run's stop is clean in the store's eyes too.
  h::PollUntil([&] { return h::ReadWholeFile(log).find("running: device") != std::string::npos; }, 60s, 10ms);
  if (expect_deferred_check &&
      h::PollUntil([&] { return h::ReadWholeFile(log).find("integrity check passed (") != std::string::npos; },
                   300s, 10ms)) {
    const std::string text = h::ReadWholeFile(log);
    r.check_ms = std::atof(text.c_str() + text.find("integrity check passed (") + 24);
  }
  if (kill) {
    (void)agent->Signal(SIGKILL);
    (void)agent->Wait(30s);
  } else {
    (void)agent->Stop(60s);
    if (agent->exit_status() != 0) {
      std::fprintf(stderr, "bench: agent exited %d; see %s\n", agent->exit_status().value_or(-1), log.c_str());
      r.first_event_ms = -1;
    }
  }
  return r;
}

double TimeExec(const std::vector<std::string>& argv, const std::vector<std::string>& evict) {
  for (const std::string& f : evict) EvictTree(f);
  const auto start = Clock::now();
  edgesync::Result<int> rc = h::RunToEnd(argv, "/dev/null", 60s);
  const double ms = Ms(Clock::now() - start);
  return rc.ok() && *rc == 0 ? ms : -1;
}

// --- 3. Resume after an outage ------------------------------------------------

int64_t UploadedBatches(const std::string& state) {
  edgesync::Result<std::string> doc = edgesync::QueryStatusSocket(state + "/status.sock", 2000);
  if (!doc.ok()) return -1;
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  uint64_t n = 0;
  if (parser.parse(*doc).get(e) != simdjson::SUCCESS || e["uploaded_batches"].get(n) != simdjson::SUCCESS) return -1;
  return static_cast<int64_t>(n);
}

double WallSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct ResumeRun {
  double resume_ms = -1;
  double connects_per_min = -1;  // connect() calls to the cluster per minute of outage
};

ResumeRun Resume(h::KafkaCluster* cluster, const std::string& config, const std::string& state,
                 const std::string& base, int outage_s) {
  ResumeRun r;
  std::error_code ec;
  std::filesystem::remove_all(state, ec);
  const std::string trace = base + ".strace", log = base + ".log";
  h::SpawnOptions o;
  o.argv = {"strace", "-f", "-qq", "--seccomp-bpf", "-ttt", "-e", "trace=connect", "-o", trace,
            h::ProgramPath("edgesync"), "run", "--config", config};
  o.stderr_path = log;
  auto agent = h::Process::Spawn(o);
  if (!agent.ok()) {
    std::fprintf(stderr, "bench: strace: %s (script/bootstrap installs it)\n", agent.status().ToString().c_str());
    return r;
  }
  // SIGTERM to the agent, strace's child (strace itself would only detach
  // on it, leaving the agent running); strace exits with it.
  auto stop = [&] {
    std::ifstream children("/proc/" + std::to_string(agent->pid()) + "/task/" + std::to_string(agent->pid()) +
                           "/children");
    pid_t child = 0;
    if (children >> child && child > 0) ::kill(child, SIGTERM);
    if (!agent->Wait(60s).ok()) {
      if (child > 0) ::kill(child, SIGKILL);
      (void)agent->Stop(10s);
    }
  };
  if (!h::PollUntil([&] { return UploadedBatches(state) >= 1; }, 60s, 20ms)) {
    std::fprintf(stderr, "bench: nothing uploaded before the outage; see %s\n", log.c_str());
    stop();
    return r;
  }
  if (!cluster->AllBrokersDown().ok()) return stop(), r;
  const double down_at = WallSeconds();
  std::this_thread::sleep_for(std::chrono::seconds(outage_s));
  const int64_t before = UploadedBatches(state);
  if (!cluster->AllBrokersUp().ok()) return stop(), r;
  const double up_at = WallSeconds();
  const auto up = Clock::now();
  int64_t now = before;
  if (!h::PollUntil([&] { return (now = UploadedBatches(state)) > before; }, 120s, 5ms)) {
    std::fprintf(stderr, "bench: no upload within 120 s of the cluster's return; see %s\n", log.c_str());
    stop();
    return r;
  }
  r.resume_ms = Ms(Clock::now() - up);
  stop();
  // connect() lines of the outage to the cluster's ports.
  std::vector<std::string> ports;
  std::stringstream bs(cluster->bootstrap());
  for (std::string hp; std::getline(bs, hp, ',');) ports.push_back("htons(" + hp.substr(hp.rfind(':') + 1) + ")");
  std::ifstream in(trace);
  uint64_t connects = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.find("connect(") == std::string::npos) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos) continue;
    const double t = std::atof(line.c_str() + sp + 1);
    if (t < down_at || t > up_at) continue;
    for (const std::string& p : ports) connects += line.find(p) != std::string::npos;
  }
  r.connects_per_min = static_cast<double>(connects) / ((up_at - down_at) / 60.0);
  return r;
}

bool IsTmpfs(const std::string& path) {
  struct statfs s {};
  return ::statfs(path.c_str(), &s) == 0 && static_cast<long>(s.f_type) == kTmpfsMagic;
}

std::string F(double v, const char* fmt = "%.0f") {
  if (v < 0) return "n/a";
  char b[64];
  std::snprintf(b, sizeof b, fmt, v);
  return b;
}

std::string Ratio(double a, double b) { return a > 0 && b > 0 ? F(a / b, "%.2f") : "n/a"; }

}  // namespace

int main(int argc, char** argv) {
  uint64_t events = 1'000'000;
  int runs = 3, outage_s = 15;
  bool no_resume = false, no_restart = false;
  std::string dir;
  CLI::App app{"edgesync-bench-restart: restart to first event with a full store, and resume after a Kafka outage"};
  app.add_option("--events", events, "events in the store")->capture_default_str();
  app.add_option("--runs", runs, "runs of each (median reported)")->capture_default_str();
  app.add_option("--outage-seconds", outage_s, "length of each Kafka outage")->capture_default_str();
  app.add_flag("--no-resume", no_resume, "skip the outage figures");
  app.add_flag("--no-restart", no_restart, "skip the restart figures");
  app.add_option("--dir", dir, "where to put the working directory (default $TMPDIR); not tmpfs");
  CLI11_PARSE(app, argc, argv);
  if (runs < 1 || events < 1 || outage_s < 1) {
    std::fprintf(stderr, "bench: --runs, --events and --outage-seconds must be positive\n");
    return 2;
  }
  if (!dir.empty()) ::setenv("TMPDIR", dir.c_str(), 1);
  auto work = h::TempDir::Create("edgesync-bench-restart");
  if (!work.ok()) {
    std::fprintf(stderr, "bench: %s\n", work.status().ToString().c_str());
    return 1;
  }
  if (IsTmpfs(work->path())) {
    std::fprintf(stderr, "bench: WARNING: %s is on tmpfs: a cold page cache means nothing there; set TMPDIR "
                 "(or --dir) to a directory on a disk\n", work->path().c_str());
  }
  auto broker = h::MosquittoBroker::Start(*work / "broker");
  if (!broker.ok()) {
    std::fprintf(stderr, "bench: mosquitto: %s\n", broker.status().ToString().c_str());
    return 1;
  }
  auto cluster = h::KafkaCluster::Start(1, {{kTopic, 1}});
  if (!cluster.ok()) {
    std::fprintf(stderr, "bench: Kafka mock cluster: %s\n", cluster.status().ToString().c_str());
    return 1;
  }
  // Events all along, QoS 1, 500/s: the broker queues them for the agent's
  // session while it is away, and hands them over as it subscribes.
  auto pub = h::Publisher::Connect("127.0.0.1", (*broker)->port(), "bench-restart-publisher", 1000);
  if (!pub.ok()) {
    std::fprintf(stderr, "bench: publisher: %s\n", pub.status().ToString().c_str());
    return 1;
  }
  std::atomic<bool> publishing{true};
  std::thread publisher([&] {
    uint64_t seq = 0;
    auto next = Clock::now();
    while (publishing) {
      (void)(*pub)->Publish("terminal/t-1/payment/auth", h::PaymentEvent("t-1", ++seq), 1);
      next += 2ms;
      std::this_thread::sleep_until(next);
    }
  });
  struct StopPublisher {
    std::atomic<bool>* flag;
    std::thread* t;
    ~StopPublisher() {
      *flag = false;
      if (t->joinable()) t->join();
    }
  } stop_publisher{&publishing, &publisher};

  std::string md = "## Restart and resume (edgesync-bench-restart)\n\n";
  if (!no_restart) {
    const std::string state = *work / "full-state", config = *work / "restart.toml";
    const std::string text = h::PointConfigAt(AgentConfig(), (*broker)->port(), (*cluster)->bootstrap(), state);
    std::ofstream(config) << text;
    const auto t0 = Clock::now();
    const Built built = BuildStore(text, state, events);
    if (!built.ok) return 1;
    std::fprintf(stderr, "bench: store of %llu events in %llu batches (%.1f MiB of envelopes, file %.1f MiB) built in %.0f s\n",
                 static_cast<unsigned long long>(built.events), static_cast<unsigned long long>(built.batches),
                 static_cast<double>(built.bytes) / 1048576, static_cast<double>(built.file_bytes) / 1048576,
                 Ms(Clock::now() - t0) / 1000);
    if (!(*cluster)->AllBrokersDown().ok()) return 1;  // the store stays as full in every run
    std::vector<double> cold, warm, cold_unclean, warm_unclean, check, check_warm, exec_true, sql_cold, sql_warm;
    const std::string store = state + "/store.db", log = *work / "restart.log";
    const std::string sqlite_query = "SELECT count(*) FROM batches";
    for (int run = 0; run < runs; ++run) {
      exec_true.push_back(TimeExec({"true"}, {}));
      sql_cold.push_back(TimeExec({"sqlite3", store, sqlite_query}, {state}));
      sql_warm.push_back(TimeExec({"sqlite3", store, sqlite_query}, {}));
      // Clean stops before: the check deferred. The second run ends with a kill.
      const StartRun a = AgentStart(config, state, log, /*cold=*/true, /*kill=*/false, true);
      const StartRun b = AgentStart(config, state, log, /*cold=*/false, /*kill=*/true, true);
      // After the kill: quick_check at open. The third run ends with a kill too.
      const StartRun c = AgentStart(config, state, log, /*cold=*/true, /*kill=*/true, false);
      const StartRun d = AgentStart(config, state, log, /*cold=*/false, /*kill=*/false, false);
      if (a.check_ms < 0 || b.check_ms < 0) {
        std::fprintf(stderr, "bench: restart run %d: the deferred check did not pass; see %s\n", run + 1, log.c_str());
      }
      if (a.first_event_ms < 0 || b.first_event_ms < 0 || c.first_event_ms < 0 || d.first_event_ms < 0) {
        std::fprintf(stderr, "bench: restart run %d failed (working directory kept: %s)\n", run + 1,
                     work->path().c_str());
        work->Keep();
        return 1;
      }
      cold.push_back(a.first_event_ms);
      warm.push_back(b.first_event_ms);
      cold_unclean.push_back(c.first_event_ms);
      warm_unclean.push_back(d.first_event_ms);
      check.push_back(a.check_ms);
      check_warm.push_back(b.check_ms);
      std::fprintf(stderr,
                   "bench: restart run %d: true %.1f ms, sqlite3 cold %.1f / warm %.1f ms; agent after a clean stop "
                   "cold %.1f / warm %.1f ms (deferred check took %.0f / %.0f ms), after kill -9 cold "
                   "%.1f / warm %.1f ms\n",
                   run + 1, exec_true.back(), sql_cold.back(), sql_warm.back(), a.first_event_ms, b.first_event_ms,
                   a.check_ms, b.check_ms, c.first_event_ms, d.first_event_ms);
    }
    if (!(*cluster)->AllBrokersUp().ok()) return 1;
    const double mib = static_cast<double>(built.file_bytes) / 1048576;
    md += "A store of " + std::to_string(built.events) + " events in " + std::to_string(built.batches) +
          " batches (" + F(mib) + " MiB file; the default quota is 256 MiB), Kafka down, a publisher sending QoS 1 "
          "events all along. From the spawn of `edgesync run` until the first new event is in the journal "
          "(inotify); cold: the state directory dropped from the page cache first. Medians of " +
          std::to_string(runs) + " runs.\n\n";
    md += "| figure | value | baseline (same run) | ratio |\n|---|---|---|---|\n";
    const double t = Median(exec_true), sc = Median(sql_cold), sw = Median(sql_warm);
    md += "| restart to first event journaled, ms, cold, after a clean stop (goal ≤ 200) | " + F(Median(cold), "%.1f") +
          " | `sqlite3 store.db '" + sqlite_query + "'` cold: " + F(sc, "%.1f") + "; exec `true`: " + F(t, "%.1f") +
          " | " + Ratio(Median(cold), sc) + " |\n";
    md += "| the same, warm | " + F(Median(warm), "%.1f") + " | sqlite3 warm: " + F(sw, "%.1f") + " | " +
          Ratio(Median(warm), sw) + " |\n";
    md += "| restart to first event journaled, ms, cold, after kill -9 (quick_check at open, as every start did before) | " +
          F(Median(cold_unclean), "%.1f") + " | after a clean stop, cold: " + F(Median(cold), "%.1f") + " | " +
          Ratio(Median(cold_unclean), Median(cold)) + " |\n";
    md += "| the same, warm | " + F(Median(warm_unclean), "%.1f") + " | after a clean stop, warm: " +
          F(Median(warm), "%.1f") + " | " + Ratio(Median(warm_unclean), Median(warm)) + " |\n";
    md += "| deferred quick_check after a clean stop, ms it took (cold / warm), run after intake started: commits and uploads wait for it, intake does not | " +
          F(Median(check)) + " / " + F(Median(check_warm)) + " | | |\n";
  }
  if (!no_resume) {
    std::vector<double> ours, theirs, ours_conn, theirs_conn;
    for (int run = 0; run < runs; ++run) {
      for (int arm = 0; arm < 2; ++arm) {
        const std::string base = *work / ("resume-" + std::to_string(run) + "-" + std::to_string(arm));
        const std::string state = base + "-state", config = base + ".toml";
        const std::string extra = arm == 0 ? "" : "properties = { \"reconnect.backoff.max.ms\" = \"10000\" }\n";
        std::ofstream(config) << h::PointConfigAt(AgentConfig(extra), (*broker)->port(), (*cluster)->bootstrap(), state);
        const ResumeRun r = Resume(cluster->get(), config, state, base, outage_s);
        if (r.resume_ms < 0) {
          std::fprintf(stderr, "bench: resume run %d failed (working directory kept: %s)\n", run + 1,
                       work->path().c_str());
          work->Keep();
          return 1;
        }
        (arm == 0 ? ours : theirs).push_back(r.resume_ms);
        (arm == 0 ? ours_conn : theirs_conn).push_back(r.connects_per_min);
        std::fprintf(stderr, "bench: resume run %d, %s: first batch %.0f ms after the cluster's return; %.0f "
                     "connection attempts per minute of outage\n", run + 1,
                     arm == 0 ? "agent" : "reconnect.backoff.max.ms=10000", r.resume_ms, r.connects_per_min);
      }
    }
    md += std::string(no_restart ? "" : "\n") + "Kafka (the mock cluster, one broker) down for " +
          std::to_string(outage_s) + " s while the agent runs with a publisher at 500 events/s; from the brokers' "
          "return until the agent's status socket counts a new uploaded batch. Connection attempts: the agent's "
          "connect() calls to the cluster during the outage (strace). Medians of " + std::to_string(runs) + " runs.\n\n";
    md += "| figure | value | baseline (same run) | ratio |\n|---|---|---|---|\n";
    md += "| resume: cluster back → first batch delivered, ms (goal ≤ 1000) | " + F(Median(ours)) +
          " | kafka.properties reconnect.backoff.max.ms = 10000 (librdkafka's default, the agent's before): " +
          F(Median(theirs)) + " | " + Ratio(Median(ours), Median(theirs)) + " |\n";
    md += "| connection attempts to the cluster per minute of outage | " + F(Median(ours_conn)) + " | " +
          F(Median(theirs_conn)) + " | " + Ratio(Median(ours_conn), Median(theirs_conn)) + " |\n";
  }
  std::printf("%s", md.c_str());
  return 0;
}

// edgesync-bench-memory: what the agent's resident memory is, with
// encryption on, at idle and during a burst, beside two baselines measured in
// the same run: `mosquitto_sub -q 1` on the same broker receiving the same
// events (a bare QoS 1 subscriber), and the same `edgesync` program doing
// nothing (`edgesync status --watch` asleep between two prints: the program
// and its shared libraries loaded, no agent in it). Medians of --runs.
//
// Each run, on a real mosquitto broker and the Kafka mock cluster (1 broker)
// on loopback:
// 1. The agent (`edgesync run`) starts on a fresh state directory with the
//    product's defaults (batches of 1000 events / 512 KiB / 2 s, zstd 3)
//    and `[encryption] public_key` set, so the journal and the batches are
//    encrypted; no stats line, no health records (so that the counts below
//    are the burst's alone). mosquitto_sub subscribes beside it (a
//    persistent session made first, as the ingest bench does), and the
//    floor process starts. After --settle seconds: **idle after start**,
//    VmRSS and the smaps breakdown (bench/proc_stats.h) of each.
// 2. The burst: one publisher sends --events 300-byte JSON events at QoS 1
//    as fast as the broker takes them (500 in flight), Kafka up. Both
//    subscribers get every event. The agent's VmRSS is sampled every 20 ms
//    and its smaps every 200 ms (the breakdown of the largest sample is
//    reported). The burst ends when the agent has received, sealed and
//    uploaded every event (its status socket), and mosquitto_sub has
//    written every line. **Peak**: VmHWM of each then.
// 3. After another --settle seconds with nothing published: **idle after
//    the burst**, again VmRSS and the breakdown.
//
// The figures are a Markdown section on stdout (script/bench adds the
// machine, date and commit columns); per-run figures on stderr. With
// --agent PATH, a second agent program (e.g. a build of an older commit)
// runs in every run too, interleaved, and gets its own column: before and
// after in the same run.
#include <simdjson.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "agent/status_socket.h"
#include "bench/median.h"
#include "bench/proc_stats.h"
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
using edgesync::bench::Median;
using edgesync::bench::ReadSmaps;
using edgesync::bench::RssBreakdown;
using edgesync::bench::StatusKib;

constexpr const char* kTopic = "bench/t1/payment/authorization";

double Mib(uint64_t kib) { return static_cast<double>(kib) / 1024.0; }

// What the agent's status socket says of the events it took.
struct Counts {
  bool ok = false;
  uint64_t received = 0, sealed_events = 0, uploaded_events = 0, buffered_batches = 0;
};

Counts ReadCounts(const std::string& state_dir) {
  Counts c;
  edgesync::Result<std::string> doc = edgesync::QueryStatusSocket(state_dir + "/status.sock", 5000);
  if (!doc.ok()) return c;
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  if (parser.parse(*doc).get(e) != simdjson::SUCCESS) return c;
  c.ok = e["received"].get(c.received) == simdjson::SUCCESS &&
         e["sealed_events"].get(c.sealed_events) == simdjson::SUCCESS &&
         e["uploaded_events"].get(c.uploaded_events) == simdjson::SUCCESS &&
         e["buffered"]["batches"].get(c.buffered_batches) == simdjson::SUCCESS;
  return c;
}

// Lines in a file another process writes.
uint64_t CountLines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint64_t n = 0;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    n += static_cast<uint64_t>(std::count(buf, buf + in.gcount(), '\n'));
  }
  return n;
}

// One process's figures in one run.
struct Figures {
  RssBreakdown idle_start, at_peak, idle_after;  // at_peak: the largest smaps sample of the burst
  double peak_mib = 0;                           // VmHWM at the end of the burst
  uint64_t threads_idle = 0;
  double burst_faults_per_k = 0;  // minor page faults in the burst, per 1000 events
  double idle_faults = 0;         // minor page faults in the settle at idle after the burst
};

// The subjects of one run: an agent program (its label and path).
struct AgentProgram {
  std::string label, path;
};

struct RunResult {
  bool ok = false;
  std::vector<Figures> agents;  // one per AgentProgram
  Figures sub, floor;
};

class Bench {
 public:
  Bench(h::MosquittoBroker* broker, h::KafkaCluster* cluster, std::string dir, std::string public_key,
        uint64_t events, int settle_s)
      : broker_(broker), cluster_(cluster), dir_(std::move(dir)), public_key_(std::move(public_key)),
        events_(events), settle_(settle_s) {}

  RunResult Run(int run, const std::vector<AgentProgram>& programs) {
    RunResult r;
    // The baseline subscriber: its persistent session first, so it needs no
    // readiness signal and gets every event of the burst.
    const std::string sub_id = "bench-memory-sub-" + std::to_string(run);
    std::vector<std::string> common = {"mosquitto_sub", "-h", "127.0.0.1", "-p", std::to_string(broker_->port()),
                                       "-q", "1", "-t", "bench/#", "-c", "-i", sub_id};
    h::SpawnOptions make;
    make.argv = common;
    make.argv.push_back("-E");
    auto session = h::Process::Spawn(make);
    if (!session.ok() || !session->Wait(10s).ok()) return Fail("mosquitto_sub's session");
    h::SpawnOptions so;
    so.argv = common;
    so.stdout_path = dir_ + "/sub-" + std::to_string(run) + ".out";
    auto sub = h::Process::Spawn(so);
    if (!sub.ok()) return Fail("mosquitto_sub: " + sub.status().ToString());

    std::vector<h::Process> agents;
    std::vector<std::string> states;
    for (size_t i = 0; i < programs.size(); ++i) {
      const std::string base = dir_ + "/agent-" + std::to_string(run) + "-" + std::to_string(i);
      const std::string topic = "bench.memory." + std::to_string(run) + "." + std::to_string(i);
      if (!cluster_->CreateTopic(topic, 1).ok()) return Fail("topic " + topic);
      std::ofstream(base + ".toml") << h::PointConfigAt(Config(std::to_string(run) + "-" + std::to_string(i), topic),
                                                        broker_->port(),
                                                        cluster_->bootstrap(), base + "-state");
      h::SpawnOptions ao;
      ao.argv = {programs[i].path, "run", "--config", base + ".toml"};
      ao.stderr_path = base + ".log";
      auto agent = h::Process::Spawn(ao);
      if (!agent.ok()) return Fail(programs[i].path + ": " + agent.status().ToString());
      const bool subscribed = h::PollUntil([&] {
        return !agent->Running() || h::ReadWholeFile(ao.stderr_path).find("subscribed") != std::string::npos;
      }, 30s);
      if (!subscribed || !agent->Running()) return Fail("the agent did not subscribe; see " + ao.stderr_path);
      agents.push_back(std::move(agent).value());
      states.push_back(base + "-state");
    }
    // The floor: the same program, asleep after one status print.
    h::SpawnOptions fo;
    fo.argv = {programs[0].path, "status", "--json", "--watch", "--interval", "3600", "--state-dir", states[0]};
    fo.stdout_path = dir_ + "/floor-" + std::to_string(run) + ".out";
    auto floor = h::Process::Spawn(fo);
    if (!floor.ok()) return Fail("floor: " + floor.status().ToString());
    if (!h::PollUntil([&] { return CountLines(fo.stdout_path) >= 1; }, 10s)) return Fail("floor did not print");

    std::this_thread::sleep_for(std::chrono::seconds(settle_));
    r.agents.resize(agents.size());
    for (size_t i = 0; i < agents.size(); ++i) {
      r.agents[i].idle_start = ReadSmaps(agents[i].pid());
      r.agents[i].threads_idle = edgesync::bench::ThreadCount(agents[i].pid());
    }
    r.sub.idle_start = ReadSmaps(sub->pid());
    r.floor.idle_start = ReadSmaps(floor->pid());

    // The burst, with the largest smaps sample of each agent kept.
    std::atomic<bool> stop{false};
    std::thread sampler([&] {
      for (int i = 0; !stop.load(); ++i) {
        if (i % 10 == 0) {
          for (size_t k = 0; k < agents.size(); ++k) {
            RssBreakdown b = ReadSmaps(agents[k].pid());
            if (b.rss > r.agents[k].at_peak.rss) r.agents[k].at_peak = std::move(b);
          }
          RssBreakdown b = ReadSmaps(sub->pid());
          if (b.rss > r.sub.at_peak.rss) r.sub.at_peak = std::move(b);
        }
        std::this_thread::sleep_for(20ms);
      }
    });
    std::vector<uint64_t> faults(agents.size());
    for (size_t i = 0; i < agents.size(); ++i) faults[i] = edgesync::bench::MinorFaults(agents[i].pid());
    const auto start = Clock::now();
    const bool published = Publish();
    bool through = published;
    for (size_t i = 0; i < agents.size() && through; ++i) {
      through = h::PollUntil([&] {
        const Counts c = ReadCounts(states[i]);
        return c.ok && c.received >= events_ && c.sealed_events >= events_ &&
               c.uploaded_events == c.sealed_events && c.buffered_batches == 0;
      }, 300s, 50ms);
    }
    through = through && h::PollUntil([&] { return CountLines(so.stdout_path) >= events_; }, 120s, 50ms);
    const double took = std::chrono::duration<double>(Clock::now() - start).count();
    stop.store(true);
    sampler.join();
    if (!through) return Fail(published ? "not every event went through in time" : "publishing failed");
    for (size_t i = 0; i < agents.size(); ++i) {
      r.agents[i].peak_mib = Mib(StatusKib(agents[i].pid(), "VmHWM"));
      const uint64_t now = edgesync::bench::MinorFaults(agents[i].pid());
      r.agents[i].burst_faults_per_k = static_cast<double>(now - faults[i]) * 1000.0 / static_cast<double>(events_);
      faults[i] = now;
    }
    r.sub.peak_mib = Mib(StatusKib(sub->pid(), "VmHWM"));
    r.floor.peak_mib = Mib(StatusKib(floor->pid(), "VmHWM"));
    std::fprintf(stderr, "bench: run %d: burst of %llu events through in %.1f s\n", run + 1,
                 static_cast<unsigned long long>(events_), took);

    std::this_thread::sleep_for(std::chrono::seconds(settle_));
    for (size_t i = 0; i < agents.size(); ++i) {
      r.agents[i].idle_after = ReadSmaps(agents[i].pid());
      r.agents[i].idle_faults = static_cast<double>(edgesync::bench::MinorFaults(agents[i].pid()) - faults[i]);
    }
    r.sub.idle_after = ReadSmaps(sub->pid());
    r.floor.idle_after = ReadSmaps(floor->pid());
    for (size_t i = 0; i < agents.size(); ++i) {
      (void)agents[i].Stop(30s);
      if (agents[i].exit_status() != 0) return Fail("agent exit " + std::to_string(agents[i].exit_status().value_or(-1)));
    }
    (void)sub->Stop(5s);
    (void)floor->Stop(5s);
    r.ok = true;
    return r;
  }

 private:
  RunResult Fail(const std::string& why) {
    std::fprintf(stderr, "bench: %s\n", why.c_str());
    return {};
  }

  // The product's defaults but for where things are, with encryption on.
  std::string Config(const std::string& name, const std::string& topic) const {
    return std::string(R"([agent]
device_id = "bench-memory"
stats_interval = 0
heartbeat_interval = 0
[mqtt]
host = "127.0.0.1"
client_id = "edgesync-bench-memory-)") +
           name + R"("
[[streams]]
name = "payments"
topics = ["bench/+/payment/#"]
kafka_topic = ")" + topic + R"("
[encryption]
public_key = ")" + public_key_ + "\"\n";
  }

  bool Publish() {
    auto pub = h::Publisher::Connect("127.0.0.1", broker_->port(), "bench-memory-publisher", 500);
    if (!pub.ok()) return false;
    for (uint64_t i = 1; i <= events_; ++i) {
      if (!(*pub)->Publish(kTopic, h::PaymentEvent("bench", i), 1).ok()) return false;
    }
    return (*pub)->WaitAcked(120s).ok();
  }

  h::MosquittoBroker* broker_;
  h::KafkaCluster* cluster_;
  std::string dir_, public_key_;
  uint64_t events_;
  int settle_;
};

// Medians over the runs of one field of a breakdown.
double MedianOf(const std::vector<RssBreakdown>& v, uint64_t RssBreakdown::*field) {
  std::vector<double> x;
  for (const RssBreakdown& b : v) x.push_back(Mib(b.*field));
  return Median(x);
}

std::string F1(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", v);
  return b;
}
std::string F2(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f", v);
  return b;
}

}  // namespace

int main(int argc, char** argv) {
  uint64_t events = 200000;
  int runs = 3, settle = 10;
  std::string other_agent, other_label = "other agent";
  CLI::App app{"edgesync-bench-memory: the agent's RSS at idle and in a burst, beside mosquitto_sub -q 1"};
  app.add_option("--events", events, "events in the burst")->capture_default_str();
  app.add_option("--runs", runs, "runs (medians reported)")->capture_default_str();
  app.add_option("--settle", settle, "seconds idle before each idle figure")->capture_default_str();
  app.add_option("--agent", other_agent, "a second edgesync program to measure in every run (its own column)");
  app.add_option("--agent-label", other_label, "the second program's column heading")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  std::vector<AgentProgram> programs = {{"agent", h::ProgramPath("edgesync")}};
  if (!other_agent.empty()) programs.push_back({other_label, other_agent});

  auto work = h::TempDir::Create("edgesync-bench-memory");
  if (!work.ok()) return 1;
  auto keys = h::MakeCentralKeys(*work / "central");
  if (!keys.ok()) {
    std::fprintf(stderr, "bench: %s\n", keys.status().ToString().c_str());
    return 1;
  }
  h::BrokerOptions bo;
  bo.max_queued_messages = -1;
  bo.max_inflight_messages = 100;
  auto broker = h::MosquittoBroker::Start(*work / "broker", bo);
  auto cluster = h::KafkaCluster::Start(1);
  if (!broker.ok() || !cluster.ok()) {
    std::fprintf(stderr, "bench: cannot start the broker or the Kafka mock cluster\n");
    return 1;
  }
  Bench bench(broker->get(), cluster->get(), work->path(), *work / "central/edgesync.pub", events, settle);
  std::vector<RunResult> results;
  for (int run = 0; run < runs; ++run) {
    RunResult r = bench.Run(run, programs);
    if (!r.ok) {
      std::fprintf(stderr, "bench: run %d failed\n", run + 1);
      return 1;
    }
    for (size_t i = 0; i < programs.size(); ++i) {
      const Figures& a = r.agents[i];
      std::fprintf(stderr,
                   "bench: run %d: %s: idle %.1f MiB, peak %.1f MiB, idle after %.1f MiB, %llu threads; "
                   "mosquitto_sub %.1f / %.1f / %.1f; floor %.1f\n",
                   run + 1, programs[i].label.c_str(), Mib(a.idle_start.rss), a.peak_mib, Mib(a.idle_after.rss),
                   static_cast<unsigned long long>(a.threads_idle), Mib(r.sub.idle_start.rss), r.sub.peak_mib,
                   Mib(r.sub.idle_after.rss), Mib(r.floor.idle_start.rss));
    }
    results.push_back(std::move(r));
  }

  // Per subject: the breakdowns and peaks of every run.
  struct Subject {
    std::string label;
    std::vector<RssBreakdown> idle_start, at_peak, idle_after;
    std::vector<double> peak, threads, burst_faults, idle_faults;
  };
  std::vector<Subject> subjects;
  for (size_t i = 0; i < programs.size(); ++i) {
    Subject s{programs[i].label + (i == 0 ? ", encryption on" : ""), {}, {}, {}, {}, {}, {}, {}};
    for (const RunResult& r : results) {
      s.idle_start.push_back(r.agents[i].idle_start);
      s.at_peak.push_back(r.agents[i].at_peak);
      s.idle_after.push_back(r.agents[i].idle_after);
      s.peak.push_back(r.agents[i].peak_mib);
      s.threads.push_back(static_cast<double>(r.agents[i].threads_idle));
      s.burst_faults.push_back(r.agents[i].burst_faults_per_k);
      s.idle_faults.push_back(r.agents[i].idle_faults);
    }
    subjects.push_back(std::move(s));
  }
  Subject sub{"mosquitto_sub -q 1", {}, {}, {}, {}, {}, {}, {}},
      floor{"edgesync status --watch (floor)", {}, {}, {}, {}, {}, {}, {}};
  for (const RunResult& r : results) {
    sub.idle_start.push_back(r.sub.idle_start);
    sub.at_peak.push_back(r.sub.at_peak);
    sub.idle_after.push_back(r.sub.idle_after);
    sub.peak.push_back(r.sub.peak_mib);
    floor.idle_start.push_back(r.floor.idle_start);
    floor.idle_after.push_back(r.floor.idle_after);
    floor.peak.push_back(r.floor.peak_mib);
  }
  const double sub_idle = MedianOf(sub.idle_start, &RssBreakdown::rss);
  const double sub_peak = Median(sub.peak);
  const double sub_after = MedianOf(sub.idle_after, &RssBreakdown::rss);

  std::printf("## Memory (edgesync-bench-memory)\n\n");
  std::printf(
      "The agent (`edgesync run`, encryption on: journal and batches encrypted; the product's defaults "
      "otherwise, but no stats line and no health records) on a real mosquitto broker and the Kafka mock cluster, at idle %d s after its start, "
      "during a burst of %llu 300-byte JSON events published at QoS 1 as fast as the broker takes them "
      "(Kafka up; the burst ends when the agent has uploaded every event), and idle again %d s after the "
      "burst went through. Baselines in the same run: `mosquitto_sub -q 1` subscribed to the same events on "
      "the same broker, and the same `edgesync` program doing nothing (`edgesync status --watch`, asleep "
      "between two prints: what its code and shared libraries cost when loaded). RSS is VmRSS (idle) and "
      "VmHWM (peak), ratio = agent / mosquitto_sub. Medians of %d runs.\n\n",
      settle, static_cast<unsigned long long>(events), settle, runs);
  std::printf("| figure | goal |");
  for (const Subject& s : subjects) std::printf(" %s | ratio to mosquitto_sub |", s.label.c_str());
  std::printf(" mosquitto_sub -q 1 (same run) | edgesync doing nothing (same run) |\n|---|---|");
  for (size_t i = 0; i < subjects.size(); ++i) std::printf("---|---|");
  std::printf("---|---|\n");
  auto row = [&](const char* name, const char* goal, std::function<double(const Subject&)> get, double sub_v,
                 double floor_v) {
    std::printf("| %s | %s |", name, goal);
    for (const Subject& s : subjects) std::printf(" %s | %s |", F1(get(s)).c_str(), F2(get(s) / sub_v).c_str());
    std::printf(" %s | %s |\n", F1(sub_v).c_str(), F1(floor_v).c_str());
  };
  row("RSS at idle after start, MiB", "≤ 6", [](const Subject& s) { return MedianOf(s.idle_start, &RssBreakdown::rss); },
      sub_idle, MedianOf(floor.idle_start, &RssBreakdown::rss));
  row("peak RSS (VmHWM) over start and burst, MiB", "≤ 16", [](const Subject& s) { return Median(s.peak); }, sub_peak,
      Median(floor.peak));
  row("RSS at idle after the burst, MiB", "≤ 6",
      [](const Subject& s) { return MedianOf(s.idle_after, &RssBreakdown::rss); }, sub_after,
      MedianOf(floor.idle_after, &RssBreakdown::rss));

  // What unmapping pages costs: each page used again is a minor fault.
  std::printf(
      "\nMinor page faults of the agent (a page mapped again from the page cache after the agent unmapped "
      "it, or touched for the first time; /proc/PID/stat), medians of the runs:\n\n| figure |");
  for (const Subject& s : subjects) std::printf(" %s |", s.label.c_str());
  std::printf("\n|---|");
  for (size_t i = 0; i < subjects.size(); ++i) std::printf("---|");
  std::printf("\n| in the burst, per 1000 events |");
  for (const Subject& s : subjects) std::printf(" %s |", F1(Median(s.burst_faults)).c_str());
  std::printf("\n| in the %d s at idle after the burst (its release, then what idle runs mapped again), in all |", settle);
  for (const Subject& s : subjects) std::printf(" %.0f |", Median(s.idle_faults));
  std::printf("\n");

  // The breakdown: one column per subject and moment.
  std::printf(
      "\nWhat the resident pages are (`/proc/PID/smaps`, bench/proc_stats.h), MiB, medians of the runs: "
      "file-backed pages of the program and of its shared libraries (shared with every other process "
      "mapping the same files), glibc's main malloc arena (`[heap]`) and its other arenas (one per thread "
      "that allocated while another held the main one; count in brackets), thread stacks (count in "
      "brackets), and the other anonymous mappings (allocations above malloc's mmap threshold, such as zstd "
      "contexts and buffers; libraries' own mappings). At the peak: the largest of the samples taken every "
      "200 ms during the burst (the VmHWM above may fall between two).\n\n");
  struct Column {
    std::string name;
    const std::vector<RssBreakdown>* v;
  };
  std::vector<Column> cols;
  for (const Subject& s : subjects) {
    cols.push_back({s.label + ", idle after start", &s.idle_start});
    cols.push_back({s.label + ", burst (largest sample)", &s.at_peak});
    cols.push_back({s.label + ", idle after the burst", &s.idle_after});
  }
  cols.push_back({"mosquitto_sub -q 1, burst (largest sample)", &sub.at_peak});
  cols.push_back({"edgesync doing nothing", &floor.idle_start});
  std::printf("| part |");
  for (const Column& c : cols) std::printf(" %s |", c.name.c_str());
  std::printf("\n|---|");
  for (size_t i = 0; i < cols.size(); ++i) std::printf("---|");
  std::printf("\n");
  auto part = [&](const char* name, uint64_t RssBreakdown::*field, uint64_t RssBreakdown::*count) {
    std::printf("| %s |", name);
    for (const Column& c : cols) {
      std::printf(" %s", F1(MedianOf(*c.v, field)).c_str());
      if (count != nullptr) {
        std::vector<double> n;
        for (const RssBreakdown& b : *c.v) n.push_back(static_cast<double>(b.*count));
        std::printf(" (%.0f)", Median(n));
      }
      std::printf(" |");
    }
    std::printf("\n");
  };
  part("program (file)", &RssBreakdown::program, nullptr);
  part("shared libraries (file)", &RssBreakdown::libraries, nullptr);
  part("malloc: main arena `[heap]`", &RssBreakdown::heap, nullptr);
  part("malloc: other arenas (count)", &RssBreakdown::arenas, &RssBreakdown::arena_count);
  part("thread stacks (count)", &RssBreakdown::stacks, &RssBreakdown::stack_count);
  part("other anonymous mappings", &RssBreakdown::other_anon, nullptr);
  part("**total RSS**", &RssBreakdown::rss, nullptr);
  part("of which anonymous", &RssBreakdown::anon, nullptr);
  part("of which file-backed", &RssBreakdown::file, nullptr);
  part("PSS (shared pages divided among the processes mapping them)", &RssBreakdown::pss, nullptr);

  // The libraries with the most resident pages in the agent at idle after the burst (the last run).
  const RssBreakdown& last = subjects[0].idle_after.back();
  std::printf("\nThe files with the most resident pages in the agent at idle after the burst (last run), MiB: ");
  bool first = true;
  for (const auto& [name, kib] : last.TopFiles(8)) {
    std::printf("%s%s %s", first ? "" : ", ", name.c_str(), F1(Mib(kib)).c_str());
    first = false;
  }
  std::printf(".\n");
  return 0;
}

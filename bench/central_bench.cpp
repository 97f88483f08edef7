// edgesync-bench-central: edgesync-unpack as the central service on the
// Kafka mock cluster (1 broker, loopback), beside kcat reading the same
// topic in the same run. Medians of --runs; a fresh cluster each run.
//
// 1. Throughput. The input topic (6 partitions) is filled before the clock
//    starts with N sealed batches (encrypted for the central key, unsigned,
//    device ids trusted) of R payment events each (~300-byte JSON with
//    random ids; bench/payment_events.h) from D devices, device i on
//    partition i mod 6 (as keying by device id spreads them), each device's
//    batches in order. They go through one batching producer, so message
//    sets hold many envelopes: the mock serves one message set per
//    partition and fetch, which with one envelope per set would measure
//    fetch round trips rather than the reader (a real broker fills a fetch
//    up to max.partition.fetch.bytes).
//    - Baseline: `kcat -C -e -q -o beginning -X fetch.wait.max.ms=10` of
//      the input topic to /dev/null, from spawn to exit. -e waits for the
//      end of every partition, and the fetch that finds the end comes back
//      only after fetch.wait.max.ms (500 ms by default: the broker, and the
//      mock, hold a fetch that finds no data that long); the run without
//      the -X is measured too and quoted.
//    - edgesync-unpack, 1, 2 and 3 instances of one consumer group with
//      --state-topic (6 partitions) and --output kafka (one transaction a
//      round: records, state, offsets), each configuration with a fresh
//      group, state topic and output topic; and 1 instance with
//      --output ndjson to /dev/null (same group options, state topic kept,
//      no transactions). The instances' counters lines (--stats 0.1) are
//      read every 10 ms; the run ends when their output_records add up to
//      N*R (a counters line is printed only after its round is committed).
//      Two clocks: from the spawn (with the group's join: the mock holds
//      a new group's first rebalance for about 3 s; and the restore of the
//      empty state, which waits at the state partitions' end), and from
//      the first "assigned" log line of any instance (logged once its
//      state is restored: the processing alone). Peak RSS
//      (VmHWM) and CPU of each instance are read just before SIGTERM; the
//      final counters must show every record exactly once.
// 2. Restore. A 1-partition input topic with one batch (one short record)
//    of each of --restore-devices devices; one instance with --state-topic
//    (1 partition) and --output kafka reads it all and stops (SIGTERM);
//    a second instance of the same group then restores the partition's
//    state and logs "restored S stream(s) of P partition(s) from R state
//    record(s) in M ms": M is the figure. Baseline: kcat -C -e of that
//    state topic partition, from spawn to exit, in the same run. Both read
//    to the partition's end, where a fetch waits fetch.wait.max.ms for
//    data: 10 ms in edgesync-unpack's restoring consumer, librdkafka's
//    500 ms in kcat; so a third instance and a second kcat do it all again
//    with -X fetch.wait.max.ms=10 for both.
//
// The librdkafka 2.0.2 mock cluster accepts transactions but writes no
// transaction markers and ignores offsets sent in a transaction, so a
// partition that changes hands is read again from its start by its new
// owner (its restored state drops what was written already); it keeps at
// most 5 MiB per partition (the output topics lose their oldest records,
// which nothing reads back here). Prints a Markdown section on stdout; per
// run details on stderr.
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <dirent.h>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <thread>
#include <vector>

#include "bench/median.h"
#include "bench/proc_stats.h"
#include "bench/payment_events.h"
#include "format/crypto.h"
#include "format/envelope.h"
#include "format/record.h"
#include "harness/kafka_cluster.h"
#include "harness/process.h"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace h = edgesync::harness;
using edgesync::bench::ChildrenCpuSeconds;
using edgesync::bench::CpuSeconds;
using edgesync::bench::Median;
using edgesync::bench::StatusKib;

constexpr int kPartitions = 6;  // of the input, state and output topics
constexpr const char* kInput = "bench.central.in";
constexpr auto kPoll = 10ms;
constexpr int kMaxInstances = 3;
// The mock keeps at most this much per partition and silently drops the oldest.
constexpr uint64_t kMockPartitionBytes = 5u << 20;

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }




// Our child running `name` (the basename of its argv[0]); -1 if none. The
// mock cluster's process, whose CPU the bench reports beside the readers'.
pid_t ChildNamed(const std::string& name) {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return -1;
  pid_t found = -1;
  for (dirent* e; found < 0 && (e = ::readdir(proc)) != nullptr;) {
    const pid_t pid = std::atoi(e->d_name);
    if (pid <= 0) continue;
    std::ifstream status("/proc/" + std::string(e->d_name) + "/status");
    std::string line;
    pid_t ppid = -1;
    while (std::getline(status, line)) {
      if (line.rfind("PPid:", 0) == 0) ppid = std::atoi(line.c_str() + 5);
    }
    if (ppid != ::getpid()) continue;
    std::ifstream cmd("/proc/" + std::string(e->d_name) + "/cmdline");
    std::string argv0;
    std::getline(cmd, argv0, '\0');
    const size_t slash = argv0.rfind('/');
    if ((slash == std::string::npos ? argv0 : argv0.substr(slash + 1)) == name) found = pid;
  }
  ::closedir(proc);
  return found;
}

// The key=value counters of the last counters line in `log`.
std::map<std::string, uint64_t> LastCounters(const std::string& log) {
  std::map<std::string, uint64_t> out;
  const size_t at = log.rfind(" batches=");
  if (at == std::string::npos) return out;
  const size_t end = log.find('\n', at);
  if (end == std::string::npos) return out;  // a line still being written
  std::istringstream words(log.substr(at, end - at));
  for (std::string w; words >> w;) {
    const size_t eq = w.find('=');
    if (eq != std::string::npos) out[w.substr(0, eq)] = std::strtoull(w.c_str() + eq + 1, nullptr, 10);
  }
  return out;
}

// The last `bytes` of a file (a log whose last counters line is wanted),
// or "" when it cannot be read.
std::string Tail(const std::string& path, size_t bytes) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return "";
  const std::streamoff size = in.tellg();
  const std::streamoff from = size > static_cast<std::streamoff>(bytes) ? size - static_cast<std::streamoff>(bytes) : 0;
  in.seekg(from);
  std::string out(static_cast<size_t>(size - from), '\0');
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  out.resize(static_cast<size_t>(in.gcount()));
  return out;
}

size_t Count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

std::string Fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", digits, v);
  return buf;
}

// --- The input ---------------------------------------------------------------

struct Message {
  std::string key, value;
  int32_t partition = 0;
};

struct Input {
  std::vector<Message> messages;
  uint64_t records = 0, bytes = 0;
  std::vector<uint64_t> per_partition, bytes_per_partition;
};

std::string DeviceId(const char* prefix, int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%s-%05d", prefix, i);
  return buf;
}

// `batches` batches of `per_batch` generated payment events, batch i from
// device i mod `devices` (its batch i / devices + 1), device d on partition
// d mod `partitions`, each sealed for `to`.
bool MakeThroughputInput(int batches, int per_batch, int devices, int partitions,
                         const edgesync::Recipient& to, Input* in) {
  edgesync::bench::EventGenerator gen(11);
  in->per_partition.assign(partitions, 0);
  in->bytes_per_partition.assign(partitions, 0);
  edgesync::SealOptions so;
  so.recipient = &to;
  for (int i = 0; i < batches; ++i) {
    const int d = i % devices;
    std::string body;
    edgesync::BatchHeader hd;
    for (int k = 0; k < per_batch; ++k) {
      edgesync::bench::EventGenerator::Event e = gen.Next();
      edgesync::Record r;
      r.topic = std::move(e.topic);
      r.received_at_us = e.received_at_us;
      r.qos = 1;
      r.payload = std::move(e.payload);
      if (k == 0) hd.first_event_us = r.received_at_us;
      hd.last_event_us = r.received_at_us;
      edgesync::AppendToBody(r, &body);
    }
    hd.device_id = DeviceId("dev", d);
    hd.stream = "payments";
    hd.batch_seq = static_cast<uint64_t>(i / devices) + 1;
    hd.event_count = static_cast<uint32_t>(per_batch);
    auto sealed = edgesync::SealEnvelope(hd, body, so);
    if (!sealed.ok()) {
      std::fprintf(stderr, "bench: seal: %s\n", sealed.status().ToString().c_str());
      return false;
    }
    Message m{hd.device_id, std::move(sealed).value(), d % partitions};
    in->records += static_cast<uint64_t>(per_batch);
    in->bytes += m.value.size();
    ++in->per_partition[m.partition];
    in->bytes_per_partition[m.partition] += m.value.size();
    in->messages.push_back(std::move(m));
  }
  return true;
}

// Batch 1 of each of `devices` devices, one short record each, partition 0.
bool MakeRestoreInput(int devices, const edgesync::Recipient& to, Input* in) {
  in->per_partition.assign(1, 0);
  in->bytes_per_partition.assign(1, 0);
  edgesync::SealOptions so;
  so.recipient = &to;
  for (int d = 0; d < devices; ++d) {
    edgesync::BatchHeader hd;
    hd.device_id = DeviceId("rdev", d);
    hd.stream = "payments";
    hd.batch_seq = 1;
    hd.event_count = 1;
    edgesync::Record r;
    r.topic = "terminal/" + hd.device_id + "/payment/authorization";
    r.received_at_us = edgesync::bench::EventGenerator::kDefaultStartUs + d;
    r.qos = 1;
    r.payload = "{\"device\":\"" + hd.device_id + "\",\"seq\":1}";
    hd.first_event_us = hd.last_event_us = r.received_at_us;
    std::string body;
    edgesync::AppendToBody(r, &body);
    auto sealed = edgesync::SealEnvelope(hd, body, so);
    if (!sealed.ok()) return false;
    Message m{hd.device_id, std::move(sealed).value(), 0};
    ++in->records;
    in->bytes += m.value.size();
    ++in->per_partition[0];
    in->bytes_per_partition[0] += m.value.size();
    in->messages.push_back(std::move(m));
  }
  return true;
}

// Produces `in` to `topic` through one batching producer (message sets of
// up to 1 MB), waits for every delivery, and checks with the watermarks
// that each partition holds all of its messages from offset 0.
bool Fill(const std::string& bootstrap, const std::string& topic, const Input& in) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const std::pair<const char*, const char*> settings[] = {
      {"bootstrap.servers", bootstrap.c_str()}, {"acks", "all"},  {"enable.idempotence", "true"},
      {"linger.ms", "20"},                      {"batch.num.messages", "100000"},
      {"batch.size", "1000000"},                {"queue.buffering.max.kbytes", "1048576"},
      {"queue.buffering.max.messages", "1000000"}, {"message.timeout.ms", "120000"},
  };
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name, value, err, sizeof err) != RD_KAFKA_CONF_OK) {
      std::fprintf(stderr, "bench: producer %s: %s\n", name, err);
      rd_kafka_conf_destroy(conf);
      return false;
    }
  }
  size_t failed = 0;
  rd_kafka_conf_set_opaque(conf, &failed);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    if (m->err) ++*static_cast<size_t*>(opaque);
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    std::fprintf(stderr, "bench: producer: %s\n", err);
    return false;
  }
  bool ok = true;
  for (const Message& m : in.messages) {
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(m.partition),
                                  RD_KAFKA_V_KEY(m.key.data(), m.key.size()),
                                  RD_KAFKA_V_VALUE(const_cast<char*>(m.value.data()), m.value.size()),
                                  RD_KAFKA_V_MSGFLAGS(0), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      rd_kafka_poll(rk, 10);
    }
    if (e) {
      std::fprintf(stderr, "bench: produce: %s\n", rd_kafka_err2str(e));
      ok = false;
      break;
    }
    rd_kafka_poll(rk, 0);
  }
  if (rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR || failed > 0) {
    std::fprintf(stderr, "bench: filling %s: %zu message(s) not delivered\n", topic.c_str(), failed);
    ok = false;
  }
  for (size_t p = 0; ok && p < in.per_partition.size(); ++p) {
    int64_t low = -1, high = -1;
    rd_kafka_resp_err_t e =
        rd_kafka_query_watermark_offsets(rk, topic.c_str(), static_cast<int32_t>(p), &low, &high, 10000);
    if (e || low != 0 || high != static_cast<int64_t>(in.per_partition[p])) {
      std::fprintf(stderr,
                   "bench: %s/%zu holds offsets %lld..%lld, not 0..%llu (%s): more than the mock "
                   "keeps? lower --batches\n",
                   topic.c_str(), p, static_cast<long long>(low), static_cast<long long>(high),
                   static_cast<unsigned long long>(in.per_partition[p]), rd_kafka_err2str(e));
      ok = false;
    }
  }
  rd_kafka_destroy(rk);
  return ok;
}

// The sum of the high watermarks of `topic`'s partitions: the records
// written to it (the mock writes no transaction markers); -1 on error.
int64_t TopicEnd(const std::string& bootstrap, const std::string& topic, int partitions) {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
    rd_kafka_conf_destroy(conf);
    return -1;
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) return -1;
  int64_t sum = 0;
  for (int p = 0; p < partitions && sum >= 0; ++p) {
    int64_t low = 0, high = 0;
    if (rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &low, &high, 10000)) sum = -1;
    else sum += high;
  }
  rd_kafka_destroy(rk);
  return sum;
}

// --- The runs ----------------------------------------------------------------

struct Setup {
  std::string bootstrap, key_path, dir;
  std::vector<std::string> extra;  // --unpack-arg: more arguments for every edgesync-unpack
  pid_t mock_pid = -1;
};

struct KcatResult {
  double seconds = -1, cpu_seconds = 0, peak_rss_mib = 0;
};

// kcat -C of `topic` (one partition if `partition` >= 0) from its start to
// its end, to /dev/null: spawn to exit.
KcatResult Kcat(const Setup& s, const std::string& topic, int partition, const std::string& name,
                std::vector<std::string> more = {}) {
  KcatResult r;
  h::SpawnOptions o;
  o.argv = {"kcat", "-C", "-b", s.bootstrap, "-t", topic, "-e", "-q", "-o", "beginning"};
  o.argv.insert(o.argv.end(), more.begin(), more.end());
  if (partition >= 0) {
    o.argv.push_back("-p");
    o.argv.push_back(std::to_string(partition));
  }
  o.stdout_path = "/dev/null";
  o.stderr_path = s.dir + "/" + name + ".log";
  const double cpu_before = ChildrenCpuSeconds();
  const auto start = Clock::now();
  auto kcat = h::Process::Spawn(o);
  if (!kcat.ok()) {
    std::fprintf(stderr, "bench: kcat: %s (script/bootstrap installs it)\n", kcat.status().ToString().c_str());
    return r;
  }
  const auto deadline = start + 300s;
  while (kcat->Running() && Clock::now() < deadline) {
    const uint64_t hwm = StatusKib(kcat->pid(), "VmHWM");
    if (hwm > 0) r.peak_rss_mib = static_cast<double>(hwm) / 1024;
    std::this_thread::sleep_for(1ms);
  }
  const double took = Seconds(Clock::now() - start);
  if (kcat->Running() || kcat->exit_status() != 0) {
    std::fprintf(stderr, "bench: %s: %s; see %s\n", name.c_str(),
                 kcat->Running() ? "still running after 300 s" : "failed", o.stderr_path.c_str());
    return r;
  }
  r.cpu_seconds = ChildrenCpuSeconds() - cpu_before;  // the only child reaped meanwhile
  r.seconds = took;
  return r;
}

struct UnpackResult {
  bool ok = false;
  double from_spawn_s = 0, after_join_s = 0, join_s = 0;
  std::vector<double> peak_rss_mib;  // per instance
  double cpu_seconds = 0;            // all instances
  double mock_cpu_seconds = 0;       // the cluster's, over the same time
  uint64_t rereads = 0;              // duplicate batches: partitions read again after a hand-over
  size_t assignments = 0;            // "assigned" lines, all instances
};

std::vector<std::string> UnpackArgs(const Setup& s, const std::string& topic, const std::string& group,
                                    const std::string& state_topic, const std::string& instance) {
  std::vector<std::string> a = {
      h::ProgramPath("edgesync-unpack"), "--brokers", s.bootstrap, "--topic", topic,
      "--private-key", s.key_path, "--trust-device-ids", "--group", group,
      "--state-topic", state_topic, "--instance-id", instance, "--from-beginning",
      "--stats", "0.1", "-X", "session.timeout.ms=6000", "-X", "heartbeat.interval.ms=500"};
  a.insert(a.end(), s.extra.begin(), s.extra.end());
  return a;
}

// `instances` edgesync-unpack of one fresh group reading the input until
// their output_records add up to `records`.
UnpackResult UnpackRun(h::KafkaCluster* cluster, const Setup& s, const std::string& name, int instances,
                       bool kafka_output, uint64_t records) {
  UnpackResult r;
  const std::string group = "g-" + name, state = "state-" + name, out = "out-" + name;
  if (!cluster->CreateTopic(state, kPartitions).ok() ||
      (kafka_output && !cluster->CreateTopic(out, kPartitions).ok())) {
    std::fprintf(stderr, "bench: %s: cannot create its topics\n", name.c_str());
    return r;
  }
  std::vector<h::Process> procs;
  std::vector<std::string> logs;
  const double mock_cpu_before = s.mock_pid > 0 ? CpuSeconds(s.mock_pid) : 0;
  const auto start = Clock::now();
  for (int i = 0; i < instances; ++i) {
    h::SpawnOptions o;
    o.argv = UnpackArgs(s, kInput, group, state, name + "-" + std::to_string(i));
    if (kafka_output) {
      for (const char* a : {"--output", "kafka", "--output-topic"}) o.argv.push_back(a);
      o.argv.push_back(out);
    }
    o.stdout_path = "/dev/null";
    o.stderr_path = s.dir + "/" + name + "-" + std::to_string(i) + ".log";
    auto p = h::Process::Spawn(o);
    if (!p.ok()) {
      std::fprintf(stderr, "bench: edgesync-unpack: %s\n", p.status().ToString().c_str());
      return r;
    }
    procs.push_back(std::move(p).value());
    logs.push_back(o.stderr_path);
  }
  auto total = [&] {
    uint64_t sum = 0;
    for (const std::string& l : logs) {
      auto c = LastCounters(Tail(l, 8192));  // a counters line is under 1 KiB
      sum += c["output_records"];
    }
    return sum;
  };
  bool joined = false, done = false, exited = false;
  Clock::time_point join_at = start;
  const auto deadline = start + 300s;
  while (!done && !exited && Clock::now() < deadline) {
    std::this_thread::sleep_for(kPoll);
    if (!joined) {
      for (const std::string& l : logs) {
        if (h::ReadWholeFile(l).find(": assigned ") != std::string::npos) {
          joined = true;
          join_at = Clock::now();
          break;
        }
      }
    }
    done = total() >= records;
    for (h::Process& p : procs) exited = exited || !p.Running();
  }
  const auto end = Clock::now();
  for (h::Process& p : procs) {
    r.peak_rss_mib.push_back(static_cast<double>(StatusKib(p.pid(), "VmHWM")) / 1024);
    r.cpu_seconds += CpuSeconds(p.pid());
  }
  r.mock_cpu_seconds = s.mock_pid > 0 ? CpuSeconds(s.mock_pid) - mock_cpu_before : 0;
  // One SIGTERM each, all at once (a second one would make an instance give
  // up waiting for its last round).
  for (h::Process& p : procs) (void)p.Signal(SIGTERM);
  bool clean = true;
  for (h::Process& p : procs) {
    auto code = p.Wait(60s);
    if (!code.ok()) (void)p.Stop(1s);
    if (!code.ok() || *code != 0) clean = false;
  }
  if (!done) {
    std::fprintf(stderr, "bench: %s: %s at %llu of %llu records; logs in %s\n", name.c_str(),
                 exited ? "an instance exited" : "not done after 300 s",
                 static_cast<unsigned long long>(total()), static_cast<unsigned long long>(records),
                 s.dir.c_str());
    return r;
  }
  // The final counters: every record once, nothing refused or missing.
  uint64_t output = 0, bad = 0, missing = 0, aborts = 0;
  for (const std::string& l : logs) {
    const std::string text = h::ReadWholeFile(l);
    auto c = LastCounters(text);
    output += c["output_records"];
    bad += c["bad_envelopes"];
    missing += c["missing_batches"];
    aborts += c["transaction_aborts"];
    r.rereads += c["duplicate_batches"];
    r.assignments += Count(text, ": restored ");
  }
  const int64_t in_topic = kafka_output ? TopicEnd(s.bootstrap, out, kPartitions) : -1;
  if (!clean || output != records || bad != 0 || missing != 0) {
    std::fprintf(stderr,
                 "bench: %s: output_records=%llu of %llu, bad_envelopes=%llu, missing_batches=%llu, "
                 "clean exit: %s; logs in %s\n",
                 name.c_str(), static_cast<unsigned long long>(output), static_cast<unsigned long long>(records),
                 static_cast<unsigned long long>(bad), static_cast<unsigned long long>(missing),
                 clean ? "yes" : "no", s.dir.c_str());
    return r;
  }
  if (kafka_output && in_topic != static_cast<int64_t>(records)) {
    std::fprintf(stderr, "bench: %s: note: the output topic's offsets add up to %lld (aborted "
                 "transactions' records count there too; %llu abort(s))\n",
                 name.c_str(), static_cast<long long>(in_topic), static_cast<unsigned long long>(aborts));
  }
  r.from_spawn_s = Seconds(end - start);
  r.join_s = Seconds(join_at - start);
  r.after_join_s = Seconds(end - join_at);
  r.ok = true;
  return r;
}

struct RestoreResult {
  bool ok = false;
  // [0]: default settings; [1]: -X fetch.wait.max.ms=10 (the restorer's and kcat's).
  double restore_ms[2] = {0, 0}, kcat_ms[2] = {0, 0};
  uint64_t streams = 0, state_records = 0;
};

// The first "restored S stream(s) of P partition(s) from R state record(s)
// in M ms" line of `log` with S > 0.
bool ParseRestored(const std::string& log, uint64_t* streams, uint64_t* records, uint64_t* ms) {
  for (size_t at = log.find("restored "); at != std::string::npos; at = log.find("restored ", at + 1)) {
    unsigned long long s = 0, p = 0, rec = 0, m = 0;
    if (std::sscanf(log.c_str() + at,
                    "restored %llu stream(s) of %llu partition(s) from %llu state record(s) in %llu ms",
                    &s, &p, &rec, &m) == 4 &&
        s > 0) {
      *streams = s;
      *records = rec;
      *ms = m;
      return true;
    }
  }
  return false;
}

// With a fetch.wait.max.ms this short, a fetch at a partition's end comes
// back at once instead of after librdkafka's default 500 ms (the broker,
// and the mock, hold a fetch that finds no data that long): what a reader
// that stops at partition EOF (the restore, kcat -e) pays once at the end.
const std::vector<std::string> kShortFetchWait = {"-X", "fetch.wait.max.ms=10"};

RestoreResult RestoreRun(h::KafkaCluster* cluster, const Setup& s, const Input& in, int run) {
  RestoreResult r;
  const std::string name = "restore-" + std::to_string(run);
  const std::string input = "in-" + name, group = "g-" + name, state = "state-" + name, out = "out-" + name;
  for (const std::string& t : {input, state, out}) {
    if (!cluster->CreateTopic(t, 1).ok()) return r;
  }
  if (!Fill(s.bootstrap, input, in)) return r;
  auto spawn = [&](const std::string& who, const std::vector<std::string>& more) {
    h::SpawnOptions o;
    o.argv = UnpackArgs(s, input, group, state, name + "-" + who);
    for (const char* a : {"--output", "kafka", "--output-topic"}) o.argv.push_back(a);
    o.argv.push_back(out);
    o.argv.insert(o.argv.end(), more.begin(), more.end());
    o.stdout_path = "/dev/null";
    o.stderr_path = s.dir + "/" + name + "-" + who + ".log";
    return h::Process::Spawn(o);
  };
  // The first instance writes the state of every device.
  auto a = spawn("a", {});
  if (!a.ok()) return r;
  const std::string a_log = s.dir + "/" + name + "-a.log";
  const auto deadline = Clock::now() + 300s;
  while (a->Running() && Clock::now() < deadline &&
         LastCounters(Tail(a_log, 8192))["output_records"] < in.records) {
    std::this_thread::sleep_for(kPoll);
  }
  if (!a->Stop(60s).ok() || a->exit_status() != 0 ||
      LastCounters(h::ReadWholeFile(a_log))["output_records"] != in.records) {
    std::fprintf(stderr, "bench: %s: the first instance did not write every record; see %s\n", name.c_str(),
                 a_log.c_str());
    return r;
  }
  // Then, one after the other, two more of the same group restore it when
  // they get the partition: with the default settings, and with a short
  // fetch wait.
  for (int variant = 0; variant < 2; ++variant) {
    const std::string who = variant == 0 ? "b" : "c";
    auto b = spawn(who, variant == 0 ? std::vector<std::string>{} : kShortFetchWait);
    if (!b.ok()) return r;
    const std::string b_log = s.dir + "/" + name + "-" + who + ".log";
    uint64_t streams = 0, records = 0, ms = 0;
    const auto deadline_b = Clock::now() + 120s;
    while (b->Running() && Clock::now() < deadline_b &&
           !ParseRestored(h::ReadWholeFile(b_log), &streams, &records, &ms)) {
      std::this_thread::sleep_for(kPoll);
    }
    (void)b->Stop(60s);
    if (streams == 0) {
      std::fprintf(stderr, "bench: %s: instance %s logged no restore; see %s\n", name.c_str(), who.c_str(),
                   b_log.c_str());
      return r;
    }
    const KcatResult k = Kcat(s, state, 0, "kcat-" + name + "-" + who,
                              variant == 0 ? std::vector<std::string>{} : kShortFetchWait);
    if (k.seconds <= 0) return r;
    r.restore_ms[variant] = static_cast<double>(ms);
    r.kcat_ms[variant] = k.seconds * 1000;
    r.streams = streams;
    r.state_records = records;
  }
  r.ok = true;
  return r;
}

struct Config {
  const char* name;
  int instances;
  bool kafka_output;
  const char* label;
};

}  // namespace

int main(int argc, char** argv) {
  int batches = 20000, per_batch = 10, devices = 600, restore_devices = 10000, runs = 3;
  CLI::App app{"edgesync-bench-central: edgesync-unpack scaled out on the Kafka mock cluster, beside kcat"};
  app.add_option("--batches", batches, "sealed batches in the input topic")->capture_default_str();
  app.add_option("--records", per_batch, "records (~300-byte payment JSON) per batch")->capture_default_str();
  app.add_option("--devices", devices, "devices the batches come from")->capture_default_str();
  app.add_option("--restore-devices", restore_devices, "devices whose state the restore reads")->capture_default_str();
  app.add_option("--runs", runs, "runs of everything (medians reported)")->capture_default_str();
  std::vector<std::string> extra;
  app.add_option("--unpack-arg", extra,
                 "one more argument for every edgesync-unpack (repeatable; e.g. --unpack-arg=-X "
                 "--unpack-arg=fetch.wait.max.ms=10); say so beside any figure measured with it");
  CLI11_PARSE(app, argc, argv);
  if (batches < 1 || per_batch < 1 || devices < 1 || restore_devices < 1 || runs < 1) {
    std::fprintf(stderr, "bench: every option must be positive\n");
    return 2;
  }

  auto work = h::TempDir::Create("edgesync-bench-central");
  if (!work.ok()) {
    std::fprintf(stderr, "bench: %s\n", work.status().ToString().c_str());
    return 1;
  }
  edgesync::crypto::Key central_private{};
  if (!edgesync::crypto::Random(&central_private).ok()) return 1;
  auto central_public = edgesync::crypto::X25519PublicKey(central_private);
  if (!central_public.ok()) return 1;
  const edgesync::Recipient to = edgesync::Recipient::For(*central_public);
  Setup setup;
  setup.key_path = *work / "central.pem";
  setup.dir = work->path();
  setup.extra = extra;
  std::ofstream(setup.key_path) << edgesync::crypto::PrivateKeyPem(central_private);

  const auto seal_start = Clock::now();
  Input input, restore_input;
  if (!MakeThroughputInput(batches, per_batch, devices, kPartitions, to, &input) ||
      !MakeRestoreInput(restore_devices, to, &restore_input)) {
    return 1;
  }
  const uint64_t fullest = *std::max_element(input.bytes_per_partition.begin(), input.bytes_per_partition.end());
  std::fprintf(stderr,
               "bench: sealed %d batches of %d records (%llu records, %llu bytes of envelopes, %.0f a "
               "batch; fullest partition %.2f MiB) and %d one-record batches for the restore (%.2f "
               "MiB) in %.1f s\n",
               batches, per_batch, static_cast<unsigned long long>(input.records),
               static_cast<unsigned long long>(input.bytes),
               static_cast<double>(input.bytes) / batches, static_cast<double>(fullest) / (1 << 20),
               restore_devices, static_cast<double>(restore_input.bytes) / (1 << 20),
               Seconds(Clock::now() - seal_start));
  if (fullest > kMockPartitionBytes * 9 / 10 || restore_input.bytes > kMockPartitionBytes * 9 / 10) {
    std::fprintf(stderr, "bench: a partition would hold over 90%% of the 5 MiB the mock keeps: lower "
                 "--batches or --restore-devices\n");
    return 2;
  }

  const Config configs[] = {
      {"ndjson1", 1, false, "1 instance, --output ndjson to /dev/null (no transactions)"},
      {"kafka1", 1, true, "1 instance, --output kafka"},
      {"kafka2", 2, true, "2 instances, --output kafka"},
      {"kafka3", 3, true, "3 instances, --output kafka"},
  };
  constexpr size_t kConfigs = sizeof configs / sizeof configs[0];
  // kcat: [0] as `kcat -C -e` runs by default, [1] with -X fetch.wait.max.ms=10.
  std::vector<double> kcat_rates[2], kcat_envelope_rates[2], kcat_cpu[2], kcat_rss[2];
  std::vector<double> rate[kConfigs], rate_spawn[kConfigs], join[kConfigs], cpu[kConfigs], mock_cpu[kConfigs];
  std::vector<double> rss[kConfigs][kMaxInstances];
  std::vector<double> restore_ms[2], restore_kcat_ms[2];
  uint64_t restore_streams = 0, restore_records = 0;
  size_t handover_runs[kConfigs] = {};  // runs in which the group rebalanced during the run
  const double n_records = static_cast<double>(input.records);

  for (int run = 0; run < runs; ++run) {
    auto cluster = h::KafkaCluster::Start(1, {{kInput, kPartitions}});
    if (!cluster.ok()) {
      std::fprintf(stderr, "bench: Kafka mock cluster: %s\n", cluster.status().ToString().c_str());
      return 1;
    }
    setup.bootstrap = (*cluster)->bootstrap();
    setup.mock_pid = ChildNamed("edgesync-kafka-mock");
    const auto fill_start = Clock::now();
    if (!Fill(setup.bootstrap, kInput, input)) {
      work->Keep();
      return 1;
    }
    std::fprintf(stderr, "bench: run %d: input written in %.1f s\n", run + 1, Seconds(Clock::now() - fill_start));

    for (int variant = 0; variant < 2; ++variant) {
      const KcatResult k = Kcat(setup, kInput, -1, "kcat-" + std::to_string(run) + "-" + std::to_string(variant),
                                variant == 0 ? std::vector<std::string>{} : kShortFetchWait);
      if (k.seconds <= 0) {
        work->Keep();
        return 1;
      }
      kcat_rates[variant].push_back(n_records / k.seconds);
      kcat_envelope_rates[variant].push_back(static_cast<double>(batches) / k.seconds);
      kcat_cpu[variant].push_back(k.cpu_seconds / n_records * 1e6);
      kcat_rss[variant].push_back(k.peak_rss_mib);
      std::fprintf(stderr,
                   "bench: run %d: kcat%s %.2f s = %.0f records/s (%.0f envelopes/s), CPU %.2f s, peak RSS "
                   "%.1f MiB\n",
                   run + 1, variant == 0 ? "" : " -X fetch.wait.max.ms=10", k.seconds, kcat_rates[variant].back(),
                   kcat_envelope_rates[variant].back(), k.cpu_seconds, k.peak_rss_mib);
    }

    for (size_t c = 0; c < kConfigs; ++c) {
      const Config& cfg = configs[c];
      const UnpackResult u = UnpackRun(cluster->get(), setup, std::string(cfg.name) + "-" + std::to_string(run),
                                       cfg.instances, cfg.kafka_output, input.records);
      if (!u.ok) {
        work->Keep();
        return 1;
      }
      rate[c].push_back(n_records / u.after_join_s);
      rate_spawn[c].push_back(n_records / u.from_spawn_s);
      join[c].push_back(u.join_s);
      cpu[c].push_back(u.cpu_seconds / n_records * 1e6);
      mock_cpu[c].push_back(u.mock_cpu_seconds / n_records * 1e6);
      if (u.assignments > static_cast<size_t>(cfg.instances)) ++handover_runs[c];
      std::string rss_text;
      for (int i = 0; i < cfg.instances; ++i) {
        rss[c][i].push_back(u.peak_rss_mib[i]);
        rss_text += (i ? " / " : "") + Fixed(u.peak_rss_mib[i], 1);
      }
      std::fprintf(stderr,
                   "bench: run %d: %s: first assignment after %.2f s, all out %.2f s later (%.0f records/s; "
                   "%.0f from the spawn), %zu assignment(s), %llu batch(es) read again after a hand-over, "
                   "CPU %.2f s (mock cluster %.2f s), peak RSS %s MiB\n",
                   run + 1, cfg.label, u.join_s, u.after_join_s, rate[c].back(), rate_spawn[c].back(),
                   u.assignments, static_cast<unsigned long long>(u.rereads), u.cpu_seconds,
                   u.mock_cpu_seconds, rss_text.c_str());
    }

    const RestoreResult rr = RestoreRun(cluster->get(), setup, restore_input, run);
    if (!rr.ok) {
      work->Keep();
      return 1;
    }
    for (int variant = 0; variant < 2; ++variant) {
      restore_ms[variant].push_back(rr.restore_ms[variant]);
      restore_kcat_ms[variant].push_back(rr.kcat_ms[variant]);
    }
    restore_streams = rr.streams;
    restore_records = rr.state_records;
    std::fprintf(stderr,
                 "bench: run %d: restore of %llu stream(s) from %llu state record(s): %.0f ms (kcat reading that "
                 "partition: %.0f ms); with -X fetch.wait.max.ms=10: %.0f ms (kcat %.0f ms)\n",
                 run + 1, static_cast<unsigned long long>(rr.streams),
                 static_cast<unsigned long long>(rr.state_records), rr.restore_ms[0], rr.kcat_ms[0],
                 rr.restore_ms[1], rr.kcat_ms[1]);
  }

  // The Markdown section. The baseline is kcat with the short fetch wait:
  // with the default one its time holds 0.5 s of waiting at the end.
  const double kcat = Median(kcat_rates[1]);
  std::printf("## Central service (edgesync-bench-central)\n\n");
  std::printf("edgesync-unpack on the Kafka mock cluster (librdkafka 2.0.2, 1 broker, loopback, on the "
              "same cores). Input: %d sealed batches (X25519 + AES-256-GCM, zstd -3, unsigned, "
              "`--trust-device-ids`) of %d payment events (~300-byte JSON, random ids; %.0f bytes an "
              "envelope) from %d devices, %llu records, in a topic of %d partitions. Each "
              "configuration has a fresh consumer group and state topic (`--state-topic`, %d "
              "partitions); `--output kafka` commits records, state and offsets in one transaction "
              "a round. records/s: from the first partition assignment until the instances' "
              "committed `output_records` add up to every record; from the spawn: the same with the "
              "group's join (the mock holds a new group's first rebalance for about 3 s) and the "
              "restore of the empty state (see the restore below). Baseline, "
              "same run and cluster: `kcat -C -e -q -o beginning -X fetch.wait.max.ms=10` of the same "
              "topic to /dev/null, spawn to exit; ratio = edgesync-unpack / that. Without the "
              "`-X` (librdkafka's default 500 ms fetch wait, which kcat -e waits out at the end) "
              "kcat took the time of %.0f records/s. CPU: user + system of all instances from "
              "their spawn (in brackets the mock cluster's over the same time). A rebalance after "
              "the first assignment (a member that joined late) pauses the group, and on the mock "
              "a partition that moved is read again from its start. Medians of %d runs, a fresh "
              "cluster each.\n\n",
              batches, per_batch, static_cast<double>(input.bytes) / batches, devices,
              static_cast<unsigned long long>(input.records), kPartitions, kPartitions,
              Median(kcat_rates[0]), runs);
  std::printf("| reader | records/s | records/s from the spawn | ratio to kcat | ratio to 1 instance, "
              "--output kafka | peak RSS per instance, MiB | CPU s per million records | runs with "
              "a rebalance after the first assignment |\n");
  std::printf("|---|---|---|---|---|---|---|---|\n");
  std::printf("| baseline: kcat -C to /dev/null (%.0f envelopes/s) | %.0f | %.0f | 1.00 | | %s | %s | |\n",
              Median(kcat_envelope_rates[1]), kcat, kcat, Fixed(Median(kcat_rss[1]), 1).c_str(),
              Fixed(Median(kcat_cpu[1]), 2).c_str());
  const double one_kafka = Median(rate[1]);  // configs[1]: 1 instance, --output kafka
  for (size_t c = 0; c < kConfigs; ++c) {
    std::string rss_text;
    for (int i = 0; i < configs[c].instances; ++i) rss_text += (i ? " / " : "") + Fixed(Median(rss[c][i]), 1);
    std::printf("| edgesync-unpack, %s | %.0f | %.0f | %s | %s | %s | %s (%s) | %zu of %d |\n", configs[c].label,
                Median(rate[c]), Median(rate_spawn[c]), Fixed(Median(rate[c]) / kcat, 3).c_str(),
                Fixed(Median(rate[c]) / one_kafka, 2).c_str(), rss_text.c_str(), Fixed(Median(cpu[c]), 2).c_str(),
                Fixed(Median(mock_cpu[c]), 2).c_str(), handover_runs[c], runs);
  }
  std::printf("\nState restore: one instance reads one batch of each of %d devices from a 1-partition "
              "topic with `--state-topic` (1 partition) and stops (SIGTERM); then another instance of "
              "the group restores that partition's state when it is assigned it. Figure: M of its "
              "\"restored %llu stream(s) of 1 partition(s) from %llu state record(s) in M ms\" line. "
              "Baseline, same run: `kcat -C -e -q -o beginning -p 0` of the state topic, spawn to "
              "exit (process start and metadata included). Both read the partition to its end, where "
              "a fetch waits fetch.wait.max.ms for more: 10 ms in edgesync-unpack's restoring "
              "consumer, librdkafka's default 500 ms in kcat; the second row gives both `-X "
              "fetch.wait.max.ms=10` (for edgesync-unpack it also applies to its group consumer). "
              "Medians of %d runs.\n\n",
              restore_devices, static_cast<unsigned long long>(restore_streams),
              static_cast<unsigned long long>(restore_records), runs);
  std::printf("| figure | edgesync-unpack | kcat (same run) | ratio |\n|---|---|---|---|\n");
  for (int variant = 0; variant < 2; ++variant) {
    std::printf("| restore of %llu streams' state from %llu records, ms%s | %.0f | %.0f | %s |\n",
                static_cast<unsigned long long>(restore_streams),
                static_cast<unsigned long long>(restore_records),
                variant == 0 ? " (default settings)" : ", `-X fetch.wait.max.ms=10`",
                Median(restore_ms[variant]), Median(restore_kcat_ms[variant]),
                Fixed(Median(restore_ms[variant]) / Median(restore_kcat_ms[variant]), 2).c_str());
  }
  return 0;
}

// edgesync-unpack: the central side. Consumes edgesync envelopes from Kafka,
// checks, decrypts and decodes them, drops duplicate batches, and writes the
// records out: NDJSON lines on stdout (default) or one Kafka record per event
// (--output kafka). Gaps (the agent's gap records and holes found in batch
// sequences) go to --gaps FILE, --gaps-topic, or stderr. Refused envelopes
// are counted by reason, logged with their offset, and optionally copied to
// --quarantine-topic.
//
// Work goes in rounds: poll up to kRoundMessages messages or for kRoundTime,
// write their output, then either commit the round as one Kafka transaction
// (--state-topic with --output kafka: output, state and input offsets
// together) or flush it (stdout; or wait for the delivery report of every
// record produced), save the de-duplication state (state topic or
// --dedupe-db), and only then store the messages' offsets for the consumer
// group to commit. With --state-topic the state of each input partition is
// restored from the state topic when the group assigns it (the rebalance
// callback), and the round is committed before partitions are given up.
// Exit codes: 0 after a clean stop (also one asked for during the start);
// 1 when the output, the state or the cluster fails, at start or later
// (nothing of the failed round is committed); 2 for a usage or
// configuration error.
#include <librdkafka/rdkafka.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cctype>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "base/env.h"
#include "base/printable.h"
#include "format/crypto.h"
#include "format/envelope.h"
#include "central/fragment_assembler.h"
#include "central/dedupe_store.h"
#include "central/metrics_server.h"
#include "central/state_changelog.h"
#include "central/device_keys.h"
#include "central/unpack.h"

namespace edgesync {
namespace {

volatile std::sig_atomic_t g_stop = 0;  // 1: finish the round and stop; 2+: give up waiting
void OnSignal(int) { g_stop = g_stop + 1; }

constexpr size_t kRoundMessages = 1000;
constexpr int kRoundTimeMs = 100;
// A round also ends once this much output waits in memory: what bounds the
// process's memory is then one envelope's output (about ten times
// --max-batch-bytes for the smallest records) on top of this.
constexpr size_t kRoundOutputBytes = 16u << 20;
constexpr int64_t kForgetIntervalUs = 60'000'000;  // how often streams are aged out

struct Options {
  std::string brokers;
  std::vector<std::string> topics;
  std::string group;
  bool from_beginning = false;
  bool exit_at_end = false;
  std::vector<std::string> properties;
  std::vector<std::string> producer_properties;
  std::string gaps_path;
  std::vector<std::string> private_keys;
  bool allow_plaintext = false;
  std::string device_keys;    // the registry's directory
  bool trust_device_ids = false;
  bool allow_unsigned = false;
  std::string dict_dir;
  std::string max_batch_bytes = std::to_string(format::kMaxBodyBytes);
  std::string dedupe_db;
  std::string dedupe_max_age = "7d";
  std::string output = "ndjson";
  std::string output_brokers;
  std::string output_topic = "{stream}";
  std::string gaps_topic;
  std::string quarantine_topic;
  std::string state_topic;   // partition-scoped state in Kafka (scale-out)
  std::string instance_id;   // this instance's name in its transactional id
  std::string metrics_address;
  double stats_seconds = 0;
};


// One line on stderr. Messages carry what devices wrote (ids, stream names,
// gap reasons, topics): escaped, so that no device can end a line and write
// the next one (base/printable.h).
void Log(const std::string& msg) { std::fprintf(stderr, "edgesync-unpack: %s\n", Printable(msg).c_str()); }

std::optional<uint64_t> ParseUint(std::string_view s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// "7d", "12h", "30m", "45s" or plain seconds, to seconds; nullopt if bad or 0.
std::optional<int64_t> ParseAgeSeconds(std::string s) {
  int64_t unit = 1;
  if (!s.empty() && std::isalpha(static_cast<unsigned char>(s.back()))) {
    switch (s.back()) {
      case 'd': unit = 86400; break;
      case 'h': unit = 3600; break;
      case 'm': unit = 60; break;
      case 's': unit = 1; break;
      default: return std::nullopt;
    }
    s.pop_back();
  }
  std::optional<uint64_t> n = ParseUint(s);
  if (!n || *n == 0 || *n > uint64_t{INT64_MAX / 1'000'000} / static_cast<uint64_t>(unit)) {
    return std::nullopt;
  }
  return static_cast<int64_t>(*n) * unit;
}

// "67108864", "64MiB", "512KiB" to bytes; nullopt if bad.
std::optional<uint64_t> ParseBytes(std::string s) {
  uint64_t unit = 1;
  for (auto [suffix, mult] : {std::pair{"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}}) {
    std::string_view sv(suffix);
    if (s.size() > sv.size() && s.compare(s.size() - sv.size(), sv.size(), sv) == 0) {
      unit = mult;
      s.resize(s.size() - sv.size());
      break;
    }
  }
  std::optional<uint64_t> n = ParseUint(s);
  if (!n || *n > UINT64_MAX / unit) return std::nullopt;
  return *n * unit;
}

// Kafka's rule for topic names: 1..249 of [A-Za-z0-9._-], not "." or "..".
bool ValidTopicName(std::string_view t) {
  if (t.empty() || t.size() > 249 || t == "." || t == "..") return false;
  for (char c : t) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) {
      return false;
    }
  }
  return true;
}

// --output-topic: literal text with {stream} and {device} placeholders.
class TopicTemplate {
 public:
  // InvalidArgument for a brace that is not one of the placeholders, or
  // literal text that no topic name may contain.
  static Result<TopicTemplate> Parse(const std::string& text) {
    TopicTemplate t;
    size_t i = 0;
    std::string literal, sample;
    while (i < text.size()) {
      if (text[i] == '{' || text[i] == '}') {
        std::string_view rest = std::string_view(text).substr(i);
        Part p;
        if (rest.starts_with("{stream}")) {
          p.kind = Part::kStream;
        } else if (rest.starts_with("{device}")) {
          p.kind = Part::kDevice;
        } else {
          return Status::InvalidArgument("--output-topic " + text + ": only {stream} and {device} "
                                         "may appear in braces (at position " +
                                         std::to_string(i) + ")");
        }
        if (!literal.empty()) t.parts_.push_back({Part::kLiteral, std::move(literal)});
        literal.clear();
        t.parts_.push_back(p);
        sample += "x";
        i += 8;
      } else {
        literal.push_back(text[i]);
        sample.push_back(text[i]);
        ++i;
      }
    }
    if (!literal.empty()) t.parts_.push_back({Part::kLiteral, std::move(literal)});
    if (!ValidTopicName(sample)) {
      return Status::InvalidArgument("--output-topic " + text +
                                     ": not a valid Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)");
    }
    return t;
  }

  std::string Expand(const std::string& device, const std::string& stream) const {
    std::string out;
    for (const Part& p : parts_) {
      out += p.kind == Part::kLiteral ? p.text : p.kind == Part::kStream ? stream : device;
    }
    return out;
  }

 private:
  struct Part {
    enum Kind { kLiteral, kStream, kDevice } kind = kLiteral;
    std::string text;
  };
  std::vector<Part> parts_;
};

// Applies KEY=VALUE properties to a librdkafka configuration.
Status ApplyProperties(rd_kafka_conf_t* conf, const std::vector<std::pair<std::string, std::string>>& props) {
  char err[512];
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      return Status::InvalidArgument("kafka property " + k + ": " + err);
    }
  }
  return Status::OK();
}

Status SplitProperties(const std::vector<std::string>& kvs, const char* flag,
                       std::vector<std::pair<std::string, std::string>>* out) {
  for (const std::string& kv : kvs) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      return Status::InvalidArgument(std::string(flag) + " wants KEY=VALUE, got " + kv);
    }
    out->emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  return Status::OK();
}


// A Kafka producer whose outcome is checked per round. Idempotent: Flush()
// waits for the delivery report of every message produced since the last
// Flush() and says whether all were delivered; librdkafka retries inside,
// only its final answer counts. Transactional (a transactional id given):
// the first Produce() of a round begins a transaction, and Commit() sends
// the round's input offsets into it and commits it, all or nothing. Main
// thread only.
class RoundProducer {
 public:
  static Result<std::unique_ptr<RoundProducer>> Create(
      const std::string& brokers, const std::vector<std::pair<std::string, std::string>>& extra,
      const std::string& transactional_id = "") {
    std::unique_ptr<RoundProducer> p(new RoundProducer());
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    std::vector<std::pair<std::string, std::string>> props = {
        {"bootstrap.servers", brokers},
        {"enable.idempotence", "true"},  // no duplicates from librdkafka's own retries
        {"acks", "all"},
        {"linger.ms", "5"},
    };
    if (!transactional_id.empty()) props.emplace_back("transactional.id", transactional_id);
    props.insert(props.end(), extra.begin(), extra.end());
    Status st = ApplyProperties(conf, props);
    if (!st.ok()) {
      rd_kafka_conf_destroy(conf);
      return st;
    }
    char value[64];
    size_t size = sizeof value;
    if (rd_kafka_conf_get(conf, "message.max.bytes", value, &size) == RD_KAFKA_CONF_OK) {
      p->max_message_bytes_ = ParseUint(value).value_or(p->max_message_bytes_);
    }
    rd_kafka_conf_set_opaque(conf, p.get());
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* self) {
      auto* producer = static_cast<RoundProducer*>(self);
      if (m->err) {
        if (producer->failed_++ == 0) {
          producer->first_error_ = std::string(rd_kafka_topic_name(m->rkt)) + ": " +
                                   rd_kafka_err2str(m->err);
        }
      }
    });
    char err[512];
    p->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (p->rk_ == nullptr) {
      rd_kafka_conf_destroy(conf);
      return Status::InvalidArgument(std::string("kafka producer: ") + err);
    }
    if (!transactional_id.empty()) {
      // Fences any earlier producer of this id (the same instance before a
      // crash) and aborts what it left open.
      p->transactional_ = true;
      // A second at a time (librdkafka resumes the call), up to 60 s, so
      // that a stop signal ends the wait.
      const int64_t give_up_at = Env::Default()->MonotonicMicros() + 60'000'000;
      rd_kafka_error_t* error = nullptr;
      std::string cause;  // the last error that was not a timeout: each resumed call forgets it
      while ((error = rd_kafka_init_transactions(p->rk_, 1000)) != nullptr &&
             rd_kafka_error_is_retriable(error) && Env::Default()->MonotonicMicros() < give_up_at) {
        if (rd_kafka_error_code(error) != RD_KAFKA_RESP_ERR__TIMED_OUT) cause = rd_kafka_error_string(error);
        rd_kafka_error_destroy(error);
        if (g_stop) return Status::Aborted("stopped while starting (initialising transactions)");
      }
      if (error != nullptr) {
        std::string why = rd_kafka_error_string(error);
        if (rd_kafka_error_code(error) == RD_KAFKA_RESP_ERR__TIMED_OUT && !cause.empty()) {
          why += " (last: " + cause + ")";
        }
        rd_kafka_error_destroy(error);
        return Status::Unavailable("transactions on " + brokers + " (transactional.id " +
                                   transactional_id + "): " + why);
      }
    }
    return p;
  }

  ~RoundProducer() {
    // Everything that counted was flushed; what is left belongs to a round
    // that failed and is read again after a restart.
    rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_flush(rk_, 1000);
    rd_kafka_destroy(rk_);
  }

  // Whether a message of `bytes` (key, value and headers) is within the
  // producer's message.max.bytes (librdkafka refuses larger ones with
  // MSG_SIZE_TOO_LARGE); 512 bytes are kept for its framing.
  bool Fits(size_t bytes) const { return bytes + 512 <= max_message_bytes_; }

  // Queues one message (copied): to `partition`, or the partitioner's
  // choice by key; `value` nullptr makes a tombstone. Fails only for a
  // local refusal, or when a transaction cannot begin.
  Status Produce(const std::string& topic, std::string_view key, const std::string_view* value,
                 const Headers& headers, const rd_kafka_headers_t* base = nullptr,
                 int32_t partition = RD_KAFKA_PARTITION_UA) {
    if (transactional_ && !in_transaction_) {
      rd_kafka_error_t* error = rd_kafka_begin_transaction(rk_);
      if (error != nullptr) {
        std::string why = rd_kafka_error_string(error);
        rd_kafka_error_destroy(error);
        return Status::IOError("begin transaction: " + why);
      }
      in_transaction_ = true;
    }
    rd_kafka_headers_t* hdrs =
        base ? rd_kafka_headers_copy(base) : rd_kafka_headers_new(headers.size());
    for (const auto& [k, v] : headers) {
      rd_kafka_header_add(hdrs, k.data(), static_cast<ssize_t>(k.size()), v.data(),
                          static_cast<ssize_t>(v.size()));
    }
    while (true) {
      rd_kafka_resp_err_t err = rd_kafka_producev(
          rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
          RD_KAFKA_V_KEY(key.data(), key.size()),
          RD_KAFKA_V_VALUE(value ? const_cast<char*>(value->data()) : nullptr, value ? value->size() : 0),
          RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
      if (err == RD_KAFKA_RESP_ERR_NO_ERROR) break;  // hdrs now belongs to the message
      if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
        rd_kafka_headers_destroy(hdrs);
        return Status::InvalidArgument("produce to " + topic + ": " + rd_kafka_err2str(err));
      }
      rd_kafka_poll(rk_, 100);  // the queue drains as reports come in
    }
    ++produced_;
    return Status::OK();
  }

  // Waits for every report since the last Flush. OK when all were
  // delivered; Unavailable naming the first failure otherwise; Aborted on a
  // second stop signal (the operator gives up waiting).
  Status Flush() {
    if (produced_ == 0) return Status::OK();
    while (rd_kafka_outq_len(rk_) > 0) {
      if (g_stop > 1) return Status::Aborted("stopped while waiting for Kafka delivery reports");
      rd_kafka_flush(rk_, 200);
    }
    uint64_t failed = failed_;
    std::string first = first_error_;
    produced_ = failed_ = 0;
    first_error_.clear();
    if (failed > 0) {
      return Status::Unavailable(std::to_string(failed) + " record(s) not delivered; first: " + first);
    }
    return Status::OK();
  }

  // Transactional: sends `offsets` (the consumer's next offsets; may be
  // empty) into the round's transaction and commits it. Aborted when the
  // transaction had to be aborted (nothing of it is visible to
  // read_committed readers: the caller rewinds to the last commit);
  // IOError when the producer cannot go on (fenced by a newer instance
  // of the same transactional id, or another fatal error).
  Status Commit(const rd_kafka_topic_partition_list_t* offsets, rd_kafka_t* consumer) {
    const bool have_offsets = offsets != nullptr && offsets->cnt > 0;
    if (!in_transaction_ && !have_offsets) return Status::OK();
    if (!in_transaction_) {
      if (rd_kafka_error_t* error = rd_kafka_begin_transaction(rk_)) return Failed(error, "begin");
      in_transaction_ = true;
    }
    if (have_offsets) {
      rd_kafka_consumer_group_metadata_t* group = rd_kafka_consumer_group_metadata(consumer);
      rd_kafka_error_t* error = rd_kafka_send_offsets_to_transaction(rk_, offsets, group, -1);
      rd_kafka_consumer_group_metadata_destroy(group);
      if (error != nullptr) return Failed(error, "send offsets to the transaction");
    }
    while (rd_kafka_error_t* error = rd_kafka_commit_transaction(rk_, -1)) {
      if (!rd_kafka_error_is_retriable(error) || g_stop > 1) return Failed(error, "commit");
      rd_kafka_error_destroy(error);
    }
    in_transaction_ = false;
    produced_ = failed_ = 0;
    first_error_.clear();
    return Status::OK();
  }
  // Aborts the round's transaction, if one is open.
  Status Abort() {
    produced_ = failed_ = 0;
    first_error_.clear();
    if (!in_transaction_) return Status::OK();
    while (rd_kafka_error_t* e = rd_kafka_abort_transaction(rk_, -1)) {
      std::string why = rd_kafka_error_string(e);
      const bool retry = rd_kafka_error_is_retriable(e) && g_stop < 2;
      rd_kafka_error_destroy(e);
      if (!retry) return Status::IOError("abort transaction: " + why);
    }
    in_transaction_ = false;
    return Status::OK();
  }
  bool transactional() const { return transactional_; }

 private:
  RoundProducer() = default;

  // A transaction step failed: abort when that is what it takes (Aborted),
  // else the producer is done for (IOError). Takes `error`.
  Status Failed(rd_kafka_error_t* error, const char* step) {
    std::string why = std::string(step) + ": " + rd_kafka_error_string(error);
    const bool abort = rd_kafka_error_txn_requires_abort(error);
    const bool fatal = rd_kafka_error_is_fatal(error);
    rd_kafka_error_destroy(error);
    if (!abort || fatal) {
      return Status::IOError("transaction " + why +
                             (fatal ? " (fenced by a newer producer of the same --instance-id, or a "
                                      "fatal error: give each instance its own --instance-id)"
                                    : ""));
    }
    Status aborted = Abort();
    if (!aborted.ok()) return Status::IOError("transaction " + why + "; " + aborted.message());
    return Status::Aborted("transaction " + why + "; aborted");
  }

  bool transactional_ = false;
  bool in_transaction_ = false;
  rd_kafka_t* rk_ = nullptr;
  uint64_t max_message_bytes_ = 1'000'000;
  uint64_t produced_ = 0;
  uint64_t failed_ = 0;
  std::string first_error_;
};

// The partition ids of `topic`. Metadata may lag while the cluster starts:
// asks 30 times, a fifth of a second apart, before it gives up: NotFound
// when the cluster's last answer was that the topic does not exist,
// Unavailable when there was no answer; Aborted when a stop signal ended
// the wait.
Result<std::vector<int32_t>> TopicPartitions(rd_kafka_t* rk, const std::string& topic) {
  rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  bool unknown = false;
  for (int attempt = 0; attempt < 30 && g_stop == 0; ++attempt) {
    if (attempt > 0) Env::Default()->SleepForMicros(200'000);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
        md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
      break;
    }
    unknown = err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
              md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
    if (md) rd_kafka_metadata_destroy(md);
    md = nullptr;
  }
  rd_kafka_topic_destroy(rkt);
  if (md == nullptr && g_stop) return Status::Aborted("stopped while starting (reading topic " + topic + ")");
  if (md == nullptr && unknown) return Status::NotFound("topic " + topic + " does not exist");
  if (md == nullptr) {
    return Status::Unavailable("topic " + topic + ": no metadata (does it exist? are the brokers up?)");
  }
  std::vector<int32_t> ids;
  for (int p = 0; p < md->topics[0].partition_cnt; ++p) ids.push_back(md->topics[0].partitions[p].id);
  rd_kafka_metadata_destroy(md);
  return ids;
}

// Loads every zstd dictionary in `dir` by id; other files are skipped with
// a warning. InvalidArgument when none is there, or two share an id.
Status LoadDictionaries(const std::string& dir,
                        std::map<uint32_t, std::shared_ptr<const Dictionary>>* dicts) {
  Env* env = Env::Default();
  Result<std::vector<std::string>> names = env->ListDir(dir);
  if (!names.ok()) return Status::InvalidArgument("--dict-dir " + dir + ": " + names.status().message());
  std::map<uint32_t, std::string> from;
  for (const std::string& name : *names) {
    const std::string path = dir + "/" + name;
    Result<std::string> bytes = env->ReadFile(path, kMaxDictionaryBytes);
    if (!bytes.ok() || ZSTD_getDictID_fromDict(bytes->data(), bytes->size()) == 0) {
      Log("warning: --dict-dir: skipping " + path + ", not a zstd dictionary");
      continue;
    }
    Result<std::shared_ptr<const Dictionary>> d = Dictionary::Load(*bytes, 3);
    if (!d.ok()) return Status::InvalidArgument("dictionary " + path + ": " + d.status().message());
    uint32_t id = (*d)->id();
    if (auto [it, fresh] = from.emplace(id, path); !fresh) {
      return Status::InvalidArgument("dictionaries " + it->second + " and " + path +
                                     " have the same id " + std::to_string(id) + "; keep one");
    }
    (*dicts)[id] = *d;
  }
  if (dicts->empty()) {
    return Status::InvalidArgument("--dict-dir " + dir +
                                   " holds no zstd dictionary (edgesync dict train writes them)");
  }
  return Status::OK();
}

// The counters of a run; printed as one key=value line.
struct Counters {
  uint64_t quarantined = 0;
  uint64_t output_records = 0;
  uint64_t gap_lines = 0;
  uint64_t fragments = 0;            // fragment messages read
  uint64_t fragment_sets = 0;        // envelopes put back together from them
  uint64_t fragments_abandoned = 0;  // partial sets given up (resent from the start, broken, evicted)
  uint64_t transaction_aborts = 0;
  uint64_t restores = 0;             // partitions whose state was restored
  int64_t restore_us = 0;            // time spent restoring, in all
  int64_t last_restore_us = 0;       // the last assignment's restore
};

std::string CountersLine(const UnpackStats& s, const Counters& c) {
  std::string line = "batches=" + std::to_string(s.batches) + " records=" + std::to_string(s.records) +
                     " duplicate_batches=" + std::to_string(s.duplicate_batches) +
                     " missing_batches=" + std::to_string(s.missing_batches) +
                     " bad_envelopes=" + std::to_string(s.bad_envelopes) +
                     " gap_records=" + std::to_string(s.gap_records) +
                     " lost_events=" + std::to_string(s.lost_events);
  for (const auto& [reason, n] : s.rejected) line += " rejected_" + reason + "=" + std::to_string(n);
  line += " quarantined=" + std::to_string(c.quarantined) +
          " output_records=" + std::to_string(c.output_records) +
          " gap_lines=" + std::to_string(c.gap_lines) + " fragments=" + std::to_string(c.fragments) +
          " fragment_sets=" + std::to_string(c.fragment_sets) +
          " fragments_abandoned=" + std::to_string(c.fragments_abandoned) +
          " transaction_aborts=" + std::to_string(c.transaction_aborts) +
          " restored_partitions=" + std::to_string(c.restores);
  return line;
}

// One run of the service: the consumer, the outputs, the state. Main thread.
class Service {
 public:
  explicit Service(Options o) : o_(std::move(o)) {}
  ~Service() {
    if (consumer_) {
      if (!closed_) {
        closed_ = true;  // an assignment this close serves is handed back (Assign)
        rd_kafka_consumer_close(consumer_);
      }
      rd_kafka_destroy(consumer_);
    }
    if (restorer_) {
      rd_kafka_consumer_close(restorer_);
      rd_kafka_destroy(restorer_);
    }
    if (gaps_file_) std::fclose(gaps_file_);
  }

  // Everything that can be checked before reading: InvalidArgument (exit
  // code 2) for a usage or configuration error; Unavailable or IOError
  // (exit 1) for a cluster it cannot reach; Aborted when a stop signal came.
  Status Configure();
  // Runs until stopped (or, with --exit-at-end, until every partition is
  // read); OK after a clean stop.
  Status Run();
  const UnpackStats& stats() const { return unpacker_->stats(); }
  const Counters& counters() const { return counters_; }

 private:
  using TopicPartition = std::pair<std::string, int32_t>;
  Status StartConsumer();
  Status CheckStateTopic();
  // The consumer group's rebalance: restore before taking partitions, and
  // commit the round before giving them up.
  static void OnRebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err,
                          rd_kafka_topic_partition_list_t* parts, void* self);
  void Assign(rd_kafka_topic_partition_list_t* parts);
  void Revoke(rd_kafka_topic_partition_list_t* parts);
  Status RestorePartitions(const rd_kafka_topic_partition_list_t* parts);
  // Assigns nothing from the assign callback: `parts` go to the group's
  // other instances unread, and the log says so with `why`.
  void HandBack(const rd_kafka_topic_partition_list_t* parts, const std::string& why);
  // The group's committed offsets into `parts`: rd_kafka_committed() for up
  // to 60 s, asked again each second so that a stop signal ends the wait
  // (RD_KAFKA_RESP_ERR__INTR then).
  rd_kafka_resp_err_t Committed(rd_kafka_topic_partition_list_t* parts);
  // A round's transaction was aborted: counts it, and nothing of the round
  // counts as written (its records, its tombstones); logs `what`.
  void DropAbortedRound(const std::string& what);
  // After an aborted transaction: every partition back to its committed
  // offset and its state back to the changelog's.
  Status Rewind();
  // The sequence state a message of (topic, partition) is checked against;
  // nullptr for a partition whose state this instance does not hold.
  SequenceTracker* TrackerFor(const std::string& topic, int32_t partition);
  Status ProduceState();
  // The counters, lag per partition and restore times for /metrics.
  void PublishMetrics();
  void RefreshDeviceKeys();
  void HandleMessage(rd_kafka_message_t* m);
  // `whole`: the envelope reassembled from fragments, quarantined instead
  // of `m` (its last fragment) when set and small enough.
  void Reject(rd_kafka_message_t* m, const std::string& source, const std::string& reason,
              const std::string& why, std::string_view whole = {});
  void EmitGap(const std::string& device, const std::string& stream, const std::string& kind,
               const std::string& line);
  Status EndRound();
  bool AllPartitionsAtEnd(rd_kafka_message_t* eof);

  Options o_;
  bool kafka_output_ = false;
  Keyring keys_;
  std::unique_ptr<DeviceKeyRegistry> device_keys_;
  int64_t last_key_refresh_us_ = 0;
  std::map<uint32_t, std::shared_ptr<const Dictionary>> dicts_;
  std::optional<TopicTemplate> template_;
  int64_t max_age_us_ = 0;
  std::unique_ptr<Unpacker> unpacker_;
  std::unique_ptr<FragmentAssembler> fragments_;
  std::unique_ptr<DedupeStore> dedupe_;
  // --state-topic: the state of each assigned partition, restored through
  // restorer_ (a consumer outside the group) when it is assigned.
  bool partitioned_ = false;
  std::map<TopicPartition, std::unique_ptr<SequenceTracker>> trackers_;
  std::vector<std::pair<TopicPartition, std::pair<std::string, std::string>>> forgotten_;
  rd_kafka_t* restorer_ = nullptr;
  std::unique_ptr<RoundProducer> state_;  // --state-topic without --output kafka
  RoundProducer* state_via_ = nullptr;    // the producer of state records
  bool closed_ = false;
  std::unique_ptr<MetricsServer> metrics_;
  int64_t last_metrics_us_ = 0;
  rd_kafka_t* consumer_ = nullptr;
  std::unique_ptr<RoundProducer> output_;      // --output kafka (records, --gaps-topic)
  std::unique_ptr<RoundProducer> quarantine_;  // --quarantine-topic, on the input cluster
  RoundProducer* quarantine_via_ = nullptr;    // output_ when both clusters are the same
  std::FILE* gaps_file_ = nullptr;

  // This round's output, and the offsets to store once it is out.
  std::string out_, gaps_out_;
  uint64_t round_records_ = 0, round_quarantined_ = 0, round_gap_lines_ = 0;
  std::map<std::pair<std::string, int32_t>, int64_t> next_offsets_;
  // The first offset read of each partition since it was assigned.
  std::map<std::pair<std::string, int32_t>, int64_t> first_offsets_;

  Counters counters_;
  int64_t last_stats_us_ = 0, last_forget_us_ = 0;
  // --exit-at-end: partitions that have yet to reach their end.
  std::set<std::pair<std::string, int32_t>> pending_eof_;
  bool assignment_known_ = false;
  // A local produce failure: the round cannot be vouched for.
  Status fatal_;
};

Status Service::Configure() {
  kafka_output_ = o_.output == "kafka";
  if (!kafka_output_) {
    if (!o_.output_brokers.empty() || o_.output_topic != "{stream}" || !o_.gaps_topic.empty()) {
      return Status::InvalidArgument(
          "--output-brokers, --output-topic and --gaps-topic need --output kafka");
    }
  }
  if (!o_.gaps_topic.empty() && !o_.gaps_path.empty()) {
    return Status::InvalidArgument("--gaps and --gaps-topic exclude each other: pick one");
  }
  for (const auto& [flag, topic] : {std::pair{"--gaps-topic", o_.gaps_topic},
                                    std::pair{"--quarantine-topic", o_.quarantine_topic}}) {
    if (!topic.empty() && !ValidTopicName(topic)) {
      return Status::InvalidArgument(std::string(flag) + " " + topic +
                                     ": not a valid Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)");
    }
  }
  if (kafka_output_) {
    Result<TopicTemplate> t = TopicTemplate::Parse(o_.output_topic);
    if (!t.ok()) return t.status();
    template_ = std::move(t).value();
  }
  std::optional<int64_t> age = ParseAgeSeconds(o_.dedupe_max_age);
  if (!age) {
    return Status::InvalidArgument("--dedupe-max-age " + o_.dedupe_max_age +
                                   ": want a positive duration such as 7d, 12h, 30m or 3600 (seconds)");
  }
  max_age_us_ = *age * 1'000'000;
  std::optional<uint64_t> max_batch = ParseBytes(o_.max_batch_bytes);
  if (!max_batch || *max_batch == 0 || *max_batch > format::kMaxBodyBytes) {
    return Status::InvalidArgument("--max-batch-bytes " + o_.max_batch_bytes +
                                   ": want 1 to 67108864 bytes (64MiB, the format's limit)");
  }
  if (o_.stats_seconds < 0) return Status::InvalidArgument("--stats wants seconds >= 0");
  if (!o_.state_topic.empty()) {
    if (o_.group.empty()) {
      return Status::InvalidArgument("--state-topic needs --group: the state follows the group's partitions");
    }
    if (!o_.dedupe_db.empty()) {
      return Status::InvalidArgument(
          "--state-topic and --dedupe-db exclude each other: the state topic holds the state of "
          "every instance of the group, --dedupe-db one lone instance's");
    }
    if (!ValidTopicName(o_.state_topic)) {
      return Status::InvalidArgument("--state-topic " + o_.state_topic +
                                     ": not a valid Kafka topic name (1 to 249 of A-Z a-z 0-9 . _ -)");
    }
    if (kafka_output_ && !o_.output_brokers.empty() && o_.output_brokers != o_.brokers) {
      return Status::InvalidArgument(
          "--output kafka with --state-topic commits the output, the state and the input offsets "
          "in one transaction, on one cluster: drop --output-brokers");
    }
    partitioned_ = true;
    if (o_.instance_id.empty()) {
      char host[256] = {};
      if (::gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
        return Status::InvalidArgument("--instance-id: the host has no name; give one");
      }
      o_.instance_id = host;
    }
  } else if (!o_.instance_id.empty()) {
    return Status::InvalidArgument("--instance-id needs --state-topic");
  }

  for (const std::string& path : o_.private_keys) {
    Result<crypto::Key> key = crypto::ReadPrivateKeyFile(Env::Default(), path);
    if (!key.ok()) {
      if (key.status().code() == Status::Code::kNotFound) {
        return Status::InvalidArgument("--private-key " + path + ": no such file");
      }
      return Status::InvalidArgument("--private-key " + path + ": " + key.status().message() +
                                     " (want an X25519 PEM private key, as edgesync keygen writes)");
    }
    EDGESYNC_RETURN_IF_ERROR(keys_.AddPrivate(*key));
  }
  if (!o_.dict_dir.empty()) EDGESYNC_RETURN_IF_ERROR(LoadDictionaries(o_.dict_dir, &dicts_));
  // Who wrote each batch: the enrolled device keys, or, said explicitly,
  // the device id each batch claims.
  if (o_.device_keys.empty() == !o_.trust_device_ids) {
    return Status::InvalidArgument(
        o_.trust_device_ids
            ? "--device-keys and --trust-device-ids exclude each other: pick one"
            : "say who may write: --device-keys DIR (the enrolled devices' keys: each device's "
              "device.pub from its state_dir), or --trust-device-ids to take every batch's device id "
              "on its word (tests and trusted networks only)");
  }
  if (o_.allow_unsigned && o_.device_keys.empty()) {
    return Status::InvalidArgument("--allow-unsigned needs --device-keys (without it nothing is checked)");
  }
  if (!o_.device_keys.empty()) {
    device_keys_ = std::make_unique<DeviceKeyRegistry>(Env::Default(), o_.device_keys);
    std::vector<std::string> problems;
    Status st = device_keys_->Refresh(&problems);
    if (!st.ok()) return Status::InvalidArgument("--device-keys " + o_.device_keys + ": " + st.message());
    for (const std::string& p : problems) Log("device keys: " + p + "; skipped");
    Log("device keys: " + std::to_string(device_keys_->enrolled()) + " enrolled, " +
        std::to_string(device_keys_->revoked()) + " revoked, in " + o_.device_keys +
        (o_.allow_unsigned ? "; unsigned (version 1) batches accepted (--allow-unsigned)" : ""));
    last_key_refresh_us_ = Env::Default()->MonotonicMicros();
  }

  OpenOptions open;
  open.keys = &keys_;
  open.dictionaries = &dicts_;
  open.max_raw_bytes = static_cast<uint32_t>(*max_batch);
  // Holding a key means batches are expected sealed: a plain one is forged
  // or from a misconfigured agent, unless the operator says otherwise.
  open.require_encryption = !keys_.empty() && !o_.allow_plaintext;
  open.device_keys = device_keys_.get();
  open.allow_unsigned = o_.allow_unsigned;
  // Expect every stream to start at batch 1 only when reading every
  // partition from its start. A consumer group resumes from its offsets, where
  // a stream the dedupe state does not know (forgotten by age, or no
  // --dedupe-db) starts wherever it is met: holes before it would be false.
  unpacker_ = std::make_unique<Unpacker>(o_.from_beginning && o_.group.empty(), open);
  // An envelope is at most its body (compressed, or stored if zstd did not
  // help) plus header and seal: 64 KiB covers the rest.
  const size_t max_envelope = static_cast<size_t>(*max_batch) + (64 << 10);
  fragments_ = std::make_unique<FragmentAssembler>(max_envelope, std::max<size_t>(64 << 20, 2 * max_envelope),
                                                   device_keys_.get(), o_.allow_unsigned);

  const int64_t now = Env::Default()->NowMicros();
  unpacker_->tracker().SetTime(now);
  last_forget_us_ = Env::Default()->MonotonicMicros();
  if (!o_.dedupe_db.empty()) {
    Result<std::unique_ptr<DedupeStore>> db = DedupeStore::Open(o_.dedupe_db);
    if (!db.ok()) return Status::InvalidArgument(db.status().message());
    dedupe_ = std::move(db).value();
    Result<size_t> restored = dedupe_->Load(now - max_age_us_, &unpacker_->tracker());
    if (!restored.ok()) {
      return Status::InvalidArgument("--dedupe-db " + o_.dedupe_db + ": " +
                                     restored.status().message() +
                                     " (move the file aside to start with an empty state)");
    }
    Log("dedupe db " + o_.dedupe_db + ": " + std::to_string(*restored) + " stream(s) restored");
  }

  if (!o_.gaps_path.empty()) {
    gaps_file_ = std::fopen(o_.gaps_path.c_str(), "a");
    if (gaps_file_ == nullptr) return Status::InvalidArgument("cannot open " + o_.gaps_path + " for appending");
  }

  std::vector<std::pair<std::string, std::string>> producer_props;
  EDGESYNC_RETURN_IF_ERROR(SplitProperties(o_.producer_properties, "--producer-property", &producer_props));
  const std::string output_brokers = o_.output_brokers.empty() ? o_.brokers : o_.output_brokers;
  if (kafka_output_) {
    // With the state in Kafka, each round is one transaction: exactly once.
    const std::string transactional_id =
        partitioned_ ? "edgesync-unpack." + o_.group + "." + o_.instance_id : "";
    Result<std::unique_ptr<RoundProducer>> p =
        RoundProducer::Create(output_brokers, producer_props, transactional_id);
    if (!p.ok()) return p.status();
    output_ = std::move(p).value();
  }
  if (partitioned_) {
    if (output_) {
      state_via_ = output_.get();
    } else {
      Result<std::unique_ptr<RoundProducer>> p = RoundProducer::Create(o_.brokers, producer_props);
      if (!p.ok()) return p.status();
      state_ = std::move(p).value();
      state_via_ = state_.get();
    }
  }
  if (!o_.quarantine_topic.empty()) {
    if (output_ && output_brokers == o_.brokers) {
      quarantine_via_ = output_.get();
    } else {
      Result<std::unique_ptr<RoundProducer>> p = RoundProducer::Create(o_.brokers, producer_props);
      if (!p.ok()) return p.status();
      quarantine_ = std::move(p).value();
      quarantine_via_ = quarantine_.get();
    }
  }
  Log(std::to_string(keys_.size()) + " private key(s), " + std::to_string(dicts_.size()) +
      " dictionar" + (dicts_.size() == 1 ? "y" : "ies") +
      (open.require_encryption ? ", plain batches refused" : ""));
  if (!o_.metrics_address.empty()) {
    Result<std::unique_ptr<MetricsServer>> server = MetricsServer::Start(o_.metrics_address);
    if (!server.ok()) return Status::InvalidArgument("--metrics-address: " + server.status().message());
    metrics_ = std::move(server).value();
    Log("metrics on " + o_.metrics_address + " (port " + std::to_string(metrics_->port()) + "), GET /metrics");
  }
  if (partitioned_) {
    Log("instance " + o_.instance_id + " of group " + o_.group + ", state in topic " + o_.state_topic +
        (kafka_output_ ? ": exactly once (transactions)" : ": NDJSON output, at least once"));
  } else if (!o_.group.empty()) {
    Log("group " + o_.group + " without --state-topic: run one instance only (another instance of "
        "the group would not know what this one wrote)");
  }
  return StartConsumer();
}

Status Service::StartConsumer() {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const bool group = !o_.group.empty();
  std::vector<std::pair<std::string, std::string>> props = {
      {"bootstrap.servers", o_.brokers},
      {"enable.partition.eof", o_.exit_at_end ? "true" : "false"},
      {"auto.offset.reset", o_.from_beginning ? "earliest" : "latest"},
      // librdkafka needs a group id to assign(); without --group none is joined.
      {"group.id", group ? o_.group : "edgesync-unpack"},
      // Offsets are stored by hand once a round's output is out (never on
      // poll), and the stored ones committed in the background.
      {"enable.auto.offset.store", "false"},
      // Transactional output commits the offsets in its transactions.
      {"enable.auto.commit", group && !(partitioned_ && kafka_output_) ? "true" : "false"},
  };
  std::vector<std::pair<std::string, std::string>> user;
  Status st = SplitProperties(o_.properties, "--property", &user);
  for (const auto& [k, v] : user) {
    if (!st.ok()) break;
    // The rebalance callback takes and gives whole assignments.
    if (k == "partition.assignment.strategy" && v.find("cooperative") != std::string::npos) {
      st = Status::InvalidArgument("--property " + k + "=" + v +
                                   ": edgesync-unpack takes the eager strategies only (range, roundrobin)");
    }
    // What the delivery guarantees rest on is not a setting.
    for (const char* fixed : {"group.id", "enable.auto.commit", "enable.auto.offset.store",
                              "isolation.level", "enable.partition.eof"}) {
      if (k == fixed) {
        st = Status::InvalidArgument("--property " + k + ": set by edgesync-unpack itself (the group: "
                                     "--group; the end of the input: --exit-at-end)");
      }
    }
  }
  props.insert(props.end(), user.begin(), user.end());
  if (st.ok()) st = ApplyProperties(conf, props);
  if (!st.ok()) {
    rd_kafka_conf_destroy(conf);
    return st;
  }
  if (group) {
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_rebalance_cb(conf, &Service::OnRebalance);
  }
  consumer_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (consumer_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::InvalidArgument(std::string("kafka consumer: ") + err);
  }
  rd_kafka_poll_set_consumer(consumer_);

  rd_kafka_resp_err_t rerr;
  if (partitioned_) EDGESYNC_RETURN_IF_ERROR(CheckStateTopic());
  if (group) {
    rd_kafka_topic_partition_list_t* subs =
        rd_kafka_topic_partition_list_new(static_cast<int>(o_.topics.size()));
    for (const auto& t : o_.topics) rd_kafka_topic_partition_list_add(subs, t.c_str(), RD_KAFKA_PARTITION_UA);
    rerr = rd_kafka_subscribe(consumer_, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (rerr) return Status::InvalidArgument(std::string("subscribe: ") + rd_kafka_err2str(rerr));
    return Status::OK();
  }
  assignment_known_ = true;
  rd_kafka_topic_partition_list_t* assign = rd_kafka_topic_partition_list_new(8);
  for (const auto& t : o_.topics) {
    Result<std::vector<int32_t>> ids = TopicPartitions(consumer_, t);
    if (!ids.ok()) {
      rd_kafka_topic_partition_list_destroy(assign);
      return ids.status();
    }
    for (int32_t id : *ids) {
      rd_kafka_topic_partition_list_add(assign, t.c_str(), id)->offset =
          o_.from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
      pending_eof_.insert({t, id});
    }
  }
  rerr = rd_kafka_assign(consumer_, assign);
  rd_kafka_topic_partition_list_destroy(assign);
  if (rerr) return Status::Unavailable(std::string("assign: ") + rd_kafka_err2str(rerr));
  return Status::OK();
}

// Partition P's state lives in the state topic's partition P: the state
// topic needs at least as many partitions as every input topic. A consumer
// outside the group (restorer_) reads it when partitions are assigned.
Status Service::CheckStateTopic() {
  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> props = {
      {"bootstrap.servers", o_.brokers},
      {"group.id", "edgesync-unpack-restore"},  // never joined: assign() only
      {"enable.auto.commit", "false"},
      {"enable.partition.eof", "true"},
      {"isolation.level", "read_committed"},
      {"auto.offset.reset", "earliest"},
      // A restore ends with the fetch that finds each partition's end: the
      // broker's default wait for more data (500 ms) would be most of it.
      {"fetch.wait.max.ms", "10"},
  };
  // (The keys it sets are refused in --property: StartConsumer.)
  Status st = SplitProperties(o_.properties, "--property", &props);
  if (st.ok()) st = ApplyProperties(conf, props);
  if (!st.ok()) {
    rd_kafka_conf_destroy(conf);
    return st;
  }
  restorer_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (restorer_ == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::InvalidArgument(std::string("kafka consumer (state restore): ") + err);
  }
  rd_kafka_poll_set_consumer(restorer_);
  Result<std::vector<int32_t>> state = TopicPartitions(restorer_, o_.state_topic);
  // A state topic that does not exist is a setup step left out (exit 2);
  // an unreachable cluster stays Unavailable (exit 1, as for the input
  // topic), a stop Aborted.
  if (state.status().code() == Status::Code::kNotFound) {
    return Status::InvalidArgument("--state-topic: " + state.status().message() +
                                   ": create it before the first start, with cleanup.policy=compact and "
                                   "at least the input's partition count");
  }
  if (!state.ok()) return state.status();
  for (const std::string& t : o_.topics) {
    Result<std::vector<int32_t>> input = TopicPartitions(restorer_, t);
    if (!input.ok()) return input.status();
    if (input->size() > state->size()) {
      return Status::InvalidArgument(
          "--state-topic " + o_.state_topic + " has " + std::to_string(state->size()) +
          " partitions, topic " + t + " " + std::to_string(input->size()) +
          ": the state topic needs at least as many (create it with cleanup.policy=compact and the "
          "input's partition count)");
    }
  }
  return Status::OK();
}

void Service::OnRebalance(rd_kafka_t*, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
                          void* self) {
  auto* service = static_cast<Service*>(self);
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    service->Assign(parts);
  } else {
    service->Revoke(parts);
  }
}

void Service::Assign(rd_kafka_topic_partition_list_t* parts) {
  first_offsets_.clear();
  if (g_stop || closed_ || !fatal_.ok()) {
    // Stopping (a signal, the end of --exit-at-end, a fatal error):
    // partitions assigned now go to the group's other instances unread.
    // The rebalance may have ended after the last poll, and then
    // consumer_close() serves it; the closing consumer no longer asks its
    // coordinator, so fetching committed offsets would wait out its timeout.
    HandBack(parts, "stopping");
    return;
  }
  if (partitioned_) {
    // The committed offsets first, as Kafka Streams does: fetching them
    // waits for a transaction still committing (its offsets are unstable
    // until it is done), so that its state records are there to restore.
    rd_kafka_resp_err_t err = Committed(parts);
    if (err && err != RD_KAFKA_RESP_ERR__INTR) {
      Log(std::string("committed offsets: ") + rd_kafka_err2str(err) + " (reading from the group's)");
    }
    Status st = err == RD_KAFKA_RESP_ERR__INTR ? Status::Aborted("stopped while fetching the committed offsets")
                                               : RestorePartitions(parts);
    if (!st.ok() && g_stop) {
      HandBack(parts, st.message());  // a stop while restoring: not read yet
      return;
    }
    if (!st.ok()) {
      // Reading them without their state would let duplicates through.
      if (fatal_.ok()) fatal_ = Status::Unavailable("restoring partition state: " + st.message());
      (void)rd_kafka_assign(consumer_, nullptr);
      return;
    }
  }
  for (int i = 0; i < parts->cnt; ++i) {
    Log("assigned " + std::string(parts->elems[i].topic) + "/" + std::to_string(parts->elems[i].partition));
  }
  (void)rd_kafka_assign(consumer_, parts);
}

void Service::Revoke(rd_kafka_topic_partition_list_t* parts) {
  // What was read from them is written and committed before they go; a
  // round that fails here is read again by their next owner. An assignment
  // lost (this member was fenced out of the group) cannot commit: the round
  // is aborted at once.
  Status st;
  if (output_ && output_->transactional() && rd_kafka_assignment_lost(consumer_) && fatal_.ok()) {
    st = output_->Abort();
    if (st.ok()) st = Status::Aborted("the assignment was lost");
  } else {
    st = EndRound();
  }
  if (st.code() == Status::Code::kAborted) {
    DropAbortedRound(st.message() + "; the next owner reads the round again");
  } else if (!st.ok() && fatal_.ok()) {
    fatal_ = st;
  }
  if (!(partitioned_ && kafka_output_) && !o_.group.empty()) {
    rd_kafka_resp_err_t err = rd_kafka_commit(consumer_, nullptr, 0);
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET) {
      Log(std::string("offset commit before handing partitions over failed: ") + rd_kafka_err2str(err));
    }
  }
  for (int i = 0; i < parts->cnt; ++i) {
    TopicPartition tp{parts->elems[i].topic, parts->elems[i].partition};
    trackers_.erase(tp);
    next_offsets_.erase(tp);
    (void)fragments_->Forget(tp.first, tp.second);  // read again by the next owner
    Log("revoked " + tp.first + "/" + std::to_string(tp.second));
  }
  (void)rd_kafka_assign(consumer_, nullptr);
}

void Service::DropAbortedRound(const std::string& what) {
  ++counters_.transaction_aborts;
  round_records_ = round_quarantined_ = round_gap_lines_ = 0;
  forgotten_.clear();
  Log(what);
}

void Service::HandBack(const rd_kafka_topic_partition_list_t* parts, const std::string& why) {
  // State half-restored for them goes too, lest a later round act on state
  // it did not finish reading.
  for (int i = 0; i < parts->cnt; ++i) trackers_.erase({parts->elems[i].topic, parts->elems[i].partition});
  Log(why + ": leaving the " + std::to_string(parts->cnt) +
      " partition(s) assigned now to the group's other instances");
  (void)rd_kafka_assign(consumer_, nullptr);
}

Status Service::RestorePartitions(const rd_kafka_topic_partition_list_t* parts) {
  RestoreTargets targets;
  const int64_t now = Env::Default()->NowMicros();
  for (int i = 0; i < parts->cnt; ++i) {
    TopicPartition tp{parts->elems[i].topic, parts->elems[i].partition};
    auto tracker = std::make_unique<SequenceTracker>(false);
    tracker->SetTime(now);
    targets[tp.second][tp.first] = tracker.get();
    trackers_[tp] = std::move(tracker);
  }
  // Bounded: a state partition that cannot be read (its leader gone) must
  // not hold the rebalance callback, and with it the instance, for ever;
  // a stop signal ends it at once.
  constexpr int64_t kRestoreTimeoutUs = 300'000'000;
  const int64_t give_up_at = Env::Default()->MonotonicMicros() + kRestoreTimeoutUs;
  bool timed_out = false;
  Result<RestoreStats> r = RestoreState(
      restorer_, o_.state_topic, targets,
      [&] { return g_stop > 0 || (timed_out = Env::Default()->MonotonicMicros() > give_up_at); },
      [](const std::string& line) { Log(line); });
  if (timed_out) {
    return Status::Unavailable("state topic " + o_.state_topic + " not read to its end within " +
                               std::to_string(kRestoreTimeoutUs / 1'000'000) + " s");
  }
  if (!r.ok()) return r.status();
  // Restored state is what the changelog holds already: nothing to write.
  for (auto& [tp, tracker] : trackers_) (void)tracker->TakeDirty();
  counters_.restores += static_cast<uint64_t>(parts->cnt);
  counters_.restore_us += r->micros;
  counters_.last_restore_us = r->micros;
  Log("restored " + std::to_string(r->streams) + " stream(s) of " + std::to_string(parts->cnt) +
      " partition(s) from " + std::to_string(r->records) + " state record(s) in " +
      std::to_string(r->micros / 1000) + " ms" +
      (r->skipped ? ", " + std::to_string(r->skipped) + " skipped" : ""));
  return Status::OK();
}

rd_kafka_resp_err_t Service::Committed(rd_kafka_topic_partition_list_t* parts) {
  const int64_t give_up_at = Env::Default()->MonotonicMicros() + 60'000'000;
  while (true) {
    if (g_stop) return RD_KAFKA_RESP_ERR__INTR;
    rd_kafka_resp_err_t err = rd_kafka_committed(consumer_, parts, 1000);
    if (err != RD_KAFKA_RESP_ERR__TIMED_OUT || Env::Default()->MonotonicMicros() > give_up_at) return err;
  }
}

Status Service::Rewind() {
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (rd_kafka_assignment(consumer_, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    return Status::IOError("rewinding after an aborted transaction: no assignment");
  }
  rd_kafka_resp_err_t err = Committed(parts);
  if (err == RD_KAFKA_RESP_ERR__INTR) {
    rd_kafka_topic_partition_list_destroy(parts);
    return Status::Aborted("stopped while fetching the committed offsets");
  }
  if (err) {
    rd_kafka_topic_partition_list_destroy(parts);
    return Status::Unavailable(std::string("rewinding after an aborted transaction: committed offsets: ") +
                               rd_kafka_err2str(err));
  }
  // Where to read again: the committed offset, else (nothing committed
  // yet) the first offset this assignment read; untouched partitions stay.
  rd_kafka_topic_partition_list_t* seek = rd_kafka_topic_partition_list_new(parts->cnt);
  for (int i = 0; i < parts->cnt; ++i) {
    const rd_kafka_topic_partition_t& p = parts->elems[i];
    int64_t offset = p.offset;
    if (offset < 0) {
      auto first = first_offsets_.find({p.topic, p.partition});
      if (first == first_offsets_.end()) continue;
      offset = first->second;
    }
    rd_kafka_topic_partition_list_add(seek, p.topic, p.partition)->offset = offset;
    (void)fragments_->Forget(p.topic, p.partition);
  }
  trackers_.clear();
  next_offsets_.clear();
  Status st = RestorePartitions(parts);
  if (st.ok() && seek->cnt > 0) {
    rd_kafka_error_t* error = rd_kafka_seek_partitions(consumer_, seek, 60'000);
    if (error != nullptr) {
      st = Status::Unavailable(std::string("rewinding after an aborted transaction: ") +
                               rd_kafka_error_string(error));
      rd_kafka_error_destroy(error);
    }
  }
  rd_kafka_topic_partition_list_destroy(seek);
  rd_kafka_topic_partition_list_destroy(parts);
  return st;
}

SequenceTracker* Service::TrackerFor(const std::string& topic, int32_t partition) {
  if (!partitioned_) return &unpacker_->tracker();
  auto it = trackers_.find({topic, partition});
  return it == trackers_.end() ? nullptr : it->second.get();
}

Status Service::Run() {
  Env* env = Env::Default();
  last_stats_us_ = env->MonotonicMicros();
  bool done = false;
  while (!g_stop && !done && fatal_.ok()) {
    RefreshDeviceKeys();
    const int64_t now = env->NowMicros();
    unpacker_->tracker().SetTime(now);
    for (auto& [tp, tracker] : trackers_) tracker->SetTime(now);
    const int64_t deadline = env->MonotonicMicros() + kRoundTimeMs * 1000;
    for (size_t n = 0; n < kRoundMessages && !g_stop && !done &&
                       out_.size() + gaps_out_.size() < kRoundOutputBytes;) {
      int64_t left_ms = (deadline - env->MonotonicMicros()) / 1000;
      if (left_ms <= 0) break;
      rd_kafka_message_t* m = rd_kafka_consumer_poll(consumer_, static_cast<int>(left_ms));
      if (m == nullptr) continue;
      if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        if (o_.exit_at_end && AllPartitionsAtEnd(m)) done = true;
      } else if (m->err) {
        Log(std::string("kafka: ") + rd_kafka_message_errstr(m));
      } else {
        HandleMessage(m);
        ++n;
      }
      rd_kafka_message_destroy(m);
    }
    Status st = EndRound();
    if (st.code() == Status::Code::kAborted && partitioned_ && kafka_output_ && fatal_.ok()) {
      // Nothing of the round is visible: read it again from the last commit.
      DropAbortedRound(st.message() + "; reading again from the last committed offsets");
      st = Rewind();
      if (st.code() == Status::Code::kAborted && g_stop) {
        // Stopped while rewinding: nothing of the aborted round was
        // committed, and the next owner reads it again. The state read
        // so far goes, so that closing writes none of it.
        Log(st.message() + "; the next owner reads the aborted round again");
        trackers_.clear();
        st = Status::OK();
      }
    }
    if (!st.ok()) {
      // No later round, nor the revoke that closing the consumer runs, may
      // commit past what failed.
      if (fatal_.ok()) fatal_ = st;
      return st;
    }
  }
  EDGESYNC_RETURN_IF_ERROR(fatal_);
  if (!o_.group.empty()) {
    // Leaves the group now: the revoke callback commits the last round and
    // the partitions go to the other instances at once, not after the
    // session times out.
    closed_ = true;
    rd_kafka_resp_err_t err = rd_kafka_consumer_close(consumer_);
    if (err) Log(std::string("leaving the group: ") + rd_kafka_err2str(err));
    EDGESYNC_RETURN_IF_ERROR(fatal_);
  }
  return Status::OK();
}

// Enrolments and revocations take effect within kKeyRefreshUs, without a restart.
void Service::RefreshDeviceKeys() {
  constexpr int64_t kKeyRefreshUs = 2'000'000;
  const int64_t now = Env::Default()->MonotonicMicros();
  if (!device_keys_ || now - last_key_refresh_us_ < kKeyRefreshUs) return;
  last_key_refresh_us_ = now;
  std::vector<std::string> problems;
  bool changed = false;
  Status st = device_keys_->Refresh(&problems, &changed);
  if (!st.ok()) {
    Log("device keys: " + st.message() + "; keeping the keys read before");
    return;
  }
  for (const std::string& p : problems) Log("device keys: " + p + "; skipped");
  if (changed) {
    Log("device keys: now " + std::to_string(device_keys_->enrolled()) + " enrolled, " +
        std::to_string(device_keys_->revoked()) + " revoked");
  }
}

bool Service::AllPartitionsAtEnd(rd_kafka_message_t* eof) {
  if (!assignment_known_) {
    // Group mode: the assignment is known once messages flow.
    rd_kafka_topic_partition_list_t* parts = nullptr;
    if (rd_kafka_assignment(consumer_, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      for (int i = 0; i < parts->cnt; ++i) pending_eof_.insert({parts->elems[i].topic, parts->elems[i].partition});
      rd_kafka_topic_partition_list_destroy(parts);
      assignment_known_ = true;
    }
  }
  pending_eof_.erase({rd_kafka_topic_name(eof->rkt), eof->partition});
  return assignment_known_ && pending_eof_.empty();
}

void Service::HandleMessage(rd_kafka_message_t* m) {
  const std::string topic = rd_kafka_topic_name(m->rkt);
  SequenceTracker* tracker = TrackerFor(topic, m->partition);
  if (tracker == nullptr) {
    // Not this instance's (any more): its owner reads it. Never expected.
    Log("skipped " + topic + "/" + std::to_string(m->partition) + "@" + std::to_string(m->offset) +
        ": no state held for the partition");
    return;
  }
  first_offsets_.try_emplace({topic, m->partition}, m->offset);
  next_offsets_[{topic, m->partition}] = m->offset + 1;
  std::string source = topic + "/" + std::to_string(m->partition) + "@" + std::to_string(m->offset);

  std::string_view value(static_cast<const char*>(m->payload), m->len);
  std::string assembled;
  if (!IsFragment(value)) {
    // Partial sets of this partition that waited too long are given up
    // (FragmentAssembler::Add does it for fragments).
    counters_.fragments_abandoned += fragments_->Expire(topic, m->partition, m->offset);
  } else {
    // Part of an envelope a broker found too large for one message: held
    // until the set is complete, then opened like any envelope.
    ++counters_.fragments;
    FragmentAssembler::Outcome f = fragments_->Add(
        {topic, m->partition, std::string(static_cast<const char*>(m->key), m->key_len)}, m->offset, value);
    counters_.fragments_abandoned += f.abandoned;
    if (f.kind == FragmentAssembler::Outcome::Kind::kRejected) {
      // Refused for who signed it, or as a fragment that cannot be part of a whole.
      const std::string reason = f.refusal == Rejection::kMalformed ? kRejectFragment : RejectionName(f.refusal);
      unpacker_->CountRejected(reason);
      Reject(m, source, reason, f.why);
      return;
    }
    if (f.kind == FragmentAssembler::Outcome::Kind::kIncomplete) return;
    ++counters_.fragment_sets;
    assembled = std::move(f.envelope);
    value = assembled;
    source = topic + "/" + std::to_string(m->partition) + "@" + std::to_string(f.first_offset) + ".." +
             std::to_string(m->offset);
  }

  Rejection why = Rejection::kNone;
  Result<OpenedEnvelope> opened = unpacker_->Open(value, &why);
  if (!opened.ok()) {
    Reject(m, source, RejectionName(why), opened.status().ToString(), assembled);
    return;
  }
  std::string out_topic;
  if (kafka_output_ && !opened->gap) {
    const BatchHeader& h = opened->header;
    // Checked before the batch counts as received: a refused batch stays
    // missing, never silently passed.
    out_topic = template_->Expand(h.device_id, ParseLane(h.stream).stream);
    if (!ValidTopicName(out_topic)) {
      unpacker_->CountRejected(kRejectInvalidTopic);
      std::string quoted;  // escaped: the device id is whatever the sender put there
      AppendJsonString(out_topic, &quoted);
      Reject(m, source, kRejectInvalidTopic,
             "--output-topic " + o_.output_topic + " gives " + quoted +
                 " for this batch, not a valid Kafka topic name");
      return;
    }
    for (const Record& r : opened->records) {
      size_t bytes = 2 * h.device_id.size() + h.stream.size() + r.topic.size() +
                     r.content_type.size() + r.payload.size() + 200;  // 200: our header names
      for (const auto& [k, v] : r.properties) bytes += k.size() + v.size() + 40;
      if (!output_->Fits(bytes)) {
        unpacker_->CountRejected(kRejectRecordTooLarge);
        Reject(m, source, kRejectRecordTooLarge,
               "a record of " + std::to_string(r.payload.size()) +
                   " bytes is over the output's message.max.bytes (raise it with "
                   "--producer-property and on the output cluster)");
        return;
      }
    }
  }

  Unpacked u = unpacker_->Accept(std::move(opened).value(), tracker);
  std::vector<std::string> notes;
  DescribeUnpacked(u, &notes);
  for (const auto& n : notes) Log(n);
  if (u.duplicate) return;
  for (const auto& g : u.missing) {
    EmitGap(g.device, g.stream, "missing", MissingToJson(g, tracker->time()));
  }
  const BatchHeader& hh = u.envelope.header;
  if (u.envelope.gap) {
    EmitGap(hh.device_id, hh.stream, "lost", GapToJson(hh.device_id, *u.envelope.gap));
    return;
  }
  for (const Record& r : u.envelope.records) {
    ++round_records_;
    if (!kafka_output_) {
      out_ += RecordToJson(hh, r);
      continue;
    }
    Headers headers = RecordHeaders(hh, r);
    std::string_view key = RecordKey(hh, r);
    const std::string_view payload = r.payload;
    Status st = output_->Produce(out_topic, key, &payload, headers);
    // A local refusal here is a bug or a configuration error (the topic
    // and size were checked): EndRound's flush cannot vouch for it.
    if (!st.ok()) {
      fatal_ = st;
      return;
    }
  }
}

void Service::Reject(rd_kafka_message_t* m, const std::string& source, const std::string& reason,
                     const std::string& why, std::string_view whole) {
  Log("rejected " + source + " reason=" + reason + ": " + why);
  if (quarantine_via_ == nullptr) return;
  // A reassembled envelope as a whole when the quarantine topic takes it;
  // else its last fragment, whose edgesync-source names the whole range.
  std::string_view quarantined(static_cast<const char*>(m->payload), m->len);
  if (!whole.empty() && quarantine_via_->Fits(whole.size() + 200)) quarantined = whole;
  // The envelope as it came, with its key and headers, plus why and whence.
  rd_kafka_headers_t* original = nullptr;
  if (rd_kafka_message_headers(m, &original) != RD_KAFKA_RESP_ERR_NO_ERROR) original = nullptr;
  Status st = quarantine_via_->Produce(
      o_.quarantine_topic, std::string_view(static_cast<const char*>(m->key), m->key_len),
      &quarantined,
      {{"edgesync-reject-reason", reason}, {"edgesync-source", source}}, original);
  if (!st.ok()) {
    fatal_ = st;
    return;
  }
  ++round_quarantined_;
}

void Service::EmitGap(const std::string& device, const std::string& stream,
                      const std::string& kind, const std::string& line) {
  ++round_gap_lines_;
  if (output_ && !o_.gaps_topic.empty()) {
    std::string_view value(line);
    value.remove_suffix(1);  // the record is the JSON object, without the line's '\n'
    Headers headers = DeviceAndStreamHeaders(device, stream);
    headers.emplace_back("edgesync-gap-kind", kind);
    Status st = output_->Produce(o_.gaps_topic, device, &value, headers);
    if (!st.ok()) fatal_ = st;
    return;
  }
  gaps_out_ += line;
}

Status Service::EndRound() {
  EDGESYNC_RETURN_IF_ERROR(fatal_);
  // 1. The output of every message of the round, out of this process.
  if (!out_.empty()) {
    if (std::fwrite(out_.data(), 1, out_.size(), stdout) != out_.size() || std::fflush(stdout) != 0) {
      return Status::IOError("writing records to stdout failed");
    }
    out_.clear();
  }
  if (!gaps_out_.empty()) {
    std::FILE* g = gaps_file_ ? gaps_file_ : stderr;
    if (std::fwrite(gaps_out_.data(), 1, gaps_out_.size(), g) != gaps_out_.size() ||
        std::fflush(g) != 0) {
      return Status::IOError("writing gaps to " + (gaps_file_ ? o_.gaps_path : "stderr") + " failed");
    }
    gaps_out_.clear();
  }
  // Files on disk: durable before the offsets move past them (a power cut
  // must not leave committed offsets over lines the disk never got). A
  // pipe or terminal has nothing to sync.
  for (std::FILE* f : {stdout, gaps_file_}) {
    if (f == nullptr) continue;
    struct stat st {};
    if (::fstat(::fileno(f), &st) == 0 && S_ISREG(st.st_mode) && ::fsync(::fileno(f)) != 0) {
      return Status::IOError(f == stdout ? "fsync of stdout failed" : "fsync of " + o_.gaps_path + " failed");
    }
  }

  // 2. Streams not seen for --dedupe-max-age are forgotten (tombstones in
  // the state topic), then what the round changed is written as state.
  Env* env = Env::Default();
  if (env->MonotonicMicros() - last_forget_us_ >= kForgetIntervalUs) {
    last_forget_us_ = env->MonotonicMicros();
    const int64_t cutoff = env->NowMicros() - max_age_us_;
    size_t n = unpacker_->tracker().ForgetSeenBefore(cutoff);
    for (auto& [tp, tracker] : trackers_) {
      std::vector<std::pair<std::string, std::string>> gone;
      n += tracker->ForgetSeenBefore(cutoff, &gone);
      for (auto& key : gone) forgotten_.emplace_back(tp, std::move(key));
    }
    if (dedupe_) {
      Result<size_t> gone = dedupe_->ForgetSeenBefore(cutoff);
      if (!gone.ok()) return Status::IOError("--dedupe-db " + o_.dedupe_db + ": " + gone.status().message());
    }
    if (n > 0) Log("forgot " + std::to_string(n) + " stream(s) not seen for --dedupe-max-age");
  }
  if (partitioned_) EDGESYNC_RETURN_IF_ERROR(ProduceState());

  // 3. The offsets to move to: never past the first fragment of a set
  // still incomplete (a restart must read the whole set again).
  rd_kafka_topic_partition_list_t* offsets = nullptr;
  if (!o_.group.empty() && !next_offsets_.empty()) {
    offsets = rd_kafka_topic_partition_list_new(static_cast<int>(next_offsets_.size()));
    for (const auto& [tp, offset] : next_offsets_) {
      std::optional<int64_t> pending = fragments_->OldestPending(tp.first, tp.second);
      rd_kafka_topic_partition_list_add(offsets, tp.first.c_str(), tp.second)->offset =
          pending ? std::min(offset, *pending) : offset;
    }
  }
  next_offsets_.clear();

  // 4. Output, state and offsets: in one transaction (exactly once), or
  // the output delivered and the state saved before the offsets are stored
  // for the background commit (at least once).
  Status st;
  if (output_ && output_->transactional()) {
    st = output_->Commit(offsets, consumer_);
  } else {
    if (output_) {
      st = output_->Flush();
      if (!st.ok()) st = Status::Unavailable("output to Kafka: " + st.message());
    }
    if (st.ok() && quarantine_) {
      st = quarantine_->Flush();
      if (!st.ok()) st = Status::Unavailable("quarantine: " + st.message());
    }
    if (st.ok() && state_) {
      st = state_->Flush();
      if (!st.ok()) st = Status::Unavailable("--state-topic " + o_.state_topic + ": " + st.message());
    }
    if (st.ok() && dedupe_) {
      st = dedupe_->Save(unpacker_->tracker().TakeDirty());
      if (!st.ok()) st = Status::IOError("--dedupe-db " + o_.dedupe_db + ": " + st.message());
    }
    // A partition taken away by a rebalance meanwhile refuses its offset:
    // its new owner reads those messages again.
    if (st.ok() && offsets != nullptr) (void)rd_kafka_offsets_store(consumer_, offsets);
  }
  if (offsets != nullptr) rd_kafka_topic_partition_list_destroy(offsets);
  if (!dedupe_) (void)unpacker_->tracker().TakeDirty();
  EDGESYNC_RETURN_IF_ERROR(st);
  counters_.output_records += round_records_;
  counters_.quarantined += round_quarantined_;
  counters_.gap_lines += round_gap_lines_;
  round_records_ = round_quarantined_ = round_gap_lines_ = 0;

  if (o_.stats_seconds > 0 &&
      env->MonotonicMicros() - last_stats_us_ >= static_cast<int64_t>(o_.stats_seconds * 1e6)) {
    last_stats_us_ = env->MonotonicMicros();
    Log(CountersLine(unpacker_->stats(), counters_));
  }
  if (metrics_ && env->MonotonicMicros() - last_metrics_us_ >= 1'000'000) {
    last_metrics_us_ = env->MonotonicMicros();
    PublishMetrics();
  }
  return Status::OK();
}

void Service::PublishMetrics() {
  const UnpackStats& s = unpacker_->stats();
  PrometheusText t;
  auto counter = [&t](const char* name, const char* help, double value) {
    t.Family(name, "counter", help);
    t.Sample(name, {}, value);
  };
  counter("edgesync_unpack_records_total", "Records written to the output (committed rounds).",
          static_cast<double>(counters_.output_records));
  counter("edgesync_unpack_batches_total", "New batches accepted.", static_cast<double>(s.batches));
  counter("edgesync_unpack_duplicate_batches_total", "Batches and gap records dropped as duplicates.",
          static_cast<double>(s.duplicate_batches));
  counter("edgesync_unpack_missing_batches_total", "Batches reported missing (sequence jumps).",
          static_cast<double>(s.missing_batches));
  counter("edgesync_unpack_gap_records_total", "The agents' reports of batches they gave up.",
          static_cast<double>(s.gap_records));
  counter("edgesync_unpack_lost_events_total", "Events the agents' gap records count.",
          static_cast<double>(s.lost_events));
  t.Family("edgesync_unpack_refused_total", "counter", "Envelopes refused, by reason.");
  for (const auto& [reason, n] : s.rejected) {
    t.Sample("edgesync_unpack_refused_total", {{"reason", reason}}, static_cast<double>(n));
  }
  counter("edgesync_unpack_quarantined_total", "Refused envelopes copied to --quarantine-topic.",
          static_cast<double>(counters_.quarantined));
  counter("edgesync_unpack_fragments_abandoned_total", "Partial fragment sets given up.",
          static_cast<double>(counters_.fragments_abandoned));
  counter("edgesync_unpack_transaction_aborts_total", "Rounds whose transaction was aborted.",
          static_cast<double>(counters_.transaction_aborts));
  counter("edgesync_unpack_restored_partitions_total", "Partitions whose state was restored.",
          static_cast<double>(counters_.restores));
  counter("edgesync_unpack_restore_seconds_total", "Time spent restoring partition state.",
          static_cast<double>(counters_.restore_us) / 1e6);
  t.Family("edgesync_unpack_last_restore_seconds", "gauge", "The last assignment's state restore time.");
  t.Sample("edgesync_unpack_last_restore_seconds", {}, static_cast<double>(counters_.last_restore_us) / 1e6);

  // Lag: the partition's high watermark (as last fetched) past this
  // instance's position in it.
  rd_kafka_topic_partition_list_t* parts = nullptr;
  if (rd_kafka_assignment(consumer_, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    t.Family("edgesync_unpack_assigned_partitions", "gauge", "Input partitions assigned to this instance.");
    t.Sample("edgesync_unpack_assigned_partitions", {}, parts->cnt);
    (void)rd_kafka_position(consumer_, parts);
    t.Family("edgesync_unpack_lag_messages", "gauge", "Messages of the partition not yet read.");
    for (int i = 0; i < parts->cnt; ++i) {
      const rd_kafka_topic_partition_t& p = parts->elems[i];
      int64_t low = 0, high = 0;
      if (rd_kafka_get_watermark_offsets(consumer_, p.topic, p.partition, &low, &high) !=
              RD_KAFKA_RESP_ERR_NO_ERROR || high < 0) {
        continue;
      }
      const int64_t at = p.offset >= 0 ? p.offset : low;
      t.Sample("edgesync_unpack_lag_messages", {{"topic", p.topic}, {"partition", std::to_string(p.partition)}},
               static_cast<double>(std::max<int64_t>(0, high - at)));
    }
    rd_kafka_topic_partition_list_destroy(parts);
  }
  metrics_->SetText(t.text());
}

// Each stream the round changed, and each one forgotten, as a record of
// its partition's partition in the state topic.
Status Service::ProduceState() {
  for (auto& [tp, tracker] : trackers_) {
    for (const SequenceTracker::SavedStream& s : tracker->TakeDirty()) {
      const std::string value = EncodeStreamState(s.state);
      const std::string_view v = value;
      EDGESYNC_RETURN_IF_ERROR(
          state_via_->Produce(o_.state_topic, StateKey(tp.first, s.device, s.stream), &v, {}, nullptr, tp.second));
    }
  }
  for (const auto& [tp, key] : forgotten_) {
    EDGESYNC_RETURN_IF_ERROR(state_via_->Produce(o_.state_topic, StateKey(tp.first, key.first, key.second),
                                                 nullptr, {}, nullptr, tp.second));
  }
  forgotten_.clear();
  return Status::OK();
}

}  // namespace
}  // namespace edgesync

int main(int argc, char** argv) {
  edgesync::Options o;
  CLI::App app{"edgesync-unpack: verify, decrypt and explode edgesync batches from Kafka into "
               "NDJSON or Kafka records"};
  app.add_option("--brokers", o.brokers, "Kafka bootstrap servers (host:port,...)")->required();
  app.add_option("--topic", o.topics, "topic to read (repeatable)")->required();
  app.add_option("--group", o.group,
                 "consumer group: offsets are committed once a message's output is written; "
                 "without it, reads every partition and commits nothing");
  app.add_flag("--from-beginning", o.from_beginning,
               "start at the oldest message (default: only new ones); with --group, only where "
               "the group has no committed offset");
  app.add_flag("--exit-at-end", o.exit_at_end, "exit once every partition is read to its end");
  app.add_option("-X,--property", o.properties, "extra librdkafka consumer property KEY=VALUE");
  app.add_option("--producer-property", o.producer_properties,
                 "extra librdkafka property KEY=VALUE for the output and quarantine producers");
  app.add_option("--private-key", o.private_keys,
                 "X25519 private key file (PEM) to decrypt batches (repeatable: key rotation); "
                 "with one, plain batches are refused");
  app.add_flag("--allow-plaintext", o.allow_plaintext,
               "accept plain (unencrypted) batches although --private-key is given");
  app.add_option("--device-keys", o.device_keys,
                 "directory of enrolled device keys (each device's device.pub; revoked ones in "
                 "DIR/revoked/): a batch must be signed by a key enrolled for the device it names. "
                 "Read again every 2 s");
  app.add_flag("--trust-device-ids", o.trust_device_ids,
               "check no device key: take every batch's device id on its word (instead of --device-keys)");
  app.add_flag("--allow-unsigned", o.allow_unsigned,
               "with --device-keys, also accept unsigned batches (format version 1) during the transition");
  app.add_option("--dict-dir", o.dict_dir, "directory of zstd dictionaries (loaded by id)");
  app.add_option("--max-batch-bytes", o.max_batch_bytes,
                 "refuse a batch larger than this decompressed (bytes, or KiB/MiB; default 64MiB)");
  app.add_option("--dedupe-db", o.dedupe_db,
                 "SQLite file keeping the de-duplication state across restarts (default: memory only)");
  app.add_option("--dedupe-max-age", o.dedupe_max_age,
                 "forget a (device, stream) not seen for this long (7d, 12h, 30m, or seconds; default 7d)");
  app.add_option("--output", o.output, "ndjson (stdout) or kafka")->check(CLI::IsMember({"ndjson", "kafka"}));
  app.add_option("--output-brokers", o.output_brokers, "--output kafka: bootstrap servers (default: --brokers)");
  app.add_option("--output-topic", o.output_topic,
                 "--output kafka: topic per batch, with {stream} and {device} (default {stream})");
  app.add_option("--gaps", o.gaps_path, "append gaps (lost and missing batches) to this file as NDJSON (default: stderr)");
  app.add_option("--gaps-topic", o.gaps_topic, "--output kafka: send gaps to this topic instead");
  app.add_option("--quarantine-topic", o.quarantine_topic,
                 "copy refused envelopes to this topic (on the input cluster), with the reason");
  app.add_option("--state-topic", o.state_topic,
                 "with --group: keep the de-duplication state per input partition in this compacted "
                 "topic (as many partitions as the input), so that several instances of the group "
                 "share the work and hand partitions over; with --output kafka, each round is one "
                 "transaction (exactly once)");
  app.add_option("--instance-id", o.instance_id,
                 "with --state-topic: this instance's name, unique in the group and kept across "
                 "restarts (its transactional id; default: the host name)");
  app.add_option("--metrics-address", o.metrics_address,
                 "serve Prometheus metrics at http://ADDRESS/metrics: 127.0.0.1:9464, [::1]:9464, or "
                 ":9464 for every interface");
  app.add_option("--stats", o.stats_seconds, "print the counters line every SECONDS (default: only at exit)");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 2;
  }

  std::signal(SIGINT, edgesync::OnSignal);
  std::signal(SIGTERM, edgesync::OnSignal);

  int code = 0;
  {
    edgesync::Service service(o);
    edgesync::Status st = service.Configure();
    if (st.code() == edgesync::Status::Code::kAborted && edgesync::g_stop) {
      edgesync::Log(st.message());  // a stop asked for during the start: nothing was read
      return 0;
    }
    if (!st.ok()) {
      // A cluster it cannot reach at start is not a usage error: 1, as a
      // failure while running, so that a supervisor tries again.
      const bool unavailable = st.code() == edgesync::Status::Code::kUnavailable ||
                               st.code() == edgesync::Status::Code::kIOError;
      edgesync::Log(st.message());
      return unavailable ? 1 : 2;
    }
    st = service.Run();
    if (!st.ok()) {
      edgesync::Log(st.message() + "; stopping without committing that round's offsets (it is "
                    "read again after a restart)");
      code = 1;
    }
    edgesync::Log(edgesync::CountersLine(service.stats(), service.counters()));
  }
  return code;
}


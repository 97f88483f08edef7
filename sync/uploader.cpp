#include "sync/uploader.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <set>
#include <unordered_map>

#include "base/backoff.h"
#include "base/last_error.h"
#include "base/progress.h"
#include "base/token_bucket.h"
#include "format/format.h"
#include "format/fragment.h"

namespace edgesync {

const char* KafkaStateName(KafkaState s) {
  switch (s) {
    case KafkaState::kUp: return "up";
    case KafkaState::kDown: return "down";
    case KafkaState::kUnknown: break;
  }
  return "unknown";
}

namespace {

// What a failed delivery (or produce call) means for the batch.
enum class Failure {
  kRetriable,  // the cluster will get better: pause, then send again
  kTopic,      // this topic refuses us until someone fixes it: block it
  kTooLarge,   // the broker refuses the message's size: split it
  kFatal,      // the producer is unusable: rebuild it
  kPurged,     // we took it back ourselves (stop, rebuild, after a failure)
};

Failure Classify(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__FATAL:
      return Failure::kFatal;
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
      return Failure::kTooLarge;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:  // reported only after topic.metadata.propagation.max.ms
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:         // invalid topic name
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
      return Failure::kTopic;
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
      return Failure::kPurged;
    default:
      return Failure::kRetriable;
  }
}

// A failure that took a time-out to come: the cluster (or the way to it)
// is away. Its time-out was the pause; what comes next is a probe.
bool IsOutage(rd_kafka_resp_err_t err) {
  switch (err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
      return true;
    default:
      return false;
  }
}

std::string Describe(rd_kafka_resp_err_t err) {
  return std::string(rd_kafka_err2name(err)) + " (" + rd_kafka_err2str(err) + ")";
}

// librdkafka's reconnect.backoff.max.ms unless kafka.properties sets it.
constexpr int kReconnectBackoffMaxMs = 500;

// Fragments are never made smaller than this: a broker that refuses 4 KiB
// messages is misconfigured, and the topic is blocked instead.
constexpr size_t kMinFragmentBytes = 4096;

}  // namespace

struct Uploader::Impl {
  // One batch handed to librdkafka: its bytes stay here until every delivery
  // report of its messages is in (librdkafka reads them without a copy).
  struct InFlight {
    SealedBatch batch;
    std::vector<std::string> fragments;  // empty: the envelope goes as one message
    size_t outstanding = 0;              // messages without a delivery report yet
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;  // first failure among them
    uint64_t bytes = 0;
    bool probe = false;                  // the one batch trying a blocked topic
  };

  struct Topic {
    size_t max_message = SIZE_MAX;  // learned from "too large": fragments of at most this
    bool blocked = false;
    std::string reason;
    int64_t blocked_since_us = 0;   // wall clock
    int64_t retry_at = 0;           // monotonic µs: next probe
    bool refreshed = false;         // metadata asked for since the last block
    bool probing = false;           // a probe batch is in flight
  };

  Impl(Store* store_in, Env* env_in) : store(store_in), env(env_in) {}

  Store* store;
  Env* env;
  UploaderOptions opt;
  rd_kafka_t* rk = nullptr;
  std::vector<rd_kafka_topic_t*> known_topics;  // handles of opt.topics, for as long as rk lives

  // Uploader thread only (delivery reports and callbacks run inside rd_kafka_poll there).
  std::unordered_map<int64_t, std::unique_ptr<InFlight>> in_flight;  // by batch id
  uint64_t in_flight_bytes = 0;
  std::map<std::string, Topic> topics;
  std::unordered_map<std::string, uint64_t> resend_from;  // stream -> lowest seq taken back after a failure
  std::vector<int64_t> delivered_ids;    // delivered, not deleted yet (still leased)
  std::set<std::string> metadata_asked;  // topics whose metadata a timeout made us ask for, this episode
  bool store_may_have_more = true; // Next may find something to send
  bool failed_since_idle = false;  // a delivery failed: send nothing new until in-flight drains
  bool outage_only = true;         // every failure since idle was an outage (IsOutage)
  // After an outage: one batch (the store's first) waits in librdkafka for
  // the cluster, the rest follow once Kafka has taken it. It leaves as soon
  // as librdkafka reconnects (reconnect.backoff.max.ms), with no pause of
  // ours between the cluster's return and the upload, and costs nothing on
  // the link while no broker answers.
  bool outage_probe = false;
  bool fatal = false;              // librdkafka raised a fatal error
  bool outage_logged = false;
  int64_t resume_at = 0;           // monotonic µs: no sends before this
  Backoff backoff{opt.backoff_initial_us, opt.backoff_max_us, env};
  TokenBucket bucket{0, 0, 0};

  std::mutex mu;
  std::unique_ptr<CondVar> cv = env->NewCondVar();
  bool notified = false;
  bool stopping = false;
  bool inject_fatal = false;
  int64_t stop_deadline = 0;

  // Read by stats() from any thread.
  std::atomic<uint64_t> delivered_batches{0}, delivered_events{0}, delivered_bytes{0}, failed{0},
      inflight_count{0}, split{0}, rebuilds{0}, out_of_order{0}, wakeups{0};
  std::atomic<int> kafka_state{static_cast<int>(KafkaState::kUnknown)};
  std::atomic<int64_t> last_delivery_us{0};
  LastError last_error{env};
  mutable std::mutex stats_mu;
  std::vector<BlockedTopic> blocked_list;  // guarded by stats_mu
  std::map<std::string, StreamUploads> per_stream;  // guarded by stats_mu
  Progress progress;  // the uploader thread's (base/progress.h)

  ~Impl() { DestroyProducer(); }

  void DestroyProducer() {
    for (rd_kafka_topic_t* t : known_topics) rd_kafka_topic_destroy(t);
    known_topics.clear();
    if (rk) rd_kafka_destroy(rk);
    rk = nullptr;
  }

  void SetLastError(std::string what) { last_error.Set(std::move(what)); }

  void PublishBlocked() {
    std::vector<BlockedTopic> list;
    for (const auto& [name, t] : topics) {
      if (t.blocked) list.push_back({name, t.reason, t.blocked_since_us});
    }
    std::lock_guard<std::mutex> lock(stats_mu);
    blocked_list = std::move(list);
  }

  Status MakeProducer();

  // --- sending -------------------------------------------------------------

  enum class Sent { kOk, kTopicRefused, kFailed };

  // Hands one batch to librdkafka (as fragments if its topic needs them).
  Sent Send(SealedBatch b, bool probe) {
    auto f = std::make_unique<InFlight>();
    f->batch = std::move(b);
    f->probe = probe;
    const SealedBatch& batch = f->batch;
    Topic& topic = topics[batch.kafka_topic];
    if (batch.envelope.size() > topic.max_message) {
      Result<std::vector<std::string>> parts = SplitEnvelope(batch.envelope, topic.max_message,
                                                                    opt.signer ? &*opt.signer : nullptr);
      if (!parts.ok()) {
        // Only when the envelope would need more than 65535 fragments.
        Block(batch.kafka_topic, "batch " + std::to_string(batch.seq) + " of stream " +
                                     batch.stream + " cannot be split small enough: " +
                                     parts.status().message());
        store->Release(batch.id);
        return Sent::kTopicRefused;
      }
      f->fragments = std::move(parts).value();
      split.fetch_add(1, std::memory_order_relaxed);
    }
    const std::string seq = std::to_string(batch.seq), events = std::to_string(batch.events);
    // The envelope's own version byte (1 for a batch sealed before the
    // device had a key, 2 signed).
    const std::string version =
        std::to_string(batch.envelope.size() > 4 ? static_cast<uint8_t>(batch.envelope[4]) : format::kEnvelopeVersion);
    const size_t count = f->fragments.empty() ? 1 : f->fragments.size();
    for (size_t i = 0; i < count; ++i) {
      const std::string& value = f->fragments.empty() ? batch.envelope : f->fragments[i];
      const std::string part = std::to_string(i + 1) + "/" + std::to_string(count);
      const char* kind = batch.gap_record ? "gap" : f->fragments.empty() ? "batch" : "fragment";
      rd_kafka_headers_t* hdrs = rd_kafka_headers_new(6);
      rd_kafka_header_add(hdrs, format::kHeaderKind, -1, kind, -1);
      rd_kafka_header_add(hdrs, format::kHeaderFormat, -1, version.data(), static_cast<ssize_t>(version.size()));
      rd_kafka_header_add(hdrs, format::kHeaderStream, -1, batch.stream.data(), static_cast<ssize_t>(batch.stream.size()));
      rd_kafka_header_add(hdrs, format::kHeaderBatch, -1, seq.data(), static_cast<ssize_t>(seq.size()));
      rd_kafka_header_add(hdrs, format::kHeaderEvents, -1, events.data(), static_cast<ssize_t>(events.size()));
      if (!f->fragments.empty()) {
        rd_kafka_header_add(hdrs, format::kHeaderFragment, -1, part.data(), static_cast<ssize_t>(part.size()));
      }
      rd_kafka_resp_err_t err = rd_kafka_producev(
          rk, RD_KAFKA_V_TOPIC(batch.kafka_topic.c_str()),
          RD_KAFKA_V_KEY(opt.device_id.data(), opt.device_id.size()),
          RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),  // no copy: kept in `f`
          RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_OPAQUE(f.get()), RD_KAFKA_V_END);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_headers_destroy(hdrs);  // not taken over on failure
        const std::string what = "producing batch " + seq + " of stream " + batch.stream + " to " +
                                 batch.kafka_topic + ": " + Describe(err);
        SetLastError(what);
        if (f->outstanding > 0) {
          // Some fragments are on their way: the batch comes back with their
          // reports (the central side drops an incomplete set).
          f->err = err;
          Track(std::move(f));
          return Classify(err) == Failure::kTopic ? Sent::kTopicRefused : Sent::kFailed;
        }
        store->Release(batch.id);
        if (Classify(err) == Failure::kTopic) {
          Block(batch.kafka_topic, Describe(err));
          return Sent::kTopicRefused;
        }
        opt.logger->warn("uploader: {} (will retry)", what);
        return Sent::kFailed;
      }
      ++f->outstanding;
      f->bytes += value.size();
    }
    bucket.Take(f->bytes, env->MonotonicMicros());
    if (probe) topic.probing = true;
    Track(std::move(f));
    return Sent::kOk;
  }

  void Track(std::unique_ptr<InFlight> f) {
    in_flight_bytes += f->bytes;
    const int64_t id = f->batch.id;
    in_flight.emplace(id, std::move(f));
    inflight_count = in_flight.size();
  }

  // --- delivery reports ------------------------------------------------------

  // Removes the batches delivered since the last call, in one transaction:
  // one sync for all the reports a poll served, not one each.
  void DeleteDelivered() {
    if (delivered_ids.empty()) return;
    Status st = store->Delete(delivered_ids);
    if (!st.ok()) {
      // Kafka has them; the rows will be sent again and dropped centrally as duplicates.
      opt.logger->error("uploader: delivered {} batches but could not delete them: {}", delivered_ids.size(),
                    st.ToString());
      for (int64_t id : delivered_ids) store->Release(id);
    }
    delivered_ids.clear();
  }

  void OnDelivery(const rd_kafka_message_t* m) {
    InFlight* f = static_cast<InFlight*>(m->_private);
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR && f->err == RD_KAFKA_RESP_ERR_NO_ERROR) f->err = m->err;
    if (--f->outstanding > 0) return;
    auto it = in_flight.find(f->batch.id);
    std::unique_ptr<InFlight> done = std::move(it->second);
    in_flight.erase(it);
    in_flight_bytes -= done->bytes;
    inflight_count = in_flight.size();
    if (done->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      Delivered(*done);
    } else {
      Failed(*done);
    }
  }

  void Delivered(const InFlight& f) {
    const SealedBatch& b = f.batch;
    delivered_ids.push_back(b.id);  // deleted after this poll, together (DeleteDelivered)
    delivered_batches.fetch_add(1, std::memory_order_relaxed);
    delivered_events.fetch_add(b.events, std::memory_order_relaxed);
    delivered_bytes.fetch_add(b.envelope.size(), std::memory_order_relaxed);
    last_delivery_us = env->NowMicros();
    kafka_state = static_cast<int>(KafkaState::kUp);
    {
      std::lock_guard<std::mutex> lock(stats_mu);
      StreamUploads& u = per_stream[b.stream];
      u.events += b.events;
      u.batches += b.gap_record ? 0 : 1;
      u.last_us = last_delivery_us;
    }
    if (!b.gap_record) {
      auto r = resend_from.find(b.stream);
      if (r != resend_from.end()) {
        if (b.seq > r->second) out_of_order.fetch_add(1, std::memory_order_relaxed);
        if (b.seq <= r->second) resend_from.erase(r);
      }
    }
    Topic& t = topics[b.kafka_topic];
    if (t.blocked) {
      opt.logger->info("uploader: Kafka topic {} takes batches again (it was blocked: {}); its streams drain",
                   b.kafka_topic, t.reason);
      t.blocked = false;
      t.probing = false;
      store_may_have_more = true;  // the rest of its streams
      PublishBlocked();
    }
    if (outage_probe) {
      outage_probe = false;
      store_may_have_more = true;  // the rest, at once
    }
    if (!failed_since_idle) {
      if (outage_logged) opt.logger->info("uploader: Kafka reachable again, draining");
      outage_logged = false;
      backoff.Reset();  // the next failure starts from the shortest pause again
    }
  }

  void Failed(const InFlight& f) {
    const SealedBatch& b = f.batch;
    store->Release(b.id);  // stays in the store, sent again
    Topic& t = topics[b.kafka_topic];
    if (f.probe) t.probing = false;
    rd_kafka_resp_err_t err = f.err;
    Failure kind = Classify(err);
    if (err == RD_KAFKA_RESP_ERR__MSG_TIMED_OUT) {
      // librdkafka 2.0.2 holds the messages of a topic whose metadata
      // carries an error (not authorized, unknown) until they time out, as
      // it does while the cluster is unreachable. The topic's metadata tells
      // the two apart: asked once per topic and failure episode.
      if (t.blocked) {
        kind = Failure::kTopic;  // more of a blocked topic's batches coming back
      } else if (metadata_asked.insert(b.kafka_topic).second) {
        const rd_kafka_resp_err_t topic_err = RefreshMetadata(b.kafka_topic);
        if (Classify(topic_err) == Failure::kTopic) {
          err = topic_err;
          kind = Failure::kTopic;
        }
      }
    }
    if (kind != Failure::kPurged) {
      failed.fetch_add(1, std::memory_order_relaxed);
      SetLastError("delivering batch " + std::to_string(b.seq) + " of stream " + b.stream + " to " +
                   b.kafka_topic + ": " + Describe(err));
    }
    if (!b.gap_record) {
      auto [r, inserted] = resend_from.emplace(b.stream, b.seq);
      if (!inserted) r->second = std::min(r->second, b.seq);
    }
    switch (kind) {
      case Failure::kTooLarge: {
        size_t largest = f.fragments.empty() ? b.envelope.size() : 0;
        for (const std::string& part : f.fragments) largest = std::max(largest, part.size());
        if (largest / 2 < kMinFragmentBytes) {
          Block(b.kafka_topic, Describe(f.err) + " even for a message of " + std::to_string(largest) +
                                   " bytes; check the topic's max.message.bytes");
        } else {
          store_may_have_more = true;  // sent again at once, in fragments
          if (largest / 2 >= t.max_message) break;  // learned from another batch already
          t.max_message = largest / 2;
          opt.logger->warn("uploader: Kafka topic {} refused a {}-byte message as too large; sending "
                       "batches over {} bytes as fragments",
                       b.kafka_topic, largest, t.max_message);
        }
        break;
      }
      case Failure::kTopic:
        Block(b.kafka_topic, Describe(err));
        break;
      case Failure::kFatal:
        fatal = true;
        break;
      case Failure::kPurged:
        break;
      case Failure::kRetriable:
        if (!IsOutage(err)) outage_only = false;
        if (!outage_logged) {
          opt.logger->warn("uploader: delivery of batch {} of stream {} to {} failed: {}; batches stay "
                       "in the store and are sent again {}",
                       b.seq, b.stream, b.kafka_topic, Describe(f.err),
                       IsOutage(err) ? "once Kafka answers (one waits in the Kafka client meanwhile)"
                                     : "after a pause");
          outage_logged = true;
        }
        if (!failed_since_idle) {
          // Take back what librdkafka has not sent yet: it would overtake
          // this batch in its stream once the cluster answers again.
          rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
        }
        failed_since_idle = true;
        break;
    }
  }

  // Marks `topic` blocked: its batches stay in the store, one is tried every
  // blocked_retry_us. Logged when it starts, not at each failed try.
  void Block(const std::string& name, const std::string& reason) {
    Topic& t = topics[name];
    const int64_t now = env->MonotonicMicros();
    metadata_asked.erase(name);
    t.retry_at = now + opt.blocked_retry_us;
    t.refreshed = false;
    if (t.blocked) {
      opt.logger->debug("uploader: Kafka topic {} still refuses batches: {}", name, reason);
      return;
    }
    t.blocked = true;
    t.reason = reason;
    t.blocked_since_us = env->NowMicros();
    std::string streams;
    Result<std::vector<std::string>> names = store->StreamsOfTopic(name);
    if (names.ok()) {
      for (const std::string& s : *names) streams += (streams.empty() ? "" : ", ") + s;
    }
    opt.logger->error("uploader: Kafka topic {} refuses batches: {}. Stream(s) {} blocked: their "
                  "batches stay in the store and are tried again every {} s; the other topics "
                  "keep flowing",
                  name, reason, streams.empty() ? "(none buffered)" : streams,
                  static_cast<double>(opt.blocked_retry_us) / 1e6);
    SetLastError("Kafka topic " + name + " blocked: " + reason);
    PublishBlocked();
  }

  // librdkafka keeps a topic's error until its metadata is refreshed; ask
  // for it before the probe (blocking, so only once per blocked_retry_us).
  // Asks the cluster for `name`'s metadata (blocking, up to 2 s) and returns
  // the error it reports for the topic (NO_ERROR when none, or when the
  // cluster did not answer). Also clears librdkafka's memory of an old error.
  rd_kafka_resp_err_t RefreshMetadata(const std::string& name) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, name.c_str(), nullptr);
    if (rkt == nullptr) return RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    const rd_kafka_metadata_t* md = nullptr;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      if (md->topic_cnt == 1) err = md->topics[0].err;
      rd_kafka_metadata_destroy(md);
    }
    rd_kafka_topic_destroy(rkt);
    return err;
  }

  // Hands batches to librdkafka while the limits allow. Returns true when
  // the store may hold more that could be sent now.
  bool Fill(int64_t now) {
    std::set<std::string> skip;
    for (auto& [name, t] : topics) {
      if (!t.blocked) continue;
      if (now < t.retry_at || t.probing) {
        skip.insert(name);
      } else if (!t.refreshed) {
        RefreshMetadata(name);
        t.refreshed = true;
      }
    }
    // Rate-limited, one batch at a time: the bucket lets about one through
    // per pass, and reading more rows only to hand them back costs I/O.
    const size_t room = bucket.unlimited() && !outage_probe ? opt.max_in_flight - in_flight.size() : 1;
    Result<std::vector<SealedBatch>> next = store->Next(room, skip);
    if (!next.ok()) {
      opt.logger->error("uploader: reading the store: {}", next.status().ToString());
      SetLastError("reading the store: " + next.status().ToString());
      resume_at = now + 1'000'000;
      return false;
    }
    const bool more = next->size() == room;
    std::set<std::string> refused;  // topics that refused a batch just now
    size_t i = 0;
    for (; i < next->size(); ++i) {
      SealedBatch& b = (*next)[i];
      Topic& t = topics[b.kafka_topic];
      const bool probe = t.blocked;
      if ((probe && t.probing) || refused.count(b.kafka_topic)) {  // one probe per blocked topic
        store->Release(b.id);
        continue;
      }
      const bool full = in_flight_bytes >= opt.max_in_flight_bytes && !in_flight.empty();
      if (full || bucket.WaitMicros(now) > 0) break;
      const std::string topic_name = b.kafka_topic;
      Sent s = Send(std::move(b), probe);
      if (s == Sent::kTopicRefused) refused.insert(topic_name);
      if (s == Sent::kFailed) {
        failed_since_idle = true;
        outage_only = false;  // refused at once: pause before trying again
        ++i;
        break;
      }
    }
    const bool left_over = i < next->size();
    for (; i < next->size(); ++i) store->Release((*next)[i].id);
    // A blocked topic that was due but got no probe out (nothing of it came
    // up this time) waits another interval rather than being asked again at once.
    for (auto& [name, t] : topics) {
      if (t.blocked && !t.probing && now >= t.retry_at) {
        t.retry_at = now + opt.blocked_retry_us;
        t.refreshed = false;
      }
    }
    return more || left_over;
  }

  // After a fatal error: everything in flight comes back to the store, the
  // producer is replaced, and sending resumes after a pause.
  void Rebuild() {
    char reason[512] = "";
    rd_kafka_resp_err_t err = rd_kafka_fatal_error(rk, reason, sizeof reason);
    opt.logger->error("uploader: the Kafka producer failed for good ({}: {}); rebuilding it. Batches "
                  "in flight go back to the store and are sent again in order",
                  rd_kafka_err2name(err), reason);
    SetLastError(std::string("fatal producer error: ") + rd_kafka_err2name(err) + ": " + reason);
    DrainProducer(10'000'000);
    DestroyProducer();
    fatal = false;
    rebuilds.fetch_add(1, std::memory_order_relaxed);
    Status st = MakeProducer();
    if (!st.ok()) opt.logger->error("uploader: rebuilding the producer: {}", st.ToString());
    resume_at = env->MonotonicMicros() + backoff.NextMicros();
  }

  // Purges what librdkafka holds and serves the reports, so every batch in
  // flight is back in the store; waits at most `timeout_us`.
  void DrainProducer(int64_t timeout_us) {
    if (rk != nullptr) {
      rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      const int64_t until = env->MonotonicMicros() + timeout_us;
      while (!in_flight.empty() && env->MonotonicMicros() < until) {
        rd_kafka_poll(rk, 100);
        DeleteDelivered();
      }
      if (!in_flight.empty()) {
        // Reports that never came: destroying the producer ends its use of
        // the batches' bytes before they are freed below.
        DestroyProducer();
      }
    }
    DeleteDelivered();
    for (auto& [id, f] : in_flight) store->Release(id);
    in_flight.clear();
    in_flight_bytes = 0;
    inflight_count = 0;
    failed_since_idle = false;
    outage_only = true;
  }
};

namespace {

void DeliveryReport(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  static_cast<Uploader::Impl*>(opaque)->OnDelivery(m);
}

void ErrorCallback(rd_kafka_t*, int err, const char* reason, void* opaque) {
  auto* s = static_cast<Uploader::Impl*>(opaque);
  const auto code = static_cast<rd_kafka_resp_err_t>(err);
  if (code == RD_KAFKA_RESP_ERR__FATAL) {
    s->fatal = true;
    return;  // Rebuild logs it
  }
  if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
    s->kafka_state = static_cast<int>(KafkaState::kDown);
  }
  s->SetLastError(std::string(rd_kafka_err2name(code)) + ": " + reason);
  // Transport errors repeat while a broker is down; librdkafka retries itself.
  if (code == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || code == RD_KAFKA_RESP_ERR__TRANSPORT) {
    s->opt.logger->debug("kafka: {}", reason);
  } else {
    s->opt.logger->warn("kafka: {}: {}", rd_kafka_err2name(code), reason);
  }
}

void LogCallback(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  auto* s = static_cast<Uploader::Impl*>(rd_kafka_opaque(rk));
  spdlog::logger& log = s != nullptr ? *s->opt.logger : *spdlog::default_logger_raw();
  if (level <= 3) {
    log.error("librdkafka {}: {}", fac, buf);
  } else {
    log.debug("librdkafka {}: {}", fac, buf);
  }
}

}  // namespace

Status CheckProducerProperty(const std::string& key, const std::string& value) {
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  rd_kafka_conf_res_t res = rd_kafka_conf_set(conf, key.c_str(), value.c_str(), err, sizeof err);
  rd_kafka_conf_destroy(conf);
  if (res != RD_KAFKA_CONF_OK) return Status::InvalidArgument(err);
  return Status::OK();
}

Status Uploader::Impl::MakeProducer() {
  // librdkafka refuses (at rd_kafka_new) a reconnect.backoff.max.ms below
  // reconnect.backoff.ms: an operator's larger reconnect.backoff.ms raises
  // our cap to it; their own reconnect.backoff.max.ms, applied after ours,
  // replaces it.
  int64_t reconnect_max_ms = kReconnectBackoffMaxMs;
  for (const auto& [k, v] : opt.properties) {
    if (k != "reconnect.backoff.ms") continue;
    char* end = nullptr;
    const long long ms = std::strtoll(v.c_str(), &end, 10);
    // Not a number: librdkafka names the property below.
    if (end != v.c_str() && *end == '\0') reconnect_max_ms = std::max<int64_t>(kReconnectBackoffMaxMs, ms);
  }
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  std::vector<std::pair<std::string, std::string>> props = {
      {"bootstrap.servers", opt.brokers},
      {"client.id", "edgesync-" + opt.device_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"compression.type", "none"},  // envelopes are compressed already
      {"linger.ms", "5"},
      // librdkafka 2.0.2 retries produce errors at this fixed pace (no
      // exponential retry backoff before 2.3); each retry resends the
      // batch, so not faster than this on a metered link.
      {"retry.backoff.ms", "500"},
      // Reconnects to a broker that is away: the default lets the pause
      // grow to 10 s, so uploads could resume up to 10 s after the cluster
      // came back, depending on where its return fell in that pause. Capped here (librdkafka applies it after its
      // jitter), it bounds that delay; the price is one TCP connection
      // attempt per needed broker this often while the cluster is away
      // (docs/operating.md states it per minute).
      {"reconnect.backoff.max.ms", std::to_string(reconnect_max_ms)},
  };
  props.insert(props.end(), opt.properties.begin(), opt.properties.end());
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status::InvalidArgument("kafka property " + k + ": " + err);
    }
  }
  rd_kafka_conf_set_opaque(conf, this);
  rd_kafka_conf_set_dr_msg_cb(conf, DeliveryReport);
  rd_kafka_conf_set_error_cb(conf, ErrorCallback);
  rd_kafka_conf_set_log_cb(conf, LogCallback);
  rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);  // librdkafka takes the conf only on success
    return Status::InvalidArgument(std::string("kafka producer: ") + err);
  }
  for (const std::string& name : opt.topics) {
    rd_kafka_topic_t* t = rd_kafka_topic_new(rk, name.c_str(), nullptr);
    if (t != nullptr) known_topics.push_back(t);
  }
  return Status::OK();
}

Result<std::unique_ptr<Uploader>> Uploader::Create(Store* store, Env* env, UploaderOptions options) {
  auto impl = std::make_unique<Impl>(store, env);
  impl->opt = std::move(options);
  if (impl->opt.logger == nullptr) impl->opt.logger = spdlog::default_logger();
  if (impl->opt.max_in_flight == 0) impl->opt.max_in_flight = 1;
  impl->backoff = Backoff(impl->opt.backoff_initial_us, impl->opt.backoff_max_us, impl->env);
  // One second of bytes may go at once (at least 64 KiB).
  impl->bucket = TokenBucket(impl->opt.max_bytes_per_sec,
                             std::max<uint64_t>(impl->opt.max_bytes_per_sec, 64 << 10),
                             env->MonotonicMicros());
  EDGESYNC_RETURN_IF_ERROR(impl->MakeProducer());
  return std::unique_ptr<Uploader>(new Uploader(std::move(impl)));
}

Uploader::Uploader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Uploader::~Uploader() {
  if (thread_.joinable()) (void)Stop(0);
}

void Uploader::Start() { thread_ = std::thread([this] { Run(); }); }

void Uploader::Notify() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->notified = true;
  }
  impl_->cv->NotifyOne();
}

std::string Uploader::ProducerPropertyForTest(const std::string& key) const {
  char value[512];
  size_t size = sizeof value;
  if (rd_kafka_conf_get(rd_kafka_conf(impl_->rk), key.c_str(), value, &size) != RD_KAFKA_CONF_OK) return "";
  return value;
}

void Uploader::InjectFatalErrorForTest() {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->inject_fatal = true;
    impl_->notified = true;
  }
  impl_->cv->NotifyOne();
}

void Uploader::Run() {
  Impl& s = *impl_;
  bool& store_may_have_more = s.store_may_have_more;
  for (;;) {
    s.progress.Advance(s.env->MonotonicMicros());
    s.wakeups.fetch_add(1, std::memory_order_relaxed);
    bool stopping, inject;
    int64_t deadline;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      stopping = s.stopping;
      deadline = s.stop_deadline;
      inject = s.inject_fatal;
      s.inject_fatal = false;
      if (s.notified) store_may_have_more = true;
      s.notified = false;
    }
    if (inject && s.rk) {
      rd_kafka_test_fatal_error(s.rk, RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH, "injected by a test");
    }
    if (s.fatal || (s.rk && rd_kafka_fatal_error(s.rk, nullptr, 0) != RD_KAFKA_RESP_ERR_NO_ERROR)) {
      s.Rebuild();
      store_may_have_more = true;
    }
    if (s.rk == nullptr) {  // a rebuild failed: try again after a pause
      if (stopping) break;
      const int64_t now = s.env->MonotonicMicros();
      if (now >= s.resume_at) {
        if (s.MakeProducer().ok()) continue;
        s.resume_at = now + s.backoff.NextMicros();
      }
      std::unique_lock<std::mutex> lock(s.mu);
      if (!s.notified && !s.stopping) {
        s.progress.Wait();
        s.cv->WaitUntil(lock, now + std::max<int64_t>(s.resume_at - now, 1000));
      }
      continue;
    }
    int64_t now = s.env->MonotonicMicros();
    if (stopping && (now >= deadline || (s.in_flight.empty() && !store_may_have_more))) break;

    // After a failure, wait for everything in flight to come back, then
    // pause, then resend in store order (keeps each stream's order).
    if (s.failed_since_idle && s.in_flight.empty()) {
      s.failed_since_idle = false;
      s.metadata_asked.clear();
      if (s.outage_only) {
        // The failures took message.timeout.ms to come back: no pause of
        // ours on top, which would delay the upload after the cluster's
        // return by up to retry_backoff_max. One batch goes at once as the
        // probe (outage_probe).
        s.resume_at = now;
        s.outage_probe = true;
      } else {
        s.resume_at = now + s.backoff.NextMicros();
      }
      s.outage_only = true;
      store_may_have_more = true;
    }

    for (const auto& [name, t] : s.topics) {
      if (t.blocked && !t.probing && now >= t.retry_at) store_may_have_more = true;  // time to probe
    }
    auto room = [&s] {
      if (s.outage_probe) return s.in_flight.empty();
      return s.in_flight.size() < s.opt.max_in_flight &&
             (s.in_flight.empty() || s.in_flight_bytes < s.opt.max_in_flight_bytes);
    };
    // Sending more waits for: the pause after a failure, the end of what a
    // failure left in flight, and room among the batches in flight.
    auto may_send = [&] { return !s.failed_since_idle && now >= s.resume_at && store_may_have_more && room(); };
    if (may_send() && s.bucket.WaitMicros(now) == 0) store_may_have_more = s.Fill(now);

    // The next moment something may change without a notification: the
    // pause's end, the rate limit's next token (only when that is all that
    // holds a send back), a blocked topic's probe. Room and the end of a
    // failure come with delivery reports, which the poll below waits for:
    // waking for them here would spin a core while Kafka is away.
    int64_t wake = now + 1'000'000;
    if (s.resume_at > now) wake = std::min(wake, s.resume_at);
    if (may_send()) wake = std::min(wake, now + s.bucket.WaitMicros(now));
    for (const auto& [name, t] : s.topics) {
      if (t.blocked && !t.probing && t.retry_at > now) wake = std::min(wake, t.retry_at);  // due: may_send says
    }
    // Serve delivery reports; sleep when there is nothing in flight.
    if (!s.in_flight.empty()) {
      rd_kafka_poll(s.rk, static_cast<int>(std::clamp<int64_t>((wake - now) / 1000, 0, 50)));
      s.DeleteDelivered();
    } else {
      rd_kafka_poll(s.rk, 0);
      s.DeleteDelivered();
      const bool ready = store_may_have_more && now >= s.resume_at && !s.failed_since_idle &&
                         s.bucket.WaitMicros(now) == 0;
      std::unique_lock<std::mutex> lock(s.mu);
      if (!s.notified && !s.stopping && !s.inject_fatal && !s.fatal && !ready && wake > now) {
        s.progress.Wait();
        s.cv->WaitUntil(lock, wake);
      }
    }
  }
  // What is still in flight is purged: its reports come back as failures and
  // the batches stay in the store for the next start.
  s.DrainProducer(1'000'000);
  s.progress.Wait();  // a stopped uploader is not a wedged one
}

Status Uploader::Stop(int64_t timeout_us) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    impl_->notified = true;
    impl_->stop_deadline = impl_->env->MonotonicMicros() + timeout_us;
  }
  impl_->cv->NotifyOne();
  if (thread_.joinable()) thread_.join();
  Result<StoreCounts> left = impl_->store->Counts();
  if (left.ok() && left->batches + left->gap_records > 0) {
    return Status::Unavailable(std::to_string(left->batches) + " batches (" +
                               std::to_string(left->events) + " events) and " +
                               std::to_string(left->gap_records) +
                               " gap records not uploaded yet; they stay in the store");
  }
  return Status::OK();
}

int64_t Uploader::StuckMicros() const { return impl_->progress.StuckMicros(impl_->env->MonotonicMicros()); }

UploaderStats Uploader::stats() const {
  const Impl& s = *impl_;
  UploaderStats st;
  st.delivered_batches = s.delivered_batches.load();
  st.delivered_events = s.delivered_events.load();
  st.delivered_bytes = s.delivered_bytes.load();
  st.failed_deliveries = s.failed.load();
  st.in_flight = s.inflight_count.load();
  st.split_batches = s.split.load();
  st.producer_rebuilds = s.rebuilds.load();
  st.out_of_order = s.out_of_order.load();
  st.wakeups = s.wakeups.load();
  st.kafka = static_cast<KafkaState>(s.kafka_state.load());
  st.last_delivery_us = s.last_delivery_us.load();
  st.last_error = s.last_error.Get();
  std::lock_guard<std::mutex> lock(s.stats_mu);
  st.blocked = s.blocked_list;
  st.streams = s.per_stream;
  return st;
}

}  // namespace edgesync

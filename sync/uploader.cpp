#include "sync/uploader.h"

#include <librdkafka/rdkafka.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <unordered_map>

#include "base/backoff.h"
#include "buffer/format.h"

namespace edgesync {

struct Uploader::Impl {
  Store* store;
  Env* env;
  UploaderOptions opt;
  rd_kafka_t* rk = nullptr;

  // Uploader thread only (delivery reports run inside rd_kafka_poll there).
  std::unordered_map<int64_t, uint32_t> in_flight;  // batch id -> events
  int failures_in_row = 0;  // 0 once a delivery succeeds after failures
  bool failed_since_idle = false;  // a delivery failed: send nothing new until in-flight drains
  int64_t resume_at = 0;           // monotonic µs: no sends before this
  Backoff backoff{opt.backoff_initial_us, opt.backoff_max_us};

  std::mutex mu;
  std::condition_variable cv;
  bool notified = false;
  bool stopping = false;
  int64_t stop_deadline = 0;

  std::atomic<uint64_t> delivered_batches{0}, delivered_events{0}, failed{0}, inflight_count{0};

  ~Impl() {
    if (rk) rd_kafka_destroy(rk);
  }

  void OnDelivery(const rd_kafka_message_t* m) {
    int64_t id = reinterpret_cast<intptr_t>(m->_private);
    auto it = in_flight.find(id);
    uint32_t events = it == in_flight.end() ? 0 : it->second;
    if (it != in_flight.end()) in_flight.erase(it);
    inflight_count = in_flight.size();
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      Status st = store->Delete(id);
      if (!st.ok()) {
        // Kafka has it; the row will be sent again and dropped centrally as a duplicate.
        spdlog::error("uploader: delivered batch {} but could not delete it: {}", id, st.ToString());
      }
      delivered_batches.fetch_add(1, std::memory_order_relaxed);
      delivered_events.fetch_add(events, std::memory_order_relaxed);
      if (failures_in_row > 0 && !failed_since_idle) {
        spdlog::info("uploader: Kafka reachable again, draining");
        failures_in_row = 0;
        backoff.Reset();
      }
      return;
    }
    store->Release(id);  // stays in the store, sent again after the pause
    failed.fetch_add(1, std::memory_order_relaxed);
    if (!failed_since_idle) {
      spdlog::warn("uploader: delivery of batch {} to {} failed: {} (will retry)", id,
                   rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
    }
    failed_since_idle = true;
  }
};

namespace {

void DeliveryReport(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
  static_cast<Uploader::Impl*>(opaque)->OnDelivery(m);
}

void ErrorCallback(rd_kafka_t*, int err, const char* reason, void*) {
  // Transport errors repeat while a broker is down; librdkafka retries itself.
  if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN || err == RD_KAFKA_RESP_ERR__TRANSPORT) {
    spdlog::debug("kafka: {}", reason);
  } else {
    spdlog::warn("kafka: {}: {}", rd_kafka_err2name(static_cast<rd_kafka_resp_err_t>(err)), reason);
  }
}

void LogCallback(const rd_kafka_t*, int level, const char* fac, const char* buf) {
  if (level <= 3) {
    spdlog::error("librdkafka {}: {}", fac, buf);
  } else {
    spdlog::debug("librdkafka {}: {}", fac, buf);
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

Result<std::unique_ptr<Uploader>> Uploader::Create(Store* store, Env* env, UploaderOptions options) {
  auto impl = std::make_unique<Impl>();
  impl->store = store;
  impl->env = env;
  impl->opt = std::move(options);
  impl->backoff = Backoff(impl->opt.backoff_initial_us, impl->opt.backoff_max_us);

  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  char err[512];
  std::vector<std::pair<std::string, std::string>> props = {
      {"bootstrap.servers", impl->opt.brokers},
      {"client.id", "edgesync-" + impl->opt.device_id},
      {"enable.idempotence", "true"},
      {"acks", "all"},
      {"compression.type", "none"},  // envelopes are compressed already
      {"linger.ms", "5"},
  };
  props.insert(props.end(), impl->opt.properties.begin(), impl->opt.properties.end());
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status::InvalidArgument("kafka property " + k + ": " + err);
    }
  }
  rd_kafka_conf_set_opaque(conf, impl.get());
  rd_kafka_conf_set_dr_msg_cb(conf, DeliveryReport);
  rd_kafka_conf_set_error_cb(conf, ErrorCallback);
  rd_kafka_conf_set_log_cb(conf, LogCallback);
  impl->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
  if (impl->rk == nullptr) {
    rd_kafka_conf_destroy(conf);  // librdkafka takes the conf only on success
    return Status::InvalidArgument(std::string("kafka producer: ") + err);
  }
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
  impl_->cv.notify_one();
}

void Uploader::Run() {
  Impl& s = *impl_;
  bool store_may_have_more = true;
  for (;;) {
    bool stopping;
    int64_t deadline;
    {
      std::lock_guard<std::mutex> lock(s.mu);
      stopping = s.stopping;
      deadline = s.stop_deadline;
      if (s.notified) store_may_have_more = true;
      s.notified = false;
    }
    const int64_t now = s.env->MonotonicMicros();
    if (stopping && (now >= deadline || (s.in_flight.empty() && !store_may_have_more))) break;

    // After a failure, wait for everything in flight to come back, then
    // pause, then resend in store order (keeps each stream's order).
    if (s.failed_since_idle && s.in_flight.empty()) {
      s.failed_since_idle = false;
      ++s.failures_in_row;
      int64_t pause = s.backoff.NextMicros();
      s.resume_at = now + pause;
      store_may_have_more = true;
    }

    if (!s.failed_since_idle && now >= s.resume_at && store_may_have_more &&
        s.in_flight.size() < s.opt.max_in_flight) {
      Result<std::vector<SealedBatch>> next = s.store->Next(s.opt.max_in_flight - s.in_flight.size());
      if (!next.ok()) {
        spdlog::error("uploader: reading the store: {}", next.status().ToString());
        s.resume_at = now + 1'000'000;
      } else {
        store_may_have_more = next->size() == s.opt.max_in_flight - s.in_flight.size();
        for (SealedBatch& b : *next) {
          std::string seq = std::to_string(b.seq), events = std::to_string(b.events);
          const std::string version = std::to_string(format::kEnvelopeVersion);
          const char* kind = b.gap_record ? "gap" : "batch";
          rd_kafka_headers_t* hdrs = rd_kafka_headers_new(5);
          rd_kafka_header_add(hdrs, format::kHeaderKind, -1, kind, -1);
          rd_kafka_header_add(hdrs, format::kHeaderFormat, -1, version.data(), static_cast<ssize_t>(version.size()));
          rd_kafka_header_add(hdrs, format::kHeaderStream, -1, b.stream.data(), static_cast<ssize_t>(b.stream.size()));
          rd_kafka_header_add(hdrs, format::kHeaderBatch, -1, seq.data(), static_cast<ssize_t>(seq.size()));
          rd_kafka_header_add(hdrs, format::kHeaderEvents, -1, events.data(), static_cast<ssize_t>(events.size()));
          rd_kafka_resp_err_t err = rd_kafka_producev(
              s.rk, RD_KAFKA_V_TOPIC(b.kafka_topic.c_str()),
              RD_KAFKA_V_KEY(s.opt.device_id.data(), s.opt.device_id.size()),
              RD_KAFKA_V_VALUE(b.envelope.data(), b.envelope.size()),
              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs),
              RD_KAFKA_V_OPAQUE(reinterpret_cast<void*>(static_cast<intptr_t>(b.id))),
              RD_KAFKA_V_END);
          if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_headers_destroy(hdrs);  // not taken over on failure
            for (const SealedBatch& unsent : *next) {
              if (!s.in_flight.count(unsent.id)) s.store->Release(unsent.id);
            }
            spdlog::warn("uploader: producing batch {} to {}: {}", b.id, b.kafka_topic,
                         rd_kafka_err2str(err));
            s.failed_since_idle = true;
            store_may_have_more = true;
            break;
          }
          s.in_flight.emplace(b.id, b.events);
        }
        s.inflight_count = s.in_flight.size();
      }
    }

    // Serve delivery reports; wait briefly when there is nothing to send.
    int wait_ms = s.in_flight.empty() ? 0 : 50;
    rd_kafka_poll(s.rk, wait_ms);
    if (s.in_flight.empty()) {
      std::unique_lock<std::mutex> lock(s.mu);
      int64_t until = s.resume_at > now ? s.resume_at : now + 1'000'000;
      if (!s.notified && !s.stopping && (!store_may_have_more || s.resume_at > now)) {
        s.cv.wait_for(lock, std::chrono::microseconds(std::max<int64_t>(until - now, 1000)));
      }
    }
  }
  // What is still in flight is purged: its reports come back as failures and
  // the batches stay in the store for the next start.
  rd_kafka_purge(s.rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
  rd_kafka_poll(s.rk, 0);
  rd_kafka_flush(s.rk, 1000);
}

Status Uploader::Stop(int64_t timeout_us) {
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->stopping = true;
    impl_->notified = true;
    impl_->stop_deadline = impl_->env->MonotonicMicros() + timeout_us;
  }
  impl_->cv.notify_one();
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

UploaderStats Uploader::stats() const {
  UploaderStats st;
  st.delivered_batches = impl_->delivered_batches.load();
  st.delivered_events = impl_->delivered_events.load();
  st.failed_deliveries = impl_->failed.load();
  st.in_flight = impl_->inflight_count.load();
  return st;
}

}  // namespace edgesync

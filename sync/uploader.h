// Uploader: sends sealed batches from the store to Kafka, one envelope per
// message, and deletes a batch from the store only when its delivery report
// says Kafka has it (acks=all, idempotent producer: retries inside
// librdkafka neither lose, duplicate nor reorder within a producer session).
//
// What goes wrong, and what the uploader does about it:
// - Retriable (broker down, leader moved, timeouts, NOT_ENOUGH_REPLICAS):
//   librdkafka retries inside, in order, until message.timeout.ms; a batch
//   that still fails comes back to the store, everything queued behind it is
//   taken back too (so later batches of its stream cannot overtake it). When
//   they failed by timing out (the cluster away: IsOutage in uploader.cpp),
//   the time-out was the pause: the store's first batch goes back to
//   librdkafka at once, alone, as a probe that waits there for the cluster,
//   and the rest follows once Kafka has taken it. Other failures pause
//   (capped exponential, full jitter) before the store is sent again in its
//   order. Reconnects back off exponentially inside librdkafka, capped at
//   reconnect.backoff.max.ms (500 ms, or reconnect.backoff.ms if that is
//   set higher, unless kafka.properties sets it), which bounds how long
//   after the cluster's return the probe leaves.
// - Permanent for a topic (authorization failed, unknown topic, invalid
//   config or record): the topic is blocked with its reason, logged once;
//   its streams stay in the store and are retried every
//   blocked_retry_us with a single batch, while every other topic flows.
// - Too large for the broker: the batch is sent again as fragments
//   (format/fragment.h) of half the size, and so on; the topic remembers the
//   size that worked. A batch is never dropped.
// - Fatal (the idempotent producer fenced): the producer is rebuilt; its
//   batches in flight come back to the store and go again in store order.
// The store is the queue: nothing is lost by a restart, and a batch sent
// twice (delivered, crash before delete) is dropped centrally by its
// (device, stream, batch sequence).
//
// Order: gap records first, then highest priority first, oldest first (the
// store's order), with at most max_in_flight batches and
// max_in_flight_bytes handed to librdkafka at once, so live batches of high
// priority pass a backlog of lower priority. max_bytes_per_sec caps the rate
// (a token bucket) for metered links.
//
// Threads: one uploader thread from Start to Stop; Notify and stats from any thread.
#pragma once

#include <atomic>
#include <map>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/env.h"
#include "base/option_table.h"
#include "base/last_error.h"
#include "base/status.h"
#include "buffer/store.h"

namespace spdlog {
class logger;
}

namespace edgesync {

// How much is in flight, how fast, and how long a failure pauses: the
// [kafka] options the uploader owns (declared in uploader.cpp).
struct UploadLimits {
  size_t max_in_flight = 16;                  // batches handed to librdkafka at once
  uint64_t max_in_flight_bytes = 4u << 20;    // and their bytes (at least one batch)
  uint64_t max_bytes_per_sec = 0;             // 0: unlimited
  int64_t backoff_max_us = 30'000'000;        // cap of the pause after failed deliveries
  int64_t blocked_retry_us = 300'000'000;     // how often a blocked topic is tried again
  static const OptionTable<UploadLimits>& Options();
  bool operator==(const UploadLimits&) const = default;
};

struct UploaderOptions : UploadLimits {
  std::shared_ptr<spdlog::logger> logger;  // null: spdlog's default logger
  std::string brokers;    // bootstrap.servers
  std::string device_id;  // message key, so a device's batches stay in one partition
  std::optional<DeviceSigner> signer;  // signs fragments (the agent's device key)
  // librdkafka properties, applied after the defaults; a property librdkafka
  // rejects makes Create fail naming it.
  std::vector<std::pair<std::string, std::string>> properties;
  // The topics the streams go to, known up front so their metadata is asked
  // for as the producer starts, not at the first batch (which costs a second).
  std::vector<std::string> topics;
  int64_t backoff_initial_us = 250'000;       // first pause after a failed delivery
};

enum class KafkaState { kUnknown, kUp, kDown };
const char* KafkaStateName(KafkaState s);

struct BlockedTopic {
  std::string topic;
  std::string reason;    // librdkafka's error name and text
  int64_t since_us = 0;  // wall clock
};

// What Kafka acknowledged of one stream (a lane: buffer/sealer.h StreamSpec name).
struct StreamUploads {
  uint64_t batches = 0;
  uint64_t events = 0;
  int64_t last_us = 0;  // wall clock of the last delivery
  bool operator==(const StreamUploads&) const = default;
};

struct UploaderStats {
  uint64_t delivered_batches = 0;
  uint64_t delivered_events = 0;
  uint64_t delivered_bytes = 0;     // envelope bytes Kafka acknowledged
  uint64_t failed_deliveries = 0;   // batches that came back to the store
  uint64_t in_flight = 0;
  uint64_t split_batches = 0;       // batches sent as fragments
  uint64_t producer_rebuilds = 0;   // after fatal errors
  uint64_t out_of_order = 0;        // batches delivered after a later one of their stream
  uint64_t wakeups = 0;             // turns of the upload thread's loop: few while it waits
  KafkaState kafka = KafkaState::kUnknown;
  int64_t last_delivery_us = 0;     // wall clock of the last successful delivery; 0: none
  ErrorNote last_error;             // the last Kafka error
  std::vector<BlockedTopic> blocked;
  std::map<std::string, StreamUploads> streams;  // by the batches' stream
};

class Uploader {
 public:
  // Builds the producer configuration; InvalidArgument names a bad property.
  static Result<std::unique_ptr<Uploader>> Create(Store* store, Env* env, UploaderOptions options);
  ~Uploader();

  void Start();
  // Wakes the uploader: a new batch is in the store.
  void Notify();
  // Keeps uploading what the store holds until it is empty or `timeout_us`
  // has passed, then stops. Undelivered batches stay in the store.
  // Returns Unavailable when the deadline left batches behind.
  Status Stop(int64_t timeout_us);

  UploaderStats stats() const;
  // How long the uploader thread has been on one turn of its loop; 0 while
  // it waits for work (base/progress.h).
  int64_t StuckMicros() const;

  // Makes librdkafka raise a fatal error, as a fenced idempotent producer
  // would (rd_kafka_test_fatal_error), to test the rebuild.
  void InjectFatalErrorForTest();
  // The value of a property of the producer as librdkafka took it ("" if
  // unknown); before Start.
  std::string ProducerPropertyForTest(const std::string& key) const;

  struct Impl;  // librdkafka state; in uploader.cpp

 private:
  explicit Uploader(std::unique_ptr<Impl> impl);
  void Run();

  std::unique_ptr<Impl> impl_;
  std::thread thread_;
};

// InvalidArgument with librdkafka's reason when the producer would refuse
// `key` = `value`; for validating configuration before anything runs.
Status CheckProducerProperty(const std::string& key, const std::string& value);

}  // namespace edgesync

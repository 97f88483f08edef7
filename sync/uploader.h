// Uploader: sends sealed batches from the store to Kafka, one envelope per
// message, and deletes a batch from the store only when its delivery report
// says Kafka has it (acks=all, idempotent producer, so retries inside
// librdkafka neither lose nor duplicate within a producer session).
//
// While Kafka is unreachable, in-flight envelopes wait inside librdkafka up
// to message.timeout.ms; a failed delivery puts the batch back and the
// uploader backs off (capped exponential, full jitter) before it sends again,
// oldest first. The store is the queue: nothing is lost by a restart, and a
// batch sent twice (delivered, crash before delete) is dropped centrally by
// its (device, stream, batch sequence).
//
// Threads: one uploader thread from Start to Stop; Notify from any thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "base/env.h"
#include "base/status.h"
#include "buffer/store.h"

namespace edgesync {

struct UploaderOptions {
  std::string brokers;    // bootstrap.servers
  std::string device_id;  // message key, so a device's batches stay in one partition
  // Extra librdkafka properties, applied after the defaults; a property
  // librdkafka rejects makes Create fail naming it.
  std::vector<std::pair<std::string, std::string>> properties;
  size_t max_in_flight = 32;             // envelopes handed to librdkafka at once
  int64_t backoff_initial_us = 250'000;  // first pause after a failed delivery
  int64_t backoff_max_us = 30'000'000;   // cap of the pause
};

struct UploaderStats {
  uint64_t delivered_batches = 0;
  uint64_t delivered_events = 0;
  uint64_t failed_deliveries = 0;
  uint64_t in_flight = 0;
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

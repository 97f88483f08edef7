// Publisher: an MQTT client over libmosquitto for tests, benchmarks and the
// fleet simulator, with bounded in-flight QoS 1/2 publishes (backpressure).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>

#include "base/status.h"

struct mosquitto;

namespace edgesync::harness {

// MQTT 3.1.1, clean session, libmosquitto's threaded loop (which reconnects by
// itself and resends unacknowledged QoS 1/2 messages after a reconnect).
// Thread-safe: Publish may be called from several threads.
class Publisher {
 public:
  // Connects with `client_id` and starts the loop thread; waits up to
  // `timeout` for the CONNACK. Unavailable when the broker cannot be reached
  // or refuses the connection in time.
  static Result<std::unique_ptr<Publisher>> Connect(
      const std::string& host, int port, const std::string& client_id, int max_inflight = 100,
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~Publisher();  // Disconnect()

  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // Queues a publish. For QoS 1/2 it first waits while max_inflight earlier
  // publishes await their acknowledgement; Unavailable when no slot frees up
  // within 60 s (broker gone), Aborted after Disconnect(). A QoS 1/2 publish
  // while the connection is down is queued and sent after the reconnect;
  // a QoS 0 one fails then (Unavailable).
  Status Publish(const std::string& topic, std::string_view payload, int qos = 1,
                 bool retain = false);
  // Waits until every QoS 1/2 publish so far has been acknowledged
  // (PUBACK/PUBCOMP). Unavailable when some are still unacknowledged at
  // `timeout`.
  Status WaitAcked(std::chrono::milliseconds timeout);
  // QoS 1/2 publishes acknowledged by the broker so far.
  uint64_t acked() const;
  // Publishes awaiting acknowledgement.
  size_t inflight() const;
  // Sends DISCONNECT and stops the loop thread; unacknowledged publishes are
  // abandoned. Idempotent.
  Status Disconnect();

 private:
  explicit Publisher(int max_inflight) : max_inflight_(static_cast<size_t>(max_inflight)) {}
  static void OnConnect(struct mosquitto*, void* self, int rc);
  static void OnPublish(struct mosquitto*, void* self, int mid);

  const size_t max_inflight_;
  struct mosquitto* mosq_ = nullptr;
  bool loop_running_ = false;

  mutable std::mutex mu_;
  std::condition_variable cv_;  // signalled on CONNACK and on every acknowledgement
  int connack_rc_ = -1;         // -1 until the first CONNACK
  bool closed_ = false;
  std::set<int> pending_;  // message ids of unacknowledged QoS 1/2 publishes
  uint64_t acked_ = 0;
};

// A payment authorisation of exactly 300 bytes of JSON carrying the
// (device, seq) that edgesync-tally keys on: the event of the tests and the
// benchmarks.
std::string PaymentEvent(const std::string& device, uint64_t seq);

}  // namespace edgesync::harness

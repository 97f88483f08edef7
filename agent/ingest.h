// Ingest: the MQTT side. A libmosquitto client in the threaded loop with a
// persistent session (fixed client id, clean_session=false) subscribed to
// the streams' topic filters at QoS 1.
//
// The acknowledgement contract (DESIGN.md, facts): libmosquitto queues the
// PUBACK before calling on_message but, in the threaded loop, writes it only
// after on_message returns. The sink therefore returns only once the event
// is durable; a crash before that makes the broker deliver it again.
//
// Threads: Start/Stop from the owner; the sink runs on libmosquitto's loop thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

struct mosquitto;
struct mosquitto_message;

namespace edgesync {

struct IngestOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string client_id = "edgesync";
  int keepalive = 30;
  int qos = 1;
  std::vector<std::string> filters;  // subscribed on every (re)connect
};

struct IngestStats {
  uint64_t received = 0;
  uint64_t connects = 0;
  bool connected = false;
};

class Ingest {
 public:
  // Must make the message durable before returning (see the contract above).
  using Sink = std::function<void(std::string_view topic, std::string_view payload, int qos)>;

  // Requires mosquitto_lib_init() to have been called (once per process).
  static Result<std::unique_ptr<Ingest>> Create(IngestOptions options, Sink sink);
  ~Ingest();
  // Starts the loop thread and the (re)connect attempts; returns at once.
  Status Start();
  // Disconnects and joins the loop thread; no sink call happens afterwards.
  void Stop();
  IngestStats stats() const;

 private:
  Ingest(IngestOptions options, Sink sink) : options_(std::move(options)), sink_(std::move(sink)) {}
  static void OnConnect(mosquitto* m, void* self, int rc);
  static void OnDisconnect(mosquitto* m, void* self, int rc);
  static void OnMessage(mosquitto* m, void* self, const mosquitto_message* msg);

  IngestOptions options_;
  Sink sink_;
  mosquitto* mosq_ = nullptr;
  bool started_ = false;
  std::atomic<uint64_t> received_{0}, connects_{0};
  std::atomic<bool> connected_{false};
};

}  // namespace edgesync

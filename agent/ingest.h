// Ingest: the MQTT side. A libmosquitto client with a persistent session
// (fixed client id, clean_session=false), subscribed to the streams' topic
// filters, driven by our own loop thread.
//
// The acknowledgement contract (docs/architecture.md): libmosquitto queues the
// PUBACK before calling on_message and, in threaded mode, writes it only
// after on_message returns. The sink therefore returns only once the event
// is durable; a crash before that makes the broker deliver it again.
//
// Why our own loop thread rather than mosquitto_loop_start: a clean stop must
// stop reading, get the PUBACKs of everything already journaled to the
// broker, and only then close (see CloseGracefully); otherwise those events
// are delivered twice. It also gives reconnects full jitter.
//
// Threads: Create/Start/Stop from the owner; the sink runs on the loop thread.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/env.h"
#include "base/last_error.h"
#include "base/option_table.h"
#include "base/status.h"

struct mosquitto;
struct mosquitto_message;
struct mqtt5__property;
typedef struct mqtt5__property mosquitto_property;

namespace spdlog {
class logger;
}

namespace edgesync {

// How to reach the local broker: the [mqtt] options Ingest owns (declared
// in mqtt_settings.cpp, with their descriptions).
struct MqttSettings {
  std::string host = "127.0.0.1";
  int port = 1883;
  std::string client_id = "edgesync";
  int keepalive = 30;                    // seconds
  int qos = 1;
  std::string protocol = "5";            // "5" or "3.1.1"
  double session_expiry = 7 * 86400;     // seconds the broker keeps our session (MQTT 5)
  int receive_maximum = 100;             // MQTT 5
  std::string username;
  std::string password_file;             // the password is read from here, never from the config
  std::string ca_file, cert_file, key_file, tls_version = "tlsv1.2";  // TLS when ca_file is set
  std::string status_topic;  // retained "online"/"offline"; "offline" is also the will; empty: none
  // MQTT 5: announced to the broker as the agent's Maximum Packet Size, so
  // that it never sends a larger message (it drops it instead): what one
  // message can cost in memory is bounded (libmosquitto holds a packet
  // twice while it reads it). 0: none announced. MQTT 3.1.1 cannot say it:
  // there the broker's own max_packet_size is the only bound.
  uint32_t max_packet_size = 16 << 20;  // mqtt.max_packet_size's default

  bool mqtt5() const { return protocol == "5"; }
  static const OptionTable<MqttSettings>& Options();
  bool operator==(const MqttSettings&) const = default;
};

struct IngestOptions : MqttSettings {
  std::shared_ptr<spdlog::logger> logger;  // null: spdlog's default logger
  std::string password;              // read from password_file; never logged
  std::vector<std::string> filters;  // subscribed on every (re)connect
  // User properties copied into a message: at most this many, of at most
  // these bytes (name + value + 4 each) in all; the rest are counted only.
  size_t max_user_properties = SIZE_MAX;
  size_t max_user_property_bytes = SIZE_MAX;
  int64_t reconnect_initial_us = 500'000;
  int64_t reconnect_max_us = 30'000'000;
  Env* env = Env::Default();  // clocks, pauses and jitter; must outlive the Ingest
};

// One message as the broker delivered it. Views valid during the sink call.
struct IngestMessage {
  std::string_view topic;
  std::string_view payload;
  int qos = 0;
  std::string_view content_type;                                   // MQTT 5
  // MQTT 5 user properties, in order; when there were more, or more bytes,
  // than IngestOptions allows, only those within the limits. The counts
  // are of all of them.
  std::vector<std::pair<std::string, std::string>> user_properties;
  size_t user_property_count = 0;
  size_t user_property_bytes = 0;  // name + value + 4 each
  // Set by the broker plugin's spool (agent/spool.h), where the event was
  // received before the agent reads it: when the broker received it (0:
  // now), and its size as published when `payload` was cut (0: payload's).
  int64_t received_at_us = 0;
  size_t payload_size = 0;
};

struct IngestStats {
  uint64_t received = 0;
  uint64_t connects = 0;
  uint64_t connection_failures = 0;
  bool connected = false;
  bool subscribed = false;  // the broker granted every subscription of this connection
  ErrorNote last_error;     // connection failures, refusals, refused subscriptions
  // mqtt.mode = "broker-plugin": what the spool reader could not read (lost events, see the log).
  uint64_t spool_unreadable_segments = 0;
  uint64_t spool_malformed_records = 0;
};

class Ingest {
 public:
  // Must make the message durable before returning (see the contract above).
  using Sink = std::function<void(const IngestMessage& message)>;

  // Requires mosquitto_lib_init() to have been called (once per process).
  static Result<std::unique_ptr<Ingest>> Create(IngestOptions options, Sink sink);
  ~Ingest();
  // Starts the loop thread, which connects and reconnects; returns at once.
  Status Start();
  // Stops reading, sends the acknowledgements still queued, disconnects and
  // joins the loop thread; no sink call happens afterwards.
  void Stop();
  IngestStats stats() const;

 private:
  Ingest(IngestOptions options, Sink sink);
  void Run();
  // Sleeps up to `us`, or less if Stop is called. True when stopping.
  bool PauseOrStop(int64_t us);
  void CloseGracefully();
  // One turn of the loop once the broker has accepted us (see ingest.cpp):
  // a MOSQ_ERR_* code as mosquitto_loop returns it.
  int Pump();
  static void OnConnect(mosquitto* m, void* self, int rc, int flags, const mosquitto_property* props);
  static void OnDisconnect(mosquitto* m, void* self, int rc, const mosquitto_property* props);
  static void OnMessage(mosquitto* m, void* self, const mosquitto_message* msg,
                        const mosquitto_property* props);
  static void OnSubscribe(mosquitto* m, void* self, int mid, int count, const int* granted,
                          const mosquitto_property* props);
  // libmosquitto's log: installed only from a connection attempt until the
  // broker accepts it (Run, OnConnect), for the TLS diagnostics below.
  static void OnLog(mosquitto* m, void* self, int level, const char* line);
  // Why the last TLS handshake failed, from OpenSSL's verify result; loop thread only.
  std::string tls_failure_;
  std::string Describe(int rc) const;

  IngestOptions options_;
  Sink sink_;
  mosquitto* mosq_ = nullptr;
  std::thread thread_;
  std::mutex mu_;
  std::unique_ptr<CondVar> cv_ = options_.env->NewCondVar();
  bool stopping_ = false;  // guarded by mu_
  std::atomic<uint64_t> received_{0}, connects_{0}, failures_{0};
  std::atomic<bool> connected_{false};
  std::atomic<bool> subscribed_{false};
  LastError last_error_{options_.env};
  int pending_subacks_ = 0;  // loop thread only
  bool refused_ = false;     // loop thread only: the last CONNACK refused us
  bool session_up_ = false;  // loop thread only: CONNACK accepted on this socket
  int refusals_ = 0;         // loop thread only: CONNACK refusals in a row
};

}  // namespace edgesync

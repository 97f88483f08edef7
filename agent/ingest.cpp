#include "agent/ingest.h"

#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "base/backoff.h"

namespace edgesync {

Ingest::Ingest(IngestOptions options, Sink sink) : options_(std::move(options)), sink_(std::move(sink)) {
  if (options_.logger == nullptr) options_.logger = spdlog::default_logger();
}

Result<std::unique_ptr<Ingest>> Ingest::Create(IngestOptions options, Sink sink) {
  std::unique_ptr<Ingest> in(new Ingest(std::move(options), std::move(sink)));
  const IngestOptions& o = in->options_;
  // clean_session=false (MQTT 5: clean start off): the broker keeps our
  // subscriptions and queues for us while we are away.
  in->mosq_ = mosquitto_new(o.client_id.c_str(), /*clean_session=*/false, in.get());
  if (in->mosq_ == nullptr) return Status::InvalidArgument("mqtt.client_id must not be empty");
  mosquitto* m = in->mosq_;
  // Threaded mode, with our own loop thread: PUBACKs stay queued until
  // on_message has returned.
  mosquitto_threaded_set(m, true);
  mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, o.mqtt5() ? MQTT_PROTOCOL_V5 : MQTT_PROTOCOL_V311);
  if (o.mqtt5()) mosquitto_int_option(m, MOSQ_OPT_RECEIVE_MAXIMUM, o.receive_maximum);
  mosquitto_connect_v5_callback_set(m, &Ingest::OnConnect);
  mosquitto_disconnect_v5_callback_set(m, &Ingest::OnDisconnect);
  mosquitto_message_v5_callback_set(m, &Ingest::OnMessage);
  mosquitto_subscribe_v5_callback_set(m, &Ingest::OnSubscribe);
  // No log callback here: Run installs it for each connection attempt and
  // OnConnect removes it at the CONNACK (see Run).
  int rc;
  if (!o.username.empty()) {
    rc = mosquitto_username_pw_set(m, o.username.c_str(), o.password.empty() ? nullptr : o.password.c_str());
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument(std::string("mqtt.username: ") + mosquitto_strerror(rc));
  }
  if (!o.ca_file.empty()) {
    rc = mosquitto_tls_set(m, o.ca_file.c_str(), nullptr, o.cert_file.empty() ? nullptr : o.cert_file.c_str(),
                           o.key_file.empty() ? nullptr : o.key_file.c_str(), nullptr);
    if (rc != MOSQ_ERR_SUCCESS) {
      return Status::InvalidArgument("mqtt TLS files (ca_file, cert_file, key_file): " +
                                     std::string(mosquitto_strerror(rc)));
    }
    rc = mosquitto_tls_opts_set(m, /*SSL_VERIFY_PEER*/ 1, o.tls_version.c_str(), nullptr);
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("mqtt.tls_version: " + std::string(mosquitto_strerror(rc)));
  }
  if (!o.status_topic.empty()) {
    rc = mosquitto_will_set(m, o.status_topic.c_str(), 7, "offline", 1, /*retain=*/true);
    if (rc != MOSQ_ERR_SUCCESS) return Status::InvalidArgument("mqtt.status_topic: " + std::string(mosquitto_strerror(rc)));
  }
  return in;
}

Ingest::~Ingest() {
  Stop();
  if (mosq_) mosquitto_destroy(mosq_);
}

Status Ingest::Start() {
  thread_ = std::thread([this] { Run(); });
  return Status::OK();
}

bool Ingest::PauseOrStop(int64_t us) {
  std::unique_lock<std::mutex> lock(mu_);
  WaitUntil(*cv_, lock, options_.env->MonotonicMicros() + us, [&] { return stopping_; });
  return stopping_;
}

std::string Ingest::Describe(int rc) const {
  if (rc == MOSQ_ERR_TLS || !tls_failure_.empty()) {
    return "TLS handshake failed" + (tls_failure_.empty() ? std::string() : ": " + tls_failure_) +
           " (check mqtt.ca_file, mqtt.cert_file, mqtt.key_file and that mqtt.host matches the broker's certificate)";
  }
  if (rc == MOSQ_ERR_ERRNO) return std::strerror(errno);
  return mosquitto_strerror(rc);
}

void Ingest::Run() {
  Backoff backoff(options_.reconnect_initial_us, options_.reconnect_max_us, options_.env);
  bool have_socket = false;
  bool ever_tried = false;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    if (!have_socket) {
      tls_failure_.clear();
      // The log callback is what tells why a TLS handshake failed (OnLog),
      // so it is in place from here until the broker accepts us. Not
      // longer: with a callback installed libmosquitto formats (and
      // allocates) a debug line for every packet it sends or receives,
      // about 3 % of the agent's time at full rate, and drops the lines at
      // once without one.
      mosquitto_log_callback_set(mosq_, &Ingest::OnLog);
      int rc;
      if (!ever_tried) {
        mosquitto_property* props = nullptr;
        if (options_.mqtt5()) {
          mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                       static_cast<uint32_t>(std::min<double>(options_.session_expiry, UINT32_MAX)));
          mosquitto_property_add_int16(&props, MQTT_PROP_RECEIVE_MAXIMUM,
                                       static_cast<uint16_t>(options_.receive_maximum));
          if (options_.max_packet_size > 0) {
            mosquitto_property_add_int32(&props, MQTT_PROP_MAXIMUM_PACKET_SIZE, options_.max_packet_size);
          }
        }
        // libmosquitto keeps these properties for every reconnect.
        rc = mosquitto_connect_bind_v5(mosq_, options_.host.c_str(), options_.port, options_.keepalive,
                                       nullptr, props);
        mosquitto_property_free_all(&props);
        ever_tried = true;
      } else {
        rc = mosquitto_reconnect(mosq_);
      }
      if (rc != MOSQ_ERR_SUCCESS) {
        ++failures_;
        last_error_.Set("cannot connect to " + options_.host + ":" + std::to_string(options_.port) +
                        ": " + Describe(rc));
        int64_t pause = backoff.NextMicros();
        if (backoff.attempts() == 1 || backoff.attempts() % 10 == 0) {
          options_.logger->warn("mqtt: cannot connect to {}:{}: {}; retrying (next in {} ms)", options_.host,
                       options_.port, Describe(rc), pause / 1000);
        }
        if (PauseOrStop(pause)) break;
        continue;
      }
      have_socket = true;
      refused_ = false;
    }
    // Connecting (TCP, TLS handshake, CONNACK) in libmosquitto's own loop;
    // once the broker has accepted us, in ours (Pump).
    int rc = session_up_ ? Pump() : mosquitto_loop(mosq_, 100, 1);
    if (rc == MOSQ_ERR_SUCCESS && !refused_) {
      if (connected_) backoff.Reset();
      continue;
    }
    // Connection lost or refused: libmosquitto has closed the socket.
    have_socket = false;
    bool was_connected = session_up_;
    session_up_ = false;
    connected_ = false;
    subscribed_ = false;
    ++failures_;
    if (!refused_) {
      last_error_.Set(std::string(was_connected ? "connection lost" : "cannot connect") + " to " +
                      options_.host + ":" + std::to_string(options_.port) + ": " + Describe(rc));
    }
    int64_t pause = backoff.NextMicros();
    if (was_connected) {
      options_.logger->warn("mqtt: connection to {}:{} lost ({}); reconnecting in {} ms", options_.host,
                   options_.port, Describe(rc), pause / 1000);
    } else if (!refused_ && (backoff.attempts() == 1 || backoff.attempts() % 10 == 0)) {
      options_.logger->warn("mqtt: cannot connect to {}:{}: {}; retrying (next in {} ms)", options_.host,
                   options_.port, Describe(rc), pause / 1000);
    }
    if (PauseOrStop(pause)) break;
  }
  if (have_socket) CloseGracefully();
  connected_ = false;
  subscribed_ = false;
}

// One turn of the loop once connected: what mosquitto_loop does, with one
// system call per event fewer. mosquitto_loop select()s on the socket and
// on an internal socket pair that libmosquitto writes a byte to whenever it
// queues a packet (each PUBACK), and reads that byte back: with the four
// reads of a PUBLISH (libmosquitto reads its header a byte at a time) and
// the PUBACK's write, nine calls an event, as mosquitto_sub makes. Here
// poll() watches the socket alone. The socket pair's byte per event is
// still written, and never read here: once its send buffer is full (a few
// hundred one-byte writes, which hold about 208 KiB of kernel socket memory
// while the process lasts: the price of the call saved) those writes fail
// at once with EAGAIN (libmosquitto made the pair non-blocking); while
// connecting, mosquitto_loop reads a byte of it a turn. The PUBACKs are
// written after the read, as mosquitto_loop writes them after its read:
// each only once its on_message (the journal append) has returned, so the
// acknowledgement contract holds. One packet a poll, as mosquitto_loop_read
// reads one a call: it cannot say whether the socket is empty (its EAGAIN
// test reads errno, which that socket pair write has set), and at the rates
// a local broker delivers the next packet is rarely there yet (measured:
// one poll an event).
int Ingest::Pump() {
  const int fd = mosquitto_socket(mosq_);
  if (fd < 0) return MOSQ_ERR_NO_CONN;
  pollfd p{fd, static_cast<short>(POLLIN | (mosquitto_want_write(mosq_) ? POLLOUT : 0)), 0};
  const int ready = ::poll(&p, 1, 100);
  if (ready < 0 && errno != EINTR) return MOSQ_ERR_ERRNO;
  if (ready > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
    const int rc = mosquitto_loop_read(mosq_, 1);
    if (rc != MOSQ_ERR_SUCCESS) return rc;  // libmosquitto has closed the socket
  }
  if (mosquitto_want_write(mosq_)) {
    const int rc = mosquitto_loop_write(mosq_, 1);
    if (rc != MOSQ_ERR_SUCCESS) return rc;
  }
  return mosquitto_loop_misc(mosq_);  // keepalive: PINGREQ when due, and its timeout
}

// Ends the session so that every PUBACK already queued reaches the broker.
// Closing a TCP socket that still has unread data (the broker keeps pushing
// PUBLISHes) sends RST, and a broker that has not yet read our last PUBACKs
// then discards them and delivers those events again. So: publish the
// retained "offline" status, flush, send DISCONNECT, half-close, and read
// (and drop, unacknowledged) whatever the broker still sends until it closes
// its side. Over TLS the same, through the TLS session, with close_notify.
void Ingest::CloseGracefully() {
  if (connected_ && !options_.status_topic.empty()) {
    mosquitto_publish(mosq_, nullptr, options_.status_topic.c_str(), 7, "offline", 1, true);
  }
  bool flushed = true;
  for (int i = 0; i < 1000 && mosquitto_want_write(mosq_); ++i) {
    if (mosquitto_loop_write(mosq_, 1) != MOSQ_ERR_SUCCESS) {
      flushed = false;
      break;
    }
  }
  int fd = mosquitto_socket(mosq_);
  if (fd < 0) return;
  // MQTT DISCONNECT without properties: valid in 3.1.1 and (reason 0, normal
  // disconnection: no will) in 5.0. Written by us because libmosquitto
  // closes the socket right after its own DISCONNECT.
  const unsigned char disconnect[2] = {0xE0, 0x00};
  SSL* ssl = static_cast<SSL*>(mosquitto_ssl_get(mosq_));
  if (flushed && !mosquitto_want_write(mosq_)) {
    if (ssl != nullptr) {
      (void)SSL_write(ssl, disconnect, sizeof disconnect);
    } else {
      (void)::send(fd, disconnect, sizeof disconnect, MSG_NOSIGNAL);
    }
  }
  if (ssl != nullptr) (void)SSL_shutdown(ssl);  // close_notify; the drain below reads the rest
  ::shutdown(fd, SHUT_WR);
  const int64_t deadline = 2'000'000;  // µs the broker gets to read and close
  auto start = std::chrono::steady_clock::now();
  char sink[16384];
  for (;;) {
    auto waited = std::chrono::duration_cast<std::chrono::microseconds>(
                      std::chrono::steady_clock::now() - start).count();
    if (waited >= deadline) break;
    pollfd p{fd, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>((deadline - waited) / 1000) + 1);
    if (n <= 0) break;
    ssize_t got = ::recv(fd, sink, sizeof sink, 0);
    if (got <= 0) break;  // EOF: the broker has read everything and closed
  }
  // libmosquitto closes the socket in mosquitto_destroy.
}

void Ingest::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_->NotifyAll();
  if (thread_.joinable()) thread_.join();
}

IngestStats Ingest::stats() const {
  IngestStats s;
  s.received = received_.load();
  s.connects = connects_.load();
  s.connection_failures = failures_.load();
  s.connected = connected_.load();
  s.subscribed = subscribed_.load();
  s.last_error = last_error_.Get();
  return s;
}

void Ingest::OnConnect(mosquitto* m, void* self, int rc, int, const mosquitto_property*) {
  Ingest* in = static_cast<Ingest*>(self);
  if (rc != 0) {
    const char* why = in->options_.mqtt5() ? mosquitto_reason_string(rc) : mosquitto_connack_string(rc);
    std::string hint;
    if (rc == MQTT_RC_BAD_USERNAME_OR_PASSWORD || (!in->options_.mqtt5() && rc == 4)) {
      hint = " (check mqtt.username and mqtt.password_file)";
    } else if (rc == MQTT_RC_NOT_AUTHORIZED || (!in->options_.mqtt5() && rc == 5)) {
      // Mosquitto answers a wrong password with "not authorized" too.
      hint = " (check mqtt.username and mqtt.password_file, the client certificate, and the broker's ACLs)";
    } else if (rc == MQTT_RC_UNSUPPORTED_PROTOCOL_VERSION || (!in->options_.mqtt5() && rc == 1)) {
      hint = " (set mqtt.protocol = \"3.1.1\" for this broker)";
    }
    in->last_error_.Set(std::string("the broker refused the connection: ") + why + hint);
    // Retried with backoff: say it the first time and then every tenth.
    if (++in->refusals_ == 1 || in->refusals_ % 10 == 0) {
      in->options_.logger->error("mqtt: the broker {}:{} refused the connection: {}{} (attempt {}; retrying)",
                    in->options_.host, in->options_.port, why, hint, in->refusals_);
    }
    in->refused_ = true;
    return;
  }
  // Connected: no handshake left to explain (Run installs it again before
  // the next attempt).
  mosquitto_log_callback_set(m, nullptr);
  in->connected_ = true;
  in->session_up_ = true;
  in->refusals_ = 0;
  ++in->connects_;
  in->options_.logger->info("mqtt: connected to {}:{} as {} (MQTT {}{})", in->options_.host, in->options_.port,
               in->options_.client_id, in->options_.mqtt5() ? "5" : "3.1.1",
               in->options_.ca_file.empty() ? "" : ", TLS");
  if (!in->options_.status_topic.empty()) {
    mosquitto_publish(m, nullptr, in->options_.status_topic.c_str(), 6, "online", 1, true);
  }
  in->subscribed_ = false;
  in->pending_subacks_ = 0;
  for (const std::string& f : in->options_.filters) {
    int src = mosquitto_subscribe(m, nullptr, f.c_str(), in->options_.qos);
    if (src != MOSQ_ERR_SUCCESS) {
      in->options_.logger->error("mqtt: subscribe {}: {}", f, mosquitto_strerror(src));
      in->last_error_.Set("subscribe " + f + ": " + mosquitto_strerror(src));
    } else {
      ++in->pending_subacks_;
    }
  }
}

void Ingest::OnSubscribe(mosquitto*, void* self, int, int count, const int* granted,
                         const mosquitto_property*) {
  Ingest* in = static_cast<Ingest*>(self);
  for (int i = 0; i < count; ++i) {
    if (granted[i] > 2) {  // 0x80 and up: the broker refused the subscription
      in->options_.logger->error("mqtt: the broker refused a subscription (code {}); check its ACLs", granted[i]);
      in->last_error_.Set("the broker refused a subscription (code " + std::to_string(granted[i]) +
                          "); check its ACLs");
    } else if (granted[i] < in->options_.qos) {
      in->options_.logger->warn("mqtt: the broker granted QoS {} instead of {}: events may be lost", granted[i],
                   in->options_.qos);
    }
  }
  if (--in->pending_subacks_ == 0) {
    in->subscribed_ = true;
    in->options_.logger->info("mqtt: subscribed to {} topic filters", in->options_.filters.size());
  }
}

void Ingest::OnDisconnect(mosquitto*, void* self, int, const mosquitto_property*) {
  Ingest* in = static_cast<Ingest*>(self);
  in->connected_ = false;
  in->subscribed_ = false;
}

void Ingest::OnLog(mosquitto* m, void* self, int level, const char* line) {
  Ingest* in = static_cast<Ingest*>(self);
  if ((level & MOSQ_LOG_ERR) == 0 || line == nullptr) return;
  in->options_.logger->debug("libmosquitto: {}", line);
  // libmosquitto checks the host name itself and says so in its log.
  if (std::strstr(line, "host name verification failed") != nullptr) {
    in->tls_failure_ = "the broker's certificate does not name \"" + in->options_.host +
                       "\" (host name verification failed)";
    return;
  }
  // During a failed handshake the SSL object still exists: ask OpenSSL why.
  if (std::strstr(line, "OpenSSL Error") != nullptr && in->tls_failure_.empty()) {
    SSL* ssl = static_cast<SSL*>(mosquitto_ssl_get(m));
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (verify != X509_V_OK) {
      in->tls_failure_ = std::string("the broker's certificate: ") + X509_verify_cert_error_string(verify);
    } else {
      const char* msg = std::strstr(line, "error:");
      in->tls_failure_ = msg ? msg : line;
    }
  }
}

void Ingest::OnMessage(mosquitto*, void* self, const mosquitto_message* msg,
                       const mosquitto_property* props) {
  Ingest* in = static_cast<Ingest*>(self);
  in->received_.fetch_add(1, std::memory_order_relaxed);
  IngestMessage m;
  m.topic = msg->topic ? msg->topic : "";
  m.payload = std::string_view(static_cast<const char*>(msg->payload),
                               msg->payloadlen > 0 ? static_cast<size_t>(msg->payloadlen) : 0);
  m.qos = msg->qos;
  char* content_type = nullptr;
  if (props) {
    mosquitto_property_read_string(props, MQTT_PROP_CONTENT_TYPE, &content_type, false);
    char *name = nullptr, *value = nullptr;
    const mosquitto_property* p =
        mosquitto_property_read_string_pair(props, MQTT_PROP_USER_PROPERTY, &name, &value, false);
    while (p != nullptr) {
      const size_t bytes = (name ? std::strlen(name) : 0) + (value ? std::strlen(value) : 0) + 4;
      ++m.user_property_count;
      m.user_property_bytes += bytes;
      // Past the limits (both sums only grow) they are counted, not copied:
      // the message goes to the dead-letter stream without them, and is not
      // held twice.
      if (m.user_property_count <= in->options_.max_user_properties &&
          m.user_property_bytes <= in->options_.max_user_property_bytes) {
        m.user_properties.emplace_back(name ? name : "", value ? value : "");
      }
      free(name);
      free(value);
      name = value = nullptr;
      p = mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, true);
    }
  }
  if (content_type) m.content_type = content_type;
  in->sink_(m);
  free(content_type);
}

}  // namespace edgesync

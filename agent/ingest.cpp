#include "agent/ingest.h"

#include <mosquitto.h>
#include <spdlog/spdlog.h>

#include <poll.h>
#include <sys/socket.h>

#include <chrono>

#include "base/backoff.h"

namespace edgesync {

Result<std::unique_ptr<Ingest>> Ingest::Create(IngestOptions options, Sink sink) {
  std::unique_ptr<Ingest> in(new Ingest(std::move(options), std::move(sink)));
  in->mosq_ = mosquitto_new(in->options_.client_id.c_str(), /*clean_session=*/false, in.get());
  if (in->mosq_ == nullptr) return Status::InvalidArgument("mosquitto_new failed (client id empty?)");
  // We drive the loop ourselves but from one thread other than the caller's:
  // threaded mode keeps PUBACKs queued until on_message has returned.
  mosquitto_threaded_set(in->mosq_, true);
  mosquitto_connect_callback_set(in->mosq_, &Ingest::OnConnect);
  mosquitto_disconnect_callback_set(in->mosq_, &Ingest::OnDisconnect);
  mosquitto_message_callback_set(in->mosq_, &Ingest::OnMessage);
  mosquitto_subscribe_callback_set(in->mosq_, &Ingest::OnSubscribe);
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
  cv_.wait_for(lock, std::chrono::microseconds(us), [&] { return stopping_; });
  return stopping_;
}

void Ingest::Run() {
  Backoff backoff(options_.reconnect_initial_us, options_.reconnect_max_us);
  bool have_socket = false;
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
    }
    if (!have_socket) {
      int rc = connects_ == 0 && backoff.attempts() == 0
                   ? mosquitto_connect(mosq_, options_.host.c_str(), options_.port, options_.keepalive)
                   : mosquitto_reconnect(mosq_);
      if (rc != MOSQ_ERR_SUCCESS) {
        int64_t pause = backoff.NextMicros();
        if (backoff.attempts() == 1 || backoff.attempts() % 10 == 0) {
          spdlog::warn("mqtt: cannot connect to {}:{}: {} (retrying in {} ms)", options_.host,
                       options_.port, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                       pause / 1000);
        }
        if (PauseOrStop(pause)) break;
        continue;
      }
      have_socket = true;
      refused_ = false;
    }
    int rc = mosquitto_loop(mosq_, 100, 1);
    if (rc == MOSQ_ERR_SUCCESS && !refused_) {
      if (connected_) backoff.Reset();
      continue;
    }
    // Connection lost or refused: libmosquitto has closed the socket.
    have_socket = false;
    connected_ = false;
    subscribed_ = false;
    int64_t pause = backoff.NextMicros();
    spdlog::warn("mqtt: connection to {}:{} lost ({}); reconnecting in {} ms", options_.host,
                 options_.port, refused_ ? "refused" : mosquitto_strerror(rc), pause / 1000);
    if (PauseOrStop(pause)) break;
  }
  if (have_socket) CloseGracefully();
  connected_ = false;
  subscribed_ = false;
}

// Ends the session so that every PUBACK already queued reaches the broker.
// Closing a TCP socket that still has unread data (the broker keeps pushing
// PUBLISHes) sends RST, and a broker that has not yet read our last PUBACKs
// then discards them and delivers those events again. So: flush the PUBACKs,
// send DISCONNECT, half-close, and read (and drop, unacknowledged) whatever
// the broker still sends until it closes its side.
void Ingest::CloseGracefully() {
  bool flushed = true;
  for (int i = 0; i < 1000 && mosquitto_want_write(mosq_); ++i) {
    if (mosquitto_loop_write(mosq_, 1) != MOSQ_ERR_SUCCESS) {
      flushed = false;
      break;
    }
  }
  int fd = mosquitto_socket(mosq_);
  if (fd < 0) return;
  if (flushed && !mosquitto_want_write(mosq_)) {
    // MQTT DISCONNECT, no properties: valid in 3.1.1 and (reason 0) in 5.0.
    // Written directly because libmosquitto closes the socket right after
    // its own DISCONNECT, which is the RST problem above.
    const unsigned char disconnect[2] = {0xE0, 0x00};
    (void)::send(fd, disconnect, sizeof disconnect, MSG_NOSIGNAL);
  }
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
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

IngestStats Ingest::stats() const {
  return IngestStats{received_.load(), connects_.load(), connected_.load(), subscribed_.load()};
}

void Ingest::OnConnect(mosquitto* m, void* self, int rc) {
  Ingest* in = static_cast<Ingest*>(self);
  if (rc != 0) {
    spdlog::error("mqtt: connection refused by {}:{}: {}", in->options_.host, in->options_.port,
                  mosquitto_connack_string(rc));
    in->refused_ = true;
    return;
  }
  in->connected_ = true;
  ++in->connects_;
  spdlog::info("mqtt: connected to {}:{} as {}", in->options_.host, in->options_.port,
               in->options_.client_id);
  in->subscribed_ = false;
  in->pending_subacks_ = 0;
  for (const std::string& f : in->options_.filters) {
    int src = mosquitto_subscribe(m, nullptr, f.c_str(), in->options_.qos);
    if (src != MOSQ_ERR_SUCCESS) {
      spdlog::error("mqtt: subscribe {}: {}", f, mosquitto_strerror(src));
    } else {
      ++in->pending_subacks_;
    }
  }
}

void Ingest::OnSubscribe(mosquitto*, void* self, int, int count, const int* granted) {
  Ingest* in = static_cast<Ingest*>(self);
  for (int i = 0; i < count; ++i) {
    if (granted[i] > 2) {  // 0x80: the broker refused the subscription
      spdlog::error("mqtt: the broker refused a subscription (code {}); check its ACLs", granted[i]);
    } else if (granted[i] < in->options_.qos) {
      spdlog::warn("mqtt: the broker granted QoS {} instead of {}: events may be lost", granted[i],
                   in->options_.qos);
    }
  }
  if (--in->pending_subacks_ == 0) {
    in->subscribed_ = true;
    spdlog::info("mqtt: subscribed to {} topic filters", in->options_.filters.size());
  }
}

void Ingest::OnDisconnect(mosquitto*, void* self, int) {
  Ingest* in = static_cast<Ingest*>(self);
  in->connected_ = false;
  in->subscribed_ = false;
}

void Ingest::OnMessage(mosquitto*, void* self, const mosquitto_message* msg) {
  Ingest* in = static_cast<Ingest*>(self);
  in->received_.fetch_add(1, std::memory_order_relaxed);
  std::string_view payload(static_cast<const char*>(msg->payload),
                           msg->payloadlen > 0 ? static_cast<size_t>(msg->payloadlen) : 0);
  in->sink_(msg->topic ? msg->topic : "", payload, msg->qos);
}

}  // namespace edgesync

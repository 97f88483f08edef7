#include "agent/ingest.h"

#include <mosquitto.h>
#include <spdlog/spdlog.h>

namespace edgesync {

Result<std::unique_ptr<Ingest>> Ingest::Create(IngestOptions options, Sink sink) {
  std::unique_ptr<Ingest> in(new Ingest(std::move(options), std::move(sink)));
  in->mosq_ = mosquitto_new(in->options_.client_id.c_str(), /*clean_session=*/false, in.get());
  if (in->mosq_ == nullptr) return Status::InvalidArgument("mosquitto_new failed (client id empty?)");
  mosquitto_connect_callback_set(in->mosq_, &Ingest::OnConnect);
  mosquitto_disconnect_callback_set(in->mosq_, &Ingest::OnDisconnect);
  mosquitto_message_callback_set(in->mosq_, &Ingest::OnMessage);
  // Capped exponential reconnect: 1 s, 2 s, 4 s ... 30 s.
  mosquitto_reconnect_delay_set(in->mosq_, 1, 30, true);
  return in;
}

Ingest::~Ingest() {
  Stop();
  if (mosq_) mosquitto_destroy(mosq_);
}

Status Ingest::Start() {
  int rc = mosquitto_connect_async(mosq_, options_.host.c_str(), options_.port, options_.keepalive);
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_ERRNO) {
    return Status::InvalidArgument("mqtt connect to " + options_.host + ":" +
                                   std::to_string(options_.port) + ": " + mosquitto_strerror(rc));
  }
  if (rc == MOSQ_ERR_ERRNO) {
    spdlog::warn("mqtt: broker {}:{} not reachable yet ({}); retrying", options_.host,
                 options_.port, mosquitto_strerror(rc));
  }
  rc = mosquitto_loop_start(mosq_);
  if (rc != MOSQ_ERR_SUCCESS) return Status::IOError(std::string("mqtt loop: ") + mosquitto_strerror(rc));
  started_ = true;
  return Status::OK();
}

void Ingest::Stop() {
  if (!started_) return;
  started_ = false;
  mosquitto_disconnect(mosq_);
  mosquitto_loop_stop(mosq_, /*force=*/false);
  connected_ = false;
}

IngestStats Ingest::stats() const {
  return IngestStats{received_.load(), connects_.load(), connected_.load()};
}

void Ingest::OnConnect(mosquitto* m, void* self, int rc) {
  Ingest* in = static_cast<Ingest*>(self);
  if (rc != 0) {
    spdlog::error("mqtt: connection refused by {}:{}: {}", in->options_.host, in->options_.port,
                  mosquitto_connack_string(rc));
    return;
  }
  in->connected_ = true;
  ++in->connects_;
  spdlog::info("mqtt: connected to {}:{} as {}", in->options_.host, in->options_.port,
               in->options_.client_id);
  for (const std::string& f : in->options_.filters) {
    int src = mosquitto_subscribe(m, nullptr, f.c_str(), in->options_.qos);
    if (src != MOSQ_ERR_SUCCESS) spdlog::error("mqtt: subscribe {}: {}", f, mosquitto_strerror(src));
  }
}

void Ingest::OnDisconnect(mosquitto*, void* self, int rc) {
  Ingest* in = static_cast<Ingest*>(self);
  in->connected_ = false;
  if (rc != 0) spdlog::warn("mqtt: connection lost ({}); reconnecting", mosquitto_strerror(rc));
}

void Ingest::OnMessage(mosquitto*, void* self, const mosquitto_message* msg) {
  Ingest* in = static_cast<Ingest*>(self);
  in->received_.fetch_add(1, std::memory_order_relaxed);
  std::string_view payload(static_cast<const char*>(msg->payload),
                           msg->payloadlen > 0 ? static_cast<size_t>(msg->payloadlen) : 0);
  in->sink_(msg->topic ? msg->topic : "", payload, msg->qos);
}

}  // namespace edgesync

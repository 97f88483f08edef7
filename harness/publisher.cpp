// Publisher: acknowledgements are counted from libmosquitto's on_publish
// callback, which for QoS 1/2 runs on the loop thread when the PUBACK/PUBCOMP
// arrives. mu_ is held across mosquitto_publish() so the callback cannot see
// a message id before Publish() has registered it; in threaded mode
// mosquitto_publish() only queues the packet and never enters a callback, so
// this cannot deadlock with the loop thread (libmosquitto 2.0.11).
#include "harness/publisher.h"

#include <algorithm>

#include <mosquitto.h>

#include <cerrno>
#include <cstring>

namespace edgesync::harness {
namespace {

constexpr int kKeepaliveSeconds = 30;
constexpr std::chrono::seconds kSlotTimeout(60);

void LibInit() {
  static const int once = [] { return mosquitto_lib_init(); }();
  (void)once;
}

}  // namespace

Result<std::unique_ptr<Publisher>> Publisher::Connect(const std::string& host, int port,
                                                      const std::string& client_id,
                                                      int max_inflight,
                                                      std::chrono::milliseconds timeout) {
  if (max_inflight < 1 || max_inflight > 65535) {
    return Status::InvalidArgument("max_inflight must be in 1..65535");
  }
  LibInit();
  std::unique_ptr<Publisher> p(new Publisher(max_inflight));
  p->mosq_ = mosquitto_new(client_id.c_str(), /*clean_session=*/true, p.get());
  if (p->mosq_ == nullptr) return Status::InvalidArgument("mosquitto_new failed for " + client_id);
  mosquitto_int_option(p->mosq_, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
  mosquitto_int_option(p->mosq_, MOSQ_OPT_SEND_MAXIMUM, max_inflight);
  mosquitto_connect_callback_set(p->mosq_, &Publisher::OnConnect);
  mosquitto_publish_callback_set(p->mosq_, &Publisher::OnPublish);

  int rc = mosquitto_connect_async(p->mosq_, host.c_str(), port, kKeepaliveSeconds);
  if (rc != MOSQ_ERR_SUCCESS) {
    std::string why = rc == MOSQ_ERR_ERRNO ? std::strerror(errno) : mosquitto_strerror(rc);
    return Status::Unavailable("MQTT connect to " + host + ":" + std::to_string(port) + ": " + why);
  }
  rc = mosquitto_loop_start(p->mosq_);
  if (rc != MOSQ_ERR_SUCCESS) {
    return Status::IOError(std::string("mosquitto_loop_start: ") + mosquitto_strerror(rc));
  }
  p->loop_running_ = true;

  std::unique_lock lock(p->mu_);
  if (!p->cv_.wait_for(lock, timeout, [&] { return p->connack_rc_ >= 0; })) {
    return Status::Unavailable("no CONNACK from " + host + ":" + std::to_string(port) +
                               " within " + std::to_string(timeout.count()) + " ms");
  }
  if (p->connack_rc_ != 0) {
    return Status::Unavailable("broker refused the connection: " +
                               std::string(mosquitto_connack_string(p->connack_rc_)));
  }
  lock.unlock();
  return p;
}

Publisher::~Publisher() {
  (void)Disconnect();
  if (mosq_ != nullptr) mosquitto_destroy(mosq_);
}

void Publisher::OnConnect(struct mosquitto*, void* self, int rc) {
  auto* p = static_cast<Publisher*>(self);
  std::lock_guard lock(p->mu_);
  if (p->connack_rc_ <= 0) p->connack_rc_ = rc;  // keeps the first refusal
  p->cv_.notify_all();
}

void Publisher::OnPublish(struct mosquitto*, void* self, int mid) {
  auto* p = static_cast<Publisher*>(self);
  std::lock_guard lock(p->mu_);
  if (p->pending_.erase(mid) == 1) {
    ++p->acked_;
    p->cv_.notify_all();
  }
}

Status Publisher::Publish(const std::string& topic, std::string_view payload, int qos,
                          bool retain) {
  if (qos < 0 || qos > 2) return Status::InvalidArgument("qos must be 0, 1 or 2");
  std::unique_lock lock(mu_);
  if (qos > 0 && !cv_.wait_for(lock, kSlotTimeout, [&] {
        return closed_ || pending_.size() < max_inflight_;
      })) {
    return Status::Unavailable(std::to_string(pending_.size()) +
                               " publishes unacknowledged for 60 s; is the broker up?");
  }
  if (closed_) return Status::Aborted("publisher disconnected");
  int mid = 0;
  int rc = mosquitto_publish(mosq_, &mid, topic.c_str(), static_cast<int>(payload.size()),
                             payload.data(), qos, retain);
  // While the connection is down (the broker restarting), libmosquitto
  // 2.0.11 still queues a QoS 1/2 message and says MOSQ_ERR_NO_CONN only
  // because it could not send it yet: it goes out after the reconnect with
  // the others unacknowledged, so it is pending like them.
  if (rc == MOSQ_ERR_NO_CONN && qos > 0) rc = MOSQ_ERR_SUCCESS;
  if (rc != MOSQ_ERR_SUCCESS) {
    Status s = Status::Unavailable("publish to " + topic + ": " + mosquitto_strerror(rc));
    if (rc == MOSQ_ERR_INVAL || rc == MOSQ_ERR_PAYLOAD_SIZE || rc == MOSQ_ERR_MALFORMED_UTF8) {
      s = Status::InvalidArgument(s.message());
    }
    return s;
  }
  if (qos > 0) pending_.insert(mid);
  return Status::OK();
}

Status Publisher::WaitAcked(std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  if (!cv_.wait_for(lock, timeout, [&] { return pending_.empty(); })) {
    return Status::Unavailable(std::to_string(pending_.size()) +
                               " publishes still unacknowledged after " +
                               std::to_string(timeout.count()) + " ms");
  }
  return Status::OK();
}

uint64_t Publisher::acked() const {
  std::lock_guard lock(mu_);
  return acked_;
}

size_t Publisher::inflight() const {
  std::lock_guard lock(mu_);
  return pending_.size();
}

Status Publisher::Disconnect() {
  {
    std::lock_guard lock(mu_);
    if (closed_) return Status::OK();
    closed_ = true;
    cv_.notify_all();
  }
  if (mosq_ == nullptr) return Status::OK();
  int rc = mosquitto_disconnect(mosq_);
  if (loop_running_) {
    // Without a connection the loop thread would only notice the disconnect
    // after its reconnect delay; stop it at once then.
    mosquitto_loop_stop(mosq_, /*force=*/rc == MOSQ_ERR_NO_CONN);
    loop_running_ = false;
  }
  if (rc != MOSQ_ERR_SUCCESS && rc != MOSQ_ERR_NO_CONN) {
    return Status::Unavailable(std::string("disconnect: ") + mosquitto_strerror(rc));
  }
  return Status::OK();
}

std::string PaymentEvent(const std::string& device, uint64_t seq) {
  std::string s = R"({"device":")" + device + R"(","seq":)" + std::to_string(seq) +
                  R"(,"type":"authorization","merchant_id":"MID000123456","amount":{"value":)" +
                  std::to_string(100 + seq % 9000) +
                  R"(,"currency":"EUR"},"card":{"pan":"411111******1111","scheme":"VISA"},)" +
                  R"("result":{"approved":true,"response_code":"00"},"pad":")";
  s.append(300 - 2 - std::min<size_t>(s.size(), 290), 'x');
  return s + "\"}";
}

}  // namespace edgesync::harness

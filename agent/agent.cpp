#include "agent/agent.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdlib>
#include <thread>

namespace edgesync {

Agent::Agent(const Config& config, Env* env) : config_(config), env_(env) {}

Agent::~Agent() {
  if (started_) (void)Shutdown();
}

Result<std::unique_ptr<Agent>> Agent::Open(const Config& config, Env* env) {
  std::unique_ptr<Agent> a(new Agent(config, env));
  const std::string& dir = config.state_dir;
  EDGESYNC_RETURN_IF_ERROR(env->CreateDirs(dir));

  // One agent per state directory: a second would interleave journals.
  Result<std::unique_ptr<FileLock>> lock = env->LockFile(dir + "/lock");
  if (!lock.ok()) {
    if (lock.status().code() != Status::Code::kUnavailable) return lock.status();
    return Status::Unavailable("another edgesync agent is running on " + dir +
                               "; stop it first (it holds " + dir + "/lock)");
  }
  a->lock_ = std::move(lock).value();

  Result<std::unique_ptr<Store>> store = Store::Open(dir + "/store.db");
  if (!store.ok()) return store.status();
  a->store_ = std::move(store).value();

  std::vector<std::vector<std::string>> filters;
  std::vector<StreamSpec> specs;
  for (const StreamConfig& s : config.streams) {
    filters.push_back(s.topics);
    specs.push_back(StreamSpec{s.name, s.kafka_topic, s.priority});
  }
  a->router_ = std::make_unique<Router>(filters);

  SealerOptions so;
  so.device_id = config.device_id;
  so.journal_dir = dir + "/journal";
  so.max_events = static_cast<uint32_t>(config.batch_max_events);
  so.max_bytes = static_cast<size_t>(config.batch_max_bytes);
  so.max_age_us = static_cast<int64_t>(config.batch_max_age * 1e6);
  so.sync_interval_us = static_cast<int64_t>(config.sync_interval * 1e6);
  so.seal.zstd_level = static_cast<int>(config.zstd_level);
  Result<std::unique_ptr<Sealer>> sealer = Sealer::Open(env, a->store_.get(), so, specs);
  if (!sealer.ok()) return sealer.status();
  a->sealer_ = std::move(sealer).value();

  UploaderOptions uo;
  uo.brokers = config.kafka_brokers;
  uo.device_id = config.device_id;
  uo.properties = config.kafka_properties;
  Result<std::unique_ptr<Uploader>> up = Uploader::Create(a->store_.get(), env, uo);
  if (!up.ok()) return up.status();
  a->uploader_ = std::move(up).value();
  a->sealer_->SetOnSealed([u = a->uploader_.get()] { u->Notify(); });

  IngestOptions io;
  io.host = config.mqtt_host;
  io.port = static_cast<int>(config.mqtt_port);
  io.client_id = config.mqtt_client_id;
  io.keepalive = static_cast<int>(config.mqtt_keepalive);
  io.qos = static_cast<int>(config.mqtt_qos);
  io.filters = a->router_->AllFilters();
  Agent* self = a.get();
  Result<std::unique_ptr<Ingest>> in = Ingest::Create(
      io, [self](std::string_view t, std::string_view p, int q) { self->OnMessage(t, p, q); });
  if (!in.ok()) return in.status();
  a->ingest_ = std::move(in).value();
  return a;
}

Status Agent::Start() {
  sealer_->Start();
  uploader_->Start();
  uploader_->Notify();  // whatever the store held from before
  EDGESYNC_RETURN_IF_ERROR(ingest_->Start());
  started_ = true;
  return Status::OK();
}

// Runs on the MQTT loop thread. Returning acknowledges the message to the
// broker, so it returns only once the event is in the journal.
void Agent::OnMessage(std::string_view topic, std::string_view payload, int qos) {
  std::optional<size_t> stream = router_->Route(topic);
  if (!stream) {
    unmatched_.fetch_add(1, std::memory_order_relaxed);
    spdlog::debug("mqtt: no stream takes topic {}; dropped", topic);
    return;
  }
  Record r;
  r.topic = std::string(topic);
  r.received_at_us = env_->NowMicros();
  r.qos = static_cast<uint8_t>(qos);
  r.payload = std::string(payload);
  for (int attempt = 0;; ++attempt) {
    Status st = sealer_->Accept(*stream, r);
    if (st.ok()) return;
    if (attempt == 0 || attempt % 30 == 0) {
      spdlog::error("journal: cannot accept event on {}: {} (holding the broker's ack, retrying)",
                    topic, st.ToString());
    }
    if (shutting_down_) {
      // Returning would acknowledge an event that is not durable. Dying
      // without the ack is safe: the broker delivers it again to the next run.
      spdlog::critical("journal still failing at shutdown; exiting without acknowledging");
      std::_Exit(3);
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
}

Status Agent::Shutdown() {
  if (!started_) return Status::OK();
  started_ = false;
  shutting_down_ = true;
  spdlog::info("shutting down: stopping intake");
  ingest_->Stop();
  Status sealed = sealer_->Stop();
  if (!sealed.ok()) spdlog::error("sealing at shutdown: {}", sealed.ToString());
  Status up = uploader_->Stop(static_cast<int64_t>(config_.shutdown_timeout * 1e6));
  spdlog::info("shut down: {}", StatsLine());
  if (!sealed.ok()) return sealed;
  return up;
}

AgentStats Agent::stats() const {
  AgentStats s;
  s.ingest = ingest_->stats();
  s.sealer = sealer_->stats();
  s.uploader = uploader_->stats();
  s.unmatched = unmatched_.load();
  Result<StoreCounts> c = store_->Counts();
  if (c.ok()) s.buffered = *c;
  return s;
}

static std::string FormatStats(const AgentStats& s) {
  return "received=" + std::to_string(s.ingest.received) +
         " accepted=" + std::to_string(s.sealer.accepted) +
         " sealed=" + std::to_string(s.sealer.sealed_events) +
         " uploaded=" + std::to_string(s.uploader.delivered_events) +
         " buffered_events=" + std::to_string(s.buffered.events) +
         " buffered_batches=" + std::to_string(s.buffered.batches) +
         " unmatched=" + std::to_string(s.unmatched) +
         " mqtt=" + (s.ingest.connected ? "up" : "down");
}

std::string Agent::StatsLine() const { return FormatStats(stats()); }

}  // namespace edgesync

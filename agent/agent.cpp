#include "agent/agent.h"

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>


#include "agent/health.h"
#include "agent/logging.h"
#include "base/backoff.h"
#include "base/systemd.h"

namespace edgesync {

Agent::Agent(const Config& config, Env* env) : config_(config), env_(env) {}

namespace {

// The journal key: created when the journal is to be encrypted, loaded
// whenever its file exists (segments written while encryption was on stay
// readable after it is turned off). The key the journal's encrypted segments
// name must be the one in the file: else the agent refuses to start rather
// than set their events aside.
Status LoadJournalKey(Env* env, const std::string& path, bool encrypt, const std::string& journal_dir,
                      SealerOptions* so) {
  Result<std::set<crypto::KeyId>> needed = JournalKeyIds(env, journal_dir);
  if (!needed.ok()) return needed.status();
  const std::string what_to_do = ": restore the right file (encryption.journal_key), or move " +
                                 journal_dir + " aside to start without those events";
  const bool exists = env->Exists(path);
  if (!needed->empty() && !exists) {
    return Status::InvalidArgument("the journal holds events encrypted with journal key " +
                                   crypto::Hex(*needed->begin()) + ", but " + path + " is missing" +
                                   what_to_do);
  }
  if (!encrypt && !exists) return Status::OK();
  Result<crypto::Key> key = crypto::LoadOrCreateKeyFile(env, path);
  if (!key.ok()) return Status::InvalidArgument("encryption.journal_key: " + key.status().ToString());
  const crypto::KeyId have = crypto::ShortHash(*key);
  for (const crypto::KeyId& id : *needed) {
    if (id != have) {
      return Status::InvalidArgument("the journal holds events encrypted with journal key " +
                                     crypto::Hex(id) + ", but " + path + " is key " +
                                     crypto::Hex(have) + what_to_do);
    }
  }
  so->journal_key = *key;
  so->encrypt_journal = encrypt;
  return Status::OK();
}

}  // namespace

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
  Result<std::unique_ptr<StatusSocket>> sock = StatusSocket::Listen(dir + "/status.sock");
  if (!sock.ok()) return sock.status();
  a->status_socket_ = std::move(sock).value();

  // The device's signing key, made on the first start.
  const std::string key_path = DeviceKeyPath(config);
  bool created = false;
  Result<DeviceSigner> key = LoadOrCreateDeviceKey(env, key_path, config.device_id, &created);
  if (!key.ok()) return Status::InvalidArgument("agent.device_key: " + key.status().message());
  a->device_key_ = std::move(key).value();
  if (created) {
    spdlog::warn("device key: made a new signing key {} at {}; enrol it with the central service "
                 "(copy {} into edgesync-unpack's --device-keys directory), or its batches are refused",
                 crypto::Hex(a->device_key_->key_id()), key_path, EnrolmentPath(key_path));
  }

  StoreOptions sto;
  sto.device_id = config.device_id;
  sto.signer = a->device_key_;
  sto.max_bytes = static_cast<uint64_t>(config.buffer_max_bytes);
  sto.min_free_bytes = static_cast<uint64_t>(config.buffer_min_free_bytes);
  sto.max_age_us = static_cast<int64_t>(config.buffer_max_age * 1e6);
  Result<std::shared_ptr<const Pipeline>> pipeline = Pipeline::Build(config);
  if (!pipeline.ok()) return pipeline.status();
  a->pipeline_ = std::move(pipeline).value();
  a->pipeline_lanes_ = a->pipeline_->lanes();
  const std::vector<StreamSpec>& specs = a->pipeline_lanes_;
  a->dead_letter_stream_ = a->pipeline_->dead_letter_lane();
  a->agent_stream_ = a->pipeline_->agent_lane();
  // Status and metrics speak of streams: a derived lane (stream@topic@priority)
  // counts for its stream.
  for (const StreamConfig& sc : config.streams) a->stream_names_.push_back(sc.name);
  a->stream_names_.push_back(kDeadLetterStream);
  a->stream_names_.push_back(kAgentStream);
  for (const StreamSpec& lane : specs) {
    const std::string base = StreamOfLane(lane.name);
    auto it = std::find(a->stream_names_.begin(), a->stream_names_.end(), base);
    if (it == a->stream_names_.end()) it = a->stream_names_.insert(a->stream_names_.end(), base);
    a->lane_stream_.push_back(static_cast<size_t>(it - a->stream_names_.begin()));
  }
  a->lane_accepted_ = std::make_unique<std::atomic<uint64_t>[]>(specs.size());
  const int64_t watchdog_us = systemd::WatchdogMicros();
  a->wedged_after_us_ = watchdog_us > 0 ? watchdog_us / 2 : 30'000'000;
  StoreReplacement replaced;
  Result<std::unique_ptr<Store>> store =
      OpenOrReplaceStore(env, dir + "/store.db", sto, specs, &replaced);
  if (!store.ok()) return store.status();
  a->store_ = std::move(store).value();
  if (replaced.replaced) {
    spdlog::error("store: {} was corrupt ({}); moved it aside to {} and started a new one",
                  dir + "/store.db", replaced.reason, replaced.moved_to);
    for (const Gap& g : replaced.gaps) {
      spdlog::error("store: stream {}: batches {}..{} may be lost ({} events could still be "
                    "counted); recorded as a store-corrupt gap and reported to Kafka",
                    g.stream, g.first_seq, g.last_seq, g.events);
    }
  }

  SealerOptions so;
  so.device_id = config.device_id;
  so.journal_dir = dir + "/journal";
  so.max_events = static_cast<uint32_t>(config.batch_max_events);
  so.max_bytes = static_cast<size_t>(config.batch_max_bytes);
  so.max_age_us = static_cast<int64_t>(config.batch_max_age * 1e6);
  so.sync_interval_us = static_cast<int64_t>(config.sync_interval * 1e6);
  so.seal.zstd_level = static_cast<int>(config.zstd_level);
  so.seal.signer = &*a->device_key_;
  if (!config.batch_dictionary.empty()) {
    Result<std::string> bytes = env->ReadFile(config.batch_dictionary, kMaxDictionaryBytes);
    if (!bytes.ok()) return bytes.status();
    Result<std::shared_ptr<const Dictionary>> d = Dictionary::Load(*bytes, so.seal.zstd_level);
    if (!d.ok()) return Status::InvalidArgument("batch.dictionary: " + d.status().message());
    a->dictionary_ = *d;
    so.seal.dictionary = a->dictionary_.get();
  }
  const std::string journal_key = config.encryption_journal_key.empty()
                                      ? dir + "/journal.key"
                                      : config.encryption_journal_key;
  if (!config.encryption_public_key.empty()) {
    Result<crypto::Key> pub = crypto::ReadPublicKeyFile(env, config.encryption_public_key);
    if (!pub.ok()) return pub.status();
    a->recipient_ = Recipient::For(*pub);
    so.seal.recipient = &*a->recipient_;
    spdlog::info("encryption: batches sealed for key {}; journal encrypted with {}",
                 crypto::Hex(a->recipient_->key_id), journal_key);
  }
  EDGESYNC_RETURN_IF_ERROR(
      LoadJournalKey(env, journal_key, !config.encryption_public_key.empty(), so.journal_dir, &so));
  Result<std::unique_ptr<Sealer>> sealer = Sealer::Open(env, a->store_.get(), so, specs);
  if (!sealer.ok()) return sealer.status();
  a->sealer_ = std::move(sealer).value();

  UploaderOptions uo;
  uo.brokers = config.kafka_brokers;
  uo.device_id = config.device_id;
  uo.signer = a->device_key_;
  Result<std::vector<std::pair<std::string, std::string>>> props = KafkaProperties(config, env);
  if (!props.ok()) return props.status();
  uo.properties = std::move(props).value();
  for (const StreamSpec& spec : specs) {
    if (std::find(uo.topics.begin(), uo.topics.end(), spec.kafka_topic) == uo.topics.end()) {
      uo.topics.push_back(spec.kafka_topic);
    }
  }
  uo.max_in_flight = static_cast<size_t>(config.kafka_max_in_flight);
  uo.max_in_flight_bytes = static_cast<uint64_t>(config.kafka_max_in_flight_bytes);
  uo.max_bytes_per_sec = static_cast<uint64_t>(config.kafka_max_bytes_per_sec);
  uo.backoff_max_us = static_cast<int64_t>(config.kafka_retry_backoff_max * 1e6);
  uo.blocked_retry_us = static_cast<int64_t>(config.kafka_blocked_retry_interval * 1e6);
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
  io.mqtt5 = config.mqtt_protocol == "5";
  io.session_expiry_s = static_cast<int64_t>(config.mqtt_session_expiry);
  io.receive_maximum = static_cast<int>(config.mqtt_receive_maximum);
  io.username = config.mqtt_username;
  if (!config.mqtt_password_file.empty()) {
    Result<std::string> pw = ReadPasswordFile(config.mqtt_password_file, "mqtt.password_file", env);
    if (!pw.ok()) return pw.status();
    io.password = std::move(pw).value();
  }
  io.ca_file = config.mqtt_ca_file;
  io.cert_file = config.mqtt_cert_file;
  io.key_file = config.mqtt_key_file;
  io.tls_version = config.mqtt_tls_version;
  io.status_topic = config.mqtt_status_topic;
  io.max_packet_size = static_cast<uint32_t>(config.mqtt_max_packet_size);
  io.max_user_properties = kMaxUserProperties;
  io.max_user_property_bytes = static_cast<size_t>(config.mqtt_max_payload);
  std::vector<std::string> filters_wanted = a->pipeline_->router().AllFilters();
  filters_wanted.insert(filters_wanted.end(), config.mqtt_subscribe.begin(), config.mqtt_subscribe.end());
  if (!config.fleet_mqtt_topic.empty()) filters_wanted.push_back(config.fleet_mqtt_topic);
  io.filters = MinimalSubscriptions(filters_wanted);
  io.env = env;
  Agent* self = a.get();
  Result<std::unique_ptr<Ingest>> in =
      Ingest::Create(io, [self](const IngestMessage& m) { self->OnMessage(m); });
  if (!in.ok()) return in.status();
  a->ingest_ = std::move(in).value();
  return a;
}

Status Agent::Start() {
  // spdlog's registry, a static in the (uninstrumented) shared library, is
  // built on first use. Built here, before the threads below share it, its
  // construction is ordered before them for ThreadSanitizer too, which cannot
  // see the library's own once-only guard.
  (void)spdlog::default_logger_raw();
  started_us_ = env_->MonotonicMicros();
  monitor_stop_fd_ = ::eventfd(0, EFD_CLOEXEC);
  if (monitor_stop_fd_ < 0) return Status::FromErrno("eventfd", errno);
  sealer_->Start();
  uploader_->Start();
  uploader_->Notify();  // whatever the store held from before
  EDGESYNC_RETURN_IF_ERROR(ingest_->Start());
  started_ = true;
  if (config_.heartbeat_interval > 0) EmitHealth("starting");
  monitor_thread_ = std::thread([this] { MonitorLoop(); });
  return Status::OK();
}

void Agent::MonitorLoop() {
  const int64_t heartbeat_us = static_cast<int64_t>(config_.heartbeat_interval * 1e6);
  const int64_t metrics_us = static_cast<int64_t>(config_.metrics_interval * 1e6);
  int64_t now = env_->MonotonicMicros();
  int64_t next_tick = now, next_health = now + heartbeat_us, next_metrics = now;
  for (;;) {
    now = env_->MonotonicMicros();
    if (now >= next_tick) {
      SampleRates();
      NotifySystemd();
      FlushLog();
      next_tick = now + 1'000'000;
    }
    if (heartbeat_us > 0 && now >= next_health && !shutting_down_) {
      EmitHealth("running");
      next_health = now + heartbeat_us;
    }
    if (!config_.metrics_textfile.empty() && now >= next_metrics) {
      WriteMetrics();
      next_metrics = now + metrics_us;
    }
    pollfd fds[2] = {{.fd = monitor_stop_fd_, .events = POLLIN, .revents = 0},
                     {.fd = status_socket_->fd(), .events = POLLIN, .revents = 0}};
    const int64_t wait_ms = std::max<int64_t>(0, (next_tick - env_->MonotonicMicros() + 999) / 1000);
    if (::poll(fds, 2, static_cast<int>(wait_ms)) < 0 && errno != EINTR) {
      spdlog::error("status: poll: {}", std::strerror(errno));
      env_->SleepForMicros(1'000'000);
    }
    if (fds[0].revents != 0) return;
    if (fds[1].revents != 0) status_socket_->Serve([this] { return HealthRecord("running"); });
  }
}

void Agent::SampleRates() {
  RateSample sample{env_->MonotonicMicros(), std::vector<uint64_t>(stream_names_.size()),
                    std::vector<uint64_t>(stream_names_.size())};
  for (size_t lane = 0; lane < lane_stream_.size(); ++lane) {
    sample.in[lane_stream_[lane]] += lane_accepted_[lane].load(std::memory_order_relaxed);
  }
  const UploaderStats up = uploader_->stats();
  for (size_t lane = 0; lane < lane_stream_.size(); ++lane) {
    auto it = up.streams.find(pipeline_lanes_[lane].name);
    if (it != up.streams.end()) sample.out[lane_stream_[lane]] += it->second.events;
  }
  std::lock_guard<std::mutex> lock(rates_mu_);
  rates_.push_back(std::move(sample));
  while (rates_.size() > 2 && rates_.back().at_us - rates_[1].at_us >= kRateWindowUs) rates_.pop_front();
}

void Agent::NotifySystemd() {
  const std::string wedged = Wedged(wedged_after_us_);
  // Logged when it starts and when it ends, not every second in between.
  if (wedged.empty()) {
    systemd::Notify("WATCHDOG=1");
    if (wedged_logged_) spdlog::warn("watchdog: every stage makes progress again");
    wedged_logged_ = false;
  } else if (!wedged_logged_) {
    spdlog::error("watchdog: {}; no longer telling systemd all is well, so that it restarts the agent",
                  wedged);
    wedged_logged_ = true;
  }
  const IngestStats in = ingest_->stats();
  const UploaderStats up = uploader_->stats();
  std::string status = "STATUS=";
  if (!wedged.empty()) {
    status += "wedged: " + wedged;
  } else if (shutting_down_) {
    status += std::string(restarting_ ? "restarting the pipeline" : "stopping") +
              ": sealing and uploading what is open, " + std::to_string(up.delivered_events) + " uploaded";
  } else {
    status += std::string("mqtt ") + (in.connected ? "connected" : "disconnected") + ", kafka " +
              KafkaStateName(up.kafka) + ", " + std::to_string(in.received) + " received, " +
              std::to_string(up.delivered_events) + " uploaded" + (backpressure_ ? ", BACKPRESSURE" : "");
  }
  if (status != systemd_status_) {
    systemd::Notify(status);
    systemd_status_ = status;
  }
}

std::string Agent::Wedged(int64_t limit_us) const {
  const int64_t now = env_->MonotonicMicros();
  const std::pair<const char*, int64_t> stages[] = {
      {"ingest", ingest_progress_.StuckMicros(now)},
      {"buffer", sealer_->StuckMicros()},
      {"upload", uploader_->StuckMicros()},
      {"control", control_progress_ != nullptr ? control_progress_->StuckMicros(now) : 0}};
  for (const auto& [stage, stuck_us] : stages) {
    if (stuck_us > limit_us) {
      return std::string(stage) + ": no progress for " + std::to_string(stuck_us / 1'000'000) + " s";
    }
  }
  return "";
}

void Agent::WriteMetrics() {
  HealthContext c;
  c.device_id = config_.device_id;
  c.version = EDGESYNC_VERSION;
  c.now_us = env_->NowMicros();
  c.uptime_us = env_->MonotonicMicros() - started_us_;
  const std::string& path = config_.metrics_textfile;
  // node_exporter reads only *.prom files: the temporary one is skipped.
  // No fsync: losing the file to a power cut costs one interval; syncing
  // it every interval would cost flash.
  // Readable by node_exporter's user, as a plain open(2) would make it.
  Status st = env_->WriteFileAtomically(path, MetricsText(stats(), c),
                                        AtomicWriteOptions{.sync = false, .mode = 0666});
  if (!st.ok()) spdlog::warn("metrics.textfile: cannot write {}: {}", path, st.ToString());
}

std::string Agent::HealthRecord(const char* state) const {
  HealthContext c;
  c.device_id = config_.device_id;
  c.device_key = crypto::Hex(device_key_->key_id());
  c.version = EDGESYNC_VERSION;
  c.state = state;
  c.now_us = env_->NowMicros();
  c.uptime_us = env_->MonotonicMicros() - started_us_;
  return HealthRecordJson(stats(), c);
}

void Agent::EmitHealth(const char* state) {
  Record r;
  r.topic = "edgesync/" + config_.device_id + "/health";
  r.received_at_us = env_->NowMicros();
  r.content_type = "application/json";
  r.payload = HealthRecord(state);
  Status st = sealer_->Accept(agent_stream_, r);
  if (!st.ok()) spdlog::warn("health record not journaled: {}", st.ToString());
}

// Runs on the MQTT loop thread. Returning acknowledges the message to the
// broker, so it returns only once the event is in a journal: its stream's,
// or the dead-letter stream's with the reason; or once a plugin dropped it.
void Agent::OnMessage(const IngestMessage& m) {
  // Our own retained status comes back when mqtt.subscribe covers it.
  if (m.topic == config_.mqtt_status_topic) return;
  if (!config_.fleet_mqtt_topic.empty() && m.topic == config_.fleet_mqtt_topic) {
    if (bundle_sink_ && !m.payload.empty()) bundle_sink_(m.payload);  // empty: the retained one was cleared
    return;
  }
  ingest_progress_.Advance(env_->MonotonicMicros());
  struct Done {
    Progress& p;
    ~Done() { p.Wait(); }
  } done{ingest_progress_};
  if (reload_pending_.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(reload_mu_);
    pipeline_ = std::move(pending_);
    reload_pending_ = false;
    reloads_.fetch_add(1, std::memory_order_relaxed);
    spdlog::info("reload: the new configuration's chains take over from this event on");
  }
  const Pipeline& pl = *pipeline_;
  // One Record reused for every message: its strings keep their capacity,
  // so the ingest path does not allocate per event once warmed up.
  Record& r = scratch_;
  r.topic.assign(m.topic);
  r.received_at_us = env_->NowMicros();
  r.qos = static_cast<uint8_t>(m.qos);
  r.content_type.assign(m.content_type);
  r.properties.assign(m.user_properties.begin(), m.user_properties.end());

  Verdict v = Triage(m.topic, m.payload, m.user_property_count, m.user_property_bytes, pl.config(), pl.router(),
                     &json_);
  if (v.kind == Verdict::Kind::kDrop) {
    unmatched_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (v.kind == Verdict::Kind::kDeadLetter) {
    if (v.reason == DeadLetterReason::kPropertiesTooLarge) {
      r.properties.clear();  // they are what is too large; the payload is kept
      r.properties.emplace_back("edgesync.original_properties", std::to_string(m.user_property_count));
    }
    // Kept, but cut to mqtt.max_payload whatever the reason (an invalid
    // topic is found before the size): one oversized event must not block a
    // batch or Kafka, nor be held twice here.
    const size_t max_payload = static_cast<size_t>(pl.config().mqtt_max_payload);
    if (m.payload.size() > max_payload) {
      r.properties.emplace_back("edgesync.original_size", std::to_string(m.payload.size()));
      r.payload.assign(m.payload.substr(0, CardSafeCut(m.payload, max_payload)));
    } else {
      r.payload.assign(m.payload);
    }
    DeadLetter(pl, r, v.reason, v.stream ? pl.config().streams[*v.stream].name : "", "");
    return;
  }
  RunChain(pl, *v.stream, r, m.payload);
}

void Agent::RunChain(const Pipeline& pl, size_t stream, Record& r, std::string_view payload) {
  const std::vector<std::shared_ptr<const Plugin>>& chain = pl.chain(stream);
  if (chain.empty()) {
    r.payload.assign(payload);
    AcceptDurably(stream, r);
    return;
  }
  const bool json = pl.config().streams[stream].json;
  Event e;
  e.topic = r.topic;
  e.topic_text = &r.topic;
  e.content_type = &r.content_type;
  e.received_at_us = r.received_at_us;
  e.properties = &r.properties;
  e.route = pl.DefaultRoute(stream);
  if (json) {
    e.json = &json_;  // Triage parsed the payload into it
  } else {
    r.payload.assign(payload);
    e.raw = &r.payload;
  }
  for (const std::shared_ptr<const Plugin>& plugin : chain) {
    const Action a = plugin->Process(e);
    if (a == Action::kKeep) continue;
    if (a == Action::kDrop) {
      filtered_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    // Dead letter: the event as the plugin found it, with its reason.
    if (json) json_.Serialize(&r.payload);
    DeadLetter(pl, r, DeadLetterReason::kPluginError, pl.config().streams[stream].name, e.error);
    return;
  }
  if (json) json_.Serialize(&r.payload);  // the original text when no plugin changed it
  std::optional<size_t> lane = pl.LaneOf(e.route);
  if (!lane) {
    DeadLetter(pl, r, DeadLetterReason::kUnknownRoute, pl.config().streams[stream].name,
               "no lane for stream \"" + e.route.stream + "\", Kafka topic \"" + e.route.kafka_topic +
                   "\", priority " + (e.route.priority ? PriorityName(*e.route.priority) : "(the stream's)") +
                   ": route only to configured streams, and to Kafka topics and priorities a plugin declares");
    return;
  }
  if (!e.route.key.empty()) r.properties.emplace_back("edgesync.key", e.route.key);
  AcceptDurably(*lane, r);
}

void Agent::DeadLetter(const Pipeline& pl, Record& r, DeadLetterReason reason, const std::string& stream,
                       const std::string& error) {
  dead_letters_[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
  r.properties.emplace_back("edgesync.reason", DeadLetterReasonName(reason));
  if (!stream.empty()) r.properties.emplace_back("edgesync.stream", stream);
  if (!error.empty()) r.properties.emplace_back("edgesync.error", error);
  // The every_stream plugins see dead letters too, as plain text: card data
  // must not leave through the dead-letter stream either (nor through the
  // log: what it says below is what they left).
  Event e;
  e.topic = r.topic;
  e.topic_text = &r.topic;
  e.content_type = &r.content_type;
  e.received_at_us = r.received_at_us;
  e.properties = &r.properties;
  e.raw = &r.payload;
  e.route.stream = kDeadLetterStream;
  for (const std::shared_ptr<const Plugin>& plugin : pl.chain(pl.dead_letter_lane())) {
    if (plugin->Process(e) == Action::kDrop) {
      filtered_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  if (spdlog::should_log(spdlog::level::debug)) {
    std::string_view why;
    for (const auto& [name, value] : r.properties) {
      if (name == "edgesync.error") why = value;
    }
    spdlog::debug("mqtt: {} on topic {}: to the dead-letter stream{}{}", DeadLetterReasonName(reason), r.topic,
                  why.empty() ? "" : ": ", why);
  }
  AcceptDurably(dead_letter_stream_, r);
}

Status Agent::Reload(const Config& config) {
  if (!SameButPlugins(config_, config)) {
    return Status::InvalidArgument(
        "the new configuration changes more than plugins and chains; restart edgesync to apply it");
  }
  Result<std::shared_ptr<const Pipeline>> next = Pipeline::Build(config);
  if (!next.ok()) return next.status();
  if ((*next)->lanes() != pipeline_lanes_) {
    return Status::InvalidArgument(
        "the new chains route to Kafka topics or priorities the running ones do not (new lanes); restart "
        "edgesync to apply them");
  }
  std::lock_guard<std::mutex> lock(reload_mu_);
  pending_ = std::move(next).value();
  reload_pending_.store(true, std::memory_order_release);
  return Status::OK();
}

void Agent::AcceptDurably(size_t stream, const Record& r) {
  Status st = sealer_->Accept(stream, r);
  if (st.ok()) {
    lane_accepted_[stream].fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Backpressure: hold this message (and with it the connection's reading)
  // until the journal takes it. The broker queues the rest meanwhile; if the
  // connection times out, the persistent session delivers again.
  backpressure_ = true;
  backpressure_events_.fetch_add(1, std::memory_order_relaxed);
  spdlog::error("journal: cannot take events ({}); holding the broker's acknowledgement and "
                "reading nothing more until it can", st.ToString());
  Backoff backoff(100'000, 5'000'000, env_);
  for (int attempt = 1;; ++attempt) {
    if (shutting_down_) {
      // Returning would acknowledge an event that is not durable. Dying
      // without the ack is safe: the broker delivers it again to the next run.
      spdlog::critical("journal still failing at shutdown; exiting without acknowledging");
      std::_Exit(3);
    }
    env_->SleepForMicros(backoff.NextMicros());
    ingest_progress_.Advance(env_->MonotonicMicros());  // waiting for the journal is not wedged
    st = sealer_->Accept(stream, r);
    if (st.ok()) break;
    if (attempt % 50 == 0) spdlog::error("journal: still cannot take events: {}", st.ToString());
  }
  backpressure_ = false;
  lane_accepted_[stream].fetch_add(1, std::memory_order_relaxed);
  spdlog::info("journal: taking events again");
}

Status Agent::Shutdown(bool restarting) {
  if (!started_) return Status::OK();
  started_ = false;
  restarting_ = restarting;
  shutting_down_ = true;
  spdlog::info("{}: stopping intake", restarting ? "restarting the pipeline" : "shutting down");
  sealer_->StopWaitingForSpace();
  ingest_->Stop();
  if (config_.heartbeat_interval > 0) EmitHealth("stopping");  // sealed and sent with the rest below
  Status sealed = sealer_->Stop();
  if (!sealed.ok()) spdlog::error("sealing at shutdown: {}", sealed.ToString());
  Status up = uploader_->Stop(static_cast<int64_t>((restarting ? std::min(config_.shutdown_timeout, 2.0) : config_.shutdown_timeout) * 1e6));
  // The monitor (watchdog pings, status answers) runs until here: uploading
  // the rest may take agent.shutdown_timeout.
  const uint64_t one = 1;
  if (::write(monitor_stop_fd_, &one, sizeof(one)) < 0) spdlog::error("eventfd: {}", std::strerror(errno));
  monitor_thread_.join();
  ::close(monitor_stop_fd_);
  monitor_stop_fd_ = -1;
  spdlog::info("shut down: {}", StatsLine());
  if (!sealed.ok()) return sealed;
  return up;
}

AgentStats Agent::stats() const {
  AgentStats s;
  s.ingest = ingest_->stats();
  s.sealer = sealer_->stats();
  s.uploader = uploader_->stats();
  for (int i = 0; i < static_cast<int>(DeadLetterReason::kCount); ++i) s.dead_letters[i] = dead_letters_[i].load();
  s.unmatched_dropped = unmatched_dropped_.load();
  s.filtered = filtered_.load();
  s.reloads = reloads_.load();
  s.backpressure_events = backpressure_events_.load();
  s.backpressure = backpressure_.load();
  Result<StoreCounts> c = store_->Counts();
  if (c.ok()) s.buffered = *c;
  Result<std::vector<Gap>> gaps = store_->Gaps();
  if (gaps.ok()) {
    s.gaps = gaps->size();
    for (const Gap& g : *gaps) s.gap_events += g.events;
  }
  // Per stream, each lane folded into its stream.
  s.streams.resize(stream_names_.size());
  for (size_t i = 0; i < stream_names_.size(); ++i) s.streams[i].name = stream_names_[i];
  Result<std::map<std::string, StoreCounts>> by_stream = store_->CountsByStream();
  for (size_t lane = 0; lane < lane_stream_.size(); ++lane) {
    StreamStats& st = s.streams[lane_stream_[lane]];
    const std::string& name = pipeline_lanes_[lane].name;
    st.accepted += lane_accepted_[lane].load(std::memory_order_relaxed);
    auto up = s.uploader.streams.find(name);
    if (up != s.uploader.streams.end()) {
      st.uploaded_events += up->second.events;
      st.last_upload_us = std::max(st.last_upload_us, up->second.last_us);
    }
    if (by_stream.ok()) {
      auto b = by_stream->find(name);
      if (b != by_stream->end()) AddCounts(b->second, &st.buffered);
    }
    if (gaps.ok()) {
      for (const Gap& g : *gaps) {
        if (g.stream != name) continue;
        ++st.gaps;
        st.gap_events += g.events;
      }
    }
  }
  std::lock_guard<std::mutex> lock(rates_mu_);
  if (rates_.size() >= 2) {
    const RateSample& a = rates_.front();
    const RateSample& b = rates_.back();
    const double secs = static_cast<double>(b.at_us - a.at_us) / 1e6;
    for (size_t i = 0; i < s.streams.size() && secs > 0; ++i) {
      s.streams[i].in_per_s = static_cast<double>(b.in[i] - a.in[i]) / secs;
      s.streams[i].out_per_s = static_cast<double>(b.out[i] - a.out[i]) / secs;
    }
  }
  s.wedged = Wedged(wedged_after_us_);
  std::lock_guard<std::mutex> fleet_lock(fleet_mu_);
  s.fleet = fleet_;
  return s;
}

void Agent::SetFleetStatus(const FleetStatus& f) {
  std::lock_guard<std::mutex> lock(fleet_mu_);
  fleet_ = f;
}

static std::string DeadLetterCounts(const AgentStats& s) {
  std::string out;
  for (int i = 0; i < static_cast<int>(DeadLetterReason::kCount); ++i) {
    if (s.dead_letters[i] > 0) {
      out += std::string(" dead_letter.") + DeadLetterReasonName(static_cast<DeadLetterReason>(i)) +
             "=" + std::to_string(s.dead_letters[i]);
    }
  }
  return out;
}

static std::string BlockedTopics(const AgentStats& s) {
  std::string out;
  for (const BlockedTopic& b : s.uploader.blocked) out += (out.empty() ? " blocked=" : ",") + b.topic;
  return out;
}

static std::string FormatStats(const AgentStats& s) {
  return "received=" + std::to_string(s.ingest.received) +
         " accepted=" + std::to_string(s.sealer.accepted) +
         " sealed=" + std::to_string(s.sealer.sealed_events) +
         " uploaded=" + std::to_string(s.uploader.delivered_events) +
         " buffered_events=" + std::to_string(s.buffered.events) +
         " buffered_batches=" + std::to_string(s.buffered.batches) +
         " mqtt=" + (s.ingest.connected ? "up" : "down") +
         " kafka=" + KafkaStateName(s.uploader.kafka) + BlockedTopics(s) + DeadLetterCounts(s) +
         (s.unmatched_dropped ? " unmatched_dropped=" + std::to_string(s.unmatched_dropped) : "") +
         (s.filtered ? " filtered=" + std::to_string(s.filtered) : "") +
         (s.backpressure_events ? " backpressure_events=" + std::to_string(s.backpressure_events) : "") +
         (s.sealer.unreadable_segments
              ? " unreadable_journal_segments=" + std::to_string(s.sealer.unreadable_segments)
              : "") +
         (s.backpressure ? " BACKPRESSURE" : "");
}

std::string Agent::StatsLine() const { return FormatStats(stats()); }

}  // namespace edgesync

#include "agent/agent.h"

#include <spdlog/spdlog.h>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <algorithm>

#include "agent/health.h"
#include "base/resident.h"
#include "base/systemd.h"

namespace edgesync {

Agent::Agent(const Config& config, Env* env, std::shared_ptr<spdlog::logger> logger)
    : config_(config), env_(env), log_(logger != nullptr ? std::move(logger) : spdlog::default_logger()) {}

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

// One line per plugin that says how it was loaded (an external plugin's
// file and the plugin ABI version chosen).
void LogPluginLoads(const Config& config, spdlog::logger& log) {
  for (const PluginConfig& p : config.plugins) {
    if (p.plugin == nullptr) continue;
    const std::string info = p.plugin->LoadInfo();
    if (!info.empty()) log.info("plugin {}: {}", p.name, info);
  }
}

}  // namespace

Agent::~Agent() {
  if (started_) (void)Shutdown();
  // Members go in reverse order of declaration, but the sealer must go
  // before the uploader: its last seal (when a Start failed, Shutdown did
  // not run) notifies the uploader. What calls into the intake goes first.
  monitor_.reset();
  ingest_.reset();
  spool_.reset();
  intake_.reset();
  sealer_.reset();
  uploader_.reset();
}

Result<std::unique_ptr<Agent>> Agent::Open(const Config& config, Env* env,
                                           std::shared_ptr<spdlog::logger> logger) {
  std::unique_ptr<Agent> a(new Agent(config, env, std::move(logger)));
  spdlog::logger& log = *a->log_;
  LogPluginLoads(config, log);
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
    log.warn("device key: made a new signing key {} at {}; enrol it with the central service "
                 "(copy {} into edgesync-unpack's --device-keys directory), or its batches are refused",
                 crypto::Hex(a->device_key_->key_id()), key_path, EnrolmentPath(key_path));
  }

  StoreOptions sto;
  static_cast<StoreLimits&>(sto) = config.buffer;
  sto.device_id = config.device_id;
  sto.signer = a->device_key_;
  sto.logger = a->log_;
  // After a clean stop the full check waits until intake runs (Start).
  sto.defer_check = true;
  Result<std::shared_ptr<const Pipeline>> pipeline = Pipeline::Build(config);
  if (!pipeline.ok()) return pipeline.status();
  a->pipeline_lanes_ = (*pipeline)->lanes();
  const std::vector<StreamSpec>& specs = a->pipeline_lanes_;
  a->agent_stream_ = (*pipeline)->agent_lane();
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
  const int64_t watchdog_us = systemd::WatchdogMicros();
  a->wedged_after_us_ = watchdog_us > 0 ? watchdog_us / 2 : 30'000'000;
  StoreReplacement replaced;
  Result<std::unique_ptr<Store>> store =
      OpenOrReplaceStore(env, dir + "/store.db", sto, specs, &replaced);
  // `edgesync status` reads the store while no agent answers its socket,
  // as while this one starts: wait for it (a few seconds at most) rather
  // than fail the start.
  for (int waited_ms = 0; !store.ok() && store.status().code() == Status::Code::kUnavailable && waited_ms < 10'000;
       waited_ms += 100) {
    env->SleepForMicros(100'000);
    store = OpenOrReplaceStore(env, dir + "/store.db", sto, specs, &replaced);
  }
  if (!store.ok()) return store.status();
  a->store_ = std::move(store).value();
  if (replaced.replaced) {
    log.error("store: {} was corrupt ({}); moved it aside to {} and started a new one",
                  dir + "/store.db", replaced.reason, replaced.moved_to);
    for (const Gap& g : replaced.gaps) {
      log.error("store: stream {}: batches {}..{} may be lost ({} events could still be "
                    "counted); recorded as a store-corrupt gap and reported to Kafka",
                    g.stream, g.first_seq, g.last_seq, g.events);
    }
  }

  SealerOptions so;
  static_cast<BatchLimits&>(so) = config.batch;
  so.device_id = config.device_id;
  so.journal_dir = dir + "/journal";
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
    log.info("encryption: batches sealed for key {}; journal encrypted with {}",
                 crypto::Hex(a->recipient_->key_id), journal_key);
  }
  EDGESYNC_RETURN_IF_ERROR(
      LoadJournalKey(env, journal_key, !config.encryption_public_key.empty(), so.journal_dir, &so));
  so.logger = a->log_;
  const std::optional<crypto::Key> spool_key = so.journal_key;  // the broker plugin's spool uses it too
  Result<std::unique_ptr<Sealer>> sealer = Sealer::Open(env, a->store_.get(), so, specs);
  if (!sealer.ok()) return sealer.status();
  a->sealer_ = std::move(sealer).value();

  UploaderOptions uo;
  static_cast<UploadLimits&>(uo) = config.upload;
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
  uo.logger = a->log_;
  Result<std::unique_ptr<Uploader>> up = Uploader::Create(a->store_.get(), env, uo);
  if (!up.ok()) return up.status();
  a->uploader_ = std::move(up).value();
  a->sealer_->SetOnSealed([u = a->uploader_.get()] { u->Notify(); });

  IngestOptions io;
  static_cast<MqttSettings&>(io) = config.mqtt;
  if (!config.mqtt.password_file.empty()) {
    Result<std::string> pw = ReadPasswordFile(config.mqtt.password_file, "mqtt.password_file", env);
    if (!pw.ok()) return pw.status();
    io.password = std::move(pw).value();
  }
  io.max_user_properties = kMaxUserProperties;
  io.max_user_property_bytes = static_cast<size_t>(config.mqtt_max_payload);
  std::vector<std::string> filters_wanted = (*pipeline)->router().AllFilters();
  filters_wanted.insert(filters_wanted.end(), config.mqtt_subscribe.begin(), config.mqtt_subscribe.end());
  if (!config.fleet_mqtt_topic.empty()) filters_wanted.push_back(config.fleet_mqtt_topic);
  io.filters = MinimalSubscriptions(filters_wanted);
  io.env = env;
  io.logger = a->log_;
  IntakeOptions ito;
  ito.env = env;
  ito.sealer = a->sealer_.get();
  ito.logger = a->log_;
  ito.status_topic = config.mqtt.status_topic;
  ito.fleet_topic = config.fleet_mqtt_topic;
  a->intake_ = std::make_unique<Intake>(std::move(ito), std::move(pipeline).value());
  if (config.mqtt_mode == "broker-plugin") {
    // No MQTT client: the broker plugin spools what the streams claim.
    SpoolReaderOptions sro;
    sro.env = env;
    sro.dir = SpoolDir(dir);
    sro.key = spool_key;
    sro.intake = a->intake_.get();
    sro.sealer = a->sealer_.get();
    sro.logger = a->log_;
    a->spool_ = std::make_unique<SpoolReader>(std::move(sro));
  } else {
    Result<std::unique_ptr<Ingest>> in =
        Ingest::Create(io, [intake = a->intake_.get()](const IngestMessage& m) { intake->OnMessage(m); });
    if (!in.ok()) return in.status();
    a->ingest_ = std::move(in).value();
  }

  MonitorOptions mo;
  mo.env = env;
  mo.logger = a->log_;
  mo.heartbeat_us = static_cast<int64_t>(config.heartbeat_interval * 1e6);
  mo.metrics_textfile = config.metrics_textfile;
  mo.metrics_us = static_cast<int64_t>(config.metrics_interval * 1e6);
  mo.status_socket = a->status_socket_.get();
  Agent* self = a.get();
  MonitorHooks hooks;
  hooks.counts = [self](std::vector<uint64_t>* accepted, std::vector<uint64_t>* uploaded) {
    self->StreamCounts(accepted, uploaded);
  };
  hooks.wedged = [self] { return self->Wedged(self->wedged_after_us_); };
  hooks.systemd_status = [self](const std::string& wedged) { return self->SystemdStatus(wedged); };
  hooks.emit_health = [self] {
    std::lock_guard<std::mutex> health_lock(self->health_mu_);
    if (!self->shutting_down_) self->EmitHealth("running");
  };
  hooks.health_record = [self] { return self->HealthRecord("running"); };
  hooks.metrics_text = [self] { return self->MetricsText(); };
  a->monitor_ = std::make_unique<Monitor>(std::move(mo), std::move(hooks));
  return a;
}

Status Agent::Start() {
  // spdlog's registry, a static in the (uninstrumented) shared library, is
  // built on first use. Built here, before the threads below share it, its
  // construction is ordered before them for ThreadSanitizer too, which cannot
  // see the library's own once-only guard.
  (void)spdlog::default_logger_raw();
  started_us_ = env_->MonotonicMicros();
  sealer_->Start();
  uploader_->Start();
  uploader_->Notify();  // whatever the store held from before
  if (Status st = ingest_ ? ingest_->Start() : spool_->Start(); !st.ok()) {
    // Stopped in the order Shutdown stops them: what the sealer seals on
    // its way out stays in the store for the next start.
    (void)sealer_->Stop();
    (void)uploader_->Stop(0);
    return st;
  }
  started_ = true;
  // The check Open deferred (a clean stop before): now that events are
  // journaled again. It holds the store's lock while it reads the file, so
  // commits and uploads wait for it; intake does not. While it runs,
  // stats() shows the store's figures read last: read them first (without
  // them, status would show an empty store until the check ends).
  if (store_->check_pending()) (void)stats();
  store_->StartCheck();
  if (config_.heartbeat_interval > 0) EmitHealth("starting");
  return monitor_->Start();
}

IngestStats Agent::IngestNow() const {
  if (ingest_) return ingest_->stats();
  // broker-plugin mode: "connected" means the spool can be read.
  const SpoolReaderStats sp = spool_->stats();
  IngestStats in;
  in.received = sp.received;
  in.connected = sp.ok;
  in.subscribed = sp.ok;
  in.spool_unreadable_segments = sp.unreadable;
  in.spool_malformed_records = sp.malformed;
  return in;
}

std::string Agent::SystemdStatus(const std::string& wedged) const {
  const IngestStats in = IngestNow();
  const UploaderStats up = uploader_->stats();
  if (!wedged.empty()) return "wedged: " + wedged;
  if (shutting_down_) {
    return std::string(restarting_ ? "restarting the pipeline" : "stopping") +
           ": sealing and uploading what is open, " + std::to_string(up.delivered_events) + " uploaded";
  }
  return std::string("mqtt ") + (in.connected ? "connected" : "disconnected") + ", kafka " +
         KafkaStateName(up.kafka) + ", " + std::to_string(in.received) + " received, " +
         std::to_string(up.delivered_events) + " uploaded" + (intake_->stats().backpressure ? ", BACKPRESSURE" : "");
}

void Agent::StreamCounts(std::vector<uint64_t>* in, std::vector<uint64_t>* out) const {
  in->assign(stream_names_.size(), 0);
  out->assign(stream_names_.size(), 0);
  const IntakeStats intake = intake_->stats();
  const UploaderStats up = uploader_->stats();
  for (size_t lane = 0; lane < lane_stream_.size(); ++lane) {
    (*in)[lane_stream_[lane]] += intake.accepted[lane];
    auto it = up.streams.find(pipeline_lanes_[lane].name);
    if (it != up.streams.end()) (*out)[lane_stream_[lane]] += it->second.events;
  }
}

std::string Agent::Wedged(int64_t limit_us) const {
  const int64_t now = env_->MonotonicMicros();
  const std::pair<const char*, int64_t> stages[] = {
      {"ingest", intake_->progress().StuckMicros(now)},
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

std::string Agent::MetricsText() const {
  HealthContext c;
  c.device_id = config_.device_id;
  c.version = EDGESYNC_VERSION;
  c.now_us = env_->NowMicros();
  c.uptime_us = env_->MonotonicMicros() - started_us_;
  return edgesync::MetricsText(stats(), c);
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
  if (!st.ok()) log_->warn("health record not journaled: {}", st.ToString());
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
  LogPluginLoads(config, *log_);
  intake_->Reload(std::move(next).value());
  return Status::OK();
}

Status Agent::Shutdown(bool restarting) {
  if (!started_) return Status::OK();
  started_ = false;
  restarting_ = restarting;
  log_->info("{}: stopping intake", restarting ? "restarting the pipeline" : "shutting down");
  // A check of the store still running gives up (the next start runs it)
  // rather than hold the sealer's last commits.
  store_->StopCheck();
  intake_->StopWaiting();
  // First, so that a health record the monitor is journaling (under
  // health_mu_) cannot wait for space while we wait for the lock.
  sealer_->StopWaitingForSpace();
  {
    // After this no "running" health record is journaled (the monitor's
    // runs under the same lock): the last is "stopping", sealed below.
    std::lock_guard<std::mutex> lock(health_mu_);
    shutting_down_ = true;
  }
  if (ingest_) ingest_->Stop();
  if (spool_) spool_->Stop();
  if (config_.heartbeat_interval > 0) EmitHealth("stopping");  // sealed and sent with the rest below
  Status sealed = sealer_->Stop();
  if (!sealed.ok()) log_->error("sealing at shutdown: {}", sealed.ToString());
  Status up = uploader_->Stop(static_cast<int64_t>((restarting ? std::min(config_.shutdown_timeout, 2.0) : config_.shutdown_timeout) * 1e6));
  // The monitor (watchdog pings, status answers) runs until here: uploading
  // the rest may take agent.shutdown_timeout.
  monitor_->Stop();
  log_->info("shut down: {}", StatsLine());
  if (!sealed.ok()) return sealed;
  return up;
}

AgentStats Agent::stats() const {
  AgentStats s;
  s.ingest = IngestNow();
  s.sealer = sealer_->stats();
  s.uploader = uploader_->stats();
  s.intake = intake_->stats();
  const IntakeStats& intake = s.intake;
  // Never waits for the store's deferred check (it holds the store for its
  // whole run: the main thread would not see a SIGTERM meanwhile): while it
  // runs, the figures read last stand in (none before the first read).
  Result<StoreCounts> c = store_->Counts(CheckWait::kDontWait);
  Result<std::vector<Gap>> gaps = store_->Gaps(CheckWait::kDontWait);
  Result<std::map<std::string, StoreCounts>> by_stream = store_->CountsByStream(CheckWait::kDontWait);
  {
    std::lock_guard<std::mutex> lock(store_figures_mu_);
    StoreFigures& last = store_figures_;
    if (c.ok()) last.counts = *c;
    else if (last.counts) c = *last.counts;
    if (gaps.ok()) last.gaps = *gaps;
    else if (last.gaps) gaps = *last.gaps;
    if (by_stream.ok()) last.by_stream = *by_stream;
    else if (last.by_stream) by_stream = *last.by_stream;
  }
  if (c.ok()) s.buffered = *c;
  if (gaps.ok()) {
    s.gaps = gaps->size();
    for (const Gap& g : *gaps) s.gap_events += g.events;
  }
  // Per stream, each lane folded into its stream.
  s.streams.resize(stream_names_.size());
  for (size_t i = 0; i < stream_names_.size(); ++i) s.streams[i].name = stream_names_[i];
  for (size_t lane = 0; lane < lane_stream_.size(); ++lane) {
    StreamStats& st = s.streams[lane_stream_[lane]];
    const std::string& name = pipeline_lanes_[lane].name;
    st.accepted += intake.accepted[lane];
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
  std::vector<double> in_per_s, out_per_s;
  monitor_->Rates(&in_per_s, &out_per_s);
  for (size_t i = 0; i < s.streams.size() && i < in_per_s.size(); ++i) {
    s.streams[i].in_per_s = in_per_s[i];
    s.streams[i].out_per_s = out_per_s[i];
  }
  s.wedged = Wedged(wedged_after_us_);
  std::lock_guard<std::mutex> fleet_lock(fleet_mu_);
  s.fleet = fleet_;
  return s;
}

void Agent::ReleaseMemoryWhenQuiet() {
  // Quiet this long: the last batch closes max_age after its last event,
  // then it is sealed and uploaded, and each of those moves the counters.
  constexpr int64_t kQuietUs = 2'000'000;
  // The code pages wait longer: events a few seconds apart should not
  // unmap the code that takes them and map it again each time.
  constexpr int64_t kQuietPagesUs = 5'000'000;
  const SealerStats sealed = sealer_->stats();
  const uint64_t moved = sealed.accepted + sealed.sealed_batches + uploader_->stats().delivered_batches;
  const int64_t now = env_->MonotonicMicros();
  if (moved != last_moved_ || last_move_us_ == 0) {
    last_moved_ = moved;
    last_move_us_ = now;
    released_ = pages_released_ = false;
  }
  // The check reads every page through SQLite's cache and holds the store
  // meanwhile: release after it, not behind it (this is the main thread).
  const bool checking = store_->check_pending() || store_->checking();
  if (!released_ && now - last_move_us_ >= kQuietUs && !checking) {
    released_ = true;
    store_->ReleaseMemory();
#if defined(__GLIBC__)
    // Free chunks stay in malloc's arenas (one per thread that allocated)
    // until the top of an arena is free; this hands every free page back.
    // Some milliseconds, once per quiet spell.
    malloc_trim(0);
#endif
  }
  // The start's code (the configuration's parsing, OpenSSL's and the
  // libraries' initialisation, the store's open) runs once: its pages go at
  // the first call, about a second after the start, even when events flow
  // from the first moment (a backlog held by the broker). A burst's go once
  // it is over.
  const bool after_start = !released_start_pages_;
  const bool quiet = !pages_released_ && now - last_move_us_ >= kQuietPagesUs && !checking;
  if (!after_start && !quiet) return;
  released_start_pages_ = true;
  if (quiet) pages_released_ = true;
  // Mapped again from the page cache when needed (base/resident.h).
  const int64_t began = env_->MonotonicMicros();
  Result<ReleasedPages> pages = ReleaseFilePages();
  if (pages.ok()) {
    log_->debug("memory: unmapped {} KiB of code and constants ({} mappings looked at, {} µs) {}", pages->kib,
                pages->mappings, env_->MonotonicMicros() - began, quiet ? "after a quiet spell" : "after the start");
  } else {
    log_->debug("memory: code pages not released: {}", pages.status().ToString());
  }
}

void Agent::SetFleetStatus(const FleetStatus& f) {
  std::lock_guard<std::mutex> lock(fleet_mu_);
  fleet_ = f;
}

static std::string DeadLetterCounts(const AgentStats& s) {
  std::string out;
  for (int i = 0; i < static_cast<int>(DeadLetterReason::kCount); ++i) {
    if (s.intake.dead_letters[i] > 0) {
      out += std::string(" dead_letter.") + DeadLetterReasonName(static_cast<DeadLetterReason>(i)) +
             "=" + std::to_string(s.intake.dead_letters[i]);
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
         (s.intake.unmatched_dropped ? " unmatched_dropped=" + std::to_string(s.intake.unmatched_dropped) : "") +
         (s.intake.filtered ? " filtered=" + std::to_string(s.intake.filtered) : "") +
         (s.intake.backpressure_events ? " backpressure_events=" + std::to_string(s.intake.backpressure_events) : "") +
         (s.sealer.unreadable_segments
              ? " unreadable_journal_segments=" + std::to_string(s.sealer.unreadable_segments)
              : "") +
         (s.ingest.spool_unreadable_segments
              ? " unreadable_spool_segments=" + std::to_string(s.ingest.spool_unreadable_segments)
              : "") +
         (s.ingest.spool_malformed_records
              ? " malformed_spool_records=" + std::to_string(s.ingest.spool_malformed_records)
              : "") +
         (s.intake.backpressure ? " BACKPRESSURE" : "");
}

std::string Agent::StatsLine() const { return FormatStats(stats()); }

}  // namespace edgesync

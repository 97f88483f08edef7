#include "agent/fleet.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>


namespace edgesync {
namespace {

// Messages go into a key=value line and a JSON string: one line.
std::string OneLine(std::string s) {
  for (size_t at; (at = s.find('\n')) != std::string::npos;) s.replace(at, 1, "; ");
  return s;
}

void RemoveTree(Env* env, const std::string& path, spdlog::logger& log) {
  Status st = fleet::RemoveTree(env, path);
  if (!st.ok()) log.warn("fleet: cannot remove {}: {}", path, st.ToString());
}

bool SameFleetSettings(const Config& a, const Config& b) {
  return a.state_dir == b.state_dir && a.fleet_public_keys == b.fleet_public_keys &&
         a.fleet_drop_dir == b.fleet_drop_dir && a.fleet_mqtt_topic == b.fleet_mqtt_topic &&
         a.fleet_probation == b.fleet_probation;
}

}  // namespace

Rollout::Rollout(std::string device_path, Config device, Env* env, std::shared_ptr<spdlog::logger> logger,
                 fleet::TrustedKeys keys)
    : device_path_(std::move(device_path)), device_(std::move(device)), env_(env),
      log_(logger != nullptr ? std::move(logger) : spdlog::default_logger()), keys_(std::move(keys)),
      dir_(device_.state_dir + "/fleet") {}

Result<std::unique_ptr<Rollout>> Rollout::Open(const std::string& device_path, const Config& device, Env* env,
                                               std::shared_ptr<spdlog::logger> logger) {
  Result<fleet::TrustedKeys> keys = fleet::TrustedKeys::Load(env, device.fleet_public_keys);
  if (!keys.ok()) return Status::InvalidArgument("fleet.public_keys: " + keys.status().message());
  std::unique_ptr<Rollout> r(new Rollout(device_path, device, env, std::move(logger), std::move(keys).value()));
  EDGESYNC_RETURN_IF_ERROR(env->CreateDirs(r->dir_ + "/bundles"));
  if (env->Exists(r->dir_ + "/state")) {
    Result<std::string> text = env->ReadFile(r->dir_ + "/state", kMaxKeyFileBytes);
    if (!text.ok()) return text.status();
    r->state_ = ParseFleetState(*text);
  }
  r->state_.status.enabled = true;
  if (r->state_.status.state == "checking") {
    // Stopped while unpacking or checking a bundle: it is refused for good
    // (its version was used up before), and what ran before runs on.
    const uint64_t bundle = r->state_.status.bundle;
    RemoveTree(env, r->BundleDir(bundle), *r->log_);
    r->Refuse(bundle, "the last run",
              "the agent stopped while it unpacked or checked this bundle (a crash?); it is not tried again "
              "(sign a fixed configuration with a higher --version)");
  }
  if (r->state_.status.state == "probation") {
    // Stopped before the bundle proved itself: it is not trusted again.
    // RollBack loads what runs instead (the last good bundle or the device
    // file alone).
    r->RollBack("the agent stopped during probation (crash, kill or restart) before the bundle proved good");
    return r;
  }
  Result<Config> c = r->Load(r->state_.running);
  if (!c.ok()) {
    // The running bundle was good, but no longer loads with this device
    // file (changed since): the device file alone, and said why.
    r->log_->error("fleet: bundle {} does not load with {}: {}; running the device file alone", r->state_.running,
                  device_path, c.status().message());
    r->state_.status = FleetStatus{.enabled = true, .version = 0, .bundle = r->state_.running, .state = "rolled-back",
                             .reason = "it no longer loads with the device file: " + OneLine(c.status().message()),
                             .at_us = env->NowMicros()};
    r->state_.running = r->state_.good = 0;
    r->state_.running_digest = r->state_.good_digest = "";
    r->Save();
    c = device;
  }
  r->config_ = std::move(c).value();
  r->state_.status.version = r->state_.running;
  return r;
}

FleetStatus Rollout::status() const { return state_.status; }

void Rollout::Offer(std::string_view bytes) {
  std::lock_guard<std::mutex> lock(offered_mu_);
  if (offered_.size() >= 4) offered_.pop_front();  // the newest count; a flood cannot grow memory
  offered_.emplace_back(bytes);
}

std::string Rollout::BundleDir(uint64_t version) const { return dir_ + "/bundles/" + std::to_string(version); }

Result<Config> Rollout::Load(uint64_t version) const {
  if (version == 0) return device_;
  return LoadConfig(device_path_, BundleDir(version) + "/edgesync.toml", env_);
}

Result<Config> Rollout::Reload() {
  Result<Config> device = LoadConfig(device_path_, "", env_);
  if (!device.ok()) return device.status();
  if (!SameFleetSettings(*device, device_)) {
    return Status::InvalidArgument("agent.state_dir and [fleet] take effect at the next start: restart edgesync to apply them");
  }
  device_ = std::move(device).value();
  Result<Config> c = Load(state_.running);
  if (c.ok()) config_ = *c;
  return c;
}

std::optional<Config> Rollout::Tick(const std::function<AgentStats()>& stats, int64_t now_mono_us) {
  if (state_.status.state == "probation") {
    if (probation_end_us_ == 0) return std::nullopt;  // not switched yet
    const bool ended = now_mono_us >= probation_end_us_;
    const std::string why = Judge(stats(), ended);
    if (!why.empty()) return RollBack(why);
    if (!ended) return std::nullopt;
    probation_end_us_ = 0;
    state_.good = state_.running;
    state_.good_digest = state_.running_digest;
    state_.status.state = "applied";
    state_.status.at_us = env_->NowMicros();
    Save();
    Prune();
    log_->info("fleet: bundle {} passed probation: it is the last good bundle now", state_.running);
    return std::nullopt;
  }
  // One bundle at a time: what the MQTT topic brought, then the drop
  // directory's files in name order.
  for (;;) {
    std::string bytes, from;
    {
      std::lock_guard<std::mutex> lock(offered_mu_);
      if (!offered_.empty()) {
        bytes = std::move(offered_.front());
        offered_.pop_front();
        from = "topic " + device_.fleet_mqtt_topic;
      }
    }
    if (from.empty() && !device_.fleet_drop_dir.empty() && !NextDropped(&bytes, &from)) return std::nullopt;
    if (from.empty()) return std::nullopt;
    if (std::optional<Config> c = Take(bytes, from, stats())) return c;
  }
}

bool Rollout::NextDropped(std::string* bytes, std::string* from) {
  Result<std::vector<std::string>> names = env_->ListDir(device_.fleet_drop_dir);
  if (!names.ok()) {
    if (!drop_dir_failing_) log_->error("fleet: fleet.drop_dir: {}", names.status().ToString());
    drop_dir_failing_ = true;
    return false;
  }
  drop_dir_failing_ = false;
  for (const std::string& n : *names) {  // sorted
    if (!n.ends_with(".bundle")) continue;  // e.g. one still being written under another name
    if (set_aside_.count(n) != 0) continue;
    const std::string path = device_.fleet_drop_dir + "/" + n;
    // Only a regular file is a bundle: a link (to /dev/zero, to a FIFO), a
    // directory or a device is never opened, and neither is a file larger
    // than a bundle can be. ReadFile checks the same again on what it
    // opened, should the entry change in between.
    Result<Env::FileType> type = env_->TypeOf(path);
    if (!type.ok()) continue;  // gone since the listing
    Result<std::string> read = Status::InvalidArgument("");
    if (*type == Env::FileType::kRegular) read = env_->ReadFile(path, fleet::kMaxBundleBytes);
    if (!read.ok()) {
      const std::string what = *type == Env::FileType::kSymlink     ? "a symbolic link"
                               : *type == Env::FileType::kDirectory ? "a directory"
                               : *type == Env::FileType::kOther     ? "not a regular file (a FIFO, socket or device)"
                                                                    : read.status().message();
      SetAside(n, what);
      continue;
    }
    Status removed = env_->RemoveFile(path);
    if (!removed.ok()) {
      // Taken once; it stays, and is passed over from now on.
      SetAside(n, "cannot remove it after reading it (" + removed.ToString() + ")");
    }
    *bytes = std::move(read).value();
    *from = path;
    return true;
  }
  return false;
}

void Rollout::SetAside(const std::string& name, const std::string& why) {
  const std::string path = device_.fleet_drop_dir + "/" + name;
  const std::string aside = path + ".refused";
  Status moved = env_->Rename(path, aside);
  // Renamed, it no longer ends in .bundle; if it cannot be renamed, it is
  // passed over by name for as long as the agent runs. Either way the
  // channel moves on to the next bundle, and this is said once.
  set_aside_.insert(name);
  Refuse(0, path, why + ": not a bundle; " +
                      (moved.ok() ? "moved aside to " + aside
                                  : "passed over from now on (cannot move it aside: " + moved.ToString() + ")"));
}

std::optional<Config> Rollout::Take(const std::string& bytes, const std::string& from, const AgentStats& stats) {
  const std::string digest = fleet::Sha256Hex(bytes);
  if (digest == state_.running_digest || digest == state_.highest_digest || digest == last_refused_digest_) {
    // A retained bundle comes back at every (re)subscription.
    log_->debug("fleet: the bundle from {} was seen before; nothing to do", from);
    return std::nullopt;
  }
  Result<fleet::Bundle> b = fleet::VerifyBundle(bytes, keys_);
  if (!b.ok()) {
    last_refused_digest_ = digest;
    Refuse(0, from, b.status().message());
    return std::nullopt;
  }
  const uint64_t version = b->version;
  if (version > state_.highest && version - state_.highest > fleet::kMaxBundleVersionStep) {
    last_refused_digest_ = digest;
    Refuse(version, from,
           "version " + std::to_string(version) + " is more than " + std::to_string(fleet::kMaxBundleVersionStep) +
               " above " + std::to_string(state_.highest) +
               ", the newest tried: a version may not jump that far (sign it again with a version closer to it)");
    return std::nullopt;
  }
  if (version <= state_.highest) {
    last_refused_digest_ = digest;
    Refuse(version, from,
           "version " + std::to_string(version) + " is not newer than " + std::to_string(state_.highest) +
               ", the newest tried: bundles never go back (sign the configuration again with a higher --version)");
    return std::nullopt;
  }
  // From here on the bundle's version is used up, whatever happens: should
  // the agent die while it unpacks or checks it (a configuration built to
  // crash a parser), the next start finds it "checking" and refuses it
  // (Open), rather than take it again and die again.
  state_.highest = version;
  state_.highest_digest = digest;
  state_.status = FleetStatus{.enabled = true, .version = state_.running, .bundle = version, .state = "checking",
                              .reason = "", .at_us = env_->NowMicros()};
  Save();
  const std::string dir = BundleDir(version);
  RemoveTree(env_, dir, *log_);  // left by a crash
  Status unpacked = fleet::ExtractBundle(env_, *b, dir);
  if (!unpacked.ok()) {
    last_refused_digest_ = digest;
    Refuse(version, from, "cannot unpack it: " + unpacked.ToString());
    return std::nullopt;
  }
  // A bundle that sets agent.state_dir, [fleet] or another key only the
  // device file may set fails here (ParseConfig refuses it).
  Result<Config> c = LoadConfig(device_path_, dir + "/edgesync.toml", env_);
  if (!c.ok()) {
    RemoveTree(env_, dir, *log_);
    last_refused_digest_ = digest;  // signed by the fleet, and wrong: its version is used up
    Refuse(version, from, "its configuration fails check: " + OneLine(c.status().message()));
    return std::nullopt;
  }
  // What flowed before, for Judge. Streams gone from the new configuration
  // are not expected to flow.
  flowed_in_.clear();
  uploads_flowed_ = false;
  blocked_before_.clear();
  for (const StreamStats& st : stats.streams) {
    const bool kept = std::any_of(c->streams.begin(), c->streams.end(),
                                  [&](const StreamConfig& s) { return s.name == st.name; });
    if (kept && st.in_per_s > 0) flowed_in_.insert(st.name);
    if (st.out_per_s > 0) uploads_flowed_ = true;
  }
  for (const BlockedTopic& t : stats.uploader.blocked) blocked_before_.insert(t.topic);
  // On probation from here on: a stop before it ends brings back state_.good.
  state_.highest = state_.running = version;
  state_.highest_digest = state_.running_digest = digest;
  state_.status = FleetStatus{.enabled = true, .version = version, .bundle = version, .state = "probation",
                        .reason = "", .at_us = env_->NowMicros()};
  Save();
  probation_end_us_ = 0;  // starts when the agent runs it (Switched)
  log_->info("fleet: bundle {} from {} (key {}, {} files) is valid: applying it, on probation for {}s", version,
               from, b->key_id, b->files.size(), device_.fleet_probation);
  config_ = std::move(c).value();
  return config_;
}

std::optional<Config> Rollout::Switched(const Status& st, int64_t now_mono_us) {
  if (state_.status.state != "probation") return std::nullopt;  // a rollback, done
  if (!st.ok()) return RollBack("the agent could not start with it: " + st.message());
  probation_end_us_ = now_mono_us + static_cast<int64_t>(device_.fleet_probation * 1e6);
  return std::nullopt;
}

std::string Rollout::Judge(const AgentStats& s, bool ended) const {
  if (!s.wedged.empty()) return "a stage is wedged: " + s.wedged;
  for (const BlockedTopic& t : s.uploader.blocked) {
    if (blocked_before_.count(t.topic) == 0) return "Kafka topic " + t.topic + " refuses the agent: " + t.reason;
  }
  if (!ended) return "";
  const std::string mqtt_error = s.ingest.last_error.what.empty() ? "" : " (" + s.ingest.last_error.what + ")";
  if (!s.ingest.connected) return "not connected to the MQTT broker at the end of probation" + mqtt_error;
  if (!s.ingest.subscribed) return "the MQTT broker did not grant every subscription" + mqtt_error;
  for (const StreamStats& st : s.streams) {
    if (flowed_in_.count(st.name) > 0 && st.accepted == 0) {
      return "stream " + st.name + " took no events during probation, though it took events before";
    }
  }
  if (uploads_flowed_ && s.uploader.delivered_batches == 0 && s.buffered.batches > 0) {
    return "no batch reached Kafka during probation, though uploads went out before";
  }
  return "";
}

std::optional<Config> Rollout::RollBack(const std::string& reason) {
  const uint64_t failed = state_.running;
  Result<Config> c = Load(state_.good);
  if (!c.ok()) {
    log_->error("fleet: the last good bundle {} does not load: {}; the device file alone", state_.good,
                  c.status().message());
    state_.good = 0;
    state_.good_digest.clear();
    c = device_;
  }
  state_.running = state_.good;
  state_.running_digest = state_.good_digest;
  probation_end_us_ = 0;
  state_.status = FleetStatus{.enabled = true, .version = state_.good, .bundle = failed, .state = "rolled-back",
                        .reason = OneLine(reason), .at_us = env_->NowMicros()};
  Save();
  RemoveTree(env_, BundleDir(failed), *log_);
  log_->error("fleet: bundle {} rolled back to {}: {}", failed,
                state_.good == 0 ? std::string("the device file alone") : "bundle " + std::to_string(state_.good), reason);
  config_ = std::move(c).value();
  return config_;
}

void Rollout::Refuse(uint64_t version, const std::string& from, const std::string& reason) {
  state_.status.bundle = version;
  state_.status.state = "refused";
  state_.status.reason = OneLine(reason);
  state_.status.at_us = env_->NowMicros();
  Save();
  log_->error("fleet: refused the bundle from {}: {}", from, reason);
}

void Rollout::Save() {
  const std::string text = FormatFleetState(state_);
  Status st = WriteFileAtomically(env_, dir_ + "/state", text);
  if (!st.ok()) log_->error("fleet: cannot save its state in {}: {}", dir_, st.ToString());
}

void Rollout::Prune() {
  Result<std::vector<std::string>> names = env_->ListDir(dir_ + "/bundles");
  if (!names.ok()) return;
  for (const std::string& n : *names) {
    if (n == std::to_string(state_.running) || n == std::to_string(state_.good)) continue;
    RemoveTree(env_, dir_ + "/bundles/" + n, *log_);
  }
}

FleetState ParseFleetState(const std::string& text) {
  FleetState f;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    const size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    const std::string k = line.substr(0, eq), v = line.substr(eq + 1);
    const uint64_t n = std::strtoull(v.c_str(), nullptr, 10);
    if (k == "running") f.running = f.status.version = n;
    if (k == "good") f.good = n;
    if (k == "highest") f.highest = n;
    if (k == "running_digest") f.running_digest = v;
    if (k == "good_digest") f.good_digest = v;
    if (k == "highest_digest") f.highest_digest = v;
    if (k == "state") f.status.state = v;
    if (k == "bundle") f.status.bundle = n;
    if (k == "reason") f.status.reason = v;
    if (k == "at_us") f.status.at_us = static_cast<int64_t>(n);
  }
  return f;
}

std::string FormatFleetState(const FleetState& f) {
  std::string text;
  auto put = [&](const char* k, const std::string& v) { text += std::string(k) + "=" + v + "\n"; };
  put("running", std::to_string(f.running));
  put("good", std::to_string(f.good));
  put("highest", std::to_string(f.highest));
  put("running_digest", f.running_digest);
  put("good_digest", f.good_digest);
  put("highest_digest", f.highest_digest);
  put("state", f.status.state);
  put("bundle", std::to_string(f.status.bundle));
  put("reason", f.status.reason);
  put("at_us", std::to_string(f.status.at_us));
  return text;
}

Result<FleetStatus> ReadFleetStatus(Env* env, const std::string& state_dir) {
  const std::string path = state_dir + "/fleet/state";
  if (!env->Exists(path)) return FleetStatus{};
  Result<std::string> text = env->ReadFile(path, kMaxKeyFileBytes);
  if (!text.ok()) return text.status();
  FleetStatus f = ParseFleetState(*text).status;
  f.enabled = true;
  return f;
}

}  // namespace edgesync

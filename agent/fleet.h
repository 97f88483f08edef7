// Fleet rollout: signed configuration bundles (fleet/bundle.h) taken from
// a drop directory or a retained MQTT topic, tried under probation, kept
// when the agent stays healthy and rolled back by itself when it does not.
//
// The device file (`run --config`) stays the device's own: its [fleet]
// section and agent.state_dir are never changed by a bundle, and every key
// it sets wins over the bundle's, which takes the place of its profile
// (ParseConfig). A bundle is refused, with the reason kept for the health
// records, when its signature is not one of fleet.public_keys, when its
// version is not newer than every bundle tried before (no downgrade, no
// replay), or when the configuration it makes fails `edgesync check`.
//
// State, in <state_dir>/fleet: `state` (key=value lines, replaced
// atomically) and bundles/<version>/ (the extracted trees of the bundle
// running and the last good one). A bundle is in probation from the moment
// it is chosen: an agent that stops before probation ends (crash, kill,
// restart) comes back on the last good bundle, and says so.
//
// Probation (fleet.probation) fails, and the last good bundle comes back,
// when a stage is wedged or a Kafka topic refuses the agent (at once), or
// when it ends with MQTT not connected and subscribed, a stream that took
// events before the switch (and still exists) having taken none, or no
// upload although uploads went out before.
//
// Not thread-safe, except Offer. Tick and Switched run on main's thread,
// which owns the agent.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "agent/agent.h"
#include "agent/config.h"
#include "base/env.h"
#include "base/status.h"
#include "fleet/bundle.h"

namespace spdlog {
class logger;
}

namespace edgesync {

// What <state_dir>/fleet/state keeps.
struct FleetState {
  uint64_t running = 0;  // bundle running; 0: none (the device file alone)
  uint64_t good = 0;     // last good bundle; 0: none
  uint64_t highest = 0;  // newest version tried: older or equal ones are refused
  std::string running_digest, good_digest, highest_digest;  // SHA-256 of the bundle files
  FleetStatus status;    // version, bundle, state, reason, at_us
};
// key=value lines; unknown keys are skipped.
FleetState ParseFleetState(const std::string& text);
std::string FormatFleetState(const FleetState& s);
// For `edgesync status` of a stopped agent: the state file's status
// (enabled = false when there is none).
Result<FleetStatus> ReadFleetStatus(Env* env, const std::string& state_dir);

class Rollout {
 public:
  // `device` is LoadConfig(device_path) without a bundle; its fleet
  // settings are on (fleet_public_keys set). A bundle left in probation is
  // rolled back here. InvalidArgument when a public key cannot be used.
  // `logger`: where it logs; null: spdlog's default logger.
  static Result<std::unique_ptr<Rollout>> Open(const std::string& device_path, const Config& device, Env* env,
                                               std::shared_ptr<spdlog::logger> logger = nullptr);

  // The configuration to run: the device file over the running bundle.
  const Config& config() const { return config_; }
  FleetStatus status() const;

  // A payload of fleet.mqtt_topic; any thread. Taken at the next Tick.
  void Offer(std::string_view bytes);

  // Once a second: judges probation, else takes the next bundle that came
  // in. Returns the configuration to switch to (a bundle to try, or the
  // last good one back), or nothing. `stats` gives the running agent's
  // figures, asked for only when needed.
  std::optional<Config> Tick(const std::function<AgentStats()>& stats, int64_t now_mono_us);
  // After main switched to what Tick returned: `st` not ok (the agent could
  // not start with it) rolls back; the configuration to go back to, if so.
  std::optional<Config> Switched(const Status& st, int64_t now_mono_us);

  // SIGHUP: the device file read again, over the running bundle.
  Result<Config> Reload();

 private:
  Rollout(std::string device_path, Config device, Env* env, std::shared_ptr<spdlog::logger> logger,
          fleet::TrustedKeys keys);
  // Loads the configuration for bundle `version` (0: the device file alone).
  Result<Config> Load(uint64_t version) const;
  std::string BundleDir(uint64_t version) const;
  // Takes one bundle; the configuration to try if it is accepted.
  std::optional<Config> Take(const std::string& bytes, const std::string& from, const AgentStats& stats);
  // The next bundle file of fleet.drop_dir, read and removed; false when
  // there is none. An entry that is not a regular file of at most a
  // bundle's size is set aside (SetAside) and the next one is taken.
  bool NextDropped(std::string* bytes, std::string* from);
  // Renames drop_dir/name to name.refused (or, failing that, skips it from
  // now on) and reports the refusal once.
  void SetAside(const std::string& name, const std::string& why);
  void Refuse(uint64_t version, const std::string& from, const std::string& reason);
  std::optional<Config> RollBack(const std::string& reason);
  // Why probation fails now ("" while it holds); `ended`: the last look.
  std::string Judge(const AgentStats& stats, bool ended) const;
  void Save();
  void Prune();

  std::string device_path_;
  Config device_;
  Env* env_;
  std::shared_ptr<spdlog::logger> log_;
  fleet::TrustedKeys keys_;
  std::string dir_;  // <state_dir>/fleet
  Config config_;    // running

  FleetState state_;  // as saved in `state`

  // Probation (state_.running under watch).
  int64_t probation_end_us_ = 0;  // monotonic; 0: none
  std::set<std::string> flowed_in_;       // streams that took events before the switch
  bool uploads_flowed_ = false;           // uploads went out before the switch
  std::set<std::string> blocked_before_;  // Kafka topics already refusing before

  std::string last_refused_digest_;  // a retained bundle refused once is not refused again
  std::set<std::string> set_aside_;  // drop_dir entries refused without being read: never taken again
  bool drop_dir_failing_ = false;    // fleet.drop_dir cannot be listed (said once)
  mutable std::mutex offered_mu_;
  std::deque<std::string> offered_;  // guarded by offered_mu_
};

}  // namespace edgesync

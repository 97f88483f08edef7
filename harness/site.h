// A site on loopback, as the demo and the soak run it: the agent's mosquitto
// broker (set up as systemd/'s drop-in sets it up), a central key pair, the
// agent's configuration pointed at the broker and the Kafka mock cluster,
// edgesync-unpack reading the streams back and the fleet simulator. The
// pieces the two programs share; each one starts and stops them itself.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "harness/mosquitto.h"
#include "harness/process.h"

namespace edgesync::harness {

// Makes SIGINT and SIGTERM set a flag, read by Interrupted(): the demo and
// the soak stop their loops and clean up instead of dying with their
// children still running.
void CatchInterrupts();
bool Interrupted();

// mosquitto in `work_dir` as the agent's broker drop-in configures it:
// persistence on, the agent's queue without limit, 100 messages in flight.
Result<std::unique_ptr<MosquittoBroker>> StartSiteBroker(const std::string& work_dir);

// Runs `edgesync keygen --out dir` (dir/edgesync.pub, dir/edgesync.key) and
// returns the first line it printed (the key id). IOError when it fails.
Result<std::string> MakeCentralKeys(const std::string& dir);

// Enrols a device as an operator does: its signing key made where the agent
// will find it (`edgesync keygen --device --device-id ID --out STATE_DIR`,
// unless STATE_DIR/device.key exists), then its enrolment file
// (STATE_DIR/device.pub) copied into `keys_dir` (created), the directory
// edgesync-unpack's --device-keys reads. Returns the keygen's first line
// ("device ID, signing key id ..."), or "" when the key existed.
Result<std::string> EnrolDevice(const std::string& device_id, const std::string& state_dir,
                                const std::string& keys_dir);

// What WriteSiteConfig changes in an agent configuration.
struct SiteConfig {
  std::string source_path;  // the configuration to start from
  std::string profile;      // its [agent] profile as written (Config::profile), may be ""
  int mqtt_port = 0;
  std::string kafka_brokers;
  std::string state_dir;
  // Added as [encryption] public_key when non-empty (the source must not
  // have an [encryption] section then).
  std::string public_key;
  std::string extra_toml;  // appended as written (more sections)
};

// Writes `out_path`: the source configuration pointed at the broker, the
// cluster and the state directory (PointConfigAt), its profile named by an
// absolute path (a relative one is relative to the source's directory) and
// the additions of `site`. IOError when a file cannot be read or written.
Status WriteSiteConfig(const SiteConfig& site, const std::string& out_path);

// edgesync-unpack reading `topics` from the beginning with `private_key`
// and the enrolled device keys in `device_keys`, records (NDJSON) to
// `records_path`, its notes to `log_path`, gaps to `gaps_path` when
// non-empty (else to its log).
Result<Process> StartUnpack(const std::string& bootstrap, const std::vector<std::string>& topics,
                            const std::string& private_key, const std::string& device_keys,
                            const std::string& records_path, const std::string& log_path,
                            const std::string& gaps_path = "");

// One run of edgesync-fleet (QoS 1, quiet unless `progress`): what it
// prints goes to out_path, its log to log_path, the manifest to manifest_path.
struct FleetRun {
  int port = 0;
  int terminals = 0;
  int chargers = 0;
  double rate = 0;
  int seconds = 0;
  std::string manifest_path, out_path, log_path;
  bool progress = false;  // a progress line in the log every 5 s
};
Result<Process> StartFleet(const FleetRun& run);

// The sum of a manifest's counts: what the fleet published. NotFound or
// InvalidArgument as ParseManifest and the file say.
Result<uint64_t> ManifestTotal(const std::string& manifest_path);

}  // namespace edgesync::harness

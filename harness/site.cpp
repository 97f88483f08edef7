// The pieces of a loopback site shared by edgesync-demo and edgesync-soak
// (see harness/site.h).
#include "harness/site.h"

#include <csignal>
#include <filesystem>
#include <fstream>

#include "harness/agent_process.h"
#include "harness/tally.h"

namespace edgesync::harness {
namespace {

volatile std::sig_atomic_t g_interrupted = 0;
void OnInterrupt(int) { g_interrupted = 1; }

}  // namespace

void CatchInterrupts() {
  std::signal(SIGINT, OnInterrupt);
  std::signal(SIGTERM, OnInterrupt);
}

bool Interrupted() { return g_interrupted != 0; }

Result<std::unique_ptr<MosquittoBroker>> StartSiteBroker(const std::string& work_dir) {
  BrokerOptions bo;  // as systemd/'s broker drop-in: queue without limit for the agent
  bo.max_queued_messages = -1;
  bo.max_inflight_messages = 100;
  return MosquittoBroker::Start(work_dir, bo);
}

Result<std::string> MakeCentralKeys(const std::string& dir) {
  const std::string out = dir + ".out";
  Result<int> code = RunToEnd({ProgramPath("edgesync"), "keygen", "--out", dir}, out);
  if (!code.ok()) return code.status();
  if (*code != 0) return Status::IOError("edgesync keygen: exit " + std::to_string(*code));
  std::string line = ReadWholeFile(out);
  return line.substr(0, line.find('\n'));
}

Result<std::string> EnrolDevice(const std::string& device_id, const std::string& state_dir,
                                const std::string& keys_dir) {
  namespace fs = std::filesystem;
  std::string line;
  if (!fs::exists(fs::path(state_dir) / "device.key")) {
    const std::string out = state_dir + ".keygen.out";
    Result<int> code = RunToEnd(
        {ProgramPath("edgesync"), "keygen", "--device", "--device-id", device_id, "--out", state_dir}, out);
    if (!code.ok()) return code.status();
    if (*code != 0) return Status::IOError("edgesync keygen --device: exit " + std::to_string(*code));
    line = ReadWholeFile(out);
    line = line.substr(0, line.find('\n'));
  }
  std::error_code ec;
  fs::create_directories(keys_dir, ec);
  // Named after the device; characters a file name cannot hold become '_'.
  std::string name = device_id;
  for (char& c : name) {
    if (c == '/' || c == '\0') c = '_';
  }
  fs::copy_file(fs::path(state_dir) / "device.pub", fs::path(keys_dir) / (name + ".pub"),
                fs::copy_options::overwrite_existing, ec);
  if (ec) return Status::IOError("enrol " + device_id + ": " + ec.message());
  return line;
}

Status WriteSiteConfig(const SiteConfig& site, const std::string& out_path) {
  const std::string source = ReadWholeFile(site.source_path);
  if (source.empty()) return Status::IOError("cannot read " + site.source_path);
  std::string toml = PointConfigAt(source, site.mqtt_port, site.kafka_brokers, site.state_dir);
  // The profile is named relative to the configuration file, which is
  // rewritten elsewhere: name it absolutely there.
  if (!site.profile.empty() && site.profile[0] != '/') {
    namespace fs = std::filesystem;
    const std::string from = "profile = \"" + site.profile + "\"";
    const size_t at = toml.find(from);
    const fs::path dir = fs::path(site.source_path).parent_path();
    const std::string abs = fs::absolute((dir.empty() ? fs::path(".") : dir) / site.profile).lexically_normal();
    if (at != std::string::npos) toml.replace(at, from.size(), "profile = \"" + abs + "\"");
  }
  if (!site.public_key.empty()) toml += "\n[encryption]\npublic_key = \"" + site.public_key + "\"\n";
  toml += site.extra_toml;
  std::ofstream out(out_path, std::ios::trunc);
  out << toml;
  out.flush();
  if (!out) return Status::IOError("cannot write " + out_path);
  return Status::OK();
}

Result<Process> StartUnpack(const std::string& bootstrap, const std::vector<std::string>& topics,
                            const std::string& private_key, const std::string& device_keys,
                            const std::string& records_path, const std::string& log_path,
                            const std::string& gaps_path) {
  SpawnOptions o;
  o.argv = {ProgramPath("edgesync-unpack"), "--brokers", bootstrap, "--from-beginning",
            "--private-key", private_key, "--device-keys", device_keys};
  for (const auto& t : topics) {
    o.argv.push_back("--topic");
    o.argv.push_back(t);
  }
  if (!gaps_path.empty()) {
    o.argv.push_back("--gaps");
    o.argv.push_back(gaps_path);
  }
  o.stdout_path = records_path;
  o.stderr_path = log_path;
  return Process::Spawn(o);
}

Result<Process> StartFleet(const FleetRun& run) {
  SpawnOptions o;
  o.argv = {ProgramPath("edgesync-fleet"), "--port", std::to_string(run.port),
            "--terminals", std::to_string(run.terminals), "--chargers", std::to_string(run.chargers),
            "--rate", std::to_string(run.rate), "--seconds", std::to_string(run.seconds),
            "--manifest", run.manifest_path};
  if (!run.progress) o.argv.push_back("--quiet");
  o.stdout_path = run.out_path;
  o.stderr_path = run.log_path;
  return Process::Spawn(o);
}

Result<uint64_t> ManifestTotal(const std::string& manifest_path) {
  std::ifstream in(manifest_path);
  if (!in) return Status::NotFound("cannot read " + manifest_path);
  Result<std::map<std::string, uint64_t>> manifest = ParseManifest(in);
  if (!manifest.ok()) return manifest.status();
  uint64_t total = 0;
  for (const auto& [device, n] : *manifest) total += n;
  return total;
}

}  // namespace edgesync::harness

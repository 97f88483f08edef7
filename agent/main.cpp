// edgesync: the edge agent's command line.
//   edgesync run --config FILE     run the agent in the foreground
//   edgesync check FILE [--bundle B]  validate a configuration (exit 0, or 2 with the errors)
//   edgesync status [--json] [--watch]   the running agent's state (or its store's)
//   edgesync config                print the configuration reference (Markdown)
//   edgesync keygen --out DIR      make the central service's key pair
//   edgesync keygen --device [--config FILE | --device-id ID --out DIR]   this device's signing key
//   edgesync dict train --samples DIR --out FILE   train a zstd dictionary
//   edgesync bundle keygen --out DIR                the fleet's signing key pair
//   edgesync bundle sign --key KEY --in DIR --out FILE --version N   sign a configuration bundle
//   edgesync bundle verify --key PUB [--key PUB ...] FILE             check one (exit 0, or 2)
#include <mosquitto.h>
#include <zdict.h>
#include <spdlog/spdlog.h>

#include <fcntl.h>
#include <unistd.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include <CLI/CLI.hpp>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <optional>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/fleet.h"
#include "agent/logging.h"
#include "agent/status_cli.h"
#include "base/printable.h"
#include "base/systemd.h"
#include "format/crypto.h"
#include "format/envelope.h"
#include "format/identity.h"
#include "fleet/bundle_cli.h"

namespace {

// The agent for `config`, started, with fleet bundles from its MQTT topic
// going to `fleet` (may be null).
// Main's own stage for the watchdog: working from a signal or a fleet tick
// until it waits for the next (a reload or a bundle that hangs it is seen).
edgesync::Progress control;

edgesync::Result<std::unique_ptr<edgesync::Agent>> StartAgent(const edgesync::Config& config,
                                                              edgesync::Rollout* fleet) {
  edgesync::Result<std::unique_ptr<edgesync::Agent>> agent = edgesync::Agent::Open(config, edgesync::Env::Default(), spdlog::default_logger());
  if (!agent.ok()) return agent.status();
  (*agent)->WatchControl(&control);
  if (fleet != nullptr) {
    (*agent)->OnBundle([fleet](std::string_view bytes) { fleet->Offer(bytes); });
    (*agent)->SetFleetStatus(fleet->status());
  }
  edgesync::Status st = (*agent)->Start();
  if (!st.ok()) return st;
  return agent;
}

// Makes `next` the running configuration: between two events when only the
// chains change, else by restarting the pipeline in this process (the
// store, its sequences and the MQTT session carry over). When `next` cannot
// start, the running one starts again and the error is returned; Aborted
// when that fails too (the process must end).
edgesync::Status Switch(std::unique_ptr<edgesync::Agent>* agent, edgesync::Config* running,
                        const edgesync::Config& next, edgesync::Rollout* fleet) {
  using edgesync::Status;
  if (edgesync::SameButPlugins(*running, next) && (*agent)->Reload(next).ok()) {
    *running = next;
    spdlog::set_level(spdlog::level::from_str(next.log_level));
    spdlog::info("reload: the new chains ({} plugins) take over at the next event; log level {}",
                 next.plugins.size(), next.log_level);
    return Status::OK();
  }
  spdlog::info("reload: more than the chains changed: restarting the pipeline with the new configuration");
  Status down = (*agent)->Shutdown(/*restarting=*/true);
  if (!down.ok() && down.code() != Status::Code::kUnavailable) spdlog::warn("{}", down.message());
  agent->reset();
  edgesync::Result<std::unique_ptr<edgesync::Agent>> started = StartAgent(next, fleet);
  if (started.ok()) {
    *agent = std::move(started).value();
    *running = next;
    spdlog::set_level(spdlog::level::from_str(next.log_level));
    spdlog::info("reload: the pipeline restarted with the new configuration (buffer, sequences and MQTT "
                 "session kept); log level {}", next.log_level);
    return Status::OK();
  }
  spdlog::error("reload: cannot start with the new configuration ({}); starting the previous one again",
                started.status().ToString());
  edgesync::Result<std::unique_ptr<edgesync::Agent>> back = StartAgent(*running, fleet);
  if (!back.ok()) return Status::Aborted("cannot start the previous configuration again: " + back.status().ToString());
  *agent = std::move(back).value();
  return started.status();
}

// glibc's malloc, set for a board with 64-256 MiB before any thread starts.
// By default each thread that allocates while another holds an arena gets
// its own (up to 8 per core), and free memory stays in the arena it was
// freed in; two arenas are enough for two busy threads (MQTT and sealer),
// and thread caches keep the lock off the hot path. A fixed mmap threshold
// keeps large buffers (a batch's body, an envelope, a zstd context) in
// their own mappings, returned to the kernel when freed: left dynamic,
// glibc raises it to the largest buffer freed, after which they stay in
// the heap.
void SetUpMalloc() {
#if defined(__GLIBC__)
  mallopt(M_ARENA_MAX, 2);
  mallopt(M_MMAP_THRESHOLD, 128 * 1024);
#endif
}

int RunAgent(const std::string& path) {
  using edgesync::Status;
  SetUpMalloc();
  edgesync::Result<edgesync::Config> device = edgesync::LoadConfig(path);
  if (!device.ok()) {
    std::fprintf(stderr, "%s\n", device.status().message().c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(device->log_level));
  // With [fleet], the configuration is the device file over the bundle
  // running (agent/fleet.h).
  std::unique_ptr<edgesync::Rollout> fleet;
  if (!device->fleet_public_keys.empty()) {
    edgesync::Result<std::unique_ptr<edgesync::Rollout>> r =
        edgesync::Rollout::Open(path, *device, edgesync::Env::Default(), spdlog::default_logger());
    if (!r.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), r.status().message().c_str());
      return 2;
    }
    fleet = std::move(r).value();
  }
  edgesync::Config running = fleet ? fleet->config() : *device;
  spdlog::set_level(spdlog::level::from_str(running.log_level));

  // Signals are taken synchronously by this thread; every thread started
  // below inherits the mask.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  mosquitto_lib_init();
  int code = 0;
  {
    edgesync::Result<std::unique_ptr<edgesync::Agent>> started = StartAgent(running, fleet.get());
    if (!started.ok()) {
      spdlog::critical("cannot start: {}", started.status().ToString());
      mosquitto_lib_cleanup();
      return 1;
    }
    std::unique_ptr<edgesync::Agent> agent = std::move(started).value();
    spdlog::info("edgesync {} running: device {}, {} streams, state in {}{}", EDGESYNC_VERSION, running.device_id,
                 running.streams.size(), running.state_dir,
                 !fleet ? "" : fleet->status().version == 0 ? ", no fleet bundle yet"
                                                            : ", fleet bundle " + std::to_string(fleet->status().version));
    // The store is open and the first connection attempts are under way.
    // STATUS= comes from the agent's monitor thread alone (Agent::NotifySystemd):
    // a second sender could overwrite its text with an older one.
    edgesync::systemd::Notify("READY=1");
    edgesync::Env* env = edgesync::Env::Default();
    int64_t next_stats_us = env->MonotonicMicros() + static_cast<int64_t>(running.stats_interval * 1e6);
    bool fatal = false;
    for (;;) {
      timespec second{1, 0};
      control.Wait();
      int sig = sigtimedwait(&set, nullptr, &second);
      control.Advance(env->MonotonicMicros());
      if (sig == SIGINT || sig == SIGTERM) {
        spdlog::info("signal {} received", sig == SIGINT ? "SIGINT" : "SIGTERM");
        edgesync::systemd::Notify("STOPPING=1");
        break;
      }
      if (sig == SIGHUP) {
        // Live reload: the whole file is read and checked again; only a
        // valid configuration replaces the running one.
        spdlog::info("SIGHUP: reloading {}", path);
        edgesync::systemd::Notify("RELOADING=1");
        edgesync::Result<edgesync::Config> next = fleet ? fleet->Reload() : edgesync::LoadConfig(path);
        Status st = next.ok() ? Switch(&agent, &running, *next, fleet.get()) : next.status();
        fatal = st.code() == Status::Code::kAborted;
        if (!st.ok()) spdlog::error("reload: keeping the running configuration: {}", st.message());
        edgesync::systemd::Notify("READY=1");
        if (fatal) break;
      }
      if (fleet) {
        // New bundles, probation and rollback (agent/fleet.h).
        auto stats = [&agent] { return agent->stats(); };
        std::optional<edgesync::Config> next = fleet->Tick(stats, env->MonotonicMicros());
        while (next && !fatal) {
          Status st = Switch(&agent, &running, *next, fleet.get());
          fatal = st.code() == Status::Code::kAborted;
          next = fleet->Switched(st, env->MonotonicMicros());
        }
        if (fatal) break;
        agent->SetFleetStatus(fleet->status());
      }
      agent->ReleaseMemoryWhenQuiet();
      const int64_t now_us = env->MonotonicMicros();
      if (running.stats_interval > 0 && now_us >= next_stats_us) {
        spdlog::info("stats: {}", agent->StatsLine());
        next_stats_us = now_us + static_cast<int64_t>(running.stats_interval * 1e6);
      }
    }
    if (fatal) {
      spdlog::critical("stopping: no configuration can run");
      code = 1;
    } else {
      Status st = agent->Shutdown();
      if (!st.ok() && st.code() != Status::Code::kUnavailable) code = 1;
      if (!st.ok()) spdlog::warn("{}", st.message());
    }
  }
  mosquitto_lib_cleanup();
  return code;
}

// What a device would refuse in any bundle: each TOML file's bounds and
// syntax, and keys only the device file may set (CheckFleetToml).
edgesync::Status CheckBundleFiles(const std::vector<edgesync::fleet::BundleFile>& files) {
  std::string problems;
  for (const edgesync::fleet::BundleFile& f : files) {
    if (!f.path.ends_with(".toml")) continue;
    edgesync::Status st = edgesync::CheckFleetToml(f.content, f.path);
    if (!st.ok()) problems += (problems.empty() ? "" : "\n") + st.message();
  }
  return problems.empty() ? edgesync::Status::OK() : edgesync::Status::InvalidArgument(problems);
}

// Creates `path` with `mode` and writes `data`; refuses to replace a file.
edgesync::Status WriteNewFile(const std::string& path, const std::string& data, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return edgesync::Status::FromErrno("create " + path, errno);
  ssize_t n = ::write(fd, data.data(), data.size());
  int err = errno;
  bool ok = n == static_cast<ssize_t>(data.size()) && ::fsync(fd) == 0;
  ::close(fd);
  if (!ok) return edgesync::Status::FromErrno("write " + path, n < 0 ? err : EIO);
  return edgesync::Status::OK();
}

// edgesync keygen: the key pair of the central service. The private key
// stays there (edgesync-unpack --private-key); devices get the public key.
int Keygen(const std::string& dir) {
  using namespace edgesync;
  Env* env = Env::Default();
  const std::string priv_path = dir + "/edgesync.key", pub_path = dir + "/edgesync.pub";
  for (const std::string& p : {priv_path, pub_path}) {
    if (env->Exists(p)) {
      std::fprintf(stderr, "edgesync keygen: %s exists; not replacing a key (move it away first)\n", p.c_str());
      return 2;
    }
  }
  Status st = env->CreateDirs(dir);
  crypto::Key priv{};
  if (st.ok()) st = crypto::Random(&priv);
  Result<crypto::Key> pub = crypto::X25519PublicKey(priv);
  if (st.ok() && !pub.ok()) st = pub.status();
  if (st.ok()) st = WriteNewFile(priv_path, crypto::PrivateKeyPem(priv), 0600);
  if (st.ok()) st = WriteNewFile(pub_path, crypto::PublicKeyPem(*pub), 0644);
  if (!st.ok()) {
    std::fprintf(stderr, "edgesync keygen: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("key id %s\n  private key: %s (mode 0600: for edgesync-unpack --private-key, never on a device)\n"
              "  public key:  %s (for the devices' encryption.public_key)\n",
              crypto::Hex(crypto::ShortHash(*pub)).c_str(), priv_path.c_str(), pub_path.c_str());
  return 0;
}

// edgesync keygen --device: the device's Ed25519 signing key and its
// enrolment file, where the configuration (or --out) says. Never replaces a key.
int DeviceKeygen(const std::string& config_path, const std::string& device_id_flag, const std::string& out_dir) {
  using namespace edgesync;
  Env* env = Env::Default();
  std::string key_path, device_id = device_id_flag;
  std::unique_ptr<FileLock> state_lock;  // held until the key is written
  if (!out_dir.empty()) {
    if (device_id.empty()) {
      std::fprintf(stderr, "edgesync keygen --device --out DIR: say whose key with --device-id ID\n");
      return 2;
    }
    key_path = out_dir + "/device.key";
  } else {
    Result<Config> cfg = LoadConfig(config_path);
    if (!cfg.ok()) {
      std::fprintf(stderr, "edgesync keygen --device: %s\n(use --config FILE, or --device-id ID --out DIR)\n",
                   cfg.status().message().c_str());
      return 2;
    }
    key_path = DeviceKeyPath(*cfg);
    device_id = cfg->device_id;
    // The agent makes its key itself on its first start: never both at once.
    Status st = env->CreateDirs(cfg->state_dir);
    Result<std::unique_ptr<FileLock>> lock =
        st.ok() ? env->LockFile(cfg->state_dir + "/lock") : Result<std::unique_ptr<FileLock>>(st);
    if (!lock.ok()) {
      std::fprintf(stderr, "edgesync keygen --device: %s\n",
                   lock.status().code() == Status::Code::kUnavailable
                       ? ("the agent is running on " + cfg->state_dir + " (it holds its lock); stop it first").c_str()
                       : lock.status().ToString().c_str());
      return 2;
    }
    state_lock = std::move(lock).value();
  }
  if (const std::string problem = DeviceIdProblem(device_id); !problem.empty()) {
    std::fprintf(stderr, "edgesync keygen --device: the device id %s\n", problem.c_str());
    return 2;
  }
  for (const std::string& p : {key_path, EnrolmentPath(key_path)}) {
    if (env->Exists(p)) {
      std::fprintf(stderr,
                   "edgesync keygen --device: %s exists; not replacing a key (to rotate: write the new key "
                   "elsewhere with --out, enrol it, then point agent.device_key at it)\n",
                   p.c_str());
      return 2;
    }
  }
  bool created = false;
  Result<DeviceSigner> key = LoadOrCreateDeviceKey(env, key_path, device_id, &created);
  if (!key.ok()) {
    std::fprintf(stderr, "edgesync keygen --device: %s\n", key.status().ToString().c_str());
    return 1;
  }
  std::printf("device %s, signing key id %s\n  private key: %s (mode 0600: stays on this device)\n"
              "  enrolment:   %s (copy it into edgesync-unpack's --device-keys directory)\n",
              Printable(device_id).c_str(), crypto::Hex(key->key_id()).c_str(), key_path.c_str(),
              EnrolmentPath(key_path).c_str());
  return 0;
}

// edgesync dict train: a zstd dictionary from sample events.
int TrainDict(const std::string& samples_dir, const std::string& out, bool lines, size_t size) {
  using namespace edgesync;
  Env* env = Env::Default();
  Result<std::vector<std::string>> names = env->ListDir(samples_dir);
  if (!names.ok()) {
    std::fprintf(stderr, "edgesync dict train: %s\n", names.status().ToString().c_str());
    return 2;
  }
  std::vector<std::string> samples;
  for (const std::string& n : *names) {
    Result<std::string> bytes = env->ReadFile(samples_dir + "/" + n, edgesync::kMaxDictionaryBytes);
    if (!bytes.ok()) continue;  // a subdirectory, or unreadable: not a sample
    if (!lines) {
      samples.push_back(std::move(bytes).value());
      continue;
    }
    size_t start = 0;
    while (start < bytes->size()) {
      size_t end = bytes->find('\n', start);
      if (end == std::string::npos) end = bytes->size();
      if (end > start) samples.push_back(bytes->substr(start, end - start));
      start = end + 1;
    }
  }
  Result<std::string> dict = TrainDictionary(samples, size);
  if (!dict.ok()) {
    std::fprintf(stderr, "edgesync dict train: %s\n", dict.status().message().c_str());
    return 1;
  }
  Status st = WriteNewFile(out, *dict, 0644);
  if (!st.ok()) {
    std::fprintf(stderr, "edgesync dict train: %s\n", st.ToString().c_str());
    return 1;
  }
  std::printf("dictionary id %u, %zu bytes, from %zu samples: %s\n"
              "  devices: batch.dictionary = \"%s\"; central: put it in edgesync-unpack's --dict-dir\n",
              ZDICT_getDictID(dict->data(), dict->size()), dict->size(), samples.size(), out.c_str(),
              out.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  edgesync::SetUpLogging(edgesync::systemd::StderrIsJournal() ? edgesync::LogTarget::kJournal
                                                               : edgesync::LogTarget::kTerminal);

  CLI::App app{"edgesync: seals MQTT events into encrypted, compressed batches and uploads them to Kafka"};
  app.require_subcommand(1);
  app.set_version_flag("--version", EDGESYNC_VERSION);

  std::string run_config;
  CLI::App* run = app.add_subcommand("run", "run the agent in the foreground");
  run->add_option("-c,--config", run_config, "configuration file (TOML)")->required();

  std::string check_config;
  CLI::App* check = app.add_subcommand("check", "validate a configuration file; exit 0 if valid, 2 if not");
  check->add_option("config", check_config, "configuration file (TOML)")->required();
  std::string check_bundle;
  check->add_option("--bundle", check_bundle,
                    "a bundle's edgesync.toml (unpacked) to check under the device file, as the agent would apply it");

  app.add_subcommand("config", "print the configuration reference (Markdown)");

  std::string status_config = "/etc/edgesync/edgesync.toml";
  edgesync::StatusOptions status_opts;
  CLI::App* status = app.add_subcommand(
      "status", "the running agent's state, per stream (asked over STATE_DIR/status.sock; when no agent "
                "answers, read from its store). Exit 0: running; 3: not running; 1: error");
  status->add_option("-c,--config", status_config, "configuration file, for agent.state_dir (default " +
                                                       status_config + ")");
  status->add_option("--state-dir", status_opts.state_dir, "the agent's state directory (instead of --config)");
  status->add_flag("--json", status_opts.json, "print the JSON document (the health record) instead");
  status->add_flag("-w,--watch", status_opts.watch, "print again every --interval seconds until interrupted");
  status->add_option("--interval", status_opts.interval, "seconds between prints with --watch (default 2)")
      ->check(CLI::Range(0.1, 3600.0));

  std::string keygen_dir, keygen_config = "/etc/edgesync/edgesync.toml", keygen_device_id;
  bool keygen_device = false;
  CLI::App* keygen = app.add_subcommand(
      "keygen", "write a new X25519 key pair for the central service: DIR/edgesync.key (private, 0600) and "
                "DIR/edgesync.pub; with --device, this device's Ed25519 signing key and its enrolment file");
  keygen->add_option("--out", keygen_dir,
                     "directory for the two files (created if missing); with --device, DIR/device.key and "
                     "DIR/device.pub");
  keygen->add_flag("--device", keygen_device,
                   "the device's signing key, where agent.device_key says (default <state_dir>/device.key), "
                   "or in --out");
  keygen->add_option("-c,--config", keygen_config, "--device: the configuration file (default " +
                                                       keygen_config + ")");
  keygen->add_option("--device-id", keygen_device_id, "--device --out: the device id the enrolment file names");

  std::string samples_dir, dict_out;
  bool dict_lines = false;
  size_t dict_size = 16 * 1024;
  CLI::App* dict = app.add_subcommand("dict", "zstd dictionaries for small batches");
  dict->require_subcommand(1);
  CLI::App* train = dict->add_subcommand("train", "train a dictionary from sample events");
  train->add_option("--samples", samples_dir, "directory of samples: each file is one event payload")->required();
  train->add_flag("--lines", dict_lines, "each line of each file is one sample (NDJSON captures)");
  train->add_option("--out", dict_out, "dictionary file to write (not replaced if it exists)")->required();
  train->add_option("--size", dict_size, "largest dictionary size in bytes (default 16384)");

  // edgesync bundle: signed configuration bundles (fleet/bundle.h).
  std::string bundle_keygen_dir, bundle_verify_file;
  std::vector<std::string> bundle_verify_keys;
  edgesync::fleet::BundleSignOptions bundle_sign_opts;
  CLI::App* bundle = app.add_subcommand("bundle", "signed configuration bundles for the fleet's devices");
  bundle->require_subcommand(1);
  CLI::App* bundle_keygen = bundle->add_subcommand(
      "keygen", "write the fleet's Ed25519 signing key pair: DIR/fleet.key (private, 0600) and DIR/fleet.pub");
  bundle_keygen->add_option("--out", bundle_keygen_dir, "directory for the two files (created if missing)")
      ->required();
  CLI::App* bundle_sign = bundle->add_subcommand(
      "sign", "sign a configuration directory into a bundle; exit 0, 2 on bad input, 1 on an I/O error");
  bundle_sign->add_option("--key", bundle_sign_opts.key, "the fleet's private key (fleet.key)")->required();
  bundle_sign->add_option("--in", bundle_sign_opts.in, "the configuration directory (with edgesync.toml)")
      ->required();
  bundle_sign->add_option("--out", bundle_sign_opts.out, "the bundle file to write")->required();
  bundle_sign->add_option("--version", bundle_sign_opts.version, "the bundle's version, 1 or more")->required();
  bundle_sign->add_flag("--force", bundle_sign_opts.force, "replace the bundle file if it exists");
  CLI::App* bundle_verify = bundle->add_subcommand(
      "verify", "check a bundle's signature and contents; exit 0 if valid, 2 if refused");
  bundle_verify->add_option("--key", bundle_verify_keys, "a fleet public key (fleet.pub); repeat for several")
      ->required()
      ->allow_extra_args(false);
  bundle_verify->add_option("file", bundle_verify_file, "the bundle file")->required();

  CLI11_PARSE(app, argc, argv);

  if (*keygen && keygen_device) return DeviceKeygen(keygen_config, keygen_device_id, keygen_dir);
  if (*keygen) {
    if (keygen_dir.empty()) {
      std::fprintf(stderr, "edgesync keygen: --out DIR is required (or --device for a device key)\n");
      return 2;
    }
    return Keygen(keygen_dir);
  }
  if (*train) return TrainDict(samples_dir, dict_out, dict_lines, dict_size);
  if (*bundle_keygen) return edgesync::fleet::BundleKeygenCommand(bundle_keygen_dir);
  if (*bundle_sign) return edgesync::fleet::BundleSignCommand(bundle_sign_opts, CheckBundleFiles);
  if (*bundle_verify) {
    return edgesync::fleet::BundleVerifyCommand(bundle_verify_keys, bundle_verify_file, CheckBundleFiles);
  }

  if (*run) return RunAgent(run_config);
  if (*status) {
    if (status_opts.state_dir.empty()) {
      edgesync::Result<edgesync::Config> cfg = edgesync::LoadConfig(status_config);
      if (!cfg.ok()) {
        std::fprintf(stderr, "edgesync status: %s\n(use --config FILE or --state-dir DIR)\n",
                     cfg.status().message().c_str());
        return 1;
      }
      status_opts.state_dir = cfg->state_dir;
      status_opts.device_id = cfg->device_id;
      status_opts.device_key = edgesync::DeviceKeyPath(*cfg);
    }
    return edgesync::StatusCommand(status_opts);
  }
  if (*check) {
    edgesync::Result<edgesync::Config> cfg = edgesync::LoadConfig(check_config, check_bundle);
    if (!cfg.ok()) {
      std::fprintf(stderr, "%s\n", cfg.status().message().c_str());
      return 2;
    }
    std::printf("%s: ok (device %s, %zu streams, %zu plugins%s%s)\n", check_config.c_str(),
                cfg->device_id.c_str(), cfg->streams.size(), cfg->plugins.size(),
                cfg->profile.empty() ? "" : ", profile ", cfg->profile.c_str());
    for (const edgesync::PluginConfig& p : cfg->plugins) {
      const std::string info = p.plugin != nullptr ? p.plugin->LoadInfo() : "";
      if (!info.empty()) std::printf("  plugin %s: %s\n", p.name.c_str(), info.c_str());
    }
    return 0;
  }
  std::fputs(edgesync::ConfigReference().c_str(), stdout);
  return 0;
}

// edgesync: the edge agent's command line.
//   edgesync run --config FILE     run the agent in the foreground
//   edgesync check FILE            validate a configuration (exit 0, or 2 with the errors)
//   edgesync config                print the configuration reference (Markdown)
#include <mosquitto.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <iostream>

#include "agent/agent.h"
#include "agent/config.h"

namespace {

int RunAgent(const std::string& path) {
  edgesync::Result<edgesync::Config> cfg = edgesync::LoadConfig(path);
  if (!cfg.ok()) {
    std::fprintf(stderr, "%s\n", cfg.status().message().c_str());
    return 2;
  }
  spdlog::set_level(spdlog::level::from_str(cfg->log_level));

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
    edgesync::Result<std::unique_ptr<edgesync::Agent>> agent =
        edgesync::Agent::Open(*cfg, edgesync::Env::Default());
    if (!agent.ok()) {
      spdlog::critical("cannot start: {}", agent.status().ToString());
      mosquitto_lib_cleanup();
      return 1;
    }
    edgesync::Status st = (*agent)->Start();
    if (!st.ok()) {
      spdlog::critical("cannot start: {}", st.ToString());
      mosquitto_lib_cleanup();
      return 1;
    }
    spdlog::info("edgesync {} running: device {}, {} streams, state in {}", EDGESYNC_VERSION,
                 cfg->device_id, cfg->streams.size(), cfg->state_dir);
    const double interval = cfg->stats_interval;
    for (;;) {
      timespec ts{};
      ts.tv_sec = interval > 0 ? static_cast<time_t>(interval) : 3600;
      ts.tv_nsec = interval > 0 ? static_cast<long>((interval - static_cast<double>(ts.tv_sec)) * 1e9) : 0;
      int sig = sigtimedwait(&set, nullptr, &ts);
      if (sig == SIGINT || sig == SIGTERM) {
        spdlog::info("signal {} received", sig == SIGINT ? "SIGINT" : "SIGTERM");
        break;
      }
      if (sig == SIGHUP) {
        spdlog::info("SIGHUP: live reload is not supported yet; restart to apply a new config");
      } else if (interval > 0) {
        spdlog::info("stats: {}", (*agent)->StatsLine());
      }
    }
    st = (*agent)->Shutdown();
    if (!st.ok() && st.code() != edgesync::Status::Code::kUnavailable) code = 1;
    if (!st.ok()) spdlog::warn("{}", st.message());
  }
  mosquitto_lib_cleanup();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_default_logger(spdlog::stderr_color_mt("edgesync"));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  CLI::App app{"edgesync: seals MQTT events into encrypted, compressed batches and uploads them to Kafka"};
  app.require_subcommand(1);
  app.set_version_flag("--version", EDGESYNC_VERSION);

  std::string run_config;
  CLI::App* run = app.add_subcommand("run", "run the agent in the foreground");
  run->add_option("-c,--config", run_config, "configuration file (TOML)")->required();

  std::string check_config;
  CLI::App* check = app.add_subcommand("check", "validate a configuration file; exit 0 if valid, 2 if not");
  check->add_option("config", check_config, "configuration file (TOML)")->required();

  app.add_subcommand("config", "print the configuration reference (Markdown)");

  CLI11_PARSE(app, argc, argv);

  if (*run) return RunAgent(run_config);
  if (*check) {
    edgesync::Result<edgesync::Config> cfg = edgesync::LoadConfig(check_config);
    if (!cfg.ok()) {
      std::fprintf(stderr, "%s\n", cfg.status().message().c_str());
      return 2;
    }
    std::printf("%s: ok (device %s, %zu streams)\n", check_config.c_str(), cfg->device_id.c_str(),
                cfg->streams.size());
    return 0;
  }
  std::fputs(edgesync::ConfigReference().c_str(), stdout);
  return 0;
}

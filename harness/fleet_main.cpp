// edgesync-fleet: simulated payment terminals and EV chargers publishing
// JSON events over MQTT QoS 1 to a broker (see harness/fleet.h). On success it
// prints `published=N` on stdout once every event is acknowledged, writes
// the manifest if asked, and exits 0; SIGINT/SIGTERM end the run early the
// same way. Exit 1 when the broker cannot be reached or does not acknowledge,
// 2 on a bad command line.
#include <CLI/CLI.hpp>
#include <atomic>
#include <cinttypes>
#include <csignal>
#include <cstdio>

#include "harness/fleet.h"

namespace {

std::atomic<bool> g_stop{false};
static_assert(std::atomic<bool>::is_always_lock_free);

extern "C" void OnStopSignal(int) { g_stop.store(true); }

}  // namespace

int main(int argc, char** argv) {
  edgesync::harness::FleetOptions opts;
  opts.quiet = false;
  std::string manifest;
  CLI::App app{"Simulated payment terminals and EV chargers publishing over MQTT"};
  app.add_option("--host", opts.host, "broker host")->capture_default_str();
  app.add_option("--port", opts.port, "broker port")->capture_default_str();
  app.add_option("--terminals", opts.terminals, "payment terminals")->capture_default_str();
  app.add_option("--chargers", opts.chargers, "EV chargers")->capture_default_str();
  app.add_option("--rate", opts.rate, "events per second, whole fleet (0: unpaced, needs --count)")
      ->capture_default_str();
  app.add_option("--seconds", opts.seconds, "run length; ignored with --count")
      ->capture_default_str();
  app.add_option("--count", opts.count, "total events (wins over --seconds)");
  app.add_option("--seed", opts.seed, "random seed: same seed, same events")->capture_default_str();
  app.add_option("--client-id", opts.client_id, "MQTT client id (default edgesync-fleet-<pid>)");
  app.add_option("--max-inflight", opts.max_inflight, "unacknowledged publishes at most")
      ->capture_default_str();
  app.add_option("--manifest", manifest, "write device,published lines here at the end");
  app.add_flag("--quiet", opts.quiet, "no progress on stderr");
  CLI11_PARSE(app, argc, argv);

  struct sigaction sa = {};
  sa.sa_handler = OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  if (!opts.quiet) {
    std::fprintf(stderr, "edgesync-fleet: %d terminals, %d chargers -> %s:%d\n", opts.terminals,
                 opts.chargers, opts.host.c_str(), opts.port);
  }
  edgesync::Result<edgesync::harness::FleetReport> report = edgesync::harness::RunFleet(opts, &g_stop);
  if (!report.ok()) {
    std::fprintf(stderr, "edgesync-fleet: %s\n", report.status().ToString().c_str());
    return report.status().code() == edgesync::Status::Code::kInvalidArgument ? 2 : 1;
  }
  if (!manifest.empty()) {
    edgesync::Status s = edgesync::harness::WriteManifest(manifest, *report);
    if (!s.ok()) {
      std::fprintf(stderr, "edgesync-fleet: %s\n", s.ToString().c_str());
      return 1;
    }
  }
  if (!opts.quiet && report->interrupted) {
    std::fprintf(stderr, "edgesync-fleet: stopped by signal\n");
  }
  std::printf("published=%" PRIu64 "\n", report->total);
  std::fflush(stdout);
  return 0;
}

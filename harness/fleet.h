// The fleet simulator behind edgesync-fleet: payment terminals and EV
// chargers publishing realistic JSON events over MQTT, each event carrying
// its device id and a per-device sequence number (1, 2, 3, ... no gaps) so
// that edgesync-tally can tell exactly what arrived at the other end.
#pragma once

#include <atomic>
#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace edgesync::harness {

struct FleetEvent {
  std::string device;   // "term-0001", "cs-0001"
  uint64_t seq = 0;     // per device, from 1
  std::string topic;    // terminal/<id>/payment/authorization, charger/<id>/ocpp/<Action>, ...
  std::string payload;  // one JSON object with "device" and "seq", 200-400 bytes
};

// Terminals publish to terminal/<id>/payment/authorization,
// terminal/<id>/payment/capture (of an earlier approved authorization) and
// terminal/<id>/status. Chargers go through charging sessions as OCPP-J 1.6
// CALL frames, published to charger/<id>/ocpp/<Action> wrapped as
// {"device":..,"seq":..,"ts":..,"ocpp":[2,"<uid>","<Action>",{...}]}:
// StatusNotification, StartTransaction, MeterValues, StopTransaction,
// Heartbeat. The same (terminals, chargers, seed, start_time_ms) and the same
// at_ms arguments give the same events, byte for byte. Not thread-safe.
class FleetGenerator {
 public:
  // start_time_ms: Unix time in ms that event timestamps are based on.
  FleetGenerator(int terminals, int chargers, uint64_t seed, int64_t start_time_ms);
  ~FleetGenerator();
  FleetGenerator(const FleetGenerator&) = delete;
  FleetGenerator& operator=(const FleetGenerator&) = delete;

  // The next event of a device chosen at random, stamped at_ms after the start.
  FleetEvent Next(int64_t at_ms);
  // Device ids: terminals first, then chargers.
  const std::vector<std::string>& devices() const { return devices_; }

 private:
  struct Device;
  std::string MakeTerminalEvent(Device& d, const std::string& ts, std::string* topic);
  std::string MakeChargerEvent(Device& d, const std::string& ts, std::string* topic);
  uint64_t Uniform(uint64_t n);  // in [0, n)
  std::string Uuid();

  std::mt19937_64 rng_;
  int64_t start_time_ms_;
  std::vector<std::string> devices_;
  std::vector<Device> state_;
};

struct FleetOptions {
  std::string host = "127.0.0.1";
  int port = 1883;
  int terminals = 3;
  int chargers = 2;
  double rate = 50;     // events per second over the whole fleet; 0: as fast as acks allow
  double seconds = 30;  // run length when count is 0: count = rate * seconds
  uint64_t count = 0;   // total events; wins over seconds when not 0
  uint64_t seed = 1;
  int64_t start_time_ms = 0;  // base of event timestamps; 0: the wall clock at start
  std::string client_id;      // empty: "edgesync-fleet-<pid>"
  int qos = 1;
  int max_inflight = 100;
  bool quiet = true;  // false: a progress line on stderr every 5 s
};

struct FleetReport {
  // Per device, in FleetGenerator::devices() order: events published and
  // acknowledged by the broker (all of them, since RunFleet waits).
  std::vector<std::pair<std::string, uint64_t>> published;
  uint64_t total = 0;
  bool interrupted = false;  // *stop ended the run before `count`
};

// Publishes the fleet's events at opts.rate, paced on the steady clock, until
// `count` events are out or *stop (if given) turns true; then waits up to
// 60 s for every acknowledgement and disconnects. An error when connecting,
// publishing or awaiting acknowledgements fails the run (Unavailable).
Result<FleetReport> RunFleet(const FleetOptions& opts, const std::atomic<bool>* stop = nullptr);

// Writes `device,published` lines, one per device.
Status WriteManifest(const std::string& path, const FleetReport& report);

}  // namespace edgesync::harness

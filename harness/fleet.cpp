// Fleet simulator: event generation (deterministic for a seed) and the paced
// publishing run. Randomness is drawn from mt19937_64 through Uniform() only,
// whose output the C++ standard fixes, so a seed means the same events with
// every standard library.
#include "harness/fleet.h"

#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <thread>
#include <unordered_map>

#include "harness/publisher.h"

namespace edgesync::harness {
namespace {

using SteadyClock = std::chrono::steady_clock;

std::string Iso8601(int64_t unix_ms) {
  time_t secs = static_cast<time_t>(unix_ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

std::string Fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

std::string Padded(uint64_t v, int width) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%0*" PRIu64, width, v);
  return buf;
}

// Builds one JSON object; keys and string values are plain ASCII without
// characters that need escaping (all of them come from this file).
class JsonObject {
 public:
  JsonObject& Str(const char* key, const std::string& value) {
    Key(key);
    out_ += '"';
    out_ += value;
    out_ += '"';
    return *this;
  }
  JsonObject& Int(const char* key, int64_t value) {
    Key(key);
    out_ += std::to_string(value);
    return *this;
  }
  JsonObject& Bool(const char* key, bool value) {
    Key(key);
    out_ += value ? "true" : "false";
    return *this;
  }
  // `json` is already a JSON value.
  JsonObject& Raw(const char* key, const std::string& json) {
    Key(key);
    out_ += json;
    return *this;
  }
  std::string Done() { return out_ + "}"; }

 private:
  void Key(const char* key) {
    out_ += out_.size() == 1 ? "\"" : ",\"";
    out_ += key;
    out_ += "\":";
  }
  std::string out_ = "{";
};

std::string Quoted(const std::string& s) { return "\"" + s + "\""; }

struct CardBrand {
  const char* scheme;
  const char* bin;
  int length;
};
constexpr CardBrand kBrands[] = {
    {"VISA", "411111", 16}, {"MASTERCARD", "550000", 16}, {"AMEX", "378282", 15},
    {"DISCOVER", "601100", 16}, {"VISA", "476173", 16}, {"MASTERCARD", "222300", 16},
};
constexpr const char* kCurrencies[] = {"EUR", "GBP", "USD", "SEK", "CHF"};
constexpr const char* kEntryModes[] = {"contactless", "chip", "contactless", "mobile_wallet",
                                       "magstripe_fallback"};
constexpr const char* kDeclineCodes[] = {"05", "51", "54", "61", "91"};

}  // namespace

struct FleetGenerator::Device {
  std::string id;
  bool charger = false;
  int index = 0;
  uint64_t seq = 0;
  // Payment terminal.
  std::string merchant_id;
  std::string currency;
  uint64_t stan = 0;
  uint64_t batch = 1;
  bool has_pending = false;  // an approved authorization awaiting capture
  std::string pending_txn, pending_auth;
  int64_t pending_amount = 0;
  // Charger: phase of the charging session, see MakeChargerEvent.
  int phase = 0;
  int connector = 1;
  int64_t meter_wh = 0;
  int64_t transaction_id = 0;
  int meter_values_left = 0;
  double power_kw = 0;
  std::string id_tag;
};

FleetGenerator::FleetGenerator(int terminals, int chargers, uint64_t seed, int64_t start_time_ms)
    : rng_(seed), start_time_ms_(start_time_ms) {
  for (int i = 0; i < terminals + chargers; ++i) {
    Device d;
    d.charger = i >= terminals;
    d.index = d.charger ? i - terminals + 1 : i + 1;
    d.id = (d.charger ? "cs-" : "term-") + Padded(static_cast<uint64_t>(d.index), 4);
    if (!d.charger) {
      d.merchant_id = "MID" + Padded(100000 + Uniform(900000), 9);
      d.currency = kCurrencies[Uniform(std::size(kCurrencies))];
    } else {
      d.meter_wh = static_cast<int64_t>(100000 + Uniform(5000000));
    }
    devices_.push_back(d.id);
    state_.push_back(std::move(d));
  }
}

FleetGenerator::~FleetGenerator() = default;

uint64_t FleetGenerator::Uniform(uint64_t n) { return n == 0 ? 0 : rng_() % n; }

std::string FleetGenerator::Uuid() {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  for (int i = 0; i < 32; ++i) {
    if (i == 8 || i == 12 || i == 16 || i == 20) s += '-';
    char c = kHex[Uniform(16)];
    if (i == 12) c = '4';                    // version 4
    if (i == 16) c = kHex[8 + Uniform(4)];  // RFC 4122 variant
    s += c;
  }
  return s;
}

FleetEvent FleetGenerator::Next(int64_t at_ms) {
  Device& d = state_[Uniform(state_.size())];
  std::string ts = Iso8601(start_time_ms_ + at_ms);
  FleetEvent ev;
  ev.device = d.id;
  ev.seq = ++d.seq;
  ev.payload = d.charger ? MakeChargerEvent(d, ts, &ev.topic) : MakeTerminalEvent(d, ts, &ev.topic);
  return ev;
}

std::string FleetGenerator::MakeTerminalEvent(Device& d, const std::string& ts,
                                              std::string* topic) {
  std::string base = "terminal/" + d.id;
  JsonObject o;
  o.Str("device", d.id).Int("seq", static_cast<int64_t>(d.seq));

  if (d.has_pending && Uniform(100) < 75) {
    *topic = base + "/payment/capture";
    d.has_pending = false;
    int64_t tip = Uniform(4) == 0 ? static_cast<int64_t>(Uniform(300)) : 0;
    return o.Str("type", "capture")
        .Str("ts", ts)
        .Str("merchant_id", d.merchant_id)
        .Str("txn_id", d.pending_txn)
        .Str("auth_code", d.pending_auth)
        .Raw("amount", JsonObject()
                           .Int("value", d.pending_amount + tip)
                           .Int("tip", tip)
                           .Str("currency", d.currency)
                           .Done())
        .Str("batch", "B" + Padded(d.batch, 5))
        .Str("status", "captured")
        .Done();
  }

  if (Uniform(100) < 15) {
    *topic = base + "/status";
    int battery = 20 + static_cast<int>(Uniform(81));
    if (Uniform(50) == 0) ++d.batch;  // settlement closed the batch
    return o.Str("type", "status")
        .Str("ts", ts)
        .Str("firmware", "4.12." + std::to_string(d.index % 7))
        .Int("battery_pct", battery)
        .Bool("charging", battery < 40)
        .Int("signal_dbm", -55 - static_cast<int64_t>(Uniform(50)))
        .Str("network", Uniform(5) == 0 ? "wifi" : "lte")
        .Str("paper", Uniform(20) == 0 ? "low" : "ok")
        .Bool("tamper", false)
        .Int("uptime_s", static_cast<int64_t>(3600 + Uniform(900000)))
        .Raw("temperature_c", Fixed(28.0 + static_cast<double>(Uniform(150)) / 10.0, 1))
        .Int("offline_queue", static_cast<int64_t>(Uniform(3)))
        .Done();
  }

  *topic = base + "/payment/authorization";
  const CardBrand& brand = kBrands[Uniform(std::size(kBrands))];
  std::string last4 = Padded(Uniform(10000), 4);
  std::string pan = std::string(brand.bin) + std::string(static_cast<size_t>(brand.length - 10), '*') + last4;
  int64_t amount = 100 + static_cast<int64_t>(Uniform(25000));
  bool approved = Uniform(100) < 92;
  std::string txn = Uuid();
  std::string auth = approved ? Padded(Uniform(1000000), 6) : "";
  std::string code = approved ? "00" : kDeclineCodes[Uniform(std::size(kDeclineCodes))];
  ++d.stan;
  if (approved) {
    d.has_pending = true;
    d.pending_txn = txn;
    d.pending_auth = auth;
    d.pending_amount = amount;
  }
  return o.Str("type", "authorization")
      .Str("ts", ts)
      .Str("merchant_id", d.merchant_id)
      .Str("txn_id", txn)
      .Str("stan", Padded(d.stan % 1000000, 6))
      .Raw("amount", JsonObject().Int("value", amount).Str("currency", d.currency).Done())
      .Raw("card", JsonObject()
                       .Str("pan", pan)
                       .Str("scheme", brand.scheme)
                       .Str("entry_mode", kEntryModes[Uniform(std::size(kEntryModes))])
                       .Done())
      .Raw("result", JsonObject()
                         .Bool("approved", approved)
                         .Str("response_code", code)
                         .Str("auth_code", auth)
                         .Done())
      .Done();
}

// A charging session: Available -> StatusNotification(Preparing) ->
// StartTransaction -> StatusNotification(Charging) -> MeterValues x 3..8 ->
// StopTransaction -> StatusNotification(Available), with Heartbeats between.
std::string FleetGenerator::MakeChargerEvent(Device& d, const std::string& ts,
                                             std::string* topic) {
  std::string action;
  JsonObject call;
  auto status = [&](const char* s) {
    action = "StatusNotification";
    call.Int("connectorId", d.connector)
        .Str("errorCode", "NoError")
        .Str("status", s)
        .Str("timestamp", ts)
        .Str("vendorId", "EdgeVolt")
        .Str("info", "");
  };
  bool heartbeat = (d.phase == 0 || d.phase == 3) && Uniform(100) < 12;
  if (heartbeat) {
    action = "Heartbeat";
  } else {
    switch (d.phase) {
      case 0:
        d.connector = 1 + static_cast<int>(Uniform(2));
        status("Preparing");
        d.phase = 1;
        break;
      case 1:
        action = "StartTransaction";
        d.id_tag = "04" + Padded(Uniform(100000000), 8);
        d.transaction_id = static_cast<int64_t>(d.index) * 100000 + static_cast<int64_t>(d.seq);
        d.meter_values_left = 3 + static_cast<int>(Uniform(6));
        d.power_kw = 3.6 + static_cast<double>(Uniform(186)) / 10.0;
        call.Int("connectorId", d.connector)
            .Str("idTag", d.id_tag)
            .Int("meterStart", d.meter_wh)
            .Int("reservationId", 0)
            .Str("timestamp", ts);
        d.phase = 2;
        break;
      case 2:
        status("Charging");
        d.phase = 3;
        break;
      case 3: {
        action = "MeterValues";
        d.meter_wh += static_cast<int64_t>(d.power_kw * 1000.0 / 60.0) + static_cast<int64_t>(Uniform(50));
        std::string sampled =
            "[{\"value\":\"" + std::to_string(d.meter_wh) +
            "\",\"measurand\":\"Energy.Active.Import.Register\",\"unit\":\"Wh\"},{\"value\":\"" +
            Fixed(d.power_kw, 1) + "\",\"measurand\":\"Power.Active.Import\",\"unit\":\"kW\"}]";
        call.Int("connectorId", d.connector)
            .Int("transactionId", d.transaction_id)
            .Raw("meterValue",
                 "[" + JsonObject().Str("timestamp", ts).Raw("sampledValue", sampled).Done() + "]");
        if (--d.meter_values_left == 0) d.phase = 4;
        break;
      }
      case 4:
        action = "StopTransaction";
        call.Int("transactionId", d.transaction_id)
            .Str("idTag", d.id_tag)
            .Int("meterStop", d.meter_wh)
            .Str("timestamp", ts)
            .Str("reason", Uniform(10) == 0 ? "EVDisconnected" : "Local");
        d.phase = 5;
        break;
      default:
        status("Available");
        d.phase = 0;
        break;
    }
  }
  *topic = "charger/" + d.id + "/ocpp/" + action;
  std::string frame = "[2," + Quoted(Uuid()) + "," + Quoted(action) + "," + call.Done() + "]";
  JsonObject o;
  o.Str("device", d.id).Int("seq", static_cast<int64_t>(d.seq)).Str("ts", ts);
  if (action == "Heartbeat") {
    // A heartbeat's frame is tiny; the station identity makes up the rest.
    o.Raw("station", JsonObject()
                         .Str("vendor", "EdgeVolt")
                         .Str("model", "AC22-2")
                         .Str("serial", "EV" + Padded(static_cast<uint64_t>(d.index) * 7919, 8))
                         .Str("firmware", "1.8." + std::to_string(d.index % 5))
                         .Done());
  }
  return o.Raw("ocpp", frame).Done();
}

Result<FleetReport> RunFleet(const FleetOptions& opts, const std::atomic<bool>* stop) {
  if (opts.terminals < 0 || opts.chargers < 0 || opts.terminals + opts.chargers == 0) {
    return Status::InvalidArgument("the fleet needs at least one terminal or charger");
  }
  if (opts.rate < 0 || opts.seconds < 0) {
    return Status::InvalidArgument("rate and seconds must not be negative");
  }
  if (opts.count == 0 && opts.rate == 0) {
    return Status::InvalidArgument("rate 0 (unpaced) needs a count");
  }
  uint64_t count = opts.count != 0 ? opts.count : static_cast<uint64_t>(opts.rate * opts.seconds);
  int64_t start_ms = opts.start_time_ms;
  if (start_ms == 0) {
    start_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
                   .count();
  }
  std::string client_id =
      opts.client_id.empty() ? "edgesync-fleet-" + std::to_string(::getpid()) : opts.client_id;
  Result<std::unique_ptr<Publisher>> pub =
      Publisher::Connect(opts.host, opts.port, client_id, opts.max_inflight);
  if (!pub.ok()) return pub.status();

  FleetGenerator gen(opts.terminals, opts.chargers, opts.seed, start_ms);
  std::vector<uint64_t> published(gen.devices().size(), 0);
  std::unordered_map<std::string, size_t> index_of;
  for (size_t k = 0; k < gen.devices().size(); ++k) index_of[gen.devices()[k]] = k;
  FleetReport report;
  auto stopped = [&] { return stop != nullptr && stop->load(std::memory_order_relaxed); };

  SteadyClock::time_point start = SteadyClock::now();
  SteadyClock::time_point next_progress = start + std::chrono::seconds(5);
  for (uint64_t i = 0; i < count; ++i) {
    int64_t offset_ms = 0;
    if (opts.rate > 0) {
      auto due = start + std::chrono::duration_cast<SteadyClock::duration>(
                             std::chrono::duration<double>(static_cast<double>(i) / opts.rate));
      // Sleeps in short slices so that a stop request is seen promptly.
      while (!stopped() && SteadyClock::now() < due) {
        std::this_thread::sleep_until(std::min(due, SteadyClock::now() + std::chrono::milliseconds(100)));
      }
      offset_ms = static_cast<int64_t>(static_cast<double>(i) * 1000.0 / opts.rate);
    } else {
      offset_ms = static_cast<int64_t>(i);
    }
    if (stopped()) {
      report.interrupted = true;
      break;
    }
    FleetEvent ev = gen.Next(offset_ms);
    Status s = (*pub)->Publish(ev.topic, ev.payload, opts.qos);
    if (!s.ok()) {
      return Status::Unavailable("publishing event " + std::to_string(i + 1) + " of " +
                                 std::to_string(count) + ": " + s.message());
    }
    ++published[index_of.at(ev.device)];
    ++report.total;
    if (!opts.quiet && SteadyClock::now() >= next_progress) {
      next_progress += std::chrono::seconds(5);
      std::fprintf(stderr, "edgesync-fleet: %" PRIu64 " of %" PRIu64 " events published, %" PRIu64
                   " acknowledged\n", report.total, count, (*pub)->acked());
    }
  }
  if (opts.qos > 0) {
    Status s = (*pub)->WaitAcked(std::chrono::seconds(60));
    if (!s.ok()) return Status::Unavailable("awaiting PUBACKs: " + s.message());
  }
  EDGESYNC_RETURN_IF_ERROR((*pub)->Disconnect());
  for (size_t k = 0; k < published.size(); ++k) {
    report.published.emplace_back(gen.devices()[k], published[k]);
  }
  return report;
}

Status WriteManifest(const std::string& path, const FleetReport& report) {
  std::ofstream out(path, std::ios::trunc);
  for (const auto& [device, n] : report.published) out << device << ',' << n << '\n';
  out.flush();
  if (!out) return Status::IOError("cannot write manifest " + path);
  return Status::OK();
}

}  // namespace edgesync::harness

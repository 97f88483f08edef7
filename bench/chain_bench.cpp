// edgesync-bench-chain: events/s through the fleet profiles' chains on one
// core (Google Benchmark), next to parse-only with the same JSON library.
//
//   payment-terminal: the profile's payments chain (rules "payment-shape",
//     then pci on every stream) over ~300-byte payment events, one in ten
//     carrying a full card number to mask;
//   ev-charger: the profile's charging chain (ocpp, then rules
//     "charging-shape") over ~300-byte OCPP-J messages as a gateway wraps
//     them (MeterValues, StatusNotification, transactions, heartbeats).
// Each event is parsed (plugins/json.h), run through the chain and written
// back, as the agent does between the broker and the journal. Baselines, on
// the same events in the same run: Json::Parse alone (the chain's JSON
// library), and simdjson's DOM parser for reference.
//
// Plain Google Benchmark flags work (--benchmark_filter=...). With
// --markdown it runs each benchmark --runs times (default 15; repetitions
// interleaved in random order) and prints the medians as a Markdown section
// for bench/RESULTS.md; with --series DIR as well, the same medians as
// DIR/chain_throughput.tsv (bench/plots/chain_throughput.gp).
#include <benchmark/benchmark.h>
#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <random>

#include "agent/config.h"
#include "bench/payment_events.h"
#include "plugins/json.h"

namespace edgesync::bench {
namespace {

constexpr int kEvents = 4096;  // distinct events, cycled

struct Corpus {
  std::vector<std::string> topics, payloads;
  size_t bytes = 0;
};

Corpus PaymentEvents() {
  Corpus c;
  EventGenerator gen(42);
  for (int i = 0; i < kEvents; ++i) {
    EventGenerator::Event e = gen.Next();
    if (i % 10 == 0) {  // a terminal app that logs the full card number
      e.payload.insert(e.payload.size() - 1, R"(,"pan":"4111111111111111")");
    }
    c.bytes += e.payload.size();
    c.topics.push_back(e.topic);
    c.payloads.push_back(e.payload);
  }
  return c;
}

Corpus ChargerEvents() {
  Corpus c;
  std::mt19937_64 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<uint64_t>(n)); };
  for (int i = 0; i < kEvents; ++i) {
    const std::string id = "cs-" + std::to_string(1000 + pick(64));
    const std::string ts = "2026-11-22T10:" + std::to_string(10 + pick(50)) + ":" + std::to_string(10 + pick(50)) + "Z";
    const std::string uid = std::to_string(rng());
    std::string action, body;
    switch (pick(10)) {
      case 0:
        action = "Heartbeat";
        body = "{}";
        break;
      case 1:
        action = "StatusNotification";
        body = R"({"connectorId":1,"errorCode":"NoError","status":"Charging","timestamp":")" + ts +
               R"(","info":"ok","vendorId":"EdgeVolt"})";
        break;
      case 2:
        action = "StartTransaction";
        body = R"({"connectorId":1,"idTag":"04E91C2A)" + std::to_string(pick(100)) + R"(","meterStart":)" +
               std::to_string(pick(100000)) + R"(,"timestamp":")" + ts + R"("})";
        break;
      default:
        action = "MeterValues";
        body = R"({"connectorId":1,"transactionId":)" + std::to_string(pick(100000)) +
               R"(,"meterValue":[{"timestamp":")" + ts + R"(","sampledValue":[{"value":")" +
               std::to_string(pick(9000000)) +
               R"(","measurand":"Energy.Active.Import.Register","unit":"Wh"},{"value":")" +
               std::to_string(pick(32)) + R"(.)" + std::to_string(pick(10)) +
               R"(","measurand":"Current.Import","unit":"A"}]}]})";
    }
    std::string payload = R"({"device":")" + id + R"(","seq":)" + std::to_string(i + 1) + R"(,"ts":")" + ts +
                          R"(","ocpp":[2,")" + uid + R"(",")" + action + R"(",)" + body + "]}";
    c.bytes += payload.size();
    c.topics.push_back("charger/" + id + "/ocpp/" + action);
    c.payloads.push_back(std::move(payload));
  }
  return c;
}

// The chain of stream `stream` in `profile`, as the agent builds it.
std::vector<std::shared_ptr<const Plugin>> ProfileChain(const std::string& profile, const std::string& stream) {
  const std::string device = "[agent]\ndevice_id = \"bench\"\nprofile = \"" + std::string(EDGESYNC_SOURCE_DIR) +
                             "/plugins/profiles/" + profile + "\"\n[kafka]\nbrokers = \"127.0.0.1:9092\"\n";
  Result<Config> c = ParseConfig(device, "bench.toml");
  if (!c.ok()) {
    std::fprintf(stderr, "edgesync-bench-chain: %s\n", c.status().ToString().c_str());
    std::exit(2);
  }
  for (size_t i = 0; i < c->streams.size(); ++i) {
    if (c->streams[i].name == stream) return c->Chain(i);
  }
  std::fprintf(stderr, "edgesync-bench-chain: %s has no stream %s\n", profile.c_str(), stream.c_str());
  std::exit(2);
}

const Corpus& Payments() {
  static const Corpus c = PaymentEvents();
  return c;
}
const Corpus& Chargers() {
  static const Corpus c = ChargerEvents();
  return c;
}

void ParseOnly(benchmark::State& state, const Corpus& c) {
  Json json;
  size_t i = 0;
  for (auto _ : state) {
    Status st = json.Parse(c.payloads[i]);
    benchmark::DoNotOptimize(st);
    if (++i == c.payloads.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * c.bytes / c.payloads.size()));
}

void SimdjsonDom(benchmark::State& state, const Corpus& c) {
  simdjson::dom::parser parser;
  std::vector<simdjson::padded_string> padded;
  for (const std::string& p : c.payloads) padded.emplace_back(p);
  size_t i = 0;
  for (auto _ : state) {
    simdjson::dom::element doc;
    auto err = parser.parse(padded[i]).get(doc);
    benchmark::DoNotOptimize(err);
    if (++i == padded.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}

void RunChain(benchmark::State& state, const Corpus& c, const std::vector<std::shared_ptr<const Plugin>>& chain,
              const std::string& stream) {
  Json json;
  std::string out;
  std::vector<std::pair<std::string, std::string>> props;
  size_t i = 0, kept = 0;
  for (auto _ : state) {
    if (!json.Parse(c.payloads[i]).ok()) state.SkipWithError("invalid event");
    Event e;
    e.topic = c.topics[i];
    e.json = &json;
    e.properties = &props;
    e.route.stream = stream;
    Action a = Action::kKeep;
    for (const auto& p : chain) {
      if ((a = p->Process(e)) != Action::kKeep) break;
    }
    if (a == Action::kKeep) {
      json.Serialize(&out);
      ++kept;
    }
    benchmark::DoNotOptimize(out.data());
    if (++i == c.payloads.size()) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["kept"] = benchmark::Counter(static_cast<double>(kept) / static_cast<double>(state.iterations()));
}

void BM_Payment_ParseOnly(benchmark::State& s) { ParseOnly(s, Payments()); }
void BM_Payment_SimdjsonDom(benchmark::State& s) { SimdjsonDom(s, Payments()); }
void BM_Payment_Chain(benchmark::State& s) {
  static const auto chain = ProfileChain("payment-terminal.toml", "payments");
  RunChain(s, Payments(), chain, "payments");
}
void BM_Charger_ParseOnly(benchmark::State& s) { ParseOnly(s, Chargers()); }
void BM_Charger_SimdjsonDom(benchmark::State& s) { SimdjsonDom(s, Chargers()); }
void BM_Charger_Chain(benchmark::State& s) {
  static const auto chain = ProfileChain("ev-charger.toml", "charging");
  RunChain(s, Chargers(), chain, "charging");
}

BENCHMARK(BM_Payment_ParseOnly);
BENCHMARK(BM_Payment_SimdjsonDom);
BENCHMARK(BM_Payment_Chain);
BENCHMARK(BM_Charger_ParseOnly);
BENCHMARK(BM_Charger_SimdjsonDom);
BENCHMARK(BM_Charger_Chain);

// Keeps the median of each benchmark's repetitions (with --runs 1, which
// makes no aggregates, the one run).
class Medians : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if ((r.run_type == Run::RT_Aggregate && r.aggregate_name == "median") ||
          (r.run_type == Run::RT_Iteration && r.repetitions <= 1)) {
        auto it = r.counters.find("items_per_second");
        if (it != r.counters.end()) per_sec[r.run_name.function_name] = it->second;
      }
    }
  }
  std::map<std::string, double> per_sec;
};

std::string Thousands(double v) {
  const std::string digits = std::to_string(static_cast<uint64_t>(v + 0.5));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out.push_back(',');
    out.push_back(digits[i]);
  }
  return out;
}

std::string Ratio(double a, double b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", b > 0 ? a / b : 0.0);
  return buf;
}

}  // namespace
}  // namespace edgesync::bench

int main(int argc, char** argv) {
  using namespace edgesync::bench;
  bool markdown = false;
  int runs = 15;
  std::string series_dir;  // with --markdown only
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    if (std::strcmp(argv[i], "--markdown") == 0) {
      markdown = true;
    } else if (std::strcmp(argv[i], "--runs") == 0 && i + 1 < argc) {
      runs = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--series") == 0 && i + 1 < argc) {
      series_dir = argv[++i];
    } else {
      args.push_back(argv[i]);
    }
  }
  std::string reps = "--benchmark_repetitions=" + std::to_string(runs);
  std::string only_aggregates = "--benchmark_report_aggregates_only=true";
  // The machine is shared: repetitions of the six benchmarks interleaved in
  // random order, so a noisy moment hits chain and baseline alike.
  std::string interleave = "--benchmark_enable_random_interleaving=true";
  std::string min_time = "--benchmark_min_time=0.2";
  if (markdown) {
    for (std::string* a : {&reps, &only_aggregates, &interleave, &min_time}) args.push_back(a->data());
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (benchmark::ReportUnrecognizedArguments(n, args.data())) return 2;
  Medians reporter;
  if (!markdown) {
    benchmark::RunSpecifiedBenchmarks();
    return 0;
  }
  // The console output goes to stderr; stdout gets the Markdown.
  reporter.SetOutputStream(&std::cerr);
  reporter.SetErrorStream(&std::cerr);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  auto& m = reporter.per_sec;
  const Corpus& p = Payments();
  const Corpus& c = Chargers();
  std::printf("## Plugin chains (edgesync-bench-chain, Google Benchmark)\n\n");
  std::printf("Events/s on one core through the fleet profiles' chains: each event parsed\n"
              "(plugins/json.h), run through the chain, written back. payment-terminal: the\n"
              "payments stream's chain (rules payment-shape + pci) over %zu-byte payment\n"
              "events on average, one in ten with a full card number to mask. ev-charger:\n"
              "the charging stream's chain (ocpp + rules charging-shape) over %zu-byte OCPP-J\n"
              "messages on average. Baselines, same events, same run: parse-only with the\n"
              "chain's JSON library (Json::Parse), and simdjson's DOM parser. Medians of %d\n"
              "repetitions. Goal: at least 500,000 events/s and 0.5 of parse-only.\n\n",
              p.bytes / p.payloads.size(), c.bytes / c.payloads.size(), runs);
  std::printf("| chain | events/s | parse-only, same library | ratio | simdjson DOM parse | ratio |\n");
  std::printf("|---|---|---|---|---|---|\n");
  std::printf("| payment-terminal (rules + pci) | %s | %s | %s | %s | %s |\n", Thousands(m["BM_Payment_Chain"]).c_str(),
              Thousands(m["BM_Payment_ParseOnly"]).c_str(), Ratio(m["BM_Payment_Chain"], m["BM_Payment_ParseOnly"]).c_str(),
              Thousands(m["BM_Payment_SimdjsonDom"]).c_str(),
              Ratio(m["BM_Payment_Chain"], m["BM_Payment_SimdjsonDom"]).c_str());
  std::printf("| ev-charger (ocpp + rules) | %s | %s | %s | %s | %s |\n", Thousands(m["BM_Charger_Chain"]).c_str(),
              Thousands(m["BM_Charger_ParseOnly"]).c_str(), Ratio(m["BM_Charger_Chain"], m["BM_Charger_ParseOnly"]).c_str(),
              Thousands(m["BM_Charger_SimdjsonDom"]).c_str(),
              Ratio(m["BM_Charger_Chain"], m["BM_Charger_SimdjsonDom"]).c_str());
  if (!series_dir.empty()) {
    // One row a chain, its events/s beside its two baselines (gnuplot's
    // clustered histogram; the labels are quoted because of their spaces).
    auto PerSec = [](double v) { return static_cast<uint64_t>(v + 0.5); };
    std::ofstream out(series_dir + "/chain_throughput.tsv");
    out << "# edgesync-bench-chain: events/s on one core, medians of " << runs << " repetitions\n"
        << "# chain\tchain_events_per_sec\tparse_only_events_per_sec\tsimdjson_dom_events_per_sec\n";
    using Row = std::pair<const char*, const char*>;  // label, benchmark name part
    for (const auto& [label, name] :
         {Row{"payment-terminal (rules + pci)", "Payment"}, Row{"ev-charger (ocpp + rules)", "Charger"}}) {
      const std::string bm = std::string("BM_") + name + "_";
      out << '"' << label << "\"\t" << PerSec(m[bm + "Chain"]) << '\t' << PerSec(m[bm + "ParseOnly"]) << '\t'
          << PerSec(m[bm + "SimdjsonDom"]) << '\n';
    }
    out.close();
    if (!out) {
      std::fprintf(stderr, "bench: cannot write %s/chain_throughput.tsv\n", series_dir.c_str());
      return 1;
    }
  }
  return 0;
}

#include "agent/status_cli.h"

#include <simdjson.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <map>
#include <optional>
#include <thread>

#include "agent/config.h"
#include "agent/fleet.h"
#include "agent/health.h"
#include "agent/pipeline.h"
#include "agent/status_socket.h"
#include "base/env.h"
#include "format/identity.h"
#include "buffer/store.h"

namespace edgesync {

namespace {

constexpr size_t kWidth = 80;

std::string Bytes(uint64_t n) {
  char buf[32];
  if (n < 1024) {
    std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(n));
  } else if (n < (1ull << 20)) {
    std::snprintf(buf, sizeof(buf), "%.1f KiB", static_cast<double>(n) / 1024);
  } else if (n < (1ull << 30)) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", static_cast<double>(n) / (1 << 20));
  } else {
    std::snprintf(buf, sizeof(buf), "%.1f GiB", static_cast<double>(n) / (1 << 30));
  }
  return buf;
}

// "42s", "13m", "5h", "3d": short enough for a column.
std::string Duration(int64_t secs) {
  if (secs < 0) secs = 0;
  if (secs < 120) return std::to_string(secs) + "s";
  if (secs < 7200) return std::to_string(secs / 60) + "m";
  if (secs < 172800) return std::to_string(secs / 3600) + "h";
  return std::to_string(secs / 86400) + "d";
}

std::string Rate(double r) {
  char buf[32];
  if (r < 10000) {
    std::snprintf(buf, sizeof(buf), "%.1f", r);
  } else if (r < 1e6) {
    std::snprintf(buf, sizeof(buf), "%.0fk", r / 1e3);
  } else {
    std::snprintf(buf, sizeof(buf), "%.1fM", r / 1e6);
  }
  return buf;
}

std::string Fit(std::string s, size_t width) {
  if (s.size() > width) s = s.substr(0, width - 1) + "~";
  return s;
}

// Reading the document: absent or mistyped fields read as empty.
uint64_t U(simdjson::dom::element e, const char* key) {
  uint64_t v = 0;
  return e[key].get(v) == simdjson::SUCCESS ? v : 0;
}
double D(simdjson::dom::element e, const char* key) {
  double v = 0;
  return e[key].get(v) == simdjson::SUCCESS ? v : 0;
}
std::string S(simdjson::dom::element e, const char* key) {
  std::string_view v;
  return e[key].get(v) == simdjson::SUCCESS ? std::string(v) : std::string();
}
bool B(simdjson::dom::element e, const char* key) {
  bool v = false;
  return e[key].get(v) == simdjson::SUCCESS && v;
}

// Microseconds since the epoch of "YYYY-MM-DDTHH:MM:SS[.ffffff]Z", the form
// the agent writes (FormatRfc3339Micros); nullopt for anything else.
std::optional<int64_t> ParseUtcMicros(std::string_view t) {
  std::tm tm{};
  int consumed = 0;
  const std::string s(t);
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
                  &tm.tm_min, &tm.tm_sec, &consumed) != 6) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t micros = 0;
  size_t i = static_cast<size_t>(consumed);
  if (i < s.size() && s[i] == '.') {
    int64_t scale = 100000;
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i, scale /= 10) micros += (s[i] - '0') * scale;
  }
  if (i + 1 != s.size() || s[i] != 'Z') return std::nullopt;
  return static_cast<int64_t>(::timegm(&tm)) * 1'000'000 + micros;
}

// "3m ago" for an RFC 3339 time the agent wrote, "never" for null.
std::string Ago(simdjson::dom::element e, const char* key, int64_t now_us) {
  std::string_view t;
  if (e[key].get(t) != simdjson::SUCCESS) return "never";
  std::optional<int64_t> us = ParseUtcMicros(t);
  if (!us) return std::string(t);
  return Duration((now_us - *us) / 1'000'000) + " ago";
}

void Line(std::string* out, const std::string& label, const std::string& text) {
  std::string l = label;
  l.resize(9, ' ');
  *out += Fit(l + text, kWidth) + "\n";
}

}  // namespace

Result<std::string> FormatStatusText(std::string_view json, int64_t now_us) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(json.data(), json.size()).get(doc) != simdjson::SUCCESS || !doc.is_object()) {
    return Status::InvalidArgument("the agent's answer is not a JSON object");
  }
  const std::string state = S(doc, "state");
  const bool live = S(doc, "kind") == "health";
  std::string out;
  std::string head = "edgesync";
  if (live) head += " " + S(doc, "version");
  head += ", device " + S(doc, "device");
  if (!S(doc, "device_key").empty()) head += " (key " + S(doc, "device_key") + ")";
  head += ": " + state;
  if (live) head += " for " + Duration(static_cast<int64_t>(U(doc, "uptime_s")));
  out += Fit(head, kWidth) + "\n";
  if (!live) out += Fit("(no agent answered: figures read from the store, read-only)", kWidth) + "\n";
  out += "\n";

  simdjson::dom::element e;
  if (live && doc["mqtt"].get(e) == simdjson::SUCCESS) {
    Line(&out, "mqtt", S(e, "state") + (B(e, "subscribed") ? ", subscribed" : ", not subscribed") + " (" +
                           std::to_string(U(e, "connects")) + " connects, " +
                           std::to_string(U(e, "connection_failures")) + " failures)" +
                           (B(e, "backpressure") ? ", BACKPRESSURE" : ""));
  }
  if (live && doc["kafka"].get(e) == simdjson::SUCCESS) {
    std::string k = S(e, "state") + ", " + std::to_string(U(e, "in_flight")) + " in flight, last delivery " +
                    Ago(e, "last_delivery", now_us);
    simdjson::dom::array blocked;
    if (e["blocked_topics"].get(blocked) == simdjson::SUCCESS) {
      for (simdjson::dom::element b : blocked) k += "; BLOCKED " + S(b, "topic");
    }
    Line(&out, "kafka", k);
  }
  if (doc["buffered"].get(e) == simdjson::SUCCESS) {
    simdjson::dom::element g;
    uint64_t gaps = 0, gap_events = 0;
    if (doc["gaps"].get(g) == simdjson::SUCCESS) {
      gaps = U(g, "count");
      gap_events = U(g, "events");
    }
    Line(&out, "buffer", std::to_string(U(e, "batches")) + " batches, " + std::to_string(U(e, "events")) +
                             " events, " + Bytes(U(e, "bytes")) + ", oldest " +
                             Duration(static_cast<int64_t>(U(e, "oldest_age_s"))) + "; " +
                             std::to_string(gaps) + " gaps (" + std::to_string(gap_events) + " events)");
  }
  if (doc["fleet"].get(e) == simdjson::SUCCESS && e.is_object()) {
    const uint64_t version = U(e, "version");
    std::string f = version == 0 ? "no bundle (the device file alone)" : "bundle " + std::to_string(version);
    std::string_view fleet_state;
    if (e["state"].get(fleet_state) == simdjson::SUCCESS) {
      const uint64_t bundle = U(e, "bundle");
      f += "; " + (bundle == 0 ? std::string("a bundle") : "bundle " + std::to_string(bundle)) + " " +
           std::string(fleet_state) + " " + Ago(e, "since", now_us);
    }
    Line(&out, "fleet", f);
    // The reason in full, wrapped: it is what the operator acts on.
    std::string_view reason;
    if (e["reason"].get(reason) == simdjson::SUCCESS) {
      std::string line = "why:";
      for (size_t at = 0; at < reason.size();) {
        size_t end = reason.find(' ', at);
        if (end == std::string_view::npos) end = reason.size();
        const std::string_view word = reason.substr(at, end - at);
        if (line.size() + 1 + word.size() > kWidth - 9 && line.size() > 4) {
          Line(&out, "", line);
          line = "    ";
        }
        line += " " + std::string(word);
        at = end + 1;
      }
      Line(&out, "", line);
    }
  }
  if (live) {
    std::string_view wedged;
    if (doc["wedged"].get(wedged) == simdjson::SUCCESS) Line(&out, "WEDGED", std::string(wedged));
    if (doc["last_error"].get(e) == simdjson::SUCCESS) {
      std::string label = "errors";
      bool any = false;
      for (const char* stage : {"ingest", "buffer", "upload"}) {
        simdjson::dom::element err;
        if (e[stage].get(err) != simdjson::SUCCESS || !err.is_object()) continue;
        std::string s = stage;
        s.resize(7, ' ');
        Line(&out, label, s + Ago(err, "at", now_us) + ": " + S(err, "error"));
        label.clear();
        any = true;
      }
      if (!any) Line(&out, label, "none since start");
    }
  }

  simdjson::dom::array streams;
  if (doc["streams"].get(streams) == simdjson::SUCCESS) {
    char row[160];
    std::snprintf(row, sizeof(row), "\n%-16s %7s %8s %9s %6s %6s %6s %9s %4s\n", "STREAM", "BATCHES", "EVENTS",
                  "BYTES", "OLDEST", "IN/S", "OUT/S", "UPLOADED", "GAPS");
    out += row;
    for (simdjson::dom::element st : streams) {
      simdjson::dom::element b, g;
      if (st["buffered"].get(b) != simdjson::SUCCESS) continue;
      const uint64_t gaps = st["gaps"].get(g) == simdjson::SUCCESS ? U(g, "count") : 0;
      const bool has_oldest = U(b, "batches") > 0;
      std::snprintf(row, sizeof(row), "%-16s %7llu %8llu %9s %6s %6s %6s %9s %4llu\n",
                    Fit(S(st, "name"), 16).c_str(), static_cast<unsigned long long>(U(b, "batches")),
                    static_cast<unsigned long long>(U(b, "events")), Bytes(U(b, "bytes")).c_str(),
                    has_oldest ? Duration(static_cast<int64_t>(U(b, "oldest_age_s"))).c_str() : "-",
                    live ? Rate(D(st, "in_per_s")).c_str() : "-", live ? Rate(D(st, "out_per_s")).c_str() : "-",
                    live ? Fit(Ago(st, "last_upload", now_us), 9).c_str() : "-", static_cast<unsigned long long>(gaps));
      out += row;
    }
  }
  return out;
}

Result<std::string> StoredStatusJson(const std::string& state_dir, const std::string& device_id,
                                     const std::string& device_key, int64_t now_us) {
  Result<std::unique_ptr<Store>> store = Store::OpenReadOnly(Env::Default(), state_dir + "/store.db");
  if (!store.ok()) return store.status();
  Result<std::map<std::string, StoreCounts>> by_lane = (*store)->CountsByStream();
  if (!by_lane.ok()) return by_lane.status();
  Result<std::vector<Gap>> gaps = (*store)->Gaps();
  if (!gaps.ok()) return gaps.status();
  // Lanes folded into their streams, as the running agent reports them.
  AgentStats s;
  auto stream = [&s](const std::string& lane) -> StreamStats& {
    const std::string name = StreamOfLane(lane);
    for (StreamStats& st : s.streams) {
      if (st.name == name) return st;
    }
    s.streams.push_back(StreamStats{.name = name});
    return s.streams.back();
  };
  for (const auto& [lane, c] : *by_lane) {
    AddCounts(c, &stream(lane).buffered);
    AddCounts(c, &s.buffered);
  }
  for (const Gap& g : *gaps) {
    StreamStats& st = stream(g.stream);
    ++st.gaps;
    st.gap_events += g.events;
    ++s.gaps;
    s.gap_events += g.events;
  }
  Result<FleetStatus> fleet = ReadFleetStatus(Env::Default(), state_dir);
  if (fleet.ok()) s.fleet = *fleet;
  // The key's id from its enrolment file, which anyone may read.
  std::string key_id;
  if (!device_key.empty()) {
    Result<std::string> text = Env::Default()->ReadFile(EnrolmentPath(device_key), kMaxKeyFileBytes);
    Result<Enrolment> e = text.ok() ? ParseEnrolment(*text, "") : Result<Enrolment>(text.status());
    if (e.ok()) key_id = crypto::Hex(e->key.key_id());
  }
  return StoredStatusDocument(s, device_id, now_us, key_id);
}

int StatusCommand(const StatusOptions& o) {
  const std::string socket = o.state_dir + "/status.sock";
  for (;;) {
    const int64_t now_us = Env::Default()->NowMicros();
    int code = 0;
    Result<std::string> doc = QueryStatusSocket(socket, 5000);
    if (!doc.ok() && doc.status().code() == Status::Code::kUnavailable) {
      code = 3;
      doc = StoredStatusJson(o.state_dir, o.device_id, DeviceKeyPath(o.state_dir, o.device_key), now_us);
      if (!doc.ok()) {
        std::fprintf(stderr, "edgesync status: no agent answers on %s, and its store cannot be read: %s\n",
                     socket.c_str(), doc.status().ToString().c_str());
        return 1;
      }
    } else if (!doc.ok()) {
      std::fprintf(stderr, "edgesync status: %s\n", doc.status().ToString().c_str());
      return 1;
    }
    std::string text;
    if (o.json) {
      text = *doc + "\n";
    } else {
      Result<std::string> t = FormatStatusText(*doc, now_us);
      if (!t.ok()) {
        std::fprintf(stderr, "edgesync status: %s\n", t.status().ToString().c_str());
        return 1;
      }
      text = *t;
      if (o.watch && ::isatty(STDOUT_FILENO)) text = "\x1b[H\x1b[2J" + text;  // redraw in place
    }
    std::fputs(text.c_str(), stdout);
    std::fflush(stdout);
    if (!o.watch) return code;
    Env::Default()->SleepForMicros(static_cast<int64_t>(o.interval * 1e6));
  }
}

}  // namespace edgesync

#include "agent/health.h"

#include <cstdio>

#include "base/json_text.h"

namespace edgesync {
namespace {

// A small JSON object writer: fields in the order written.
class Obj {
 public:
  explicit Obj(std::string* out) : out_(out) { out_->push_back('{'); }
  Obj& Num(const char* key, uint64_t v) { return Raw(key, std::to_string(v)); }
  Obj& Int(const char* key, int64_t v) { return Raw(key, std::to_string(v)); }
  Obj& Bool(const char* key, bool v) { return Raw(key, v ? "true" : "false"); }
  Obj& Rate(const char* key, double v) {  // one decimal is enough for events/s
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f", v);
    return Raw(key, buf);
  }
  Obj& Str(const char* key, std::string_view v) {
    Key(key);
    AppendJsonString(v, out_);
    return *this;
  }
  Obj& Time(const char* key, int64_t us) {  // null when never
    return us > 0 ? Str(key, FormatRfc3339Micros(us)) : Raw(key, "null");
  }
  Obj& Error(const char* key, const ErrorNote& e) {
    if (e.what.empty()) return Raw(key, "null");
    Key(key);
    Obj(out_).Str("error", e.what).Time("at", e.at_us).End();
    return *this;
  }
  // The value is written by the caller right after.
  std::string* Key(const char* key) {
    if (!first_) out_->push_back(',');
    first_ = false;
    AppendJsonString(key, out_);
    out_->push_back(':');
    return out_;
  }
  void End() { out_->push_back('}'); }

 private:
  Obj& Raw(const char* key, const std::string& v) {
    Key(key)->append(v);
    return *this;
  }
  std::string* out_;
  bool first_ = true;
};

int64_t AgeSeconds(int64_t since_us, int64_t now_us) {
  return since_us > 0 && now_us > since_us ? (now_us - since_us) / 1'000'000 : 0;
}

// The "streams" array; without `live`, only what the store knows (buffered
// and gaps).
void WriteStreams(Obj* o, const std::vector<StreamStats>& streams, int64_t now_us, bool live) {
  std::string* list = o->Key("streams");
  list->push_back('[');
  for (size_t i = 0; i < streams.size(); ++i) {
    const StreamStats& st = streams[i];
    if (i > 0) list->push_back(',');
    Obj so(list);
    so.Str("name", st.name);
    {
      Obj b(so.Key("buffered"));
      b.Num("batches", st.buffered.batches).Num("events", st.buffered.events).Num("bytes", st.buffered.bytes);
      b.Int("oldest_age_s", AgeSeconds(st.buffered.oldest_event_us, now_us));
      b.End();
    }
    if (live) {
      so.Num("accepted", st.accepted).Num("uploaded_events", st.uploaded_events).Time("last_upload", st.last_upload_us);
      so.Rate("in_per_s", st.in_per_s).Rate("out_per_s", st.out_per_s);
    }
    {
      Obj g(so.Key("gaps"));
      g.Num("count", st.gaps).Num("events", st.gap_events).End();
    }
    so.End();
  }
  list->push_back(']');
}

void WriteBufferedAndGaps(Obj* o, const AgentStats& s, int64_t now_us) {
  {
    Obj b(o->Key("buffered"));
    b.Num("batches", s.buffered.batches).Num("events", s.buffered.events).Num("bytes", s.buffered.bytes);
    b.Num("gap_records", s.buffered.gap_records);
    b.Int("oldest_age_s", AgeSeconds(s.buffered.oldest_event_us, now_us));
    b.End();
  }
  Obj g(o->Key("gaps"));
  g.Num("count", s.gaps).Num("events", s.gap_events).End();
}

// "fleet": the bundle running and the newest bundle's state; null when fleet
// rollout is off.
void WriteFleet(Obj* o, const FleetStatus& f) {
  if (!f.enabled) {
    o->Key("fleet")->append("null");
    return;
  }
  Obj fo(o->Key("fleet"));
  fo.Num("version", f.version);
  if (f.state.empty()) {
    fo.Key("state")->append("null");
  } else {
    fo.Str("state", f.state).Num("bundle", f.bundle).Time("since", f.at_us);
    if (!f.reason.empty()) fo.Str("reason", f.reason);
  }
  fo.End();
}

}  // namespace

std::string StoredStatusDocument(const AgentStats& s, const std::string& device_id, int64_t now_us,
                                 const std::string& device_key) {
  std::string out;
  Obj o(&out);
  o.Str("kind", "status").Str("device", device_id).Str("device_key", device_key).Str("state", "not running");
  o.Time("time", now_us);
  WriteBufferedAndGaps(&o, s, now_us);
  WriteFleet(&o, s.fleet);
  WriteStreams(&o, s.streams, now_us, false);
  o.End();
  return out;
}

std::string HealthRecordJson(const AgentStats& s, const HealthContext& c) {
  std::string out;
  uint64_t dead_lettered = 0;
  for (uint64_t n : s.intake.dead_letters) dead_lettered += n;
  Obj o(&out);
  o.Str("kind", "health").Str("device", c.device_id).Str("device_key", c.device_key);
  o.Str("version", c.version).Str("state", c.state);
  o.Time("time", c.now_us).Int("uptime_s", c.uptime_us / 1'000'000);
  o.Num("received", s.ingest.received)
      .Num("filtered_out", s.intake.unmatched_dropped + s.intake.filtered)
      .Num("dead_lettered", dead_lettered)
      .Num("sealed_batches", s.sealer.sealed_batches)
      .Num("sealed_events", s.sealer.sealed_events)
      .Num("uploaded_batches", s.uploader.delivered_batches)
      .Num("uploaded_events", s.uploader.delivered_events)
      .Num("uploaded_bytes", s.uploader.delivered_bytes);
  WriteBufferedAndGaps(&o, s, c.now_us);
  {
    Obj m(o.Key("mqtt"));
    m.Str("state", s.ingest.connected ? "connected" : "disconnected")
        .Bool("subscribed", s.ingest.subscribed)
        .Num("connects", s.ingest.connects)
        .Num("connection_failures", s.ingest.connection_failures)
        .Bool("backpressure", s.intake.backpressure)
        .End();
  }
  {
    Obj k(o.Key("kafka"));
    k.Str("state", KafkaStateName(s.uploader.kafka))
        .Num("in_flight", s.uploader.in_flight)
        .Num("failed_deliveries", s.uploader.failed_deliveries)
        .Num("split_batches", s.uploader.split_batches)
        .Num("producer_rebuilds", s.uploader.producer_rebuilds)
        .Num("out_of_order", s.uploader.out_of_order)
        .Time("last_delivery", s.uploader.last_delivery_us);
    std::string* list = k.Key("blocked_topics");
    list->push_back('[');
    for (size_t i = 0; i < s.uploader.blocked.size(); ++i) {
      const BlockedTopic& b = s.uploader.blocked[i];
      if (i > 0) list->push_back(',');
      Obj(list).Str("topic", b.topic).Str("reason", b.reason).Time("since", b.since_us).End();
    }
    list->push_back(']');
    k.End();
  }
  {
    Obj e(o.Key("last_error"));
    e.Error("ingest", s.ingest.last_error).Error("buffer", s.sealer.last_error).Error("upload", s.uploader.last_error);
    e.End();
  }
  if (s.wedged.empty()) {
    o.Key("wedged")->append("null");
  } else {
    o.Str("wedged", s.wedged);
  }
  WriteFleet(&o, s.fleet);
  WriteStreams(&o, s.streams, c.now_us, true);
  o.End();
  return out;
}

}  // namespace edgesync

namespace edgesync {
namespace {

// A label value: backslash, double quote and line feed escaped.
void AppendPromEscaped(std::string_view v, std::string* out) {
  for (char ch : v) {
    if (ch == '\n') {
      *out += "\\n";
      continue;
    }
    if (ch == '\\' || ch == '"') out->push_back('\\');
    out->push_back(ch);
  }
}

// Prometheus text exposition: a family's HELP and TYPE, then its samples.
class Prom {
 public:
  explicit Prom(std::string* out) : out_(out) {}
  Prom& Family(const char* name, const char* type, const char* help) {
    name_ = name;
    *out_ += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
    return *this;
  }
  // A sample of the current family; `label` "" or {name, value}.
  Prom& Sample(double v, const char* label = nullptr, std::string_view label_value = {}) {
    *out_ += name_;
    if (label != nullptr) {
      *out_ += std::string("{") + label + "=\"";
      AppendPromEscaped(label_value, out_);
      *out_ += "\"}";
    }
    char buf[40];
    std::snprintf(buf, sizeof(buf), " %.17g\n", v);
    *out_ += buf;
    return *this;
  }
  Prom& One(const char* name, const char* type, const char* help, double v) {
    return Family(name, type, help).Sample(v);
  }

 private:
  std::string* out_;
  const char* name_ = "";
};

double Seconds(int64_t us) { return static_cast<double>(us) / 1e6; }

}  // namespace

std::string MetricsText(const AgentStats& s, const HealthContext& c) {
  std::string out;
  Prom p(&out);
  uint64_t dead_lettered = 0;
  for (uint64_t n : s.intake.dead_letters) dead_lettered += n;
  p.Family("edgesync_info", "gauge", "The agent's version and device id (always 1).");
  out += "edgesync_info{device=\"";
  AppendPromEscaped(c.device_id, &out);
  out += "\",version=\"";
  AppendPromEscaped(c.version, &out);
  out += "\"} 1\n";
  p.One("edgesync_uptime_seconds", "gauge", "Seconds since the agent started.", Seconds(c.uptime_us));
  p.One("edgesync_received_total", "counter", "MQTT messages received.", s.ingest.received);
  p.One("edgesync_filtered_out_total", "counter", "Events dropped: unmatched, or by a plugin.",
        s.intake.unmatched_dropped + s.intake.filtered);
  p.One("edgesync_dead_lettered_total", "counter", "Events sent to the dead-letter stream.", dead_lettered);
  p.One("edgesync_sealed_batches_total", "counter", "Batches sealed into the store.", s.sealer.sealed_batches);
  p.One("edgesync_sealed_events_total", "counter", "Events in the sealed batches.", s.sealer.sealed_events);
  p.One("edgesync_uploaded_batches_total", "counter", "Batches Kafka acknowledged.", s.uploader.delivered_batches);
  p.One("edgesync_uploaded_events_total", "counter", "Events Kafka acknowledged.", s.uploader.delivered_events);
  p.One("edgesync_uploaded_bytes_total", "counter", "Envelope bytes Kafka acknowledged.", s.uploader.delivered_bytes);
  p.One("edgesync_buffered_batches", "gauge", "Sealed batches waiting for Kafka.", s.buffered.batches);
  p.One("edgesync_buffered_events", "gauge", "Events in the buffered batches.", s.buffered.events);
  p.One("edgesync_buffered_bytes", "gauge", "Envelope bytes of the buffered batches.", s.buffered.bytes);
  p.One("edgesync_buffered_gap_records", "gauge", "Gap records waiting for Kafka.", s.buffered.gap_records);
  p.One("edgesync_buffered_oldest_age_seconds", "gauge", "Age of the oldest buffered event.",
        static_cast<double>(AgeSeconds(s.buffered.oldest_event_us, c.now_us)));
  p.One("edgesync_gaps", "gauge", "Gaps recorded, younger than buffer.max_age.", s.gaps);
  p.One("edgesync_gap_events", "gauge", "Events those gaps gave up.", s.gap_events);
  p.One("edgesync_mqtt_connected", "gauge", "1 while connected to the broker.", s.ingest.connected);
  p.One("edgesync_mqtt_subscribed", "gauge", "1 while every subscription is granted.", s.ingest.subscribed);
  p.One("edgesync_mqtt_connects_total", "counter", "Connections made.", s.ingest.connects);
  p.One("edgesync_mqtt_connection_failures_total", "counter", "Connection attempts that failed.",
        s.ingest.connection_failures);
  p.One("edgesync_mqtt_backpressure", "gauge", "1 while the journal cannot take events.", s.intake.backpressure);
  p.Family("edgesync_kafka_state", "gauge", "Kafka's state as the uploader sees it (1 for the current one).");
  for (KafkaState k : {KafkaState::kUnknown, KafkaState::kUp, KafkaState::kDown}) {
    p.Sample(s.uploader.kafka == k, "state", KafkaStateName(k));
  }
  p.One("edgesync_kafka_in_flight", "gauge", "Batches handed to librdkafka.", s.uploader.in_flight);
  p.One("edgesync_kafka_failed_deliveries_total", "counter", "Batches that came back to the store.",
        s.uploader.failed_deliveries);
  p.One("edgesync_kafka_split_batches_total", "counter", "Batches sent as fragments.", s.uploader.split_batches);
  p.One("edgesync_kafka_producer_rebuilds_total", "counter", "Producers rebuilt after fatal errors.",
        s.uploader.producer_rebuilds);
  p.One("edgesync_kafka_out_of_order_total", "counter", "Batches delivered after a later one of their stream.",
        s.uploader.out_of_order);
  p.One("edgesync_kafka_last_delivery_timestamp_seconds", "gauge", "When Kafka last acknowledged a batch (0: never).",
        Seconds(s.uploader.last_delivery_us));
  p.Family("edgesync_kafka_topic_blocked", "gauge", "Topics that refuse the agent (1 each).");
  for (const BlockedTopic& b : s.uploader.blocked) p.Sample(1, "topic", b.topic);
  p.Family("edgesync_last_error_timestamp_seconds", "gauge", "When each stage last failed (0: never).");
  p.Sample(Seconds(s.ingest.last_error.at_us), "stage", "ingest")
      .Sample(Seconds(s.sealer.last_error.at_us), "stage", "buffer")
      .Sample(Seconds(s.uploader.last_error.at_us), "stage", "upload");
  p.One("edgesync_wedged", "gauge", "1 while a stage makes no progress (the watchdog is not pinged).",
        !s.wedged.empty());
  if (s.fleet.enabled) {
    p.One("edgesync_fleet_bundle_version", "gauge", "The fleet bundle running (0: the device file alone).",
          static_cast<double>(s.fleet.version));
    p.Family("edgesync_fleet_state", "gauge", "The newest bundle's state (1 for the current one).");
    for (const char* st : {"probation", "applied", "rolled-back", "refused"}) p.Sample(s.fleet.state == st, "state", st);
  }
  struct PerStream {
    const char* name;
    const char* type;
    const char* help;
    double (*value)(const StreamStats&, int64_t now_us);
  };
  static const PerStream kPerStream[] = {
      {"edgesync_stream_buffered_batches", "gauge", "Batches of the stream waiting for Kafka.",
       [](const StreamStats& st, int64_t) { return static_cast<double>(st.buffered.batches); }},
      {"edgesync_stream_buffered_events", "gauge", "Events of the stream waiting for Kafka.",
       [](const StreamStats& st, int64_t) { return static_cast<double>(st.buffered.events); }},
      {"edgesync_stream_buffered_bytes", "gauge", "Envelope bytes of the stream waiting for Kafka.",
       [](const StreamStats& st, int64_t) { return static_cast<double>(st.buffered.bytes); }},
      {"edgesync_stream_buffered_oldest_age_seconds", "gauge", "Age of the stream's oldest buffered event.",
       [](const StreamStats& st, int64_t now) {
         return static_cast<double>(AgeSeconds(st.buffered.oldest_event_us, now));
       }},
      {"edgesync_stream_accepted_total", "counter", "Events of the stream journaled.",
       [](const StreamStats& st, int64_t) { return static_cast<double>(st.accepted); }},
      {"edgesync_stream_uploaded_events_total", "counter", "Events of the stream Kafka acknowledged.",
       [](const StreamStats& st, int64_t) { return static_cast<double>(st.uploaded_events); }},
      {"edgesync_stream_last_upload_timestamp_seconds", "gauge", "When Kafka last acknowledged a batch of the stream.",
       [](const StreamStats& st, int64_t) { return Seconds(st.last_upload_us); }},
      {"edgesync_stream_gaps", "gauge", "Gaps of the stream, younger than buffer.max_age.",
       [](const StreamStats& st, int64_t) { return static_cast<double>(st.gaps); }},
      {"edgesync_stream_gap_events", "gauge", "Events those gaps gave up.",
       [](const StreamStats& st, int64_t) { return static_cast<double>(st.gap_events); }},
  };
  for (const PerStream& f : kPerStream) {
    p.Family(f.name, f.type, f.help);
    for (const StreamStats& st : s.streams) p.Sample(f.value(st, c.now_us), "stream", st.name);
  }
  return out;
}

}  // namespace edgesync

#include "agent/health.h"

#include "sync/unpack.h"  // AppendJsonString, FormatRfc3339Micros

namespace edgesync {
namespace {

// A small JSON object writer: fields in the order written.
class Obj {
 public:
  explicit Obj(std::string* out) : out_(out) { out_->push_back('{'); }
  Obj& Num(const char* key, uint64_t v) { return Raw(key, std::to_string(v)); }
  Obj& Int(const char* key, int64_t v) { return Raw(key, std::to_string(v)); }
  Obj& Bool(const char* key, bool v) { return Raw(key, v ? "true" : "false"); }
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

}  // namespace

std::string HealthRecordJson(const AgentStats& s, const HealthContext& c) {
  std::string out;
  uint64_t dead_lettered = 0;
  for (uint64_t n : s.dead_letters) dead_lettered += n;
  Obj o(&out);
  o.Str("kind", "health").Str("device", c.device_id).Str("version", c.version).Str("state", c.state);
  o.Time("time", c.now_us).Int("uptime_s", c.uptime_us / 1'000'000);
  o.Num("received", s.ingest.received)
      .Num("filtered_out", s.unmatched_dropped + s.filtered)
      .Num("dead_lettered", dead_lettered)
      .Num("sealed_batches", s.sealer.sealed_batches)
      .Num("sealed_events", s.sealer.sealed_events)
      .Num("uploaded_batches", s.uploader.delivered_batches)
      .Num("uploaded_events", s.uploader.delivered_events)
      .Num("uploaded_bytes", s.uploader.delivered_bytes);
  {
    Obj b(o.Key("buffered"));
    b.Num("batches", s.buffered.batches).Num("events", s.buffered.events).Num("bytes", s.buffered.bytes);
    b.Num("gap_records", s.buffered.gap_records);
    b.Int("oldest_age_s", s.buffered.oldest_event_us > 0 && c.now_us > s.buffered.oldest_event_us
                              ? (c.now_us - s.buffered.oldest_event_us) / 1'000'000
                              : 0);
    b.End();
  }
  {
    Obj g(o.Key("gaps"));
    g.Num("count", s.gaps).Num("events", s.gap_events).End();
  }
  {
    Obj m(o.Key("mqtt"));
    m.Str("state", s.ingest.connected ? "connected" : "disconnected")
        .Bool("subscribed", s.ingest.subscribed)
        .Num("connects", s.ingest.connects)
        .Num("connection_failures", s.ingest.connection_failures)
        .Bool("backpressure", s.backpressure)
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
  o.End();
  return out;
}

}  // namespace edgesync

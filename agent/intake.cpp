#include "agent/intake.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>

#include "base/backoff.h"

namespace edgesync {
namespace {

// The event the plugins see of `r`: its topic, content type, time and
// properties (the payload and route are the caller's to set).
Event EventOf(Record& r) {
  Event e;
  e.topic = r.topic;
  e.topic_text = &r.topic;
  e.content_type = &r.content_type;
  e.received_at_us = r.received_at_us;
  e.properties = &r.properties;
  return e;
}

}  // namespace

Intake::Intake(IntakeOptions options, std::shared_ptr<const Pipeline> pipeline)
    : options_(std::move(options)),
      log_(options_.logger != nullptr ? options_.logger : spdlog::default_logger()),
      pipeline_(std::move(pipeline)),
      dead_letter_lane_(pipeline_->dead_letter_lane()),
      accepted_(std::make_unique<std::atomic<uint64_t>[]>(pipeline_->lanes().size())),
      lanes_(pipeline_->lanes().size()) {}

void Intake::OnMessage(const IngestMessage& m) {
  // Our own retained status comes back when mqtt.subscribe covers it.
  if (m.topic == options_.status_topic) return;
  if (!options_.fleet_topic.empty() && m.topic == options_.fleet_topic) {
    if (bundle_sink_ && !m.payload.empty()) bundle_sink_(m.payload);  // empty: the retained one was cleared
    return;
  }
  progress_.Advance(options_.env->MonotonicMicros());
  struct Done {
    Progress& p;
    ~Done() { p.Wait(); }
  } done{progress_};
  if (reload_pending_.load(std::memory_order_acquire)) {
    std::lock_guard<std::mutex> lock(reload_mu_);
    pipeline_ = std::move(pending_);
    reload_pending_ = false;
    reloads_.fetch_add(1, std::memory_order_relaxed);
    log_->info("reload: the new configuration's chains take over from this event on");
  }
  const Pipeline& pl = *pipeline_;
  // One Record reused for every message: its strings keep their capacity,
  // so the ingest path does not allocate per event once warmed up.
  Record& r = scratch_;
  r.topic.assign(m.topic);
  r.received_at_us = m.received_at_us != 0 ? m.received_at_us : options_.env->NowMicros();
  r.qos = static_cast<uint8_t>(m.qos);
  r.content_type.assign(m.content_type);
  r.properties.assign(m.user_properties.begin(), m.user_properties.end());

  Verdict v = Triage(m.topic, m.payload, m.user_property_count, m.user_property_bytes, pl.config(), pl.router(),
                     &json_);
  if (v.kind == Verdict::Kind::kDrop) {
    unmatched_dropped_.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  if (v.kind == Verdict::Kind::kDeadLetter) {
    if (v.reason == DeadLetterReason::kPropertiesTooLarge) {
      r.properties.clear();  // they are what is too large; the payload is kept
      r.properties.emplace_back("edgesync.original_properties", std::to_string(m.user_property_count));
    }
    // Kept, but cut to mqtt.max_payload whatever the reason (an invalid
    // topic is found before the size): one oversized event must not block a
    // batch or Kafka, nor be held twice here.
    const size_t max_payload = static_cast<size_t>(pl.config().mqtt_max_payload);
    if (m.payload.size() > max_payload) {
      r.properties.emplace_back("edgesync.original_size", std::to_string(std::max(m.payload.size(), m.payload_size)));
      r.payload.assign(m.payload.substr(0, CardSafeCut(m.payload, max_payload)));
    } else {
      r.payload.assign(m.payload);
    }
    DeadLetter(pl, r, v.reason, v.stream ? pl.config().streams[*v.stream].name : "", "");
    return;
  }
  RunChain(pl, *v.stream, r, m.payload);
}

void Intake::RunChain(const Pipeline& pl, size_t stream, Record& r, std::string_view payload) {
  const std::vector<std::shared_ptr<const Plugin>>& chain = pl.chain(stream);
  if (chain.empty()) {
    r.payload.assign(payload);
    AcceptDurably(stream, r);
    return;
  }
  const bool json = pl.config().streams[stream].json;
  Event e = EventOf(r);
  e.route = pl.DefaultRoute(stream);
  if (json) {
    e.json = &json_;  // Triage parsed the payload into it
  } else {
    r.payload.assign(payload);
    e.raw = &r.payload;
  }
  for (const std::shared_ptr<const Plugin>& plugin : chain) {
    const Action a = plugin->Process(e);
    if (a == Action::kKeep) continue;
    if (a == Action::kDrop) {
      filtered_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    // Dead letter: the event as the plugin found it, with its reason.
    if (json) json_.Serialize(&r.payload);
    DeadLetter(pl, r, DeadLetterReason::kPluginError, pl.config().streams[stream].name, e.error);
    return;
  }
  if (json) json_.Serialize(&r.payload);  // the original text when no plugin changed it
  std::optional<size_t> lane = pl.LaneOf(e.route);
  if (!lane) {
    DeadLetter(pl, r, DeadLetterReason::kUnknownRoute, pl.config().streams[stream].name,
               "no lane for stream \"" + e.route.stream + "\", Kafka topic \"" + e.route.kafka_topic +
                   "\", priority " + (e.route.priority ? PriorityName(*e.route.priority) : "(the stream's)") +
                   ": route only to configured streams, and to Kafka topics and priorities a plugin declares");
    return;
  }
  if (!e.route.key.empty()) r.properties.emplace_back("edgesync.key", e.route.key);
  AcceptDurably(*lane, r);
}

void Intake::DeadLetter(const Pipeline& pl, Record& r, DeadLetterReason reason, const std::string& stream,
                        const std::string& error) {
  dead_letters_[static_cast<int>(reason)].fetch_add(1, std::memory_order_relaxed);
  r.properties.emplace_back("edgesync.reason", DeadLetterReasonName(reason));
  if (!stream.empty()) r.properties.emplace_back("edgesync.stream", stream);
  if (!error.empty()) r.properties.emplace_back("edgesync.error", error);
  // The every_stream plugins see dead letters too, as plain text: card data
  // must not leave through the dead-letter stream either (nor through the
  // log: what it says below is what they left).
  Event e = EventOf(r);
  e.raw = &r.payload;
  e.route.stream = kDeadLetterStream;
  for (const std::shared_ptr<const Plugin>& plugin : pl.chain(pl.dead_letter_lane())) {
    if (plugin->Process(e) == Action::kDrop) {
      filtered_.fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
  if (log_->should_log(spdlog::level::debug)) {
    std::string_view why;
    for (const auto& [name, value] : r.properties) {
      if (name == "edgesync.error") why = value;
    }
    log_->debug("mqtt: {} on topic {}: to the dead-letter stream{}{}", DeadLetterReasonName(reason), r.topic,
                why.empty() ? "" : ": ", why);
  }
  AcceptDurably(dead_letter_lane_, r);
}

void Intake::Reload(std::shared_ptr<const Pipeline> next) {
  std::lock_guard<std::mutex> lock(reload_mu_);
  pending_ = std::move(next);
  reload_pending_.store(true, std::memory_order_release);
}

void Intake::AcceptDurably(size_t lane, const Record& r) {
  Status st = options_.sealer->Accept(lane, r);
  if (st.ok()) {
    accepted_[lane].fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // Backpressure: hold this message (and with it the connection's reading)
  // until the journal takes it. The broker queues the rest meanwhile; if the
  // connection times out, the persistent session delivers again.
  backpressure_ = true;
  backpressure_events_.fetch_add(1, std::memory_order_relaxed);
  log_->error("journal: cannot take events ({}); holding the broker's acknowledgement and "
              "reading nothing more until it can", st.ToString());
  Backoff backoff(100'000, 5'000'000, options_.env);
  for (int attempt = 1;; ++attempt) {
    if (stopping_) {
      // Returning would acknowledge an event that is not durable. Dying
      // without the ack is safe: the broker delivers it again to the next run.
      log_->critical("journal still failing at shutdown; exiting without acknowledging");
      log_->flush();
      std::_Exit(3);
    }
    options_.env->SleepForMicros(backoff.NextMicros());
    progress_.Advance(options_.env->MonotonicMicros());  // waiting for the journal is not wedged
    st = options_.sealer->Accept(lane, r);
    if (st.ok()) break;
    if (attempt % 50 == 0) log_->error("journal: still cannot take events: {}", st.ToString());
  }
  backpressure_ = false;
  accepted_[lane].fetch_add(1, std::memory_order_relaxed);
  log_->info("journal: taking events again");
}

IntakeStats Intake::stats() const {
  IntakeStats s;
  for (int i = 0; i < static_cast<int>(DeadLetterReason::kCount); ++i) s.dead_letters[i] = dead_letters_[i].load();
  s.unmatched_dropped = unmatched_dropped_.load();
  s.filtered = filtered_.load();
  s.reloads = reloads_.load();
  s.backpressure_events = backpressure_events_.load();
  s.backpressure = backpressure_.load();
  s.accepted.resize(lanes_);
  for (size_t i = 0; i < lanes_; ++i) s.accepted[i] = accepted_[i].load(std::memory_order_relaxed);
  return s;
}

}  // namespace edgesync

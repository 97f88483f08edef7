#include "agent/triage.h"

#include <simdjson.h>

namespace edgesync {

const char* DeadLetterReasonName(DeadLetterReason r) {
  switch (r) {
    case DeadLetterReason::kPayloadTooLarge: return "payload-too-large";
    case DeadLetterReason::kPropertiesTooLarge: return "properties-too-large";
    case DeadLetterReason::kInvalidUtf8Topic: return "invalid-utf8-topic";
    case DeadLetterReason::kInvalidJson: return "invalid-json";
    case DeadLetterReason::kUnmatched: return "unmatched";
    case DeadLetterReason::kPluginError: return "plugin-error";
    case DeadLetterReason::kUnknownRoute: return "unknown-route";
    case DeadLetterReason::kCount: break;
  }
  return "unknown";
}

Verdict Triage(std::string_view topic, std::string_view payload, size_t property_count,
               size_t property_bytes, const Config& config, const Router& router, Json* doc) {
  Verdict v;
  auto dead = [&](DeadLetterReason r) {
    v.kind = Verdict::Kind::kDeadLetter;
    v.reason = r;
    return v;
  };
  // Brokers refuse such topics from publishers; this is the last line.
  if (!simdjson::validate_utf8(topic.data(), topic.size())) return dead(DeadLetterReason::kInvalidUtf8Topic);
  v.stream = router.Route(topic);
  if (payload.size() > static_cast<size_t>(config.mqtt_max_payload)) {
    return dead(DeadLetterReason::kPayloadTooLarge);
  }
  if (property_count > kMaxUserProperties ||
      property_bytes > static_cast<size_t>(config.mqtt_max_payload)) {
    return dead(DeadLetterReason::kPropertiesTooLarge);
  }
  if (!v.stream) {
    if (config.mqtt_unmatched == "drop") return v;  // kDrop
    return dead(DeadLetterReason::kUnmatched);
  }
  if (config.streams[*v.stream].json && !doc->Parse(payload).ok()) return dead(DeadLetterReason::kInvalidJson);
  v.kind = Verdict::Kind::kStream;
  return v;
}

}  // namespace edgesync

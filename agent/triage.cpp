#include "agent/triage.h"

#include <simdjson.h>

#include <cstring>

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

size_t CardSafeCut(std::string_view payload, size_t max) {
  if (payload.size() <= max) return payload.size();
  constexpr size_t kMostBack = 512;
  auto ends_clean = [&](size_t cut) {
    const unsigned char c = static_cast<unsigned char>(payload[cut - 1]);
    if (c >= 0x80) return false;  // a non-ASCII digit or separator, or a cut UTF-8 sequence
    if (c != 0 && std::strchr("\"{}[]()<>=", c) != nullptr) return true;
    const bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    return letter && std::strchr("abcdefABCDEFuUx", c) == nullptr;
  };
  for (size_t cut = max; cut > 0 && max - cut <= kMostBack; --cut) {
    if (ends_clean(cut)) return cut;
  }
  return max;
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

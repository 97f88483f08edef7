// Triage: where one MQTT message goes, decided before anything is written:
// its stream, the dead-letter stream (and why), or nowhere (unmatched, with
// mqtt.unmatched = "drop"). A pure function of the message and the
// configuration; thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include "agent/config.h"
#include "plugins/json.h"
#include "plugins/route.h"

namespace edgesync {

// Why an event goes to the dead-letter stream (its "edgesync.reason").
enum class DeadLetterReason {
  kPayloadTooLarge,
  kPropertiesTooLarge,  // more than kMaxUserProperties, or more bytes than mqtt.max_payload
  kInvalidUtf8Topic,
  kInvalidJson,
  kUnmatched,
  kPluginError,   // a plugin refused the event (its message in "edgesync.error")
  kUnknownRoute,  // a plugin routed it to a stream or lane that does not exist
  kCount
};
constexpr size_t kMaxUserProperties = 1024;
const char* DeadLetterReasonName(DeadLetterReason r);

struct Verdict {
  enum class Kind { kStream, kDeadLetter, kDrop } kind = Kind::kDrop;
  std::optional<size_t> stream;  // the stream that claims it (also for some dead letters)
  DeadLetterReason reason = DeadLetterReason::kCount;  // with kDeadLetter
};

// Where to cut a payload of more than `max` bytes for the dead-letter
// stream (payload-too-large): at `max`, or before it where the cut would
// otherwise leave the first part of a card number (digits, separators,
// escapes, non-ASCII digits) at the end, which pci could no longer tell from
// other digits. Backs off at most 512 bytes, to a byte that cannot be part
// of a card number as written: a letter other than the escapes' (a-f, u, x)
// or a JSON or XML delimiter.
size_t CardSafeCut(std::string_view payload, size_t max);

// `router` must have been built from config.streams, in order.
// `property_bytes` and `property_count`: the message's MQTT 5 user properties.
// A JSON stream's payload is parsed into `*doc`, ready for the stream's chain.
Verdict Triage(std::string_view topic, std::string_view payload, size_t property_count,
               size_t property_bytes, const Config& config, const Router& router, Json* doc);

}  // namespace edgesync

// Record: one event as the agent keeps it, and its binary encoding (FORMAT.md,
// "Record"). The same encoding is what a journal frame holds (compressed) and an element of a
// batch body. Value type; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/status.h"

namespace edgesync {

struct Record {
  std::string topic;             // MQTT topic it was published on
  int64_t received_at_us = 0;    // agent's wall clock at receipt, µs since epoch
  uint8_t qos = 0;               // QoS it was delivered with
  std::string content_type;      // MQTT 5 content type, empty if none
  std::vector<std::pair<std::string, std::string>> properties;  // MQTT 5 user properties
  std::string payload;

  bool operator==(const Record&) const = default;
};

// Appends the encoding of `r` to `out`. Requires topic, content type,
// property keys and values shorter than 64 KiB (MQTT's own limit).
void EncodeRecord(const Record& r, std::string* out);
// Decodes exactly one record from `data` (all bytes must be used).
Result<Record> DecodeRecord(std::string_view data);

}  // namespace edgesync

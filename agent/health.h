// Health records: what the agent tells the central side about itself, every
// agent.heartbeat_interval, as one JSON event on its own stream (`_agent`,
// Kafka topic agent.health_topic). Each record stands alone (counters since
// start, current states), so a fleet dashboard needs nothing else: the
// newest record per device is that device's state, and a missing one means
// the device or its uplink is down. The fields are documented in docs/operating.md.
#pragma once

#include <cstdint>
#include <string>

#include "agent/agent.h"

namespace edgesync {

struct HealthContext {
  std::string device_id;
  std::string device_key;  // the id of the key that signs its batches (hex)
  std::string version;
  const char* state = "running";  // "starting", "running" or "stopping"
  int64_t now_us = 0;             // wall clock
  int64_t uptime_us = 0;
};

// One health record (a JSON object, no newline). `edgesync status --json`
// prints the same document.
std::string HealthRecordJson(const AgentStats& s, const HealthContext& c);

// The status document of a stopped agent (`edgesync status` reading the
// store): its buffered batches and gaps, overall and per stream in `s`.
// `device_key`: its signing key's id, "" when unknown.
std::string StoredStatusDocument(const AgentStats& s, const std::string& device_id, int64_t now_us,
                                 const std::string& device_key = "");

// The same figures in Prometheus' text format, for node_exporter's textfile
// collector (metrics.textfile): counters as *_total, states as 0/1 gauges,
// per-stream figures labelled with the stream. Rates are left to PromQL.
std::string MetricsText(const AgentStats& s, const HealthContext& c);

}  // namespace edgesync

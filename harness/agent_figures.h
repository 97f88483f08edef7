// What a running agent tells of its store on its status socket (the health
// record, agent/health.h), for the tests and benchmarks that watch it run. A
// process cannot open the store beside the agent: the agent holds it locked
// while it runs (buffer/sqlite_vfs.h). Header-only: its users link the agent
// library (agent/status_socket.h) and simdjson.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <string>

#include "agent/status_socket.h"

namespace edgesync::harness {

struct AgentFigures {
  bool ok = false;                    // the agent answered with a health record
  uint64_t sealed_batches = 0;        // sealed since it started
  uint64_t buffered_batches = 0, buffered_events = 0, buffered_bytes = 0;  // waiting for Kafka
  uint64_t buffered_gap_records = 0;  // gap records waiting for Kafka
  uint64_t gap_events = 0;  // events of the gaps recorded, younger than buffer.max_age
};

inline AgentFigures ReadAgentFigures(const std::string& state_dir, int timeout_ms = 5000) {
  AgentFigures f;
  Result<std::string> doc = QueryStatusSocket(state_dir + "/status.sock", timeout_ms);
  if (!doc.ok()) return f;
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  if (parser.parse(*doc).get(e) != simdjson::SUCCESS) return f;
  f.ok = e["sealed_batches"].get(f.sealed_batches) == simdjson::SUCCESS &&
         e["buffered"]["batches"].get(f.buffered_batches) == simdjson::SUCCESS &&
         e["buffered"]["events"].get(f.buffered_events) == simdjson::SUCCESS &&
         e["buffered"]["bytes"].get(f.buffered_bytes) == simdjson::SUCCESS &&
         e["buffered"]["gap_records"].get(f.buffered_gap_records) == simdjson::SUCCESS &&
         e["gaps"]["events"].get(f.gap_events) == simdjson::SUCCESS;
  return f;
}

}  // namespace edgesync::harness

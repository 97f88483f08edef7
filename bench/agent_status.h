// The figures a running agent gives on its status socket (the health record,
// agent/health.h) that the benchmarks watch while it runs. The store itself
// cannot be read then: the agent holds it locked (buffer/sqlite_vfs.h).
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <string>

#include "agent/status_socket.h"

namespace edgesync::bench {

struct AgentStatus {
  bool ok = false;                    // the agent answered with a health record
  uint64_t sealed_batches = 0;        // sealed since it started
  uint64_t buffered_batches = 0;      // waiting for Kafka
  uint64_t buffered_gap_records = 0;  // gap records waiting for Kafka
};

inline AgentStatus ReadAgentStatus(const std::string& state_dir, int timeout_ms = 2000) {
  AgentStatus st;
  Result<std::string> doc = QueryStatusSocket(state_dir + "/status.sock", timeout_ms);
  if (!doc.ok()) return st;
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  if (parser.parse(*doc).get(e) != simdjson::SUCCESS) return st;
  if (e["sealed_batches"].get(st.sealed_batches) != simdjson::SUCCESS ||
      e["buffered"]["batches"].get(st.buffered_batches) != simdjson::SUCCESS ||
      e["buffered"]["gap_records"].get(st.buffered_gap_records) != simdjson::SUCCESS) {
    return st;
  }
  st.ok = true;
  return st;
}

}  // namespace edgesync::bench

// What a running agent tells of its store on its status socket (the health
// record): Store::Counts and the events of Store::Gaps, as the agent reads
// them. A test cannot open the store beside the agent: the agent holds it
// locked while it runs (buffer/sqlite_vfs.h).
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <string>

#include "agent/status_socket.h"

namespace edgesync::testing {

struct AgentFigures {
  bool ok = false;  // the agent answered with a health record
  uint64_t buffered_batches = 0, buffered_events = 0, buffered_bytes = 0;
  uint64_t gap_events = 0;  // events of the gaps recorded, younger than buffer.max_age
};

inline AgentFigures ReadAgentFigures(const std::string& state_dir) {
  AgentFigures f;
  Result<std::string> doc = QueryStatusSocket(state_dir + "/status.sock", 5000);
  if (!doc.ok()) return f;
  simdjson::dom::parser parser;
  simdjson::dom::element e;
  if (parser.parse(*doc).get(e) != simdjson::SUCCESS) return f;
  f.ok = e["buffered"]["batches"].get(f.buffered_batches) == simdjson::SUCCESS &&
         e["buffered"]["events"].get(f.buffered_events) == simdjson::SUCCESS &&
         e["buffered"]["bytes"].get(f.buffered_bytes) == simdjson::SUCCESS &&
         e["gaps"]["events"].get(f.gap_events) == simdjson::SUCCESS;
  return f;
}

}  // namespace edgesync::testing

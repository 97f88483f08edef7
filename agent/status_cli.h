// `edgesync status`: asks the running agent over <state_dir>/status.sock
// for its health record (agent/health.h) and prints it, as JSON or as a
// summary for an 80-column terminal. When no agent answers, it reads the
// store read-only and says so: what is buffered and the gaps are on disk,
// the rest (connections, rates) only the running agent knows.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/status.h"

namespace edgesync {

struct StatusOptions {
  std::string state_dir;
  std::string device_id;  // from the configuration, for the read-only answer
  std::string device_key; // the device key's path, for the read-only answer (its .pub is read)
  bool json = false;
  bool watch = false;
  double interval = 2;    // seconds between refreshes with watch
};

// Runs the command. Exit codes: 0 the agent answered; 3 it is not running
// (the store was read instead); 1 neither worked (the message says why).
int StatusCommand(const StatusOptions& options);

// The status document of a stopped agent, from its store opened read-only:
// {"kind":"status","state":"not running",...,"streams":[...]}.
// `device_key`: the path of the device's key (its enrolment file beside it is read).
Result<std::string> StoredStatusJson(const std::string& state_dir, const std::string& device_id,
                                     const std::string& device_key, int64_t now_us);

// The human summary of a status document (the agent's health record or the
// stored one); lines of at most 80 columns. InvalidArgument for a document
// that is not one.
Result<std::string> FormatStatusText(std::string_view json, int64_t now_us);

}  // namespace edgesync

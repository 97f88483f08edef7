// Tally: what arrived at the central side compared with what the fleet
// simulator published. Reads edgesync-unpack's NDJSON records and an
// edgesync-fleet manifest, and keys each record by the (device, seq) inside
// its payload. The numbers are the end-to-end check of the demo and of the
// loss tests.
#pragma once

#include <cstdint>
#include <istream>
#include <map>
#include <string>

#include "base/status.h"

namespace edgesync::harness {

struct Tally {
  uint64_t published = 0;   // sum of the manifest
  uint64_t arrived = 0;     // distinct (device, seq) with 1 <= seq <= published[device]
  uint64_t lost = 0;        // published - arrived
  uint64_t duplicates = 0;  // records carrying a key minus distinct keys
  uint64_t unparsable = 0;  // non-empty lines without a readable (device, seq)
  uint64_t unexpected = 0;  // distinct keys outside the manifest (unknown device, seq too high)
};

// Manifest lines are `device,published`; blank lines and lines starting with
// '#' are skipped. InvalidArgument names the first bad line.
Result<std::map<std::string, uint64_t>> ParseManifest(std::istream& in);

// One NDJSON record per line: an object with "payload" (any JSON value) or
// "payload_b64" (base64 of the payload bytes, which are parsed as JSON when
// they are JSON). The key is the payload object's "device" (string) and
// "seq" (non-negative integer). Other fields are ignored; empty lines too.
Tally TallyLines(std::istream& ndjson, const std::map<std::string, uint64_t>& published);

// TallyLines over the two files. NotFound/IOError when one cannot be read,
// InvalidArgument for a bad manifest.
Result<Tally> TallyFiles(const std::string& ndjson_path, const std::string& manifest_path);

// "summary: published=N arrived=N lost=N duplicates=N"
std::string FormatSummary(const Tally& t);

}  // namespace edgesync::harness

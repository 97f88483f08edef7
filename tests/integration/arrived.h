// What edgesync-unpack wrote (records.ndjson), read back for assertions:
// one Arrived per record, its payload decoded.
#pragma once

#include <simdjson.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tests/support/json_lines.h"

namespace edgesync::testing {

struct Arrived {
  std::string stream, topic, payload, reason, key, error;
  std::string route_topic, route_priority;  // a routed lane's; empty for a stream's own
  uint64_t batch = 0;
};

// The value of the last user property named `name` of a record line
// ("properties": [[name, value], ...]), or nullopt.
inline std::optional<std::string> Property(simdjson::dom::element record, std::string_view name) {
  simdjson::dom::array pairs;
  if (record["properties"].get(pairs) != simdjson::SUCCESS) return std::nullopt;
  std::optional<std::string> value;
  for (simdjson::dom::element pair : pairs) {
    std::string_view k, v;
    if (pair.at(0).get(k) != simdjson::SUCCESS || k != name) continue;
    if (pair.at(1).get(v) == simdjson::SUCCESS) value = std::string(v);
  }
  return value;
}

// Raw payloads arrive base64-encoded (payload_b64).
inline std::string FromBase64(std::string_view in) {
  static const std::string kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    size_t v = kAlphabet.find(c);
    if (v == std::string::npos) continue;  // '=' padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
    }
  }
  return out;
}

inline std::vector<Arrived> ReadArrived(const std::string& path) {
  std::vector<Arrived> out;
  ForEachJsonLine(path, [&](simdjson::dom::element e) {
    Arrived a;
    a.stream = std::string(std::string_view(e["stream"]));
    a.topic = std::string(std::string_view(e["topic"]));
    a.batch = uint64_t(e["batch"]);
    std::string_view s;
    if (e["route_topic"].get(s) == simdjson::SUCCESS) a.route_topic = s;
    if (e["route_priority"].get(s) == simdjson::SUCCESS) a.route_priority = s;
    simdjson::dom::element payload;
    if (e["payload"].get(payload) == simdjson::SUCCESS) {
      a.payload = simdjson::minify(payload);
    } else if (e["payload_b64"].get(s) == simdjson::SUCCESS) {
      a.payload = FromBase64(s);
    }
    a.reason = Property(e, "edgesync.reason").value_or("");
    a.key = Property(e, "edgesync.key").value_or("");
    a.error = Property(e, "edgesync.error").value_or("");
    out.push_back(a);
  });
  return out;
}

}  // namespace edgesync::testing

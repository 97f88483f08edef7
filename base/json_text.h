// JSON text: the one string escaper, base64 and timestamp format every
// writer of JSON in the project uses (edgesync-unpack, health records, plugins).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace edgesync {

// Appends `s` (UTF-8) as the content of a JSON string, without the quotes:
// '"' and '\' escaped, control characters as \n, \r, \t, \b, \f or \u00XX.
void AppendJsonEscaped(std::string_view s, std::string* out);

// Appends `s` as a JSON string, quotes included.
inline void AppendJsonString(std::string_view s, std::string* out) {
  out->push_back('"');
  AppendJsonEscaped(s, out);
  out->push_back('"');
}

// Standard base64 (RFC 4648, with '=' padding): for bytes that are not text.
std::string Base64Encode(std::string_view data);

// A time in µs since the epoch as RFC 3339 in UTC with microseconds:
// "2026-11-22T03:04:05.123456Z".
std::string FormatRfc3339Micros(int64_t us);

}  // namespace edgesync

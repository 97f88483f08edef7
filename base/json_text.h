// JSON text: the one string escaper every writer of JSON in the project
// uses (edgesync-unpack's records, health records, the plugins' Json).
#pragma once

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

}  // namespace edgesync

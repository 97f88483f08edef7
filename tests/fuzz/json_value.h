// JsonValue for the fuzz targets: a JSON document's value as one string,
// independent of how it is written (white space, escapes, which parts were
// edited), so two documents can be compared: equal values give equal
// strings. Numbers compare as written (Json keeps their text).
#pragma once

#include <string>

#include "plugins/json.h"

namespace edgesync::fuzz {

inline void AppendValue(const Json& j, Json::Ref r, std::string* out) {
  std::string scratch;
  auto text = [&](std::string_view s) {  // length-prefixed: no escaping needed
    *out += std::to_string(s.size()) + ':';
    out->append(s);
  };
  switch (j.type(r)) {
    case Json::Type::kNull: *out += 'n'; break;
    case Json::Type::kBool: *out += j.boolean(r) ? 't' : 'f'; break;
    case Json::Type::kNumber: *out += '#'; text(j.raw(r)); break;
    case Json::Type::kString: *out += '"'; text(j.str(r, &scratch)); break;
    case Json::Type::kArray:
    case Json::Type::kObject: {
      const bool obj = j.type(r) == Json::Type::kObject;
      *out += obj ? '{' : '[';
      for (Json::Ref c = j.first(r); c != Json::kNone; c = j.next(c)) {
        if (obj) text(j.key(c, &scratch));
        AppendValue(j, c, out);
      }
      *out += obj ? '}' : ']';
      break;
    }
  }
}

inline std::string JsonValue(const Json& j) {
  std::string out;
  if (j.root() != Json::kNone) AppendValue(j, j.root(), &out);
  return out;
}

}  // namespace edgesync::fuzz

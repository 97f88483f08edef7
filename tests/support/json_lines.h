// Reading NDJSON files in tests: calls `f` with each line that parses as JSON.
#pragma once

#include <simdjson.h>

#include <fstream>
#include <string>

namespace edgesync::testing {

template <typename F>
void ForEachJsonLine(const std::string& path, F f) {
  std::ifstream in(path);
  std::string line;
  simdjson::dom::parser parser;
  while (std::getline(in, line)) {
    simdjson::dom::element e;
    if (parser.parse(line).get(e) == simdjson::SUCCESS) f(e);
  }
}

}  // namespace edgesync::testing

// The median the benchmarks report (the upper one of an even count).
#pragma once

#include <algorithm>
#include <vector>

namespace edgesync::bench {

inline double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace edgesync::bench

// The plot series of the benchmarks: what a figure did over time (or over a
// parameter), written with --series DIR as tab-separated text that
// bench/plots/*.gp draw with gnuplot (script/bench passes bench/data).
#pragma once

#include <atomic>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace edgesync::bench {

// (x, y) points: seconds since the start and a value, or a parameter and a
// figure.
using Series = std::vector<std::pair<double, double>>;

// Calls count() every `every` on a thread of its own, from construction
// until Stop(), and keeps (seconds since construction, count). count() runs
// only on that thread and must not block for long. Not copyable.
class CountSampler {
 public:
  CountSampler(std::function<double()> count, std::chrono::milliseconds every)
      : start_(std::chrono::steady_clock::now()), count_(std::move(count)), thread_([this, every] {
          while (!stop_.load()) {
            Sample();
            std::this_thread::sleep_for(every);
          }
          Sample();  // the last one, at the stop
        }) {}
  CountSampler(const CountSampler&) = delete;
  CountSampler& operator=(const CountSampler&) = delete;
  ~CountSampler() { (void)Stop(); }

  // Stops sampling (after one last sample) and returns the samples. Later
  // calls return them again.
  const Series& Stop() {
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    return samples_;
  }

 private:
  void Sample() {
    const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    samples_.emplace_back(t, count_());
  }

  const std::chrono::steady_clock::time_point start_;
  std::function<double()> count_;
  Series samples_;  // written by the thread until it is joined
  std::atomic<bool> stop_{false};
  std::thread thread_;  // last: starts once the rest is set up
};

// The rate of a sampled counter: for each interval between two samples, its
// end and the count's growth per second over it.
inline Series PerSecond(const Series& counts) {
  Series rates;
  for (size_t i = 1; i < counts.size(); ++i) {
    const double dt = counts[i].first - counts[i - 1].first;
    if (dt > 0) rates.emplace_back(counts[i].first, (counts[i].second - counts[i - 1].second) / dt);
  }
  return rates;
}

// Writes `blocks` to `path` as gnuplot reads them: `comment` as "# " lines,
// then each block as a "# name" line, a "# x<TAB>y" line naming the columns
// and its rows, blocks apart by two blank lines (gnuplot's `index 0`, `1`,
// ... in this order). Returns false if the file cannot be written.
inline bool WriteSeries(const std::string& path, const std::string& comment, const std::string& columns,
                        const std::vector<std::pair<std::string, Series>>& blocks) {
  std::ofstream out(path);
  out << "# " << comment << "\n";
  for (size_t b = 0; b < blocks.size(); ++b) {
    if (b > 0) out << "\n\n";
    out << "# " << blocks[b].first << "\n# " << columns << "\n";
    for (const auto& [x, y] : blocks[b].second) out << x << '\t' << y << '\n';
  }
  out.close();
  return static_cast<bool>(out);
}

}  // namespace edgesync::bench

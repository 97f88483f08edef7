// The [buffer] and [batch] options and their descriptions. Apart from
// store.cpp and sealer.cpp, so that loading the configuration links neither
// SQLite nor the sealer (the broker plugin loads the configuration inside
// the broker).
#include "buffer/sealer.h"
#include "buffer/store.h"

namespace edgesync {

const OptionTable<StoreLimits>& StoreLimits::Options() {
  static const auto* table = &(*new OptionTable<StoreLimits>())  // never freed: a process-long constant
      .Size("buffer.max_bytes", &StoreLimits::max_bytes,
            "Most sealed batches the store keeps (envelope bytes). Beyond it the lowest priority, oldest batches are given up, each recorded and uploaded as a gap (reason \"quota\").",
            1 << 20, 1ll << 50)
      .Size("buffer.min_free_bytes", &StoreLimits::min_free_bytes,
            "Free space to leave on state_dir's file system; below it batches are given up the same way (reason \"disk-full\"). 0: no check.",
            0, 1ll << 50)
      .Micros("buffer.max_age", &StoreLimits::max_age_us,
              "Batches whose newest event is older are given up (reason \"expired\"). 0: keep until uploaded.")
      .Size("buffer.cache_size", &StoreLimits::cache_bytes,
            "SQLite's page cache for the store (e.g. \"512KiB\"), held while batches come and go and given back after a quiet spell. More drains a backlog with less CPU; less suits a board with little memory.",
            64 << 10, 256 << 20);
  return *table;
}

const OptionTable<BatchLimits>& BatchLimits::Options() {
  static const auto* table = &(*new OptionTable<BatchLimits>())  // never freed: a process-long constant
      .Micros("buffer.sync_interval", &BatchLimits::sync_interval_us,
              "Journal fdatasync interval: the most a power cut can take.")
      .Int("batch.max_events", &BatchLimits::max_events, "A batch is sealed at this many events,", 1, 1'000'000)
      .Size("batch.max_bytes", &BatchLimits::max_bytes,
            "or at this many bytes before compression (e.g. \"512KiB\"),", 1024, 32 << 20)
      .Micros("batch.max_age", &BatchLimits::max_age_us, "or this long after its first event.");
  return *table;
}

}  // namespace edgesync

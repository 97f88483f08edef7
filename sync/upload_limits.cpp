// The [kafka] upload limits and their descriptions. Apart from
// uploader.cpp, so that loading the configuration does not link librdkafka
// (the broker plugin loads the configuration inside the broker).
#include "sync/uploader.h"

namespace edgesync {

const OptionTable<UploadLimits>& UploadLimits::Options() {
  static const auto* table = &(*new OptionTable<UploadLimits>())  // never freed: a process-long constant
      .Int("kafka.max_in_flight", &UploadLimits::max_in_flight,
           "Batches handed to the Kafka client at once (bounds memory and what a failure sends again).", 1, 1000)
      .Size("kafka.max_in_flight_bytes", &UploadLimits::max_in_flight_bytes,
            "and their bytes (one batch is always allowed).", 1024, 1ll << 30)
      .Size("kafka.max_bytes_per_sec", &UploadLimits::max_bytes_per_sec,
            "Upload rate limit for metered links (e.g. \"64KiB\"; bursts of up to one second's worth). 0: unlimited.",
            0, 1ll << 40)
      .Micros("kafka.retry_backoff_max", &UploadLimits::backoff_max_us,
              "Longest pause after failed deliveries (the pause doubles from 250ms, with full jitter). Deliveries that timed out (Kafka unreachable) get no pause: one batch waits in the Kafka client until the cluster answers, and the rest follows it.")
      .Micros("kafka.blocked_retry_interval", &UploadLimits::blocked_retry_us,
              "A topic that refuses the agent (not authorized, unknown, invalid config) is blocked and tried again this often with one batch; other topics keep flowing.");
  return *table;
}

}  // namespace edgesync

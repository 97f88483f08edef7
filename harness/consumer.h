// Reading a Kafka topic back, for tests and the demo: every partition from
// the beginning to its current end, without a consumer group. And writing
// raw messages to one (hand-made envelopes, hostile bytes).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"

namespace edgesync::harness {

struct KafkaMessage {
  std::string topic;
  int32_t partition = 0;  // WriteTopic: -1 chooses by key
  int64_t offset = 0;
  std::string key;
  std::string value;
  std::vector<std::pair<std::string, std::string>> headers;  // in message order
};

// Reads every partition of `topic` from its first offset until each one has
// reported partition EOF (its end at the time of reading), then returns the
// messages in (partition, offset) order. Assigns partitions directly (no
// group, no commits). NotFound when the cluster does not know the topic;
// Unavailable when `timeout` passes before every partition reached its end
// (a leader down, say). Partitions that are empty report EOF too.
// Against the librdkafka 2.0.2 mock cluster, asking for a topic that does not
// exist creates it (4 partitions; its Metadata API stops at v2, which has no
// AllowAutoTopicCreation flag), so there the answer is an empty vector, not
// NotFound.
Result<std::vector<KafkaMessage>> ReadTopic(const std::string& bootstrap, const std::string& topic,
                                            std::chrono::milliseconds timeout);

// Produces `messages` (key, value, headers; partition when >= 0, else by
// key) to `topic` and waits for every delivery report. OK when all were
// delivered; Unavailable naming the first failure, or when `timeout` passes.
// Each message goes in a message set of its own. The topic and offset
// fields of `messages` are ignored.
Status WriteTopic(const std::string& bootstrap, const std::string& topic,
                  const std::vector<KafkaMessage>& messages, std::chrono::milliseconds timeout);

}  // namespace edgesync::harness

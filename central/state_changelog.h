// Partition-scoped de-duplication state kept in a Kafka topic: the
// changelog, compacted, with (at least) as many partitions as the input.
// The state of input partition P lives in changelog partition P, one record
// per (input topic, device, stream): its latest SequenceTracker state, or a
// tombstone once the stream is forgotten by age. An instance that is
// assigned partition P reads changelog partition P from its start to its
// end (read_committed: to the last stable offset) before it reads P itself,
// the way Kafka Streams restores a state store. Layout in FORMAT.md "The
// central state topic".
#pragma once

#include <librdkafka/rdkafka.h>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "base/status.h"
#include "central/unpack.h"

namespace edgesync {

// A changelog record's key: input topic, device id and stream (the lane),
// each preceded by its length (u16 little-endian).
std::string StateKey(std::string_view topic, std::string_view device, std::string_view stream);
// False for a key that is not three such fields.
bool ParseStateKey(std::string_view key, std::string* topic, std::string* device, std::string* stream);

// A stream's state as a changelog value (version 1). Decode checks what it
// reads: Corruption for a value no writer of version 1 makes.
std::string EncodeStreamState(const SequenceTracker::StreamState& s);
Result<SequenceTracker::StreamState> DecodeStreamState(std::string_view value);

// Where restored state goes: for each changelog partition, the trackers of
// the input topics' partitions of that number.
using RestoreTargets = std::map<int32_t, std::map<std::string, SequenceTracker*>>;

struct RestoreStats {
  uint64_t records = 0;    // changelog records read
  uint64_t streams = 0;    // streams restored (after tombstones)
  uint64_t skipped = 0;    // records that did not decode (logged by the caller)
  int64_t micros = 0;      // wall time of the restore
};

// Reads the changelog partitions of `targets` from their start to their
// end through `restorer` (a consumer without a group: isolation.level
// read_committed, enable.partition.eof true) and restores each record
// into its tracker. `stop` is asked between messages: true gives up
// (Aborted). Unavailable when the topic or a partition is not there.
Result<RestoreStats> RestoreState(rd_kafka_t* restorer, const std::string& state_topic,
                                  const RestoreTargets& targets, const std::function<bool()>& stop,
                                  const std::function<void(const std::string&)>& log);

}  // namespace edgesync

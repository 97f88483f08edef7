#include "central/state_changelog.h"

#include "base/coding.h"
#include "base/env.h"
#include "format/format.h"

namespace edgesync {

namespace {

// Version 2 adds `reported`; version 1 is read as reported = highest.
constexpr uint8_t kStateVersion = 2;
// Out-of-order ranges a tracker keeps per stream, plus the one that may be
// pending absorption.
constexpr uint64_t kMaxRanges = SequenceTracker::kMaxOutOfOrder + 1;

void PutField(std::string* out, std::string_view s) {
  PutU16(out, static_cast<uint16_t>(s.size()));
  out->append(s);
}

}  // namespace

std::string StateKey(std::string_view topic, std::string_view device, std::string_view stream) {
  std::string key;
  key.reserve(6 + topic.size() + device.size() + stream.size());
  // Topic names are at most 249 bytes, device ids and stream names far
  // below 64 KiB (the batch header bounds them).
  PutField(&key, topic);
  PutField(&key, device);
  PutField(&key, stream);
  return key;
}

bool ParseStateKey(std::string_view key, std::string* topic, std::string* device,
                   std::string* stream) {
  ByteReader in(key);
  for (std::string* field : {topic, device, stream}) {
    uint16_t n = in.U16();
    std::string_view s = in.Bytes(n);
    if (in.failed()) return false;
    field->assign(s);
  }
  return in.remaining() == 0;
}

std::string EncodeStreamState(const SequenceTracker::StreamState& s) {
  std::string out;
  out.reserve(1 + 8 * 5 + 16 * s.above.size());
  PutU8(&out, kStateVersion);
  PutU64(&out, s.contiguous);
  PutU64(&out, s.highest);
  PutU64(&out, s.reported);
  PutI64(&out, s.last_seen_us);
  PutU32(&out, static_cast<uint32_t>(s.above.size()));
  for (const auto& [first, last] : s.above) {
    PutU64(&out, first);
    PutU64(&out, last);
  }
  return out;
}

Result<SequenceTracker::StreamState> DecodeStreamState(std::string_view value) {
  ByteReader in(value);
  const uint8_t version = in.U8();
  if (version != 1 && version != kStateVersion) return Status::Corruption("state record: unknown version");
  SequenceTracker::StreamState s;
  s.contiguous = in.U64();
  s.highest = in.U64();
  s.reported = version == 1 ? s.highest : in.U64();
  s.last_seen_us = in.I64();
  const uint32_t ranges = in.U32();
  if (in.failed()) return Status::Corruption("state record: truncated");
  if (ranges > kMaxRanges || in.remaining() != uint64_t{ranges} * 16) {
    return Status::Corruption("state record: " + std::to_string(ranges) + " ranges in " +
                              std::to_string(in.remaining()) + " bytes");
  }
  if (s.highest < s.contiguous) return Status::Corruption("state record: highest below contiguous");
  if (s.reported > s.highest) return Status::Corruption("state record: reported above highest");
  // Batch sequences stop at 2^63 - 1 (FORMAT.md): the arithmetic on them
  // below and in the tracker never wraps.
  if (s.highest > format::kMaxBatchSeq) return Status::Corruption("state record: sequence out of range");
  // Ranges as the tracker keeps them: above contiguous + 1, ascending,
  // neither overlapping nor adjacent, none past highest.
  uint64_t floor = s.contiguous + 1;
  for (uint32_t i = 0; i < ranges; ++i) {
    uint64_t first = in.U64(), last = in.U64();
    if (first <= floor || last < first || last > s.highest) {
      return Status::Corruption("state record: ranges out of order");
    }
    s.above.emplace_hint(s.above.end(), first, last);
    floor = last + 1;
  }
  return s;
}

Result<RestoreStats> RestoreState(rd_kafka_t* restorer, const std::string& state_topic,
                                  const RestoreTargets& targets, const std::function<bool()>& stop,
                                  const std::function<void(const std::string&)>& log) {
  RestoreStats stats;
  if (targets.empty()) return stats;
  Env* env = Env::Default();
  const int64_t start = env->MonotonicMicros();
  rd_kafka_topic_partition_list_t* list =
      rd_kafka_topic_partition_list_new(static_cast<int>(targets.size()));
  for (const auto& [partition, trackers] : targets) {
    rd_kafka_topic_partition_list_add(list, state_topic.c_str(), partition)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  rd_kafka_resp_err_t err = rd_kafka_assign(restorer, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err) return Status::Unavailable("state topic " + state_topic + ": " + rd_kafka_err2str(err));

  std::map<int32_t, bool> at_end;
  for (const auto& [partition, trackers] : targets) at_end[partition] = false;
  size_t ended = 0;
  Status failed;
  std::string topic, device, stream;
  while (ended < at_end.size() && failed.ok()) {
    if (stop()) {
      failed = Status::Aborted("stopped while restoring the state of its partitions");
      break;
    }
    rd_kafka_message_t* m = rd_kafka_consumer_poll(restorer, 200);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      auto it = at_end.find(m->partition);
      if (it != at_end.end() && !it->second) {
        it->second = true;
        ++ended;
      }
    } else if (m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC ||
               m->err == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
               m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
               m->err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED) {
      failed = Status::Unavailable("state topic " + state_topic + ": " + rd_kafka_message_errstr(m));
    } else if (m->err) {
      log("state topic " + state_topic + ": " + rd_kafka_message_errstr(m) + " (retrying)");
    } else {
      ++stats.records;
      auto part = targets.find(m->partition);
      std::string_view key(static_cast<const char*>(m->key), m->key ? m->key_len : 0);
      if (part != targets.end() && ParseStateKey(key, &topic, &device, &stream)) {
        auto tracker = part->second.find(topic);
        if (tracker != part->second.end()) {
          if (m->payload == nullptr) {
            tracker->second->Erase(device, stream);  // a tombstone: forgotten by age
          } else {
            Result<SequenceTracker::StreamState> s = DecodeStreamState(
                std::string_view(static_cast<const char*>(m->payload), m->len));
            if (s.ok()) {
              tracker->second->Restore(device, stream, std::move(s).value());
            } else {
              ++stats.skipped;
              log("state topic " + state_topic + "/" + std::to_string(m->partition) + "@" +
                  std::to_string(m->offset) + ": " + s.status().message() + "; skipped");
            }
          }
        }
      } else if (part != targets.end()) {
        ++stats.skipped;
        log("state topic " + state_topic + "/" + std::to_string(m->partition) + "@" +
            std::to_string(m->offset) + ": not a state key; skipped");
      }
    }
    rd_kafka_message_destroy(m);
  }
  (void)rd_kafka_assign(restorer, nullptr);
  EDGESYNC_RETURN_IF_ERROR(failed);
  for (const auto& [partition, trackers] : targets) {
    for (const auto& [t, tracker] : trackers) stats.streams += tracker->size();
  }
  stats.micros = env->MonotonicMicros() - start;
  return stats;
}

}  // namespace edgesync

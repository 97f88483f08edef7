// Envelope: a sealed batch, the unit stored in SQLite and sent as one Kafka
// message. Layout in FORMAT.md, constants in buffer/format.h. Sealing and
// opening are pure functions of their inputs; thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "buffer/format.h"
#include "buffer/record.h"

namespace edgesync {

struct BatchHeader {
  uint8_t version = format::kEnvelopeVersion;
  uint8_t flags = 0;
  std::string device_id;
  std::string stream;
  uint64_t batch_seq = 0;      // per (device, stream), from 1, no gaps by construction
  uint32_t event_count = 0;
  int64_t first_event_us = 0;  // receive time of the first and last record
  int64_t last_event_us = 0;
  uint8_t codec = format::kCodecZstd;
  uint32_t dict_id = 0;        // 0: no dictionary
  std::array<uint8_t, format::kKeyIdBytes> key_id{};  // zero: not encrypted
};

// A batch body item: u32 record length, then the record.
constexpr size_t kBodyFrameHeader = 4;
// Appends one record (already encoded with EncodeRecord) to a batch body.
void AppendToBody(std::string_view encoded_record, std::string* body);
// Encodes `r` straight into a batch body, without an intermediate string.
void AppendToBody(const Record& r, std::string* body);

struct SealOptions {
  uint8_t codec = format::kCodecZstd;
  int zstd_level = 3;
};

// Builds an envelope from a header and a body of AppendToBody'd records.
// header.codec is taken from options.
Result<std::string> SealEnvelope(BatchHeader header, std::string_view body,
                                 const SealOptions& options = {});

// Batches the agent gave up, with why; what a gap record carries.
// Sequences are inclusive.
struct Gap {
  std::string stream;
  uint64_t first_seq = 0, last_seq = 0;
  uint64_t events = 0;
  uint64_t bytes = 0;          // envelope bytes given up
  int64_t first_event_us = 0, last_event_us = 0;
  std::string reason;          // format::kGap*
  int64_t at_us = 0;           // wall clock when recorded
};

// The gap record for `gap` (FORMAT.md, "Gap records"): an envelope with the
// gap flag, whose batch sequence is the gap's first.
Result<std::string> SealGapRecord(const std::string& device_id, const Gap& gap);

struct OpenedEnvelope {
  BatchHeader header;
  std::vector<Record> records;  // empty for a gap record
  std::optional<Gap> gap;       // set for a gap record
};

// Checks and decodes an envelope from an untrusted source. Returns
// Corruption for a bad checksum, truncation or inconsistent counts, and
// InvalidArgument for a version, flag or codec this reader does not know.
Result<OpenedEnvelope> OpenEnvelope(std::string_view bytes);

}  // namespace edgesync

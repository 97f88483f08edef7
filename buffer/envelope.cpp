#include "buffer/envelope.h"

#include <zstd.h>

#include <cstring>

#include "base/coding.h"
#include "base/crc32c.h"

namespace edgesync {

void AppendToBody(std::string_view encoded_record, std::string* body) {
  PutU32(body, static_cast<uint32_t>(encoded_record.size()));
  body->append(encoded_record);
}

void AppendToBody(const Record& r, std::string* body) {
  const size_t at = body->size();
  PutU32(body, 0);  // length, patched below
  EncodeRecord(r, body);
  const uint32_t len = static_cast<uint32_t>(body->size() - at - kBodyFrameHeader);
  StoreU32(body->data() + at, len);
}

Result<std::string> SealEnvelope(BatchHeader h, std::string_view body, const SealOptions& options) {
  if (h.device_id.empty() || h.device_id.size() > format::kMaxNameBytes ||
      h.stream.empty() || h.stream.size() > format::kMaxNameBytes) {
    return Status::InvalidArgument("device id and stream must be 1..255 bytes");
  }
  if (body.size() > format::kMaxBodyBytes) return Status::InvalidArgument("batch body over 64 MiB");
  h.codec = options.codec;

  std::string stored;
  if (h.codec == format::kCodecZstd) {
    stored.resize(ZSTD_compressBound(body.size()));
    size_t n = ZSTD_compress(stored.data(), stored.size(), body.data(), body.size(),
                             options.zstd_level);
    if (ZSTD_isError(n)) {
      return Status::InvalidArgument(std::string("zstd: ") + ZSTD_getErrorName(n));
    }
    stored.resize(n);
  } else if (h.codec == format::kCodecNone) {
    stored.assign(body);
  } else {
    return Status::InvalidArgument("unknown codec " + std::to_string(h.codec));
  }

  std::string out;
  const size_t header_len =
      format::kEnvelopeFixedHeader + 1 + h.device_id.size() + 1 + h.stream.size();
  out.reserve(header_len + stored.size() + format::kEnvelopeTrailer);
  out.append(format::kEnvelopeMagic, 4);
  PutU8(&out, h.version);
  PutU8(&out, h.flags);
  PutU16(&out, static_cast<uint16_t>(header_len));
  PutU64(&out, h.batch_seq);
  PutU32(&out, h.event_count);
  PutI64(&out, h.first_event_us);
  PutI64(&out, h.last_event_us);
  PutU8(&out, h.codec);
  PutU8(&out, 0);  // reserved
  PutU32(&out, h.dict_id);
  out.append(reinterpret_cast<const char*>(h.key_id.data()), h.key_id.size());
  PutU32(&out, static_cast<uint32_t>(stored.size()));
  PutU32(&out, static_cast<uint32_t>(body.size()));
  PutU8(&out, static_cast<uint8_t>(h.device_id.size()));
  out.append(h.device_id);
  PutU8(&out, static_cast<uint8_t>(h.stream.size()));
  out.append(h.stream);
  out.append(stored);
  PutU32(&out, crc32c::Value(out));
  return out;
}

Result<std::string> SealGapRecord(const std::string& device_id, const Gap& gap) {
  if (gap.reason.empty() || gap.reason.size() > 255) {
    return Status::InvalidArgument("gap reason must be 1..255 bytes");
  }
  BatchHeader h;
  h.flags = format::kFlagGap;
  h.device_id = device_id;
  h.stream = gap.stream;
  h.batch_seq = gap.first_seq;
  h.first_event_us = gap.first_event_us;
  h.last_event_us = gap.last_event_us;
  std::string body;
  PutU64(&body, gap.first_seq);
  PutU64(&body, gap.last_seq);
  PutU64(&body, gap.events);
  PutU64(&body, gap.bytes);
  PutI64(&body, gap.at_us);
  PutU8(&body, static_cast<uint8_t>(gap.reason.size()));
  body.append(gap.reason);
  SealOptions plain;
  plain.codec = format::kCodecNone;
  return SealEnvelope(std::move(h), body, plain);
}

namespace {

Status DecodeGapBody(std::string_view raw, const BatchHeader& h, Gap* gap) {
  ByteReader in(raw);
  gap->stream = h.stream;
  gap->first_seq = in.U64();
  gap->last_seq = in.U64();
  gap->events = in.U64();
  gap->bytes = in.U64();
  gap->at_us = in.I64();
  gap->reason = std::string(in.Bytes(in.U8()));
  gap->first_event_us = h.first_event_us;
  gap->last_event_us = h.last_event_us;
  if (in.failed() || in.remaining() != 0) return Status::Corruption("gap record body malformed");
  if (h.event_count != 0 || gap->first_seq != h.batch_seq || gap->last_seq < gap->first_seq) {
    return Status::Corruption("gap record inconsistent with its header");
  }
  return Status::OK();
}

}  // namespace

Result<OpenedEnvelope> OpenEnvelope(std::string_view bytes) {
  if (bytes.size() < format::kEnvelopeFixedHeader + 2 + format::kEnvelopeTrailer) {
    return Status::Corruption("envelope shorter than its fixed header");
  }
  if (std::memcmp(bytes.data(), format::kEnvelopeMagic, 4) != 0) {
    return Status::Corruption("not an edgesync envelope (bad magic)");
  }
  ByteReader in(bytes);
  in.Bytes(4);
  OpenedEnvelope e;
  BatchHeader& h = e.header;
  h.version = in.U8();
  if (h.version != format::kEnvelopeVersion) {
    return Status::InvalidArgument("envelope version " + std::to_string(h.version) +
                                   " is not supported by this reader (supports 1)");
  }
  h.flags = in.U8();
  if ((h.flags & ~format::kKnownFlags) != 0) {
    return Status::InvalidArgument("envelope has unknown flags " + std::to_string(h.flags));
  }
  const uint16_t header_len = in.U16();
  h.batch_seq = in.U64();
  h.event_count = in.U32();
  h.first_event_us = in.I64();
  h.last_event_us = in.I64();
  h.codec = in.U8();
  in.U8();  // reserved
  h.dict_id = in.U32();
  std::string_view key_id = in.Bytes(format::kKeyIdBytes);
  if (!in.failed()) std::memcpy(h.key_id.data(), key_id.data(), key_id.size());
  const uint32_t body_len = in.U32();
  const uint32_t raw_len = in.U32();
  h.device_id = std::string(in.Bytes(in.U8()));
  h.stream = std::string(in.Bytes(in.U8()));
  if (in.failed() || in.position() > header_len) {
    return Status::Corruption("envelope header truncated");
  }
  // A longer header_len than this reader knows holds fields added later in
  // version 1; they are covered by the checksum and skipped here.
  const size_t total = size_t{header_len} + body_len + format::kEnvelopeTrailer;
  if (bytes.size() != total) {
    return Status::Corruption("envelope length " + std::to_string(bytes.size()) +
                              " does not match its header (" + std::to_string(total) + ")");
  }
  const size_t covered = total - format::kEnvelopeTrailer;
  if (crc32c::Value(bytes.substr(0, covered)) != LoadU32(bytes.data() + covered)) {
    return Status::Corruption("envelope checksum mismatch");
  }
  std::string_view stored = bytes.substr(header_len, body_len);
  if (raw_len > format::kMaxBodyBytes) {
    return Status::Corruption("envelope body states " + std::to_string(raw_len) +
                              " bytes, over the 64 MiB limit");
  }

  std::string raw;
  if (h.codec == format::kCodecZstd) {
    raw.resize(raw_len);
    size_t n = ZSTD_decompress(raw.data(), raw.size(), stored.data(), stored.size());
    if (ZSTD_isError(n) || n != raw_len) {
      return Status::Corruption("envelope body does not decompress to its stated size");
    }
  } else if (h.codec == format::kCodecNone) {
    if (raw_len != body_len) return Status::Corruption("uncompressed body length mismatch");
    raw.assign(stored);
  } else {
    return Status::InvalidArgument("envelope codec " + std::to_string(h.codec) + " is unknown");
  }

  if (h.flags & format::kFlagGap) {
    e.gap.emplace();
    EDGESYNC_RETURN_IF_ERROR(DecodeGapBody(raw, h, &*e.gap));
    return e;
  }
  // Every record takes at least 4 + kMinRecordBytes: refuse counts the body
  // cannot hold before allocating for them.
  if (h.event_count > raw.size() / (4 + format::kMinRecordBytes)) {
    return Status::Corruption("envelope states " + std::to_string(h.event_count) +
                              " records, more than its body can hold");
  }
  e.records.reserve(h.event_count);
  ByteReader body(raw);
  while (body.remaining() > 0) {
    std::string_view one = body.Bytes(body.U32());
    if (body.failed()) return Status::Corruption("record frame truncated in body");
    Result<Record> r = DecodeRecord(one);
    if (!r.ok()) return r.status();
    e.records.push_back(std::move(r).value());
  }
  if (e.records.size() != h.event_count) {
    return Status::Corruption("envelope holds " + std::to_string(e.records.size()) +
                              " records, header says " + std::to_string(h.event_count));
  }
  return e;
}

}  // namespace edgesync

#include "format/record.h"

#include "base/coding.h"

namespace edgesync {

void EncodeRecord(const Record& r, std::string* out) {
  PutU16(out, static_cast<uint16_t>(r.topic.size()));
  out->append(r.topic);
  PutI64(out, r.received_at_us);
  PutU8(out, r.qos);
  PutU16(out, static_cast<uint16_t>(r.content_type.size()));
  out->append(r.content_type);
  PutU16(out, static_cast<uint16_t>(r.properties.size()));
  for (const auto& [k, v] : r.properties) {
    PutU16(out, static_cast<uint16_t>(k.size()));
    out->append(k);
    PutU16(out, static_cast<uint16_t>(v.size()));
    out->append(v);
  }
  PutU32(out, static_cast<uint32_t>(r.payload.size()));
  out->append(r.payload);
}

Result<Record> DecodeRecord(std::string_view data) {
  ByteReader in(data);
  Record r;
  r.topic = std::string(in.Bytes(in.U16()));
  r.received_at_us = in.I64();
  r.qos = in.U8();
  r.content_type = std::string(in.Bytes(in.U16()));
  uint16_t props = in.U16();
  for (uint16_t i = 0; i < props && !in.failed(); ++i) {
    std::string k(in.Bytes(in.U16()));
    std::string v(in.Bytes(in.U16()));
    r.properties.emplace_back(std::move(k), std::move(v));
  }
  r.payload = std::string(in.Bytes(in.U32()));
  if (in.failed()) return Status::Corruption("record truncated");
  if (in.remaining() != 0) return Status::Corruption("record has trailing bytes");
  if (r.qos > 2) return Status::Corruption("record qos out of range");
  return r;
}

}  // namespace edgesync

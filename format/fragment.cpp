#include "format/fragment.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "base/coding.h"
#include "base/crc32c.h"
#include "format/format.h"

namespace edgesync {

Result<std::vector<std::string>> SplitEnvelope(std::string_view envelope, size_t max_message_bytes,
                                               const DeviceSigner* signer) {
  const size_t overhead = format::kFragmentHeaderSize + (signer != nullptr ? format::kSignatureBlock : 0);
  if (max_message_bytes <= overhead) {
    return Status::InvalidArgument("a fragment of " + std::to_string(max_message_bytes) +
                                   " bytes leaves no room after its " + std::to_string(overhead) +
                                   " bytes of header and signature");
  }
  const size_t room = max_message_bytes - overhead;
  const size_t count = std::max<size_t>(2, (envelope.size() + room - 1) / room);
  if (count > 0xFFFF || envelope.size() > UINT32_MAX || envelope.size() < count) {
    return Status::InvalidArgument("an envelope of " + std::to_string(envelope.size()) +
                                   " bytes cannot be cut into fragments of " +
                                   std::to_string(max_message_bytes) + " bytes (2 to 65535 of them)");
  }
  // Equal slices but the last, which may be shorter.
  const size_t slice = (envelope.size() + count - 1) / count;
  const uint32_t crc = crc32c::Value(envelope);
  std::vector<std::string> out;
  out.reserve(count);
  for (size_t i = 0; i < count; ++i) {
    std::string f(format::kFragmentMagic, sizeof format::kFragmentMagic);
    PutU8(&f, signer != nullptr ? format::kFragmentVersionSigned : format::kFragmentVersion);
    PutU8(&f, 0);
    PutU16(&f, static_cast<uint16_t>(i));
    PutU16(&f, static_cast<uint16_t>(count));
    PutU32(&f, static_cast<uint32_t>(envelope.size()));
    PutU32(&f, crc);
    if (signer != nullptr) {
      f.append(reinterpret_cast<const char*>(signer->key_id().data()), signer->key_id().size());
    }
    const size_t at = std::min(i * slice, envelope.size());
    f.append(envelope.substr(at, slice));
    if (signer != nullptr) EDGESYNC_RETURN_IF_ERROR(signer->Sign(f, &f));
    out.push_back(std::move(f));
  }
  return out;
}

bool IsFragment(std::string_view message) {
  return message.size() >= sizeof format::kFragmentMagic &&
         std::memcmp(message.data(), format::kFragmentMagic, sizeof format::kFragmentMagic) == 0;
}

Result<FragmentHeader> ParseFragment(std::string_view message, std::string_view* slice,
                                     std::string_view* signed_part, std::string_view* signature) {
  if (!IsFragment(message) || message.size() < format::kFragmentHeaderSize) {
    return Status::Corruption("not a fragment, or shorter than its header");
  }
  ByteReader r(message.substr(sizeof format::kFragmentMagic));
  const uint8_t version = r.U8(), flags = r.U8();
  FragmentHeader h;
  h.index = r.U16();
  h.count = r.U16();
  h.total_len = r.U32();
  h.crc = r.U32();
  if (version != format::kFragmentVersion && version != format::kFragmentVersionSigned) {
    return Status::Corruption("fragment version " + std::to_string(version) + " (this reader knows 1 and 2)");
  }
  std::string_view data = message.substr(format::kFragmentHeaderSize);
  if (version == format::kFragmentVersionSigned) {
    if (data.size() < format::kSignatureBlock) return Status::Corruption("signed fragment shorter than its signature");
    crypto::KeyId id{};
    std::memcpy(id.data(), data.data(), id.size());
    h.signer = id;
    if (signed_part != nullptr) *signed_part = message.substr(0, message.size() - format::kSignatureBytes);
    if (signature != nullptr) *signature = message.substr(message.size() - format::kSignatureBytes);
    data = data.substr(format::kSignerKeyIdBytes, data.size() - format::kSignatureBlock);
  }
  if (flags != 0) return Status::Corruption("unknown fragment flags " + std::to_string(flags));
  if (h.count < 2 || h.index >= h.count) {
    return Status::Corruption("fragment " + std::to_string(h.index) + " of " + std::to_string(h.count));
  }
  // Every slice is ceil(total_len / count) bytes but the last, which holds the rest.
  const uint64_t each = (uint64_t{h.total_len} + h.count - 1) / h.count;
  const uint64_t at = each * h.index;
  const uint64_t want = at >= h.total_len ? 0 : std::min<uint64_t>(each, h.total_len - at);
  *slice = data;
  if (want == 0 || slice->size() != want) {
    return Status::Corruption("fragment " + std::to_string(h.index) + " of " + std::to_string(h.count) +
                              " holds " + std::to_string(slice->size()) + " bytes, its place " +
                              std::to_string(want));
  }
  return h;
}

}  // namespace edgesync

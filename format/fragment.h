// Fragments: an envelope cut into pieces that each fit in one Kafka message,
// for a broker that refuses the whole as too large (the device cannot
// re-batch: it holds no key that opens its sealed envelopes). Layout in
// FORMAT.md "Fragments". The central side reassembles them in partition
// order and then checks the whole envelope as usual (CRC, signature,
// AES-GCM). Each fragment of version 2 is signed too, so that a forged
// fragment is refused on arrival and cannot break another device's set.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "format/envelope.h"
#include "format/identity.h"

namespace edgesync {

// Cuts `envelope` into 2 or more fragments of at most `max_message_bytes`
// each (header, key id and signature included), each signed with `signer`
// when given (version 2; version 1 without). InvalidArgument when
// max_message_bytes leaves no room for data or more than 65535 fragments
// would be needed.
Result<std::vector<std::string>> SplitEnvelope(std::string_view envelope, size_t max_message_bytes,
                                               const DeviceSigner* signer = nullptr);

// True when `message` starts with the fragment magic (an envelope starts with "EDGS").
bool IsFragment(std::string_view message);

struct FragmentHeader {
  uint16_t index = 0;
  uint16_t count = 0;
  uint32_t total_len = 0;
  uint32_t crc = 0;  // CRC-32C of the whole envelope
  std::optional<crypto::KeyId> signer;  // version 2
};

// Parses a fragment's header and sets `*slice` to its data, and for version
// 2 `*signed_part` and `*signature` (if given) to what is signed and the
// signature. Corruption names what is wrong (version, flags, index beyond
// count, slice beyond total_len).
Result<FragmentHeader> ParseFragment(std::string_view message, std::string_view* slice,
                                     std::string_view* signed_part = nullptr,
                                     std::string_view* signature = nullptr);

}  // namespace edgesync

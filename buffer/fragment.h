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
#include "buffer/envelope.h"
#include "buffer/identity.h"

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

// Puts envelopes back together from their fragments. A partial set is one
// envelope (its CRC, length and count) from one source (the caller's key:
// Kafka topic, partition and message key) and one signer. Fragments of one
// envelope arrive in order; an agent that resends a batch starts again at
// index 0, and fragments the set already holds are taken as such resends
// and skipped, so a replayed old fragment cannot break a set. Memory is
// bounded per signer and overall, and a set not continued within
// kStaleMessages messages of its partition is given up, so that no device
// can hold another's sets or the partition's offsets. Not thread-safe.
class FragmentAssembler {
 public:
  struct Source {
    std::string topic;
    int32_t partition = 0;
    std::string key;
    bool operator==(const Source&) const = default;
  };
  struct Outcome {
    enum class Kind { kIncomplete, kComplete, kRejected } kind = Kind::kIncomplete;
    std::string envelope;      // kComplete: the whole envelope
    int64_t first_offset = 0;  // kComplete: the offset of its first fragment
    bool duplicate = false;    // kIncomplete: a fragment the set already held (a resend), skipped
    std::string why;           // kRejected
    // kRejected: kMalformed, or why the fragment's signature was refused
    // (before it touched any partial set).
    Rejection refusal = Rejection::kNone;
    size_t abandoned = 0;      // partial sets given up by this call (restarted, out of order, evicted)
  };

  // `max_envelope_bytes`: a larger total_len is refused before any memory is
  // taken. `max_pending_bytes`: above it the oldest partial set is given up.
  // `device_keys` set: every fragment must be signed by an enrolled key
  // (version 1 fragments only with `allow_unsigned`), as OpenOptions.
  FragmentAssembler(size_t max_envelope_bytes, size_t max_pending_bytes,
                    const DeviceKeys* device_keys = nullptr, bool allow_unsigned = false)
      : max_envelope_(max_envelope_bytes),
        max_pending_(max_pending_bytes),
        device_keys_(device_keys),
        allow_unsigned_(allow_unsigned) {}

  // Partial sets per signer (all unsigned fragments count as one signer),
  // and how many messages of its partition a set may wait for its next
  // fragment.
  static constexpr size_t kMaxSetsPerSigner = 4;
  static constexpr int64_t kStaleMessages = 10'000;

  Outcome Add(const Source& source, int64_t offset, std::string_view message);
  // Gives up the partial sets of (topic, partition) whose last fragment is
  // more than kStaleMessages before `offset`; returns how many. Call it for
  // every message read (Add does, for fragments).
  size_t Expire(const std::string& topic, int32_t partition, int64_t offset);
  // The offset of the first fragment of a partial set from this partition,
  // if any: a consumer must not commit past it, or a restart loses the set.
  std::optional<int64_t> OldestPending(const std::string& topic, int32_t partition) const;
  size_t pending_bytes() const { return pending_bytes_; }

 private:
  struct Partial {
    Source source;
    FragmentHeader header;
    int64_t first_offset = 0;
    int64_t last_offset = 0;
    uint16_t next = 0;  // index expected next
    std::string data;
  };
  void Drop(std::list<Partial>::iterator it, size_t* abandoned);
  // Gives up partial sets until `keep`'s signer holds at most two whole
  // envelopes' worth and the pending bytes fit: the oldest set of the
  // signer holding the most bytes first. False when that would be `keep`
  // itself (the caller gives it up).
  bool Shed(std::list<Partial>::iterator keep, size_t* abandoned);

  size_t max_envelope_, max_pending_;
  const DeviceKeys* device_keys_;
  bool allow_unsigned_;
  std::list<Partial> partials_;  // oldest first
  size_t pending_bytes_ = 0;
};

}  // namespace edgesync

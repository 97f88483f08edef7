// The central side's reassembly of fragments (format/fragment.h) into whole
// envelopes, bounded per signer and per partition.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <string>
#include <string_view>

#include "format/fragment.h"
#include "format/identity.h"

namespace edgesync {

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
  // Gives up every partial set of (topic, partition) (handed over to
  // another consumer, which reads them again); returns how many.
  size_t Forget(const std::string& topic, int32_t partition);
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

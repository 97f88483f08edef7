#include "central/fragment_assembler.h"

#include <algorithm>

#include "base/crc32c.h"
#include "format/format.h"

namespace edgesync {

void FragmentAssembler::Drop(std::list<Partial>::iterator it, size_t* abandoned) {
  pending_bytes_ -= it->data.size();
  partials_.erase(it);
  ++*abandoned;
}

bool FragmentAssembler::Shed(std::list<Partial>::iterator keep, size_t* abandoned) {
  using Signer = std::optional<crypto::KeyId>;
  auto oldest_of = [&](const Signer& signer) {
    return std::find_if(partials_.begin(), partials_.end(),
                        [&](const Partial& p) { return p.header.signer == signer && &p != &*keep; });
  };
  auto bytes_of = [&](const Signer& signer) {
    size_t n = 0;
    for (const Partial& p : partials_) n += p.header.signer == signer ? p.data.size() : 0;
    return n;
  };
  // One signer holds at most two whole envelopes in partial sets.
  while (bytes_of(keep->header.signer) > 2 * max_envelope_) {
    auto victim = oldest_of(keep->header.signer);
    if (victim == partials_.end()) break;
    Drop(victim, abandoned);
  }
  // All together at most max_pending_: the heaviest signer gives up first.
  while (pending_bytes_ > max_pending_) {
    std::map<Signer, size_t> bytes;
    for (const Partial& p : partials_) bytes[p.header.signer] += p.data.size();
    Signer heaviest;
    size_t most = 0;
    for (const auto& [signer, n] : bytes) {
      if (n >= most) most = n, heaviest = signer;
    }
    auto victim = oldest_of(heaviest);
    if (victim == partials_.end()) return false;  // the heaviest is `keep` alone
    Drop(victim, abandoned);
  }
  return true;
}

size_t FragmentAssembler::Expire(const std::string& topic, int32_t partition, int64_t offset) {
  size_t abandoned = 0;
  for (auto it = partials_.begin(); it != partials_.end();) {
    auto next = std::next(it);
    if (it->source.topic == topic && it->source.partition == partition &&
        offset - it->last_offset > kStaleMessages) {
      Drop(it, &abandoned);
    }
    it = next;
  }
  return abandoned;
}

FragmentAssembler::Outcome FragmentAssembler::Add(const Source& source, int64_t offset,
                                                  std::string_view message) {
  Outcome out;
  out.abandoned = Expire(source.topic, source.partition, offset);
  std::string_view slice, signed_part, signature;
  Result<FragmentHeader> h = ParseFragment(message, &slice, &signed_part, &signature);
  auto reject = [&out](std::string why) {
    out.kind = Outcome::Kind::kRejected;
    out.refusal = Rejection::kMalformed;
    out.why = std::move(why);
    return out;
  };
  if (!h.ok()) return reject(h.status().message());
  // Who sent it, before it touches any partial set.
  if (device_keys_ != nullptr) {
    if (h->signer) {
      const SignatureCheck check = CheckSignature(*device_keys_, "", *h->signer, signed_part, signature, &out.why);
      out.refusal = RejectionFor(check);
    } else if (!allow_unsigned_) {
      out.refusal = Rejection::kUnsigned;
      out.why = "an unsigned fragment (version 1), and this reader requires signed ones";
    }
    if (out.refusal != Rejection::kNone) {
      out.kind = Outcome::Kind::kRejected;
      out.why = "fragment " + out.why;
      return out;
    }
  }
  const std::string which = "fragment " + std::to_string(h->index) + " of " + std::to_string(h->count);
  auto it = std::find_if(partials_.begin(), partials_.end(), [&](const Partial& p) {
    return p.source == source && p.header.signer == h->signer && p.header.crc == h->crc &&
           p.header.total_len == h->total_len && p.header.count == h->count;
  });
  if (it != partials_.end()) {
    if (h->index < it->next) {
      // Already held: a resend of the set from its start, or a replay. It
      // does not keep the set alive: a device re-sending fragment 0 forever
      // must not hold its partition's committed offset back.
      out.duplicate = true;
      return out;
    }
    if (h->index > it->next) {
      return reject(which + " out of order: the set holds " + std::to_string(it->next) + " so far");
    }
  } else {
    if (h->index != 0) return reject(which + " without the ones before it");
    if (h->total_len > max_envelope_) {
      return reject("fragments of a " + std::to_string(h->total_len) + "-byte envelope, over the limit of " +
                    std::to_string(max_envelope_));
    }
    // A signer's own oldest set goes when it starts one too many.
    size_t held = 0;
    for (const Partial& p : partials_) held += p.header.signer == h->signer;
    if (held >= kMaxSetsPerSigner) {
      Drop(std::find_if(partials_.begin(), partials_.end(),
                        [&](const Partial& p) { return p.header.signer == h->signer; }),
           &out.abandoned);
    }
    Partial p;
    p.source = source;
    p.header = *h;
    p.first_offset = offset;
    partials_.push_back(std::move(p));
    it = std::prev(partials_.end());
  }
  // Memory grows with what arrived, never with what a header claims.
  it->data.append(slice);
  pending_bytes_ += slice.size();
  it->last_offset = offset;
  ++it->next;
  if (!Shed(it, &out.abandoned)) {
    Drop(it, &out.abandoned);
    return reject(which + ": partial sets over the reader's limit of " + std::to_string(max_pending_) +
                  " bytes, and this signer's set is the largest: given up");
  }
  if (it->next < it->header.count) return out;
  Partial done = std::move(*it);
  pending_bytes_ -= done.data.size();
  partials_.erase(it);
  if (crc32c::Value(done.data) != done.header.crc) return reject("reassembled fragments fail their CRC-32C");
  out.kind = Outcome::Kind::kComplete;
  out.envelope = std::move(done.data);
  out.first_offset = done.first_offset;
  return out;
}

std::optional<int64_t> FragmentAssembler::OldestPending(const std::string& topic, int32_t partition) const {
  std::optional<int64_t> oldest;
  for (const Partial& p : partials_) {
    if (p.source.topic == topic && p.source.partition == partition &&
        (!oldest || p.first_offset < *oldest)) {
      oldest = p.first_offset;
    }
  }
  return oldest;
}

size_t FragmentAssembler::Forget(const std::string& topic, int32_t partition) {
  size_t abandoned = 0;
  for (auto it = partials_.begin(); it != partials_.end();) {
    auto next = std::next(it);
    if (it->source.topic == topic && it->source.partition == partition) Drop(it, &abandoned);
    it = next;
  }
  return abandoned;
}

}  // namespace edgesync

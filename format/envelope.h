// Envelope: a sealed batch, the unit stored in SQLite and sent as one Kafka
// message. Layout in FORMAT.md, constants in format/format.h. Sealing and
// opening are pure functions of their inputs; thread-safe.
#pragma once

#include <zstd.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"
#include "format/crypto.h"
#include "format/format.h"
#include "format/identity.h"
#include "format/record.h"

namespace edgesync {

struct BatchHeader {
  uint8_t version = format::kEnvelopeVersion;  // SealEnvelope sets it: 2 when signed
  uint8_t flags = 0;
  std::string device_id;
  std::string stream;
  uint64_t batch_seq = 0;      // per (device, stream), from 1, no gaps by construction
  uint32_t event_count = 0;
  int64_t first_event_us = 0;  // receive time of the first and last record
  int64_t last_event_us = 0;
  uint8_t codec = format::kCodecZstd;
  uint32_t dict_id = 0;        // 0: no dictionary
  crypto::KeyId key_id{};      // zero: not encrypted
};

// A batch header's `stream` names a lane (FORMAT.md, "Envelope"): the
// stream's own name, or "stream@topic@priority" for the events a plugin
// routed to another Kafka topic or priority of the stream (the topic
// perhaps cut to 100 bytes and "~" and 8 hex digits).
struct Lane {
  std::string stream;          // up to the first '@': the stream's name
  std::string route_topic;     // between the first and the last '@'
  std::string route_priority;  // after the last '@'
  bool routed = false;         // the name holds an '@': both route fields apply
};
Lane ParseLane(std::string_view lane);

// A batch body item: u32 record length, then the record.
constexpr size_t kBodyFrameHeader = 4;
// Appends one record (already encoded with EncodeRecord) to a batch body.
void AppendToBody(std::string_view encoded_record, std::string* body);
// Encodes `r` straight into a batch body, without an intermediate string.
void AppendToBody(const Record& r, std::string* body);

// A zstd dictionary (`edgesync dict train`), ready for both directions.
// Immutable once loaded; share it between threads.
class Dictionary {
 public:
  // `bytes`: a dictionary file; `level`: the compression level sealing uses.
  static Result<std::shared_ptr<const Dictionary>> Load(std::string_view bytes, int level);
  ~Dictionary();
  uint32_t id() const { return id_; }
  const ZSTD_CDict* cdict() const { return cdict_; }
  const ZSTD_DDict* ddict() const { return ddict_; }

 private:
  Dictionary() = default;
  uint32_t id_ = 0;
  ZSTD_CDict* cdict_ = nullptr;
  ZSTD_DDict* ddict_ = nullptr;
};

// Trains a zstd dictionary of at most `max_bytes` from `samples` (each one
// event payload, or one record: what batches hold). zstd wants many samples
// (hundreds at least) totalling about 100 times `max_bytes`; too few is an
// InvalidArgument saying so.
Result<std::string> TrainDictionary(const std::vector<std::string>& samples, size_t max_bytes);

// Who a batch is sealed for: the central service's X25519 public key.
struct Recipient {
  crypto::Key public_key{};
  crypto::KeyId key_id{};  // crypto::ShortHash(public_key)
  static Recipient For(const crypto::Key& public_key) {
    return {public_key, crypto::ShortHash(public_key)};
  }
};

// The per-batch secrets, normally fresh random values. Fixed only to write
// the test vectors in tests/vectors/.
struct SealSecrets {
  crypto::Key ephemeral_private{};
  crypto::Key data_key{};
  crypto::Nonce nonce{};
};

struct SealOptions {
  uint8_t codec = format::kCodecZstd;
  int zstd_level = 3;
  const Dictionary* dictionary = nullptr;     // zstd only; its id goes in the header
  const Recipient* recipient = nullptr;       // set: encrypt the body for this key
  const SealSecrets* fixed_secrets = nullptr; // test vectors only
  // Set: a version 2 envelope signed with the device's key (what agents
  // write); unset: version 1, unsigned (tests and tools only).
  const DeviceSigner* signer = nullptr;
};

// Builds an envelope from a header and a body of AppendToBody'd records.
// header.version, codec, dict_id, key_id and the encrypted flag are taken
// from options.
Result<std::string> SealEnvelope(BatchHeader header, std::string_view body,
                                 const SealOptions& options = {});

// Frees the compression context SealEnvelope keeps for the calling thread
// (about 1.2 MiB once a 512 KiB batch was sealed at level 3); the thread's
// next SealEnvelope makes a new one. For a sealer gone quiet.
void ReleaseSealMemory();

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

// Appends the raw body of `gap`'s gap record (FORMAT.md, "Gap record").
void EncodeGapBody(const Gap& gap, std::string* body);

// The gap record for `gap` (FORMAT.md, "Gap records"): an envelope with the
// gap flag, whose batch sequence is the gap's first.
// Signed with `signer` when given, as every envelope.
Result<std::string> SealGapRecord(const std::string& device_id, const Gap& gap,
                                  const DeviceSigner* signer = nullptr);

struct OpenedEnvelope {
  BatchHeader header;
  // Version 2: who signed it. `verified` is true when the reader checked the
  // signature against its enrolled keys (OpenOptions::device_keys).
  std::optional<crypto::KeyId> signer;
  bool verified = false;
  std::vector<Record> records;  // empty for a gap record
  std::optional<Gap> gap;       // set for a gap record
};

// Why an envelope was refused; one counter each on the central side.
enum class Rejection {
  kNone = 0,
  kMalformed,          // bad magic, truncated, lengths or counts that do not add up
  kChecksum,           // CRC-32C mismatch: damaged in transit or storage
  kVersion,            // an envelope version this reader does not know
  kFlags,              // a flag this reader does not know
  kCodec,              // an unknown codec, or a body that does not decompress
  kUnknownKey,         // encrypted for a key this reader does not hold
  kDecrypt,            // authentication failed: wrong key, or changed bytes
  kNotEncrypted,       // a plain batch where encryption is required
  kUnknownDictionary,  // compressed with a dictionary this reader does not have
  kTooLarge,           // decompressed size above the reader's limit (zip bomb)
  // Device identity (OpenOptions::device_keys set), checked right after the
  // checksum, before anything else is believed:
  kUnsigned,       // a version 1 (unsigned) envelope, and unsigned ones are not allowed
  kUnknownDevice,  // signed by a key that is not enrolled, for a device that is not either
  kWrongKey,       // signed by a key that is not enrolled for the device the header names
  kRevokedKey,     // signed by a revoked key
  kBadSignature,   // the signature does not verify: changed bytes or a forgery
};
const char* RejectionName(Rejection r);  // "malformed", "checksum", ... (snake_case)

// The private keys a reader holds, by key id (several during a rotation).
class Keyring {
 public:
  Status AddPrivate(const crypto::Key& private_key);
  // Files under `public_key`'s id; for tests of a key that does not match its id.
  Status Add(const crypto::Key& private_key, const crypto::Key& public_key);
  bool empty() const { return keys_.empty(); }
  size_t size() const { return keys_.size(); }
  struct Pair {
    crypto::X25519Private private_key;
    crypto::Key public_key;
  };
  const Pair* Find(const crypto::KeyId& id) const {
    auto it = keys_.find(id);
    return it == keys_.end() ? nullptr : &it->second;
  }

 private:
  std::map<crypto::KeyId, Pair> keys_;
};

struct OpenOptions {
  const Keyring* keys = nullptr;  // for encrypted envelopes
  const std::map<uint32_t, std::shared_ptr<const Dictionary>>* dictionaries = nullptr;  // by id
  uint32_t max_raw_bytes = format::kMaxBodyBytes;  // refuse a larger decompressed body
  bool require_encryption = false;  // refuse plain batches (gap records are never encrypted)
  // Set: every envelope must be signed by a key enrolled for the device its
  // header names (version 2); version 1 is refused as kUnsigned unless
  // allow_unsigned (the transition, FORMAT.md), and a version 1 gap record
  // for a device with an enrolled key always. Unset: the device id is taken
  // on its word and no signature is checked.
  const DeviceKeys* device_keys = nullptr;
  bool allow_unsigned = false;
};

// The Rejection for a refused signature.
Rejection RejectionFor(SignatureCheck check);

// Checks and decodes an envelope from an untrusted source. On failure the
// Status says why in words and `*why` (if given) says it as a Rejection;
// Corruption for damaged bytes, InvalidArgument for what this reader cannot
// or may not read (version, flag, codec, key, dictionary, size).
Result<OpenedEnvelope> OpenEnvelope(std::string_view bytes, const OpenOptions& options = {},
                                    Rejection* why = nullptr);

}  // namespace edgesync

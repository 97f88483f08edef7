// Constants of the on-disk and on-wire formats, mirroring FORMAT.md. Change
// one only together with FORMAT.md and the test vectors in tests/vectors/.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgesync::format {

// --- Record (one event), the same bytes in the journal and in a batch body.
// u16 topic_len, topic, i64 received_at_us, u8 qos, u16 content_type_len,
// content_type, u16 property_count,
// property_count x (u16 key_len, key, u16 value_len, value), u32 payload_len, payload.
constexpr size_t kMaxTopicBytes = 65535;
constexpr size_t kMinRecordBytes = 2 + 8 + 1 + 2 + 2 + 4;  // every field empty

// --- Journal frame: u32 body_len, u32 crc32c(body), body (see below).
constexpr size_t kJournalFrameHeader = 8;
constexpr uint32_t kJournalMaxBody = 64u << 20;  // a larger length is a torn or foreign file
// --- Journal segment, version 2: a header (magic, u8 version, u8 codec,
// u16 reserved), then frames whose bodies continue one zstd stream, each
// flushed so that one frame decompresses to exactly one record. A segment
// without the magic is version 1: each frame body is one record as it is.
constexpr char kJournalMagic[4] = {'E', 'D', 'G', 'J'};
constexpr uint8_t kJournalVersion = 2;
constexpr uint8_t kJournalCodecZstd = 1;
constexpr size_t kJournalHeader = 8;  // magic, version, codec, flags, reserved
// Header byte 6: flags. Encrypted: the header goes on with the journal
// key's id (8 bytes) and the segment's salt (16); each frame body is the
// compressed part sealed with AES-256-GCM (16-byte tag appended).
constexpr uint8_t kJournalFlagEncrypted = 0x01;
constexpr size_t kJournalKeyIdOffset = kJournalHeader;  // 8 bytes
constexpr size_t kJournalSaltOffset = kJournalHeader + 8;
constexpr size_t kJournalSaltBytes = 16;
constexpr size_t kJournalEncryptedHeader = kJournalHeader + 8 + kJournalSaltBytes;  // 32
constexpr char kJournalKeyInfo[] = "edgesync journal v2 segment key";
constexpr int kJournalZstdLevel = 1;
constexpr int kJournalWindowLog = 17;  // 128 KiB window: bounds both sides' memory

// --- Envelope (one sealed batch; one SQLite row; one Kafka message).
constexpr char kEnvelopeMagic[4] = {'E', 'D', 'G', 'S'};
constexpr uint8_t kEnvelopeVersion = 1;        // unsigned: read during the transition only
constexpr uint8_t kEnvelopeVersionSigned = 2;  // what agents write: signed by the device's key
constexpr size_t kEnvelopeFixedHeader = 58;  // bytes before the device id
constexpr size_t kEnvelopeTrailer = 4;       // crc32c of everything before it
// Version 2 only, between the body and the CRC: the signer's key id (the
// first 8 bytes of SHA-256 over its raw Ed25519 public key), then the
// Ed25519 signature over everything before the signature.
constexpr size_t kSignerKeyIdBytes = 8;
constexpr size_t kSignatureBytes = 64;
constexpr size_t kSignatureBlock = kSignerKeyIdBytes + kSignatureBytes;  // 72
// flags
constexpr uint8_t kFlagEncrypted = 0x01;  // the body is sealed for the key named by key_id
constexpr uint8_t kFlagGap = 0x02;        // a gap record: the body describes lost batches
constexpr uint8_t kKnownFlags = kFlagEncrypted | kFlagGap;  // a reader refuses any other flag
// codecs
constexpr uint8_t kCodecNone = 0;
constexpr uint8_t kCodecZstd = 1;
constexpr size_t kKeyIdBytes = 8;
// An encrypted body (flag kFlagEncrypted): ephemeral X25519 public key (32),
// wrapped data key (32) and its GCM tag (16), body nonce (12), then the
// codec's output encrypted with AES-256-GCM and its tag (16).
constexpr size_t kSealEphemeralBytes = 32;
constexpr size_t kSealWrappedKeyBytes = 32 + 16;
constexpr size_t kSealNonceBytes = 12;
constexpr size_t kSealTagBytes = 16;
constexpr size_t kSealOverhead =
    kSealEphemeralBytes + kSealWrappedKeyBytes + kSealNonceBytes + kSealTagBytes;  // 108
// HKDF-SHA256 "info" for the key that wraps a batch's data key.
constexpr char kSealWrapInfo[] = "edgesync envelope v1 key wrap";
constexpr size_t kMaxNameBytes = 255;
constexpr uint64_t kMaxBatchSeq = (uint64_t{1} << 63) - 1;  // batch sequences are 1..2^63-1  // device id, stream name
constexpr uint32_t kMaxBodyBytes = 64u << 20;  // a reader refuses a larger decompressed body

// --- Gap record body (flag kFlagGap, codec none, event_count 0):
// u64 first_seq, u64 last_seq, u64 events, u64 bytes, i64 at_us, u8 reason_len, reason.
constexpr size_t kGapBodyFixed = 8 * 5 + 1;
// Why batches were given up.
constexpr const char* kGapQuota = "quota";            // buffer.max_bytes reached
constexpr const char* kGapDiskFull = "disk-full";     // free space under buffer.min_free_bytes
constexpr const char* kGapExpired = "expired";        // older than buffer.max_age
constexpr const char* kGapStoreCorrupt = "store-corrupt";  // the store was damaged and replaced

// --- Fragment (FORMAT.md "Fragments"): part of an envelope a broker refused
// as too large, one Kafka message each.
// "EDGF", u8 version, u8 flags (0), u16 index, u16 count, u32 total_len,
// u32 crc32c of the whole envelope, then the slice. Version 2 (signed):
// the signer's key id after the header, then the slice, then the Ed25519
// signature over everything before it.
constexpr char kFragmentMagic[4] = {'E', 'D', 'G', 'F'};
constexpr uint8_t kFragmentVersion = 1;
constexpr uint8_t kFragmentVersionSigned = 2;
constexpr size_t kFragmentHeaderSize = 18;

// Kafka message headers set on every envelope.
constexpr const char* kHeaderFormat = "edgesync-format";
constexpr const char* kHeaderStream = "edgesync-stream";
constexpr const char* kHeaderBatch = "edgesync-batch";
constexpr const char* kHeaderEvents = "edgesync-events";
constexpr const char* kHeaderKind = "edgesync-kind";  // "batch", "gap" or "fragment"
constexpr const char* kHeaderFragment = "edgesync-fragment";  // "<index+1>/<count>" on fragments

}  // namespace edgesync::format

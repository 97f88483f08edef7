#include "format/envelope.h"

#include <zdict.h>
#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/printable.h"

namespace edgesync {

Lane ParseLane(std::string_view lane) {
  Lane l;
  const size_t first = lane.find('@');
  l.stream = std::string(lane.substr(0, first));
  if (first == std::string_view::npos) return l;
  const size_t last = lane.rfind('@');
  l.routed = true;
  if (last > first) l.route_topic = std::string(lane.substr(first + 1, last - first - 1));
  l.route_priority = std::string(lane.substr(last + 1));
  return l;
}

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

Dictionary::~Dictionary() {
  ZSTD_freeCDict(cdict_);
  ZSTD_freeDDict(ddict_);
}

Result<std::shared_ptr<const Dictionary>> Dictionary::Load(std::string_view bytes, int level) {
  const unsigned id = ZDICT_getDictID(bytes.data(), bytes.size());
  if (id == 0) {
    return Status::InvalidArgument(
        "not a zstd dictionary (no dictionary id; make one with `edgesync dict train`)");
  }
  std::shared_ptr<Dictionary> d(new Dictionary());
  d->id_ = id;
  d->cdict_ = ZSTD_createCDict(bytes.data(), bytes.size(), level);
  d->ddict_ = ZSTD_createDDict(bytes.data(), bytes.size());
  if (d->cdict_ == nullptr || d->ddict_ == nullptr) {
    return Status::InvalidArgument("zstd could not load the dictionary");
  }
  return std::shared_ptr<const Dictionary>(std::move(d));
}

Result<std::string> TrainDictionary(const std::vector<std::string>& samples, size_t max_bytes) {
  std::string joined;
  std::vector<size_t> sizes;
  for (const std::string& s : samples) {
    if (s.empty()) continue;
    joined.append(s);
    sizes.push_back(s.size());
  }
  if (sizes.size() < 8) {
    return Status::InvalidArgument("only " + std::to_string(sizes.size()) +
                                   " non-empty samples: a dictionary needs hundreds");
  }
  std::string dict(max_bytes, '\0');
  const size_t n = ZDICT_trainFromBuffer(dict.data(), dict.size(), joined.data(), sizes.data(),
                                         static_cast<unsigned>(sizes.size()));
  if (ZDICT_isError(n)) {
    return Status::InvalidArgument(std::string("zstd could not train a dictionary: ") +
                                   ZDICT_getErrorName(n) +
                                   " (give more samples, or a smaller --size)");
  }
  dict.resize(n);
  return dict;
}

namespace {

// One compression context per thread, reused: sealing allocates nothing
// for zstd once warm. Null until the thread's first seal, and again after
// ReleaseSealMemory.
std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)>& ThreadCCtxSlot() {
  thread_local std::unique_ptr<ZSTD_CCtx, size_t (*)(ZSTD_CCtx*)> ctx(nullptr, ZSTD_freeCCtx);
  return ctx;
}
ZSTD_CCtx* ThreadCCtx() {
  auto& ctx = ThreadCCtxSlot();
  if (!ctx) ctx.reset(ZSTD_createCCtx());
  return ctx.get();
}
// A new decompression context for every envelope, never a reused one: a
// used zstd 1.5 context keeps state from the frames it decoded, and a crafted
// frame decodes differently after another (the same bytes that a new context
// decoded failed on a used one). One device's batch must not depend on, or
// learn from, the batches decoded before it. A context costs ~7 us to make.
using DCtxPtr = std::unique_ptr<ZSTD_DCtx, size_t (*)(ZSTD_DCtx*)>;
DCtxPtr NewDCtx() { return DCtxPtr(ZSTD_createDCtx(), ZSTD_freeDCtx); }

std::string_view AsView(const uint8_t* p, size_t n) { return {reinterpret_cast<const char*>(p), n}; }

// The key that wraps a batch's data key (FORMAT.md, "Encryption").
Result<crypto::Key> WrapKey(const crypto::Key& shared, const crypto::Key& ephemeral_public,
                            const crypto::Key& recipient_public) {
  std::string salt;
  salt.append(AsView(ephemeral_public.data(), ephemeral_public.size()));
  salt.append(AsView(recipient_public.data(), recipient_public.size()));
  return crypto::HkdfSha256(AsView(shared.data(), shared.size()), salt,
                            std::string_view(format::kSealWrapInfo, sizeof format::kSealWrapInfo - 1));
}

constexpr crypto::Nonce kWrapNonce{};  // the wrap key encrypts one message only

// Appends the encrypted body (FORMAT.md) of `plain` to `out`, whose bytes
// so far are the header: it is the associated data of both seals.
Status SealBody(const Recipient& to, const SealSecrets* fixed, std::string_view plain, std::string* out) {
  SealSecrets s;
  if (fixed != nullptr) {
    s = *fixed;
  } else {
    EDGESYNC_RETURN_IF_ERROR(crypto::Random(&s.data_key));
    EDGESYNC_RETURN_IF_ERROR(crypto::Random(&s.nonce));
  }
  // A generated ephemeral key costs one scalar multiplication less than an
  // imported one (its public half comes with it).
  Result<crypto::X25519Private> ephemeral = fixed != nullptr
                                                ? crypto::X25519Private::FromRaw(s.ephemeral_private)
                                                : crypto::X25519Private::Generate();
  if (!ephemeral.ok()) return ephemeral.status();
  const crypto::Key& ephemeral_public = ephemeral->public_key();
  Result<crypto::Key> shared = ephemeral->Agree(to.public_key);
  if (!shared.ok()) return shared.status();
  Result<crypto::Key> wrap = WrapKey(*shared, ephemeral_public, to.public_key);
  if (!wrap.ok()) return wrap.status();
  const std::string header = *out;
  out->append(AsView(ephemeral_public.data(), ephemeral_public.size()));
  EDGESYNC_RETURN_IF_ERROR(
      crypto::GcmSeal(*wrap, kWrapNonce, header, AsView(s.data_key.data(), s.data_key.size()), out));
  out->append(AsView(s.nonce.data(), s.nonce.size()));
  Status st = crypto::GcmSeal(s.data_key, s.nonce, header, plain, out);
  // The batch's secrets exist only while it is sealed.
  crypto::Wipe(&s.ephemeral_private);
  crypto::Wipe(&s.data_key);
  crypto::Wipe(&*shared);
  crypto::Wipe(&*wrap);
  return st;
}

}  // namespace

void ReleaseSealMemory() { ThreadCCtxSlot().reset(); }

Result<std::string> SealEnvelope(BatchHeader h, std::string_view body, const SealOptions& options) {
  if (h.device_id.empty() || h.device_id.size() > format::kMaxNameBytes ||
      h.stream.empty() || h.stream.size() > format::kMaxNameBytes) {
    return Status::InvalidArgument("device id and stream must be 1..255 bytes");
  }
  if (body.size() > format::kMaxBodyBytes) return Status::InvalidArgument("batch body over 64 MiB");
  h.codec = options.codec;
  h.dict_id = 0;
  h.key_id = {};
  h.flags &= static_cast<uint8_t>(~format::kFlagEncrypted);

  std::string stored;
  if (h.codec == format::kCodecZstd) {
    stored.resize(ZSTD_compressBound(body.size()));
    size_t n;
    if (options.dictionary != nullptr) {
      h.dict_id = options.dictionary->id();
      n = ZSTD_compress_usingCDict(ThreadCCtx(), stored.data(), stored.size(), body.data(),
                                   body.size(), options.dictionary->cdict());
    } else {
      n = ZSTD_compressCCtx(ThreadCCtx(), stored.data(), stored.size(), body.data(), body.size(),
                            options.zstd_level);
    }
    if (ZSTD_isError(n)) {
      return Status::InvalidArgument(std::string("zstd: ") + ZSTD_getErrorName(n));
    }
    stored.resize(n);
  } else if (h.codec == format::kCodecNone) {
    stored.assign(body);
  } else {
    return Status::InvalidArgument("unknown codec " + std::to_string(h.codec));
  }
  size_t body_len = stored.size();
  if (options.recipient != nullptr) {
    h.flags |= format::kFlagEncrypted;
    h.key_id = options.recipient->key_id;
    body_len += format::kSealOverhead;
  }

  h.version = options.signer != nullptr ? format::kEnvelopeVersionSigned : format::kEnvelopeVersion;
  std::string out;
  const size_t header_len =
      format::kEnvelopeFixedHeader + 1 + h.device_id.size() + 1 + h.stream.size();
  out.reserve(header_len + body_len + format::kSignatureBlock + format::kEnvelopeTrailer);
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
  out.append(AsView(h.key_id.data(), h.key_id.size()));
  PutU32(&out, static_cast<uint32_t>(body_len));
  PutU32(&out, static_cast<uint32_t>(body.size()));
  PutU8(&out, static_cast<uint8_t>(h.device_id.size()));
  out.append(h.device_id);
  PutU8(&out, static_cast<uint8_t>(h.stream.size()));
  out.append(h.stream);
  if (options.recipient != nullptr) {
    EDGESYNC_RETURN_IF_ERROR(SealBody(*options.recipient, options.fixed_secrets, stored, &out));
  } else {
    out.append(stored);
  }
  if (options.signer != nullptr) {
    const crypto::KeyId& id = options.signer->key_id();
    out.append(AsView(id.data(), id.size()));
    EDGESYNC_RETURN_IF_ERROR(options.signer->Sign(out, &out));
  }
  PutU32(&out, crc32c::Value(out));
  return out;
}

void EncodeGapBody(const Gap& gap, std::string* body) {
  PutU64(body, gap.first_seq);
  PutU64(body, gap.last_seq);
  PutU64(body, gap.events);
  PutU64(body, gap.bytes);
  PutI64(body, gap.at_us);
  PutU8(body, static_cast<uint8_t>(gap.reason.size()));
  body->append(gap.reason);
}

Result<std::string> SealGapRecord(const std::string& device_id, const Gap& gap, const DeviceSigner* signer) {
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
  EncodeGapBody(gap, &body);
  SealOptions plain;
  plain.codec = format::kCodecNone;
  plain.signer = signer;
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
  if (in.failed() || in.remaining() != 0 || gap->reason.empty()) {
    return Status::Corruption("gap record body malformed");
  }
  if (h.event_count != 0 || gap->first_seq != h.batch_seq || gap->last_seq < gap->first_seq ||
      gap->last_seq > format::kMaxBatchSeq) {
    return Status::Corruption("gap record inconsistent with its header");
  }
  return Status::OK();
}

}  // namespace

const char* RejectionName(Rejection r) {
  switch (r) {
    case Rejection::kNone: return "none";
    case Rejection::kMalformed: return "malformed";
    case Rejection::kChecksum: return "checksum";
    case Rejection::kVersion: return "unknown_version";
    case Rejection::kFlags: return "unknown_flags";
    case Rejection::kCodec: return "bad_codec";
    case Rejection::kUnknownKey: return "unknown_key";
    case Rejection::kDecrypt: return "decrypt_failed";
    case Rejection::kNotEncrypted: return "not_encrypted";
    case Rejection::kUnknownDictionary: return "unknown_dictionary";
    case Rejection::kTooLarge: return "too_large";
    case Rejection::kUnsigned: return "unsigned";
    case Rejection::kUnknownDevice: return "unknown_device";
    case Rejection::kWrongKey: return "wrong_key";
    case Rejection::kRevokedKey: return "revoked_key";
    case Rejection::kBadSignature: return "bad_signature";
  }
  return "unknown";
}

Rejection RejectionFor(SignatureCheck check) {
  switch (check) {
    case SignatureCheck::kOk: return Rejection::kNone;
    case SignatureCheck::kUnknownDevice: return Rejection::kUnknownDevice;
    case SignatureCheck::kWrongKey: return Rejection::kWrongKey;
    case SignatureCheck::kRevokedKey: return Rejection::kRevokedKey;
    case SignatureCheck::kBadSignature: return Rejection::kBadSignature;
  }
  return Rejection::kBadSignature;
}

Status Keyring::AddPrivate(const crypto::Key& private_key) {
  Result<crypto::X25519Private> k = crypto::X25519Private::FromRaw(private_key);
  if (!k.ok()) return k.status();
  const crypto::Key pub = k->public_key();
  keys_.insert_or_assign(crypto::ShortHash(pub), Pair{std::move(k).value(), pub});
  return Status::OK();
}

Status Keyring::Add(const crypto::Key& private_key, const crypto::Key& public_key) {
  Result<crypto::X25519Private> k = crypto::X25519Private::FromRaw(private_key);
  if (!k.ok()) return k.status();
  keys_.insert_or_assign(crypto::ShortHash(public_key), Pair{std::move(k).value(), public_key});
  return Status::OK();
}

namespace {

// Decrypts an encrypted body (FORMAT.md, "Encryption") into `plain`.
Status OpenBody(const Keyring::Pair& key, std::string_view header, std::string_view sealed,
                std::string* plain) {
  if (sealed.size() < format::kSealOverhead) return Status::Corruption("encrypted body too short");
  crypto::Key ephemeral_public{};
  std::copy_n(sealed.data(), ephemeral_public.size(), reinterpret_cast<char*>(ephemeral_public.data()));
  sealed.remove_prefix(format::kSealEphemeralBytes);
  Result<crypto::Key> shared = key.private_key.Agree(ephemeral_public);
  if (!shared.ok()) return shared.status();
  Result<crypto::Key> wrap = WrapKey(*shared, ephemeral_public, key.public_key);
  if (!wrap.ok()) return wrap.status();
  std::string data_key;
  Status st = crypto::GcmOpen(*wrap, kWrapNonce, header, sealed.substr(0, format::kSealWrappedKeyBytes), &data_key);
  crypto::Wipe(&*shared);
  crypto::Wipe(&*wrap);
  if (!st.ok()) return Status::Corruption("the data key does not unwrap: " + st.message());
  sealed.remove_prefix(format::kSealWrappedKeyBytes);
  crypto::Key k{};
  std::copy_n(data_key.data(), k.size(), reinterpret_cast<char*>(k.data()));
  crypto::Wipe(data_key.data(), data_key.size());
  crypto::Nonce nonce{};
  std::copy_n(sealed.data(), nonce.size(), reinterpret_cast<char*>(nonce.data()));
  sealed.remove_prefix(format::kSealNonceBytes);
  st = crypto::GcmOpen(k, nonce, header, sealed, plain);
  crypto::Wipe(&k);
  return st;
}

}  // namespace

Result<OpenedEnvelope> OpenEnvelope(std::string_view bytes, const OpenOptions& options, Rejection* why) {
  Rejection ignored;
  Rejection& reason = why != nullptr ? *why : ignored;
  reason = Rejection::kMalformed;
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
  if (h.version != format::kEnvelopeVersion && h.version != format::kEnvelopeVersionSigned) {
    reason = Rejection::kVersion;
    return Status::InvalidArgument("envelope version " + std::to_string(h.version) +
                                   " is not supported by this reader (supports 1 and 2)");
  }
  const bool is_signed = h.version == format::kEnvelopeVersionSigned;
  const size_t signature_block = is_signed ? format::kSignatureBlock : 0;
  h.flags = in.U8();
  if ((h.flags & ~format::kKnownFlags) != 0) {
    reason = Rejection::kFlags;
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
  // The checks run in the order of FORMAT.md's "What a reader does", so
  // that the reason given is the first step that fails: before the CRC
  // only what is needed to find it (steps 1 to 5).
  if (in.failed() || in.position() > header_len) {
    return Status::Corruption("envelope header truncated");
  }
  // Never past this with an empty device id: CheckSignature would take any
  // enrolled key for it.
  if (h.device_id.empty() || h.stream.empty()) {
    return Status::Corruption("envelope device id or stream is empty");
  }
  // A longer header_len than this reader knows holds fields added later in
  // version 1; they are covered by the checksum and skipped here.
  const size_t total = size_t{header_len} + body_len + signature_block + format::kEnvelopeTrailer;
  if (bytes.size() != total) {
    return Status::Corruption("envelope length " + std::to_string(bytes.size()) +
                              " does not match its header (" + std::to_string(total) + ")");
  }
  const size_t covered = total - format::kEnvelopeTrailer;
  if (crc32c::Value(bytes.substr(0, covered)) != LoadU32(bytes.data() + covered)) {
    reason = Rejection::kChecksum;
    return Status::Corruption("envelope checksum mismatch");
  }
  // Who wrote it, before anything the writer says is believed.
  if (is_signed) {
    const size_t id_at = size_t{header_len} + body_len;
    crypto::KeyId signer{};
    std::memcpy(signer.data(), bytes.data() + id_at, signer.size());
    e.signer = signer;
    if (options.device_keys != nullptr) {
      std::string why_not;
      const SignatureCheck check =
          CheckSignature(*options.device_keys, h.device_id, signer, bytes.substr(0, id_at + signer.size()),
                         bytes.substr(id_at + signer.size(), format::kSignatureBytes), &why_not);
      if (check != SignatureCheck::kOk) {
        reason = RejectionFor(check);
        return Status::InvalidArgument("envelope " + why_not);
      }
      e.verified = true;
    }
  } else if (options.device_keys != nullptr && !options.allow_unsigned) {
    reason = Rejection::kUnsigned;
    return Status::InvalidArgument("envelope version 1 is not signed, and this reader requires signed "
                                   "envelopes (version 2); unpack's --allow-unsigned reads both during "
                                   "the transition");
  } else if (options.device_keys != nullptr && (h.flags & format::kFlagGap) != 0 &&
             options.device_keys->Knows(h.device_id)) {
    // Even during the transition: one unsigned gap record could mark any
    // range of an enrolled device's batches as seen, and its real, signed
    // batches would be dropped as duplicates.
    reason = Rejection::kUnsigned;
    return Status::InvalidArgument("an unsigned gap record (version 1) for device \"" + Printable(h.device_id) +
                                   "\", which has an enrolled key: refused even with --allow-unsigned");
  }
  const bool is_gap = (h.flags & format::kFlagGap) != 0;
  if (h.batch_seq == 0 || h.batch_seq > format::kMaxBatchSeq) {
    return Status::Corruption("envelope batch sequence " + std::to_string(h.batch_seq) +
                              " is out of range (1..2^63-1)");
  }
  if (raw_len > options.max_raw_bytes) {
    reason = Rejection::kTooLarge;
    return Status::InvalidArgument("envelope body states " + std::to_string(raw_len) +
                                   " bytes decompressed, over the limit of " +
                                   std::to_string(options.max_raw_bytes));
  }
  std::string_view stored = bytes.substr(header_len, body_len);
  std::string decrypted;
  if (h.flags & format::kFlagEncrypted) {
    const Keyring::Pair* key = options.keys != nullptr ? options.keys->Find(h.key_id) : nullptr;
    if (key == nullptr) {
      reason = Rejection::kUnknownKey;
      return Status::InvalidArgument("envelope is encrypted for key " + crypto::Hex(h.key_id) +
                                     ", which is not among this reader's private keys");
    }
    Status st = OpenBody(*key, bytes.substr(0, header_len), stored, &decrypted);
    if (!st.ok()) {
      reason = Rejection::kDecrypt;
      return st;
    }
    stored = decrypted;
  } else if (options.require_encryption && !is_gap) {
    reason = Rejection::kNotEncrypted;
    return Status::InvalidArgument("envelope is not encrypted, and this reader requires encryption");
  }

  if (h.codec != format::kCodecZstd && h.codec != format::kCodecNone) {
    reason = Rejection::kCodec;
    return Status::InvalidArgument("envelope codec " + std::to_string(h.codec) + " is unknown");
  }
  const Dictionary* dict = nullptr;
  if (h.dict_id != 0 && h.codec != format::kCodecZstd) {
    return Status::Corruption("envelope names zstd dictionary " + std::to_string(h.dict_id) +
                              " but is not compressed (codec 0)");
  }
  if (h.dict_id != 0) {
    if (options.dictionaries != nullptr) {
      auto it = options.dictionaries->find(h.dict_id);
      if (it != options.dictionaries->end()) dict = it->second.get();
    }
    if (dict == nullptr) {
      reason = Rejection::kUnknownDictionary;
      return Status::InvalidArgument("envelope was compressed with zstd dictionary " +
                                     std::to_string(h.dict_id) + ", which this reader does not have");
    }
  }
  std::string raw;
  if (h.codec == format::kCodecZstd) {
    // Exactly one frame that states exactly raw_len, checked before any
    // allocation (the frame's own size could disagree with the header's).
    const size_t frame = ZSTD_findFrameCompressedSize(stored.data(), stored.size());
    const unsigned long long content = ZSTD_getFrameContentSize(stored.data(), stored.size());
    if (ZSTD_isError(frame) || frame != stored.size() || content != raw_len) {
      reason = Rejection::kCodec;
      return Status::Corruption("envelope body is not one zstd frame of its stated size");
    }
    raw.resize(raw_len);
    const DCtxPtr dctx = NewDCtx();
    if (dctx == nullptr) return Status::IOError("out of memory for a zstd decompression context");
    size_t n = dict != nullptr
                   ? ZSTD_decompress_usingDDict(dctx.get(), raw.data(), raw.size(), stored.data(),
                                                stored.size(), dict->ddict())
                   : ZSTD_decompressDCtx(dctx.get(), raw.data(), raw.size(), stored.data(), stored.size());
    if (ZSTD_isError(n) || n != raw_len) {
      reason = Rejection::kCodec;
      return Status::Corruption("envelope body does not decompress to its stated size");
    }
  } else {
    if (raw_len != stored.size()) return Status::Corruption("uncompressed body length mismatch");
    raw.assign(stored);
  }

  reason = Rejection::kMalformed;
  if (is_gap) {
    e.gap.emplace();
    EDGESYNC_RETURN_IF_ERROR(DecodeGapBody(raw, h, &*e.gap));
    reason = Rejection::kNone;
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
  reason = Rejection::kNone;
  return e;
}

}  // namespace edgesync

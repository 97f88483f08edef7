// libFuzzer target for OpenEnvelope, the decoder that reads envelopes from an
// untrusted source (Kafka, edgesync-unpack). Also linked with replay_main.cpp
// into envelope_fuzz_replay, which ctest runs over corpus/envelope/ with any
// compiler, so every kept input is checked again on every build.
//
// The reader holds the test key pair of tests/vectors/sealed-zstd.txt and one
// trained dictionary, as a central reader would. Each input is opened with
// require_encryption off and on, and again with its trailing CRC-32C
// recomputed: otherwise nearly every mutation stops at the checksum and the
// fuzzer never reaches decryption, decompression or record decoding.
//
// Besides "no crash, no leak, no ASan/UBSan report", these must hold:
//  - refused: a Rejection other than kNone; opened: kNone;
//  - what opens is well formed as FORMAT.md defines it: known flags,
//    names of 1..255 bytes, event_count records, a Gap exactly when the gap
//    flag is set;
//  - require_encryption only adds the kNotEncrypted refusal of plain batches;
//  - what opens seals again (same header, codec, dictionary, key) into an
//    envelope that opens to the same header and records.
// A broken invariant prints what differs and aborts, so libFuzzer keeps the
// input as a crash file.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "format/envelope.h"
#include "format/format.h"
#include "format/record.h"

namespace edgesync {
namespace {

[[noreturn]] void Fail(const char* what, std::string_view detail = {}) {
  std::fprintf(stderr, "envelope_fuzz: invariant broken: %s %.*s\n", what,
               static_cast<int>(detail.size()), detail.data());
  std::abort();
}

#define FUZZ_CHECK(cond, detail) \
  do {                           \
    if (!(cond)) Fail(#cond, detail); \
  } while (0)

// The private key of tests/vectors/sealed-zstd.txt: bytes 0x10..0x2f.
crypto::Key TestPrivateKey() {
  crypto::Key k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(0x10 + i);
  return k;
}

// Records like the test vectors', varied enough for zstd to train on.
std::vector<std::string> DictionarySamples() {
  std::vector<std::string> samples;
  for (int i = 0; i < 600; ++i) {
    Record r;
    r.topic = "terminal/term-" + std::to_string(1000 + i % 37) + "/payment/authorization";
    r.received_at_us = 1'795'000'000'000'001 + int64_t{i} * 250'013;
    r.qos = 1;
    r.payload = R"({"device":"term-)" + std::to_string(1000 + i % 37) + R"(","seq":)" +
                std::to_string(i) + R"(,"amount":)" + std::to_string((i * 7919) % 100000) +
                R"(,"currency":")" + (i % 3 ? "EUR" : "USD") + R"(","pan":")" +
                (i % 2 ? "411111" : "550000") + "******" + std::to_string(1000 + (i * 31) % 9000) +
                R"("})";
    std::string encoded;
    EncodeRecord(r, &encoded);
    samples.push_back(std::move(encoded));
  }
  return samples;
}

// What the reader holds; built once (training a dictionary takes a while).
struct Reader {
  Keyring keys;
  Recipient recipient;  // the same key pair, to seal again what opened
  std::map<uint32_t, std::shared_ptr<const Dictionary>> dictionaries;

  Reader() {
    const crypto::Key priv = TestPrivateKey();
    Result<crypto::Key> pub = crypto::X25519PublicKey(priv);
    if (!pub.ok()) Fail("X25519PublicKey of the test key", pub.status().ToString());
    if (!keys.AddPrivate(priv).ok()) Fail("Keyring::AddPrivate", "the test key");
    recipient = Recipient::For(*pub);
    Result<std::string> trained = TrainDictionary(DictionarySamples(), 4096);
    if (!trained.ok()) Fail("TrainDictionary", trained.status().ToString());
    Result<std::shared_ptr<const Dictionary>> dict = Dictionary::Load(*trained, 3);
    if (!dict.ok()) Fail("Dictionary::Load", dict.status().ToString());
    dictionaries[(*dict)->id()] = *dict;
  }

  OpenOptions Options(bool require_encryption) const {
    OpenOptions o;
    o.keys = &keys;
    o.dictionaries = &dictionaries;
    o.require_encryption = require_encryption;
    return o;
  }
};

const Reader& TheReader() {
  static const Reader* reader = new Reader();  // never freed: lives as long as the process
  return *reader;
}

struct Outcome {
  Result<OpenedEnvelope> opened;
  Rejection why;
};

Outcome Open(std::string_view bytes, bool require_encryption) {
  Rejection why = Rejection::kNone;
  Result<OpenedEnvelope> r = OpenEnvelope(bytes, TheReader().Options(require_encryption), &why);
  return {std::move(r), why};
}

bool SameHeader(const BatchHeader& a, const BatchHeader& b) {
  // key_id means something only when encrypted (a plain envelope's is
  // "zero" by FORMAT.md, but a reader does not check it).
  const bool key_matters = (a.flags & format::kFlagEncrypted) != 0;
  return a.version == b.version && a.flags == b.flags && a.device_id == b.device_id &&
         a.stream == b.stream && a.batch_seq == b.batch_seq && a.event_count == b.event_count &&
         a.first_event_us == b.first_event_us && a.last_event_us == b.last_event_us &&
         a.codec == b.codec && a.dict_id == b.dict_id && (!key_matters || a.key_id == b.key_id);
}

bool SameGap(const std::optional<Gap>& a, const std::optional<Gap>& b) {
  if (a.has_value() != b.has_value()) return false;
  if (!a.has_value()) return true;
  return a->stream == b->stream && a->first_seq == b->first_seq && a->last_seq == b->last_seq &&
         a->events == b->events && a->bytes == b->bytes && a->first_event_us == b->first_event_us &&
         a->last_event_us == b->last_event_us && a->reason == b->reason && a->at_us == b->at_us;
}

bool SameContent(const OpenedEnvelope& a, const OpenedEnvelope& b) {
  return SameHeader(a.header, b.header) && a.records == b.records && SameGap(a.gap, b.gap);
}

void CheckWellFormed(const Outcome& o, bool require_encryption) {
  if (!o.opened.ok()) {
    FUZZ_CHECK(o.why != Rejection::kNone, o.opened.status().ToString());
    return;
  }
  FUZZ_CHECK(o.why == Rejection::kNone, RejectionName(o.why));
  const OpenedEnvelope& e = *o.opened;
  const BatchHeader& h = e.header;
  const bool is_gap = (h.flags & format::kFlagGap) != 0;
  const bool encrypted = (h.flags & format::kFlagEncrypted) != 0;
  FUZZ_CHECK(h.version == format::kEnvelopeVersion || h.version == format::kEnvelopeVersionSigned, "");
  FUZZ_CHECK(e.signer.has_value() == (h.version == format::kEnvelopeVersionSigned), "");
  FUZZ_CHECK(!e.verified, "verified without device keys");
  FUZZ_CHECK((h.flags & ~format::kKnownFlags) == 0, "");
  FUZZ_CHECK(h.codec == format::kCodecNone || h.codec == format::kCodecZstd, "");
  // FORMAT.md: names and a gap's reason are 1..255 bytes; what a writer may
  // not write, a reader must not accept.
  FUZZ_CHECK(!h.device_id.empty() && !h.stream.empty(), "empty device id or stream");
  FUZZ_CHECK(e.gap.has_value() == is_gap, "");
  FUZZ_CHECK(!is_gap || !e.gap->reason.empty(), "empty gap reason");
  FUZZ_CHECK(e.records.size() == h.event_count, "");
  FUZZ_CHECK(!is_gap || (h.event_count == 0 && e.gap->first_seq == h.batch_seq &&
                         e.gap->last_seq >= e.gap->first_seq), "");
  FUZZ_CHECK(!require_encryption || encrypted || is_gap, "plain batch opened");
  FUZZ_CHECK(!encrypted || h.key_id == TheReader().recipient.key_id, "");
}

// The raw body `e` was made from: its records, or its gap description.
std::string RawBody(const OpenedEnvelope& e) {
  std::string body;
  if (e.gap.has_value()) {
    EncodeGapBody(*e.gap, &body);
  } else {
    for (const Record& r : e.records) AppendToBody(r, &body);
  }
  return body;
}

// A reader's device keys: `s`, enrolled for one device.
DeviceKeySet OneDevice(const std::string& device, const DeviceSigner& s) {
  DeviceKeySet keys;
  keys.Add(device, *DevicePublicKey::FromRaw(s.public_key()), false);
  return keys;
}

// What opened seals again, with the same codec, dictionary and key (and,
// when it was signed, signed with the fuzz reader's device key), into an
// envelope that opens to the same content, verified when signed.
void CheckReseal(const OpenedEnvelope& e, bool require_encryption) {
  const Reader& reader = TheReader();
  static const DeviceSigner* signer = [] {
    ossl::Ed25519Raw seed{};
    seed.fill(0x5e);
    Result<DeviceSigner> s = DeviceSigner::FromRawPrivate(seed);
    if (!s.ok()) Fail("DeviceSigner::FromRawPrivate", s.status().ToString());
    return new DeviceSigner(*s);  // never freed: lives as long as the process
  }();
  SealOptions so;
  if (e.signer.has_value()) so.signer = signer;
  so.codec = e.header.codec;
  if (e.header.dict_id != 0) so.dictionary = reader.dictionaries.at(e.header.dict_id).get();
  if (e.header.flags & format::kFlagEncrypted) so.recipient = &reader.recipient;
  Result<std::string> sealed = SealEnvelope(e.header, RawBody(e), so);
  FUZZ_CHECK(sealed.ok(), sealed.status().ToString());
  Outcome again = Open(*sealed, require_encryption);
  FUZZ_CHECK(again.opened.ok(), again.opened.status().ToString());
  FUZZ_CHECK(SameContent(e, *again.opened), "re-sealed envelope opens differently");
  if (e.signer.has_value()) {
    const DeviceKeySet enrolled = OneDevice(e.header.device_id, *signer);
    OpenOptions o = reader.Options(require_encryption);
    o.device_keys = &enrolled;
    Result<OpenedEnvelope> verified = OpenEnvelope(*sealed, o);
    FUZZ_CHECK(verified.ok() && verified->verified, verified.ok() ? "not verified" : verified.status().ToString());
    // The same bytes for another device: refused.
    const DeviceKeySet other = OneDevice(e.header.device_id + "x", *signer);
    o.device_keys = &other;
    Rejection why = Rejection::kNone;
    FUZZ_CHECK(!OpenEnvelope(*sealed, o, &why).ok() && why == Rejection::kWrongKey, RejectionName(why));
  }
}

void CheckOne(std::string_view bytes) {
  Outcome lax = Open(bytes, false);
  Outcome strict = Open(bytes, true);
  CheckWellFormed(lax, false);
  CheckWellFormed(strict, true);

  // require_encryption refuses plain batches and changes nothing else.
  if (strict.opened.ok()) {
    FUZZ_CHECK(lax.opened.ok() && SameContent(*lax.opened, *strict.opened), "");
  } else if (lax.opened.ok()) {
    FUZZ_CHECK(strict.why == Rejection::kNotEncrypted, RejectionName(strict.why));
    FUZZ_CHECK(!(lax.opened->header.flags & (format::kFlagEncrypted | format::kFlagGap)), "");
  } else {
    // Both refused: for the same reason, unless the strict reader stopped
    // earlier at a plain batch (it checks that before decompressing).
    FUZZ_CHECK(strict.why == lax.why || strict.why == Rejection::kNotEncrypted,
               RejectionName(strict.why));
  }

  // Once is enough: what the strict reader opened, the lax one opened alike.
  if (lax.opened.ok()) CheckReseal(*lax.opened, false);
}

}  // namespace
}  // namespace edgesync

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace edgesync;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  CheckOne(bytes);

  // The same bytes with a correct checksum, to get past it.
  if (size >= format::kEnvelopeTrailer) {
    std::string fixed(bytes);
    const size_t covered = size - format::kEnvelopeTrailer;
    const uint32_t crc = crc32c::Value(std::string_view(fixed).substr(0, covered));
    if (crc != LoadU32(fixed.data() + covered)) {
      StoreU32(fixed.data() + covered, crc);
      CheckOne(fixed);
    }
  }
  return 0;
}

#include <gtest/gtest.h>
#include <zstd.h>

#include <cstring>
#include <map>

#include "base/coding.h"
#include "base/crc32c.h"
#include "format/envelope.h"
#include "format/identity.h"
#include "format/record.h"
#include "tests/support/envelopes.h"

namespace edgesync {
namespace {

Record MakeRecord(int i) {
  Record r;
  r.topic = "terminal/t" + std::to_string(i) + "/payment/authorization";
  r.received_at_us = 1'790'000'000'000'000 + i;
  r.qos = 1;
  if (i % 2) r.properties = {{"origin", "pos"}, {"k", std::string(3, char('a' + i % 26))}};
  if (i % 3 == 0) r.content_type = "application/json";
  r.payload = R"({"seq":)" + std::to_string(i) + R"(,"amount":1250})";
  return r;
}

TEST(Record, RoundTrip) {
  for (int i = 0; i < 4; ++i) {
    std::string enc;
    EncodeRecord(MakeRecord(i), &enc);
    Result<Record> back = DecodeRecord(enc);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, MakeRecord(i));
    // Every strict prefix is a clean error, never a crash or a wrong record.
    for (size_t n = 0; n < enc.size(); ++n) {
      EXPECT_FALSE(DecodeRecord(std::string_view(enc).substr(0, n)).ok()) << n;
    }
    EXPECT_FALSE(DecodeRecord(enc + "x").ok());
  }
}

BatchHeader Header(uint32_t events) {
  BatchHeader h;
  h.device_id = "term-0042";
  h.stream = "payments";
  h.batch_seq = 7;
  h.event_count = events;
  h.first_event_us = 100;
  h.last_event_us = 200;
  return h;
}

class EnvelopeCodec : public ::testing::TestWithParam<uint8_t> {};

TEST_P(EnvelopeCodec, SealThenOpenGivesTheRecordsBack) {
  std::string body;
  std::vector<Record> records;
  for (int i = 0; i < 50; ++i) {
    records.push_back(MakeRecord(i));
    std::string enc;
    EncodeRecord(records.back(), &enc);
    AppendToBody(enc, &body);
  }
  SealOptions opt;
  opt.codec = GetParam();
  Result<std::string> env = SealEnvelope(Header(50), body, opt);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  if (GetParam() == format::kCodecZstd) {
    EXPECT_LT(env->size(), body.size() / 2);
  }
  Result<OpenedEnvelope> opened = OpenEnvelope(*env);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->header.device_id, "term-0042");
  EXPECT_EQ(opened->header.stream, "payments");
  EXPECT_EQ(opened->header.batch_seq, 7u);
  EXPECT_EQ(opened->header.event_count, 50u);
  EXPECT_EQ(opened->header.first_event_us, 100);
  EXPECT_EQ(opened->header.last_event_us, 200);
  EXPECT_EQ(opened->header.codec, GetParam());
  EXPECT_EQ(opened->records, records);
}

INSTANTIATE_TEST_SUITE_P(Codecs, EnvelopeCodec,
                         ::testing::Values(format::kCodecNone, format::kCodecZstd));

TEST(Envelope, EverySingleByteFlipIsDetected) {
  std::string body, enc;
  EncodeRecord(MakeRecord(1), &enc);
  AppendToBody(enc, &body);
  Result<std::string> env = SealEnvelope(Header(1), body);
  ASSERT_TRUE(env.ok());
  for (size_t i = 0; i < env->size(); ++i) {
    std::string bad = *env;
    bad[i] ^= 0x01;
    EXPECT_FALSE(OpenEnvelope(bad).ok()) << "flip at " << i;
  }
  for (size_t n = 0; n < env->size(); ++n) {
    EXPECT_FALSE(OpenEnvelope(std::string_view(*env).substr(0, n)).ok()) << "prefix " << n;
  }
}

TEST(Envelope, CountMismatchAndUnknownVersionAreRefused) {
  std::string body, enc;
  EncodeRecord(MakeRecord(1), &enc);
  AppendToBody(enc, &body);
  Result<std::string> wrong_count = SealEnvelope(Header(2), body);
  ASSERT_TRUE(wrong_count.ok());
  Result<OpenedEnvelope> o = OpenEnvelope(*wrong_count);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(o.status().code(), Status::Code::kCorruption);

  // Versions 1 (unsigned) and 2 (signed) are known; 3 is not.
  Result<std::string> v3 = SealEnvelope(Header(1), body);
  ASSERT_TRUE(v3.ok());
  (*v3)[4] = 3;
  Result<OpenedEnvelope> o3 = OpenEnvelope(testing::WithFixedCrc(*v3));
  ASSERT_FALSE(o3.ok());
  EXPECT_EQ(o3.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(o3.status().message().find("version 3"), std::string::npos);

  EXPECT_FALSE(OpenEnvelope("not an envelope at all, just some text that is long enough to pass "
                            "the length check of the fixed header").ok());
}

TEST(Envelope, GapRecordRoundTripsAndIsChecked) {
  Gap g;
  g.stream = "payments";
  g.first_seq = 17;
  g.last_seq = 42;
  g.events = 26'000;
  g.bytes = 3'000'000;
  g.first_event_us = 1'700'000'000'000'000;
  g.last_event_us = 1'700'000'100'000'000;
  g.reason = format::kGapQuota;
  g.at_us = 1'700'000'200'000'000;
  Result<std::string> env = SealGapRecord("term-0042", g);
  ASSERT_TRUE(env.ok()) << env.status().ToString();
  Result<OpenedEnvelope> o = OpenEnvelope(*env);
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->header.flags, format::kFlagGap);
  EXPECT_EQ(o->header.batch_seq, 17u);
  EXPECT_EQ(o->header.event_count, 0u);
  EXPECT_TRUE(o->records.empty());
  ASSERT_TRUE(o->gap.has_value());
  EXPECT_EQ(o->gap->stream, "payments");
  EXPECT_EQ(o->gap->last_seq, 42u);
  EXPECT_EQ(o->gap->events, 26'000u);
  EXPECT_EQ(o->gap->bytes, 3'000'000u);
  EXPECT_EQ(o->gap->reason, "quota");
  EXPECT_EQ(o->gap->at_us, g.at_us);
  EXPECT_EQ(o->gap->first_event_us, g.first_event_us);
  for (size_t i = 0; i < env->size(); ++i) {
    std::string bad = *env;
    bad[i] ^= 0x01;
    EXPECT_FALSE(OpenEnvelope(bad).ok()) << "flip at " << i;
  }
  // A body that disagrees with its header is refused even with a good checksum.
  BatchHeader h;
  h.flags = format::kFlagGap;
  h.device_id = "d";
  h.stream = "s";
  h.batch_seq = 5;
  std::string body(format::kGapBodyFixed - 1, '\0');  // too short
  SealOptions plain;
  plain.codec = format::kCodecNone;
  Result<std::string> short_body = SealEnvelope(h, body, plain);
  ASSERT_TRUE(short_body.ok());
  EXPECT_EQ(OpenEnvelope(*short_body).status().code(), Status::Code::kCorruption);
}

TEST(Envelope, UnknownFlagIsRefused) {
  std::string body, enc;
  EncodeRecord(MakeRecord(1), &enc);
  AppendToBody(enc, &body);
  BatchHeader h = Header(1);
  h.flags = 0x04;
  Result<std::string> env = SealEnvelope(h, body);
  ASSERT_TRUE(env.ok());
  EXPECT_EQ(OpenEnvelope(*env).status().code(), Status::Code::kInvalidArgument);
}

using TestKey = testing::TestKeyPair;

std::string Body(int records) {
  std::string body;
  for (int i = 0; i < records; ++i) AppendToBody(MakeRecord(i), &body);
  return body;
}

using testing::WithFixedCrc;

TEST(SealedEnvelope, OpensOnlyWithTheRecipientsKey) {
  TestKey central, other;
  const Recipient to = Recipient::For(central.public_key);
  SealOptions so;
  so.recipient = &to;
  Result<std::string> sealed = SealEnvelope(Header(20), Body(20), so);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  // The payloads are not in the clear, and each seal is fresh.
  EXPECT_EQ(sealed->find("amount"), std::string::npos);
  EXPECT_NE(*SealEnvelope(Header(20), Body(20), so), *sealed);

  Keyring keys;
  ASSERT_TRUE(keys.AddPrivate(other.private_key).ok());
  ASSERT_TRUE(keys.AddPrivate(central.private_key).ok());  // rotation: several keys
  OpenOptions oo;
  oo.keys = &keys;
  Result<OpenedEnvelope> opened = OpenEnvelope(*sealed, oo);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->header.flags, format::kFlagEncrypted);
  EXPECT_EQ(opened->header.key_id, crypto::ShortHash(central.public_key));
  std::vector<Record> want;
  for (int i = 0; i < 20; ++i) want.push_back(MakeRecord(i));
  EXPECT_EQ(opened->records, want);

  Rejection why = Rejection::kNone;
  Keyring wrong;
  ASSERT_TRUE(wrong.AddPrivate(other.private_key).ok());
  oo.keys = &wrong;
  Result<OpenedEnvelope> refused = OpenEnvelope(*sealed, oo, &why);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(why, Rejection::kUnknownKey);
  EXPECT_NE(refused.status().message().find(crypto::Hex(to.key_id)), std::string::npos);
  EXPECT_FALSE(OpenEnvelope(*sealed).ok());  // no keys at all

  // A key id that matches but a private key that does not: the wrap fails.
  Keyring impostor;
  ASSERT_TRUE(impostor.Add(other.private_key, central.public_key).ok());
  oo.keys = &impostor;
  EXPECT_FALSE(OpenEnvelope(*sealed, oo, &why).ok());
  EXPECT_EQ(why, Rejection::kDecrypt);
}

TEST(SealedEnvelope, NoChangedByteEverPassesEvenWithARecomputedChecksum) {
  TestKey central;
  const Recipient to = Recipient::For(central.public_key);
  SealOptions so;
  so.recipient = &to;
  Result<std::string> sealed = SealEnvelope(Header(3), Body(3), so);
  ASSERT_TRUE(sealed.ok());
  Keyring keys;
  ASSERT_TRUE(keys.AddPrivate(central.private_key).ok());
  OpenOptions oo;
  oo.keys = &keys;
  ASSERT_TRUE(OpenEnvelope(*sealed, oo).ok());
  const size_t covered = sealed->size() - format::kEnvelopeTrailer;
  for (size_t i = 0; i < covered; ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = *sealed;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      Rejection why = Rejection::kNone;
      EXPECT_FALSE(OpenEnvelope(bad, oo, &why).ok()) << "byte " << i << " bit " << bit;
      EXPECT_NE(why, Rejection::kNone);
      ASSERT_FALSE(OpenEnvelope(WithFixedCrc(bad), oo, &why).ok()) << "byte " << i << " bit " << bit;
      EXPECT_NE(why, Rejection::kNone);
    }
  }
  // The body's bytes, checksum fixed: only GCM can tell, and it does.
  std::string body_flip = *sealed;
  body_flip[covered - 1] ^= 0x80;
  Rejection why = Rejection::kNone;
  EXPECT_FALSE(OpenEnvelope(WithFixedCrc(body_flip), oo, &why).ok());
  EXPECT_EQ(why, Rejection::kDecrypt);
  for (size_t n = 0; n < sealed->size(); ++n) {
    EXPECT_FALSE(OpenEnvelope(std::string_view(*sealed).substr(0, n), oo).ok()) << "prefix " << n;
  }
}

TEST(SealedEnvelope, PlainBatchesAreRefusedWhereEncryptionIsRequiredButGapRecordsPass) {
  OpenOptions oo;
  oo.require_encryption = true;
  Rejection why = Rejection::kNone;
  Result<std::string> plain = SealEnvelope(Header(2), Body(2));
  ASSERT_TRUE(plain.ok());
  EXPECT_FALSE(OpenEnvelope(*plain, oo, &why).ok());
  EXPECT_EQ(why, Rejection::kNotEncrypted);
  Gap g;
  g.stream = "payments";
  g.first_seq = g.last_seq = 3;
  g.reason = format::kGapQuota;
  Result<std::string> gap = SealGapRecord("term-0042", g);
  ASSERT_TRUE(gap.ok());
  EXPECT_TRUE(OpenEnvelope(*gap, oo, &why).ok());
  EXPECT_EQ(why, Rejection::kNone);
}

TEST(SealedEnvelope, ADecompressedSizeAboveTheLimitIsRefusedBeforeDecompressing) {
  // 8 MiB of zeros compress to a few hundred bytes: a zip bomb in miniature.
  std::string body;
  Record r = MakeRecord(0);
  r.payload.assign(8 << 20, '\0');
  AppendToBody(r, &body);
  Result<std::string> bomb = SealEnvelope(Header(1), body);
  ASSERT_TRUE(bomb.ok());
  EXPECT_LT(bomb->size(), 4096u);
  OpenOptions oo;
  oo.max_raw_bytes = 1 << 20;
  Rejection why = Rejection::kNone;
  Result<OpenedEnvelope> o = OpenEnvelope(*bomb, oo, &why);
  ASSERT_FALSE(o.ok());
  EXPECT_EQ(why, Rejection::kTooLarge);
  oo.max_raw_bytes = 16 << 20;
  EXPECT_TRUE(OpenEnvelope(*bomb, oo).ok());
}

std::vector<std::string> DictionarySamples(int n, int offset) {
  std::vector<std::string> samples;
  for (int i = offset; i < offset + n; ++i) {
    samples.push_back(R"({"device":"term-)" + std::to_string(i % 97) + R"(","type":"authorization",)" +
                      R"("amount":)" + std::to_string(i * 37 % 10000) +
                      R"(,"currency":"EUR","merchant":"m-)" + std::to_string(i % 13) +
                      R"(","result":"approved","seq":)" + std::to_string(i) + "}");
  }
  return samples;
}

TEST(Dictionary, TrainedDictionaryShrinksSmallBatchesAndIsNamedInTheHeader) {
  Result<std::string> trained = TrainDictionary(DictionarySamples(2000, 0), 8 * 1024);
  ASSERT_TRUE(trained.ok()) << trained.status().ToString();
  Result<std::shared_ptr<const Dictionary>> dict = Dictionary::Load(*trained, 3);
  ASSERT_TRUE(dict.ok()) << dict.status().ToString();
  EXPECT_NE((*dict)->id(), 0u);

  std::string body;
  std::vector<Record> want;
  for (const std::string& p : DictionarySamples(5, 5000)) {
    Record r = MakeRecord(1);
    r.payload = p;
    want.push_back(r);
    AppendToBody(r, &body);
  }
  BatchHeader h = Header(5);
  SealOptions with, without;
  with.dictionary = dict->get();
  Result<std::string> small = SealEnvelope(h, body, with);
  Result<std::string> large = SealEnvelope(h, body, without);
  ASSERT_TRUE(small.ok() && large.ok());
  EXPECT_LT(small->size(), large->size());

  Rejection why = Rejection::kNone;
  Result<OpenedEnvelope> missing = OpenEnvelope(*small, {}, &why);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(why, Rejection::kUnknownDictionary);
  std::map<uint32_t, std::shared_ptr<const Dictionary>> dicts{{(*dict)->id(), *dict}};
  OpenOptions oo;
  oo.dictionaries = &dicts;
  Result<OpenedEnvelope> opened = OpenEnvelope(*small, oo);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->header.dict_id, (*dict)->id());
  EXPECT_EQ(opened->records, want);

  EXPECT_FALSE(Dictionary::Load("not a dictionary", 3).ok());
  EXPECT_FALSE(TrainDictionary({"a", "b"}, 1024).ok());
}

// An envelope with codec 1 whose stored body is `stored` (any bytes) and
// whose header states `raw_len`, with a correct checksum.
std::string ZstdEnvelopeOf(const std::string& stored, uint32_t raw_len, uint32_t events) {
  SealOptions plain;
  plain.codec = format::kCodecNone;
  std::string e = *SealEnvelope(Header(events), stored, plain);
  e[36] = static_cast<char>(format::kCodecZstd);
  StoreU32(e.data() + 54, raw_len);
  return WithFixedCrc(e);
}

TEST(Envelope, TheBodyMustBeOneZstdFrameOfExactlyItsStatedSize) {
  const std::string body = Body(6);
  auto compress = [](std::string_view in) {
    std::string out(ZSTD_compressBound(in.size()), '\0');
    out.resize(ZSTD_compress(out.data(), out.size(), in.data(), in.size(), 3));
    return out;
  };
  const std::string whole = compress(body);
  const uint32_t n = static_cast<uint32_t>(body.size());
  Rejection why = Rejection::kNone;
  ASSERT_TRUE(OpenEnvelope(ZstdEnvelopeOf(whole, n, 6), {}, &why).ok());
  // Two frames that together make the body; a frame and a skippable frame;
  // a frame whose own size disagrees with the header's.
  const std::string two = compress(std::string_view(body).substr(0, 100)) +
                          compress(std::string_view(body).substr(100));
  std::string skippable = whole;
  PutU32(&skippable, 0x184D2A50);  // a skippable frame: magic, length, bytes
  PutU32(&skippable, 4);
  skippable += "junk";
  for (const std::string& stored : {two, skippable}) {
    EXPECT_FALSE(OpenEnvelope(ZstdEnvelopeOf(stored, n, 6), {}, &why).ok());
    EXPECT_EQ(why, Rejection::kCodec);
  }
  EXPECT_FALSE(OpenEnvelope(ZstdEnvelopeOf(whole, n + 1, 6), {}, &why).ok());
  EXPECT_EQ(why, Rejection::kCodec);
}

TEST(Envelope, BatchSequencesOutside1To2Pow63AreRefused) {
  for (uint64_t seq : {uint64_t{0}, uint64_t{1} << 63, ~uint64_t{0}}) {
    BatchHeader h = Header(2);
    h.batch_seq = seq;
    Result<std::string> e = SealEnvelope(h, Body(2));
    ASSERT_TRUE(e.ok());
    EXPECT_FALSE(OpenEnvelope(*e).ok()) << seq;
  }
  Gap g;
  g.stream = "payments";
  g.first_seq = 5;
  g.last_seq = ~uint64_t{0};
  g.reason = format::kGapStoreCorrupt;
  EXPECT_FALSE(OpenEnvelope(*SealGapRecord("term-0042", g)).ok());
  g.last_seq = format::kMaxBatchSeq;
  EXPECT_TRUE(OpenEnvelope(*SealGapRecord("term-0042", g)).ok());
}


TEST(Lane, ParseLaneSplitsAtTheFirstAndTheLastAt) {
  Lane plain = ParseLane("payments");
  EXPECT_EQ(plain.stream, "payments");
  EXPECT_FALSE(plain.routed);
  EXPECT_EQ(plain.route_topic, "");
  EXPECT_EQ(plain.route_priority, "");
  Lane routed = ParseLane("payments@edge.urgent@high");
  EXPECT_EQ(routed.stream, "payments");
  EXPECT_TRUE(routed.routed);
  EXPECT_EQ(routed.route_topic, "edge.urgent");
  EXPECT_EQ(routed.route_priority, "high");
  // A cut topic stays as the header holds it; an '@' in a topic stays in it.
  Lane cut = ParseLane("s@" + std::string(100, 't') + "~0badcafe@low");
  EXPECT_EQ(cut.stream, "s");
  EXPECT_EQ(cut.route_topic, std::string(100, 't') + "~0badcafe");
  EXPECT_EQ(cut.route_priority, "low");
  Lane at = ParseLane("s@a@b@normal");
  EXPECT_EQ(at.route_topic, "a@b");
  EXPECT_EQ(at.route_priority, "normal");
  // One '@' (no agent writes it): an empty topic, the rest the priority.
  Lane one = ParseLane("s@high");
  EXPECT_TRUE(one.routed);
  EXPECT_EQ(one.stream, "s");
  EXPECT_EQ(one.route_topic, "");
  EXPECT_EQ(one.route_priority, "high");
  EXPECT_EQ(ParseLane("@@").stream, "");
  EXPECT_TRUE(ParseLane("@@").routed);
}

// --- The order of FORMAT.md's "What a reader does": a refusal names the
// first step that fails.

size_t U16At(std::string_view e, size_t at) {
  return static_cast<uint8_t>(e[at]) | size_t{static_cast<uint8_t>(e[at + 1])} << 8;
}

class ReaderSteps : public ::testing::Test {
 protected:
  void SetUp() override {
    keys_.Add("term-0042", *DevicePublicKey::FromRaw(signer_.public_key()), false);
    signed_.device_keys = &keys_;
  }
  std::string Signed(BatchHeader h, const std::string& body, SealOptions so = {}) {
    so.signer = &signer_;
    Result<std::string> e = SealEnvelope(h, body, so);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? *e : std::string();
  }
  static Rejection Why(std::string_view e, const OpenOptions& o) {
    Rejection why = Rejection::kNone;
    Result<OpenedEnvelope> r = OpenEnvelope(e, o, &why);
    EXPECT_EQ(r.ok(), why == Rejection::kNone);
    return why;
  }
  // What steps 1 to 5 make of an envelope of the right length, written from
  // FORMAT.md: only magic, version, flags and the lengths are read before
  // the CRC, so any other change is the CRC's to find.
  static Rejection BeforeIdentity(std::string_view e) {
    if (e.substr(0, 4) != "EDGS") return Rejection::kMalformed;  // step 1
    if (e[4] != 1 && e[4] != 2) return Rejection::kVersion;  // 2
    if ((static_cast<uint8_t>(e[5]) & ~0x03) != 0) return Rejection::kFlags;  // 3
    // 4: the fields this page lists end within header_len, names not empty.
    const size_t header_len = U16At(e, 6);
    const size_t device_len = static_cast<uint8_t>(e[58]);
    if (59 + device_len >= e.size()) return Rejection::kMalformed;
    const size_t stream_len = static_cast<uint8_t>(e[59 + device_len]);
    if (device_len == 0 || stream_len == 0 || 60 + device_len + stream_len > header_len) {
      return Rejection::kMalformed;
    }
    // 5: the length, then the CRC.
    const size_t block = e[4] == 2 ? format::kSignatureBlock : 0;
    if (e.size() != header_len + LoadU32(e.data() + 50) + block + 4) return Rejection::kMalformed;
    return Rejection::kChecksum;
  }

  DeviceSigner signer_ = *DeviceSigner::Generate();
  DeviceKeySet keys_;
  OpenOptions signed_;
};

TEST_F(ReaderSteps, EveryFlippedBitReadsAsTheFirstStepThatCatchesIt) {
  const std::string good = Signed(Header(3), Body(3));
  ASSERT_EQ(Why(good, signed_), Rejection::kNone);
  const size_t header_len = U16At(good, 6);
  const size_t body_len = LoadU32(good.data() + 50);
  const size_t key_id_at = header_len + body_len;
  const size_t signature_at = key_id_at + format::kSignerKeyIdBytes;
  std::map<Rejection, int> seen;
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      const Rejection want = BeforeIdentity(bad);
      ASSERT_EQ(Why(bad, signed_), want) << "byte " << i << " bit " << bit;
      ++seen[want];
      // Fields the CRC guards, batch_seq among them, read as `checksum`.
      const size_t stream_len_at = 59 + static_cast<uint8_t>(good[58]);
      if ((i >= 8 && i < 50) || (i >= 54 && i < 58) || (i >= 59 && i != stream_len_at)) {
        EXPECT_EQ(want, Rejection::kChecksum) << "byte " << i;
      }
      if (want != Rejection::kChecksum || i >= good.size() - format::kEnvelopeTrailer) continue;
      // With the CRC made to match, the signature is next: step 6 comes
      // before step 7's batch_seq and the steps that read the body.
      const Rejection forged = signature_at > i && i >= key_id_at ? Rejection::kWrongKey
                                                                   : Rejection::kBadSignature;
      ASSERT_EQ(Why(WithFixedCrc(bad), signed_), forged) << "byte " << i << " bit " << bit;
    }
  }
  EXPECT_EQ(seen.size(), 4u) << "malformed, unknown_version, unknown_flags and checksum";
  EXPECT_GT(seen[Rejection::kChecksum], static_cast<int>(good.size()) * 7);
  // Truncated or lengthened by a byte: the length (step 5), never the CRC.
  EXPECT_EQ(Why(std::string_view(good).substr(0, good.size() - 1), signed_), Rejection::kMalformed);
  EXPECT_EQ(Why(good + "x", signed_), Rejection::kMalformed);
}

TEST_F(ReaderSteps, BatchSequenceIsCheckedAfterTheSignature) {
  std::string zero = Signed(Header(1), Body(1));
  std::memset(zero.data() + 8, 0, 8);
  zero = WithFixedCrc(zero);
  EXPECT_EQ(Why(zero, signed_), Rejection::kBadSignature);  // a forgery, not a faulty writer
  EXPECT_EQ(Why(zero, OpenOptions{}), Rejection::kMalformed);
  // Signed so by its device (a faulty writer): malformed.
  BatchHeader h = Header(1);
  h.batch_seq = uint64_t{1} << 63;
  EXPECT_EQ(Why(Signed(h, Body(1)), signed_), Rejection::kMalformed);
}

TEST_F(ReaderSteps, DecryptionComesBeforeTheCodecAndTheDictionary) {
  TestKey central, stranger;
  const Recipient to = Recipient::For(central.public_key);
  const Recipient to_stranger = Recipient::For(stranger.public_key);
  Keyring keys;
  ASSERT_TRUE(keys.AddPrivate(central.private_key).ok());
  OpenOptions o;
  o.keys = &keys;
  SealOptions so;
  so.recipient = &to;
  const std::string sealed = *SealEnvelope(Header(2), Body(2), so);
  ASSERT_EQ(Why(sealed, o), Rejection::kNone);
  // An unknown codec or dictionary in an authenticated header: the tags
  // fail first (step 8), where the codec came first before.
  for (size_t at : {size_t{36}, size_t{38}}) {
    std::string bad = sealed;
    bad[at] = 7;
    EXPECT_EQ(Why(WithFixedCrc(bad), o), Rejection::kDecrypt) << at;
  }
  // For a key the reader does not hold: unknown_key, whatever the codec.
  so.recipient = &to_stranger;
  std::string other = *SealEnvelope(Header(2), Body(2), so);
  other[36] = 7;
  EXPECT_EQ(Why(WithFixedCrc(other), o), Rejection::kUnknownKey);
  // raw_len above the limit (step 7) before the key (step 8).
  OpenOptions small = o;
  small.max_raw_bytes = 16;
  EXPECT_EQ(Why(WithFixedCrc(other), small), Rejection::kTooLarge);
  // Plain where encryption is required (step 8) before an unknown codec (9).
  std::string plain = *SealEnvelope(Header(2), Body(2));
  plain[36] = 7;
  plain = WithFixedCrc(plain);
  OpenOptions required = o;
  required.require_encryption = true;
  EXPECT_EQ(Why(plain, required), Rejection::kNotEncrypted);
  EXPECT_EQ(Why(plain, o), Rejection::kCodec);
  // Codec 0 naming a dictionary contradicts itself: corrupt, not a
  // dictionary this reader lacks.
  SealOptions none;
  none.codec = format::kCodecNone;
  std::string no_dict = *SealEnvelope(Header(2), Body(2), none);
  StoreU32(no_dict.data() + 38, 12345);
  EXPECT_EQ(Why(WithFixedCrc(no_dict), o), Rejection::kMalformed);
  std::string zstd_dict = *SealEnvelope(Header(2), Body(2));
  StoreU32(zstd_dict.data() + 38, 12345);
  EXPECT_EQ(Why(WithFixedCrc(zstd_dict), o), Rejection::kUnknownDictionary);
}

}  // namespace
}  // namespace edgesync

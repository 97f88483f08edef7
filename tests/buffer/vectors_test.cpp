// The envelope test vectors in tests/vectors/ (FORMAT.md, "Test vectors"),
// checked both ways: sealing the inputs a file lists gives exactly its
// envelope, and opening its envelope gives exactly its inputs back.
//
// The files are made by this test: EDGESYNC_WRITE_VECTORS=1 rewrites them
// from the inputs below. Do that only for a deliberate format change (and
// with a --gtest_filter naming only the vectors that change: the others must
// stay byte for byte); the independent decoder (tests/decode_envelope.py)
// then checks them against FORMAT.md.
//
// The signed vectors (format version 2) also hold the signer's key: Ed25519
// is deterministic, so sealing gives the same signature every time.
#include <zstd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "format/envelope.h"
#include "format/identity.h"
#include "format/record.h"

namespace edgesync {
namespace {

// A fixed "random" key from a label, so the inputs are self-evident.
crypto::Key FixedKey(uint8_t first) {
  crypto::Key k{};
  for (size_t i = 0; i < k.size(); ++i) k[i] = static_cast<uint8_t>(first + i);
  return k;
}

struct Vector {
  std::string name, description;
  BatchHeader header;
  uint8_t codec = format::kCodecNone;
  int zstd_level = 3;
  bool encrypted = false;
  bool signed_by_device = false;  // version 2, signed with kSignerSeed
  std::vector<Record> records;
};

std::vector<Vector> Inputs() {
  std::vector<Vector> v(5);
  Record a;
  a.topic = "terminal/term-0001/payment/authorization";
  a.received_at_us = 1'795'000'000'000'001;
  a.qos = 1;
  a.payload = R"({"device":"term-0001","seq":1,"amount":1250,"currency":"EUR","pan":"411111******1111"})";
  Record b = a;
  b.received_at_us += 250'000;
  b.content_type = "application/json";
  b.properties = {{"site", "berlin-04"}, {"fw", "3.2.1"}};
  b.payload = R"({"device":"term-0001","seq":2,"amount":990,"currency":"EUR","pan":"550000******0004"})";
  Record c = a;
  c.topic = "terminal/term-0001/status";
  c.received_at_us += 900'000;
  c.qos = 0;
  c.payload = "online";

  v[0].name = "plain-uncompressed";
  v[0].description = "codec 0 (none), not encrypted, two records";
  v[0].records = {a, b};
  v[1].name = "plain-zstd";
  v[1].description = "codec 1 (zstd level 3), not encrypted, three records";
  v[1].codec = format::kCodecZstd;
  v[1].records = {a, b, c};
  v[2].name = "sealed-zstd";
  v[2].description = "codec 1 (zstd level 3), encrypted for the test key pair, three records";
  v[2].codec = format::kCodecZstd;
  v[2].encrypted = true;
  v[2].records = {a, b, c};
  v[3].name = "signed-zstd";
  v[3].description = "format version 2, signed by the test device key; codec 1 (zstd level 3), "
                     "not encrypted, three records";
  v[3].codec = format::kCodecZstd;
  v[3].signed_by_device = true;
  v[3].records = {a, b, c};
  v[4].name = "signed-sealed-zstd";
  v[4].description = "format version 2, signed by the test device key; codec 1 (zstd level 3), "
                     "encrypted for the test key pair, three records";
  v[4].codec = format::kCodecZstd;
  v[4].encrypted = true;
  v[4].signed_by_device = true;
  v[4].records = {a, b, c};
  uint64_t seq = 41;
  for (Vector& x : v) {
    x.header.device_id = "site-0001";
    x.header.stream = "payments";
    x.header.batch_seq = seq++;
    x.header.event_count = static_cast<uint32_t>(x.records.size());
    x.header.first_event_us = x.records.front().received_at_us;
    x.header.last_event_us = x.records.back().received_at_us;
  }
  return v;
}

const crypto::Key kRecipientPrivate = FixedKey(0x10);
// The test device's Ed25519 private key (RFC 8032's 32-byte seed).
const ossl::Ed25519Raw kSignerSeed = FixedKey(0x60);
DeviceSigner Signer() { return *DeviceSigner::FromRawPrivate(kSignerSeed); }

// A reader's enrolled device keys, set by hand.
// Enrols a raw Ed25519 public key in a reader's keys.
void Enrol(DeviceKeySet* keys, const std::string& device, const ossl::Ed25519Raw& public_key,
           bool revoked = false) {
  Result<DevicePublicKey> k = DevicePublicKey::FromRaw(public_key);
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  keys->Add(device, *k, revoked);
}

SealSecrets Secrets() {
  SealSecrets s;
  s.ephemeral_private = FixedKey(0x40);
  s.data_key = FixedKey(0x80);
  for (size_t i = 0; i < s.nonce.size(); ++i) s.nonce[i] = static_cast<uint8_t>(0xc0 + i);
  return s;
}

std::string HexOf(std::string_view s) {
  return crypto::Hex(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

std::string ZstdVersion() { return ZSTD_versionString(); }

std::string RawBody(const Vector& v) {
  std::string body;
  for (const Record& r : v.records) AppendToBody(r, &body);
  return body;
}

Result<std::string> Seal(const Vector& v) {
  SealOptions o;
  o.codec = v.codec;
  o.zstd_level = v.zstd_level;
  Recipient to;
  SealSecrets secrets = Secrets();
  if (v.encrypted) {
    to = Recipient::For(*crypto::X25519PublicKey(kRecipientPrivate));
    o.recipient = &to;
    o.fixed_secrets = &secrets;
  }
  const DeviceSigner signer = Signer();
  if (v.signed_by_device) o.signer = &signer;
  return SealEnvelope(v.header, RawBody(v), o);
}

// The file's text for `v`: its inputs, the intermediate values a decoder
// writer can check step by step, and the envelope.
std::string Render(const Vector& v, const std::string& envelope) {
  std::ostringstream o;
  o << "# edgesync envelope test vector: " << v.description << ".\n"
    << "# Layout and construction: FORMAT.md. Text values as they are; *_hex values in hex.\n"
    << "name = " << v.name << "\n"
    << "device_id = " << v.header.device_id << "\n"
    << "stream = " << v.header.stream << "\n"
    << "batch_seq = " << v.header.batch_seq << "\n"
    << "event_count = " << v.header.event_count << "\n"
    << "first_event_at = " << v.header.first_event_us << "\n"
    << "last_event_at = " << v.header.last_event_us << "\n"
    << "codec = " << int{v.codec} << "\n";
  if (v.codec == format::kCodecZstd) {
    o << "zstd_level = " << v.zstd_level << "\n"
      << "# zstd output may differ between zstd versions; a decoder needs only the envelope.\n"
      << "zstd_version = " << ZstdVersion() << "\n";
  }
  for (const Record& r : v.records) {
    o << "record.topic = " << r.topic << "\n"
      << "record.received_at = " << r.received_at_us << "\n"
      << "record.qos = " << int{r.qos} << "\n";
    if (!r.content_type.empty()) o << "record.content_type = " << r.content_type << "\n";
    for (const auto& [k, val] : r.properties) o << "record.property = " << k << "=" << val << "\n";
    o << "record.payload = " << r.payload << "\n";
  }
  const std::string raw = RawBody(v);
  o << "raw_body_hex = " << HexOf(raw) << "\n";
  if (v.encrypted) {
    const SealSecrets s = Secrets();
    const crypto::Key recipient_public = *crypto::X25519PublicKey(kRecipientPrivate);
    const crypto::Key ephemeral_public = *crypto::X25519PublicKey(s.ephemeral_private);
    const crypto::Key shared = *crypto::X25519(s.ephemeral_private, recipient_public);
    std::string salt(reinterpret_cast<const char*>(ephemeral_public.data()), 32);
    salt.append(reinterpret_cast<const char*>(recipient_public.data()), 32);
    const crypto::Key wrap = *crypto::HkdfSha256(
        std::string_view(reinterpret_cast<const char*>(shared.data()), 32), salt,
        format::kSealWrapInfo);
    o << "recipient_private_key_hex = " << crypto::Hex(kRecipientPrivate) << "\n"
      << "recipient_public_key_hex = " << crypto::Hex(recipient_public) << "\n"
      << "key_id_hex = " << crypto::Hex(crypto::ShortHash(recipient_public)) << "\n"
      << "ephemeral_private_key_hex = " << crypto::Hex(s.ephemeral_private) << "\n"
      << "ephemeral_public_key_hex = " << crypto::Hex(ephemeral_public) << "\n"
      << "shared_secret_hex = " << crypto::Hex(shared) << "\n"
      << "wrap_key_hex = " << crypto::Hex(wrap) << "\n"
      << "data_key_hex = " << crypto::Hex(s.data_key) << "\n"
      << "nonce_hex = " << crypto::Hex(s.nonce) << "\n";
  }
  if (v.signed_by_device) {
    // The signature block (FORMAT.md, "Signature"): the key id, then the
    // signature over everything before it; the CRC follows.
    const DeviceSigner signer = Signer();
    const size_t at = envelope.size() - format::kEnvelopeTrailer - format::kSignatureBytes;
    o << "signer_private_key_hex = " << crypto::Hex(kSignerSeed) << "\n"
      << "signer_public_key_hex = " << crypto::Hex(signer.public_key()) << "\n"
      << "signer_key_id_hex = " << crypto::Hex(signer.key_id()) << "\n"
      << "signature_hex = " << HexOf(envelope.substr(at, format::kSignatureBytes)) << "\n";
  }
  o << "envelope_hex = " << HexOf(envelope) << "\n";
  return o.str();
}

std::string VectorPath(const Vector& v) {
  return std::string(EDGESYNC_SOURCE_DIR) + "/tests/vectors/" + v.name + ".txt";
}

std::map<std::string, std::string> ReadFields(const std::string& path) {
  std::ifstream in(path);
  std::map<std::string, std::string> f;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    size_t eq = line.find(" = ");
    if (eq != std::string::npos && line.compare(0, 7, "record.") != 0) f[line.substr(0, eq)] = line.substr(eq + 3);
  }
  return f;
}

std::string Unhex(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  return out;
}

// A 32-byte key from its hex (all zeros when it is not 64 hex digits: the
// comparisons then fail).
ossl::Ed25519Raw ParseKey(const std::string& hex) {
  ossl::Ed25519Raw k{};
  const std::string bytes = Unhex(hex);
  if (bytes.size() == k.size()) std::memcpy(k.data(), bytes.data(), k.size());
  return k;
}

class Vectors : public ::testing::TestWithParam<int> {};

TEST_P(Vectors, SealingTheInputsGivesTheFileAndOpeningTheFileGivesTheInputs) {
  const Vector v = Inputs()[GetParam()];
  Result<std::string> sealed = Seal(v);
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
  if (std::getenv("EDGESYNC_WRITE_VECTORS") != nullptr) {
    std::ofstream(VectorPath(v)) << Render(v, *sealed);
  }
  std::ifstream in(VectorPath(v));
  ASSERT_TRUE(in) << VectorPath(v) << " missing (EDGESYNC_WRITE_VECTORS=1 writes it)";
  const std::string file((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto fields = ReadFields(VectorPath(v));
  const std::string envelope = Unhex(fields.at("envelope_hex"));

  // Inputs -> file. Compressed bytes are only comparable under the zstd
  // version that wrote them.
  if (v.codec == format::kCodecNone || fields.at("zstd_version") == ZstdVersion()) {
    EXPECT_EQ(Render(v, *sealed), file);
    EXPECT_EQ(HexOf(*sealed), HexOf(envelope));
  }

  // File -> inputs, read as the central side does: the signer enrolled
  // for the device the header names (a version 1 vector only during the
  // transition).
  Keyring keys;
  ASSERT_TRUE(keys.AddPrivate(kRecipientPrivate).ok());
  DeviceKeySet device_keys;
  if (v.signed_by_device) {
    Enrol(&device_keys, v.header.device_id, ParseKey(fields.at("signer_public_key_hex")));
  }
  OpenOptions o;
  o.keys = &keys;
  o.require_encryption = v.encrypted;
  o.device_keys = &device_keys;
  o.allow_unsigned = !v.signed_by_device;
  Result<OpenedEnvelope> opened = OpenEnvelope(envelope, o);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->header.version,
            v.signed_by_device ? format::kEnvelopeVersionSigned : format::kEnvelopeVersion);
  EXPECT_EQ(opened->verified, v.signed_by_device);
  EXPECT_EQ(opened->signer.has_value(), v.signed_by_device);
  EXPECT_EQ(opened->records, v.records);
  EXPECT_EQ(opened->header.device_id, v.header.device_id);
  EXPECT_EQ(opened->header.stream, v.header.stream);
  EXPECT_EQ(opened->header.batch_seq, v.header.batch_seq);
  EXPECT_EQ(opened->header.first_event_us, v.header.first_event_us);
  EXPECT_EQ(opened->header.last_event_us, v.header.last_event_us);
  EXPECT_EQ(opened->header.codec, v.codec);
  EXPECT_EQ((opened->header.flags & format::kFlagEncrypted) != 0, v.encrypted);
  EXPECT_EQ(Unhex(fields.at("raw_body_hex")), RawBody(v));
  // Without the key, the sealed vector does not open.
  if (v.encrypted) {
    EXPECT_FALSE(OpenEnvelope(envelope).ok());
  }

  if (!v.signed_by_device) {
    // Version 1 is unsigned: refused by a reader of enrolled keys outside the transition.
    o.allow_unsigned = false;
    Rejection why = Rejection::kNone;
    EXPECT_FALSE(OpenEnvelope(envelope, o, &why).ok());
    EXPECT_EQ(RejectionName(why), std::string("unsigned"));
    return;
  }
  // The signer fields: the key from the seed, its id, and the signature
  // where the format puts it, which verifies over every byte before it.
  const DeviceSigner signer = Signer();
  EXPECT_EQ(fields.at("signer_private_key_hex"), crypto::Hex(kSignerSeed));
  EXPECT_EQ(fields.at("signer_public_key_hex"), crypto::Hex(signer.public_key()));
  EXPECT_EQ(fields.at("signer_key_id_hex"),
            crypto::Hex(SigningKeyIdOf(ParseKey(fields.at("signer_public_key_hex")))));
  ASSERT_TRUE(opened->signer.has_value());
  EXPECT_EQ(crypto::Hex(*opened->signer), fields.at("signer_key_id_hex"));
  const size_t signature_at = envelope.size() - format::kEnvelopeTrailer - format::kSignatureBytes;
  const size_t key_id_at = signature_at - format::kSignerKeyIdBytes;
  EXPECT_EQ(HexOf(envelope.substr(key_id_at, format::kSignerKeyIdBytes)), fields.at("signer_key_id_hex"));
  EXPECT_EQ(HexOf(envelope.substr(signature_at, format::kSignatureBytes)), fields.at("signature_hex"));
  Result<DevicePublicKey> pub = DevicePublicKey::FromRaw(ParseKey(fields.at("signer_public_key_hex")));
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_TRUE(pub->Verify(envelope.substr(0, signature_at), Unhex(fields.at("signature_hex"))));
  std::string again;
  ASSERT_TRUE(signer.Sign(envelope.substr(0, signature_at), &again).ok());
  EXPECT_EQ(HexOf(again), fields.at("signature_hex"));  // Ed25519 is deterministic

  // Each refusal of "What a reader does" with the vector's own bytes.
  auto why_not = [&](const DeviceKeySet& k) {
    OpenOptions ko = o;
    ko.device_keys = &k;
    Rejection why = Rejection::kNone;
    EXPECT_FALSE(OpenEnvelope(envelope, ko, &why).ok());
    return std::string(RejectionName(why));
  };
  const ossl::Ed25519Raw other = DeviceSigner::FromRawPrivate(FixedKey(0x70))->public_key();
  DeviceKeySet none;
  EXPECT_EQ(why_not(none), "unknown_device");
  DeviceKeySet other_device;
  Enrol(&other_device, "site-0002", signer.public_key());
  EXPECT_EQ(why_not(other_device), "wrong_key");
  DeviceKeySet other_key;
  Enrol(&other_key, v.header.device_id, other);
  EXPECT_EQ(why_not(other_key), "wrong_key");
  DeviceKeySet revoked;
  Enrol(&revoked, v.header.device_id, signer.public_key(), true);
  EXPECT_EQ(why_not(revoked), "revoked_key");
  std::string forged = envelope;
  forged[signature_at] ^= 0x01;
  StoreU32(forged.data() + forged.size() - format::kEnvelopeTrailer,
           crc32c::Value(std::string_view(forged).substr(0, forged.size() - format::kEnvelopeTrailer)));
  Rejection why = Rejection::kNone;
  EXPECT_FALSE(OpenEnvelope(forged, o, &why).ok());
  EXPECT_EQ(RejectionName(why), std::string("bad_signature"));
}

INSTANTIATE_TEST_SUITE_P(Files, Vectors, ::testing::Values(0, 1, 2, 3, 4),
                         [](const ::testing::TestParamInfo<int>& i) {
                           std::string n = Inputs()[i.param].name;
                           for (char& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

}  // namespace
}  // namespace edgesync

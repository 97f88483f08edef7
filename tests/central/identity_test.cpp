// Device identity: signed envelopes, gap records and fragments (format
// version 2), every refusal with its own reason, and enrolment files.
#include <gtest/gtest.h>

#include <map>

#include "base/crc32c.h"
#include "format/envelope.h"
#include "central/fragment_assembler.h"
#include "format/identity.h"
#include "tests/support/envelopes.h"
#include "tests/support/mem_env.h"

namespace edgesync {
namespace {

// Enrols `s` in a reader's keys, set by hand.
void Enrol(DeviceKeySet* keys, const std::string& device, const DeviceSigner& s, bool revoked = false) {
  keys->Add(device, *DevicePublicKey::FromRaw(s.public_key()), revoked);
}

BatchHeader Header(const std::string& device, uint64_t seq) {
  BatchHeader h;
  h.device_id = device;
  h.stream = "payments";
  h.batch_seq = seq;
  h.event_count = 2;
  h.first_event_us = 100;
  h.last_event_us = 200;
  return h;
}

std::string Body() {
  std::string body;
  for (int i = 0; i < 2; ++i) {
    Record r;
    r.topic = "t/" + std::to_string(i);
    r.payload = "{\"n\":" + std::to_string(i) + "}";
    AppendToBody(r, &body);
  }
  return body;
}

std::string Signed(const std::string& device, uint64_t seq, const DeviceSigner& s, const Recipient* to = nullptr) {
  SealOptions o;
  o.signer = &s;
  o.recipient = to;
  return *SealEnvelope(Header(device, seq), Body(), o);
}

Rejection Why(std::string_view envelope, const DeviceKeys* keys, bool allow_unsigned = false) {
  OpenOptions o;
  o.device_keys = keys;
  o.allow_unsigned = allow_unsigned;
  Rejection why = Rejection::kNone;
  (void)OpenEnvelope(envelope, o, &why);
  return why;
}

class Identity : public ::testing::Test {
 protected:
  DeviceSigner a_ = *DeviceSigner::Generate(), a2_ = *DeviceSigner::Generate(), b_ = *DeviceSigner::Generate();
  DeviceKeySet keys_;
  void SetUp() override {
    Enrol(&keys_, "dev-a", a_);
    Enrol(&keys_, "dev-b", b_);
  }
};

TEST_F(Identity, ASignedEnvelopeIsVersion2With72BytesMoreAndOpensVerified) {
  const std::string plain = *SealEnvelope(Header("dev-a", 1), Body(), SealOptions{});
  const std::string sig = Signed("dev-a", 1, a_);
  EXPECT_EQ(plain[4], format::kEnvelopeVersion);
  EXPECT_EQ(sig[4], format::kEnvelopeVersionSigned);
  EXPECT_EQ(sig.size(), plain.size() + format::kSignatureBlock);
  OpenOptions o;
  o.device_keys = &keys_;
  Result<OpenedEnvelope> e = OpenEnvelope(sig, o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_TRUE(e->verified);
  ASSERT_TRUE(e->signer.has_value());
  EXPECT_EQ(*e->signer, a_.key_id());
  EXPECT_EQ(e->records.size(), 2u);
  // Without keys the reader takes the device id on its word: opened, not verified.
  Result<OpenedEnvelope> unchecked = OpenEnvelope(sig);
  ASSERT_TRUE(unchecked.ok());
  EXPECT_FALSE(unchecked->verified);
}

TEST_F(Identity, EncryptedAndSignedOpensWithBothKeys) {
  const crypto::Key priv{7, 1, 2, 3};
  Keyring ring;
  ASSERT_TRUE(ring.AddPrivate(priv).ok());
  const Recipient to = Recipient::For(*crypto::X25519PublicKey(priv));
  OpenOptions o;
  o.device_keys = &keys_;
  o.keys = &ring;
  o.require_encryption = true;
  Result<OpenedEnvelope> e = OpenEnvelope(Signed("dev-a", 3, a_, &to), o);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_TRUE(e->verified);
  EXPECT_EQ(e->records.size(), 2u);
}

TEST_F(Identity, EachRefusalHasItsOwnReason) {
  // Unsigned (version 1): refused, unless the transition flag is on.
  const std::string v1 = *SealEnvelope(Header("dev-a", 1), Body(), SealOptions{});
  EXPECT_EQ(Why(v1, &keys_), Rejection::kUnsigned);
  EXPECT_EQ(Why(v1, &keys_, /*allow_unsigned=*/true), Rejection::kNone);
  // Signed by dev-b's key in dev-a's name: the forgery this is for.
  EXPECT_EQ(Why(Signed("dev-a", 1, b_), &keys_), Rejection::kWrongKey);
  // A key nobody enrolled, for a device that is enrolled: wrong key.
  EXPECT_EQ(Why(Signed("dev-a", 1, a2_), &keys_), Rejection::kWrongKey);
  // A key nobody enrolled, for a device nobody enrolled.
  EXPECT_EQ(Why(Signed("dev-z", 1, a2_), &keys_), Rejection::kUnknownDevice);
  // A revoked key.
  DeviceKeySet revoked = keys_;
  Enrol(&revoked, "dev-a", a_, /*revoked=*/true);
  EXPECT_EQ(Why(Signed("dev-a", 1, a_), &revoked), Rejection::kRevokedKey);
  EXPECT_STREQ(RejectionName(Rejection::kRevokedKey), "revoked_key");
  // Without the key's private half, a revoked (or another device's) key id
  // on a made-up signature is a bad signature, never a revoked_key or
  // wrong_key refusal in that device's name.
  std::string made_up = Signed("dev-a", 1, a_);
  made_up[made_up.size() - format::kEnvelopeTrailer - 1] ^= 1;
  made_up = testing::WithFixedCrc(made_up);
  EXPECT_EQ(Why(made_up, &revoked), Rejection::kBadSignature);
  EXPECT_EQ(Why(Signed("dev-b", 1, a_), &keys_), Rejection::kWrongKey);  // a genuine signature, another name
  EXPECT_STREQ(RejectionName(Rejection::kUnsigned), "unsigned");
}

TEST_F(Identity, AnyChangedByteIsRefusedEvenWithAFreshChecksum) {
  const std::string good = Signed("dev-a", 9, a_);
  const size_t signature_at = good.size() - format::kEnvelopeTrailer - format::kSignatureBytes;
  for (size_t i = 0; i < good.size() - format::kEnvelopeTrailer; ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x20);
    EXPECT_NE(Why(testing::WithFixedCrc(bad), &keys_), Rejection::kNone) << "byte " << i;
  }
  // The signature changed, or the batch sequence (a replay under another
  // number): the signature does not verify.
  std::string bad = good;
  bad[signature_at + 10] ^= 1;
  EXPECT_EQ(Why(testing::WithFixedCrc(bad), &keys_), Rejection::kBadSignature);
  std::string renumbered = good;
  renumbered[8 + 7] ^= 1;  // batch_seq's high byte (little-endian u64 at offset 8)
  EXPECT_EQ(Why(testing::WithFixedCrc(renumbered), &keys_), Rejection::kBadSignature);
}

TEST_F(Identity, GapRecordsAreSignedAndCheckedLikeBatches) {
  Gap g;
  g.stream = "payments";
  g.first_seq = 10;
  g.last_seq = 20;
  g.events = 0;
  g.reason = format::kGapQuota;
  OpenOptions o;
  o.device_keys = &keys_;
  Result<OpenedEnvelope> ok = OpenEnvelope(*SealGapRecord("dev-a", g, &a_), o);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  ASSERT_TRUE(ok->gap.has_value());
  EXPECT_TRUE(ok->verified);
  EXPECT_EQ(Why(*SealGapRecord("dev-a", g, &b_), &keys_), Rejection::kWrongKey);
  EXPECT_EQ(Why(*SealGapRecord("dev-a", g), &keys_), Rejection::kUnsigned);
  // During the transition unsigned batches are read, but never an unsigned
  // gap record for an enrolled device: it could hide any range of its real
  // batches. One for a device not enrolled yet (an old agent) is read.
  EXPECT_EQ(Why(*SealGapRecord("dev-a", g), &keys_, /*allow_unsigned=*/true), Rejection::kUnsigned);
  EXPECT_EQ(Why(*SealGapRecord("old-agent", g), &keys_, /*allow_unsigned=*/true), Rejection::kNone);
}

TEST_F(Identity, SignedFragmentsReassembleAndForgedOnesNeverTouchAPendingSet) {
  const std::string env = Signed("dev-a", 5, a_);
  auto parts = SplitEnvelope(env, 150, &a_);
  ASSERT_TRUE(parts.ok()) << parts.status().ToString();
  ASSERT_GE(parts->size(), 3u);
  for (const std::string& p : *parts) {
    EXPECT_LE(p.size(), 150u);
    EXPECT_EQ(p[4], format::kFragmentVersionSigned);
  }
  FragmentAssembler fa(1 << 20, 1 << 20, &keys_);
  const FragmentAssembler::Source src{"edge", 0, "dev-a"};
  // The first fragment, then a forged fragment 0 of the same source (by a
  // key not enrolled), then a genuine one altered: both refused on arrival.
  EXPECT_EQ(fa.Add(src, 0, (*parts)[0]).kind, FragmentAssembler::Outcome::Kind::kIncomplete);
  const DeviceSigner mallory = *DeviceSigner::Generate();
  auto forged = *SplitEnvelope(Signed("dev-a", 5, mallory), 150, &mallory);
  FragmentAssembler::Outcome f = fa.Add(src, 1, forged[0]);
  EXPECT_EQ(f.kind, FragmentAssembler::Outcome::Kind::kRejected);
  EXPECT_EQ(f.refusal, Rejection::kUnknownDevice);
  EXPECT_EQ(f.abandoned, 0u);
  std::string altered = (*parts)[1];
  altered[30] ^= 1;
  f = fa.Add(src, 2, altered);
  EXPECT_EQ(f.refusal, Rejection::kBadSignature);
  // Unsigned fragments: refused unless allowed.
  auto v1 = *SplitEnvelope(env, 150);
  EXPECT_EQ(fa.Add(src, 3, v1[0]).refusal, Rejection::kUnsigned);
  // The genuine set still completes.
  FragmentAssembler::Outcome last;
  for (size_t i = 1; i < parts->size(); ++i) last = fa.Add(src, 10 + static_cast<int64_t>(i), (*parts)[i]);
  ASSERT_EQ(last.kind, FragmentAssembler::Outcome::Kind::kComplete) << last.why;
  EXPECT_EQ(last.envelope, env);
  EXPECT_EQ(Why(last.envelope, &keys_), Rejection::kNone);
  // Fragments from an enrolled device over another's: a set of their own,
  // which reassembles but whose envelope is refused as the wrong key.
  FragmentAssembler fb(1 << 20, 1 << 20, &keys_);
  auto by_b = *SplitEnvelope(Signed("dev-a", 6, b_), 150, &b_);
  for (const std::string& p : by_b) last = fb.Add(src, 0, p);
  ASSERT_EQ(last.kind, FragmentAssembler::Outcome::Kind::kComplete);
  EXPECT_EQ(Why(last.envelope, &keys_), Rejection::kWrongKey);
}

TEST(Enrolment, FilesRoundTripAndBadOnesSayWhatIsWrong) {
  const DeviceSigner s = *DeviceSigner::Generate();
  const std::string text = EnrolmentText("cs-0007", s);
  EXPECT_EQ(text.rfind("edgesync-device: cs-0007\n-----BEGIN PUBLIC KEY-----", 0), 0u) << text;
  Result<Enrolment> e = ParseEnrolment(text, "cs-0007.pub");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->device_id, "cs-0007");
  EXPECT_EQ(e->key.key_id(), s.key_id());
  // A private key reads back to the same signer.
  Result<DeviceSigner> again = DeviceSigner::FromPem(s.PrivatePem(), "device.key");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->key_id(), s.key_id());

  for (const std::string& bad : {s.PublicPem(), std::string("edgesync-device: \n") + s.PublicPem(),
                                 std::string("edgesync-device: a\x01" "b\n") + s.PublicPem(),
                                 std::string("edgesync-device: x\nnot a key\n")}) {
    Result<Enrolment> r = ParseEnrolment(bad, "x.pub");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("x.pub"), std::string::npos) << r.status().message();
  }
  // An X25519 key (the central service's) is not a signing key.
  const crypto::Key x{1, 2, 3};
  Result<Enrolment> wrong_type =
      ParseEnrolment("edgesync-device: d\n" + crypto::PublicKeyPem(*crypto::X25519PublicKey(x)), "d.pub");
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_NE(wrong_type.status().message().find("not Ed25519"), std::string::npos) << wrong_type.status().message();
}

TEST(Enrolment, TheDeviceKeyIsMadeOnceWithItsEnrolmentFileAndNeverReplaced) {
  testing::MemEnv env;
  bool created = false;
  Result<DeviceSigner> k = LoadOrCreateDeviceKey(&env, "/state/device.key", "term-1", &created);
  ASSERT_TRUE(k.ok()) << k.status().ToString();
  EXPECT_TRUE(created);
  Result<std::string> pub = env.ReadFile("/state/device.pub", 1 << 16);
  ASSERT_TRUE(pub.ok());
  Result<Enrolment> e = ParseEnrolment(*pub, "");
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(e->device_id, "term-1");
  EXPECT_EQ(e->key.key_id(), k->key_id());
  Result<DeviceSigner> again = LoadOrCreateDeviceKey(&env, "/state/device.key", "term-1", &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(again->key_id(), k->key_id());
  // A damaged key file is an error, never silently replaced.
  ASSERT_TRUE(WriteFileAtomically(&env, "/state/device.key", "garbage").ok());
  EXPECT_FALSE(LoadOrCreateDeviceKey(&env, "/state/device.key", "term-1", &created).ok());
  EXPECT_EQ(EnrolmentPath("/a/b.key"), "/a/b.pub");
  EXPECT_EQ(EnrolmentPath("/a/key.pem"), "/a/key.pem.pub");
}

}  // namespace
}  // namespace edgesync

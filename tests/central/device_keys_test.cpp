// The central registry of device keys: a directory of enrolment files that
// is read again without a restart; two keys for one device during a
// rotation; revocation by moving a file into revoked/.
#include <gtest/gtest.h>

#include "format/envelope.h"
#include "format/identity.h"
#include "central/device_keys.h"
#include "tests/support/mem_env.h"

namespace edgesync {
namespace {

std::string Sealed(const std::string& device, uint64_t seq, const DeviceSigner& s) {
  BatchHeader h;
  h.device_id = device;
  h.stream = "meter";
  h.batch_seq = seq;
  SealOptions o;
  o.signer = &s;
  o.codec = format::kCodecNone;
  return *SealEnvelope(h, "", o);
}

Rejection Why(const std::string& envelope, const DeviceKeys& keys) {
  OpenOptions o;
  o.device_keys = &keys;
  Rejection why = Rejection::kNone;
  (void)OpenEnvelope(envelope, o, &why);
  return why;
}

class Registry : public ::testing::Test {
 protected:
  testing::MemEnv env_;
  DeviceKeyRegistry reg_{&env_, "/keys"};
  std::vector<std::string> problems_;
  void SetUp() override { ASSERT_TRUE(env_.CreateDirs("/keys").ok()); }
  void Put(const std::string& path, const std::string& text) {
    ASSERT_TRUE(WriteFileAtomically(&env_, path, text).ok());
  }
  bool Refresh() {
    bool changed = false;
    EXPECT_TRUE(reg_.Refresh(&problems_, &changed).ok());
    return changed;
  }
};

TEST_F(Registry, EnrolRotateAndRevokeWithoutARestart) {
  const DeviceSigner old_key = *DeviceSigner::Generate(), new_key = *DeviceSigner::Generate();
  EXPECT_FALSE(Refresh());
  EXPECT_EQ(Why(Sealed("cs-1", 1, old_key), reg_), Rejection::kUnknownDevice);

  Put("/keys/cs-1.pub", EnrolmentText("cs-1", old_key));
  EXPECT_TRUE(Refresh());
  EXPECT_EQ(reg_.enrolled(), 1u);
  EXPECT_EQ(Why(Sealed("cs-1", 1, old_key), reg_), Rejection::kNone);
  EXPECT_EQ(Why(Sealed("cs-1", 2, new_key), reg_), Rejection::kWrongKey);

  // Rotation: both keys enrolled while the device's store still holds
  // batches signed with the old one.
  Put("/keys/cs-1.2.pub", EnrolmentText("cs-1", new_key));
  EXPECT_TRUE(Refresh());
  EXPECT_EQ(reg_.enrolled(), 2u);
  EXPECT_EQ(Why(Sealed("cs-1", 3, old_key), reg_), Rejection::kNone);
  EXPECT_EQ(Why(Sealed("cs-1", 4, new_key), reg_), Rejection::kNone);
  EXPECT_FALSE(Refresh()) << "nothing changed";

  // Revocation: the old key's file moves into revoked/.
  ASSERT_TRUE(env_.CreateDirs("/keys/revoked").ok());
  ASSERT_TRUE(env_.Rename("/keys/cs-1.pub", "/keys/revoked/cs-1.pub").ok());
  EXPECT_TRUE(Refresh());
  EXPECT_EQ(reg_.enrolled(), 1u);
  EXPECT_EQ(reg_.revoked(), 1u);
  EXPECT_EQ(Why(Sealed("cs-1", 5, old_key), reg_), Rejection::kRevokedKey);
  EXPECT_EQ(Why(Sealed("cs-1", 6, new_key), reg_), Rejection::kNone);
  // Revoked wins even while a copy is still enrolled.
  Put("/keys/cs-1-again.pub", EnrolmentText("cs-1", old_key));
  Refresh();
  EXPECT_EQ(Why(Sealed("cs-1", 7, old_key), reg_), Rejection::kRevokedKey);
  EXPECT_TRUE(problems_.empty());
}

TEST_F(Registry, BadFilesAreSkippedReportedOnceAndReadAgainWhenFixed) {
  const DeviceSigner k = *DeviceSigner::Generate(), other = *DeviceSigner::Generate();
  Put("/keys/good.pub", EnrolmentText("d-1", k));
  Put("/keys/half.pub", "edgesync-device: d-2\n-----BEGIN PUBLIC");  // caught mid-copy
  Put("/keys/notes.txt", "not a .pub file: ignored");
  EXPECT_TRUE(Refresh());
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_NE(problems_[0].find("/keys/half.pub"), std::string::npos) << problems_[0];
  EXPECT_EQ(reg_.enrolled(), 1u);
  Refresh();
  EXPECT_EQ(problems_.size(), 1u) << "reported once";
  Put("/keys/half.pub", EnrolmentText("d-2", other));
  EXPECT_TRUE(Refresh());
  EXPECT_EQ(reg_.enrolled(), 2u);
  EXPECT_EQ(Why(Sealed("d-2", 1, other), reg_), Rejection::kNone);
  // A directory that cannot be listed is an error; a missing revoked/ is not.
  DeviceKeyRegistry missing(&env_, "/nowhere");
  std::vector<std::string> p;
  EXPECT_FALSE(missing.Refresh(&p).ok());
}

TEST_F(Registry, AKeyEnrolledForTwoDevicesIsRefusedForBothAndSaidSo) {
  // A cloned disk image: two devices with one key.
  const DeviceSigner k = *DeviceSigner::Generate();
  Put("/keys/one.pub", EnrolmentText("d-1", k));
  Put("/keys/two.pub", EnrolmentText("d-2", k));
  EXPECT_TRUE(Refresh());
  ASSERT_EQ(problems_.size(), 1u);
  EXPECT_NE(problems_[0].find("also enrolled for device \"d-1\""), std::string::npos) << problems_[0];
  EXPECT_EQ(Why(Sealed("d-1", 1, k), reg_), Rejection::kWrongKey);
  EXPECT_EQ(Why(Sealed("d-2", 1, k), reg_), Rejection::kWrongKey);
  ASSERT_TRUE(env_.RemoveFile("/keys/two.pub").ok());
  EXPECT_TRUE(Refresh());
  EXPECT_EQ(Why(Sealed("d-1", 2, k), reg_), Rejection::kNone);
  EXPECT_EQ(Why(Sealed("d-2", 2, k), reg_), Rejection::kWrongKey);
}

TEST_F(Registry, ARevocationTakesEffectEvenWhileRevokedCannotBeListed) {
  // An operator makes revoked/ as root, unreadable to the service, or it is
  // briefly unreadable: what the other directory says still counts.
  const DeviceSigner a = *DeviceSigner::Generate(), b = *DeviceSigner::Generate();
  Put("/keys/a.pub", EnrolmentText("d-a", a));
  Put("/keys/b.pub", EnrolmentText("d-b", b));
  EXPECT_TRUE(Refresh());
  Put("/keys/revoked", "not a directory");  // listing it fails
  ASSERT_TRUE(env_.RemoveFile("/keys/b.pub").ok());
  bool changed = false;
  EXPECT_FALSE(reg_.Refresh(&problems_, &changed).ok());
  EXPECT_TRUE(changed);
  EXPECT_EQ(Why(Sealed("d-b", 1, b), reg_), Rejection::kUnknownDevice) << "its file is gone";
  EXPECT_EQ(Why(Sealed("d-a", 1, a), reg_), Rejection::kNone);
  // Once revoked/ can be read, what it holds applies.
  ASSERT_TRUE(env_.RemoveFile("/keys/revoked").ok());
  ASSERT_TRUE(env_.CreateDirs("/keys/revoked").ok());
  ASSERT_TRUE(env_.Rename("/keys/a.pub", "/keys/revoked/a.pub").ok());
  EXPECT_TRUE(reg_.Refresh(&problems_).ok());
  EXPECT_EQ(Why(Sealed("d-a", 2, a), reg_), Rejection::kRevokedKey);
}

}  // namespace
}  // namespace edgesync

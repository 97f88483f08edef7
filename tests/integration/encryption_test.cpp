// Encryption end to end: with encryption.public_key set, no event byte is in
// the clear on the device's disk (journal and store) or on the wire, and the
// central private key opens every batch.
#include <sys/stat.h>

#include <set>

#include "format/crypto.h"
#include "format/envelope.h"
#include "buffer/journal.h"
#include "buffer/store.h"
#include "harness/consumer.h"
#include "tests/integration/pipeline_fixture.h"

namespace edgesync::testing {
namespace {

// Every file under `dir` (recursively) concatenated: what a reader of the
// flash would see.
std::string EverythingUnder(const std::string& dir) {
  std::string all;
  Result<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  if (!names.ok()) return all;
  for (const std::string& n : *names) {
    const std::string path = dir + "/" + n;
    Result<std::string> bytes = Env::Default()->ReadFile(path, kMaxOwnFileBytes);
    all += bytes.ok() ? *bytes : EverythingUnder(path);
  }
  return all;
}

TEST_F(Pipeline, EncryptedAgentLeavesNoEventInTheClearAndTheCentralKeyOpensEveryBatch) {
  Result<int> keygen = harness::RunToEnd({harness::ProgramPath("edgesync"), "keygen", "--out", dir_ / "keys"});
  ASSERT_TRUE(keygen.ok() && *keygen == 0);
  WriteConfig("", "[encryption]\npublic_key = \"" + dir_ / "keys/edgesync.pub" + "\"\n");
  // Kafka is down: the batches stay in the store, where the test can look.
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  StartAgent();
  ASSERT_TRUE(agent_);
  auto pub = Connect();
  ASSERT_TRUE(pub);
  constexpr uint64_t kEvents = 500;
  Publish(pub.get(), 1, kEvents);
  ASSERT_TRUE(harness::PollUntil([&] { return pub->acked() >= kEvents; }, 60s));
  // A crash now leaves some events in the journal and some sealed in the store.
  ASSERT_TRUE(agent_->Signal(SIGKILL).ok());
  ASSERT_TRUE(agent_->Wait(30s).ok());
  agent_.reset();

  const std::string state = dir_ / "state";
  const std::string disk = EverythingUnder(state);
  EXPECT_GT(disk.size(), 10'000u);
  // Every PaymentEvent holds this merchant id and a masked card number. (A
  // weak check alone: zstd's entropy coding hides literal strings too.)
  EXPECT_EQ(disk.find("MID000123456"), std::string::npos);
  EXPECT_EQ(disk.find("411111"), std::string::npos);
  // The strong check: what is on disk does not decode without the keys.
  // Journal segments: nothing recovers without the journal key.
  size_t segments = 0;
  const std::string journal = state + "/journal/payments";
  for (const std::string& n : *Env::Default()->ListDir(journal)) {
    const std::string bytes = *Env::Default()->ReadFile(journal + "/" + n, kMaxOwnFileBytes);
    if (bytes.empty()) continue;
    ++segments;
    SegmentScan scan = ScanSegment(bytes);
    EXPECT_TRUE(scan.records.empty()) << n;
    EXPECT_FALSE(scan.unreadable.empty()) << n;
  }
  // Sealed batches in the store: every one is sealed for the central key.
  size_t batches = 0;
  {
    Result<std::unique_ptr<Store>> store = Store::Open(Env::Default(), state + "/store.db");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Result<std::vector<SealedBatch>> sealed = (*store)->Next(100'000);
    ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
    for (const SealedBatch& b : *sealed) {
      Rejection why = Rejection::kNone;
      EXPECT_FALSE(OpenEnvelope(b.envelope, {}, &why).ok());
      EXPECT_EQ(why, Rejection::kUnknownKey);
      ++batches;
    }
  }
  EXPECT_GT(segments + batches, 0u);
  struct stat st {};
  ASSERT_EQ(::stat((state + "/journal.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ASSERT_TRUE(cluster_->AllBrokersUp().ok());
  StartAgent();  // recovers the encrypted journal with its key, then uploads
  ASSERT_TRUE(AwaitLog(1, "encryption: batches sealed for key")) << AgentLogs();

  Result<crypto::Key> priv = crypto::ReadPrivateKeyFile(Env::Default(), dir_ / "keys/edgesync.key");
  ASSERT_TRUE(priv.ok()) << priv.status().ToString();
  Keyring keys;
  ASSERT_TRUE(keys.AddPrivate(*priv).ok());
  OpenOptions oo;
  oo.keys = &keys;
  oo.require_encryption = true;
  std::set<std::string> payloads;
  std::string wire;
  ASSERT_TRUE(harness::PollUntil([&] {
    Result<std::vector<harness::KafkaMessage>> msgs = harness::ReadTopic(cluster_->bootstrap(), kTopic, 10s);
    if (!msgs.ok()) return false;
    payloads.clear();
    wire.clear();
    for (const harness::KafkaMessage& m : *msgs) {
      wire += m.value;
      Result<OpenedEnvelope> e = OpenEnvelope(m.value, oo);
      EXPECT_TRUE(e.ok()) << e.status().ToString();
      if (!e.ok()) continue;
      for (const Record& r : e->records) payloads.insert(r.payload);
    }
    return payloads.size() == kEvents;
  }, 120s)) << payloads.size() << " of " << kEvents << "\n" << AgentLogs();
  for (uint64_t seq = 1; seq <= kEvents; ++seq) {
    EXPECT_EQ(payloads.count(harness::PaymentEvent("pub", seq)), 1u) << seq;
  }
  EXPECT_EQ(wire.find("MID000123456"), std::string::npos);
}

}  // namespace
}  // namespace edgesync::testing

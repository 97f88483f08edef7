// Encryption end to end: with encryption.public_key set, no event byte is in
// the clear on the device's disk (journal and store) or on the wire, and the
// central private key opens every batch.
#include <openssl/evp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <map>
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

// Every file under `dir` (recursively) up to `max_bytes`, by path relative to `dir`.
void SmallFilesUnder(const std::string& dir, const std::string& prefix, size_t max_bytes,
                     std::map<std::string, std::string>* out) {
  Result<std::vector<std::string>> names = Env::Default()->ListDir(dir);
  if (!names.ok()) return;
  for (const std::string& n : *names) {
    const std::string path = dir + "/" + n;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      SmallFilesUnder(path, prefix + n + "/", max_bytes, out);
    } else if (S_ISREG(st.st_mode) && static_cast<size_t>(st.st_size) <= max_bytes) {
      Result<std::string> bytes = Env::Default()->ReadFile(path, kMaxOwnFileBytes);
      if (bytes.ok()) (*out)[prefix + n] = *bytes;
    }
  }
}

// Every 32 bytes a file could hold a key in: each 32-byte window of the file
// itself (a raw key such as journal.key), and of the DER inside each PEM
// block in it (device.key: an Ed25519 PKCS #8 key; device.pub; any .pem).
std::vector<crypto::Key> KeysAFileCouldHold(const std::string& bytes) {
  std::vector<std::string> blobs = {bytes};
  for (size_t at = bytes.find("-----BEGIN "); at != std::string::npos; at = bytes.find("-----BEGIN ", at + 1)) {
    const size_t body = bytes.find('\n', at);
    const size_t end = bytes.find("-----END ", at);
    if (body == std::string::npos || end == std::string::npos || end < body) break;
    std::string b64;
    for (char c : bytes.substr(body, end - body)) {
      if (!std::isspace(static_cast<unsigned char>(c))) b64.push_back(c);
    }
    std::string der(b64.size(), '\0');
    const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(der.data()),
                                  reinterpret_cast<const unsigned char*>(b64.data()), static_cast<int>(b64.size()));
    if (n <= 0) continue;
    der.resize(static_cast<size_t>(n));
    while (!der.empty() && b64.ends_with('=') && der.back() == '\0') {  // DecodeBlock pads with zeros
      der.pop_back();
      b64.pop_back();
    }
    blobs.push_back(der);
  }
  std::vector<crypto::Key> keys;
  for (const std::string& blob : blobs) {
    for (size_t i = 0; i + crypto::kKeyBytes <= blob.size(); ++i) {
      crypto::Key k;
      std::memcpy(k.data(), blob.data() + i, k.size());
      keys.push_back(k);
    }
  }
  return keys;
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
  // Sealed batches in the store: every one is sealed for the central key,
  // and nothing the device holds opens one. Every file of its state
  // directory up to 4 KiB (journal.key, device.key, device.pub, whatever
  // else is there; above that are only the store and journal segments, the
  // sealed and encrypted data themselves) is tried, each 32 bytes of it that could be a key: as a key of its own,
  // and filed under the central key's id, so that the envelope is really
  // decrypted with it (and the tag refuses it) instead of being passed over
  // as for an unknown key.
  Result<crypto::Key> central_public = crypto::ReadPublicKeyFile(Env::Default(), dir_ / "keys/edgesync.pub");
  ASSERT_TRUE(central_public.ok()) << central_public.status().ToString();
  Result<crypto::Key> central_private = crypto::ReadPrivateKeyFile(Env::Default(), dir_ / "keys/edgesync.key");
  ASSERT_TRUE(central_private.ok()) << central_private.status().ToString();
  std::map<std::string, std::string> held;
  SmallFilesUnder(state, "", 4096, &held);
  ASSERT_TRUE(held.count("journal.key")) << "the device's files: journal.key missing";
  ASSERT_TRUE(held.count("device.key")) << "the device's files: device.key missing";
  std::vector<std::pair<std::string, crypto::Key>> candidates;
  for (const auto& [name, bytes] : held) {
    for (const crypto::Key& k : KeysAFileCouldHold(bytes)) candidates.emplace_back(name, k);
  }
  // The journal key and the device's signing key (its raw 32 bytes sit in
  // its PKCS #8 DER) are among them.
  Result<crypto::Key> journal_key = crypto::LoadOrCreateKeyFile(Env::Default(), state + "/journal.key");
  ASSERT_TRUE(journal_key.ok());
  EXPECT_TRUE(std::any_of(candidates.begin(), candidates.end(),
                          [&](const auto& c) { return c.second == *journal_key; }));
  size_t batches = 0;
  {
    Result<std::unique_ptr<Store>> store = Store::Open(Env::Default(), state + "/store.db");
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    Result<std::vector<SealedBatch>> sealed = (*store)->Next(100'000);
    ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();
    Keyring central;
    ASSERT_TRUE(central.AddPrivate(*central_private).ok());
    OpenOptions with_central;
    with_central.keys = &central;
    with_central.require_encryption = true;
    for (const SealedBatch& b : *sealed) {
      Rejection why = Rejection::kNone;
      EXPECT_FALSE(OpenEnvelope(b.envelope, {}, &why).ok());
      EXPECT_EQ(why, Rejection::kUnknownKey);
      // The control: the central private key opens it.
      Result<OpenedEnvelope> opened = OpenEnvelope(b.envelope, with_central);
      EXPECT_TRUE(opened.ok()) << opened.status().ToString();
      for (const auto& [file, k] : candidates) {
        Keyring as_is, as_central;
        OpenOptions oo;
        oo.keys = &as_is;
        if (as_is.AddPrivate(k).ok()) {
          why = Rejection::kNone;
          EXPECT_FALSE(OpenEnvelope(b.envelope, oo, &why).ok()) << file;
          EXPECT_EQ(why, Rejection::kUnknownKey) << file;
        }
        ASSERT_TRUE(as_central.Add(k, *central_public).ok());
        oo.keys = &as_central;
        why = Rejection::kNone;
        EXPECT_FALSE(OpenEnvelope(b.envelope, oo, &why).ok()) << file << " opened a sealed batch";
        EXPECT_EQ(why, Rejection::kDecrypt) << file;
      }
      ++batches;
    }
  }
  EXPECT_GT(batches, 0u) << "no sealed batch to try the device's keys on";
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

// The key and dictionary files an operator makes: `edgesync keygen`,
// `edgesync dict train`, keys from openssl, and what `edgesync check` says
// about a wrong file.
#include <sys/stat.h>

#include <fstream>
#include <set>

#include <gtest/gtest.h>

#include "agent/agent.h"
#include "agent/config.h"
#include "format/crypto.h"
#include "format/envelope.h"
#include "format/identity.h"
#include "buffer/journal.h"
#include "harness/process.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

std::string ConfigWith(const std::string& extra) {
  return std::string(R"([agent]
device_id = "term-0042"
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
[kafka]
brokers = "127.0.0.1:9092"
)") + extra;
}

Result<Config> Load(const harness::TempDir& dir, const std::string& extra) {
  std::ofstream(dir / "edgesync.toml") << ConfigWith(extra);
  return LoadConfig(dir / "edgesync.toml");
}

int RunTool(std::vector<std::string> argv, const std::string& out = "") {
  Result<int> code = harness::RunToEnd(std::move(argv), out);
  return code.ok() ? *code : -1;
}

mode_t Mode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? st.st_mode & 0777 : 0;
}

TEST(Keygen, WritesAPairThatLoadsWithThePrivateKeyOwnerOnlyAndNeverReplacesOne) {
  harness::TempDir dir = testing::NewTempDir();
  const std::string edgesync = harness::ProgramPath("edgesync");
  ASSERT_EQ(RunTool({edgesync, "keygen", "--out", dir / "keys"}, dir / "out.txt"), 0);
  EXPECT_EQ(Mode(dir / "keys/edgesync.key"), 0600u);
  Result<crypto::Key> priv = crypto::ReadPrivateKeyFile(Env::Default(), dir / "keys/edgesync.key");
  Result<crypto::Key> pub = crypto::ReadPublicKeyFile(Env::Default(), dir / "keys/edgesync.pub");
  ASSERT_TRUE(priv.ok() && pub.ok());
  EXPECT_EQ(*crypto::X25519PublicKey(*priv), *pub);
  // It prints the key id the envelopes will carry.
  EXPECT_NE(harness::ReadWholeFile(dir / "out.txt").find(crypto::Hex(crypto::ShortHash(*pub))),
            std::string::npos);
  const std::string before = harness::ReadWholeFile(dir / "keys/edgesync.key");
  EXPECT_EQ(RunTool({edgesync, "keygen", "--out", dir / "keys"}), 2);
  EXPECT_EQ(harness::ReadWholeFile(dir / "keys/edgesync.key"), before);

  // The config takes the public key; `check` loads it.
  EXPECT_TRUE(Load(dir, "[encryption]\npublic_key = \"" + dir / "keys/edgesync.pub" + "\"\n").ok());
}

TEST(Keygen, TheDeviceKeyGoesWhereTheConfigurationSaysWithItsEnrolmentFileAndIsNeverReplaced) {
  harness::TempDir dir = testing::NewTempDir();
  const std::string edgesync = harness::ProgramPath("edgesync");
  std::ofstream(dir / "edgesync.toml") << std::string(R"([agent]
device_id = "term-0042"
state_dir = ")") + (dir / "state") + R"("
device_key = ")" + (dir / "keys/term.key") + R"("
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
[kafka]
brokers = "127.0.0.1:9092"
)";
  // Not while the agent runs (it holds the state directory's lock and makes its key itself).
  {
    ASSERT_TRUE(Env::Default()->CreateDirs(dir / "state").ok());
    Result<std::unique_ptr<FileLock>> agent_lock = Env::Default()->LockFile(dir / "state/lock");
    ASSERT_TRUE(agent_lock.ok());
    EXPECT_EQ(RunTool({edgesync, "keygen", "--device", "--config", dir / "edgesync.toml"}, dir / "out.txt"), 2);
    EXPECT_FALSE(Env::Default()->Exists(dir / "keys/term.key"));
  }
  ASSERT_EQ(RunTool({edgesync, "keygen", "--device", "--config", dir / "edgesync.toml"}, dir / "out.txt"), 0)
      << harness::ReadWholeFile(dir / "out.txt");
  EXPECT_EQ(Mode(dir / "keys/term.key"), 0600u);
  Result<std::string> pem = Env::Default()->ReadFile(dir / "keys/term.key", 1 << 16);
  ASSERT_TRUE(pem.ok());
  Result<DeviceSigner> key = DeviceSigner::FromPem(*pem, "term.key");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  Result<Enrolment> e = ParseEnrolment(harness::ReadWholeFile(dir / "keys/term.pub"), "term.pub");
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->device_id, "term-0042");
  EXPECT_EQ(e->key.key_id(), key->key_id());
  EXPECT_NE(harness::ReadWholeFile(dir / "out.txt").find(crypto::Hex(key->key_id())), std::string::npos);
  // Never replaced, by the command or by the agent's start.
  EXPECT_EQ(RunTool({edgesync, "keygen", "--device", "--config", dir / "edgesync.toml"}), 2);
  EXPECT_EQ(*Env::Default()->ReadFile(dir / "keys/term.key", 1 << 16), *pem);
  bool created = true;
  Result<DeviceSigner> again = LoadOrCreateDeviceKey(Env::Default(), dir / "keys/term.key", "term-0042", &created);
  ASSERT_TRUE(again.ok());
  EXPECT_FALSE(created);
  EXPECT_EQ(again->key_id(), key->key_id());
  // --out needs the device id; with it, DIR/device.key and DIR/device.pub.
  EXPECT_EQ(RunTool({edgesync, "keygen", "--device", "--out", dir / "other"}), 2);
  ASSERT_EQ(RunTool({edgesync, "keygen", "--device", "--device-id", "cs-7", "--out", dir / "other"}), 0);
  EXPECT_EQ(Mode(dir / "other/device.key"), 0600u);
  EXPECT_EQ(ParseEnrolment(harness::ReadWholeFile(dir / "other/device.pub"), "")->device_id, "cs-7");
}

TEST(Keygen, KeysMadeByOpensslWorkToo) {
  harness::TempDir dir = testing::NewTempDir();
  ASSERT_EQ(RunTool({"openssl", "genpkey", "-algorithm", "X25519", "-out", dir / "k.pem"}), 0);
  ASSERT_EQ(RunTool({"openssl", "pkey", "-in", dir / "k.pem", "-pubout", "-out", dir / "k.pub"}), 0);
  Result<crypto::Key> priv = crypto::ReadPrivateKeyFile(Env::Default(), dir / "k.pem");
  Result<crypto::Key> pub = crypto::ReadPublicKeyFile(Env::Default(), dir / "k.pub");
  ASSERT_TRUE(priv.ok()) << priv.status().ToString();
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_EQ(*crypto::X25519PublicKey(*priv), *pub);
}

TEST(Keygen, AWrongKeyFileIsAConfigErrorThatSaysWhatToDo) {
  harness::TempDir dir = testing::NewTempDir();
  // A private key where the public one belongs, an RSA key, and no key.
  ASSERT_EQ(RunTool({"openssl", "genpkey", "-algorithm", "X25519", "-out", dir / "x.pem"}), 0);
  ASSERT_EQ(RunTool({"openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", dir / "ec.pem"}), 0);
  ASSERT_EQ(RunTool({"openssl", "pkey", "-in", dir / "ec.pem", "-pubout", "-out", dir / "ec.pub"}), 0);
  std::ofstream(dir / "text.pub") << "hello\n";
  for (const std::string f : {"x.pem", "ec.pub", "text.pub", "missing.pub"}) {
    Result<Config> c = Load(dir, "[encryption]\npublic_key = \"" + dir / f + "\"\n");
    ASSERT_FALSE(c.ok()) << f;
    EXPECT_NE(c.status().message().find("encryption.public_key"), std::string::npos) << c.status().message();
    if (f != "missing.pub") {
      EXPECT_NE(c.status().message().find("edgesync keygen"), std::string::npos) << c.status().message();
    }
  }
}

TEST(DictTrain, MakesADictionaryTheConfigAcceptsAndRefusesTooFewSamples) {
  harness::TempDir dir = testing::NewTempDir();
  const std::string edgesync = harness::ProgramPath("edgesync");
  ASSERT_EQ(RunTool({"mkdir", "-p", dir / "samples", dir / "few"}), 0);
  for (int i = 0; i < 600; ++i) {
    std::ofstream(dir / ("samples/" + std::to_string(i) + ".json"))
        << R"({"device":"term-)" << i % 40 << R"(","seq":)" << i << R"(,"amount":)" << i * 37 % 9000
        << R"(,"currency":"EUR","type":"authorization","result":"approved"})";
  }
  std::ofstream(dir / "few/1.json") << "{}";
  ASSERT_EQ(RunTool({edgesync, "dict", "train", "--samples", dir / "samples", "--out", dir / "d.dict"}), 0);
  Result<std::string> bytes = Env::Default()->ReadFile(dir / "d.dict", kMaxOwnFileBytes);
  ASSERT_TRUE(bytes.ok());
  Result<std::shared_ptr<const Dictionary>> d = Dictionary::Load(*bytes, 3);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(Load(dir, "[batch]\ndictionary = \"" + dir / "d.dict" + "\"\n").ok());
  // Not replaced, and too few samples is an error that says so.
  EXPECT_NE(RunTool({edgesync, "dict", "train", "--samples", dir / "samples", "--out", dir / "d.dict"}), 0);
  EXPECT_NE(RunTool({edgesync, "dict", "train", "--samples", dir / "few", "--out", dir / "e.dict"}), 0);
  // A file that is not a dictionary is a config error naming the key.
  Result<Config> c = Load(dir, "[batch]\ndictionary = \"" + dir / "samples/1.json" + "\"\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("batch.dictionary"), std::string::npos);
}

// A journal segment encrypted with `key`, as the sealer leaves it for
// stream "payments" under `state_dir`.
void WriteEncryptedSegment(const std::string& state_dir, const crypto::Key& key) {
  JournalRecovery rec;
  auto j = Journal::Open(Env::Default(), state_dir + "/journal/payments", {}, &rec, &key, true);
  ASSERT_TRUE(j.ok()) << j.status().ToString();
  ASSERT_TRUE((*j)->Append(std::string(40, 'e')).ok());
}

TEST(JournalKey, AMissingOrWrongKeyFileStopsTheAgentInsteadOfSettingEventsAside) {
  harness::TempDir dir = testing::NewTempDir();
  const crypto::Key key = *crypto::HkdfSha256("journal", "key", "test");
  WriteEncryptedSegment(dir / "state", key);
  Result<std::set<crypto::KeyId>> ids = JournalKeyIds(Env::Default(), dir / "state/journal");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, std::set<crypto::KeyId>{crypto::ShortHash(key)});

  std::ofstream(dir / "edgesync.toml") << R"([agent]
device_id = "term-0042"
state_dir = ")" << dir / "state" << R"("
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
[kafka]
brokers = "127.0.0.1:9"
)";
  Result<Config> cfg = LoadConfig(dir / "edgesync.toml");
  ASSERT_TRUE(cfg.ok()) << cfg.status().message();
  // No key file: the agent does not start, and says which key and where.
  Result<std::unique_ptr<Agent>> agent = Agent::Open(*cfg, Env::Default());
  ASSERT_FALSE(agent.ok());
  EXPECT_NE(agent.status().message().find("is missing"), std::string::npos) << agent.status().message();
  EXPECT_NE(agent.status().message().find(crypto::Hex(crypto::ShortHash(key))), std::string::npos);
  EXPECT_FALSE(Env::Default()->Exists(dir / "state/journal.key")) << "no new key made in its place";
  // Another key in the file: the same.
  const crypto::Key other = *crypto::HkdfSha256("other", "key", "test");
  std::ofstream(dir / "state/journal.key", std::ios::binary)
      .write(reinterpret_cast<const char*>(other.data()), other.size());
  agent = Agent::Open(*cfg, Env::Default());
  ASSERT_FALSE(agent.ok());
  EXPECT_NE(agent.status().message().find(crypto::Hex(crypto::ShortHash(other))), std::string::npos)
      << agent.status().message();
  // The segment is still there for the right key.
  EXPECT_EQ(JournalKeyIds(Env::Default(), dir / "state/journal")->size(), 1u);
}

}  // namespace
}  // namespace edgesync

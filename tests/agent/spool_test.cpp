// The broker plugin's spool (agent/spool.h): its record, and what the
// writer the plugin runs puts on disk (masked, within its quota, in
// segments the agent can read once the writer has moved on).
#include "agent/spool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "agent/config.h"
#include "base/env.h"
#include "buffer/journal.h"
#include "fleet/bundle.h"
#include "harness/process.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

constexpr const char* kPan = "4111111111111111";

Config MakeConfig(const std::string& state_dir, const std::string& extra = "") {
  const std::string toml = R"([agent]
device_id = "spool-test"
state_dir = ")" + state_dir + R"("
[mqtt]
mode = "broker-plugin"
subscribe = ["extra/#"]
)" + extra + R"(
[kafka]
brokers = "127.0.0.1:9092"
[plugins.card-data]
type = "pci"
every_stream = true
[[streams]]
name = "payments"
topics = ["terminal/+/payment/#"]
kafka_topic = "payments"
)";
  Result<Config> c = ParseConfig(toml, "spool-test.toml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : Config{};
}

// Every whole file under the spool, concatenated.
std::string SpoolBytes(Env* env, const std::string& dir) {
  std::string all;
  Result<std::vector<std::string>> names = env->ListDir(dir);
  if (!names.ok()) return all;
  for (const std::string& n : *names) {
    Result<std::string> b = env->ReadFile(dir + "/" + n, 1 << 30);
    if (b.ok()) all += *b;
  }
  return all;
}

// The records of every segment, decoded, oldest first.
std::vector<std::string> Records(Env* env, const std::string& dir) {
  std::vector<std::string> out;
  Result<std::vector<std::string>> names = env->ListDir(dir);
  if (!names.ok()) return out;
  std::vector<std::string> sorted = *names;
  std::sort(sorted.begin(), sorted.end());
  for (const std::string& n : sorted) {
    Result<std::string> b = env->ReadFile(dir + "/" + n, 1 << 30);
    if (!b.ok()) continue;
    for (auto& [rec, end] : ScanSegment(*b).records) out.push_back(rec);
  }
  return out;
}

IngestMessage Message(std::string_view topic, std::string_view payload) {
  IngestMessage m;
  m.topic = topic;
  m.payload = payload;
  m.qos = 1;
  return m;
}

TEST(SpoolRecord, RoundTripsEveryFieldAndRefusesEveryTruncation) {
  const std::string payload("pay\0load", 8);
  IngestMessage m = Message("a/b", payload);
  m.content_type = "application/json";
  m.user_properties = {{"k", "v"}, {"", "empty name"}};
  m.user_property_count = 3;  // one more was published than kept
  m.user_property_bytes = 99;
  m.payload_size = 5000;
  std::string rec;
  EncodeSpoolRecord(m, 1234567, &rec);
  IngestMessage d;
  ASSERT_TRUE(DecodeSpoolRecord(rec, &d).ok());
  EXPECT_EQ(d.topic, "a/b");
  EXPECT_EQ(d.payload, payload);
  EXPECT_EQ(d.content_type, "application/json");
  EXPECT_EQ(d.user_properties, m.user_properties);
  EXPECT_EQ(d.user_property_count, 3u);
  EXPECT_EQ(d.user_property_bytes, 99u);
  EXPECT_EQ(d.payload_size, 5000u);
  EXPECT_EQ(d.received_at_us, 1234567);
  EXPECT_EQ(d.qos, 1);
  for (size_t n = 0; n < rec.size(); ++n) {
    EXPECT_FALSE(DecodeSpoolRecord(std::string_view(rec).substr(0, n), &d).ok()) << n;
  }
  EXPECT_FALSE(DecodeSpoolRecord(rec + "x", &d).ok());
  std::string future = rec;
  future[0] = 2;
  Status st = DecodeSpoolRecord(future, &d);
  EXPECT_NE(st.ToString().find("upgrade the agent"), std::string::npos) << st.ToString();
}

TEST(SpoolWriter, MasksCardDataBeforeItTouchesTheDiskOnEveryPath) {
  harness::TempDir dir = testing::NewTempDir();
  Config c = MakeConfig(dir / "state");
  Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(c);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  const std::string topic = std::string("terminal/") + kPan + "/payment/auth";
  const std::string payload = std::string(R"({"pan":")") + kPan + R"(","cvv":"123","amount":5})";
  const std::string raw = std::string("card=") + kPan + " ok";
  const std::string content_type = std::string("text/") + kPan;
  IngestMessage m = Message(topic, payload);
  m.content_type = content_type;
  m.user_properties = {{std::string("p") + kPan, kPan}};
  m.user_property_count = 1;
  std::string why;
  bool episode = false;
  EXPECT_EQ((*w)->OnMessage(m, &why, &episode), SpoolWriter::Outcome::kStored) << why;
  // A message no stream claims, but mqtt.subscribe does: the dead-letter
  // stream's chain (pci) runs on it.
  IngestMessage extra = Message("extra/x", raw);
  EXPECT_EQ((*w)->OnMessage(extra, &why, &episode), SpoolWriter::Outcome::kStored) << why;
  // Nothing of the agent's: left to the broker, nothing written.
  EXPECT_EQ((*w)->OnMessage(Message("other/x", raw), &why, &episode), SpoolWriter::Outcome::kIgnored);
  w->reset();  // syncs

  const std::string spool = SpoolDir(c.state_dir);
  const std::string on_disk = SpoolBytes(Env::Default(), spool);
  ASSERT_FALSE(on_disk.empty());
  // The journal compresses: look at the decoded records too.
  std::vector<std::string> recs = Records(Env::Default(), spool);
  ASSERT_EQ(recs.size(), 2u);
  for (const std::string& r : recs) {
    EXPECT_EQ(r.find(kPan), std::string::npos) << r;
    EXPECT_EQ(r.find("123"), std::string::npos) << r;  // the cvv went
  }
  EXPECT_EQ(on_disk.find(kPan), std::string::npos);
  IngestMessage d;
  ASSERT_TRUE(DecodeSpoolRecord(recs[0], &d).ok());
  EXPECT_EQ(d.topic, "terminal/411111******1111/payment/auth");
  EXPECT_NE(d.payload.find("411111"), std::string_view::npos) << d.payload;  // masked, not dropped
  ASSERT_TRUE(DecodeSpoolRecord(recs[1], &d).ok());
  EXPECT_EQ(d.topic, "extra/x");
}

TEST(SpoolWriter, AnEncryptedAgentGetsAnEncryptedSpoolOnceItsKeyExists) {
  harness::TempDir dir = testing::NewTempDir();
  const std::string state = dir / "state";
  ASSERT_TRUE(Env::Default()->CreateDirs(state).ok());
  // Any X25519 public key will do: the writer only needs to know encryption is on.
  ASSERT_TRUE(Env::Default()->WriteFileAtomically(dir / "central.pub", "unused").ok());
  Config c = MakeConfig(state, "");
  c.encryption_public_key = dir / "central.pub";
  Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(c);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  std::string why;
  bool episode = false;
  const std::string payload = "secret-payload-" + std::string(40, 'z');
  // No journal key yet (the agent makes it): refused, and said why, once.
  EXPECT_EQ((*w)->OnMessage(Message("terminal/t/payment/a", payload), &why, &episode),
            SpoolWriter::Outcome::kRefused);
  EXPECT_TRUE(episode);
  EXPECT_NE(why.find("start the agent once"), std::string::npos) << why;
  EXPECT_EQ((*w)->OnMessage(Message("terminal/t/payment/a", payload), &why, &episode),
            SpoolWriter::Outcome::kRefused);
  EXPECT_FALSE(episode);
  Result<crypto::Key> key = crypto::LoadOrCreateKeyFile(Env::Default(), state + "/journal.key");
  ASSERT_TRUE(key.ok());
  EXPECT_EQ((*w)->OnMessage(Message("terminal/t/payment/a", payload), &why, &episode),
            SpoolWriter::Outcome::kStored) << why;
  EXPECT_NE((*w)->Tick().find("takes messages again after refusing 2"), std::string::npos);
  w->reset();
  const std::string spool = SpoolDir(state);
  EXPECT_EQ(SpoolBytes(Env::Default(), spool).find("secret-payload"), std::string::npos);
  EXPECT_TRUE(Records(Env::Default(), spool).empty());  // not without the key
  std::vector<std::string> with_key;
  Result<std::vector<std::string>> names = Env::Default()->ListDir(spool);
  ASSERT_TRUE(names.ok());
  for (const std::string& n : *names) {
    Result<std::string> b = Env::Default()->ReadFile(spool + "/" + n, 1 << 20);
    ASSERT_TRUE(b.ok());
    for (auto& [rec, end] : ScanSegment(*b, &*key).records) with_key.push_back(rec);
  }
  ASSERT_EQ(with_key.size(), 1u);
  EXPECT_NE(with_key[0].find("secret-payload"), std::string::npos);
}

TEST(SpoolWriter, AFullSpoolRefusesUntilTheAgentHasReadItDown) {
  harness::TempDir dir = testing::NewTempDir();
  Config c = MakeConfig(dir / "state", "max_payload = \"4KiB\"\nspool_max_bytes = \"72KiB\"\n");
  c.batch.sync_interval_us = 1;  // every tick closes the segment for the agent
  Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(c);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  std::string why;
  bool episode = false;
  int stored = 0;
  // Incompressible payloads, so the spool really grows.
  std::string payload(1000, 'x');
  uint64_t state = 1;
  SpoolWriter::Outcome o = SpoolWriter::Outcome::kStored;
  for (int i = 0; i < 1000 && o == SpoolWriter::Outcome::kStored; ++i) {
    for (char& ch : payload) {
      state = state * 6364136223846793005ull + 1442695040888963407ull;
      ch = static_cast<char>('a' + (state >> 59));
    }
    o = (*w)->OnMessage(Message("terminal/t/payment/a", payload), &why, &episode);
    if (o == SpoolWriter::Outcome::kStored) ++stored;
  }
  ASSERT_EQ(o, SpoolWriter::Outcome::kRefused);
  EXPECT_TRUE(episode);
  EXPECT_NE(why.find("mqtt.spool_max_bytes"), std::string::npos) << why;
  EXPECT_GT(stored, 30);
  EXPECT_LE((*w)->spool_bytes(), 72u << 10);
  // The agent reads and deletes every segment but the one being written.
  (void)(*w)->Tick();
  const std::string spool = SpoolDir(c.state_dir);
  Result<std::vector<std::string>> names = Env::Default()->ListDir(spool);
  ASSERT_TRUE(names.ok());
  std::sort(names->begin(), names->end());
  for (size_t i = 0; i + 1 < names->size(); ++i) ASSERT_TRUE(Env::Default()->RemoveFile(spool + "/" + (*names)[i]).ok());
  (void)(*w)->Tick();  // measures again
  EXPECT_EQ((*w)->OnMessage(Message("terminal/t/payment/a", payload), &why, &episode), SpoolWriter::Outcome::kStored)
      << why;
}

TEST(SpoolWriter, ASegmentIsClosedForTheAgentOnceItsEventsAreASyncIntervalOld) {
  harness::TempDir dir = testing::NewTempDir();
  Config c = MakeConfig(dir / "state", "");
  c.batch.sync_interval_us = 1;  // every tick moves on
  Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(c);
  ASSERT_TRUE(w.ok());
  std::string why;
  bool episode = false;
  const std::string spool = SpoolDir(c.state_dir);
  auto segments = [&] {
    Result<std::vector<std::string>> n = Env::Default()->ListDir(spool);
    return n.ok() ? n->size() : 0;
  };
  ASSERT_EQ((*w)->OnMessage(Message("terminal/t/payment/a", "one"), &why, &episode), SpoolWriter::Outcome::kStored);
  EXPECT_EQ(segments(), 1u);
  (void)(*w)->Tick();
  EXPECT_EQ(segments(), 2u);  // the first is closed: the agent may read it
  (void)(*w)->Tick();
  EXPECT_EQ(segments(), 2u);  // nothing written: no new segment
  EXPECT_EQ(Records(Env::Default(), spool).size(), 1u);
}

// The reader holds a whole segment's records at once: repetitive JSON
// compresses far below the 4 MiB segment size, so the writer also moves
// on after about 1 MiB of records.
TEST(SpoolWriter, ASegmentsRecordsStayBoundedHoweverWellTheyCompress) {
  harness::TempDir dir = testing::NewTempDir();
  Config c = MakeConfig(dir / "state", "");
  c.batch.sync_interval_us = int64_t{3600} * 1000 * 1000;  // no tick closes a segment here
  Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(c);
  ASSERT_TRUE(w.ok());
  std::string why;
  bool episode = false;
  const std::string payload = R"({"amount":5,"pad":")" + std::string(60 << 10, 'a') + R"("})";
  constexpr int kMessages = 80;  // about 5 MiB of records, a few KiB compressed
  for (int i = 0; i < kMessages; ++i) {
    ASSERT_EQ((*w)->OnMessage(Message("terminal/t/payment/a", payload), &why, &episode),
              SpoolWriter::Outcome::kStored) << why;
  }
  w->reset();
  const std::string spool = SpoolDir(c.state_dir);
  Result<std::vector<std::string>> names = Env::Default()->ListDir(spool);
  ASSERT_TRUE(names.ok());
  EXPECT_GE(names->size(), 5u);
  size_t total = 0;
  for (const std::string& n : *names) {
    Result<std::string> b = Env::Default()->ReadFile(spool + "/" + n, 1 << 30);
    ASSERT_TRUE(b.ok());
    size_t records = 0;
    for (auto& [rec, end] : ScanSegment(*b).records) {
      records += rec.size();
      ++total;
    }
    EXPECT_LE(records, SpoolWriter::kMaxSegmentRecordBytes + payload.size() + 1024) << n;
  }
  EXPECT_EQ(total, static_cast<size_t>(kMessages));
}

// The fleet topic's payload is a signed bundle: masked or cut it would no
// longer verify, so the plugin spools it as published.
TEST(SpoolWriter, AFleetBundleIsSpooledAsPublished) {
  harness::TempDir dir = testing::NewTempDir();
  Config c = MakeConfig(dir / "state", "max_payload = \"4KiB\"\n");
  c.fleet_mqtt_topic = "fleet/config/spool-test";
  Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(c);
  ASSERT_TRUE(w.ok());
  // Bytes that look like a card number, and more than max_payload + 1 KiB.
  std::string bundle = std::string("EDGB\x01 signed ") + kPan + " ";
  for (int i = 0; bundle.size() < 16 << 10; ++i) bundle += static_cast<char>(i * 7);
  std::string why;
  bool episode = false;
  ASSERT_EQ((*w)->OnMessage(Message(c.fleet_mqtt_topic, bundle), &why, &episode), SpoolWriter::Outcome::kStored)
      << why;
  // A bundle larger than any the agent takes is left to the broker, and said so.
  const std::string huge(fleet::kMaxBundleBytes + 1, 'b');
  EXPECT_EQ((*w)->OnMessage(Message(c.fleet_mqtt_topic, huge), &why, &episode), SpoolWriter::Outcome::kIgnored);
  EXPECT_NE(why.find("larger than a bundle may be"), std::string::npos) << why;
  w->reset();
  std::vector<std::string> recs = Records(Env::Default(), SpoolDir(c.state_dir));
  ASSERT_EQ(recs.size(), 1u);
  IngestMessage d;
  ASSERT_TRUE(DecodeSpoolRecord(recs[0], &d).ok());
  EXPECT_EQ(d.topic, c.fleet_mqtt_topic);
  EXPECT_EQ(d.payload, bundle);
  EXPECT_EQ(d.payload_size, bundle.size());
}

// The broker's stop closes the segment being written, so the agent (which
// reads only segments the writer moved on from) reads it without waiting
// for the broker's next start.
TEST(SpoolWriter, TheBrokersStopClosesTheSegmentForTheAgent) {
  harness::TempDir dir = testing::NewTempDir();
  Config c = MakeConfig(dir / "state", "");
  c.batch.sync_interval_us = int64_t{3600} * 1000 * 1000;  // no tick closes it
  Result<std::unique_ptr<SpoolWriter>> w = SpoolWriter::Create(c);
  ASSERT_TRUE(w.ok());
  std::string why;
  bool episode = false;
  ASSERT_EQ((*w)->OnMessage(Message("terminal/t/payment/a", "last"), &why, &episode), SpoolWriter::Outcome::kStored);
  w->reset();
  const std::string spool = SpoolDir(c.state_dir);
  Result<std::vector<std::string>> names = Env::Default()->ListDir(spool);
  ASSERT_TRUE(names.ok());
  std::sort(names->begin(), names->end());
  ASSERT_EQ(names->size(), 2u);
  // The newest is empty; the record is in the one before it.
  Result<std::string> newest = Env::Default()->ReadFile(spool + "/" + names->back(), 1 << 20);
  ASSERT_TRUE(newest.ok());
  EXPECT_TRUE(ScanSegment(*newest).records.empty());
  Result<std::string> closed = Env::Default()->ReadFile(spool + "/" + names->front(), 1 << 20);
  ASSERT_TRUE(closed.ok());
  EXPECT_EQ(ScanSegment(*closed).records.size(), 1u);
}

// A quota smaller than one spooled message can be would refuse such a
// message for ever: the configuration is refused instead.
TEST(SpoolConfig, AQuotaSmallerThanOneMessageIsRefused) {
  const std::string toml = R"([agent]
device_id = "d"
state_dir = "/s"
[mqtt]
mode = "broker-plugin"
max_payload = "256KiB"
spool_max_bytes = "500KiB"
[kafka]
brokers = "127.0.0.1:9092"
[[streams]]
name = "s"
topics = ["s/#"]
)";
  Result<Config> c = ParseConfig(toml, "quota.toml");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("mqtt.spool_max_bytes"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("2 x mqtt.max_payload + 64KiB"), std::string::npos) << c.status().message();
  std::string big = toml;
  big.replace(big.find("500KiB"), 6, "576KiB");  // exactly 2 x 256 KiB + 64 KiB
  c = ParseConfig(big, "quota.toml");
  EXPECT_TRUE(c.ok()) << c.status().message();
}

}  // namespace
}  // namespace edgesync

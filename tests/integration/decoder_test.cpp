// The central team's view: an agent with encryption on seals its batches for
// a key pair from `edgesync keygen` and signs them with its own device key;
// tests/decode_envelope.py, a decoder written from FORMAT.md alone, checks
// each envelope's signature against the enrolled device keys, opens it with
// the private key and gives back exactly the payloads that were published.
#include <simdjson.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "base/env.h"
#include "format/identity.h"
#include "harness/consumer.h"
#include "central/unpack.h"
#include "tests/integration/pipeline_fixture.h"

namespace edgesync::testing {
namespace {

constexpr const char* kPaymentTopic = "terminal/t1/payment/authorization";

struct Published {
  std::string payload;
  int qos;
};

class DecoderPipeline : public Pipeline {
 protected:
  // Runs a program to its end; its exit code, -1 when it could not start.
  int Run(std::vector<std::string> argv, const std::string& out, const std::string& err) {
    harness::SpawnOptions o;
    o.argv = std::move(argv);
    o.stdout_path = out;
    o.stderr_path = err;
    Result<int> code = harness::RunToEnd(o, 120s);
    EXPECT_TRUE(code.ok()) << o.argv[0] << " did not finish: " << code.status().ToString();
    return code.ok() ? *code : -1;
  }

  // Events sealed so far on the payments topic, by the envelopes' Kafka
  // headers (for waiting only: the assertions are on what the decoder says).
  uint64_t EventsInKafka() {
    auto messages = harness::ReadTopic(cluster_->bootstrap(), kTopic, 10s);
    if (!messages.ok()) return 0;
    uint64_t events = 0;
    for (const auto& m : *messages) {
      for (const auto& [name, value] : m.headers) {
        if (name == "edgesync-events") events += std::stoull(value);
      }
    }
    return events;
  }

  void PublishAll(harness::Publisher* pub, const std::vector<Published>& events) {
    for (const Published& e : events) {
      Status st = pub->Publish(kPaymentTopic, e.payload, e.qos);
      ASSERT_TRUE(st.ok()) << st.ToString();
    }
  }
};

TEST_F(DecoderPipeline, SealedEnvelopesFromTheAgentDecodeWithTheFormatMdDecoder) {
  const std::string python = EDGESYNC_DEBIAN_PYTHON;
  ASSERT_EQ(python.find("NOTFOUND"), std::string::npos)
      << "Debian's /usr/bin/python3 is missing: run script/bootstrap";
  const std::string script = std::string(EDGESYNC_SOURCE_DIR) + "/tests/decode_envelope.py";

  // The central key pair; the agent gets the public half only.
  ASSERT_EQ(Run({harness::ProgramPath("edgesync"), "keygen", "--out", dir_ / "keys"},
                dir_ / "keygen.out", dir_ / "keygen.err"),
            0)
      << harness::ReadWholeFile(dir_ / "keygen.err");
  WriteConfig("", "[encryption]\npublic_key = \"" + (dir_ / "keys/edgesync.pub") + "\"\n");
  // The device's signing key, enrolled as an operator does: its enrolment
  // file (state_dir/device.pub) in the directory --device-keys reads.
  const std::string device_keys = DeviceKeysDir();
  Result<Enrolment> enrolment =
      ParseEnrolment(harness::ReadWholeFile(dir_ / "state/device.pub"), dir_ / "state/device.pub");
  ASSERT_TRUE(enrolment.ok()) << enrolment.status().ToString();
  EXPECT_EQ(enrolment->device_id, "it-device");
  const std::string signer = crypto::Hex(enrolment->key.key_id());

  // Payloads a decoder can get wrong: JSON, binary with every byte value
  // (not UTF-8), a run that compresses well, a QoS 0 delivery.
  std::vector<Published> events;
  for (int i = 0; i < 8; ++i) events.push_back({harness::PaymentEvent("pub", i + 1), 1});
  std::string binary;
  for (int b = 0; b < 256; ++b) binary += char(b);
  events.push_back({binary, 1});
  events.push_back({std::string(20000, 'z') + "end", 1});
  events.push_back({"qos zero", 0});
  events.push_back({"last of the first round", 1});
  const size_t first_round = events.size();
  for (int i = 0; i < 6; ++i) events.push_back({"second round " + std::to_string(i), 1});

  const int64_t started_at = Env::Default()->NowMicros();
  StartAgent();
  ASSERT_TRUE(agent_);
  auto pub = Connect();
  ASSERT_TRUE(pub);
  // Two rounds, the second after the first is in Kafka: at least two batches.
  PublishAll(pub.get(), {events.begin(), events.begin() + first_round});
  ASSERT_TRUE(harness::PollUntil([&] { return EventsInKafka() == first_round; }, 60s,
                                 200ms))
      << "events in Kafka: " << EventsInKafka() << "\n" << AgentLogs();
  PublishAll(pub.get(), {events.begin() + first_round, events.end()});
  ASSERT_TRUE(harness::PollUntil([&] { return EventsInKafka() == events.size(); }, 60s, 200ms))
      << "events in Kafka: " << EventsInKafka() << "\n" << AgentLogs();
  const int64_t arrived_at = Env::Default()->NowMicros();

  // One file per envelope, in Kafka order (one partition: the key is the device).
  auto messages = harness::ReadTopic(cluster_->bootstrap(), kTopic, 30s);
  ASSERT_TRUE(messages.ok()) << messages.status().ToString();
  ASSERT_GE(messages->size(), 2u);
  std::vector<std::string> files;
  for (const auto& m : *messages) {
    EXPECT_EQ(m.key, "it-device");
    files.push_back(dir_ / ("envelope-" + std::to_string(m.partition) + "-" +
                            std::to_string(m.offset) + ".bin"));
    std::ofstream(files.back(), std::ios::binary) << m.value;
  }

  // Each file refused once, for `reason` (a line of the decoder's stderr each).
  auto expect_each_refused = [&](const std::string& err_path, const std::string& reason) {
    const std::string err = harness::ReadWholeFile(err_path);
    size_t lines = 0, with_reason = 0;
    for (size_t at = 0; at < err.size();) {
      size_t eol = err.find('\n', at);
      if (eol == std::string::npos) eol = err.size();
      ++lines;
      if (err.substr(at, eol - at).find(reason) != std::string::npos) ++with_reason;
      at = eol + 1;
    }
    EXPECT_EQ(lines, files.size()) << err;
    EXPECT_EQ(with_reason, files.size()) << err;
  };

  // Without the private key nothing opens: the batches are sealed. Their
  // signatures verify (the key is asked for after that).
  std::vector<std::string> argv = {python, script, "--device-keys", device_keys};
  argv.insert(argv.end(), files.begin(), files.end());
  EXPECT_EQ(Run(argv, dir_ / "nokey.ndjson", dir_ / "nokey.err"), 1);
  EXPECT_EQ(harness::ReadWholeFile(dir_ / "nokey.ndjson"), "");
  expect_each_refused(dir_ / "nokey.err", "unknown key");

  // Nor does anything open for a reader that has not enrolled the device,
  // or has revoked its key: who wrote a batch is checked before its body.
  namespace fs = std::filesystem;
  const std::string unenrolled = dir_ / "device-keys-none", revoked = dir_ / "device-keys-revoked";
  fs::create_directories(unenrolled);
  fs::create_directories(revoked + "/revoked");
  fs::copy_file(dir_ / "state/device.pub", revoked + "/it-device.pub");
  fs::copy_file(dir_ / "state/device.pub", revoked + "/revoked/it-device.pub");
  for (const auto& [dir, reason] :
       {std::pair{unenrolled, "unknown_device"}, std::pair{revoked, "revoked_key"}}) {
    argv = {python, script, "--require-encryption", "--private-key", dir_ / "keys/edgesync.key",
            "--device-keys", dir};
    argv.insert(argv.end(), files.begin(), files.end());
    EXPECT_EQ(Run(argv, dir + ".ndjson", dir + ".err"), 1) << reason;
    EXPECT_EQ(harness::ReadWholeFile(dir + ".ndjson"), "") << reason;
    expect_each_refused(dir + ".err", reason);
  }

  // With the key and the device enrolled, every envelope verifies and
  // decodes; unsigned or unencrypted batches would be refused.
  argv = {python, script, "--require-encryption", "--private-key", dir_ / "keys/edgesync.key",
          "--device-keys", device_keys};
  argv.insert(argv.end(), files.begin(), files.end());
  ASSERT_EQ(Run(argv, dir_ / "decoded.ndjson", dir_ / "decoded.err"), 0)
      << harness::ReadWholeFile(dir_ / "decoded.err");
  EXPECT_EQ(harness::ReadWholeFile(dir_ / "decoded.err"), "");

  std::ifstream in(dir_ / "decoded.ndjson");
  std::string line;
  simdjson::dom::parser parser;
  std::vector<std::string> payloads;
  std::vector<int64_t> qos;
  std::set<uint64_t> batches;
  while (std::getline(in, line)) {
    simdjson::dom::element e;
    ASSERT_EQ(parser.parse(line).get(e), simdjson::SUCCESS) << line;
    EXPECT_EQ(std::string_view(e["device"]), "it-device") << line;
    EXPECT_EQ(std::string_view(e["stream"]), "payments") << line;
    EXPECT_EQ(std::string_view(e["topic"]), kPaymentTopic) << line;
    // Signed by the enrolled device key, and checked against it.
    EXPECT_EQ(bool(e["verified"]), true) << line;
    EXPECT_EQ(std::string_view(e["signer"]), signer) << line;
    // MQTT 3.1.1 publishes carry neither a content type nor user properties.
    EXPECT_NE(e["content_type"].error(), simdjson::SUCCESS) << line;
    EXPECT_NE(e["properties"].error(), simdjson::SUCCESS) << line;
    int64_t received_at = e["received_at"];
    EXPECT_GE(received_at, started_at) << line;
    EXPECT_LE(received_at, arrived_at) << line;
    batches.insert(uint64_t(e["batch"]));
    qos.push_back(int64_t(e["qos"]));
    payloads.emplace_back(std::string_view(e["payload_b64"]));
  }

  // Every payload, byte for byte and in order, at the QoS it was delivered with.
  std::vector<std::string> want_payloads;
  std::vector<int64_t> want_qos;
  for (const Published& e : events) {
    want_payloads.push_back(Base64Encode(e.payload));
    want_qos.push_back(e.qos);
  }
  EXPECT_EQ(payloads, want_payloads);
  EXPECT_EQ(qos, want_qos);
  // Batch sequences 1, 2, ... without gaps, one per envelope.
  std::set<uint64_t> want_batches;
  for (uint64_t s = 1; s <= messages->size(); ++s) want_batches.insert(s);
  EXPECT_EQ(batches, want_batches);
}

}  // namespace
}  // namespace edgesync::testing

// A device with [fleet] for integration tests (the Pipeline fixture's
// broker, Kafka cluster, agent and edgesync-unpack), with the fleet's
// signing keys, a drop directory and a retained bundle topic, traffic from
// a terminal, and the rollout's state as `edgesync status` tells it.
#pragma once

#include <simdjson.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "fleet/bundle.h"
#include "tests/integration/arrived.h"
#include "tests/integration/pipeline_fixture.h"

namespace edgesync::testing {

inline std::string Tagging(const std::string& tag) {
  return "\n[plugins.tag]\ntype = \"rules\"\n[[plugins.tag.rules]]\nset = { tag = \"" + tag + "\" }\n";
}

// The payments stream tagging its events with `tag`, to `kafka_topic`, from `topics`.
inline std::string PaymentsTagged(const std::string& tag, const std::string& kafka_topic = kTopic,
                           const std::string& topics = "terminal/+/payment/#") {
  return "[[streams]]\nname = \"payments\"\ntopics = [\"" + topics + "\"]\nkafka_topic = \"" + kafka_topic +
         "\"\nformat = \"json\"\nplugins = [\"tag\"]\n" + Tagging(tag);
}

struct FleetView {
  uint64_t version = 0, bundle = 0;
  std::string state, reason;
};

class Fleet : public Pipeline {
 protected:
  void SetUp() override {
    Pipeline::SetUp();
    if (HasFatalFailure()) return;
    auto key = fleet::GenerateSigningKey();
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    key_ = key->first;
    std::ofstream(dir_ / "fleet.pub") << key->second;
    auto other = fleet::GenerateSigningKey();
    ASSERT_TRUE(other.ok());
    other_key_ = other->first;
    std::filesystem::create_directories(dir_ / "inbox");
    // The device file: connections, [fleet], and a profile with the
    // payments stream (tag v0) that bundles take the place of.
    std::ofstream(dir_ / "profile.toml") << PaymentsTagged("v0");
    agent_extra_ = "profile = \"profile.toml\"\n";
    payments_stream_ = false;
    WriteDevice();
  }

  void TearDown() override {
    StopTraffic();
    Pipeline::TearDown();
  }

  void WriteDevice() {
    WriteConfig("", "[fleet]\npublic_keys = [\"" + (dir_ / "fleet.pub") + "\"]\ndrop_dir = \"" +
                        (dir_ / "inbox") + "\"\nmqtt_topic = \"fleet/config/{device_id}\"\nprobation = \"" +
                        probation_ + "\"\n");
  }

  std::string Sign(uint64_t version, const std::string& config, const std::string& key) {
    auto b = fleet::SignBundle(version, {{"edgesync.toml", config}}, key);
    EXPECT_TRUE(b.ok()) << b.status().ToString();
    return b.ok() ? *b : "";
  }

  // As the fleet's update channel should: written aside, then renamed in.
  void Drop(const std::string& name, const std::string& bytes) {
    const std::filesystem::path tmp = dir_ / ("inbox/" + name + ".part");
    std::ofstream(tmp, std::ios::binary) << bytes;
    std::filesystem::rename(tmp, dir_ / ("inbox/" + name + ".bundle"));
  }

  // A device's apps: one event every 10 ms, {"seq":N}, until StopTraffic.
  void StartTraffic() {
    traffic_ = std::thread([this] {
      auto pub = harness::Publisher::Connect("127.0.0.1", broker_->port(), "it-terminal", 50);
      if (!pub.ok()) return;
      while (!stop_traffic_) {
        if (!(*pub)->Publish("terminal/t1/payment/x", "{\"seq\":" + std::to_string(published_ + 1) + "}").ok()) break;
        ++published_;
        std::this_thread::sleep_for(10ms);
      }
      traffic_acked_ = (*pub)->WaitAcked(30s).ok();
    });
  }
  uint64_t StopTraffic() {
    stop_traffic_ = true;
    if (traffic_.joinable()) traffic_.join();
    return published_;
  }
  // Waits until `n` more events were published.
  void AwaitTraffic(uint64_t n) {
    const uint64_t until = published_ + n;
    ASSERT_TRUE(harness::PollUntil([&] { return published_ >= until; }, 30s));
  }

  FleetView Status() {
    FleetView v;
    CommandResult r = RunStatus({"--config", config_path(), "--json"});
    simdjson::dom::parser p;
    simdjson::dom::element doc, f;
    if (p.parse(r.out).get(doc) != simdjson::SUCCESS || doc["fleet"].get(f) != simdjson::SUCCESS || !f.is_object()) {
      return v;
    }
    v.version = uint64_t(f["version"]);
    std::string_view s;
    if (f["state"].get(s) == simdjson::SUCCESS) v.state = s;
    if (f["bundle"].get(v.bundle) != simdjson::SUCCESS) v.bundle = 0;
    if (f["reason"].get(s) == simdjson::SUCCESS) v.reason = s;
    return v;
  }
  // Waits until status says `state` about `bundle`.
  FleetView AwaitFleet(const std::string& state, uint64_t bundle, std::chrono::milliseconds timeout = 60s) {
    FleetView v;
    EXPECT_TRUE(harness::PollUntil([&] {
      v = Status();
      return v.state == state && v.bundle == bundle;
    }, timeout)) << "fleet state " << v.state << " about " << v.bundle << " (" << v.reason << ")\n" << AgentLogs();
    return v;
  }

  // Every published event arrived (on any topic unpacked), exactly once
  // unless `duplicates_allowed` (after a kill); the tag each seq arrived with.
  std::map<uint64_t, std::string> AwaitAllOnce(uint64_t published, bool duplicates_allowed = false) {
    std::vector<Arrived> got;
    std::map<uint64_t, std::string> tag_of;
    harness::PollUntil([&] {
      got = ReadArrived(dir_ / "records.ndjson");
      std::set<std::string> distinct;
      for (const Arrived& a : got) distinct.insert(a.payload.substr(0, a.payload.find(',')));
      return distinct.size() >= published;
    }, 120s);
    std::map<uint64_t, int> times;
    for (const Arrived& a : got) {
      simdjson::dom::parser p;
      simdjson::dom::element e;
      if (p.parse(a.payload).get(e) != simdjson::SUCCESS) continue;
      uint64_t seq = 0;
      if (e["seq"].get(seq) != simdjson::SUCCESS) continue;
      times[seq]++;
      std::string_view tag;
      tag_of[seq] = e["tag"].get(tag) == simdjson::SUCCESS ? std::string(tag) : std::string("(none)");
    }
    if (!duplicates_allowed) {
      EXPECT_EQ(got.size(), published) << AgentLogs();
    }
    for (uint64_t s = 1; s <= published; ++s) {
      EXPECT_GE(times[s], 1) << "seq " << s << " lost";
      if (!duplicates_allowed) {
        EXPECT_EQ(times[s], 1) << "seq " << s;
      }
    }
    return tag_of;
  }

  std::string probation_ = "2s";
  std::string key_, other_key_;
  std::thread traffic_;
  std::atomic<bool> stop_traffic_{false};
  std::atomic<uint64_t> published_{0};
  std::atomic<bool> traffic_acked_{false};
};

}  // namespace edgesync::testing

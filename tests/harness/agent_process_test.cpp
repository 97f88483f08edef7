#include "harness/agent_process.h"

#include <gtest/gtest.h>

#include "agent/config.h"

namespace edgesync::harness {
namespace {

TEST(PointConfigAt, ReplacesOnlyTheNamedLinesOfTheirSections) {
  const std::string in = R"([agent]
device_id = "d"
state_dir = "/var/lib/edgesync"   # comment
[mqtt]
host = "127.0.0.1"
port = 1883
portal = 1
[kafka]
brokers = "127.0.0.1:9092"
[[streams]]
name = "s"
topics = ["#"]
)";
  std::string out = PointConfigAt(in, 40001, "127.0.0.1:1,127.0.0.1:2", "/tmp/x");
  Result<Config> c = ParseConfig(out, "out.toml");
  ASSERT_FALSE(c.ok());  // "portal" is not an option: kept as written, so refused
  EXPECT_NE(out.find("portal = 1"), std::string::npos);
  std::string fixed = out;
  fixed.erase(fixed.find("portal = 1\n"), 11);
  c = ParseConfig(fixed, "out.toml");
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->mqtt.port, 40001);
  EXPECT_EQ(c->kafka_brokers, "127.0.0.1:1,127.0.0.1:2");
  EXPECT_EQ(c->state_dir, "/tmp/x");
  EXPECT_EQ(c->device_id, "d");
}

TEST(PointConfigAt, AddsMissingLinesAndSections) {
  std::string out = PointConfigAt("[agent]\ndevice_id = \"d\"\n[[streams]]\nname = \"s\"\ntopics = [\"a\"]\n",
                                  1234, "b:1", "/s");
  Result<Config> c = ParseConfig(out, "out.toml");
  ASSERT_TRUE(c.ok()) << c.status().message() << "\n" << out;
  EXPECT_EQ(c->mqtt.port, 1234);
  EXPECT_EQ(c->kafka_brokers, "b:1");
  EXPECT_EQ(c->state_dir, "/s");
}

}  // namespace
}  // namespace edgesync::harness

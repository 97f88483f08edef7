#include "agent/pipeline.h"

#include <gtest/gtest.h>

namespace edgesync {
namespace {

Config Parse(const std::string& extra) {
  Result<Config> c = ParseConfig(R"([agent]
device_id = "d"
[kafka]
brokers = "b:1"
[[streams]]
name = "charging"
topics = ["charger/#"]
kafka_topic = "edge.charging"
format = "json"
plugins = ["ocpp", "shape"]
[[streams]]
name = "alerts"
topics = ["alerts/#"]
priority = "high"
[plugins.ocpp]
type = "ocpp"
[plugins.ocpp.priorities]
StartTransaction = "high"
MeterValues = "low"
[plugins.shape]
type = "rules"
[[plugins.shape.rules]]
when = 'x == 1'
route = { topic = "edge.charging.tx" }
)" + extra, "p.toml");
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? *c : Config{};
}

TEST(Pipeline, LanesForEveryTopicAndPriorityTheChainsDeclare) {
  Result<std::shared_ptr<const Pipeline>> p = Pipeline::Build(Parse(""));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  std::vector<std::string> names;
  for (const StreamSpec& s : (*p)->lanes()) names.push_back(s.name);
  // Streams first (their index is their lane), then the built-in ones, then
  // each (topic, priority) of charging: 2 topics x 3 priorities, less its own.
  EXPECT_EQ(names, (std::vector<std::string>{"charging", "alerts", "dead-letter", "_agent",
                                             "charging@edge.charging@low", "charging@edge.charging@high",
                                             "charging@edge.charging.tx@low", "charging@edge.charging.tx@normal",
                                             "charging@edge.charging.tx@high"}));
  Route r;
  r.stream = "charging";
  EXPECT_EQ((*p)->LaneOf(r), 0u);
  r.priority = Priority::kHigh;
  EXPECT_EQ((*p)->lanes()[*(*p)->LaneOf(r)].name, "charging@edge.charging@high");
  r.kafka_topic = "edge.charging.tx";
  EXPECT_EQ((*p)->lanes()[*(*p)->LaneOf(r)].kafka_topic, "edge.charging.tx");
  r.kafka_topic = "edge.elsewhere";
  EXPECT_FALSE((*p)->LaneOf(r));  // not declared
  Route a;
  a.stream = "alerts";
  EXPECT_EQ((*p)->LaneOf(a), 1u);
  a.priority = Priority::kLow;
  EXPECT_FALSE((*p)->LaneOf(a));  // alerts declares no other priority
  a.stream = "nope";
  a.priority.reset();
  EXPECT_FALSE((*p)->LaneOf(a));
  EXPECT_EQ((*p)->chain(0).size(), 2u);
  EXPECT_TRUE((*p)->chain(1).empty());
}

TEST(Pipeline, RoutingToAStreamThatIsNotConfiguredIsAnError) {
  Result<Config> c = ParseConfig(R"([agent]
device_id = "d"
[kafka]
brokers = "b:1"
[[streams]]
name = "a"
topics = ["a/#"]
plugins = ["r"]
[plugins.r]
type = "rules"
[[plugins.r.rules]]
route = { stream = "missing" }
)", "p.toml");
  ASSERT_TRUE(c.ok());
  Result<std::shared_ptr<const Pipeline>> p = Pipeline::Build(*c);
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("routes to stream \"missing\", which is not configured"), std::string::npos);
}

TEST(Pipeline, LaneNamesFitABatchHeader) {
  EXPECT_EQ(LaneName("s", "edge.t", Priority::kLow), "s@edge.t@low");
  const std::string long_topic(249, 't');
  const std::string name = LaneName(std::string(64, 's'), long_topic, Priority::kHigh);
  EXPECT_LE(name.size(), 200u);
  EXPECT_NE(name, LaneName(std::string(64, 's'), long_topic.substr(0, 248) + "u", Priority::kHigh));
}

}  // namespace
}  // namespace edgesync

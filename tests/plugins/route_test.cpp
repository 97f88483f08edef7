#include <gtest/gtest.h>

#include "plugins/route.h"

namespace edgesync {
namespace {

TEST(TopicFilter, Validation) {
  for (const char* ok : {"#", "+", "a/b", "a/+/c", "a/#", "+/+", "/", "a//b", "$SYS/#"}) {
    EXPECT_TRUE(ValidateTopicFilter(ok).ok()) << ok;
  }
  for (const char* bad : {"", "a/#/b", "a#", "a/b#", "a+/b", "a/+b", "#/a"}) {
    EXPECT_FALSE(ValidateTopicFilter(bad).ok()) << bad;
  }
}

struct Case {
  const char* filter;
  const char* topic;
  bool match;
};

TEST(TopicFilter, MatchesAsTheSpecSays) {
  const Case cases[] = {
      {"a/b", "a/b", true},
      {"a/b", "a/c", false},
      {"a/b", "a/b/c", false},
      {"a/+", "a/b", true},
      {"a/+", "a/b/c", false},
      {"a/+", "a/", true},  // empty level is a level
      {"+/+", "/finance", true},
      {"/+", "/finance", true},
      {"+", "/finance", false},
      {"a/#", "a", true},  // '#' includes the parent level
      {"a/#", "a/b/c", true},
      {"a/#", "ab", false},
      {"#", "anything/at/all", true},
      {"terminal/+/payment/#", "terminal/t1/payment/authorization", true},
      {"terminal/+/payment/#", "terminal/t1/payment", true},
      {"terminal/+/payment/#", "terminal/t1/status", false},
      {"#", "$SYS/broker/load", false},  // wildcards do not start $-topics
      {"+/broker/load", "$SYS/broker/load", false},
      {"$SYS/#", "$SYS/broker/load", true},
      {"a/+/c", "a/b/c", true},
      {"a/+/c", "a/b/d", false},
      {"a/b/", "a/b/", true},
      {"a/b/", "a/b", false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(TopicMatches(c.filter, c.topic), c.match) << c.filter << " vs " << c.topic;
  }
}

TEST(TopicFilter, CoversAndMinimalSubscriptions) {
  EXPECT_TRUE(FilterCovers("#", "a/b"));
  EXPECT_TRUE(FilterCovers("#", "+/+/#"));
  EXPECT_TRUE(FilterCovers("a/#", "a"));
  EXPECT_TRUE(FilterCovers("a/#", "a/+/c"));
  EXPECT_TRUE(FilterCovers("a/+/c", "a/b/c"));
  EXPECT_TRUE(FilterCovers("+/+", "+/b"));
  EXPECT_FALSE(FilterCovers("a/+", "a/#"));
  EXPECT_FALSE(FilterCovers("a/+", "a/b/c"));
  EXPECT_FALSE(FilterCovers("a/b", "a/+"));
  EXPECT_FALSE(FilterCovers("#", "$SYS/x"));
  EXPECT_TRUE(FilterCovers("$SYS/#", "$SYS/x"));
  EXPECT_FALSE(FilterCovers("a/b", "a/b/c"));
  EXPECT_EQ(MinimalSubscriptions({"terminal/+/payment/#", "charger/#", "#", "charger/#"}),
            std::vector<std::string>{"#"});
  EXPECT_EQ(MinimalSubscriptions({"a/+", "a/b", "c/d", "c/d"}),
            (std::vector<std::string>{"a/+", "c/d"}));
}

TEST(Router, FirstMatchingStreamWins) {
  Router r({{"terminal/+/payment/#"}, {"charger/#", "terminal/#"}});
  EXPECT_EQ(r.Route("terminal/t1/payment/capture"), 0u);
  EXPECT_EQ(r.Route("terminal/t1/status"), 1u);
  EXPECT_EQ(r.Route("charger/cs1/ocpp/Heartbeat"), 1u);
  EXPECT_EQ(r.Route("other/x"), std::nullopt);
  EXPECT_EQ(r.AllFilters(), (std::vector<std::string>{"terminal/+/payment/#", "charger/#", "terminal/#"}));
}

}  // namespace
}  // namespace edgesync

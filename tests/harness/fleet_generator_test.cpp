// FleetGenerator: the events edgesync-fleet publishes, without a broker.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <map>
#include <set>

#include "harness/fleet.h"

namespace edgesync::harness {
namespace {

constexpr int64_t kStart = 1714557600000;  // 2024-05-01T10:00:00Z

TEST(FleetGeneratorTest, SameSeedSameEventsOtherSeedOthers) {
  FleetGenerator a(3, 2, 42, kStart), b(3, 2, 42, kStart), c(3, 2, 43, kStart);
  bool differs = false;
  for (int i = 0; i < 500; ++i) {
    FleetEvent ea = a.Next(i * 20), eb = b.Next(i * 20), ec = c.Next(i * 20);
    ASSERT_EQ(ea.topic, eb.topic);
    ASSERT_EQ(ea.payload, eb.payload);
    differs = differs || ea.payload != ec.payload;
  }
  EXPECT_TRUE(differs);
}

TEST(FleetGeneratorTest, EventsAreKeyedRealisticJson) {
  FleetGenerator gen(4, 3, 7, kStart);
  ASSERT_EQ(gen.devices().size(), 7u);
  EXPECT_EQ(gen.devices().front(), "term-0001");
  EXPECT_EQ(gen.devices().back(), "cs-0003");

  simdjson::dom::parser parser;
  std::map<std::string, uint64_t> last_seq;
  std::set<std::string> terminal_kinds, ocpp_actions;
  size_t min_size = SIZE_MAX, max_size = 0;
  for (int i = 0; i < 5000; ++i) {
    FleetEvent ev = gen.Next(i * 10);
    SCOPED_TRACE(ev.topic + " " + ev.payload);
    min_size = std::min(min_size, ev.payload.size());
    max_size = std::max(max_size, ev.payload.size());

    simdjson::dom::element doc;
    ASSERT_EQ(parser.parse(ev.payload).get(doc), simdjson::SUCCESS);
    std::string_view device;
    uint64_t seq = 0;
    ASSERT_EQ(doc["device"].get_string().get(device), simdjson::SUCCESS);
    ASSERT_EQ(doc["seq"].get_uint64().get(seq), simdjson::SUCCESS);
    EXPECT_EQ(device, ev.device);
    EXPECT_EQ(seq, ev.seq);
    EXPECT_EQ(seq, ++last_seq[ev.device]);  // 1, 2, 3, ... per device

    if (ev.device.rfind("term-", 0) == 0) {
      std::string prefix = "terminal/" + ev.device + "/";
      ASSERT_EQ(ev.topic.rfind(prefix, 0), 0u);
      std::string kind = ev.topic.substr(prefix.size());
      terminal_kinds.insert(kind);
      std::string_view ts;
      ASSERT_EQ(doc["ts"].get_string().get(ts), simdjson::SUCCESS);
      EXPECT_EQ(ts.substr(0, 11), "2024-05-01T");
      EXPECT_EQ(ts.back(), 'Z');
      if (kind == "payment/authorization") {
        std::string_view pan;
        ASSERT_EQ(doc["card"]["pan"].get_string().get(pan), simdjson::SUCCESS);
        EXPECT_NE(pan.find("*****"), std::string_view::npos);
        EXPECT_TRUE(pan.size() == 15 || pan.size() == 16) << pan;
        EXPECT_EQ(pan.find_first_not_of("0123456789*"), std::string_view::npos);
        std::string_view currency;
        ASSERT_EQ(doc["amount"]["currency"].get_string().get(currency), simdjson::SUCCESS);
        EXPECT_EQ(currency.size(), 3u);
      }
    } else {
      ASSERT_EQ(ev.device.rfind("cs-", 0), 0u);
      std::string prefix = "charger/" + ev.device + "/ocpp/";
      ASSERT_EQ(ev.topic.rfind(prefix, 0), 0u);
      std::string action = ev.topic.substr(prefix.size());
      ocpp_actions.insert(action);
      // An OCPP-J CALL: [2, "<unique id>", "<Action>", {payload}]
      simdjson::dom::array frame;
      ASSERT_EQ(doc["ocpp"].get_array().get(frame), simdjson::SUCCESS);
      ASSERT_EQ(frame.size(), 4u);
      EXPECT_EQ(frame.at(0).get_int64().value(), 2);
      EXPECT_EQ(frame.at(1).get_string().value().size(), 36u);
      EXPECT_EQ(frame.at(2).get_string().value(), action);
      EXPECT_TRUE(frame.at(3).is_object());
    }
  }
  EXPECT_GE(min_size, 180u);
  EXPECT_LE(max_size, 420u);
  EXPECT_EQ(terminal_kinds,
            (std::set<std::string>{"payment/authorization", "payment/capture", "status"}));
  EXPECT_EQ(ocpp_actions, (std::set<std::string>{"Heartbeat", "MeterValues", "StartTransaction",
                                                  "StatusNotification", "StopTransaction"}));
}

}  // namespace
}  // namespace edgesync::harness

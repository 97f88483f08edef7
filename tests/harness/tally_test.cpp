// Tally over hand-written NDJSON records and manifests, and the
// edgesync-tally program's output and exit code.
#include "harness/tally.h"

#include <gtest/gtest.h>

#include <sstream>

namespace edgesync::harness {
namespace {

std::string Record(const std::string& payload_json) {
  return R"({"device":"edge-1","stream":"payments","batch":7,"topic":"t","received_at":"2024-05-01T10:00:00Z","payload":)" +
         payload_json + "}\n";
}

TEST(TallyTest, CountsLostAndDuplicates) {
  std::map<std::string, uint64_t> published = {{"term-0001", 4}, {"cs-0001", 2}};
  std::string in = Record(R"({"device":"term-0001","seq":1,"amount":{"value":12}})") +
                   Record(R"({"device":"term-0001","seq":2})") +
                   Record(R"({"device":"term-0001","seq":2})") +  // duplicate
                   Record(R"({"device":"term-0001","seq":4})") +  // seq 3 lost
                   Record(R"({"seq":1,"device":"cs-0001","ocpp":[2,"u","Heartbeat",{}]})") +
                   Record(R"({"device":"cs-0001","seq":1})");  // duplicate; cs seq 2 lost
  std::istringstream s(in);
  Tally t = TallyLines(s, published);
  EXPECT_EQ(t.published, 6u);
  EXPECT_EQ(t.arrived, 4u);
  EXPECT_EQ(t.lost, 2u);
  EXPECT_EQ(t.duplicates, 2u);
  EXPECT_EQ(t.unparsable, 0u);
  EXPECT_EQ(t.unexpected, 0u);
  EXPECT_EQ(FormatSummary(t), "summary: published=6 arrived=4 lost=2 duplicates=2");
}

TEST(TallyTest, ReadsBase64Payloads) {
  // base64 of {"device":"term-0002","seq":1} and of {"device":"term-0002","seq":2}
  std::string in =
      R"({"device":"e","stream":"s","batch":1,"topic":"t","received_at":"x","payload_b64":"eyJkZXZpY2UiOiJ0ZXJtLTAwMDIiLCJzZXEiOjF9"})"
      "\n"
      R"({"device":"e","stream":"s","batch":1,"topic":"t","received_at":"x","payload_b64":"eyJkZXZpY2UiOiJ0ZXJtLTAwMDIiLCJzZXEiOjJ9"})"
      "\n"
      // base64 of the bytes "not json": a record without a key
      R"({"device":"e","stream":"s","batch":1,"topic":"t","received_at":"x","payload_b64":"bm90IGpzb24="})"
      "\n";
  std::istringstream s(in);
  Tally t = TallyLines(s, {{"term-0002", 2}});
  EXPECT_EQ(t.arrived, 2u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.unparsable, 1u);
}

TEST(TallyTest, GarbageLinesAreCountedNotFatal) {
  std::string in = "this is not json\n"
                   "\n"
                   "{\"truncated\": \n" +
                   Record(R"("a string payload")") +
                   Record(R"({"device":"term-0001"})") +          // no seq
                   Record(R"({"device":"term-0001","seq":-1})") +  // not a sequence number
                   Record(R"({"device":"term-0001","seq":1.5})") +
                   R"({"device":"e","payload_b64":"!!!"})" "\n" +
                   Record(R"({"device":"term-0001","seq":1})");
  std::istringstream s(in);
  Tally t = TallyLines(s, {{"term-0001", 1}});
  EXPECT_EQ(t.unparsable, 7u);  // the blank line is skipped, not counted
  EXPECT_EQ(t.arrived, 1u);
  EXPECT_EQ(t.lost, 0u);
  EXPECT_EQ(t.duplicates, 0u);
}

TEST(TallyTest, KeysOutsideTheManifestDoNotCountAsArrived) {
  std::string in = Record(R"({"device":"term-0001","seq":3})") +  // beyond published
                   Record(R"({"device":"term-0001","seq":0})") +
                   Record(R"({"device":"term-9999","seq":1})");  // unknown device
  std::istringstream s(in);
  Tally t = TallyLines(s, {{"term-0001", 2}});
  EXPECT_EQ(t.arrived, 0u);
  EXPECT_EQ(t.lost, 2u);
  EXPECT_EQ(t.unexpected, 3u);
  EXPECT_EQ(t.duplicates, 0u);
}

TEST(TallyTest, ManifestParsing) {
  std::istringstream good("# device,published\nterm-0001,3\r\n\ncs-0001,0\n");
  Result<std::map<std::string, uint64_t>> m = ParseManifest(good);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  EXPECT_EQ(m->size(), 2u);
  EXPECT_EQ(m->at("term-0001"), 3u);
  EXPECT_EQ(m->at("cs-0001"), 0u);
  for (const char* bad : {"term-0001\n", "term-0001,\n", ",3\n", "term-0001,3x\n", "t,-1\n"}) {
    std::istringstream in(bad);
    EXPECT_EQ(ParseManifest(in).status().code(), Status::Code::kInvalidArgument) << bad;
  }
}

}  // namespace
}  // namespace edgesync::harness

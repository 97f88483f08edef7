// The pieces of operations that need no running agent: log folding and the
// journal's priority prefixes, the status summary's layout, the metrics file,
// and the systemd notification protocol.
#include <gtest/gtest.h>
#include <simdjson.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>

#include "agent/health.h"
#include "agent/logging.h"
#include "agent/status_cli.h"
#include "base/systemd.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

using namespace std::chrono_literals;

spdlog::details::log_msg Msg(spdlog::log_clock::time_point t, spdlog::level::level_enum l, std::string_view text) {
  return spdlog::details::log_msg(t, spdlog::source_loc{}, "edgesync", l, text);
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(Logging, ARepeatedMessageIsWrittenOnceThenCountedPerWindow) {
  std::ostringstream os;
  auto inner = std::make_shared<spdlog::sinks::ostream_sink_st>(os);
  inner->set_pattern("%l %v");
  RepeatFoldingSink sink(inner, 60s);
  const auto t0 = spdlog::log_clock::time_point(std::chrono::hours(500000));
  for (int i = 0; i < 1000; ++i) sink.log(Msg(t0 + i * 10ms, spdlog::level::err, "kafka: broker down"));
  sink.log(Msg(t0 + 11s, spdlog::level::warn, "other"));
  sink.log(Msg(t0 + 12s, spdlog::level::debug, "debug passes"));
  sink.log(Msg(t0 + 12s, spdlog::level::debug, "debug passes"));
  EXPECT_EQ(Lines(os.str()),
            (std::vector<std::string>{"error kafka: broker down", "warning other", "debug debug passes",
                                      "debug debug passes"}));
  // The window ends: one line with the count; the next window counts anew.
  os.str("");
  sink.log(Msg(t0 + 61s, spdlog::level::err, "kafka: broker down"));
  EXPECT_EQ(Lines(os.str()), (std::vector<std::string>{"error kafka: broker down (repeated 999 times in 61 s)"}));
  os.str("");
  sink.log(Msg(t0 + 122s, spdlog::level::info, "quiet again"));
  // One repeat (at 61 s) in the second window, reported; "other" is forgotten.
  EXPECT_EQ(Lines(os.str()), (std::vector<std::string>{"error kafka: broker down (repeated 1 times in 61 s)",
                                                       "info quiet again"}));
  os.str("");
  sink.log(Msg(t0 + 130s, spdlog::level::warn, "other"));
  EXPECT_EQ(Lines(os.str()), (std::vector<std::string>{"warning other"}));
}

TEST(Logging, HoldsABoundedNumberOfDistinctMessages) {
  std::ostringstream os;
  auto inner = std::make_shared<spdlog::sinks::ostream_sink_st>(os);
  inner->set_pattern("%v");
  RepeatFoldingSink sink(inner, 60s);
  const auto t0 = spdlog::log_clock::time_point(std::chrono::hours(500000));
  sink.log(Msg(t0, spdlog::level::err, "first"));
  sink.log(Msg(t0, spdlog::level::err, "first"));
  for (size_t i = 0; i < RepeatFoldingSink::kMaxHeld; ++i) {
    sink.log(Msg(t0 + 1ms, spdlog::level::err, "distinct " + std::to_string(i)));
  }
  // The 65th distinct message ended "first"'s window, with its count.
  EXPECT_NE(os.str().find("first (repeated 1 times in 0 s)"), std::string::npos) << os.str();
  os.str("");
  sink.log(Msg(t0 + 2ms, spdlog::level::err, "first"));
  EXPECT_EQ(os.str(), "first\n");
}

TEST(Logging, JournalLinesCarryTheSyslogPriorityAndNoTimestamp) {
  harness::TempDir dir = testing::NewTempDir();
  FILE* f = std::fopen((dir / "log").c_str(), "w+");
  ASSERT_NE(f, nullptr);
  JournalSink sink(f);
  sink.set_pattern("%v");
  const auto now = spdlog::log_clock::now();
  sink.log(Msg(now, spdlog::level::critical, "cannot start"));
  sink.log(Msg(now, spdlog::level::err, "e"));
  sink.log(Msg(now, spdlog::level::warn, "w"));
  sink.log(Msg(now, spdlog::level::info, "i"));
  sink.log(Msg(now, spdlog::level::debug, "d"));
  std::fclose(f);
  std::ifstream in(dir / "log");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "<2>cannot start\n<3>e\n<4>w\n<6>i\n<7>d\n");
}

AgentStats SampleStats() {
  AgentStats s;
  s.ingest.received = 500;
  s.ingest.connected = true;
  s.ingest.subscribed = true;
  s.uploader.delivered_events = 480;
  s.uploader.kafka = KafkaState::kUp;
  s.uploader.last_delivery_us = 1'795'000'000'000'000 - 3'000'000;
  s.uploader.last_error = {"Local: Broker transport failure: a very long message that goes on and on and on "
                           "well past the edge of any terminal",
                           1'795'000'000'000'000 - 600'000'000};
  s.buffered = {.batches = 2, .events = 20, .bytes = 3 << 20, .gap_records = 0,
                .oldest_event_us = 1'795'000'000'000'000 - 42'000'000};
  StreamStats p{.name = "payments-with-a-rather-long-name", .buffered = s.buffered, .accepted = 500,
                .uploaded_events = 480, .last_upload_us = 1'795'000'000'000'000 - 3'000'000,
                .in_per_s = 12345.6, .out_per_s = 99.5, .gaps = 1, .gap_events = 7};
  s.streams = {p, StreamStats{.name = "dead-letter"}, StreamStats{.name = "_agent"}};
  return s;
}

HealthContext SampleContext() {
  HealthContext c;
  c.device_id = "term-0042";
  c.version = "0.1.0";
  c.now_us = 1'795'000'000'000'000;
  c.uptime_us = 7'500'000'000;
  return c;
}

TEST(Status, HealthRecordCarriesPerStreamFiguresAndTheWedgedStage) {
  AgentStats s = SampleStats();
  s.wedged = "buffer: no progress for 31 s";
  simdjson::dom::parser parser;
  simdjson::dom::element e = parser.parse(HealthRecordJson(s, SampleContext()));
  EXPECT_EQ(std::string_view(e["wedged"]), "buffer: no progress for 31 s");
  simdjson::dom::element p = e["streams"].at(0);
  EXPECT_EQ(std::string_view(p["name"]), "payments-with-a-rather-long-name");
  EXPECT_EQ(uint64_t(p["buffered"]["events"]), 20u);
  EXPECT_EQ(int64_t(p["buffered"]["oldest_age_s"]), 42);
  EXPECT_EQ(uint64_t(p["accepted"]), 500u);
  EXPECT_EQ(uint64_t(p["uploaded_events"]), 480u);
  EXPECT_DOUBLE_EQ(double(p["in_per_s"]), 12345.6);
  EXPECT_EQ(uint64_t(p["gaps"]["count"]), 1u);
  EXPECT_EQ(e["streams"].get_array().size(), 3u);
}

TEST(Status, TheSummaryFitsEightyColumnsAndSaysWhatMatters) {
  AgentStats s = SampleStats();
  s.wedged = "upload: no progress for 45 s";
  Result<std::string> text = FormatStatusText(HealthRecordJson(s, SampleContext()), SampleContext().now_us);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  for (const std::string& line : Lines(*text)) EXPECT_LE(line.size(), 80u) << line;
  EXPECT_NE(text->find("edgesync 0.1.0, device term-0042: running for 2h"), std::string::npos) << *text;
  EXPECT_NE(text->find("mqtt     connected, subscribed"), std::string::npos) << *text;
  EXPECT_NE(text->find("kafka    up, 0 in flight, last delivery 3s ago"), std::string::npos) << *text;
  EXPECT_NE(text->find("buffer   2 batches, 20 events, 3.0 MiB, oldest 42s"), std::string::npos) << *text;
  EXPECT_NE(text->find("WEDGED   upload: no progress for 45 s"), std::string::npos) << *text;
  EXPECT_NE(text->find("errors   upload 10m ago: Local: Broker transport failure"), std::string::npos) << *text;
  EXPECT_NE(text->find("payments-with-a~       2       20   3.0 MiB    42s    12k   99.5    3s ago    1"),
            std::string::npos)
      << *text;
  EXPECT_FALSE(FormatStatusText("[1,2]", 0).ok());
  EXPECT_FALSE(FormatStatusText("not json", 0).ok());
}

TEST(Status, AStoppedAgentsDocumentSaysSoAndShowsOnlyWhatTheStoreKnows) {
  AgentStats s;
  s.buffered.events = 30;
  s.streams = {StreamStats{.name = "payments", .buffered = {.batches = 1, .events = 30, .bytes = 900}}};
  const std::string doc = StoredStatusDocument(s, "term-0042", 1'795'000'000'000'000);
  simdjson::dom::parser parser;
  simdjson::dom::element e = parser.parse(doc);
  EXPECT_EQ(std::string_view(e["state"]), "not running");
  simdjson::dom::element unused;
  EXPECT_NE(e["streams"].at(0)["accepted"].get(unused), simdjson::SUCCESS);  // only the agent knows
  Result<std::string> text = FormatStatusText(doc, 1'795'000'000'000'000);
  ASSERT_TRUE(text.ok());
  EXPECT_NE(text->find("device term-0042: not running"), std::string::npos) << *text;
  EXPECT_NE(text->find("read from the store, read-only"), std::string::npos) << *text;
  EXPECT_EQ(text->find("mqtt "), std::string::npos) << *text;
}

TEST(Metrics, TheTextfileHasTheHealthRecordsCountersInPrometheusFormat) {
  AgentStats s = SampleStats();
  s.uploader.blocked = {{"edge.\"odd\"", "TOPIC_AUTHORIZATION_FAILED", 1}};
  const std::string text = MetricsText(s, SampleContext());
  for (const char* want : {
           "edgesync_info{device=\"term-0042\",version=\"0.1.0\"} 1\n",
           "# TYPE edgesync_received_total counter\nedgesync_received_total 500\n",
           "edgesync_uploaded_events_total 480\n",
           "edgesync_buffered_bytes 3145728\n",
           "edgesync_buffered_oldest_age_seconds 42\n",
           "edgesync_mqtt_connected 1\n",
           "edgesync_kafka_state{state=\"up\"} 1\n",
           "edgesync_kafka_state{state=\"down\"} 0\n",
           "edgesync_kafka_topic_blocked{topic=\"edge.\\\"odd\\\"\"} 1\n",
           "edgesync_last_error_timestamp_seconds{stage=\"upload\"} 1794999400\n",
           "edgesync_stream_accepted_total{stream=\"payments-with-a-rather-long-name\"} 500\n",
           "edgesync_stream_gap_events{stream=\"payments-with-a-rather-long-name\"} 7\n",
           "edgesync_stream_buffered_events{stream=\"_agent\"} 0\n",
           "edgesync_wedged 0\n",
       }) {
    EXPECT_NE(text.find(want), std::string::npos) << want << "\n" << text;
  }
  // Every sample line is `name[{labels}] value`, every family typed once.
  std::map<std::string, int> types;
  for (const std::string& line : Lines(text)) {
    if (line.rfind("# TYPE ", 0) == 0) ++types[line.substr(7, line.find(' ', 7) - 7)];
    if (line[0] == '#') continue;
    const std::string name = line.substr(0, line.find_first_of("{ "));
    EXPECT_EQ(types.count(name), 1u) << line;
    EXPECT_NE(line.rfind(' '), std::string::npos);
  }
  for (const auto& [name, n] : types) EXPECT_EQ(n, 1) << name;
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) { ::setenv(name, value.c_str(), 1); }
  ~ScopedEnv() { ::unsetenv(name_); }

 private:
  const char* name_;
};

TEST(Systemd, NotifySendsTheStateToTheSocketAndIsANoOpWithoutOne) {
  ::unsetenv("NOTIFY_SOCKET");
  EXPECT_FALSE(systemd::Notify("READY=1"));
  harness::TempDir dir = testing::NewTempDir();
  const std::string path = dir / "notify";
  int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  {
    ScopedEnv env("NOTIFY_SOCKET", path);
    EXPECT_TRUE(systemd::Notify("READY=1\nSTATUS=up"));
  }
  char buf[64] = {};
  ASSERT_EQ(::recv(fd, buf, sizeof(buf), MSG_DONTWAIT), 17);
  EXPECT_STREQ(buf, "READY=1\nSTATUS=up");
  ::close(fd);
  ScopedEnv gone("NOTIFY_SOCKET", dir / "nobody-listens");
  EXPECT_FALSE(systemd::Notify("WATCHDOG=1"));
}

TEST(Systemd, WatchdogIntervalIsOursOnlyWhenThePidMatches) {
  ::unsetenv("WATCHDOG_PID");
  {
    ScopedEnv usec("WATCHDOG_USEC", "20000000");
    EXPECT_EQ(systemd::WatchdogMicros(), 20'000'000);
    {
      ScopedEnv pid("WATCHDOG_PID", std::to_string(::getpid()));
      EXPECT_EQ(systemd::WatchdogMicros(), 20'000'000);
    }
    {
      ScopedEnv pid("WATCHDOG_PID", std::to_string(::getpid() + 1));
      EXPECT_EQ(systemd::WatchdogMicros(), 0);
    }
  }
  EXPECT_EQ(systemd::WatchdogMicros(), 0);
  ScopedEnv bad("WATCHDOG_USEC", "soon");
  EXPECT_EQ(systemd::WatchdogMicros(), 0);
}

TEST(Systemd, StderrIsTheJournalOnlyWhenJournalStreamNamesIt) {
  ::unsetenv("JOURNAL_STREAM");
  EXPECT_FALSE(systemd::StderrIsJournal());
  struct stat st{};
  ASSERT_EQ(::fstat(STDERR_FILENO, &st), 0);
  {
    ScopedEnv js("JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino));
    EXPECT_TRUE(systemd::StderrIsJournal());
  }
  ScopedEnv other("JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino + 1));
  EXPECT_FALSE(systemd::StderrIsJournal());
}

}  // namespace
}  // namespace edgesync

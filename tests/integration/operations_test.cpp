// Operations: the agent under systemd's eyes (readiness, status lines, the
// watchdog that stops when a stage is wedged), `edgesync status` against a
// running agent and against the store of a stopped one, and the metrics file
// for node_exporter. systemd itself is played by a datagram socket of the
// test's (sd_notify's protocol).
#include <simdjson.h>
#include <sstream>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "tests/integration/pipeline_fixture.h"

namespace edgesync::testing {
namespace {

// The service manager's end of $NOTIFY_SOCKET: the datagrams the agent sends.
class NotifySocket {
 public:
  explicit NotifySocket(const std::string& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path.c_str());
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << std::strerror(errno);
  }
  ~NotifySocket() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  // Reads datagrams until one not looked at before holds `text` (true) or
  // `timeout` passes.
  bool AwaitMessage(const std::string& text, std::chrono::milliseconds timeout) {
    return AwaitUntil([&] {
      for (size_t i = seen_; i < messages_.size(); ++i) {
        if (messages_[i].find(text) != std::string::npos) {
          seen_ = i + 1;
          return true;
        }
      }
      seen_ = messages_.size();
      return false;
    }, timeout);
  }
  // The text of the last STATUS= line received: what systemctl status shows.
  std::string LastStatus() const {
    std::string last;
    for (const std::string& m : messages_) {
      std::istringstream lines(m);
      for (std::string line; std::getline(lines, line);) {
        if (line.rfind("STATUS=", 0) == 0) last = line.substr(7);
      }
    }
    return last;
  }
  // Reads datagrams until the last STATUS= begins with `prefix`.
  bool AwaitStatus(const std::string& prefix, std::chrono::milliseconds timeout) {
    return AwaitUntil([&] { return LastStatus().rfind(prefix, 0) == 0; }, timeout);
  }
  const std::vector<std::string>& messages() const { return messages_; }
  std::string All() const {
    std::string out;
    for (const std::string& m : messages_) out += m + " | ";
    return out;
  }

 private:
  // Reads datagrams until `done()` (true) or `timeout` passes.
  template <typename Done>
  bool AwaitUntil(Done done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (done()) return true;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      timeval tv{.tv_sec = static_cast<time_t>(left.count() / 1000),
                 .tv_usec = static_cast<suseconds_t>(left.count() % 1000) * 1000};
      ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      char buf[4096];
      ssize_t n = ::recv(fd_, buf, sizeof(buf), 0);
      if (n > 0) messages_.emplace_back(buf, static_cast<size_t>(n));
    }
  }

  std::string path_;
  int fd_ = -1;
  std::vector<std::string> messages_;
  size_t seen_ = 0;
};

class Operations : public Pipeline {
 protected:
  // The agent as systemd starts it: $NOTIFY_SOCKET and $WATCHDOG_USEC set.
  void SpawnUnderSystemd(int64_t watchdog_usec) {
    harness::SpawnOptions o;
    o.argv = {harness::ProgramPath("edgesync"), "run", "--config", config_path()};
    o.stderr_path = dir_ / "agent-0.log";
    o.env = {"NOTIFY_SOCKET=" + notify_path(), "WATCHDOG_USEC=" + std::to_string(watchdog_usec)};
    auto p = Process::Spawn(o);
    ASSERT_TRUE(p.ok()) << p.status().ToString();
    agent_.emplace(std::move(p).value());
  }
  std::string notify_path() const { return dir_ / "notify.sock"; }
};

TEST_F(Operations, TellsSystemdItIsReadyPingsTheWatchdogAndAnswersStatusWhileRunningAndAfter) {
  const std::string metrics = dir_ / "edgesync.prom";
  shutdown_timeout_ = "3s";  // the stop below has Kafka down: it waits this long
  WriteConfig();
  std::ofstream(config_path(), std::ios::app) << "\n[metrics]\ntextfile = \"" << metrics << "\"\ninterval = \"1s\"\n";
  NotifySocket systemd(notify_path());
  SpawnUnderSystemd(4'000'000);
  ASSERT_TRUE(systemd.AwaitMessage("READY=1", 30s)) << systemd.All() << AgentLog(0);
  // Whichever comes first, READY=1 or the first STATUS=, what systemd shows
  // last is the monitor's live text.
  ASSERT_TRUE(systemd.AwaitStatus("mqtt connected", 30s)) << systemd.All();
  ASSERT_TRUE(systemd.AwaitMessage("WATCHDOG=1", 10s)) << systemd.All();
  ASSERT_TRUE(systemd.AwaitMessage("WATCHDOG=1", 10s)) << systemd.All();
  ASSERT_TRUE(AwaitLog(0, "subscribed")) << AgentLog(0);

  StartUnpack();
  auto pub = Connect();
  ASSERT_TRUE(pub);
  constexpr uint64_t kEvents = 120;
  Publish(pub.get(), 1, kEvents);
  ASSERT_EQ(AwaitArrival(kEvents).arrived, kEvents) << AgentLogs();

  // The running agent answers over its socket: per stream, what came in and
  // what Kafka took.
  simdjson::dom::parser parser;
  uint64_t accepted = 0, uploaded = 0;
  CommandResult r;
  EXPECT_TRUE(harness::PollUntil([&] {
    r = RunStatus({"--config", config_path(), "--json"});
    simdjson::dom::element doc;
    if (r.exit_code != 0 || parser.parse(r.out).get(doc) != simdjson::SUCCESS) return false;
    for (simdjson::dom::element s : doc["streams"].get_array()) {
      if (std::string_view(s["name"]) != "payments") continue;
      accepted = uint64_t(s["accepted"]);
      uploaded = uint64_t(s["uploaded_events"]);
    }
    return uploaded == kEvents;
  }, 30s, 200ms)) << r.exit_code << " " << r.out;
  EXPECT_EQ(accepted, kEvents);
  simdjson::dom::element doc = parser.parse(r.out);
  EXPECT_EQ(std::string_view(doc["state"]), "running");
  EXPECT_EQ(std::string_view(doc["mqtt"]["state"]), "connected");
  EXPECT_EQ(std::string_view(doc["kafka"]["state"]), "up");
  EXPECT_TRUE(doc["wedged"].is_null());
  // The id of the device's signing key (16 hex digits), also in the summary.
  const std::string key_id = std::string(std::string_view(doc["device_key"]));
  EXPECT_EQ(key_id.size(), 16u) << r.out;

  // The summary fits an 80-column terminal.
  r = RunStatus({"--config", config_path()});
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("(key " + key_id + ")"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("payments"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("mqtt     connected"), std::string::npos) << r.out;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) EXPECT_LE(line.size(), 80u) << line;

  // The metrics file holds the same counters, rewritten while it runs.
  const std::string want = "edgesync_stream_uploaded_events_total{stream=\"payments\"} " + std::to_string(kEvents);
  EXPECT_TRUE(harness::PollUntil([&] { return harness::ReadWholeFile(metrics).find(want) != std::string::npos; }, 10s))
      << harness::ReadWholeFile(metrics);
  EXPECT_NE(harness::ReadWholeFile(metrics).find("edgesync_mqtt_connected 1"), std::string::npos);

  // Stopping says so; afterwards status reads the store, and says that.
  ASSERT_TRUE(cluster_->AllBrokersDown().ok());
  Publish(pub.get(), kEvents + 1, kEvents + 30);
  ASSERT_TRUE(pub->WaitAcked(30s).ok());
  EXPECT_TRUE(harness::PollUntil([&] {
    r = RunStatus({"--config", config_path(), "--json"});
    simdjson::dom::element d;
    return parser.parse(r.out).get(d) == simdjson::SUCCESS && uint64_t(d["buffered"]["events"]) == 30;
  }, 30s, 200ms)) << r.out;
  ASSERT_TRUE(agent_->Signal(SIGTERM).ok());
  EXPECT_TRUE(systemd.AwaitMessage("STOPPING=1", 10s)) << systemd.All();
  // Kafka is down: the 30 events hold the shutdown for agent.shutdown_timeout
  // (3 s: three of the monitor's ticks).
  EXPECT_TRUE(systemd.AwaitStatus("stopping: sealing and uploading what is open", 10s)) << systemd.All();
  auto code = agent_->Wait(60s);
  ASSERT_TRUE(code.ok());
  agent_.reset();
  r = RunStatus({"--config", config_path(), "--json"});
  EXPECT_EQ(r.exit_code, 3) << r.out;
  doc = parser.parse(r.out);
  EXPECT_EQ(std::string_view(doc["state"]), "not running");
  EXPECT_EQ(uint64_t(doc["buffered"]["events"]), 30u) << r.out;
  EXPECT_EQ(std::string_view(doc["device_key"]), key_id) << "read from its enrolment file: " << r.out;
  r = RunStatus({"--state-dir", dir_ / "state"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_NE(r.out.find("read from the store, read-only"), std::string::npos) << r.out;
}

TEST_F(Operations, AStageWithoutProgressStopsTheWatchdogPingsUntilItMovesAgain) {
  // A plugin that takes 5 s per event wedges the ingest stage; with
  // WATCHDOG_USEC = 2 s the agent counts a stage stuck for 1 s as wedged.
  WriteConfig("", "", "plugins = [\"slow\"]\n");
  std::ofstream(config_path(), std::ios::app) << "\n[plugins]\ndir = \"" << EDGESYNC_TEST_PLUGIN_DIR
                                              << "\"\n[plugins.slow]\ntype = \"external\"\n"
                                                 "file = \"edgesync-test-scripted.so\"\n"
                                                 "settings = { sleep_ms = \"5000\" }\n";
  NotifySocket systemd(notify_path());
  SpawnUnderSystemd(2'000'000);
  ASSERT_TRUE(systemd.AwaitMessage("READY=1", 30s)) << systemd.All() << AgentLog(0);
  ASSERT_TRUE(AwaitLog(0, "subscribed")) << AgentLog(0);
  ASSERT_TRUE(systemd.AwaitMessage("WATCHDOG=1", 10s)) << systemd.All();
  auto pub = Connect();
  ASSERT_TRUE(pub);
  Publish(pub.get(), 1, 1);
  ASSERT_TRUE(systemd.AwaitMessage("STATUS=wedged: ingest: no progress", 15s)) << systemd.All() << AgentLog(0);
  const size_t wedged_at = systemd.messages().size();
  // Once the plugin returns, the pings come back with a healthy status.
  ASSERT_TRUE(systemd.AwaitMessage("STATUS=mqtt connected", 15s)) << systemd.All();
  const std::vector<std::string>& m = systemd.messages();
  size_t pings_while_wedged = 0;
  for (size_t i = wedged_at; i < m.size() && m[i].rfind("STATUS=mqtt", 0) != 0; ++i) {
    pings_while_wedged += m[i] == "WATCHDOG=1";
  }
  // The one ping allowed is the first after the plugin returned (it comes
  // just before the healthy status line); the wedge lasted several ticks.
  EXPECT_LE(pings_while_wedged, 1u) << systemd.All();
  // In the log once when it starts, once when it ends.
  const std::string log = AgentLog(0);
  const size_t first = log.find("watchdog: ingest: no progress");
  EXPECT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("watchdog: ingest: no progress", first + 1), std::string::npos) << log;
  EXPECT_TRUE(AwaitLog(0, "watchdog: every stage makes progress again")) << AgentLog(0);
}

}  // namespace
}  // namespace edgesync::testing

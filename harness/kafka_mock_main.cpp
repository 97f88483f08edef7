// edgesync-kafka-mock: a Kafka-protocol cluster on 127.0.0.1 for tests and the
// demo, built on librdkafka's mock cluster (rdkafka_mock.h), driven by line
// commands on stdin. harness/kafka_cluster.h wraps it for C++ tests.
//
// Protocol. The first line on stdout is `bootstrap=<host:port,...>`. Then each
// command line on stdin gets exactly one reply line, `ok` or `error <reason>`:
//   down ID | down all          broker stops accepting and drops connections
//   up ID | up all              broker accepts connections again
//   topic NAME PARTITIONS       creates a topic (replication min(3, brokers))
//   leader NAME PARTITION ID    moves a partition's leadership to broker ID
//   rtt ID MS | rtt all MS      adds MS of round-trip delay to a broker
//   error APIKEY COUNT CODE     the next COUNT requests of APIKEY (0 Produce,
//                               1 Fetch, 3 Metadata, 22 InitProducerId, ...)
//                               fail with CODE, a numeric rd_kafka_resp_err_t
//   broker-error ID APIKEY COUNT CODE
//                               the same for requests to broker ID only (so a
//                               topic led by ID fails while others flow)
//   clear-errors APIKEY         forgets the pushed errors for APIKEY (not
//                               those of broker-error)
//   broker-errors-left ID APIKEY
//                               replies `ok N`: how many of the errors pushed
//                               by broker-error for broker ID and APIKEY are
//                               still to be served (each request served one)
//   topic-error NAME CODE       metadata reports CODE for topic NAME (0 clears)
//   quit                        exits 0
// Broker ids run from 1 to --brokers. The program exits 0 on `quit`, end of
// stdin, SIGTERM or SIGINT; 2 on a setup failure; CLI11's non-zero code on
// a bad command line.
//
// Facts about the librdkafka 2.0.2 mock cluster (read in its source, checked
// by tests/harness/kafka_cluster_test.cpp):
// - Topics are created automatically, with 4 partitions and replication
//   min(3, brokers), by ANY Metadata request that names a missing topic:
//   the mock implements Metadata v0..v2 only, which has no
//   AllowAutoTopicCreation flag, so the client's `allow.auto.create.topics`
//   is ignored. Producing to a new topic creates it; so does a consumer, or
//   ReadTopic(), looking it up. Create topics up front (`--topic` or `topic`)
//   to choose the partition count; `topic` on an existing topic is an error.
//   `topic-error` also creates the topic it names if it is missing.
// - `down` closes the broker's listener and its connections (clients see
//   connection refused) but does NOT move partition leadership: partitions
//   led by a down broker are unavailable until it is up again (or `leader`
//   moves them). Metadata from the other brokers still names it as leader.
// - Retention: each partition keeps at most 5 MiB and 100,000 message sets
//   and silently drops the oldest beyond that.
// - A consumer with enable.partition.eof gets PARTITION_EOF for empty
//   partitions too, so ReadTopic() ends on topics with empty partitions.
// - Injected Produce errors reach the producer's delivery report unless
//   retriable; TOPIC_AUTHORIZATION_FAILED also makes later produce() calls to
//   that topic fail at once (librdkafka marks the topic), so prefer a
//   per-message error such as MSG_SIZE_TOO_LARGE (10) to fail one batch.
// - `topic-error NAME 29` (TOPIC_AUTHORIZATION_FAILED in Metadata) does not
//   fail a 2.0.2 producer's messages: the client sees the topic with no
//   partitions and holds them until message.timeout.ms. To refuse one
//   topic's produce requests, lead it from its own broker and use
//   `broker-error`.
// - Idempotent sequence numbers are checked for transactional producers
//   only. With several produce requests in flight, a later one is appended
//   while an earlier one gets an injected error; the client then takes the
//   earlier messages as delivered (a later sequence was acknowledged), and
//   they are lost. Tests that inject produce errors or move leaders while
//   messages flow set max.in.flight.requests.per.connection=1.
// - The cluster lives in this process only: nothing survives `quit`.
#include <poll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

constexpr int kDefaultPartitions = 3;

std::optional<long> ParseInt(const std::string& s, long min, long max) {
  long v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v < min || v > max) return std::nullopt;
  return v;
}

class MockCommands {
 public:
  MockCommands(rd_kafka_mock_cluster_t* cluster, int brokers)
      : cluster_(cluster), brokers_(brokers) {}

  // The reply line for one command line; sets *quit on `quit`.
  std::string Handle(const std::string& line, bool* quit) {
    std::istringstream in(line);
    std::vector<std::string> w;
    for (std::string word; in >> word;) w.push_back(word);
    if (w.empty()) return "error empty command";
    const std::string& cmd = w[0];
    if (cmd == "quit" && w.size() == 1) {
      *quit = true;
      return "ok";
    }
    if ((cmd == "down" || cmd == "up") && w.size() == 2) {
      std::optional<int32_t> id = BrokerId(w[1]);
      if (!id) return "error bad broker id " + w[1];
      return Reply(cmd == "down" ? rd_kafka_mock_broker_set_down(cluster_, *id)
                                 : rd_kafka_mock_broker_set_up(cluster_, *id));
    }
    if (cmd == "rtt" && w.size() == 3) {
      std::optional<int32_t> id = BrokerId(w[1]);
      std::optional<long> ms = ParseInt(w[2], 0, 3600 * 1000);
      if (!id || !ms) return "error usage: rtt ID|all MS";
      return Reply(rd_kafka_mock_broker_set_rtt(cluster_, *id, static_cast<int>(*ms)));
    }
    if (cmd == "topic" && w.size() == 3) {
      std::optional<long> parts = ParseInt(w[2], 1, 100000);
      if (!parts) return "error bad partition count " + w[2];
      return CreateTopic(w[1], static_cast<int>(*parts));
    }
    if (cmd == "leader" && w.size() == 4) {
      std::optional<long> part = ParseInt(w[2], 0, 100000);
      std::optional<int32_t> id = BrokerId(w[3]);
      if (!part || !id || *id == -1) return "error usage: leader NAME PARTITION ID";
      return Reply(rd_kafka_mock_partition_set_leader(cluster_, w[1].c_str(),
                                                      static_cast<int32_t>(*part), *id));
    }
    if (cmd == "error" && w.size() == 4) {
      std::optional<long> api = ParseInt(w[1], 0, INT16_MAX);
      std::optional<long> count = ParseInt(w[2], 1, 1000000);
      std::optional<long> code = ParseInt(w[3], INT32_MIN, INT32_MAX);
      if (!api || !count || !code) return "error usage: error APIKEY COUNT CODE";
      std::vector<rd_kafka_resp_err_t> errs(static_cast<size_t>(*count),
                                            static_cast<rd_kafka_resp_err_t>(*code));
      rd_kafka_mock_push_request_errors_array(cluster_, static_cast<int16_t>(*api), errs.size(),
                                              errs.data());
      return "ok";
    }
    if (cmd == "broker-error" && w.size() == 5) {
      std::optional<int32_t> id = BrokerId(w[1]);
      std::optional<long> api = ParseInt(w[2], 0, INT16_MAX);
      std::optional<long> count = ParseInt(w[3], 1, 1000000);
      std::optional<long> code = ParseInt(w[4], INT32_MIN, INT32_MAX);
      if (!id || *id == -1 || !api || !count || !code) {
        return "error usage: broker-error ID APIKEY COUNT CODE";
      }
      for (long i = 0; i < *count; ++i) {
        rd_kafka_resp_err_t err = rd_kafka_mock_broker_push_request_error_rtts(
            cluster_, *id, static_cast<int16_t>(*api), 1,
            static_cast<rd_kafka_resp_err_t>(*code), 0);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return Reply(err);
      }
      return "ok";
    }
    if (cmd == "broker-errors-left" && w.size() == 3) {
      std::optional<int32_t> id = BrokerId(w[1]);
      std::optional<long> api = ParseInt(w[2], 0, INT16_MAX);
      if (!id || *id == -1 || !api) return "error usage: broker-errors-left ID APIKEY";
      size_t left = 0;
      rd_kafka_resp_err_t err =
          rd_kafka_mock_broker_error_stack_cnt(cluster_, *id, static_cast<int16_t>(*api), &left);
      if (err != RD_KAFKA_RESP_ERR_NO_ERROR) return Reply(err);
      return "ok " + std::to_string(left);
    }
    if (cmd == "clear-errors" && w.size() == 2) {
      std::optional<long> api = ParseInt(w[1], 0, INT16_MAX);
      if (!api) return "error usage: clear-errors APIKEY";
      rd_kafka_mock_clear_request_errors(cluster_, static_cast<int16_t>(*api));
      return "ok";
    }
    if (cmd == "topic-error" && w.size() == 3) {
      std::optional<long> code = ParseInt(w[2], INT32_MIN, INT32_MAX);
      if (!code) return "error usage: topic-error NAME CODE";
      rd_kafka_mock_topic_set_error(cluster_, w[1].c_str(),
                                    static_cast<rd_kafka_resp_err_t>(*code));
      return "ok";
    }
    return "error unknown command or wrong arguments: " + line;
  }

  std::string CreateTopic(const std::string& name, int partitions) {
    if (name.empty()) return "error empty topic name";
    return Reply(rd_kafka_mock_topic_create(cluster_, name.c_str(), partitions,
                                            std::min(3, brokers_)));
  }

 private:
  // 1..brokers, or "all" (-1 for librdkafka).
  std::optional<int32_t> BrokerId(const std::string& s) const {
    if (s == "all") return -1;
    std::optional<long> id = ParseInt(s, 1, brokers_);
    if (!id) return std::nullopt;
    return static_cast<int32_t>(*id);
  }

  static std::string Reply(rd_kafka_resp_err_t err) {
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR) return "ok";
    return std::string("error ") + rd_kafka_err2name(err) + ": " + rd_kafka_err2str(err);
  }

  rd_kafka_mock_cluster_t* cluster_;
  int brokers_;
};

bool WriteLine(const std::string& line) {
  std::string out = line + "\n";
  return std::fwrite(out.data(), 1, out.size(), stdout) == out.size() && std::fflush(stdout) == 0;
}

// Serves stdin until quit, EOF, or SIGTERM/SIGINT arrive on `sigfd`.
void Serve(MockCommands& commands, int sigfd) {
  std::string buf;
  for (;;) {
    pollfd fds[2] = {{STDIN_FILENO, POLLIN, 0}, {sigfd, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents != 0) return;
    if (fds[0].revents == 0) continue;
    char chunk[4096];
    ssize_t n = ::read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    buf.append(chunk, static_cast<size_t>(n));
    for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
      std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.find_first_not_of(" \t") == std::string::npos) continue;
      bool quit = false;
      if (!WriteLine(commands.Handle(line, &quit)) || quit) return;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Kafka-protocol mock cluster on 127.0.0.1 (librdkafka), driven by stdin commands"};
  int brokers = 3;
  std::vector<std::string> topics;
  std::string debug;
  app.add_option("--brokers", brokers, "number of brokers, ids 1..N")
      ->check(CLI::Range(1, 32))
      ->capture_default_str();
  app.add_option("--topic", topics,
                 "NAME[:PARTITIONS] to create at start (repeatable; default 3 partitions)");
  app.add_option("--debug", debug, "librdkafka debug contexts for the cluster, e.g. mock,broker");
  CLI11_PARSE(app, argc, argv);

  // Blocked before librdkafka starts its threads, so they inherit the mask
  // and the signals reach only the signalfd.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  int sigfd = ::signalfd(-1, &stop_signals, SFD_CLOEXEC);
  if (sigfd < 0) {
    std::fprintf(stderr, "edgesync-kafka-mock: signalfd: %s\n", std::strerror(errno));
    return 2;
  }

  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "client.id", "edgesync-kafka-mock", errstr, sizeof(errstr));
  // Warnings and worse only: the hosting handle has no bootstrap.servers,
  // which librdkafka would otherwise point out at notice level.
  rd_kafka_conf_set(conf, "log_level", "4", errstr, sizeof(errstr));
  if (!debug.empty() &&
      rd_kafka_conf_set(conf, "debug", debug.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
    std::fprintf(stderr, "edgesync-kafka-mock: --debug: %s\n", errstr);
    rd_kafka_conf_destroy(conf);
    return 2;
  }
  // The handle only hosts the mock cluster (its thread and bookkeeping); it
  // never connects anywhere itself.
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    std::fprintf(stderr, "edgesync-kafka-mock: rd_kafka_new: %s\n", errstr);
    return 2;
  }
  rd_kafka_mock_cluster_t* cluster = rd_kafka_mock_cluster_new(rk, brokers);
  if (cluster == nullptr) {
    std::fprintf(stderr, "edgesync-kafka-mock: cannot create the mock cluster\n");
    rd_kafka_destroy(rk);
    return 2;
  }

  MockCommands commands(cluster, brokers);
  int rc = 0;
  for (const std::string& spec : topics) {
    size_t colon = spec.rfind(':');
    std::string name = spec.substr(0, colon);
    int partitions = kDefaultPartitions;
    if (colon != std::string::npos) {
      std::optional<long> p = ParseInt(spec.substr(colon + 1), 1, 100000);
      if (!p) {
        std::fprintf(stderr, "edgesync-kafka-mock: bad --topic %s\n", spec.c_str());
        rc = 2;
        break;
      }
      partitions = static_cast<int>(*p);
    }
    std::string reply = commands.CreateTopic(name, partitions);
    if (reply != "ok") {
      std::fprintf(stderr, "edgesync-kafka-mock: --topic %s: %s\n", spec.c_str(), reply.c_str());
      rc = 2;
      break;
    }
  }

  if (rc == 0 && WriteLine(std::string("bootstrap=") + rd_kafka_mock_cluster_bootstraps(cluster))) {
    Serve(commands, sigfd);
  }

  rd_kafka_mock_cluster_destroy(cluster);
  rd_kafka_destroy(rk);
  ::close(sigfd);
  return rc;
}

// KafkaCluster: one command line out, one reply line back, with a deadline.
#include "harness/kafka_cluster.h"

#include <charconv>

namespace edgesync::harness {
namespace {

constexpr std::chrono::seconds kStartTimeout(30);
constexpr std::chrono::seconds kReplyTimeout(10);
constexpr const char kBootstrapPrefix[] = "bootstrap=";

}  // namespace

Result<std::unique_ptr<KafkaCluster>> KafkaCluster::Start(
    int brokers, std::vector<std::pair<std::string, int>> topics) {
  if (brokers < 1) return Status::InvalidArgument("KafkaCluster needs at least one broker");
  SpawnOptions so;
  so.argv = {ProgramPath("edgesync-kafka-mock"), "--brokers", std::to_string(brokers)};
  for (const auto& [name, partitions] : topics) {
    so.argv.push_back("--topic");
    so.argv.push_back(name + ":" + std::to_string(partitions));
  }
  so.pipe_stdin = true;
  so.pipe_stdout = true;
  Result<Process> p = Process::Spawn(so);
  if (!p.ok()) return p.status();
  std::unique_ptr<KafkaCluster> cluster(new KafkaCluster(std::move(p.value()), brokers));

  Result<std::string> line = cluster->process_.ReadLine(kStartTimeout);
  if (!line.ok() || line->rfind(kBootstrapPrefix, 0) != 0) {
    Status why = line.ok() ? Status::Unavailable("unexpected first line: " + *line) : line.status();
    (void)cluster->process_.Stop(std::chrono::seconds(2));
    return Status::Unavailable("edgesync-kafka-mock did not start (exit status " +
                               std::to_string(cluster->process_.exit_status().value_or(-1)) +
                               "): " + why.ToString());
  }
  cluster->bootstrap_ = line->substr(sizeof(kBootstrapPrefix) - 1);
  return cluster;
}

KafkaCluster::~KafkaCluster() { (void)Stop(); }

Status KafkaCluster::Command(const std::string& line) {
  Result<std::string> value = Query(line);
  if (!value.ok()) return value.status();
  if (!value->empty()) return Status::Unavailable("unexpected reply to '" + line + "': ok " + *value);
  return Status::OK();
}

Result<std::string> KafkaCluster::Query(const std::string& line) {
  if (stopped_) return Status::Unavailable("the Kafka mock cluster was stopped");
  if (line.find('\n') != std::string::npos) {
    return Status::InvalidArgument("a command is one line");
  }
  Status w = process_.WriteStdin(line + "\n");
  if (!w.ok()) return Status::Unavailable("edgesync-kafka-mock is gone: " + w.ToString());
  Result<std::string> reply = process_.ReadLine(kReplyTimeout);
  if (!reply.ok()) {
    return Status::Unavailable("no reply from edgesync-kafka-mock to '" + line +
                               "': " + reply.status().ToString());
  }
  if (*reply == "ok") return std::string();
  if (reply->rfind("ok ", 0) == 0) return reply->substr(3);
  if (reply->rfind("error ", 0) == 0) {
    return Status::InvalidArgument("'" + line + "': " + reply->substr(6));
  }
  return Status::Unavailable("unexpected reply to '" + line + "': " + *reply);
}

Status KafkaCluster::BrokerDown(int id) { return Command("down " + std::to_string(id)); }
Status KafkaCluster::BrokerUp(int id) { return Command("up " + std::to_string(id)); }
Status KafkaCluster::AllBrokersDown() { return Command("down all"); }
Status KafkaCluster::AllBrokersUp() { return Command("up all"); }

Status KafkaCluster::CreateTopic(const std::string& name, int partitions) {
  return Command("topic " + name + " " + std::to_string(partitions));
}

Status KafkaCluster::SetLeader(const std::string& topic, int partition, int broker_id) {
  return Command("leader " + topic + " " + std::to_string(partition) + " " +
                 std::to_string(broker_id));
}

Status KafkaCluster::SetRtt(int id, int ms) {
  return Command("rtt " + std::to_string(id) + " " + std::to_string(ms));
}

Status KafkaCluster::PushRequestErrors(int api_key, int count, int code) {
  return Command("error " + std::to_string(api_key) + " " + std::to_string(count) + " " +
                 std::to_string(code));
}

Status KafkaCluster::PushBrokerErrors(int id, int api_key, int count, int code) {
  return Command("broker-error " + std::to_string(id) + " " + std::to_string(api_key) + " " +
                 std::to_string(count) + " " + std::to_string(code));
}

Result<size_t> KafkaCluster::BrokerErrorsLeft(int id, int api_key) {
  Result<std::string> value = Query("broker-errors-left " + std::to_string(id) + " " + std::to_string(api_key));
  if (!value.ok()) return value.status();
  size_t n = 0;
  auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
  if (ec != std::errc() || end != value->data() + value->size()) {
    return Status::Unavailable("broker-errors-left: not a count: " + *value);
  }
  return n;
}

Status KafkaCluster::SetTopicError(const std::string& topic, int code) {
  return Command("topic-error " + topic + " " + std::to_string(code));
}

Status KafkaCluster::Stop() {
  if (stopped_) return Status::OK();
  stopped_ = true;
  if (!process_.Running()) return Status::OK();
  if (process_.WriteStdin("quit\n").ok() && process_.Wait(std::chrono::seconds(10)).ok()) {
    return Status::OK();
  }
  return process_.Stop(std::chrono::seconds(5));
}

}  // namespace edgesync::harness

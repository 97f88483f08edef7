// KafkaCluster: the edgesync-kafka-mock program (a librdkafka mock cluster on
// 127.0.0.1) as a child process, driven from C++ tests. See
// harness/kafka_mock_main.cpp for the line protocol and for what the mock
// does and does not do (auto-created topics get 4 partitions; a broker that
// is down keeps its partitions' leadership; bounded retention).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "base/status.h"
#include "harness/process.h"

namespace edgesync::harness {

// Not thread-safe: one test thread drives it.
class KafkaCluster {
 public:
  // Spawns ProgramPath("edgesync-kafka-mock") with `brokers` brokers and the
  // given (topic, partitions) created, and reads its bootstrap line.
  static Result<std::unique_ptr<KafkaCluster>> Start(
      int brokers = 3, std::vector<std::pair<std::string, int>> topics = {});
  ~KafkaCluster();  // Stop()

  KafkaCluster(const KafkaCluster&) = delete;
  KafkaCluster& operator=(const KafkaCluster&) = delete;

  // "127.0.0.1:port,127.0.0.1:port,..." for bootstrap.servers.
  const std::string& bootstrap() const { return bootstrap_; }
  int brokers() const { return brokers_; }

  // Broker ids are 1..brokers().
  Status BrokerDown(int id);
  Status BrokerUp(int id);
  Status AllBrokersDown();
  Status AllBrokersUp();
  Status CreateTopic(const std::string& name, int partitions);
  Status SetLeader(const std::string& topic, int partition, int broker_id);
  Status SetRtt(int id, int ms);
  // The next `count` requests with `api_key` (0 Produce, 1 Fetch, 3 Metadata)
  // fail with `code`, a numeric rd_kafka_resp_err_t.
  Status PushRequestErrors(int api_key, int count, int code);
  // The same for requests to broker `id` only.
  Status PushBrokerErrors(int id, int api_key, int count, int code);
  // How many of the errors PushBrokerErrors gave broker `id` for `api_key`
  // are still to be served: each request the broker answers takes one.
  Result<size_t> BrokerErrorsLeft(int id, int api_key);
  // Metadata reports `code` for `topic` (0 clears it).
  Status SetTopicError(const std::string& topic, int code);
  // Sends one command line (without '\n'); OK when the reply is "ok",
  // InvalidArgument carrying the reason when it is "error <reason>",
  // Unavailable when the program does not answer within 10 s or is gone.
  Status Command(const std::string& line);
  // The same for a command whose reply is `ok VALUE`: VALUE.
  Result<std::string> Query(const std::string& line);
  // Asks the program to quit and waits; kills it if it does not. OK when it
  // is not running.
  Status Stop();

 private:
  KafkaCluster(Process process, int brokers)
      : process_(std::move(process)), brokers_(brokers) {}

  Process process_;
  int brokers_;
  std::string bootstrap_;
  bool stopped_ = false;
};

}  // namespace edgesync::harness

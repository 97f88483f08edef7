// edgesync-kafka-mock through KafkaCluster, with a plain librdkafka producer
// on one side and ReadTopic on the other. Also pins the mock cluster facts
// the harness documents (auto-created topics, broker down, partition EOF).
#include "harness/kafka_cluster.h"

#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>

#include <map>
#include <set>

#include "harness/consumer.h"

namespace edgesync::harness {
namespace {

using std::chrono::seconds;

// A librdkafka producer recording its delivery reports.
class TestProducer {
 public:
  explicit TestProducer(const std::string& bootstrap,
                        const std::map<std::string, std::string>& extra = {}) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    std::map<std::string, std::string> settings = {{"bootstrap.servers", bootstrap},
                                                   {"acks", "all"},
                                                   {"linger.ms", "5"}};
    for (const auto& [k, v] : extra) settings[k] = v;
    for (const auto& [k, v] : settings) {
      EXPECT_EQ(rd_kafka_conf_set(conf, k.c_str(), v.c_str(), errstr, sizeof(errstr)),
                RD_KAFKA_CONF_OK) << k << ": " << errstr;
    }
    rd_kafka_conf_set_opaque(conf, this);
    rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* self) {
      static_cast<TestProducer*>(self)->reports_.push_back(m->err);
    });
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    EXPECT_NE(rk_, nullptr) << errstr;
  }
  ~TestProducer() {
    if (rk_ != nullptr) {
      rd_kafka_purge(rk_, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
      rd_kafka_flush(rk_, 5000);
      rd_kafka_destroy(rk_);
    }
  }

  void Produce(const std::string& topic, const std::string& key, const std::string& value,
               int32_t partition = RD_KAFKA_PARTITION_UA, const std::string& header = "") {
    rd_kafka_headers_t* hdrs = rd_kafka_headers_new(1);
    if (!header.empty()) rd_kafka_header_add(hdrs, "h", -1, header.data(), static_cast<ssize_t>(header.size()));
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
        RD_KAFKA_V_KEY(key.data(), key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    ASSERT_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR) << rd_kafka_err2str(err);
  }
  // OK when every produced message got its delivery report within `ms`.
  bool Flush(int ms) { return rd_kafka_flush(rk_, ms) == RD_KAFKA_RESP_ERR_NO_ERROR; }
  const std::vector<rd_kafka_resp_err_t>& reports() const { return reports_; }
  size_t delivered() const {
    return static_cast<size_t>(std::count(reports_.begin(), reports_.end(), RD_KAFKA_RESP_ERR_NO_ERROR));
  }
  int PartitionCount(const std::string& topic) {
    rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk_, topic.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    int n = -1;
    if (rd_kafka_metadata(rk_, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR &&
        md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
      n = md->topics[0].partition_cnt;
    }
    if (md != nullptr) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return n;
  }

 private:
  rd_kafka_t* rk_ = nullptr;
  std::vector<rd_kafka_resp_err_t> reports_;
};

std::unique_ptr<KafkaCluster> StartCluster(int brokers,
                                           std::vector<std::pair<std::string, int>> topics) {
  Result<std::unique_ptr<KafkaCluster>> c = KafkaCluster::Start(brokers, std::move(topics));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  return c.ok() ? std::move(c.value()) : nullptr;
}

TEST(KafkaClusterTest, ProducedMessagesReadBackWithKeysAndHeaders) {
  auto cluster = StartCluster(3, {{"events", 3}});
  ASSERT_NE(cluster, nullptr);
  EXPECT_EQ(std::count(cluster->bootstrap().begin(), cluster->bootstrap().end(), ','), 2);
  EXPECT_EQ(cluster->bootstrap().rfind("127.0.0.1:", 0), 0u);

  TestProducer producer(cluster->bootstrap());
  for (int i = 0; i < 30; ++i) {
    producer.Produce("events", "key-" + std::to_string(i), "value-" + std::to_string(i),
                     RD_KAFKA_PARTITION_UA, "hdr-" + std::to_string(i));
  }
  ASSERT_TRUE(producer.Flush(30000));
  ASSERT_EQ(producer.delivered(), 30u);

  Result<std::vector<KafkaMessage>> msgs = ReadTopic(cluster->bootstrap(), "events", seconds(30));
  ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
  ASSERT_EQ(msgs->size(), 30u);
  std::set<std::string> values;
  std::map<int32_t, int64_t> next_offset;
  for (const KafkaMessage& m : *msgs) {
    EXPECT_EQ(m.topic, "events");
    ASSERT_GE(m.partition, 0);
    ASSERT_LT(m.partition, 3);
    EXPECT_EQ(m.offset, next_offset[m.partition]++);  // from 0, no holes, in order
    std::string n = m.key.substr(4);
    EXPECT_EQ(m.value, "value-" + n);
    ASSERT_EQ(m.headers.size(), 1u);
    EXPECT_EQ(m.headers[0], (std::pair<std::string, std::string>("h", "hdr-" + n)));
    values.insert(m.value);
  }
  EXPECT_EQ(values.size(), 30u);
  EXPECT_TRUE(cluster->Stop().ok());
}

TEST(KafkaClusterTest, EmptyPartitionsReachTheirEndToo) {
  auto cluster = StartCluster(2, {{"sparse", 4}, {"empty", 2}});
  ASSERT_NE(cluster, nullptr);
  TestProducer producer(cluster->bootstrap());
  producer.Produce("sparse", "k", "only", /*partition=*/2);
  ASSERT_TRUE(producer.Flush(30000));
  ASSERT_EQ(producer.delivered(), 1u);

  Result<std::vector<KafkaMessage>> sparse = ReadTopic(cluster->bootstrap(), "sparse", seconds(30));
  ASSERT_TRUE(sparse.ok()) << sparse.status().ToString();
  ASSERT_EQ(sparse->size(), 1u);
  EXPECT_EQ((*sparse)[0].partition, 2);
  EXPECT_EQ((*sparse)[0].value, "only");
  EXPECT_TRUE((*sparse)[0].headers.empty());

  Result<std::vector<KafkaMessage>> empty = ReadTopic(cluster->bootstrap(), "empty", seconds(30));
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->empty());
}

TEST(KafkaClusterTest, AnyLookupAutoCreatesTopicsWithFourPartitions) {
  auto cluster = StartCluster(3, {});
  ASSERT_NE(cluster, nullptr);
  // A producer creates the topic it produces to...
  TestProducer producer(cluster->bootstrap());
  producer.Produce("made-by-producer", "k", "v");
  ASSERT_TRUE(producer.Flush(30000));
  ASSERT_EQ(producer.delivered(), 1u);
  EXPECT_EQ(producer.PartitionCount("made-by-producer"), 4);
  // ...and so does a reader looking one up (the mock's Metadata API has no
  // AllowAutoTopicCreation flag): it finds the new topic empty.
  Result<std::vector<KafkaMessage>> read = ReadTopic(cluster->bootstrap(), "made-by-reader", seconds(30));
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(read->empty());
  EXPECT_EQ(producer.PartitionCount("made-by-reader"), 4);
  // An explicitly created topic keeps its own partition count.
  ASSERT_TRUE(cluster->CreateTopic("made-by-command", 2).ok());
  EXPECT_EQ(producer.PartitionCount("made-by-command"), 2);
}

TEST(KafkaClusterTest, NothingIsDeliveredWhileAllBrokersAreDown) {
  auto cluster = StartCluster(3, {{"outage", 3}});
  ASSERT_NE(cluster, nullptr);
  TestProducer producer(cluster->bootstrap());
  producer.Produce("outage", "before", "before");
  ASSERT_TRUE(producer.Flush(30000));  // connected, metadata known
  ASSERT_EQ(producer.delivered(), 1u);

  ASSERT_TRUE(cluster->AllBrokersDown().ok());
  for (int i = 0; i < 5; ++i) producer.Produce("outage", "k" + std::to_string(i), "during-" + std::to_string(i));
  EXPECT_FALSE(producer.Flush(1500));  // still queued: no broker accepts connections
  EXPECT_EQ(producer.reports().size(), 1u);

  ASSERT_TRUE(cluster->AllBrokersUp().ok());
  ASSERT_TRUE(producer.Flush(60000));
  EXPECT_EQ(producer.delivered(), 6u);
  Result<std::vector<KafkaMessage>> msgs = ReadTopic(cluster->bootstrap(), "outage", seconds(30));
  ASSERT_TRUE(msgs.ok()) << msgs.status().ToString();
  EXPECT_EQ(msgs->size(), 6u);
}

TEST(KafkaClusterTest, ReadTopicTimesOutWhileALeaderIsDown) {
  auto cluster = StartCluster(1, {{"stuck", 1}});
  ASSERT_NE(cluster, nullptr);
  ASSERT_TRUE(cluster->BrokerDown(1).ok());
  Result<std::vector<KafkaMessage>> msgs =
      ReadTopic(cluster->bootstrap(), "stuck", std::chrono::milliseconds(1500));
  EXPECT_EQ(msgs.status().code(), Status::Code::kUnavailable);
  ASSERT_TRUE(cluster->BrokerUp(1).ok());
  msgs = ReadTopic(cluster->bootstrap(), "stuck", seconds(30));
  EXPECT_TRUE(msgs.ok()) << msgs.status().ToString();
}

TEST(KafkaClusterTest, InjectedProduceErrorReachesTheDeliveryReport) {
  auto cluster = StartCluster(1, {{"guarded", 1}});
  ASSERT_NE(cluster, nullptr);
  TestProducer producer(cluster->bootstrap());
  producer.Produce("guarded", "k", "warm-up");
  ASSERT_TRUE(producer.Flush(30000));
  // MSG_SIZE_TOO_LARGE is permanent for the message: no retry hides it.
  // (TOPIC_AUTHORIZATION_FAILED would also fail later produce() calls: the
  // client marks the whole topic as failed until its next metadata refresh.)
  ASSERT_TRUE(cluster->PushRequestErrors(/*Produce=*/0, 1, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE).ok());
  producer.Produce("guarded", "k", "refused");
  ASSERT_TRUE(producer.Flush(30000));
  producer.Produce("guarded", "k", "accepted");
  ASSERT_TRUE(producer.Flush(30000));
  ASSERT_EQ(producer.reports().size(), 3u);
  EXPECT_EQ(producer.reports()[0], RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(producer.reports()[1], RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  EXPECT_EQ(producer.reports()[2], RD_KAFKA_RESP_ERR_NO_ERROR);
}

TEST(KafkaClusterTest, BrokerErrorsLeftCountsWhatIsStillToBeServed) {
  auto cluster = StartCluster(2, {{"guarded", 1}});
  ASSERT_NE(cluster, nullptr);
  ASSERT_TRUE(cluster->SetLeader("guarded", 0, 2).ok());
  EXPECT_EQ(*cluster->BrokerErrorsLeft(2, /*Produce=*/0), 0u);
  ASSERT_TRUE(cluster->PushBrokerErrors(2, /*Produce=*/0, 2, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE).ok());
  EXPECT_EQ(*cluster->BrokerErrorsLeft(2, 0), 2u);
  EXPECT_EQ(*cluster->BrokerErrorsLeft(1, 0), 0u) << "per broker";
  TestProducer producer(cluster->bootstrap());
  producer.Produce("guarded", "k", "refused");
  ASSERT_TRUE(producer.Flush(30000));
  EXPECT_EQ(*cluster->BrokerErrorsLeft(2, 0), 1u);
  producer.Produce("guarded", "k", "refused too");
  ASSERT_TRUE(producer.Flush(30000));
  producer.Produce("guarded", "k", "accepted");
  ASSERT_TRUE(producer.Flush(30000));
  EXPECT_EQ(*cluster->BrokerErrorsLeft(2, 0), 0u);
  ASSERT_EQ(producer.reports().size(), 3u);
  EXPECT_EQ(producer.reports()[0], RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
  EXPECT_EQ(producer.reports()[2], RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(cluster->BrokerErrorsLeft(3, 0).status().code(), Status::Code::kInvalidArgument);
}

TEST(KafkaClusterTest, BadCommandsAreErrorsAndStopIsFinal) {
  auto cluster = StartCluster(2, {{"t", 1}});
  ASSERT_NE(cluster, nullptr);
  EXPECT_EQ(cluster->Command("bogus").code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(cluster->BrokerDown(3).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(cluster->BrokerDown(0).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(cluster->CreateTopic("t", 2).code(), Status::Code::kInvalidArgument);  // exists
  EXPECT_TRUE(cluster->CreateTopic("t2", 2).ok());
  EXPECT_TRUE(cluster->SetRtt(2, 5).ok());
  EXPECT_TRUE(cluster->SetLeader("t2", 1, 2).ok());
  EXPECT_TRUE(cluster->SetTopicError("t2", 0).ok());
  EXPECT_EQ(cluster->Command("down 1\ndown 2").code(), Status::Code::kInvalidArgument);

  std::string first = cluster->bootstrap().substr(0, cluster->bootstrap().find(','));
  int port = std::stoi(first.substr(first.rfind(':') + 1));
  ASSERT_TRUE(WaitForTcp("127.0.0.1", port, seconds(5)).ok());
  ASSERT_TRUE(cluster->Stop().ok());
  EXPECT_EQ(WaitForTcp("127.0.0.1", port, std::chrono::milliseconds(100)).code(),
            Status::Code::kUnavailable);
  EXPECT_EQ(cluster->Command("up 1").code(), Status::Code::kUnavailable);
  EXPECT_TRUE(cluster->Stop().ok());
}

}  // namespace
}  // namespace edgesync::harness

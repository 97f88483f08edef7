// ReadTopic: a librdkafka consumer with a throw-away group id (librdkafka
// needs one for assign() and consumer_poll(); no group is joined and nothing
// is committed), partition EOF events to know where the end is.
// allow.auto.create.topics keeps its consumer default (false); setting it
// explicitly only makes librdkafka warn against brokers without Metadata v4,
// such as the 2.0.2 mock.
#include "harness/consumer.h"

#include <librdkafka/rdkafka.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <set>

namespace edgesync::harness {
namespace {

using Clock = std::chrono::steady_clock;

struct KafkaDeleter {
  void operator()(rd_kafka_t* rk) const {
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
  }
  void operator()(rd_kafka_topic_t* rkt) const { rd_kafka_topic_destroy(rkt); }
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
  void operator()(const rd_kafka_metadata_t* md) const { rd_kafka_metadata_destroy(md); }
};

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1000));
}

std::string Str(const void* p, size_t n) {
  return p == nullptr ? std::string() : std::string(static_cast<const char*>(p), n);
}

// The partition count of `topic`, retrying while the cluster is unreachable.
Result<int> PartitionCount(rd_kafka_t* rk, const std::string& topic, Clock::time_point deadline) {
  std::unique_ptr<rd_kafka_topic_t, KafkaDeleter> rkt(rd_kafka_topic_new(rk, topic.c_str(), nullptr));
  if (!rkt) return Status::InvalidArgument("bad topic name " + topic);
  std::string last = "no metadata request completed";
  while (Clock::now() < deadline) {
    const rd_kafka_metadata_t* raw = nullptr;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt.get(), &raw, std::max(RemainingMs(deadline), 1));
    std::unique_ptr<const rd_kafka_metadata_t, KafkaDeleter> md(raw);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md && md->topic_cnt == 1) {
      const rd_kafka_metadata_topic_t& t = md->topics[0];
      if (t.err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART) {
        return Status::NotFound("topic " + topic + " does not exist");
      }
      if (t.err == RD_KAFKA_RESP_ERR_NO_ERROR && t.partition_cnt > 0) return t.partition_cnt;
      last = rd_kafka_err2str(t.err);
    } else if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      last = rd_kafka_err2str(err);
    }
  }
  return Status::Unavailable("metadata of " + topic + ": " + last);
}

}  // namespace

Result<std::vector<KafkaMessage>> ReadTopic(const std::string& bootstrap, const std::string& topic,
                                            std::chrono::milliseconds timeout) {
  static std::atomic<int> reader_count{0};
  Clock::time_point deadline = Clock::now() + timeout;
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::string group = "edgesync-harness-read-" + std::to_string(::getpid()) + "-" +
                      std::to_string(reader_count.fetch_add(1));
  const std::pair<const char*, std::string> settings[] = {
      {"bootstrap.servers", bootstrap},
      {"group.id", group},
      {"enable.partition.eof", "true"},
      {"enable.auto.commit", "false"},
      {"enable.auto.offset.store", "false"},
      {"auto.offset.reset", "earliest"},
  };
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name, value.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status::InvalidArgument(std::string(name) + ": " + errstr);
    }
  }
  rd_kafka_t* raw = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
  if (raw == nullptr) return Status::InvalidArgument(std::string("rd_kafka_new: ") + errstr);
  std::unique_ptr<rd_kafka_t, KafkaDeleter> rk(raw);

  Result<int> partitions = PartitionCount(rk.get(), topic, deadline);
  if (!partitions.ok()) return partitions.status();

  std::unique_ptr<rd_kafka_topic_partition_list_t, KafkaDeleter> assignment(
      rd_kafka_topic_partition_list_new(*partitions));
  for (int32_t p = 0; p < *partitions; ++p) {
    rd_kafka_topic_partition_list_add(assignment.get(), topic.c_str(), p)->offset =
        RD_KAFKA_OFFSET_BEGINNING;
  }
  if (rd_kafka_resp_err_t err = rd_kafka_assign(rk.get(), assignment.get()); err) {
    return Status::Unavailable(std::string("assign: ") + rd_kafka_err2str(err));
  }

  std::vector<KafkaMessage> out;
  std::set<int32_t> at_end;
  std::string last_error;
  while (static_cast<int>(at_end.size()) < *partitions) {
    int wait_ms = RemainingMs(deadline);
    if (wait_ms == 0) {
      return Status::Unavailable(std::to_string(at_end.size()) + " of " +
                                 std::to_string(*partitions) + " partitions of " + topic +
                                 " reached their end within " + std::to_string(timeout.count()) +
                                 " ms" + (last_error.empty() ? "" : "; last error: " + last_error));
    }
    std::unique_ptr<rd_kafka_message_t, KafkaDeleter> m(rd_kafka_consumer_poll(rk.get(), wait_ms));
    if (!m) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      at_end.insert(m->partition);
      continue;
    }
    if (m->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
        m->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
      return Status::NotFound("topic " + topic + ": " + rd_kafka_message_errstr(m.get()));
    }
    if (m->err) {
      // Transport and leader errors: librdkafka retries by itself.
      last_error = rd_kafka_message_errstr(m.get());
      continue;
    }
    KafkaMessage msg;
    msg.topic = topic;
    msg.partition = m->partition;
    msg.offset = m->offset;
    msg.key = Str(m->key, m->key_len);
    msg.value = Str(m->payload, m->len);
    rd_kafka_headers_t* hdrs = nullptr;
    if (rd_kafka_message_headers(m.get(), &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR) {
      const char* name;
      const void* value;
      size_t size;
      for (size_t i = 0; rd_kafka_header_get_all(hdrs, i, &name, &value, &size) ==
                         RD_KAFKA_RESP_ERR_NO_ERROR;
           ++i) {
        msg.headers.emplace_back(name, Str(value, size));
      }
    }
    at_end.erase(msg.partition);  // more arrived after its EOF: wait for the next one
    out.push_back(std::move(msg));
  }
  std::sort(out.begin(), out.end(), [](const KafkaMessage& a, const KafkaMessage& b) {
    return a.partition != b.partition ? a.partition < b.partition : a.offset < b.offset;
  });
  return out;
}

Status WriteTopic(const std::string& bootstrap, const std::string& topic,
                  const std::vector<KafkaMessage>& messages, std::chrono::milliseconds timeout) {
  struct Reports {
    size_t failed = 0;
    std::string first_error;
  } reports;
  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  const std::pair<const char*, std::string> settings[] = {
      {"bootstrap.servers", bootstrap},
      {"acks", "all"},
      {"linger.ms", "5"},
      // One message per message set, as separate uploads from agents would
      // be: the mock cluster serves one message set per partition and fetch.
      {"batch.num.messages", "1"},
      {"message.timeout.ms", std::to_string(std::max<int64_t>(timeout.count(), 1))},
  };
  for (const auto& [name, value] : settings) {
    if (rd_kafka_conf_set(conf, name, value.c_str(), errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Status::InvalidArgument(std::string(name) + ": " + errstr);
    }
  }
  rd_kafka_conf_set_opaque(conf, &reports);
  rd_kafka_conf_set_dr_msg_cb(conf, [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
    auto* r = static_cast<Reports*>(opaque);
    if (m->err && r->failed++ == 0) r->first_error = rd_kafka_err2str(m->err);
  });
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Status::InvalidArgument(std::string("rd_kafka_new: ") + errstr);
  }
  Status st;
  for (const KafkaMessage& msg : messages) {
    rd_kafka_headers_t* hdrs = rd_kafka_headers_new(msg.headers.size());
    for (const auto& [name, value] : msg.headers) {
      rd_kafka_header_add(hdrs, name.data(), static_cast<ssize_t>(name.size()), value.data(),
                          static_cast<ssize_t>(value.size()));
    }
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(topic.c_str()),
        RD_KAFKA_V_PARTITION(msg.partition >= 0 ? msg.partition : RD_KAFKA_PARTITION_UA),
        RD_KAFKA_V_KEY(msg.key.data(), msg.key.size()),
        RD_KAFKA_V_VALUE(const_cast<char*>(msg.value.data()), msg.value.size()),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(hdrs), RD_KAFKA_V_END);
    if (err) {
      rd_kafka_headers_destroy(hdrs);
      st = Status::Unavailable("produce to " + topic + ": " + rd_kafka_err2str(err));
      break;
    }
  }
  if (rd_kafka_flush(rk, static_cast<int>(timeout.count())) != RD_KAFKA_RESP_ERR_NO_ERROR && st.ok()) {
    st = Status::Unavailable("not every message to " + topic + " was delivered within " +
                             std::to_string(timeout.count()) + " ms");
  }
  if (st.ok() && reports.failed > 0) {
    st = Status::Unavailable(std::to_string(reports.failed) + " message(s) to " + topic +
                             " failed; first: " + reports.first_error);
  }
  rd_kafka_destroy(rk);
  return st;
}

}  // namespace edgesync::harness

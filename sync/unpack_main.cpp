// edgesync-unpack: the central side. Consumes edgesync envelopes from Kafka,
// checks and decodes them, and writes one NDJSON line per record to stdout;
// the agent's gap records (batches it had to give up) go as NDJSON lines to
// --gaps FILE (else to stderr); duplicate batches are dropped; sequence gaps
// and bad envelopes go to stderr.
#include <librdkafka/rdkafka.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include "sync/unpack.h"

namespace {

volatile std::sig_atomic_t g_stop = 0;
void OnSignal(int) { g_stop = 1; }

struct Options {
  std::string brokers;
  std::vector<std::string> topics;
  std::string group;
  bool from_beginning = false;
  bool exit_at_end = false;
  std::vector<std::string> properties;
  std::string gaps_path;
};

int Fail(const std::string& msg) {
  std::fprintf(stderr, "edgesync-unpack: %s\n", msg.c_str());
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"edgesync-unpack: verify, decode and explode edgesync batches from Kafka into NDJSON"};
  app.add_option("--brokers", o.brokers, "Kafka bootstrap servers (host:port,...)")->required();
  app.add_option("--topic", o.topics, "topic to read (repeatable)")->required();
  app.add_option("--group", o.group, "consumer group (commits offsets); without it, reads every partition without committing");
  app.add_flag("--from-beginning", o.from_beginning, "start at the oldest message (default: only new ones)");
  app.add_flag("--exit-at-end", o.exit_at_end, "exit once every partition is read to its end");
  app.add_option("-X,--property", o.properties, "extra librdkafka consumer property KEY=VALUE");
  app.add_option("--gaps", o.gaps_path, "append the agent's gap records (batches it gave up) to this file as NDJSON (default: stderr)");
  CLI11_PARSE(app, argc, argv);

  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);

  char err[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  std::vector<std::pair<std::string, std::string>> props = {
      {"bootstrap.servers", o.brokers},
      {"enable.partition.eof", o.exit_at_end ? "true" : "false"},
      {"auto.offset.reset", o.from_beginning ? "earliest" : "latest"},
      {"group.id", o.group.empty() ? "edgesync-unpack" : o.group},
      {"enable.auto.commit", o.group.empty() ? "false" : "true"},
  };
  for (const std::string& kv : o.properties) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos) return Fail("--property wants KEY=VALUE, got " + kv);
    props.emplace_back(kv.substr(0, eq), kv.substr(eq + 1));
  }
  for (const auto& [k, v] : props) {
    if (rd_kafka_conf_set(conf, k.c_str(), v.c_str(), err, sizeof err) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(conf);
      return Fail("kafka property " + k + ": " + err);
    }
  }
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
  if (rk == nullptr) {
    rd_kafka_conf_destroy(conf);
    return Fail(std::string("kafka consumer: ") + err);
  }
  rd_kafka_poll_set_consumer(rk);

  // Partitions that must reach their end before --exit-at-end exits.
  std::set<std::pair<std::string, int32_t>> pending_eof;
  rd_kafka_resp_err_t rerr;
  if (!o.group.empty()) {
    rd_kafka_topic_partition_list_t* subs = rd_kafka_topic_partition_list_new(static_cast<int>(o.topics.size()));
    for (const auto& t : o.topics) rd_kafka_topic_partition_list_add(subs, t.c_str(), RD_KAFKA_PARTITION_UA);
    rerr = rd_kafka_subscribe(rk, subs);
    rd_kafka_topic_partition_list_destroy(subs);
    if (rerr) return Fail(std::string("subscribe: ") + rd_kafka_err2str(rerr));
  } else {
    rd_kafka_topic_partition_list_t* assign = rd_kafka_topic_partition_list_new(8);
    for (const auto& t : o.topics) {
      rd_kafka_topic_t* rkt = rd_kafka_topic_new(rk, t.c_str(), nullptr);
      const rd_kafka_metadata_t* md = nullptr;
      // Metadata may lag while the cluster starts: ask a few times.
      for (int attempt = 0; attempt < 30 && !g_stop; ++attempt) {
        rerr = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
        if (rerr == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
            md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
          break;
        }
        if (md) rd_kafka_metadata_destroy(md);
        md = nullptr;
      }
      rd_kafka_topic_destroy(rkt);
      if (md == nullptr) return Fail("topic " + t + ": no metadata (does it exist? are the brokers up?)");
      for (int p = 0; p < md->topics[0].partition_cnt; ++p) {
        int32_t id = md->topics[0].partitions[p].id;
        rd_kafka_topic_partition_list_add(assign, t.c_str(), id)->offset =
            o.from_beginning ? RD_KAFKA_OFFSET_BEGINNING : RD_KAFKA_OFFSET_END;
        pending_eof.insert({t, id});
      }
      rd_kafka_metadata_destroy(md);
    }
    rerr = rd_kafka_assign(rk, assign);
    rd_kafka_topic_partition_list_destroy(assign);
    if (rerr) return Fail(std::string("assign: ") + rd_kafka_err2str(rerr));
  }

  std::FILE* gaps_file = nullptr;
  if (!o.gaps_path.empty()) {
    gaps_file = std::fopen(o.gaps_path.c_str(), "a");
    if (gaps_file == nullptr) return Fail("cannot open " + o.gaps_path + " for appending");
  }
  edgesync::Unpacker unpacker(o.from_beginning);
  std::string out, gaps_out;
  std::vector<std::string> notes;
  bool assigned_seen = !o.group.empty() ? false : true;
  while (!g_stop) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk, 200);
    if (m == nullptr) continue;
    if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      if (o.exit_at_end) {
        if (!assigned_seen) {
          // Group mode: the assignment is known once messages flow.
          rd_kafka_topic_partition_list_t* parts = nullptr;
          if (rd_kafka_assignment(rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (int i = 0; i < parts->cnt; ++i) pending_eof.insert({parts->elems[i].topic, parts->elems[i].partition});
            rd_kafka_topic_partition_list_destroy(parts);
            assigned_seen = true;
          }
        }
        pending_eof.erase({rd_kafka_topic_name(m->rkt), m->partition});
        if (assigned_seen && pending_eof.empty()) {
          rd_kafka_message_destroy(m);
          break;
        }
      }
    } else if (m->err) {
      std::fprintf(stderr, "edgesync-unpack: kafka: %s\n", rd_kafka_message_errstr(m));
    } else {
      out.clear();
      gaps_out.clear();
      notes.clear();
      edgesync::Status st = unpacker.Process(
          std::string_view(static_cast<const char*>(m->payload), m->len), &out, &gaps_out, &notes);
      if (!st.ok()) {
        std::fprintf(stderr, "edgesync-unpack: bad envelope at %s/%d@%lld: %s\n",
                     rd_kafka_topic_name(m->rkt), m->partition, static_cast<long long>(m->offset),
                     st.ToString().c_str());
      }
      for (const auto& n : notes) std::fprintf(stderr, "edgesync-unpack: %s\n", n.c_str());
      std::fwrite(out.data(), 1, out.size(), stdout);
      std::fflush(stdout);
      if (!gaps_out.empty()) {
        std::FILE* g = gaps_file ? gaps_file : stderr;
        std::fwrite(gaps_out.data(), 1, gaps_out.size(), g);
        std::fflush(g);
      }
    }
    rd_kafka_message_destroy(m);
  }
  rd_kafka_consumer_close(rk);
  rd_kafka_destroy(rk);
  if (gaps_file) std::fclose(gaps_file);
  const edgesync::UnpackStats& s = unpacker.stats();
  std::fprintf(stderr,
               "edgesync-unpack: batches=%llu records=%llu duplicate_batches=%llu "
               "missing_batches=%llu bad_envelopes=%llu gap_records=%llu lost_events=%llu\n",
               static_cast<unsigned long long>(s.batches), static_cast<unsigned long long>(s.records),
               static_cast<unsigned long long>(s.duplicate_batches),
               static_cast<unsigned long long>(s.missing_batches),
               static_cast<unsigned long long>(s.bad_envelopes),
               static_cast<unsigned long long>(s.gap_records),
               static_cast<unsigned long long>(s.lost_events));
  return 0;
}

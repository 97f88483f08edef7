#include "agent/pipeline.h"

#include <cstdio>
#include <set>

#include "base/crc32c.h"

namespace edgesync {

namespace {

std::vector<std::vector<std::string>> Filters(const Config& c) {
  std::vector<std::vector<std::string>> f;
  for (const StreamConfig& s : c.streams) f.push_back(s.topics);
  return f;
}

}  // namespace

std::string LaneName(const std::string& stream, const std::string& kafka_topic, Priority priority) {
  std::string name = stream + "@" + kafka_topic + "@" + PriorityName(priority);
  // Batch headers hold up to 255 bytes of stream name (FORMAT.md), and a
  // file name as many: a long topic is cut and told apart by its CRC.
  if (name.size() > 200) {
    char crc[9];
    std::snprintf(crc, sizeof crc, "%08x", crc32c::Value(kafka_topic));
    name = stream + "@" + kafka_topic.substr(0, 100) + "~" + crc + "@" + PriorityName(priority);
  }
  return name;
}

Pipeline::Pipeline(const Config& config) : config_(config), router_(Filters(config)) {}

Result<std::shared_ptr<const Pipeline>> Pipeline::Build(const Config& config) {
  std::shared_ptr<Pipeline> p(new Pipeline(config));
  const std::vector<StreamConfig>& streams = config.streams;
  for (size_t i = 0; i <= streams.size(); ++i) p->chains_.push_back(config.Chain(i));
  for (const StreamConfig& s : streams) p->lanes_.push_back(StreamSpec{s.name, s.kafka_topic, s.priority});
  p->lanes_.push_back(StreamSpec{kDeadLetterStream, config.dead_letter_topic, Priority::kLow});
  p->lanes_.push_back(StreamSpec{kAgentStream, config.health_topic, Priority::kHigh});

  // The Kafka topics and priorities each stream's events may be routed to.
  std::vector<std::set<std::string>> topics(streams.size());
  std::vector<std::set<Priority>> priorities(streams.size());
  for (size_t i = 0; i < streams.size(); ++i) {
    topics[i].insert(streams[i].kafka_topic);
    priorities[i].insert(streams[i].priority);
  }
  auto index_of = [&](const std::string& name) -> std::optional<size_t> {
    for (size_t i = 0; i < streams.size(); ++i) {
      if (streams[i].name == name) return i;
    }
    return std::nullopt;
  };
  for (size_t i = 0; i < streams.size(); ++i) {
    for (const std::shared_ptr<const Plugin>& plugin : p->chains_[i]) {
      for (const LaneRequest& l : plugin->Lanes()) {
        std::optional<size_t> target = l.stream.empty() ? std::optional<size_t>(i) : index_of(l.stream);
        if (!target) {
          return Status::InvalidArgument("streams[" + std::to_string(i) + "] (\"" + streams[i].name +
                                         "\"): a plugin of its chain routes to stream \"" + l.stream +
                                         "\", which is not configured");
        }
        if (!l.kafka_topic.empty()) topics[*target].insert(l.kafka_topic);
        if (l.priority) priorities[*target].insert(*l.priority);
      }
    }
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    p->lane_of_[{streams[i].name, streams[i].kafka_topic, streams[i].priority}] = i;
  }
  for (size_t i = 0; i < streams.size(); ++i) {
    for (const std::string& t : topics[i]) {
      for (Priority pr : priorities[i]) {
        auto key = std::make_tuple(streams[i].name, t, pr);
        if (p->lane_of_.count(key) != 0) continue;
        p->lane_of_[key] = p->lanes_.size();
        p->lanes_.push_back(StreamSpec{LaneName(streams[i].name, t, pr), t, pr});
      }
    }
  }
  return std::shared_ptr<const Pipeline>(std::move(p));
}

Route Pipeline::DefaultRoute(size_t i) const {
  Route r;
  r.stream = config_.streams[i].name;
  return r;
}

std::optional<size_t> Pipeline::LaneOf(const Route& r) const {
  const StreamConfig* stream = nullptr;
  for (const StreamConfig& s : config_.streams) {
    if (s.name == r.stream) stream = &s;
  }
  if (stream == nullptr) return std::nullopt;
  auto it = lane_of_.find(std::make_tuple(r.stream, r.kafka_topic.empty() ? stream->kafka_topic : r.kafka_topic,
                                          r.priority.value_or(stream->priority)));
  if (it == lane_of_.end()) return std::nullopt;
  return it->second;
}

}  // namespace edgesync

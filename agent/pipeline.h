// Pipeline: what the MQTT loop thread does with a message, built from one
// Config and replaced whole by a live reload: the router (topic filters to
// stream), each stream's chain of plugins, and the lanes an event can end in.
//
// A lane is one (stream, Kafka topic, priority): a journal and a batch
// sequence of its own (a sealer stream). Each configured stream is a lane;
// so are the built-in dead-letter and _agent streams; and for every stream,
// each combination of the Kafka topics and priorities its plugins declare
// (Plugin::Lanes) is a lane named "<stream>@<topic>@<priority>". The lanes
// are fixed when the agent starts: a reload may change chains and routing
// between lanes, not the lanes.
//
// Immutable once built; shared between threads.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "agent/config.h"
#include "buffer/store.h"
#include "format/envelope.h"
#include "plugins/plugin.h"
#include "plugins/route.h"

namespace edgesync {

// The name of a lane that is not a stream's own: "stream@topic@priority"
// (a topic longer than fits is cut and followed by "~" and its CRC-32C).
std::string LaneName(const std::string& stream, const std::string& kafka_topic, Priority priority);
// The stream a lane belongs to (ParseLane, the one reading of LaneName's rule).
inline std::string StreamOfLane(const std::string& lane) { return ParseLane(lane).stream; }

class Pipeline {
 public:
  // InvalidArgument when a plugin routes to a stream that is not configured.
  static Result<std::shared_ptr<const Pipeline>> Build(const Config& config);

  const Config& config() const { return config_; }
  const Router& router() const { return router_; }
  // Lane i < config().streams.size() is stream i; then dead-letter, _agent,
  // then the derived lanes.
  const std::vector<StreamSpec>& lanes() const { return lanes_; }
  size_t dead_letter_lane() const { return config_.streams.size(); }
  size_t agent_lane() const { return config_.streams.size() + 1; }
  // Stream i's chain; i == streams.size(): the dead-letter stream's.
  const std::vector<std::shared_ptr<const Plugin>>& chain(size_t i) const { return chains_[i]; }
  // Where an event of stream i goes before any plugin changes it.
  Route DefaultRoute(size_t i) const;
  // The lane of `r`: nullopt when its stream is not configured or its
  // (Kafka topic, priority) was not declared for that stream.
  std::optional<size_t> LaneOf(const Route& r) const;

 private:
  explicit Pipeline(const Config& config);

  Config config_;
  Router router_;
  std::vector<std::vector<std::shared_ptr<const Plugin>>> chains_;
  std::vector<StreamSpec> lanes_;
  std::map<std::tuple<std::string, std::string, Priority>, size_t, std::less<>> lane_of_;
};

}  // namespace edgesync

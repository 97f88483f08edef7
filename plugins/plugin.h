// Plugin: one step of a stream's chain. A plugin sees one event (its MQTT
// topic, payload, user properties and receive time) and keeps it, drops it,
// or rewrites it, and may change where it goes (stream, Kafka topic,
// priority, key). A stream runs its chain in order; the first drop or dead
// letter ends it.
//
// Plugins are stateless: the same event in gives the same event out, so a
// chain can be replaced between two events (live reload) and an event
// replayed after a crash is processed the same way. Process is const and is
// called from one thread at a time (the MQTT loop thread, or a benchmark).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/priority.h"
#include "plugins/json.h"

namespace edgesync {

// Where an event goes. The chain starts with the stream the topic filters
// chose. A plugin may route to another configured stream, or to another
// Kafka topic or priority of its stream (a lane: see LaneRequest).
struct Route {
  std::string stream;
  std::string kafka_topic;            // empty: the stream's
  std::optional<Priority> priority;   // nullopt: the stream's
  // The event's key for the central side (edgesync-unpack writes it as the
  // Kafka key of the record it emits); empty: none. Batches keep the
  // device id as their own key.
  std::string key;
};

struct Event {
  std::string_view topic;   // MQTT topic it was published on
  int64_t received_at_us = 0;
  std::vector<std::pair<std::string, std::string>>* properties = nullptr;  // MQTT 5 user properties
  // The record's own topic and MQTT 5 content type ("" for none), for the
  // plugins that must rewrite what is stored (pci masks card numbers in
  // them). Routing has happened by then: a plugin that writes *topic_text
  // sets `topic` to it again. Null where the caller has no record (tests).
  std::string* topic_text = nullptr;
  std::string* content_type = nullptr;
  // A JSON stream's payload, parsed. Plugins edit it in place; the agent
  // writes it back after the chain when it changed (Json::dirty()).
  Json* json = nullptr;
  // A raw stream's payload (json == nullptr): plugins that understand
  // plain text (pci) edit it here; the others leave raw events alone.
  std::string* raw = nullptr;
  Route route;
  // Set by a plugin that returns kDeadLetter: why (e.g. the script error).
  std::string error;
};

enum class Action { kKeep, kDrop, kDeadLetter };

// A lane a plugin may route events to: another stream, and/or another Kafka
// topic or priority (empty / nullopt: unchanged). Every (stream, Kafka topic,
// priority) an event can end in is a lane of the buffer, with its own
// journal and batch sequence, so the lanes must be known when the
// configuration is loaded: plugins declare the ones they use.
struct LaneRequest {
  std::string stream;
  std::string kafka_topic;
  std::optional<Priority> priority;
};

class Plugin {
 public:
  virtual ~Plugin() = default;
  virtual Action Process(Event& e) const = 0;
  virtual std::vector<LaneRequest> Lanes() const { return {}; }
  // The plugin's own counters, name and value (an external plugin's, kept
  // through the host services of its ABI), for the metrics. Safe to call
  // from any thread, while Process runs on another.
  virtual std::vector<std::pair<std::string, uint64_t>> Counters() const { return {}; }
  // How it was loaded, for `edgesync check` and the agent's log (an external
  // plugin's file and ABI version); "" when there is nothing to say.
  virtual std::string LoadInfo() const { return {}; }
};

}  // namespace edgesync

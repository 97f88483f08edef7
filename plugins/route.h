// Routing: which stream an MQTT message belongs to, by the streams' topic
// filters, matched as MQTT 3.1.1 and 5.0 section 4.7 define ('+' one level,
// '#' this level and all below, '$'-topics not matched by a leading wildcard).
// The first stream (in configuration order) with a matching filter wins.
// Router is immutable after construction: safe to share between threads.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace edgesync {

// ok, or InvalidArgument saying what is wrong with `filter`.
Status ValidateTopicFilter(std::string_view filter);
// Requires a valid filter. A topic is never empty and holds no wildcards.
bool TopicMatches(std::string_view filter, std::string_view topic);

// True when every topic `inner` matches is matched by `outer` too (both
// valid filters). Brokers deliver a message once per matching subscription
// (mosquitto 2 does), so a covered filter must not be subscribed as well.
bool FilterCovers(std::string_view outer, std::string_view inner);

// `filters` without duplicates and without any filter another one covers,
// in their first order.
std::vector<std::string> MinimalSubscriptions(const std::vector<std::string>& filters);

class Router {
 public:
  // filters[i] are stream i's topic filters; each must be valid.
  explicit Router(std::vector<std::vector<std::string>> filters) : filters_(std::move(filters)) {}
  // The index of the stream the topic goes to, or nullopt when none claims it.
  std::optional<size_t> Route(std::string_view topic) const;
  // Every distinct filter, for subscribing.
  std::vector<std::string> AllFilters() const;

 private:
  std::vector<std::vector<std::string>> filters_;
};

}  // namespace edgesync

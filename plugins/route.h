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

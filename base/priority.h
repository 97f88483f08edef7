// Upload priority of a stream's batches (and of an event a plugin routes).
#pragma once

#include <optional>
#include <string_view>

namespace edgesync {

enum class Priority : int { kLow = 0, kNormal = 1, kHigh = 2 };

inline const char* PriorityName(Priority p) {
  switch (p) {
    case Priority::kLow: return "low";
    case Priority::kNormal: return "normal";
    case Priority::kHigh: return "high";
  }
  return "normal";
}

// "high", "normal" or "low"; nullopt for anything else.
inline std::optional<Priority> ParsePriority(std::string_view s) {
  if (s == "high") return Priority::kHigh;
  if (s == "normal") return Priority::kNormal;
  if (s == "low") return Priority::kLow;
  return std::nullopt;
}

}  // namespace edgesync

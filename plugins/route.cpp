#include "plugins/route.h"

#include <algorithm>

namespace edgesync {

Status ValidateTopicFilter(std::string_view filter) {
  if (filter.empty()) return Status::InvalidArgument("topic filter is empty");
  if (filter.size() > 65535) return Status::InvalidArgument("topic filter longer than 65535 bytes");
  if (filter.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("topic filter contains a NUL character");
  }
  size_t start = 0;
  for (;;) {
    size_t end = filter.find('/', start);
    std::string_view level = filter.substr(start, end == std::string_view::npos ? filter.npos : end - start);
    if (level.find('#') != std::string_view::npos) {
      if (level != "#") return Status::InvalidArgument("'#' must stand alone in its level: " + std::string(filter));
      if (end != std::string_view::npos) return Status::InvalidArgument("'#' must be the last level: " + std::string(filter));
    }
    if (level.find('+') != std::string_view::npos && level != "+") {
      return Status::InvalidArgument("'+' must stand alone in its level: " + std::string(filter));
    }
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return Status::OK();
}

bool TopicMatches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic[0] == '$' && !filter.empty() && (filter[0] == '+' || filter[0] == '#')) {
    return false;
  }
  size_t f = 0, t = 0;
  for (;;) {
    size_t fe = filter.find('/', f);
    std::string_view flevel = filter.substr(f, fe == filter.npos ? filter.npos : fe - f);
    if (flevel == "#") return true;  // matches the parent level too: "a/#" matches "a"
    if (t > topic.size()) {
      return false;  // topic ran out of levels while the filter has more
    }
    size_t te = topic.find('/', t);
    std::string_view tlevel = topic.substr(t, te == topic.npos ? topic.npos : te - t);
    if (flevel != "+" && flevel != tlevel) return false;
    bool flast = fe == filter.npos, tlast = te == topic.npos;
    if (flast && tlast) return true;
    if (flast) return false;
    f = fe + 1;
    if (tlast) {
      // Topic has no more levels; only a trailing "#" can still match.
      std::string_view rest = filter.substr(f);
      return rest == "#";
    }
    t = te + 1;
  }
}

namespace {

std::vector<std::string_view> Levels(std::string_view f) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t end = f.find('/', start);
    out.push_back(f.substr(start, end == f.npos ? f.npos : end - start));
    if (end == f.npos) return out;
    start = end + 1;
  }
}

}  // namespace

bool FilterCovers(std::string_view outer, std::string_view inner) {
  std::vector<std::string_view> o = Levels(outer), i = Levels(inner);
  // A leading wildcard never matches '$' topics; a literal '$' level can only
  // be covered by the same literal.
  if (!i[0].empty() && i[0][0] == '$' && (o[0] == "+" || o[0] == "#")) return false;
  if ((i[0] == "+" || i[0] == "#") && !o[0].empty() && o[0][0] == '$') return false;
  for (size_t k = 0; k < o.size(); ++k) {
    if (o[k] == "#") return true;  // covers this level and everything below, parent included
    if (k >= i.size()) return false;
    if (i[k] == "#") return false;  // inner reaches deeper than a single outer level
    if (o[k] == "+") continue;
    if (i[k] == "+" || i[k] != o[k]) return false;
  }
  return o.size() == i.size();
}

std::vector<std::string> MinimalSubscriptions(const std::vector<std::string>& filters) {
  std::vector<std::string> out;
  for (size_t a = 0; a < filters.size(); ++a) {
    bool covered = false;
    for (size_t b = 0; b < filters.size() && !covered; ++b) {
      if (a == b) continue;
      // Of two identical filters keep the first; otherwise drop the covered one.
      if (filters[a] == filters[b]) {
        covered = b < a;
      } else {
        covered = FilterCovers(filters[b], filters[a]);
      }
    }
    if (!covered) out.push_back(filters[a]);
  }
  return out;
}

std::optional<size_t> Router::Route(std::string_view topic) const {
  for (size_t i = 0; i < filters_.size(); ++i) {
    for (const std::string& f : filters_[i]) {
      if (TopicMatches(f, topic)) return i;
    }
  }
  return std::nullopt;
}

std::vector<std::string> Router::AllFilters() const {
  std::vector<std::string> all;
  for (const auto& fs : filters_) {
    for (const auto& f : fs) {
      if (std::find(all.begin(), all.end(), f) == all.end()) all.push_back(f);
    }
  }
  return all;
}

}  // namespace edgesync

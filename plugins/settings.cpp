#include "plugins/settings.h"

#include <algorithm>
#include <cctype>

namespace edgesync {

std::string Where(const toml::source_region& where) {
  std::string out = where.path ? *where.path : std::string("config");
  if (where.begin.line > 0) {
    out += ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column);
  }
  return out;
}

bool ParseSize(const toml::node& n, int64_t* bytes, std::string* why) {
  if (auto v = n.value<int64_t>(); v && n.is_integer()) {
    *bytes = *v;
    return true;
  }
  auto s = n.value<std::string>();
  if (!s) {
    *why = "must be a size (bytes, or a string like \"512KiB\")";
    return false;
  }
  static const std::pair<const char*, int64_t> kUnits[] = {
      {"B", 1}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000LL * 1000 * 1000},
      {"KiB", 1024}, {"MiB", 1 << 20}, {"GiB", 1LL << 30}};
  size_t i = 0;
  while (i < s->size() && std::isdigit(static_cast<unsigned char>((*s)[i]))) ++i;
  std::string digits = s->substr(0, i), unit = s->substr(i);
  for (const auto& [u, m] : kUnits) {
    if (unit == u && !digits.empty() && digits.size() < 12) {
      *bytes = std::stoll(digits) * m;
      return true;
    }
  }
  *why = "not a size: \"" + *s + "\" (use e.g. 4096, \"512KiB\", \"64MiB\")";
  return false;
}

std::optional<int64_t> Settings::Size(std::string_view key) {
  const toml::node* n = table_.get(key);
  if (n == nullptr) return std::nullopt;
  int64_t bytes = 0;
  std::string why;
  if (!ParseSize(*n, &bytes, &why)) {
    Problem(*n, key, why);
    return std::nullopt;
  }
  return bytes;
}

void Settings::Problem(const toml::node& at, std::string_view key, const std::string& what) {
  problems_.push_back(Where(at.source()) + ": " + prefix_ + "." + std::string(key) + ": " + what);
}

void Settings::Problem(std::string_view key, const std::string& what) {
  problems_.push_back(Where(table_.source()) + ": " + prefix_ + (key.empty() ? "" : "." + std::string(key)) +
                      ": " + what);
}

std::optional<std::string> Settings::String(std::string_view key) {
  const toml::node* n = table_.get(key);
  if (n == nullptr) return std::nullopt;
  if (!n->is_string()) {
    Problem(*n, key, "must be a string");
    return std::nullopt;
  }
  return *n->value<std::string>();
}

std::optional<bool> Settings::Bool(std::string_view key) {
  const toml::node* n = table_.get(key);
  if (n == nullptr) return std::nullopt;
  if (!n->is_boolean()) {
    Problem(*n, key, "must be true or false");
    return std::nullopt;
  }
  return *n->value<bool>();
}

std::optional<int64_t> Settings::Int(std::string_view key) {
  const toml::node* n = table_.get(key);
  if (n == nullptr) return std::nullopt;
  if (!n->is_integer()) {
    Problem(*n, key, "must be an integer");
    return std::nullopt;
  }
  return *n->value<int64_t>();
}

std::optional<std::vector<std::string>> Settings::StringList(std::string_view key) {
  const toml::node* n = table_.get(key);
  if (n == nullptr) return std::nullopt;
  const toml::array* a = n->as_array();
  std::vector<std::string> out;
  if (a != nullptr) {
    for (const toml::node& e : *a) {
      if (!e.is_string()) {
        a = nullptr;
        break;
      }
      out.push_back(*e.value<std::string>());
    }
  }
  if (a == nullptr) {
    Problem(*n, key, "must be an array of strings");
    return std::nullopt;
  }
  return out;
}

const toml::table* Settings::Table(std::string_view key) {
  const toml::node* n = table_.get(key);
  if (n == nullptr) return nullptr;
  if (!n->is_table()) {
    Problem(*n, key, "must be a table");
    return nullptr;
  }
  return n->as_table();
}

Status Settings::status() const {
  if (problems_.empty()) return Status::OK();
  std::string all;
  for (const std::string& p : problems_) all += (all.empty() ? "" : "\n") + p;
  return Status::InvalidArgument(all);
}

void Settings::OnlyKeys(std::initializer_list<std::string_view> known) {
  for (const auto& [k, v] : table_) {
    if (k.str() == "type" || k.str() == "every_stream") continue;  // the agent's own keys
    if (std::find(known.begin(), known.end(), k.str()) != known.end()) continue;
    std::string list;
    for (std::string_view s : known) list += (list.empty() ? "" : ", ") + std::string(s);
    Problem(v, k.str(), "unknown key (this plugin's keys: " + list + ")");
  }
}

}  // namespace edgesync

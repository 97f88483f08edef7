#include "plugins/settings.h"

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <cstdint>
#include <cstdlib>

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
  const std::string digits = s->substr(0, i), unit = s->substr(i);
  for (const auto& [u, m] : kUnits) {
    if (unit != u || digits.empty() || digits.size() >= 12) continue;
    const int64_t count = std::stoll(digits);  // at most 11 digits: cannot throw
    if (count > INT64_MAX / m) break;      // "17179869184GiB" is 2^64 bytes
    *bytes = count * m;
    return true;
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
  OnlyKeys(std::vector<std::string>(known.begin(), known.end()));
}

void Settings::OnlyKeys(const std::vector<std::string>& known) {
  for (const auto& [k, v] : table_) {
    if (k.str() == "type" || k.str() == "every_stream") continue;  // the agent's own keys
    if (std::find(known.begin(), known.end(), k.str()) != known.end()) continue;
    std::string list;
    for (const std::string& s : known) list += (list.empty() ? "" : ", ") + s;
    Problem(v, k.str(), "unknown key (this plugin's keys: " + list + ")");
  }
}

bool ParseDuration(const toml::node& n, double* secs, std::string* why) {
  if (auto v = n.value<double>(); v && (n.is_integer() || n.is_floating_point())) {
    *secs = *v;
  } else if (auto s = n.value<std::string>()) {
    static const std::pair<const char*, double> kUnits[] = {
        {"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}};
    size_t i = 0, digit_count = 0, points = 0;
    for (; i < s->size(); ++i) {
      const char c = (*s)[i];
      if (std::isdigit(static_cast<unsigned char>(c))) {
        ++digit_count;
      } else if (c == '.') {
        ++points;
      } else {
        break;
      }
    }
    const std::string digits = s->substr(0, i), unit = s->substr(i);
    double mult = -1;
    for (const auto& [u, m] : kUnits) {
      if (unit == u) mult = m;
    }
    // One number of at most 30 characters, with digits and at most one
    // point: "." or "1.2.3" is no number, and strtod below never sees one.
    if (digit_count == 0 || points > 1 || digits.size() > 30 || mult < 0) {
      *why = "not a duration: \"" + *s + "\" (use e.g. 500ms, 2s, 5m, 1h, 7d)";
      return false;
    }
    *secs = std::strtod(digits.c_str(), nullptr) * mult;
  } else {
    *why = "must be a duration (a number of seconds or a string like \"2s\")";
    return false;
  }
  if (std::isnan(*secs) || *secs < 0) {
    *why = "must not be negative";
    return false;
  }
  if (!std::isfinite(*secs)) {
    *why = "is too long (at most ten years)";
    return false;
  }
  return true;
}

bool ReadOptionValue(const toml::node& n, OptionKind kind, int64_t min, int64_t max,
                     const std::vector<std::string>& choices, bool required, OptionValue* out, std::string* why) {
  switch (kind) {
    case OptionKind::kString: {
      auto s = n.value<std::string>();
      if (!s || !n.is_string()) {
        *why = "must be a string";
        return false;
      }
      if (!choices.empty() && std::find(choices.begin(), choices.end(), *s) == choices.end()) {
        std::string list;
        for (const auto& c : choices) list += (list.empty() ? "" : ", ") + c;
        *why = "must be one of " + list;
        return false;
      }
      if (required && s->empty()) {
        *why = "must not be empty";
        return false;
      }
      *out = *s;
      return true;
    }
    case OptionKind::kInt:
    case OptionKind::kSize: {
      int64_t value = 0;
      if (kind == OptionKind::kInt) {
        auto i = n.value<int64_t>();
        if (!i || !n.is_integer()) {
          *why = "must be an integer";
          return false;
        }
        value = *i;
      } else if (!ParseSize(n, &value, why)) {
        return false;
      }
      if (value < min || value > max) {
        *why = "must be between " + std::to_string(min) + " and " + std::to_string(max);
        return false;
      }
      *out = value;
      return true;
    }
    case OptionKind::kStringList: {
      const toml::array* arr = n.as_array();
      std::vector<std::string> values;
      bool ok = arr != nullptr;
      for (size_t i = 0; ok && i < arr->size(); ++i) {
        const toml::node& e = *arr->get(i);
        ok = e.is_string();
        if (ok) values.push_back(*e.value<std::string>());
      }
      if (!ok) {
        *why = "must be an array of strings";
        return false;
      }
      *out = std::move(values);
      return true;
    }
    case OptionKind::kDuration: {
      double secs = 0;
      if (!ParseDuration(n, &secs, why)) return false;
      if (secs > kMaxOptionSeconds) {
        *why = "must be at most ten years (" + std::to_string(static_cast<int64_t>(kMaxOptionSeconds)) + " seconds)";
        return false;
      }
      *out = secs;
      return true;
    }
    case OptionKind::kTable:
      break;
  }
  *why = "is read by its owner, not as a value";
  return false;
}

}  // namespace edgesync

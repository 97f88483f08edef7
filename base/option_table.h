// OptionTable: the options of one settings struct, each declared once by the
// module that reads it: key, kind, description, range and the member its
// value goes to. The default is the member's initializer, so it is written
// nowhere else. agent/config.cpp parses the configuration file through these
// tables, and `edgesync check`, `edgesync config` and docs/configuration.md
// come from them.
//
//   struct UploadLimits {
//     size_t max_in_flight = 16;
//     static const OptionTable<UploadLimits>& Options();
//   };
//   ... Options() {
//     static const auto* t = &(*new OptionTable<UploadLimits>())
//         .Int("kafka.max_in_flight", &UploadLimits::max_in_flight, "Batches ...", 1, 1000);
//     return *t;
//   }
//
// A table of a struct that holds another includes the other's table
// (Include), so Config is the sum of the modules' tables plus its own.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace edgesync {

enum class OptionKind {
  kString,
  kInt,
  kSize,      // bytes: an integer, or a string such as "512KiB"
  kDuration,  // a number of seconds, or a string such as "250ms", "7d"
  kStringList,
  kTable,  // a table (or array of tables) the owner reads itself: declared for its key and docs
};

// A parsed value: kString a string, kInt and kSize an integer, kDuration
// seconds, kStringList strings.
using OptionValue = std::variant<std::string, int64_t, double, std::vector<std::string>>;

// The longest duration an option takes: ten years, far beyond any real
// setting and well inside what int64 microseconds hold.
constexpr double kMaxOptionSeconds = 10.0 * 365 * 86400;

// How the reference shows `value`, an option's default: "(none)" for an
// empty string, sizes in KiB or MiB when whole, durations in s or d.
std::string OptionDefaultText(OptionKind kind, const OptionValue& value);

template <typename T>
struct OptionDecl {
  std::string key;  // dotted path in the file, e.g. "kafka.max_in_flight"
  OptionKind kind;
  std::string description;
  int64_t min = 0;  // kInt, kSize
  int64_t max = std::numeric_limits<int64_t>::max();
  std::vector<std::string> choices = {};  // kString: the values allowed, if restricted
  bool required = false;                  // kString: must be present and not empty
  std::string default_text = {};          // the reference's "default" when the value cannot say it
  // Stores a value that has passed the checks above into `to`.
  std::function<void(T& to, const OptionValue&)> set;
  // The value held by `from` (for the default: a default-constructed T).
  std::function<OptionValue(const T& from)> get;
};

template <typename T>
class OptionTable {
 public:
  OptionTable& String(std::string key, std::string T::*field, std::string description,
                      std::vector<std::string> choices = {}, bool required = false) {
    OptionDecl<T> d{std::move(key), OptionKind::kString, std::move(description)};
    d.choices = std::move(choices);
    d.required = required;
    d.set = [field](T& to, const OptionValue& v) { to.*field = std::get<std::string>(v); };
    d.get = [field](const T& from) { return OptionValue(from.*field); };
    decls_.push_back(std::move(d));
    return *this;
  }
  // An integer member of any width; `min` and `max` must fit it.
  template <typename F>
  OptionTable& Int(std::string key, F T::*field, std::string description, int64_t min, int64_t max) {
    return Integer(OptionKind::kInt, std::move(key), field, std::move(description), min, max);
  }
  template <typename F>
  OptionTable& Size(std::string key, F T::*field, std::string description, int64_t min, int64_t max) {
    return Integer(OptionKind::kSize, std::move(key), field, std::move(description), min, max);
  }
  // A duration held as seconds.
  OptionTable& Seconds(std::string key, double T::*field, std::string description) {
    OptionDecl<T> d{std::move(key), OptionKind::kDuration, std::move(description)};
    d.set = [field](T& to, const OptionValue& v) { to.*field = std::get<double>(v); };
    d.get = [field](const T& from) { return OptionValue(from.*field); };
    decls_.push_back(std::move(d));
    return *this;
  }
  // A duration held as microseconds.
  OptionTable& Micros(std::string key, int64_t T::*field, std::string description) {
    OptionDecl<T> d{std::move(key), OptionKind::kDuration, std::move(description)};
    d.set = [field](T& to, const OptionValue& v) {
      to.*field = static_cast<int64_t>(std::get<double>(v) * 1e6 + 0.5);
    };
    d.get = [field](const T& from) { return OptionValue(static_cast<double>(from.*field) / 1e6); };
    decls_.push_back(std::move(d));
    return *this;
  }
  OptionTable& List(std::string key, std::vector<std::string> T::*field, std::string description) {
    OptionDecl<T> d{std::move(key), OptionKind::kStringList, std::move(description)};
    d.set = [field](T& to, const OptionValue& v) { to.*field = std::get<std::vector<std::string>>(v); };
    d.get = [field](const T& from) { return OptionValue(from.*field); };
    decls_.push_back(std::move(d));
    return *this;
  }
  // A table read by the owner itself; `default_text` says what holds when absent.
  OptionTable& Table(std::string key, std::string description, std::string default_text) {
    OptionDecl<T> d{std::move(key), OptionKind::kTable, std::move(description)};
    d.default_text = std::move(default_text);
    decls_.push_back(std::move(d));
    return *this;
  }
  // What the reference shows as the last option's default, where its
  // member's value does not say it (e.g. "(required)" for a setting whose
  // owner checks its presence with a message of its own).
  OptionTable& ShownAs(std::string default_text) {
    decls_.back().default_text = std::move(default_text);
    return *this;
  }
  // Every option of `sub`, whose values go to member `part` of T.
  template <typename S>
  OptionTable& Include(S T::*part, const OptionTable<S>& sub) {
    for (const OptionDecl<S>& s : sub.decls()) {
      OptionDecl<T> d{s.key, s.kind, s.description, s.min, s.max, s.choices, s.required, s.default_text};
      if (s.kind == OptionKind::kTable) {
        decls_.push_back(std::move(d));
        continue;
      }
      d.set = [part, set = s.set](T& to, const OptionValue& v) { set(to.*part, v); };
      d.get = [part, get = s.get](const T& from) { return get(from.*part); };
      decls_.push_back(std::move(d));
    }
    return *this;
  }

  const std::vector<OptionDecl<T>>& decls() const { return decls_; }

  // The reference: one Markdown row per option, "| `key` | default | description |",
  // the default read from a default-constructed T.
  std::string Reference() const {
    const T defaults{};
    std::string out;
    for (const OptionDecl<T>& d : decls_) {
      const std::string def = d.required ? "(required)"
                              : !d.default_text.empty() || !d.get ? d.default_text
                                                                  : OptionDefaultText(d.kind, d.get(defaults));
      out += "| `" + d.key + "` | " + def + " | " + d.description + " |\n";
    }
    return out;
  }

 private:
  template <typename F>
  OptionTable& Integer(OptionKind kind, std::string key, F T::*field, std::string description,
                       int64_t min, int64_t max) {
    static_assert(std::is_integral_v<F>, "Int and Size options are integers");
    // A range the member cannot hold would store values cut short: a
    // declaration's mistake, caught when its table is built (every test
    // that parses a configuration builds them all).
    if (!std::in_range<F>(min) || !std::in_range<F>(max) || min > max) {
      std::fprintf(stderr, "option %s: range %lld..%lld does not fit its member\n", key.c_str(),
                   static_cast<long long>(min), static_cast<long long>(max));
      std::abort();
    }
    OptionDecl<T> d{std::move(key), kind, std::move(description), min, max};
    d.set = [field](T& to, const OptionValue& v) { to.*field = static_cast<F>(std::get<int64_t>(v)); };
    d.get = [field](const T& from) { return OptionValue(static_cast<int64_t>(from.*field)); };
    decls_.push_back(std::move(d));
    return *this;
  }

  std::vector<OptionDecl<T>> decls_;
};

}  // namespace edgesync

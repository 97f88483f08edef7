// Settings: a plugin's table of the configuration ([plugins.NAME]), read
// with typed getters that note every problem with its file, line and column,
// so `edgesync check` names the plugin, the key and the position.
#pragma once

#include <toml++/toml.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/option_table.h"
#include "base/status.h"

namespace edgesync {

class Settings {
 public:
  // `prefix` names the table in messages, e.g. "plugins.mask-cards".
  Settings(const toml::table& table, std::string prefix) : table_(table), prefix_(std::move(prefix)) {}

  const toml::table& table() const { return table_; }
  const std::string& prefix() const { return prefix_; }
  const toml::node* Get(std::string_view key) const { return table_.get(key); }

  // Each returns nullopt when the key is absent; a value of the wrong type
  // is noted as a problem (and returns nullopt too).
  std::optional<std::string> String(std::string_view key);
  std::optional<bool> Bool(std::string_view key);
  std::optional<int64_t> Int(std::string_view key);
  // Bytes, or a string such as "512KiB", "8MiB" (see ParseSize).
  std::optional<int64_t> Size(std::string_view key);
  std::optional<std::vector<std::string>> StringList(std::string_view key);
  const toml::table* Table(std::string_view key);

  // Notes a problem at `at` (its file, line and column) about `key`.
  void Problem(const toml::node& at, std::string_view key, const std::string& what);
  void Problem(std::string_view key, const std::string& what);
  // Notes every key of the table that is not in `known`.
  void OnlyKeys(std::initializer_list<std::string_view> known);
  void OnlyKeys(const std::vector<std::string>& known);

  // Reads every option `table` declares into `out` (an absent key keeps
  // `out`'s value, the default; a kTable key is only checked to be there
  // as its owner reads it) and notes each problem and each key the table
  // does not declare. The plugin type's settings are declared once, so
  // their checks, defaults and reference (docs/configuration.md) agree.
  template <typename T>
  void Read(const OptionTable<T>& table, T* out) {
    std::vector<std::string> keys;
    for (const OptionDecl<T>& d : table.decls()) {
      keys.push_back(d.key);
      const toml::node* n = table_.get(d.key);
      if (n == nullptr) {
        if (d.required) Problem(d.key, "is required");
        continue;
      }
      if (d.kind == OptionKind::kTable) continue;
      OptionValue v;
      std::string why;
      if (!ReadOptionValue(*n, d.kind, d.min, d.max, d.choices, d.required, &v, &why)) {
        Problem(*n, d.key, why);
      } else {
        d.set(*out, std::move(v));
      }
    }
    OnlyKeys(keys);
  }

  bool ok() const { return problems_.empty(); }
  // InvalidArgument with every problem, one per line; ok when there are none.
  Status status() const;
  // One problem per line: "file:line:col: plugins.NAME.key: what".
  const std::vector<std::string>& problems() const { return problems_; }

 private:
  const toml::table& table_;
  std::string prefix_;
  std::vector<std::string> problems_;
};

// A size: an integer of bytes, or a string such as "512KiB", "64MiB", "1GB".
// False with *why saying what is wrong.
bool ParseSize(const toml::node& n, int64_t* bytes, std::string* why);

// A duration: a number of seconds or a string such as "250ms", "2s", "5m",
// "1h", "7d". False with *why saying what is wrong.
bool ParseDuration(const toml::node& n, double* secs, std::string* why);

// Reads `n` as an option of `kind` wants it: the type, [min, max] for
// integers and sizes, `choices` and `required` (not empty) for strings,
// at most kMaxOptionSeconds for durations. False with *why saying what is
// wrong. agent/config.cpp reads its options with this too.
bool ReadOptionValue(const toml::node& n, OptionKind kind, int64_t min, int64_t max,
                     const std::vector<std::string>& choices, bool required, OptionValue* out, std::string* why);

// "file:line:col" of a node, or "file" when it has no position.
std::string Where(const toml::source_region& where);

}  // namespace edgesync

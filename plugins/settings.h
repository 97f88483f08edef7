// Settings: a plugin's table of the configuration ([plugins.NAME]), read
// with typed getters that note every problem with its file, line and column,
// so `edgesync check` names the plugin, the key and the position.
#pragma once

#include <toml++/toml.h>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// "file:line:col" of a node, or "file" when it has no position.
std::string Where(const toml::source_region& where);

}  // namespace edgesync

// Configuration: the agent's TOML file, parsed into a typed Config. Every
// option is declared once (key, kind, range, description, destination) in an
// OptionTable (base/option_table.h): the store's, the sealer's and the
// uploader's by those modules, the rest in config.cpp; its default is the
// member's initializer. The tables drive parsing, `edgesync check` and
// `edgesync config` (the reference in docs/configuration.md).
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "agent/ingest.h"
#include "base/env.h"
#include "base/status.h"
#include "buffer/sealer.h"
#include "buffer/store.h"
#include "plugins/plugin.h"
#include "sync/uploader.h"

namespace edgesync {

struct StreamConfig {
  std::string name;                 // [A-Za-z0-9._-]{1,64}
  std::vector<std::string> topics;  // MQTT topic filters
  std::string kafka_topic;
  Priority priority = Priority::kNormal;
  bool json = false;                // format = "json": payloads that are not JSON are dead-lettered
  std::vector<std::string> plugins;       // its chain: [plugins.NAME] instances, in order
  std::vector<std::string> skip_plugins;  // every_stream plugins this stream opts out of
  bool operator==(const StreamConfig&) const = default;
};

// A plugin instance: [plugins.NAME] with its type and settings, built (and
// so checked) when the configuration is loaded.
struct PluginConfig {
  std::string name;
  std::string type;          // rules, pci, ocpp, lua, external
  bool every_stream = false; // runs at the end of every stream's chain (and on dead letters)
  std::shared_ptr<const Plugin> plugin;
  bool operator==(const PluginConfig&) const = default;
};

// The built-in stream that takes what cannot go where it should (reasons in
// agent/agent.h). Always present, low priority; its name is reserved.
constexpr const char* kDeadLetterStream = "dead-letter";
// The built-in stream of the agent's health records (agent.heartbeat_interval),
// high priority, to agent.health_topic; its name is reserved.
constexpr const char* kAgentStream = "_agent";

struct Config {
  // [agent]
  std::string device_id;
  std::string profile;            // a fleet profile merged under this file (see ParseConfig)
  std::string state_dir = "/var/lib/edgesync";
  std::string device_key;  // the device's signing key; empty: <state_dir>/device.key
  std::string log_level = "info";
  double shutdown_timeout = 10;   // seconds
  double stats_interval = 60;     // seconds between stats lines in the log; 0 = never
  double heartbeat_interval = 60; // seconds between health records on the _agent stream; 0 = never
  std::string health_topic = "edge.agent";  // Kafka topic of the _agent stream
  // [mqtt]
  MqttSettings mqtt;                        // Ingest's own options; status_topic filled in when empty
  int64_t mqtt_max_payload = 256 * 1024;
  std::string mqtt_unmatched = "dead-letter";  // or "drop"
  std::vector<std::string> mqtt_subscribe;  // extra filters besides the streams' own
  std::string mqtt_mode = "client";         // or "broker-plugin" (agent/spool.h)
  int64_t spool_max_bytes = 64 << 20;       // broker-plugin mode: the spool's quota
  // [buffer] and [batch]: the store's and the sealer's own options
  StoreLimits buffer;
  BatchLimits batch;
  int64_t zstd_level = 3;
  std::string batch_dictionary;   // zstd dictionary file (`edgesync dict train`); empty: none
  // [encryption]
  std::string encryption_public_key;  // central X25519 public key (PEM); set: batches and journal encrypted
  std::string encryption_journal_key; // the journal's key file; empty: <state_dir>/journal.key
  // [dead_letter]
  std::string dead_letter_topic = "edge.dead-letter";
  // [kafka]
  std::string kafka_brokers;
  std::string kafka_security_protocol = "plaintext";
  std::string kafka_ssl_ca_file, kafka_ssl_cert_file, kafka_ssl_key_file;
  std::string kafka_sasl_mechanism;       // PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
  std::string kafka_sasl_username;
  std::string kafka_sasl_password_file;   // never the password itself
  UploadLimits upload;                    // the uploader's own [kafka] options
  std::vector<std::pair<std::string, std::string>> kafka_properties;  // [kafka.properties]
  std::vector<std::string> kafka_allow_unsafe_properties;  // opt-ins, device file only
  // [metrics]
  std::string metrics_textfile;   // node_exporter textfile (.prom); empty: none
  double metrics_interval = 15;   // seconds between its updates
  // [fleet]
  std::vector<std::string> fleet_public_keys;  // Ed25519 public keys (PEM) bundles must be signed by; empty: off
  std::string fleet_drop_dir;     // bundles arrive here as *.bundle files
  std::string fleet_mqtt_topic;   // or here, retained on the local broker ("{device_id}" expanded)
  double fleet_probation = 120;   // seconds a new bundle's health is watched before it counts as good
  // [plugins]
  std::string plugins_dir;        // where external plugins (shared objects) are loaded from
  std::vector<PluginConfig> plugins;  // [plugins.NAME], in name order
  // [[streams]]
  std::vector<StreamConfig> streams;

  // The plugin instance named `name`, or nullptr.
  const PluginConfig* FindPlugin(const std::string& name) const;
  // Stream `i`'s chain as it runs: its own plugins, then the every_stream
  // ones it neither names nor skips (in name order, those of type pci last). i == streams.size(): the dead-letter
  // stream's (every_stream plugins only).
  std::vector<std::shared_ptr<const Plugin>> Chain(size_t i) const;
  bool operator==(const Config&) const = default;
};

// True when `a` and `b` differ at most in their plugins, chains and log
// level: what a live reload can change while the agent runs.
bool SameButPlugins(const Config& a, const Config& b);

// Parses `toml_text` (named `origin` in messages). On failure the Status
// message lists every problem, one per line, as "origin:line:col: key: what".
//
// With agent.profile = PATH (relative to `origin`'s directory), the profile
// is read first and this file is laid over it: its keys win, tables merge
// key by key, and a [[streams]] entry replaces the profile's stream of the
// same name or is added after the profile's. Paths inside the profile's
// plugin tables are relative to the profile's directory.
//
// With `bundle_config` (the edgesync.toml of an applied fleet bundle, see
// agent/fleet.h), that file takes the profile's place: it (over its own
// agent.profile, if it names one) is the base this file is laid over, and
// this file's agent.profile is not used.
// Files (the profile, the bundle's configuration) are read through `env`.
//
// Each kafka.properties value is checked with `check_kafka_property`:
// librdkafka's own check by default. The broker plugin passes nullptr (no
// check), so that librdkafka is not loaded into the broker; the agent
// checks the same file when it loads it, and does not start on a bad value.
using KafkaPropertyCheck = Status (*)(const std::string& key, const std::string& value);
Result<Config> ParseConfig(const std::string& toml_text, const std::string& origin,
                           const std::string& bundle_config = "", Env* env = Env::Default(),
                           KafkaPropertyCheck check_kafka_property = CheckProducerProperty);
// What any device refuses in a fleet bundle's or a profile's TOML `text`
// (named `origin`): text nested too deep (toml_bounds.h), a syntax error,
// keys only the device file may set, and kafka.properties that load code,
// run programs, read files or change the connection. For `bundle sign` and
// `bundle verify`, which have no device file to check the whole against.
Status CheckFleetToml(const std::string& text, const std::string& origin);
// ParseConfig of the file, then checks that the files it names are readable.
Result<Config> LoadConfig(const std::string& path, const std::string& bundle_config = "",
                          Env* env = Env::Default(),
                          KafkaPropertyCheck check_kafka_property = CheckProducerProperty);
// The password: the first line of `path`, without its line end. `key`
// names the option in errors.
Result<std::string> ReadPasswordFile(const std::string& path, const std::string& key = "mqtt.password_file",
                                     Env* env = Env::Default());
// librdkafka properties for the [kafka] settings (typed ones first, then
// kafka.properties, which win); reads the SASL password file.
Result<std::vector<std::pair<std::string, std::string>>> KafkaProperties(const Config& config,
                                                                         Env* env = Env::Default());

// The reference of every option, as a Markdown table.
std::string ConfigReference();

// Where the device's signing key is: agent.device_key, else <state_dir>/device.key.
std::string DeviceKeyPath(const std::string& state_dir, const std::string& device_key);
std::string DeviceKeyPath(const Config& config);

}  // namespace edgesync

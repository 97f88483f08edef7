#include "agent/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "agent/toml_bounds.h"
#include "base/env.h"
#include "format/crypto.h"
#include "format/envelope.h"
#include "format/identity.h"
#include "plugins/registry.h"
#include "plugins/route.h"
#include "plugins/settings.h"
#include "sync/uploader.h"

namespace edgesync {
namespace {

// Every option: the modules' tables and the agent's own.
const OptionTable<Config>& Options() {
  using C = Config;
  static const auto* table = &(*new OptionTable<Config>())  // never freed: a process-long constant
      .String("agent.device_id", &C::device_id, "This device's id: Kafka message key and part of every batch header. 1-255 bytes.", {}, true)
      .String("agent.profile", &C::profile, "A fleet profile (plugins/profiles/) this file is laid over: its streams and plugins, with this file's keys winning and its [[streams]] replacing the profile's of the same name. Relative to this file's directory.")
      .String("agent.state_dir", &C::state_dir, "Directory for the journal and the store (created if missing, mode 0700).")
      .String("agent.device_key", &C::device_key, "This device's Ed25519 signing key (PEM), which signs every batch; empty: <state_dir>/device.key. Made on first start (mode 0600), with its enrolment file beside it (device.pub) for the central side's --device-keys directory. Never replaced: a bundle cannot set it.")
      .String("agent.log_level", &C::log_level, "Log level on stderr.", {"trace", "debug", "info", "warn", "error", "critical", "off"})
      .Seconds("agent.shutdown_timeout", &C::shutdown_timeout, "On SIGTERM/SIGINT, how long to keep uploading before exiting; the rest stays in the store.")
      .Seconds("agent.stats_interval", &C::stats_interval, "Interval of the one-line counters in the log; 0 turns them off.")
      .Seconds("agent.heartbeat_interval", &C::heartbeat_interval, "Interval of the health records (counters, buffer, connection states, last errors) the agent sends on its own stream `_agent`; 0 turns them off.")
      .String("agent.health_topic", &C::health_topic, "Kafka topic of the health records.")
      .Include(&C::mqtt, MqttSettings::Options())
      .Size("mqtt.max_payload", &C::mqtt_max_payload, "A larger payload goes to the dead-letter stream, cut to this size.", 1, 16 << 20)
      .String("mqtt.unmatched", &C::mqtt_unmatched, "A message no stream claims (see mqtt.subscribe): \"dead-letter\" or \"drop\".", {"dead-letter", "drop"})
      .List("mqtt.subscribe", &C::mqtt_subscribe, "Topic filters to subscribe to besides the streams' own (e.g. [\"#\"] to see everything).")
      .String("mqtt.mode", &C::mqtt_mode, "How events reach the agent. \"client\": the agent subscribes to the broker as an MQTT client (any broker). \"broker-plugin\": the edgesync plugin inside the local mosquitto 2.0 (plugin_opt_config naming this file) writes each event to the spool (<state_dir>/spool) before the publisher's PUBACK, and the agent reads it from there, opening no MQTT connection (docs/operating.md, \"Ingest modes\"). Device file only (the plugin reads no profile or bundle).", {"client", "broker-plugin"})
      .Size("mqtt.spool_max_bytes", &C::spool_max_bytes, "broker-plugin mode: the most the spool may hold; past it the plugin refuses publishes (no PUBACK: publishers send them again) until the agent has read it down. At least 2 x mqtt.max_payload + 64KiB. Device file only.", 64 << 10, int64_t{1} << 40)
      .Include(&C::buffer, StoreLimits::Options())
      .Include(&C::batch, BatchLimits::Options())
      .Int("batch.zstd_level", &C::zstd_level, "zstd compression level (1-19).", 1, 19)
      .String("batch.dictionary", &C::batch_dictionary, "zstd dictionary file (made by `edgesync dict train`): much smaller small batches. The central side needs the same file (`edgesync-unpack --dict-dir`).")
      .String("encryption.public_key", &C::encryption_public_key, "The central service's X25519 public key (PEM, from `edgesync keygen`). Set: every batch is sealed so that only the matching private key opens it, and the journal is encrypted too. The device holds no key that opens its batches.")
      .String("encryption.journal_key", &C::encryption_journal_key, "The journal's own key (32 random bytes, created mode 0600 if missing). Default: <state_dir>/journal.key; put it on a separate protected medium if you have one.")
      .String("dead_letter.kafka_topic", &C::dead_letter_topic, "Kafka topic of the dead-letter stream (reasons in docs/operating.md).")
      .String("metrics.textfile", &C::metrics_textfile, "A Prometheus file for node_exporter's textfile collector (a `.prom` name in its directory, e.g. /var/lib/prometheus/node-exporter/edgesync.prom), rewritten atomically every metrics.interval with the health records' counters. Empty: none.")
      .Seconds("metrics.interval", &C::metrics_interval, "Interval of the metrics file's updates.")
      .String("plugins.dir", &C::plugins_dir, "Directory external plugins (`type = \"external\"`, shared objects) are loaded from; only from here. Relative to this file's directory.")
      .List("fleet.public_keys", &C::fleet_public_keys, "The fleet's Ed25519 public keys (PEM files, `edgesync bundle keygen`): set, the agent takes signed configuration bundles (docs/fleet.md). Empty: off.")
      .String("fleet.drop_dir", &C::fleet_drop_dir, "Directory the fleet's update channel drops bundles into, as *.bundle files (write elsewhere, then rename in). Taken within a second, then removed.")
      .String("fleet.mqtt_topic", &C::fleet_mqtt_topic, "Topic on the local broker where bundles arrive, retained (\"{device_id}\" is replaced by agent.device_id), e.g. \"fleet/config/{device_id}\" or a group's topic. At most mqtt.max_payload bytes.")
      .Seconds("fleet.probation", &C::fleet_probation, "How long a new bundle's health is watched before it counts as good; a failure in that time rolls back to the last good bundle.")
      .String("kafka.brokers", &C::kafka_brokers, "Kafka bootstrap servers, host:port[,host:port...].", {}, true)
      .String("kafka.security_protocol", &C::kafka_security_protocol, "How to reach the brokers: plaintext, ssl, sasl_plaintext or sasl_ssl.", {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"})
      .String("kafka.ssl_ca_file", &C::kafka_ssl_ca_file, "CA certificate(s) to verify the brokers with (ssl, sasl_ssl). Default: the system's.")
      .String("kafka.ssl_cert_file", &C::kafka_ssl_cert_file, "Client certificate for mutual TLS (with ssl_key_file).")
      .String("kafka.ssl_key_file", &C::kafka_ssl_key_file, "Client private key for mutual TLS (with ssl_cert_file).")
      .String("kafka.sasl_mechanism", &C::kafka_sasl_mechanism, "SASL mechanism (sasl_plaintext, sasl_ssl): PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.", {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"})
      .String("kafka.sasl_username", &C::kafka_sasl_username, "SASL user name.")
      .String("kafka.sasl_password_file", &C::kafka_sasl_password_file, "File holding the SASL password (its first line); never in the config or the log.")
      .Include(&C::upload, UploadLimits::Options())
      .List("kafka.allow_unsafe_properties", &C::kafka_allow_unsafe_properties, "kafka.properties that load code, run a program or read a file (plugin.library.paths, ssl.engine.location, ssl.providers, sasl.kerberos.kinit.cmd, ssl.*.location, ...) are refused unless named here. Only in the device's own file.");
  return *table;
}

class Problems {
 public:
  explicit Problems(std::string origin) : origin_(std::move(origin)) {}
  void Add(const toml::source_region& where, const std::string& key, const std::string& what) {
    std::ostringstream s;
    s << (where.path ? *where.path : origin_);
    if (where.begin.line > 0) s << ":" << where.begin.line << ":" << where.begin.column;
    s << ": " << key << ": " << what;
    lines_.push_back(s.str());
  }
  void Add(const std::string& key, const std::string& what) { lines_.push_back(origin_ + ": " + key + ": " + what); }
  void AddLine(std::string line) { lines_.push_back(std::move(line)); }
  bool empty() const { return lines_.empty(); }
  std::string Join() const {
    std::string out;
    for (const auto& l : lines_) out += (out.empty() ? "" : "\n") + l;
    return out;
  }

 private:
  std::string origin_;
  std::vector<std::string> lines_;
};

bool ValidStreamName(const std::string& name) {
  if (name.empty() || name.size() > 64 || name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

void ParseStreams(const toml::table& root, Config* cfg, Problems* p) {
  const toml::node* node = root.get("streams");
  if (node == nullptr) {
    p->Add("streams", "at least one [[streams]] table is required");
    return;
  }
  const toml::array* arr = node->as_array();
  if (arr == nullptr || !arr->is_array_of_tables()) {
    p->Add(node->source(), "streams", "must be an array of tables ([[streams]])");
    return;
  }
  std::set<std::string> names;
  for (size_t i = 0; i < arr->size(); ++i) {
    const toml::table& t = *(*arr)[i].as_table();
    std::string key = "streams[" + std::to_string(i) + "]";
    StreamConfig s;
    for (const auto& [k, v] : t) {
      std::string field(k.str());
      std::string fkey = key + "." + field;
      if (field == "name") {
        auto name = v.value<std::string>();
        if (!name || !ValidStreamName(*name)) {
          p->Add(v.source(), fkey, "must be 1-64 characters of A-Z a-z 0-9 . _ -");
        } else if (*name == kDeadLetterStream || *name == kAgentStream) {
          p->Add(v.source(), fkey, "\"" + *name + "\" is a built-in stream (dead letters, health records); choose another name");
        } else if (!names.insert(*name).second) {
          p->Add(v.source(), fkey, "stream \"" + *name + "\" is defined twice");
        } else {
          s.name = *name;
        }
      } else if (field == "topics") {
        const toml::array* ta = v.as_array();
        if (ta == nullptr || ta->empty()) {
          p->Add(v.source(), fkey, "must be a non-empty array of MQTT topic filters");
          continue;
        }
        for (const auto& f : *ta) {
          auto filter = f.value<std::string>();
          if (!filter) {
            p->Add(f.source(), fkey, "topic filters are strings");
            continue;
          }
          Status st = ValidateTopicFilter(*filter);
          if (!st.ok()) {
            p->Add(f.source(), fkey, st.message());
          } else {
            s.topics.push_back(*filter);
          }
        }
      } else if (field == "kafka_topic") {
        auto topic = v.value<std::string>();
        if (!topic || topic->empty() || topic->size() > 249) {
          p->Add(v.source(), fkey, "must be a Kafka topic name (1-249 characters)");
        } else {
          s.kafka_topic = *topic;
        }
      } else if (field == "format") {
        auto fmt = v.value<std::string>();
        if (fmt == "json") {
          s.json = true;
        } else if (fmt != "raw") {
          p->Add(v.source(), fkey, "must be \"raw\" (any bytes) or \"json\" (invalid JSON is dead-lettered)");
        }
      } else if (field == "priority") {
        std::optional<Priority> prio = ParsePriority(v.value<std::string>().value_or(""));
        if (prio) {
          s.priority = *prio;
        } else {
          p->Add(v.source(), fkey, "must be \"high\", \"normal\" or \"low\"");
        }
      } else if (field == "plugins" || field == "skip_plugins") {
        std::vector<std::string>& list = field == "plugins" ? s.plugins : s.skip_plugins;
        const toml::array* pa = v.as_array();
        bool ok = pa != nullptr;
        if (ok) {
          for (const toml::node& n : *pa) {
            if (!n.is_string()) ok = false;
            else list.push_back(*n.value<std::string>());
          }
        }
        if (!ok) p->Add(v.source(), fkey, "must be an array of plugin names ([plugins.NAME])");
      } else {
        p->Add(v.source(), fkey, "unknown key (stream keys: name, topics, kafka_topic, priority, format, plugins, skip_plugins)");
      }
    }
    if (!t.contains("name")) p->Add(t.source(), key, "name is required");
    if (!t.contains("topics")) p->Add(t.source(), key, "topics is required");
    if (s.kafka_topic.empty() && !s.name.empty() && !t.contains("kafka_topic")) {
      s.kafka_topic = "edge." + s.name;  // the documented default
    }
    cfg->streams.push_back(std::move(s));
  }
}

std::string DirOf(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

std::string Resolve(const std::string& path, const std::string& dir) {
  return path.empty() || path[0] == '/' ? path : dir + "/" + path;
}

// Lays `top` over `base`: see ParseConfig.
void Overlay(toml::table& base, const toml::table& top) {
  for (const auto& [k, v] : top) {
    toml::node* b = base.get(k);
    if (k.str() == "streams" && b != nullptr && b->is_array_of_tables() && v.is_array_of_tables()) {
      toml::array& streams = *b->as_array();
      for (const toml::node& s : *v.as_array()) {
        const auto name = s.as_table()->get("name") ? s.as_table()->get("name")->value<std::string>() : std::nullopt;
        bool replaced = false;
        for (toml::node& old : streams) {
          const toml::node* old_name = old.as_table()->get("name");
          if (name && old_name && old_name->value<std::string>() == name) {
            *old.as_table() = *s.as_table();
            replaced = true;
          }
        }
        if (!replaced) streams.push_back(*s.as_table());
      }
    } else if (b != nullptr && b->is_table() && v.is_table()) {
      Overlay(*b->as_table(), *v.as_table());
    } else {
      base.insert_or_assign(k, v);
    }
  }
}

void ParsePlugins(const toml::table& root, const std::string& origin, Config* cfg, Problems* p, Env* env) {
  const toml::table* plugins = root["plugins"].as_table();
  if (root.get("plugins") != nullptr && plugins == nullptr) {
    p->Add(root.get("plugins")->source(), "plugins", "must be a table: plugins.dir and [plugins.NAME] tables");
    return;
  }
  if (plugins == nullptr) return;
  for (const auto& [k, v] : *plugins) {
    const std::string name(k.str());
    if (name == "dir") continue;  // an option (Options())
    const std::string key = "plugins." + name;
    const toml::table* t = v.as_table();
    if (t == nullptr) {
      p->Add(v.source(), key, "must be a table with the plugin's type and settings, or plugins.dir");
      continue;
    }
    if (!ValidStreamName(name)) {
      p->Add(v.source(), key, "plugin names are 1-64 characters of A-Z a-z 0-9 . _ -");
      continue;
    }
    PluginConfig pc;
    pc.name = name;
    const toml::node* type = t->get("type");
    if (type == nullptr || !type->is_string()) {
      p->Add(t->source(), key + ".type", std::string("is required: one of ") + PluginTypes());
      continue;
    }
    pc.type = *type->value<std::string>();
    if (const toml::node* every = t->get("every_stream")) {
      if (!every->is_boolean()) {
        p->Add(every->source(), key + ".every_stream", "must be true or false");
      } else {
        pc.every_stream = *every->value<bool>();
      }
    }
    // Relative paths in a table start where the file it came from is.
    const std::string dir = DirOf(t->source().path ? *t->source().path : origin);
    Settings s(*t, key);
    Result<std::shared_ptr<const Plugin>> made = MakePlugin(pc.type, s, dir, Resolve(cfg->plugins_dir, DirOf(origin)), env);
    if (!made.ok()) {
      for (const std::string& line : s.problems()) p->AddLine(line);
      if (s.problems().empty()) p->Add(t->source(), key, made.status().message());
      continue;
    }
    pc.plugin = std::move(made).value();
    cfg->plugins.push_back(std::move(pc));
  }
}

// Every name a chain or opt-out uses must be a plugin; opt-outs only of
// every_stream ones.
void CheckChains(const Config& cfg, Problems* p) {
  for (size_t i = 0; i < cfg.streams.size(); ++i) {
    const StreamConfig& s = cfg.streams[i];
    const std::string key = "streams[" + std::to_string(i) + "]";
    for (const std::string& n : s.plugins) {
      if (cfg.FindPlugin(n) == nullptr) p->Add(key + ".plugins", "no plugin \"" + n + "\" ([plugins." + n + "] is missing)");
    }
    for (const std::string& n : s.skip_plugins) {
      const PluginConfig* pc = cfg.FindPlugin(n);
      if (pc == nullptr) {
        p->Add(key + ".skip_plugins", "no plugin \"" + n + "\"");
      } else if (!pc->every_stream) {
        p->Add(key + ".skip_plugins", "\"" + n + "\" is not an every_stream plugin: leave it out of plugins instead");
      }
    }
  }
}

}  // namespace

const PluginConfig* Config::FindPlugin(const std::string& name) const {
  for (const PluginConfig& p : plugins) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

std::vector<std::shared_ptr<const Plugin>> Config::Chain(size_t i) const {
  std::vector<std::shared_ptr<const Plugin>> chain;
  const StreamConfig* s = i < streams.size() ? &streams[i] : nullptr;
  if (s != nullptr) {
    for (const std::string& n : s->plugins) {
      if (const PluginConfig* pc = FindPlugin(n)) chain.push_back(pc->plugin);
    }
  }
  // The every_stream ones, pci last: no plugin after it can put card data
  // back (a Lua script copying a field into the topic, say).
  for (const bool pci : {false, true}) {
    for (const PluginConfig& pc : plugins) {
      if (!pc.every_stream || (pc.type == "pci") != pci) continue;
      if (s != nullptr && (std::find(s->plugins.begin(), s->plugins.end(), pc.name) != s->plugins.end() ||
                           std::find(s->skip_plugins.begin(), s->skip_plugins.end(), pc.name) != s->skip_plugins.end())) {
        continue;
      }
      chain.push_back(pc.plugin);
    }
  }
  return chain;
}

bool SameButPlugins(const Config& a, const Config& b) {
  auto strip = [](Config c) {
    c.log_level.clear();  // main sets it after a reload
    c.plugins.clear();
    c.plugins_dir.clear();
    c.profile.clear();
    for (StreamConfig& s : c.streams) {
      s.plugins.clear();
      s.skip_plugins.clear();
    }
    return c;
  };
  return strip(a) == strip(b);
}

namespace {

// toml::parse, with the text's depth checked first (toml_bounds.h) and the
// parser's exception turned into a Status.
Result<toml::table> ParseToml(const std::string& text, const std::string& origin) {
  EDGESYNC_RETURN_IF_ERROR(CheckTomlDepth(text, origin));
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    Problems p(origin);
    p.Add(e.source(), "syntax", std::string(e.description()));
    return Status::InvalidArgument(p.Join());
  }
}

// Keys only the device's own file may set: who the device is, where its
// state, journal key and native plugins live, what it lets librdkafka do,
// where bundles come from (agent/fleet.h), and how events reach the agent
// (the broker plugin reads the device file alone). A profile or a fleet bundle
// that sets one is refused: the device file would win anyway, so such a
// key says the bundle was written for another device, or against this one.
constexpr const char* kDeviceOnlyKeys[] = {"agent.device_id", "agent.state_dir", "agent.device_key",
                                           "encryption.journal_key",
                                           "plugins.dir", "kafka.allow_unsafe_properties", "fleet",
                                           // The broker plugin reads only the device file: a layer
                                           // that changed these would split the agent from it.
                                           "mqtt.mode", "mqtt.spool_max_bytes"};

// librdkafka properties that load code into the agent, run a program or
// read a file the value names: what it does, or nullptr for the others.
// Refused wherever they are set unless the device file itself sets them and
// lists them in kafka.allow_unsafe_properties (the typed kafka.ssl_*_file
// keys read the usual TLS files, checked as regular files of sane size).
const char* UnsafeKafkaProperty(std::string_view name) {
  static const std::pair<std::string_view, const char*> kUnsafe[] = {
      {"plugin.library.paths", "loads shared libraries into the agent"},
      {"ssl.engine.location", "loads an OpenSSL engine (code) into the agent"},
      {"ssl.engine.id", "selects an OpenSSL engine to load"},
      {"ssl.providers", "loads OpenSSL providers (code) into the agent"},
      {"sasl.kerberos.kinit.cmd", "runs a shell command"},
      {"sasl.kerberos.keytab", "reads a file"},
      {"ssl.ca.location", "reads a file (use kafka.ssl_ca_file)"},
      {"ssl.certificate.location", "reads a file (use kafka.ssl_cert_file)"},
      {"ssl.key.location", "reads a file (use kafka.ssl_key_file)"},
      {"ssl.crl.location", "reads a file"},
      {"ssl.keystore.location", "reads a file"},
      {"ssl.ca.certificate.stores", "reads a certificate store"},
  };
  for (const auto& [n, why] : kUnsafe) {
    if (n == name) return why;
  }
  return nullptr;
}

// librdkafka properties that say where the brokers are and how the
// connection is secured. The device file's typed keys for these win over
// a bundle's, and properties win over typed keys: so only the device file
// may set them.
bool ConnectionKafkaProperty(std::string_view name) {
  for (std::string_view prefix : {"ssl.", "ssl_", "sasl.", "enable.ssl.", "enable_sasl_"}) {
    if (name.starts_with(prefix)) return true;
  }
  return name == "bootstrap.servers" || name == "metadata.broker.list" || name == "security.protocol";
}

// Refuses, in `t` (a profile's or a fleet bundle's table), what only the
// device file may set: kDeviceOnlyKeys (a key or a whole table), and the
// librdkafka properties that load code, run programs, read files or change
// the connection.
void CheckFleetLayer(const toml::table& t, Problems* p) {
  for (const char* key : kDeviceOnlyKeys) {
    if (const toml::node* n = t.at_path(key).node()) {
      p->Add(n->source(), key, "only the device's own file may set this (a profile or fleet bundle may not)");
    }
  }
  const toml::table* props = t.at_path("kafka.properties").as_table();
  if (props == nullptr) return;
  for (const auto& [k, v] : *props) {
    const std::string key = "kafka.properties.\"" + std::string(k.str()) + "\"";
    if (const char* why = UnsafeKafkaProperty(k.str())) {
      p->Add(v.source(), key, std::string(why) + ": a profile or fleet bundle may never set it");
    } else if (ConnectionKafkaProperty(k.str())) {
      p->Add(v.source(), key, "the brokers and the connection's security belong to the device file: a profile or "
                              "fleet bundle may not set them");
    }
  }
}

// Lays the profile `t` names (agent.profile, relative to `origin`'s
// directory) under `t`. Profiles do not nest.
Status LayProfileUnder(toml::table* t, const std::string& origin, Env* env) {
  const toml::node* prof = t->at_path("agent.profile").node();
  if (prof == nullptr || !prof->is_string()) return Status::OK();
  const std::string path = Resolve(*prof->value<std::string>(), DirOf(origin));
  Problems p(origin);
  Result<std::string> text = env->ReadFile(path, kMaxConfigFileBytes);
  if (!text.ok()) {
    p.Add(prof->source(), "agent.profile", "cannot read " + path + ": " + text.status().ToString());
    return Status::InvalidArgument(p.Join());
  }
  Result<toml::table> parsed = ParseToml(*text, path);
  if (!parsed.ok()) return parsed.status();
  toml::table merged = std::move(parsed).value();
  if (merged.at_path("agent.profile")) {
    p.Add(merged.at_path("agent.profile").node()->source(), "agent.profile", "a profile cannot name another profile");
  }
  CheckFleetLayer(merged, &p);
  if (!p.empty()) return Status::InvalidArgument(p.Join());
  Overlay(merged, *t);
  *t = std::move(merged);
  return Status::OK();
}

}  // namespace

namespace {

// CheckFleetLayer over a whole file's table: its problems as one Status.
Status CheckFleetFile(const toml::table& t, const std::string& origin) {
  Problems p(origin);
  CheckFleetLayer(t, &p);
  return p.empty() ? Status::OK() : Status::InvalidArgument(p.Join());
}

}  // namespace

Status CheckFleetToml(const std::string& text, const std::string& origin) {
  Result<toml::table> t = ParseToml(text, origin);
  if (!t.ok()) return t.status();
  return CheckFleetFile(*t, origin);
}

Result<Config> ParseConfig(const std::string& toml_text, const std::string& origin, const std::string& bundle_config,
                           Env* env, KafkaPropertyCheck check_kafka_property) {
  Result<toml::table> parsed = ParseToml(toml_text, origin);
  if (!parsed.ok()) return parsed.status();
  toml::table root = std::move(parsed).value();
  if (bundle_config.empty()) {
    EDGESYNC_RETURN_IF_ERROR(LayProfileUnder(&root, origin, env));
  } else {
    // A fleet bundle's configuration takes the profile's place.
    Result<std::string> text = env->ReadFile(bundle_config, kMaxConfigFileBytes);
    if (!text.ok()) return Status::InvalidArgument(bundle_config + ": cannot read: " + text.status().ToString());
    Result<toml::table> base = ParseToml(*text, bundle_config);
    if (!base.ok()) return base.status();
    EDGESYNC_RETURN_IF_ERROR(CheckFleetFile(*base, bundle_config));
    EDGESYNC_RETURN_IF_ERROR(LayProfileUnder(&base.value(), bundle_config, env));
    if (toml::table* agent = root["agent"].as_table()) agent->erase("profile");
    Overlay(base.value(), root);
    root = std::move(base).value();
  }

  Config cfg;
  Problems p(origin);
  std::set<std::string> known;
  for (const OptionDecl<Config>& o : Options().decls()) {
    known.insert(o.key);
    toml::node_view<const toml::node> v = std::as_const(root).at_path(o.key);
    if (!v) {
      if (o.required) p.Add(o.key, "is required");
      continue;
    }
    const toml::node& n = *v.node();
    OptionValue value;
    std::string why;
    if (!ReadOptionValue(n, o.kind, o.min, o.max, o.choices, o.required, &value, &why)) {
      p.Add(n.source(), o.key, why);
    } else {
      o.set(cfg, std::move(value));
    }
  }

  // Unknown keys are mistakes (a typo must not silently fall back to a default).
  for (const auto& [section, node] : root) {
    std::string sec(section.str());
    if (sec == "streams" || sec == "plugins") continue;  // checked by ParseStreams, ParsePlugins
    const toml::table* t = node.as_table();
    if (t == nullptr) {
      p.Add(node.source(), sec, "unknown key (sections: agent, mqtt, buffer, batch, encryption, dead_letter, kafka, metrics, fleet, plugins, streams)");
      continue;
    }
    for (const auto& [k, v] : *t) {
      std::string key = sec + "." + std::string(k.str());
      if (key == "kafka.properties") {
        const toml::table* props = v.as_table();
        if (props == nullptr) {
          p.Add(v.source(), key, "must be a table of librdkafka properties");
          continue;
        }
        for (const auto& [pk, pv] : *props) {
          std::string value;
          if (auto s = pv.value<std::string>(); s && pv.is_string()) {
            value = *s;
          } else if (auto i = pv.value<int64_t>(); i && pv.is_integer()) {
            value = std::to_string(*i);
          } else if (auto b = pv.value<bool>(); b && pv.is_boolean()) {
            value = *b ? "true" : "false";
          } else {
            p.Add(pv.source(), key + "." + std::string(pk.str()), "must be a string, integer or boolean");
            continue;
          }
          // Before librdkafka sees it: setting plugin.library.paths loads the library.
          const char* unsafe = UnsafeKafkaProperty(pk.str());
          if (unsafe != nullptr && std::find(cfg.kafka_allow_unsafe_properties.begin(),
                                             cfg.kafka_allow_unsafe_properties.end(),
                                             pk.str()) == cfg.kafka_allow_unsafe_properties.end()) {
            p.Add(pv.source(), key + ".\"" + std::string(pk.str()) + "\"",
                  std::string(unsafe) + ": refused; if this device really needs it, list it in "
                                        "kafka.allow_unsafe_properties in the device's own file");
            continue;
          }
          Status ok = check_kafka_property != nullptr ? check_kafka_property(std::string(pk.str()), value)
                                                      : Status::OK();
          if (!ok.ok()) {
            p.Add(pv.source(), key + "." + std::string(pk.str()), ok.message());
            continue;
          }
          cfg.kafka_properties.emplace_back(std::string(pk.str()), value);
        }
      } else if (known.count(key) == 0) {
        p.Add(v.source(), key, "unknown key");
      }
    }
  }
  ParseStreams(root, &cfg, &p);
  ParsePlugins(root, origin, &cfg, &p, env);
  CheckChains(cfg, &p);
  // (Empty: already reported as required.)
  if (const std::string problem = DeviceIdProblem(cfg.device_id); !cfg.device_id.empty() && !problem.empty()) {
    p.Add("agent.device_id", problem);
  }
  for (const std::string& f : cfg.mqtt_subscribe) {
    Status st = ValidateTopicFilter(f);
    if (!st.ok()) p.Add("mqtt.subscribe", st.message());
  }
  if (cfg.mqtt.cert_file.empty() != cfg.mqtt.key_file.empty()) {
    p.Add("mqtt.cert_file", "cert_file and key_file go together (mutual TLS): set both or neither");
  }
  if (!cfg.mqtt.cert_file.empty() && cfg.mqtt.ca_file.empty()) {
    p.Add("mqtt.ca_file", "a client certificate needs TLS: set ca_file too");
  }
  if (!cfg.mqtt.password_file.empty() && cfg.mqtt.username.empty()) {
    p.Add("mqtt.password_file", "a password needs mqtt.username");
  }
  const bool sasl = cfg.kafka_security_protocol.rfind("sasl_", 0) == 0;
  const bool ssl = cfg.kafka_security_protocol == "ssl" || cfg.kafka_security_protocol == "sasl_ssl";
  if (sasl && (cfg.kafka_sasl_mechanism.empty() || cfg.kafka_sasl_username.empty() ||
               cfg.kafka_sasl_password_file.empty())) {
    p.Add("kafka.security_protocol", cfg.kafka_security_protocol +
                                         " needs kafka.sasl_mechanism, kafka.sasl_username and kafka.sasl_password_file");
  }
  if (!sasl && (!cfg.kafka_sasl_mechanism.empty() || !cfg.kafka_sasl_username.empty() ||
                !cfg.kafka_sasl_password_file.empty())) {
    p.Add("kafka.sasl_mechanism", "SASL settings need kafka.security_protocol = \"sasl_plaintext\" or \"sasl_ssl\"");
  }
  if (!ssl && (!cfg.kafka_ssl_ca_file.empty() || !cfg.kafka_ssl_cert_file.empty() ||
               !cfg.kafka_ssl_key_file.empty())) {
    p.Add("kafka.ssl_ca_file", "TLS files need kafka.security_protocol = \"ssl\" or \"sasl_ssl\"");
  }
  if (cfg.kafka_ssl_cert_file.empty() != cfg.kafka_ssl_key_file.empty()) {
    p.Add("kafka.ssl_cert_file", "ssl_cert_file and ssl_key_file go together (mutual TLS): set both or neither");
  }
  if (cfg.upload.blocked_retry_us < 1'000'000) p.Add("kafka.blocked_retry_interval", "must be at least 1s");
  if (cfg.upload.backoff_max_us < 250'000) p.Add("kafka.retry_backoff_max", "must be at least 250ms");
  if (cfg.health_topic.empty() || cfg.health_topic.size() > 249) {
    p.Add("agent.health_topic", "must be a Kafka topic name (1-249 characters)");
  }
  if (!cfg.metrics_textfile.empty() && !cfg.metrics_textfile.ends_with(".prom")) {
    p.Add("metrics.textfile", "must end in .prom: node_exporter's textfile collector reads only those");
  }
  if (cfg.metrics_interval < 1) p.Add("metrics.interval", "must be at least 1s");
  if (!cfg.fleet_mqtt_topic.empty()) {
    const std::string placeholder = "{device_id}";
    for (size_t at; (at = cfg.fleet_mqtt_topic.find(placeholder)) != std::string::npos;) {
      cfg.fleet_mqtt_topic.replace(at, placeholder.size(), cfg.device_id);
    }
    if (cfg.fleet_mqtt_topic.find_first_of("+#") != std::string::npos) {
      p.Add("fleet.mqtt_topic", "must be one topic, without wildcards (+ #)");
    } else if (Status st = ValidateTopicFilter(cfg.fleet_mqtt_topic); !st.ok()) {
      p.Add("fleet.mqtt_topic", st.message());
    }
  }
  if (!cfg.fleet_public_keys.empty() && cfg.fleet_drop_dir.empty() && cfg.fleet_mqtt_topic.empty()) {
    p.Add("fleet.public_keys", "bundles need a way in: set fleet.drop_dir, fleet.mqtt_topic or both");
  }
  if (cfg.fleet_public_keys.empty() && (!cfg.fleet_drop_dir.empty() || !cfg.fleet_mqtt_topic.empty())) {
    p.Add("fleet.public_keys", "bundles are taken only when signed: set the fleet's public key(s)");
  }
  if (cfg.fleet_probation < 1) p.Add("fleet.probation", "must be at least 1s");
  if (cfg.mqtt.status_topic.empty()) cfg.mqtt.status_topic = "edgesync/" + cfg.mqtt.client_id + "/status";
  if (cfg.batch.sync_interval_us <= 0) p.Add("buffer.sync_interval", "must be more than 0");
  if (cfg.mqtt.max_packet_size < cfg.mqtt_max_payload + (64 << 10)) {
    p.Add("mqtt.max_packet_size", "must be at least mqtt.max_payload + 64KiB (" +
                                      std::to_string(cfg.mqtt_max_payload + (64 << 10)) +
                                      " bytes): a payload just over max_payload must still reach the dead-letter stream");
  }
  // A spool record holds a payload cut a little past max_payload, user
  // properties of up to max_payload bytes and the topic: a quota smaller
  // than that would refuse such a publish for ever (the publisher resends).
  if (cfg.mqtt_mode == "broker-plugin" && cfg.spool_max_bytes < 2 * cfg.mqtt_max_payload + (64 << 10)) {
    p.Add("mqtt.spool_max_bytes", "must be at least 2 x mqtt.max_payload + 64KiB (" +
                                      std::to_string(2 * cfg.mqtt_max_payload + (64 << 10)) +
                                      " bytes), what one spooled message can take: raise it or lower mqtt.max_payload");
  }
  if (cfg.batch.max_age_us <= 0) p.Add("batch.max_age", "must be more than 0");
  if (cfg.buffer.max_bytes < 2 * cfg.batch.max_bytes) {
    p.Add("buffer.max_bytes", "must hold at least two batches (2 x batch.max_bytes = " +
                                  std::to_string(2 * cfg.batch.max_bytes) + " bytes)");
  }
  // A batch (up to max_bytes plus one record of up to max_payload, with its
  // framing) must fit in one Kafka message even if it does not compress.
  int64_t message_max = 1'000'000;  // librdkafka's default message.max.bytes
  for (const auto& [k, v] : cfg.kafka_properties) {
    if (k == "message.max.bytes") message_max = std::atoll(v.c_str());
  }
  const int64_t worst = static_cast<int64_t>(cfg.batch.max_bytes) + cfg.mqtt_max_payload + 64 * 1024;
  if (worst > message_max) {
    p.Add("batch.max_bytes",
          "batch.max_bytes + mqtt.max_payload (+64 KiB framing) = " + std::to_string(worst) +
              " bytes can exceed one Kafka message (message.max.bytes = " + std::to_string(message_max) +
              "): lower them, or raise kafka.properties.\"message.max.bytes\" and the topics' max.message.bytes");
  }
  if (!p.empty()) return Status::InvalidArgument(p.Join());
  return cfg;
}

Result<Config> LoadConfig(const std::string& path, const std::string& bundle_config, Env* env,
                          KafkaPropertyCheck check_kafka_property) {
  Result<std::string> text = env->ReadFile(path, kMaxConfigFileBytes);
  if (!text.ok()) {
    return Status::InvalidArgument(path + ": cannot read the configuration file (" +
                                   text.status().ToString() + ")");
  }
  Result<Config> cfg = ParseConfig(*text, path, bundle_config, env, check_kafka_property);
  if (!cfg.ok()) return cfg;
  // Files the agent will need: say now, not at the first connection.
  Problems p(path);
  const std::pair<const char*, const std::string*> files[] = {
      {"mqtt.password_file", &cfg->mqtt.password_file}, {"mqtt.ca_file", &cfg->mqtt.ca_file},
      {"mqtt.cert_file", &cfg->mqtt.cert_file}, {"mqtt.key_file", &cfg->mqtt.key_file},
      {"encryption.public_key", &cfg->encryption_public_key},
      {"batch.dictionary", &cfg->batch_dictionary}, {"kafka.ssl_ca_file", &cfg->kafka_ssl_ca_file},
      {"kafka.ssl_cert_file", &cfg->kafka_ssl_cert_file}, {"kafka.ssl_key_file", &cfg->kafka_ssl_key_file},
      {"kafka.sasl_password_file", &cfg->kafka_sasl_password_file}};
  // Read whole, as the agent will: only regular files, of a sane size, and
  // never a FIFO or device that would block or never end.
  for (const auto& [key, file] : files) {
    if (file->empty()) continue;
    Result<std::string> bytes = env->ReadFile(*file, kMaxConfigFileBytes);
    if (!bytes.ok()) p.Add(key, "cannot read " + *file + ": " + bytes.status().message());
  }
  for (const std::string& file : cfg->fleet_public_keys) {
    Result<std::string> bytes = env->ReadFile(file, kMaxKeyFileBytes);
    if (!bytes.ok()) p.Add("fleet.public_keys", "cannot read " + file + ": " + bytes.status().message());
  }
  if (!cfg->fleet_drop_dir.empty() && !env->Exists(cfg->fleet_drop_dir)) {
    p.Add("fleet.drop_dir", "the directory " + cfg->fleet_drop_dir + " does not exist (create it, writable by edgesync)");
  }
  if (!cfg->metrics_textfile.empty() && !env->Exists(DirName(cfg->metrics_textfile))) {
    p.Add("metrics.textfile", "the directory " + DirName(cfg->metrics_textfile) +
                                  " does not exist (install node_exporter's textfile collector, or create it)");
  }
  // Keys and dictionaries: load them now, so `edgesync check` tells a wrong
  // file from a right one.
  if (p.empty() && !cfg->encryption_public_key.empty()) {
    Result<crypto::Key> k = crypto::ReadPublicKeyFile(env, cfg->encryption_public_key);
    if (!k.ok()) p.Add("encryption.public_key", k.status().message());
  }
  if (p.empty() && !cfg->batch_dictionary.empty()) {
    Result<std::string> bytes = env->ReadFile(cfg->batch_dictionary, kMaxDictionaryBytes);
    Status st = bytes.ok() ? Dictionary::Load(*bytes, static_cast<int>(cfg->zstd_level)).status() : bytes.status();
    if (!st.ok()) p.Add("batch.dictionary", cfg->batch_dictionary + ": " + st.message());
  }
  if (!p.empty()) return Status::InvalidArgument(p.Join());
  return cfg;
}

Result<std::string> ReadPasswordFile(const std::string& path, const std::string& key, Env* env) {
  Result<std::string> text = env->ReadFile(path, kMaxKeyFileBytes);
  if (!text.ok()) return Status::InvalidArgument(key + ": cannot read " + path + ": " + text.status().message());
  std::string line = text->substr(0, text->find('\n'));
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (line.empty()) return Status::InvalidArgument(key + ": " + path + " is empty");
  return line;
}

Result<std::vector<std::pair<std::string, std::string>>> KafkaProperties(const Config& c, Env* env) {
  std::vector<std::pair<std::string, std::string>> props;
  props.emplace_back("security.protocol", c.kafka_security_protocol);
  const std::pair<const char*, const std::string*> typed[] = {
      {"ssl.ca.location", &c.kafka_ssl_ca_file}, {"ssl.certificate.location", &c.kafka_ssl_cert_file},
      {"ssl.key.location", &c.kafka_ssl_key_file}, {"sasl.mechanisms", &c.kafka_sasl_mechanism},
      {"sasl.username", &c.kafka_sasl_username}};
  for (const auto& [name, value] : typed) {
    if (!value->empty()) props.emplace_back(name, *value);
  }
  if (!c.kafka_sasl_password_file.empty()) {
    Result<std::string> pw = ReadPasswordFile(c.kafka_sasl_password_file, "kafka.sasl_password_file", env);
    if (!pw.ok()) return pw.status();
    props.emplace_back("sasl.password", *pw);
  }
  props.insert(props.end(), c.kafka_properties.begin(), c.kafka_properties.end());
  return props;
}

std::string ConfigReference() {
  std::string out = "| key | default | description |\n|---|---|---|\n";
  out += Options().Reference();
  out +=
      "| `kafka.properties.*` | | Any other librdkafka producer property, passed through (it wins over the typed keys above); one librdkafka rejects is an error naming it. Those that load code, run a program or read a file need kafka.allow_unsafe_properties; profiles and bundles may set neither those nor the brokers' address and security. |\n"
      "| `[[streams]] name` | (required) | Stream name, 1-64 of A-Z a-z 0-9 . _ - |\n"
      "| `[[streams]] topics` | (required) | MQTT topic filters (`+`, `#`) whose messages this stream takes; the first stream that matches wins. |\n"
      "| `[[streams]] kafka_topic` | \"edge.<name>\" | Kafka topic the stream's batches go to. |\n"
      "| `[[streams]] priority` | \"normal\" | \"high\", \"normal\" or \"low\": upload order. |\n"
      "| `[[streams]] format` | \"raw\" | \"raw\" (any bytes) or \"json\" (a payload that is not JSON goes to the dead-letter stream). |\n"
      "| `[[streams]] plugins` | [] | The stream's chain: names of `[plugins.NAME]` tables, run in order. |\n"
      "| `[[streams]] skip_plugins` | [] | `every_stream` plugins this stream opts out of (explicitly: nothing is skipped by omission). |\n"
      "| `[plugins.NAME] type` | (required) | The plugin's type: " + PluginTypes() + "; the table's other keys are the type's settings (below). |\n"
      "| `[plugins.NAME] every_stream` | false | Run at the end of every stream's chain, and on dead letters, unless a stream skips it. |\n";
  out += "\n## Plugin types and their settings\n\n" + PluginSettingsReference();
  return out;
}

std::string DeviceKeyPath(const std::string& state_dir, const std::string& device_key) {
  return device_key.empty() ? state_dir + "/device.key" : device_key;
}

std::string DeviceKeyPath(const Config& config) { return DeviceKeyPath(config.state_dir, config.device_key); }

}  // namespace edgesync

#include "agent/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <climits>
#include <cmath>
#include <fstream>
#include <set>
#include <sstream>

#include "plugins/route.h"
#include "sync/uploader.h"

namespace edgesync {
namespace {

enum class Kind { kString, kInt, kSize, kDuration };

// One option, declared once.
struct OptionSpec {
  const char* key;  // dotted path in the file
  Kind kind;
  const char* description;
  std::string Config::*str = nullptr;
  int64_t Config::*num = nullptr;
  double Config::*secs = nullptr;
  int64_t min = 0;
  int64_t max = INT64_MAX;
  std::vector<std::string> choices = {};  // allowed strings, if restricted
  bool required = false;
};

const std::vector<OptionSpec>& Options() {
  static const std::vector<OptionSpec> kOptions = {
      {"agent.device_id", Kind::kString,
       "This device's id: Kafka message key and part of every batch header. Required; 1-255 bytes.",
       &Config::device_id, nullptr, nullptr, 0, INT64_MAX, {}, true},
      {"agent.state_dir", Kind::kString,
       "Directory for the journal and the store (created if missing, mode 0700).",
       &Config::state_dir},
      {"agent.log_level", Kind::kString, "Log level on stderr.", &Config::log_level, nullptr,
       nullptr, 0, INT64_MAX, {"trace", "debug", "info", "warn", "error", "critical", "off"}},
      {"agent.shutdown_timeout", Kind::kDuration,
       "On SIGTERM/SIGINT, how long to keep uploading before exiting; the rest stays in the store.",
       nullptr, nullptr, &Config::shutdown_timeout},
      {"agent.stats_interval", Kind::kDuration,
       "Interval of the one-line counters in the log; 0 turns them off.", nullptr, nullptr,
       &Config::stats_interval},
      {"mqtt.host", Kind::kString, "Broker host (the device's local broker).", &Config::mqtt_host},
      {"mqtt.port", Kind::kInt, "Broker port.", nullptr, &Config::mqtt_port, nullptr, 1, 65535},
      {"mqtt.client_id", Kind::kString,
       "Fixed client id: with clean_session=false the broker keeps our queue while we are away.",
       &Config::mqtt_client_id},
      {"mqtt.keepalive", Kind::kInt, "MQTT keepalive in seconds.", nullptr,
       &Config::mqtt_keepalive, nullptr, 5, 65535},
      {"mqtt.qos", Kind::kInt, "QoS of the subscriptions (1: at least once).", nullptr,
       &Config::mqtt_qos, nullptr, 0, 1},
      {"buffer.sync_interval", Kind::kDuration,
       "Journal fdatasync interval: the most a power cut can take.", nullptr, nullptr,
       &Config::sync_interval},
      {"batch.max_events", Kind::kInt, "A batch is sealed at this many events.", nullptr,
       &Config::batch_max_events, nullptr, 1, 1'000'000},
      {"batch.max_bytes", Kind::kSize,
       "... or at this many bytes before compression (e.g. \"512KiB\").", nullptr,
       &Config::batch_max_bytes, nullptr, 1024, 32 << 20},
      {"batch.max_age", Kind::kDuration, "... or this long after its first event.", nullptr,
       nullptr, &Config::batch_max_age},
      {"batch.zstd_level", Kind::kInt, "zstd compression level (1-19).", nullptr,
       &Config::zstd_level, nullptr, 1, 19},
      {"kafka.brokers", Kind::kString, "Kafka bootstrap servers, host:port[,host:port...]. Required.",
       &Config::kafka_brokers, nullptr, nullptr, 0, INT64_MAX, {}, true},
  };
  return kOptions;
}

std::string DefaultText(const OptionSpec& o) {
  static const Config defaults;
  if (o.required) return "(required)";
  if (o.str) return "\"" + defaults.*(o.str) + "\"";
  if (o.num) return std::to_string(defaults.*(o.num));
  std::ostringstream s;
  s << "\"" << defaults.*(o.secs) << "s\"";
  return s.str();
}

class Problems {
 public:
  explicit Problems(std::string origin) : origin_(std::move(origin)) {}
  void Add(const toml::source_region& where, const std::string& key, const std::string& what) {
    std::ostringstream s;
    s << origin_;
    if (where.begin.line > 0) s << ":" << where.begin.line << ":" << where.begin.column;
    s << ": " << key << ": " << what;
    lines_.push_back(s.str());
  }
  void Add(const std::string& key, const std::string& what) { lines_.push_back(origin_ + ": " + key + ": " + what); }
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

// "250ms", "2s", "5m", "1h", "7d", or a plain number of seconds.
bool ParseDuration(const toml::node& n, double* secs, std::string* why) {
  if (auto v = n.value<double>(); v && (n.is_integer() || n.is_floating_point())) {
    *secs = *v;
  } else if (auto s = n.value<std::string>()) {
    static const std::pair<const char*, double> kUnits[] = {
        {"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}, {"d", 86400}};
    size_t i = 0;
    while (i < s->size() && (std::isdigit(static_cast<unsigned char>((*s)[i])) || (*s)[i] == '.')) ++i;
    std::string digits = s->substr(0, i), unit = s->substr(i);
    double mult = -1;
    for (const auto& [u, m] : kUnits) {
      if (unit == u) mult = m;
    }
    if (digits.empty() || mult < 0) {
      *why = "not a duration: \"" + *s + "\" (use e.g. 500ms, 2s, 5m, 1h, 7d)";
      return false;
    }
    *secs = std::stod(digits) * mult;
  } else {
    *why = "must be a duration (a number of seconds or a string like \"2s\")";
    return false;
  }
  if (!std::isfinite(*secs) || *secs < 0) {
    *why = "must not be negative";
    return false;
  }
  return true;
}

// 1048576, "512KiB", "64MiB", "1GiB", "100KB" (decimal), "100B".
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
      } else if (field == "priority") {
        auto prio = v.value<std::string>();
        if (prio == "high") {
          s.priority = Priority::kHigh;
        } else if (prio == "normal") {
          s.priority = Priority::kNormal;
        } else if (prio == "low") {
          s.priority = Priority::kLow;
        } else {
          p->Add(v.source(), fkey, "must be \"high\", \"normal\" or \"low\"");
        }
      } else {
        p->Add(v.source(), fkey, "unknown key (stream keys: name, topics, kafka_topic, priority)");
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

}  // namespace

Result<Config> ParseConfig(const std::string& toml_text, const std::string& origin) {
  toml::table root;
  try {
    root = toml::parse(toml_text, origin);
  } catch (const toml::parse_error& e) {
    Problems p(origin);
    p.Add(e.source(), "syntax", std::string(e.description()));
    return Status::InvalidArgument(p.Join());
  }

  Config cfg;
  Problems p(origin);
  std::set<std::string> known;
  for (const OptionSpec& o : Options()) {
    known.insert(o.key);
    toml::node_view<const toml::node> v = std::as_const(root).at_path(o.key);
    if (!v) {
      if (o.required) p.Add(o.key, "is required");
      continue;
    }
    const toml::node& n = *v.node();
    std::string why;
    switch (o.kind) {
      case Kind::kString: {
        auto s = n.value<std::string>();
        if (!s || !n.is_string()) {
          p.Add(n.source(), o.key, "must be a string");
        } else if (!o.choices.empty() &&
                   std::find(o.choices.begin(), o.choices.end(), *s) == o.choices.end()) {
          std::string list;
          for (const auto& c : o.choices) list += (list.empty() ? "" : ", ") + c;
          p.Add(n.source(), o.key, "must be one of " + list);
        } else if (o.required && s->empty()) {
          p.Add(n.source(), o.key, "must not be empty");
        } else {
          cfg.*(o.str) = *s;
        }
        break;
      }
      case Kind::kInt:
      case Kind::kSize: {
        int64_t value = 0;
        if (o.kind == Kind::kInt) {
          auto i = n.value<int64_t>();
          if (!i || !n.is_integer()) {
            p.Add(n.source(), o.key, "must be an integer");
            break;
          }
          value = *i;
        } else if (!ParseSize(n, &value, &why)) {
          p.Add(n.source(), o.key, why);
          break;
        }
        if (value < o.min || value > o.max) {
          p.Add(n.source(), o.key,
                "must be between " + std::to_string(o.min) + " and " + std::to_string(o.max));
        } else {
          cfg.*(o.num) = value;
        }
        break;
      }
      case Kind::kDuration: {
        double secs = 0;
        if (!ParseDuration(n, &secs, &why)) {
          p.Add(n.source(), o.key, why);
        } else {
          cfg.*(o.secs) = secs;
        }
        break;
      }
    }
  }

  // Unknown keys are mistakes (a typo must not silently fall back to a default).
  for (const auto& [section, node] : root) {
    std::string sec(section.str());
    if (sec == "streams") continue;
    const toml::table* t = node.as_table();
    if (t == nullptr) {
      p.Add(node.source(), sec, "unknown key (sections: agent, mqtt, buffer, batch, kafka, streams)");
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
          Status ok = CheckProducerProperty(std::string(pk.str()), value);
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
  if (cfg.device_id.size() > 255) p.Add("agent.device_id", "longer than 255 bytes");
  if (!p.empty()) return Status::InvalidArgument(p.Join());
  return cfg;
}

Result<Config> LoadConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::InvalidArgument(path + ": cannot read the configuration file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseConfig(ss.str(), path);
}

std::string ConfigReference() {
  std::string out = "| key | default | description |\n|---|---|---|\n";
  for (const OptionSpec& o : Options()) {
    out += "| `" + std::string(o.key) + "` | " + DefaultText(o) + " | " + o.description + " |\n";
  }
  out +=
      "| `kafka.properties.*` | | Any librdkafka producer property, passed through; one librdkafka rejects is an error naming it. |\n"
      "| `[[streams]] name` | (required) | Stream name, 1-64 of A-Z a-z 0-9 . _ - |\n"
      "| `[[streams]] topics` | (required) | MQTT topic filters (`+`, `#`) whose messages this stream takes; the first stream that matches wins. |\n"
      "| `[[streams]] kafka_topic` | \"edge.<name>\" | Kafka topic the stream's batches go to. |\n"
      "| `[[streams]] priority` | \"normal\" | \"high\", \"normal\" or \"low\": upload order. |\n";
  return out;
}

}  // namespace edgesync

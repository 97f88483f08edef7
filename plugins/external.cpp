#include "plugins/external.h"

#include <dlfcn.h>

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <mutex>
#include <utility>
#include <vector>

#include "base/env.h"
#include "base/printable.h"
#include "edgesync/plugin.h"

namespace edgesync {
namespace {

// What a plugin asked for during one process call, applied only after it
// returns EDGESYNC_KEEP. Reused from call to call (the strings keep their
// capacity), so a warmed-up plugin does not allocate per event.
struct Staged {
  const std::string* plugin = nullptr;  // its name, for messages
  bool payload_set = false;
  std::string payload;
  std::array<bool, 5> route_set{};  // by edgesync_route_field
  std::array<std::string, 5> route;
  Priority priority = Priority::kNormal;
  std::string error;
  // The first change the host cannot apply: the event is dead-lettered with it.
  std::string refused;

  void Reset() {
    payload_set = false;
    route_set.fill(false);
    error.clear();
    refused.clear();
  }
  void Refuse(std::string why) {
    if (refused.empty()) refused = *plugin + ": " + why;
  }
};

// The outputs, applied to what is staged. Each copies what it is given (the
// plugin keeps ownership of its memory; the host of the event's).
void StageSetPayload(Staged& st, const char* data, size_t len) {
  if (data == nullptr && len > 0) {
    st.Refuse("set_payload with a NULL pointer and length " + std::to_string(len));
    return;
  }
  st.payload.assign(data == nullptr ? "" : data, len);
  st.payload_set = true;
}

int StageSetRoute(Staged& st, int field, const char* value, size_t len) {
  if (field < EDGESYNC_ROUTE_STREAM || field > EDGESYNC_ROUTE_KEY) {
    st.Refuse("set_route with unknown field " + std::to_string(field) + " (the plugin ABI knows 1 to 4)");
    return -1;
  }
  if (value == nullptr && len > 0) {
    st.Refuse("set_route with a NULL pointer and length " + std::to_string(len));
    return -1;
  }
  std::string_view v(value == nullptr ? "" : value, len);
  if (field == EDGESYNC_ROUTE_PRIORITY) {
    std::optional<Priority> p = ParsePriority(v);
    if (!p) {
      st.Refuse("priority \"" + std::string(v) + "\" is not high, normal or low");
      return -1;
    }
    st.priority = *p;
  }
  st.route[field].assign(v);
  st.route_set[field] = true;
  return 0;
}

void StageSetError(Staged& st, const char* text) { st.error.assign(text == nullptr ? "" : text); }

// The C side of edgesync_output (ABI 1) and edgesync_output_v2 (ABI 2).
extern "C" {
static void OutSetPayload(edgesync_output* out, const char* data, size_t len) {
  StageSetPayload(*static_cast<Staged*>(out->host), data, len);
}
static int OutSetRoute(edgesync_output* out, int field, const char* value, size_t len) {
  return StageSetRoute(*static_cast<Staged*>(out->host), field, value, len);
}
static void OutSetError(edgesync_output* out, const char* text) {
  StageSetError(*static_cast<Staged*>(out->host), text);
}
static void OutSetPayloadV2(edgesync_output_v2* out, const char* data, size_t len) {
  StageSetPayload(*static_cast<Staged*>(out->host), data, len);
}
static int OutSetRouteV2(edgesync_output_v2* out, int field, const char* value, size_t len) {
  return StageSetRoute(*static_cast<Staged*>(out->host), field, value, len);
}
static void OutSetErrorV2(edgesync_output_v2* out, const char* text) {
  StageSetError(*static_cast<Staged*>(out->host), text);
}
}  // extern "C"

// The host services of ABI 2 for one plugin instance: its edgesync_host
// table (ctx points here), its log limit and its counters. Made before the
// plugin's init, kept until after its cleanup.
class HostServices {
 public:
  HostServices(std::string name, uint32_t struct_size, Env* env) : name_(std::move(name)), env_(env) {
    table_.struct_size = struct_size != 0 ? struct_size : static_cast<uint32_t>(sizeof(edgesync_host));
    table_.ctx = this;
    table_.log = &HostServices::CLog;
    table_.counter = &HostServices::CCounter;
    table_.counter_add = &HostServices::CCounterAdd;
  }
  HostServices(const HostServices&) = delete;
  HostServices& operator=(const HostServices&) = delete;

  const edgesync_host* table() const { return &table_; }

  std::vector<std::pair<std::string, uint64_t>> Counters() const {
    std::vector<std::pair<std::string, uint64_t>> out;
    const size_t n = count_.load(std::memory_order_acquire);
    for (size_t i = 0; i < n; i++) out.emplace_back(names_[i], values_[i].load(std::memory_order_relaxed));
    return out;
  }

 private:
  static void CLog(void* ctx, int level, const char* message) {
    if (ctx != nullptr) static_cast<HostServices*>(ctx)->Log(level, message);
  }
  static int CCounter(void* ctx, const char* name) {
    return ctx != nullptr ? static_cast<HostServices*>(ctx)->Counter(name) : -1;
  }
  static void CCounterAdd(void* ctx, int handle, uint64_t delta) {
    if (ctx != nullptr) static_cast<HostServices*>(ctx)->CounterAdd(handle, delta);
  }

  void Log(int level, const char* message) {
    if (message == nullptr) return;
    // Read at most one byte past the bound: a message without its NUL
    // cannot take the agent further than that.
    spdlog::level::level_enum lvl = level <= EDGESYNC_LOG_ERROR     ? spdlog::level::err
                                    : level == EDGESYNC_LOG_WARNING ? spdlog::level::warn
                                    : level < EDGESYNC_LOG_DEBUG    ? spdlog::level::info
                                                                    : spdlog::level::debug;
    std::lock_guard<std::mutex> lock(log_mu_);
    const int64_t now = env_->MonotonicMicros();
    if (logged_ == 0 || now - window_start_us_ >= 60'000'000) {
      if (suppressed_ > 0) {
        spdlog::warn("plugin {}: {} more log lines in the last minute not written (at most {} a minute)", name_,
                     suppressed_, EDGESYNC_LOG_MAX_PER_MINUTE);
      }
      window_start_us_ = now;
      logged_ = 0;
      suppressed_ = 0;
    }
    if (logged_ >= EDGESYNC_LOG_MAX_PER_MINUTE) {
      suppressed_++;
      return;
    }
    logged_++;
    // Formatted only now: a plugin that logs on every event costs the
    // ingest path nothing once over its limit or below the log level.
    if (!spdlog::should_log(lvl)) return;
    const size_t len = strnlen(message, EDGESYNC_LOG_MAX_BYTES + 1);
    std::string text = Printable(std::string_view(message, std::min<size_t>(len, EDGESYNC_LOG_MAX_BYTES)));
    if (len > EDGESYNC_LOG_MAX_BYTES) text += "... (cut at " + std::to_string(EDGESYNC_LOG_MAX_BYTES) + " bytes)";
    spdlog::log(lvl, "plugin {}: {}", name_, text);
  }

  static bool IsCounterName(const char* name, size_t len) {
    if (len == 0 || len > EDGESYNC_COUNTER_MAX_NAME) return false;
    for (size_t i = 0; i < len; i++) {
      const char c = name[i];
      if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) return false;
    }
    return true;
  }

  // Registration happens on the plugin's thread (one at a time); readers on
  // other threads see names_[0, count_) once count_ is published.
  int Counter(const char* name) {
    if (name == nullptr) return -1;
    const size_t len = strnlen(name, EDGESYNC_COUNTER_MAX_NAME + 1);
    if (!IsCounterName(name, len)) return -1;
    const std::string_view n(name, len);
    const size_t count = count_.load(std::memory_order_relaxed);
    for (size_t i = 0; i < count; i++) {
      if (names_[i] == n) return static_cast<int>(i);
    }
    if (count == names_.size()) return -1;
    names_[count].assign(n);
    count_.store(count + 1, std::memory_order_release);
    return static_cast<int>(count);
  }

  void CounterAdd(int handle, uint64_t delta) {
    if (handle < 0 || static_cast<size_t>(handle) >= count_.load(std::memory_order_relaxed)) return;
    values_[static_cast<size_t>(handle)].fetch_add(delta, std::memory_order_relaxed);
  }

  const std::string name_;
  Env* const env_;
  edgesync_host table_{};
  std::mutex log_mu_;
  int64_t window_start_us_ = 0;
  int logged_ = 0;
  uint64_t suppressed_ = 0;
  std::array<std::string, EDGESYNC_COUNTER_MAX> names_;
  std::array<std::atomic<uint64_t>, EDGESYNC_COUNTER_MAX> values_{};
  std::atomic<size_t> count_{0};
};

struct DlClose {
  void operator()(void* handle) const { dlclose(handle); }
};
using Library = std::unique_ptr<void, DlClose>;

// The descriptor the negotiation chose: exactly one of v1 and v2 is set.
struct Descriptor {
  uint32_t abi = 0;
  const edgesync_plugin* v1 = nullptr;
  const edgesync_plugin_v2* v2 = nullptr;
  std::vector<uint32_t> plugin_versions;  // what the plugin listed; empty: no list (ABI 1)
  void Cleanup(void* state) const { v1 != nullptr ? v1->cleanup(state) : v2->cleanup(state); }
};

class ExternalPlugin final : public Plugin {
 public:
  ExternalPlugin(Library lib, Descriptor desc, std::unique_ptr<HostServices> host, void* state, std::string name,
                 std::string info)
      : lib_(std::move(lib)), desc_(std::move(desc)), host_(std::move(host)), state_(state), name_(std::move(name)),
        info_(std::move(info)), scratch_(std::make_unique<Scratch>()) {
    scratch_->staged.plugin = &name_;
  }
  // The plugin's cleanup runs before lib_ unloads its code (and before its
  // host services go: it may log from cleanup).
  ~ExternalPlugin() override { desc_.Cleanup(state_); }

  Action Process(Event& e) const override;
  std::vector<std::pair<std::string, uint64_t>> Counters() const override {
    return host_ != nullptr ? host_->Counters() : std::vector<std::pair<std::string, uint64_t>>{};
  }
  std::string LoadInfo() const override { return info_; }

 private:
  // Per-call buffers. Process is const but called from one thread at a time
  // (the Plugin contract), so one set per plugin is enough.
  struct Scratch {
    std::string topic;    // NUL-terminated copy of Event::topic
    std::string payload;  // a JSON stream's text as handed to the plugin
    std::vector<edgesync_property> properties;
    Staged staged;
  };

  // Fills the members edgesync_event (ABI 1) and edgesync_event_v2 share.
  template <class CEvent>
  void FillEvent(const Event& e, CEvent* ev) const;
  Action Keep(Event& e) const;
  Action DeadLetter(Event& e, std::string why) const;

  Library lib_;
  const Descriptor desc_;
  const std::unique_ptr<HostServices> host_;  // ABI 2 only
  void* state_;
  std::string name_;
  std::string info_;
  std::unique_ptr<Scratch> scratch_;
};

template <class CEvent>
void ExternalPlugin::FillEvent(const Event& e, CEvent* ev) const {
  Scratch& x = *scratch_;
  x.topic.assign(e.topic);
  x.properties.clear();
  if (e.properties != nullptr) {
    for (const auto& [name, value] : *e.properties) x.properties.push_back({name.c_str(), value.c_str()});
  }
  ev->topic = x.topic.c_str();
  ev->topic_len = x.topic.size();
  if (e.json != nullptr) {
    e.json->Serialize(&x.payload);  // the original text when no plugin changed it
    ev->payload = x.payload.c_str();
    ev->payload_len = x.payload.size();
    ev->payload_is_json = 1;
  } else if (e.raw != nullptr) {
    ev->payload = e.raw->c_str();
    ev->payload_len = e.raw->size();
  } else {
    ev->payload = "";
  }
  ev->received_at_us = e.received_at_us;
  ev->properties = x.properties.data();
  ev->property_count = x.properties.size();
  ev->stream = e.route.stream.c_str();
  ev->kafka_topic = e.route.kafka_topic.c_str();
  ev->priority = e.route.priority ? PriorityName(*e.route.priority) : "";
  ev->key = e.route.key.c_str();
}

Action ExternalPlugin::Process(Event& e) const {
  Staged& st = scratch_->staged;
  st.Reset();
  int action;
  if (desc_.v2 != nullptr) {
    edgesync_event_v2 ev{};
    ev.struct_size = sizeof ev;
    FillEvent(e, &ev);
    edgesync_output_v2 out{};
    out.struct_size = sizeof out;
    out.set_payload = OutSetPayloadV2;
    out.set_route = OutSetRouteV2;
    out.set_error = OutSetErrorV2;
    out.host = &st;
    action = desc_.v2->process(state_, &ev, &out);
  } else {
    edgesync_event ev{};
    FillEvent(e, &ev);
    edgesync_output out{};
    out.set_payload = OutSetPayload;
    out.set_route = OutSetRoute;
    out.set_error = OutSetError;
    out.host = &st;
    action = desc_.v1->process(state_, &ev, &out);
  }
  switch (action) {
    case EDGESYNC_KEEP:
      return Keep(e);
    case EDGESYNC_DROP:
      return Action::kDrop;
    case EDGESYNC_DEAD_LETTER:
      return DeadLetter(e, st.error.empty() ? name_ + ": dead-lettered the event and gave no reason"
                                            : name_ + ": " + st.error);
    default:
      return DeadLetter(e, name_ + ": process returned " + std::to_string(action) +
                               ", which is not EDGESYNC_KEEP (0), EDGESYNC_DROP (1) or "
                               "EDGESYNC_DEAD_LETTER (2): fix the plugin");
  }
}

Action ExternalPlugin::DeadLetter(Event& e, std::string why) const {
  e.error = std::move(why);
  return Action::kDeadLetter;
}

// Applies what the plugin staged, all or nothing: the payload first (the
// only step that can fail), then the route.
Action ExternalPlugin::Keep(Event& e) const {
  Staged& st = scratch_->staged;
  if (!st.refused.empty()) return DeadLetter(e, st.refused);
  if (st.payload_set) {
    if (e.json != nullptr) {
      const bool was_dirty = e.json->dirty();
      Status parsed = e.json->Parse(st.payload);
      if (!parsed.ok()) {
        // Parse replaced the document: put back the text the plugin was given.
        Status restored = e.json->Parse(scratch_->payload);
        if (restored.ok() && was_dirty) e.json->SetRoot(e.json->root());
        return DeadLetter(e, name_ + ": the new payload is not JSON (" + parsed.message() +
                                 "); a plugin on a JSON stream must return JSON text");
      }
      // A parsed document is clean; mark it changed so the agent writes it back.
      e.json->SetRoot(e.json->root());
    } else if (e.raw != nullptr) {
      e.raw->assign(st.payload);
    } else {
      return DeadLetter(e, name_ + ": set a payload on an event that has none");
    }
  }
  if (st.route_set[EDGESYNC_ROUTE_STREAM]) e.route.stream = st.route[EDGESYNC_ROUTE_STREAM];
  if (st.route_set[EDGESYNC_ROUTE_KAFKA_TOPIC]) e.route.kafka_topic = st.route[EDGESYNC_ROUTE_KAFKA_TOPIC];
  if (st.route_set[EDGESYNC_ROUTE_PRIORITY]) e.route.priority = st.priority;
  if (st.route_set[EDGESYNC_ROUTE_KEY]) e.route.key = st.route[EDGESYNC_ROUTE_KEY];
  return Action::kKeep;
}

struct ExternalSettings {
  std::string file;
  static const OptionTable<ExternalSettings>& Options() {
    static const auto* table = &(*new OptionTable<ExternalSettings>())  // never freed: a process-long constant
        .String("file", &ExternalSettings::file,
                "The shared object's file name inside plugins.dir (no '/', no \"..\").")
        .ShownAs("(required)")
        .Table("settings", "A table of strings, integers and booleans passed to the plugin's init as strings.", "{}");
    return *table;
  }
};

// The settings table's values as the strings init receives.
std::vector<std::pair<std::string, std::string>> PluginSettings(Settings& s) {
  std::vector<std::pair<std::string, std::string>> out;
  const toml::table* t = s.Table("settings");
  if (t == nullptr) return out;
  for (const auto& [k, v] : *t) {
    const std::string key = "settings." + std::string(k.str());
    if (const auto* str = v.as_string()) {
      if (str->get().find('\0') != std::string::npos) {
        s.Problem(v, key, "must not hold a NUL character (plugins read C strings)");
        continue;
      }
      out.emplace_back(k.str(), str->get());
    } else if (const auto* i = v.as_integer()) {
      out.emplace_back(k.str(), std::to_string(i->get()));
    } else if (const auto* b = v.as_boolean()) {
      out.emplace_back(k.str(), b->get() ? "true" : "false");
    } else {
      s.Problem(v, key, "must be a string, an integer or a boolean");
    }
  }
  return out;
}

// A plain file name: no directory part, nothing that climbs out of the
// plugins directory.
bool IsPlainFileName(const std::string& f) {
  return !f.empty() && f.find('/') == std::string::npos && f.find("..") == std::string::npos &&
         f.find('\0') == std::string::npos && f != ".";
}

// InvalidArgument with every problem noted in `s`.
Status Problems(const Settings& s) {
  std::string all;
  for (const std::string& p : s.problems()) all += (all.empty() ? "" : "\n") + p;
  return Status::InvalidArgument(all);
}

static_assert(ExternalPluginOptions::kNewestAbi == EDGESYNC_PLUGIN_ABI_NEWEST,
              "the loader's default is the newest ABI of plugins/include/edgesync/plugin.h");

// A version list can be any length in C; a plugin's is a handful.
constexpr size_t kMaxListedVersions = 64;

// The ABI versions this agent speaks, up to `max_abi`, oldest first.
std::vector<uint32_t> AgentVersions(uint32_t max_abi) {
  std::vector<uint32_t> out;
  for (uint32_t v = EDGESYNC_PLUGIN_ABI_1; v <= std::min<uint32_t>(max_abi, EDGESYNC_PLUGIN_ABI_NEWEST); v++) {
    out.push_back(v);
  }
  return out;
}

// "1, 2".
std::string VersionList(const std::vector<uint32_t>& versions) {
  std::string out;
  for (uint32_t v : versions) out += (out.empty() ? "" : ", ") + std::to_string(v);
  return out;
}

}  // namespace

Result<std::shared_ptr<const Plugin>> LoadExternalPlugin(Settings& s, const std::string& plugins_dir,
                                                         const ExternalPluginOptions& options) {
  ExternalSettings declared;
  s.Read(ExternalSettings::Options(), &declared);
  const std::optional<std::string> file =
      s.Get("file") != nullptr && s.Get("file")->is_string() ? std::optional<std::string>(declared.file) : std::nullopt;
  const std::vector<std::pair<std::string, std::string>> settings = PluginSettings(s);
  const toml::node* file_node = s.Get("file");
  if (file_node == nullptr) {
    s.Problem("file", "required: the plugin's .so file name inside plugins.dir");
    return Problems(s);
  }
  if (!file) return Problems(s);
  if (!IsPlainFileName(*file)) {
    s.Problem(*file_node, "file",
              "\"" + *file + "\" must be a plain file name (no '/', no \"..\"): plugins load only from plugins.dir");
  }
  if (plugins_dir.empty()) {
    s.Problem(*file_node, "file", "no plugins directory to load \"" + *file + "\" from: set plugins.dir");
  }
  if (!s.ok()) return Problems(s);
  // Every later step fails with a note on the `file` key.
  auto fail = [&](const std::string& what) {
    s.Problem(*file_node, "file", what);
    return Problems(s);
  };

  std::string path = plugins_dir;
  if (path.back() != '/') path += '/';
  path += *file;
  // dlopen() blocks on a FIFO and maps whatever is there: a regular file
  // only (a link followed, as dlopen would).
  Result<Env::FileType> type = options.env->TypeOfTarget(path);
  if (!type.ok()) return fail("no such file: " + path + " (put the plugin in plugins.dir)");
  if (*type != Env::FileType::kRegular) return fail("cannot load " + path + ": not a regular file");
  Library lib(dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!lib) {
    const char* why = dlerror();
    return fail("cannot load " + path + ": " + (why != nullptr ? why : "dlopen failed"));
  }
  const std::vector<uint32_t> agent_versions = AgentVersions(options.max_abi);
  const std::string agent_list = VersionList(agent_versions);
  Descriptor desc;
  // Negotiation: a plugin that lists its versions gets the newest one both
  // sides speak. An agent limited to ABI 1 looks for no list, as agents
  // before ABI 2 did.
  using Versions = size_t (*)(const uint32_t**);
  auto versions = options.max_abi >= EDGESYNC_PLUGIN_ABI_2
                      ? reinterpret_cast<Versions>(dlsym(lib.get(), EDGESYNC_PLUGIN_ABI_VERSIONS_SYMBOL))
                      : nullptr;
  if (versions != nullptr) {
    const uint32_t* list = nullptr;
    const size_t count = versions(&list);
    if (list == nullptr || count == 0 || count > kMaxListedVersions) {
      return fail(*file + ": " EDGESYNC_PLUGIN_ABI_VERSIONS_SYMBOL " returned " + std::to_string(count) +
                  " versions" + (list == nullptr ? " and no list" : "") + " (1 to " +
                  std::to_string(kMaxListedVersions) + " expected): fix the plugin");
    }
    desc.plugin_versions.assign(list, list + count);
    for (uint32_t v : desc.plugin_versions) {
      if (std::find(agent_versions.begin(), agent_versions.end(), v) != agent_versions.end()) {
        desc.abi = std::max(desc.abi, v);
      }
    }
    if (desc.abi == 0) {
      return fail(*file + " speaks edgesync plugin ABI " + VersionList(desc.plugin_versions) +
                  "; this agent speaks " + agent_list +
                  ": use a build of the plugin that also lists one of this agent's versions "
                  "(plugins/include/edgesync/plugin.h), or an agent that speaks the plugin's");
    }
  } else {
    desc.abi = EDGESYNC_PLUGIN_ABI_1;
  }

  if (desc.abi == EDGESYNC_PLUGIN_ABI_2) {
    using DescribeV2 = const edgesync_plugin_v2* (*)(uint32_t);
    auto describe = reinterpret_cast<DescribeV2>(dlsym(lib.get(), EDGESYNC_PLUGIN_DESCRIBE_V2_SYMBOL));
    if (describe == nullptr) {
      return fail(*file + " lists edgesync plugin ABI 2 but exports no " EDGESYNC_PLUGIN_DESCRIBE_V2_SYMBOL
                  ": fix the plugin (see plugins/include/edgesync/plugin.h)");
    }
    const edgesync_plugin_v2* d = describe(EDGESYNC_PLUGIN_ABI_2);
    if (d == nullptr) return fail(*file + ": " EDGESYNC_PLUGIN_DESCRIBE_V2_SYMBOL "(2) returned NULL");
    if (d->abi_version != EDGESYNC_PLUGIN_ABI_2) {
      return fail(*file + ": " EDGESYNC_PLUGIN_DESCRIBE_V2_SYMBOL "(2) returned a descriptor for ABI " +
                  std::to_string(d->abi_version) + ": fix the plugin");
    }
    // The members every ABI 2 descriptor has; later ones would be read only
    // when struct_size reaches them.
    constexpr size_t kRequired = offsetof(edgesync_plugin_v2, cleanup) + sizeof(d->cleanup);
    if (d->struct_size < kRequired) {
      return fail(*file + ": its ABI 2 descriptor is " + std::to_string(d->struct_size) +
                  " bytes (struct_size), shorter than the " + std::to_string(kRequired) +
                  " every ABI 2 descriptor has: set struct_size = sizeof(struct edgesync_plugin_v2)");
    }
    if (d->init == nullptr || d->process == nullptr || d->cleanup == nullptr) {
      return fail(*file + ": its descriptor lacks init, process or cleanup (all three are required)");
    }
    desc.v2 = d;
  } else {
    dlerror();  // dlsym's result alone cannot tell a NULL symbol from a missing one
    using Describe = const edgesync_plugin* (*)();
    auto describe = reinterpret_cast<Describe>(dlsym(lib.get(), EDGESYNC_PLUGIN_DESCRIBE_SYMBOL));
    if (describe == nullptr) {
      return fail(*file + " is not an edgesync plugin: it exports no " EDGESYNC_PLUGIN_DESCRIBE_SYMBOL +
                  std::string(options.max_abi >= EDGESYNC_PLUGIN_ABI_2 ? " and no " EDGESYNC_PLUGIN_ABI_VERSIONS_SYMBOL
                                                                      : "") +
                  " (see plugins/include/edgesync/plugin.h)");
    }
    const edgesync_plugin* d = describe();
    if (d == nullptr) return fail(*file + ": " EDGESYNC_PLUGIN_DESCRIBE_SYMBOL " returned NULL");
    // Only abi_version is read until it is 1: the rest of the descriptor
    // may have another layout in another version.
    if (d->abi_version != EDGESYNC_PLUGIN_ABI_1) {
      return fail(*file + " was built for edgesync plugin ABI " + std::to_string(d->abi_version) +
                  " and lists no versions (" EDGESYNC_PLUGIN_ABI_VERSIONS_SYMBOL "); this agent speaks " +
                  agent_list + ": rebuild it against plugins/include/edgesync/plugin.h");
    }
    if (d->init == nullptr || d->process == nullptr || d->cleanup == nullptr) {
      return fail(*file + ": its descriptor lacks init, process or cleanup (all three are required)");
    }
    desc.v1 = d;
  }
  const char* desc_name = desc.v2 != nullptr ? desc.v2->name : desc.v1->name;
  const std::string name = desc_name != nullptr && desc_name[0] != '\0' ? desc_name : *file;

  std::vector<edgesync_setting> c_settings;
  for (const auto& [k, v] : settings) c_settings.push_back({k.c_str(), v.c_str()});
  std::array<char, 512> error{};
  std::unique_ptr<HostServices> host;
  void* state;
  if (desc.v2 != nullptr) {
    host = std::make_unique<HostServices>(name, options.host_struct_size, options.env);
    state = desc.v2->init(host->table(), c_settings.data(), c_settings.size(), error.data(), error.size());
  } else {
    state = desc.v1->init(c_settings.data(), c_settings.size(), error.data(), error.size());
  }
  if (state == nullptr) {
    error.back() = '\0';
    const std::string why = error[0] != '\0' ? error.data() : "(it gave no reason)";
    return fail("plugin " + name + " refused its settings: " + why);
  }
  std::string info = "external " + *file + ", plugin ABI " + std::to_string(desc.abi) + " (" +
                     (desc.plugin_versions.empty() ? std::string("no version list")
                                                   : "plugin lists " + VersionList(desc.plugin_versions)) +
                     "; agent speaks " + agent_list + ")";
  return std::shared_ptr<const Plugin>(std::make_shared<ExternalPlugin>(std::move(lib), std::move(desc),
                                                                        std::move(host), state, name,
                                                                        std::move(info)));
}

const PluginType& ExternalPluginType() {
  static const PluginType kType{
      "external",
      "A shared object from plugins.dir behind the versioned C ABI (plugins/include/edgesync/plugin.h; docs/plugins.md, \"External plugins\").",
      [] { return ExternalSettings::Options().Reference(); },
      [](Settings& s, const PluginContext& c) {
        ExternalPluginOptions o;
        o.env = c.env;
        return LoadExternalPlugin(s, c.plugins_dir, o);
      }};
  return kType;
}

}  // namespace edgesync

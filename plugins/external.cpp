#include "plugins/external.h"

#include <dlfcn.h>

#include <array>
#include <cstring>
#include <utility>
#include <vector>

#include "base/env.h"
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

// The C side of edgesync_output. Each copies what it is given (the plugin
// keeps ownership of its memory; the host of the event's).
extern "C" {
static void OutSetPayload(edgesync_output* out, const char* data, size_t len) {
  Staged& st = *static_cast<Staged*>(out->host);
  if (data == nullptr && len > 0) {
    st.Refuse("set_payload with a NULL pointer and length " + std::to_string(len));
    return;
  }
  st.payload.assign(data == nullptr ? "" : data, len);
  st.payload_set = true;
}

static int OutSetRoute(edgesync_output* out, int field, const char* value, size_t len) {
  Staged& st = *static_cast<Staged*>(out->host);
  if (field < EDGESYNC_ROUTE_STREAM || field > EDGESYNC_ROUTE_KEY) {
    st.Refuse("set_route with unknown field " + std::to_string(field) + " (ABI " +
              std::to_string(EDGESYNC_PLUGIN_ABI_VERSION) + " knows 1 to 4)");
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

static void OutSetError(edgesync_output* out, const char* text) {
  Staged& st = *static_cast<Staged*>(out->host);
  st.error.assign(text == nullptr ? "" : text);
}
}  // extern "C"

struct DlClose {
  void operator()(void* handle) const { dlclose(handle); }
};
using Library = std::unique_ptr<void, DlClose>;

class ExternalPlugin final : public Plugin {
 public:
  ExternalPlugin(Library lib, const edgesync_plugin* desc, void* state, std::string name)
      : lib_(std::move(lib)), desc_(desc), state_(state), name_(std::move(name)),
        scratch_(std::make_unique<Scratch>()) {
    scratch_->staged.plugin = &name_;
  }
  // The plugin's cleanup runs before lib_ unloads its code.
  ~ExternalPlugin() override { desc_->cleanup(state_); }

  Action Process(Event& e) const override;

 private:
  // Per-call buffers. Process is const but called from one thread at a time
  // (the Plugin contract), so one set per plugin is enough.
  struct Scratch {
    std::string topic;    // NUL-terminated copy of Event::topic
    std::string payload;  // a JSON stream's text as handed to the plugin
    std::vector<edgesync_property> properties;
    Staged staged;
  };

  edgesync_event MakeEvent(const Event& e) const;
  Action Keep(Event& e) const;
  Action DeadLetter(Event& e, std::string why) const;

  Library lib_;
  const edgesync_plugin* desc_;
  void* state_;
  std::string name_;
  std::unique_ptr<Scratch> scratch_;
};

edgesync_event ExternalPlugin::MakeEvent(const Event& e) const {
  Scratch& x = *scratch_;
  x.topic.assign(e.topic);
  x.properties.clear();
  if (e.properties != nullptr) {
    for (const auto& [name, value] : *e.properties) x.properties.push_back({name.c_str(), value.c_str()});
  }
  edgesync_event ev{};
  ev.topic = x.topic.c_str();
  ev.topic_len = x.topic.size();
  if (e.json != nullptr) {
    e.json->Serialize(&x.payload);  // the original text when no plugin changed it
    ev.payload = x.payload.c_str();
    ev.payload_len = x.payload.size();
    ev.payload_is_json = 1;
  } else if (e.raw != nullptr) {
    ev.payload = e.raw->c_str();
    ev.payload_len = e.raw->size();
  } else {
    ev.payload = "";
  }
  ev.received_at_us = e.received_at_us;
  ev.properties = x.properties.data();
  ev.property_count = x.properties.size();
  ev.stream = e.route.stream.c_str();
  ev.kafka_topic = e.route.kafka_topic.c_str();
  ev.priority = e.route.priority ? PriorityName(*e.route.priority) : "";
  ev.key = e.route.key.c_str();
  return ev;
}

Action ExternalPlugin::Process(Event& e) const {
  Staged& st = scratch_->staged;
  st.Reset();
  const edgesync_event ev = MakeEvent(e);
  edgesync_output out{};
  out.set_payload = OutSetPayload;
  out.set_route = OutSetRoute;
  out.set_error = OutSetError;
  out.host = &st;
  const int action = desc_->process(state_, &ev, &out);
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

}  // namespace

Result<std::shared_ptr<const Plugin>> LoadExternalPlugin(Settings& s, const std::string& plugins_dir, Env* env) {
  s.OnlyKeys({"file", "settings"});
  const std::optional<std::string> file = s.String("file");
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
  Result<Env::FileType> type = env->TypeOfTarget(path);
  if (!type.ok()) return fail("no such file: " + path + " (put the plugin in plugins.dir)");
  if (*type != Env::FileType::kRegular) return fail("cannot load " + path + ": not a regular file");
  Library lib(dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL));
  if (!lib) {
    const char* why = dlerror();
    return fail("cannot load " + path + ": " + (why != nullptr ? why : "dlopen failed"));
  }
  dlerror();  // dlsym's result alone cannot tell a NULL symbol from a missing one
  using Describe = const edgesync_plugin* (*)();
  auto describe = reinterpret_cast<Describe>(dlsym(lib.get(), EDGESYNC_PLUGIN_DESCRIBE_SYMBOL));
  if (describe == nullptr) {
    return fail(*file + " is not an edgesync plugin: it exports no " EDGESYNC_PLUGIN_DESCRIBE_SYMBOL
                " (see plugins/include/edgesync/plugin.h)");
  }
  const edgesync_plugin* desc = describe();
  if (desc == nullptr) return fail(*file + ": " EDGESYNC_PLUGIN_DESCRIBE_SYMBOL " returned NULL");
  // Only abi_version is read until it matches: the rest of the descriptor
  // may have another layout in another version.
  if (desc->abi_version != EDGESYNC_PLUGIN_ABI_VERSION) {
    return fail(*file + " was built for edgesync plugin ABI " + std::to_string(desc->abi_version) +
                ", this agent speaks " + std::to_string(EDGESYNC_PLUGIN_ABI_VERSION) +
                ": rebuild it against plugins/include/edgesync/plugin.h");
  }
  if (desc->init == nullptr || desc->process == nullptr || desc->cleanup == nullptr) {
    return fail(*file + ": its descriptor lacks init, process or cleanup (all three are required)");
  }
  const std::string name = desc->name != nullptr && desc->name[0] != '\0' ? desc->name : *file;

  std::vector<edgesync_setting> c_settings;
  for (const auto& [k, v] : settings) c_settings.push_back({k.c_str(), v.c_str()});
  std::array<char, 512> error{};
  void* state = desc->init(c_settings.data(), c_settings.size(), error.data(), error.size());
  if (state == nullptr) {
    error.back() = '\0';
    const std::string why = error[0] != '\0' ? error.data() : "(it gave no reason)";
    return fail("plugin " + name + " refused its settings: " + why);
  }
  return std::shared_ptr<const Plugin>(std::make_shared<ExternalPlugin>(std::move(lib), desc, state, name));
}

}  // namespace edgesync

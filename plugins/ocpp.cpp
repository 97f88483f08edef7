#include "plugins/ocpp.h"

#include <map>
#include <set>

namespace edgesync {

namespace {

std::string_view TopicLevel(std::string_view topic, int64_t level) {
  for (int64_t i = 0; i < level; ++i) {
    size_t slash = topic.find('/');
    if (slash == std::string_view::npos) return {};
    topic.remove_prefix(slash + 1);
  }
  return topic.substr(0, topic.find('/'));
}

class OcppPlugin : public Plugin {
 public:
  OcppPlugin(int64_t level, std::string frame_field, std::map<std::string, Priority, std::less<>> priorities,
             std::set<std::string, std::less<>> drop)
      : level_(level), frame_field_(std::move(frame_field)), priorities_(std::move(priorities)), drop_(std::move(drop)) {}

  Action Process(Event& e) const override {
    if (e.json == nullptr) return Fail(e, "the stream must have format = \"json\"");
    Json& j = *e.json;
    const Json::Ref frame = frame_field_.empty() ? j.root() : j.FindPath(frame_field_);
    if (frame == Json::kNone || j.type(frame) != Json::Type::kArray) {
      return Fail(e, frame_field_.empty() ? "not an array" : "no array at \"" + frame_field_ + "\"");
    }
    Json::Ref parts[5];
    size_t n = 0;
    for (Json::Ref c = j.first(frame); c != Json::kNone; c = j.next(c)) {
      if (n == 5) return Fail(e, "more than 5 elements");
      parts[n++] = c;
    }
    if (n < 3 || j.type(parts[0]) != Json::Type::kNumber) return Fail(e, "no message type id");
    const std::string_view type = j.raw(parts[0]);
    if (!j.IsString(parts[1])) return Fail(e, "the unique id must be a string");
    std::string_view action;  // a CALL's, in the frame (or scratch_)
    const char* message_type;
    Json::Ref payload;
    Json::Ref out = j.NewObject();
    if (type == "2") {
      if (n != 4 || !j.IsString(parts[2]) || !j.IsObject(parts[3])) {
        return Fail(e, "a CALL is [2, uniqueId, action, {payload}]");
      }
      message_type = "CALL";
      action = j.str(parts[2], &scratch_);
      payload = parts[3];
    } else if (type == "3") {
      if (n != 3 || !j.IsObject(parts[2])) return Fail(e, "a CALLRESULT is [3, uniqueId, {payload}]");
      message_type = "CALLRESULT";
      payload = parts[2];
    } else if (type == "4") {
      if (n != 5 || !j.IsString(parts[2]) || !j.IsString(parts[3]) || !j.IsObject(parts[4])) {
        return Fail(e, "a CALLERROR is [4, uniqueId, errorCode, errorDescription, {errorDetails}]");
      }
      message_type = "CALLERROR";
      payload = parts[4];
    } else {
      return Fail(e, "message type id must be 2 (CALL), 3 (CALLRESULT) or 4 (CALLERROR)");
    }
    if (!action.empty() && drop_.count(action) != 0) return Action::kDrop;
    // Literal keys and values are not copied (AppendStaticKey); the action
    // and ids are the frame's own nodes, moved.
    j.AppendStaticKey(out, j.NewString(TopicLevel(e.topic, level_)), "charger_id");
    j.AppendStaticKey(out, j.NewStaticString(message_type), "message_type");
    j.AppendStaticKey(out, type == "2" ? parts[2] : j.NewNull(), "action");
    j.AppendStaticKey(out, parts[1], "unique_id");
    if (type == "4") {
      j.AppendStaticKey(out, parts[2], "error_code");
      j.AppendStaticKey(out, parts[3], "error_description");
    }
    j.AppendStaticKey(out, payload, "payload");
    if (frame_field_.empty()) {
      j.SetRoot(out);
    } else {
      j.Put(j.parent(frame), frame_field_.substr(frame_field_.rfind('.') + 1), out);
    }
    if (!action.empty()) {
      auto p = priorities_.find(action);
      if (p != priorities_.end()) e.route.priority = p->second;
    }
    return Action::kKeep;
  }

  std::vector<LaneRequest> Lanes() const override {
    std::set<Priority> used;
    for (const auto& [action, p] : priorities_) used.insert(p);
    std::vector<LaneRequest> out;
    for (Priority p : used) out.push_back(LaneRequest{"", "", p});
    return out;
  }

 private:
  static Action Fail(Event& e, const std::string& why) {
    e.error = "ocpp: not an OCPP-J frame: " + why;
    return Action::kDeadLetter;
  }

  const int64_t level_;
  const std::string frame_field_;
  const std::map<std::string, Priority, std::less<>> priorities_;
  const std::set<std::string, std::less<>> drop_;
  mutable std::string scratch_;  // Process runs on one thread at a time
};

struct OcppSettings {
  int64_t charger_id_level = 1;
  std::string frame_field;
  std::vector<std::string> drop_actions;

  static const OptionTable<OcppSettings>& Options() {
    using O = OcppSettings;
    static const auto* table = &(*new OptionTable<OcppSettings>())  // never freed: a process-long constant
        .Int("charger_id_level", &O::charger_id_level,
             "The topic level (0-based) that holds the charger's id.", 0, 64)
        .String("frame_field", &O::frame_field,
                "A dotted path to the frame when a gateway wraps it in an object of its own; empty: the payload is the frame.")
        .Table("priorities", "Action name to priority (\"high\", \"normal\", \"low\"); replaces the default.",
               "StartTransaction, StopTransaction, TransactionEvent \"high\"; MeterValues \"low\"")
        .List("drop_actions", &O::drop_actions, "Actions whose frames are dropped, e.g. [\"Heartbeat\"].");
    return *table;
  }
};

}  // namespace

const PluginType& OcppPluginType() {
  static const PluginType kType{
      "ocpp",
      "OCPP-J frames (1.6, 2.0.1) become one JSON object each (charger id, message type, action, unique id, payload); a frame that is not one is dead-lettered.",
      [] { return OcppSettings::Options().Reference(); },
      [](Settings& s, const PluginContext&) { return MakeOcppPlugin(s); }};
  return kType;
}

Result<std::shared_ptr<const Plugin>> MakeOcppPlugin(Settings& s) {
  OcppSettings set;
  s.Read(OcppSettings::Options(), &set);
  std::string frame_field = std::move(set.frame_field);
  const int64_t level = set.charger_id_level;
  std::map<std::string, Priority, std::less<>> priorities = {{"StartTransaction", Priority::kHigh},
                                                              {"StopTransaction", Priority::kHigh},
                                                              {"TransactionEvent", Priority::kHigh},
                                                              {"MeterValues", Priority::kLow}};
  if (const toml::table* t = s.Table("priorities")) {
    priorities.clear();
    for (const auto& [action, v] : *t) {
      std::optional<Priority> p = ParsePriority(v.value<std::string>().value_or(""));
      if (!p) {
        s.Problem(v, "priorities." + std::string(action.str()), "must be \"high\", \"normal\" or \"low\"");
      } else {
        priorities[std::string(action.str())] = *p;
      }
    }
  }
  std::set<std::string, std::less<>> drop(set.drop_actions.begin(), set.drop_actions.end());
  if (!s.ok()) return s.status();
  return std::shared_ptr<const Plugin>(std::make_shared<OcppPlugin>(level, std::move(frame_field), std::move(priorities), std::move(drop)));
}

}  // namespace edgesync

// libFuzzer target for the ocpp plugin (plugins/ocpp.h), which normalises
// the OCPP-J frames EV chargers publish. Also linked with replay_main.cpp
// into ocpp_fuzz_replay, which ctest runs over corpus/ocpp/ with any
// compiler.
//
// An input that parses as JSON goes through two plugins: the default one
// (the frame is the payload) and one with frame_field = "gw.frame" and
// drop_actions = ["Heartbeat"], which gets the input wrapped as
// {"gw":{"frame":<input>},"site":"s1"}.
//
// Besides "no crash, no leak, no ASan/UBSan report", these must hold:
//  - a refusal is a dead letter with an "ocpp: " reason; the default plugin
//    never drops;
//  - kept, the output is valid JSON, an object whose message_type,
//    unique_id, action, error fields and payload are those of the frame,
//    and whose charger_id is the topic's second level;
//  - the wrapped frame meets the same fate (a CALL "Heartbeat" dropped),
//    and when kept its normalised object sits at gw.frame, the same as the
//    default plugin's output, beside an untouched "site".
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/ocpp.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/json_value.h"

namespace {
constexpr const char* kTarget = "ocpp_fuzz";

using namespace edgesync;

std::shared_ptr<const Plugin> Make(toml::table table) {
  Settings s(table, "plugins.p");
  Result<std::shared_ptr<const Plugin>> p = MakeOcppPlugin(s);
  if (!p.ok()) fuzz::Fail(kTarget, "MakeOcppPlugin", p.status().ToString());
  return *p;
}

const Plugin& Plain() {
  static const std::shared_ptr<const Plugin> p = Make(toml::table{{"type", "ocpp"}});
  return *p;
}

const Plugin& Wrapped() {
  static const std::shared_ptr<const Plugin> p = Make(toml::table{
      {"type", "ocpp"}, {"frame_field", "gw.frame"}, {"drop_actions", toml::array{"Heartbeat"}}});
  return *p;
}

struct Outcome {
  Action action;
  std::string error;
  std::string output;  // the event written out
};

Outcome Run(const Plugin& p, std::string_view payload) {
  Json doc;
  if (!doc.Parse(payload).ok()) fuzz::Fail(kTarget, "does not parse", payload);
  Event e;
  e.topic = "ocpp/CP-1/in";
  e.json = &doc;
  e.route.stream = "s";
  Outcome o;
  o.action = p.Process(e);
  o.error = e.error;
  doc.Serialize(&o.output);
  return o;
}

// The value at `path` of `j` (kNone: "-").
std::string ValueAt(const Json& j, std::string_view path) {
  const Json::Ref r = j.FindPath(path);
  if (r == Json::kNone) return "-";
  std::string out;
  fuzz::AppendValue(j, r, &out);
  return out;
}

std::string ValueOf(const Json& j, Json::Ref r) {
  std::string out;
  fuzz::AppendValue(j, r, &out);
  return out;
}

// What the default plugin kept: checked against the frame it came from.
void CheckNormalised(const Json& in, const std::string& output) {
  Json out;
  Status st = out.Parse(output);
  FUZZ_CHECK(st.ok(), st.ToString() + " in " + output);
  FUZZ_CHECK(out.IsObject(out.root()), output);
  std::vector<Json::Ref> parts;
  for (Json::Ref c = in.first(in.root()); c != Json::kNone; c = in.next(c)) parts.push_back(c);
  FUZZ_CHECK(parts.size() >= 3, output);
  const std::string_view type = in.raw(parts[0]);
  std::string scratch;
  const Json::Ref mt = out.FindPath("message_type");
  FUZZ_CHECK(mt != Json::kNone && out.IsString(mt), output);
  const std::string_view message_type = out.str(mt, &scratch);
  FUZZ_CHECK(ValueAt(out, "charger_id") == ValueOf(out, out.NewString("CP-1")), output);
  FUZZ_CHECK(ValueAt(out, "unique_id") == ValueOf(in, parts[1]), output);
  FUZZ_CHECK(ValueAt(out, "payload") == ValueOf(in, parts.back()), output);
  if (type == "2") {
    FUZZ_CHECK(message_type == "CALL" && parts.size() == 4, output);
    FUZZ_CHECK(ValueAt(out, "action") == ValueOf(in, parts[2]), output);
  } else if (type == "3") {
    FUZZ_CHECK(message_type == "CALLRESULT" && parts.size() == 3 && ValueAt(out, "action") == "n", output);
  } else {
    FUZZ_CHECK(type == "4" && message_type == "CALLERROR" && parts.size() == 5, output);
    FUZZ_CHECK(ValueAt(out, "error_code") == ValueOf(in, parts[2]), output);
    FUZZ_CHECK(ValueAt(out, "error_description") == ValueOf(in, parts[3]), output);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Json in;
  if (!in.Parse(input).ok()) return 0;

  const Outcome plain = Run(Plain(), input);
  FUZZ_CHECK(plain.action != Action::kDrop, "dropped without drop_actions");
  if (plain.action == Action::kDeadLetter) {
    FUZZ_CHECK(plain.error.rfind("ocpp: ", 0) == 0, plain.error);
  } else {
    CheckNormalised(in, plain.output);
  }

  const std::string wrapping = R"({"gw":{"frame":)" + std::string(input) + R"(},"site":"s1"})";
  const Outcome wrapped = Run(Wrapped(), wrapping);
  if (wrapped.action == Action::kDrop) {
    // Only a CALL whose action is Heartbeat, which the plain plugin keeps.
    FUZZ_CHECK(plain.action == Action::kKeep, "");
    Json out;
    FUZZ_CHECK(out.Parse(plain.output).ok(), "");
    std::string scratch;
    const Json::Ref action = out.FindPath("action");
    FUZZ_CHECK(out.IsString(action) && out.str(action, &scratch) == "Heartbeat", plain.output);
    return 0;
  }
  FUZZ_CHECK(wrapped.action == plain.action, wrapped.error + " vs " + plain.error);
  if (wrapped.action == Action::kKeep) {
    Json a, b;
    FUZZ_CHECK(a.Parse(wrapped.output).ok(), wrapped.output);
    FUZZ_CHECK(b.Parse(plain.output).ok(), "");
    FUZZ_CHECK(ValueAt(a, "gw.frame") == fuzz::JsonValue(b), wrapped.output + " vs " + plain.output);
    FUZZ_CHECK(ValueAt(a, "site") == ValueOf(a, a.NewString("s1")), wrapped.output);
  }
  return 0;
}

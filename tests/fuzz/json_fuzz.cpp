// libFuzzer target for JSON event handling: Json (plugins/json.h), which
// parses every payload of a JSON stream, lets plugins edit it and writes it
// back, and Triage (agent/triage.h), which decides where a message goes
// before anything is written. Also linked with replay_main.cpp into
// json_fuzz_replay, which ctest runs over corpus/json/ with any compiler.
//
// Besides "no crash, no leak, no ASan/UBSan report", these must hold:
//  - a refusal is InvalidArgument with a message;
//  - parsed and written back untouched, a document is its input, byte for
//    byte (nothing edited: nothing rewritten);
//  - edited, written back and parsed again, it has the same value: every
//    string replaced by its own value and every member renamed to its own
//    name (so all of it is escaped again by Json itself), and a member
//    "fuzz" added to an object root with the input's first characters as
//    its value (quotes, control characters: must come back escaped and
//    equal);
//  - Triage of the input as the payload of a JSON stream's topic keeps it
//    on that stream exactly when Json::Parse accepts it (else the
//    dead-letter reason invalid-json), and on a raw stream always keeps it;
//    the input as a topic is routed to a stream of the configuration or
//    dead-lettered, never crashes the router.
#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agent/config.h"
#include "agent/triage.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/json_value.h"

namespace {
constexpr const char* kTarget = "json_fuzz";

using namespace edgesync;

// Replaces every string by its own value and renames every member to its
// own name, under `r`: the whole document is then written by Json.
void RewriteAll(Json& j, Json::Ref r) {
  std::string scratch;
  if (j.IsString(r)) {
    const std::string value(j.str(r, &scratch));
    j.ReplaceWithString(r, value);
    return;
  }
  if (!j.IsContainer(r)) return;
  const bool obj = j.IsObject(r);
  for (Json::Ref c = j.first(r); c != Json::kNone; c = j.next(c)) {
    if (obj) {
      const std::string name(j.key(c, &scratch));
      j.Rename(c, name);
    }
    RewriteAll(j, c);
  }
}

struct Agent {
  Config config;
  std::vector<std::vector<std::string>> filters;
  Agent() {
    Result<Config> c = ParseConfig(R"(
[agent]
device_id = "fuzz-1"
[kafka]
brokers = "127.0.0.1:9092"
[[streams]]
name = "events"
topics = ["j/#"]
format = "json"
[[streams]]
name = "raw"
topics = ["r/+/x", "+/raw"]
)", "fuzz.toml");
    if (!c.ok()) fuzz::Fail(kTarget, "ParseConfig", c.status().ToString());
    config = std::move(c).value();
    for (const StreamConfig& s : config.streams) filters.push_back(s.topics);
  }
};

const Agent& TheAgent() {
  static const Agent* agent = new Agent();  // never freed: lives as long as the process
  return *agent;
}

void CheckTriage(std::string_view input, bool parses) {
  const Agent& a = TheAgent();
  const Router router(a.filters);
  Json doc;
  Verdict v = Triage("j/t-1", input, 0, 0, a.config, router, &doc);
  if (input.size() > static_cast<size_t>(a.config.mqtt_max_payload)) return;
  if (parses) {
    FUZZ_CHECK(v.kind == Verdict::Kind::kStream && v.stream == size_t{0}, "valid JSON not kept");
  } else {
    FUZZ_CHECK(v.kind == Verdict::Kind::kDeadLetter && v.reason == DeadLetterReason::kInvalidJson, "");
  }
  v = Triage("r/t-1/x", input, 0, 0, a.config, router, &doc);
  FUZZ_CHECK(v.kind == Verdict::Kind::kStream && v.stream == size_t{1}, "raw payload not kept");
  v = Triage(input, "{}", 0, 0, a.config, router, &doc);
  FUZZ_CHECK(v.kind == Verdict::Kind::kDeadLetter || (v.kind == Verdict::Kind::kStream && v.stream.has_value() &&
                                                       *v.stream < a.config.streams.size()),
             "");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Json doc;
  const Status st = doc.Parse(input);
  CheckTriage(input, st.ok());
  if (!st.ok()) {
    FUZZ_CHECK(st.code() == Status::Code::kInvalidArgument && !st.message().empty(), st.ToString());
    return 0;
  }
  const std::string value = fuzz::JsonValue(doc);
  std::string out;
  doc.Serialize(&out);
  FUZZ_CHECK(!doc.dirty() && out == input, "untouched document written differently: " + out);

  // Everything written again by Json.
  RewriteAll(doc, doc.root());
  out.clear();
  doc.Serialize(&out);
  Json again;
  Status st2 = again.Parse(out);
  FUZZ_CHECK(st2.ok(), st2.ToString() + " in " + out);
  FUZZ_CHECK(fuzz::JsonValue(again) == value, "rewritten: " + out);

  // A member added, with arbitrary bytes as its value.
  if (doc.IsObject(doc.root())) {
    // The input is valid UTF-8: cut at a character's start so it stays so.
    size_t cut = std::min<size_t>(input.size(), 64);
    while (cut > 0 && cut < input.size() && (static_cast<unsigned char>(input[cut]) & 0xC0) == 0x80) --cut;
    const std::string_view bytes = input.substr(0, cut);
    doc.Put(doc.root(), "fuzz", doc.NewString(bytes));
    out.clear();
    doc.Serialize(&out);
    Status st3 = again.Parse(out);
    FUZZ_CHECK(st3.ok(), st3.ToString() + " in " + out);
    const Json::Ref added = again.Find(again.root(), "fuzz");
    std::string scratch;
    FUZZ_CHECK(added != Json::kNone && again.IsString(added) && again.str(added, &scratch) == bytes, out);
  }
  return 0;
}

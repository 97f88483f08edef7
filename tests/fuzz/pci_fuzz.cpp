// libFuzzer target for the pci plugin (plugins/pci.h), which masks card
// numbers in whatever a device publishes. Also linked with replay_main.cpp
// into pci_fuzz_replay, which ctest runs over corpus/pci/ with any compiler.
//
// The input goes through the plugin (mode "mask", the default sensitive
// fields) as a raw payload, as an MQTT user property value and, when it
// parses, as a JSON event.
//
// Besides "no crash, no leak, no ASan/UBSan report", these must hold:
//  - no card number of the input survives as written: no run of 13 to 19
//    digits between non-digits, starting with 2-6 and Luhn-valid, is in
//    the output between non-digits (the plugin also finds PANs written in
//    groups; this oracle, independent of the scanner, sees only whole runs).
//    For a JSON event: in its names, strings (unescaped) and numbers;
//  - masking repeats until nothing reads as a PAN: MaskPans finds nothing
//    in the raw output;
//  - a JSON event stays valid JSON and keeps no member with a sensitive
//    name (cvv, track2, ...; any case, any depth);
//  - the JSON event's shortcut (skip the walk when its text holds no PAN)
//    agrees: masked output of the event as parsed equals that of the same
//    event once edited (which always takes the full walk).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plugins/pci.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/json_value.h"

namespace {
constexpr const char* kTarget = "pci_fuzz";

using namespace edgesync;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Every run of digits in `text`, between non-digits, that is a card number.
std::vector<std::string_view> WholePans(std::string_view text) {
  std::vector<std::string_view> pans;
  for (size_t i = 0; i < text.size();) {
    if (!IsDigit(text[i])) {
      ++i;
      continue;
    }
    size_t e = i;
    while (e < text.size() && IsDigit(text[e])) ++e;
    const std::string_view run = text.substr(i, e - i);
    if (run.size() >= 13 && run.size() <= 19 && run[0] >= '2' && run[0] <= '6' && LuhnValid(run)) {
      pans.push_back(run);
    }
    i = e;
  }
  return pans;
}

// True when `pan` is in `text` between non-digits.
bool Survives(std::string_view text, std::string_view pan) {
  for (size_t at = text.find(pan); at != std::string_view::npos; at = text.find(pan, at + 1)) {
    const bool before = at > 0 && IsDigit(text[at - 1]);
    const size_t end = at + pan.size();
    const bool after = end < text.size() && IsDigit(text[end]);
    if (!before && !after) return true;
  }
  return false;
}

void CheckNoPan(std::string_view input, std::string_view output, const char* where) {
  for (std::string_view pan : WholePans(input)) {
    FUZZ_CHECK(!Survives(output, pan), std::string(where) + ": " + std::string(pan) + " in " + std::string(output));
  }
}

// The document's names, strings (unescaped) and numbers, one a line: the
// text card numbers are looked for in (JSON text itself is not: the hex
// digits of an escape, \u0AA6, would join the digits after it).
void AppendValues(const Json& j, Json::Ref r, std::string* out) {
  std::string scratch;
  if (j.type(r) == Json::Type::kString) *out += std::string(j.str(r, &scratch)) + '\n';
  if (j.type(r) == Json::Type::kNumber) *out += std::string(j.raw(r)) + '\n';
  if (!j.IsContainer(r)) return;
  for (Json::Ref c = j.first(r); c != Json::kNone; c = j.next(c)) {
    if (j.IsObject(r)) *out += std::string(j.key(c, &scratch)) + '\n';
    AppendValues(j, c, out);
  }
}

std::string Values(std::string_view json) {
  Json j;
  std::string out;
  if (j.Parse(json).ok()) AppendValues(j, j.root(), &out);
  return out;
}

bool SensitiveName(std::string_view key) {
  std::string k(key);
  for (char& c : k) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  for (const char* s : {"cvv", "cvc", "cvv2", "track1", "track2", "pin", "pin_block"}) {
    if (k == s) return true;
  }
  return false;
}

void CheckNoSensitive(const Json& j, Json::Ref r) {
  if (!j.IsContainer(r)) return;
  std::string scratch;
  for (Json::Ref c = j.first(r); c != Json::kNone; c = j.next(c)) {
    if (j.IsObject(r)) FUZZ_CHECK(!SensitiveName(j.key(c, &scratch)), std::string(j.key(c, &scratch)));
    CheckNoSensitive(j, c);
  }
}

const Plugin& ThePlugin() {
  static const std::shared_ptr<const Plugin> plugin = [] {
    toml::table table{{"type", "pci"}};
    Settings s(table, "plugins.p");
    Result<std::shared_ptr<const Plugin>> p = MakePciPlugin(s, "");
    if (!p.ok()) ::edgesync::fuzz::Fail(kTarget, "MakePciPlugin", p.status().ToString());
    return *p;
  }();
  return *plugin;
}

// The JSON event through the plugin; with `edited`, the document is
// marked edited first, as a plugin earlier in the chain would leave it.
// Returns the output text.
std::string MaskJson(std::string_view text, bool edited) {
  Json doc;
  if (!doc.Parse(text).ok()) ::edgesync::fuzz::Fail(kTarget, "parses once, not twice", text);
  // An edited document always takes the full walk.
  if (edited) doc.SetRoot(doc.root());
  Event e;
  e.topic = "t/x";
  e.json = &doc;
  FUZZ_CHECK(ThePlugin().Process(e) == Action::kKeep, "");
  std::string out;
  doc.Serialize(&out);
  Json again;
  Status st = again.Parse(out);
  FUZZ_CHECK(st.ok(), st.ToString() + " in " + out);
  CheckNoSensitive(again, again.root());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // Raw payload and user property.
  std::string raw(input);
  std::vector<std::pair<std::string, std::string>> props{{"note", std::string(input)}};
  Event e;
  e.topic = "t/x";
  e.raw = &raw;
  e.properties = &props;
  FUZZ_CHECK(ThePlugin().Process(e) == Action::kKeep, "");
  CheckNoPan(input, raw, "raw");
  FUZZ_CHECK(props[0].second == raw, "a property is masked unlike a payload");
  std::string again;
  FUZZ_CHECK(!MaskPans(raw, [](std::string_view, std::string_view w) { return std::string(w); }, &again),
             "a PAN is left in " + raw);

  // JSON event.
  Json doc;
  if (!doc.Parse(input).ok()) return 0;
  const std::string as_parsed = MaskJson(input, false);
  const std::string as_edited = MaskJson(input, true);
  CheckNoPan(Values(input), Values(as_parsed), "json");
  // Compared as values: a document edited is written again, so white space
  // and escapes may differ.
  Json a, b;
  FUZZ_CHECK(a.Parse(as_parsed).ok() && b.Parse(as_edited).ok(), "");
  FUZZ_CHECK(fuzz::JsonValue(a) == fuzz::JsonValue(b), "shortcut and walk differ: " + as_parsed + " vs " + as_edited);
  return 0;
}

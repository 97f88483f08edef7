// libFuzzer target for the pci plugin (plugins/pci.h), which masks card
// numbers and removes sensitive authentication data in whatever a device
// publishes. Also linked with replay_main.cpp into pci_fuzz_replay, which
// ctest runs over corpus/pci/ with any compiler.
//
// The input goes through the plugin (mode "mask", the default sensitive
// fields) as a raw payload (a document when it parses as JSON, else text),
// as a user property's name and value, as the topic and the content type,
// and, when it parses, as a JSON stream's event.
//
// Besides "no crash, no leak, no ASan/UBSan report", these must hold. The
// oracles are written here, apart from the scanner (plugins/card_scan.h),
// and see less than it does: digits are folded (ASCII, any Unicode digit,
// \uXXXX escapes), invisible characters dropped, and then only whole runs
// of digits are looked at.
//  - no card number of the input survives: no run of folded digits between
//    non-digits that the policy takes for a PAN (the IIN table by length,
//    Luhn; not a 13-digit Visa-range EAN-13, not after '+' within 15
//    digits, not a decimal fraction) is in the folded output. For JSON, in
//    its names, strings (unescaped) and numbers, and in the integer any
//    number in exponent form spells;
//  - no track data survives: the digits after "PAN=" (7 or more) are not
//    after an '=' in the output;
//  - no sensitive pair survives in text: no sensitive name (whole word)
//    followed by a delimiter (= or :, after a quote or bracket), nor an
//    XML element of that name;
//  - masking repeats until nothing reads as a PAN: the scanner finds
//    nothing in the text outputs (for JSON: in each value);
//  - a JSON event stays valid JSON and keeps no member with a sensitive
//    name (any case, any depth); a raw payload that is JSON comes out as
//    the same event on a JSON stream would;
//  - the JSON event's shortcut (skip the walk when its text holds nothing)
//    agrees: masked output of the event as parsed equals that of the same
//    event once edited (which always takes the full walk).
#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plugins/card_scan.h"
#include "plugins/pci.h"
#include "plugins/unicode_tables.h"
#include "tests/fuzz/fuzz_check.h"
#include "tests/fuzz/json_value.h"

namespace {
constexpr const char* kTarget = "pci_fuzz";

using namespace edgesync;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

int Hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

template <typename R, size_t N>
const R* Find(const R (&table)[N], uint32_t cp) {
  for (const R& r : table) {
    if (cp >= r.first && cp <= r.last) return &r;
  }
  return nullptr;
}

// `text` with its digits folded to ASCII (Unicode digits, \uXXXX and \u
// surrogate pairs: what a JSON decoder and a reader see together),
// invisible characters dropped; the rest as it is. (Not %3X as well: no
// decoder undoes \u and %XX, and leaves other %XX, at once; found by
// fuzzing, url-json-mixed.)
std::string Fold(std::string_view text) {
  std::string out;
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    uint32_t cp = 0;
    size_t len = 0;
    const unsigned char c = static_cast<unsigned char>(text[i]);
    if (c == '\\' && i + 5 < n && text[i + 1] == 'u') {
      int v = 0;
      bool ok = true;
      for (size_t k = 2; k < 6; ++k) {
        ok &= Hex(text[i + k]) >= 0;
        v = v * 16 + std::max(0, Hex(text[i + k]));
      }
      if (ok) {
        cp = static_cast<uint32_t>(v), len = 6;
        if (cp >= 0xD800 && cp < 0xDC00 && i + 11 < n && text[i + 6] == '\\' && text[i + 7] == 'u') {
          int lo = 0;
          bool lo_ok = true;
          for (size_t k = 8; k < 12; ++k) {
            lo_ok &= Hex(text[i + k]) >= 0;
            lo = lo * 16 + std::max(0, Hex(text[i + k]));
          }
          if (lo_ok && lo >= 0xDC00 && lo < 0xE000) {
            cp = 0x10000 + ((cp - 0xD800) << 10) + static_cast<uint32_t>(lo - 0xDC00), len = 12;
          }
        }
      }
    } else if (c >= 0xC2 && c <= 0xF4) {
      const size_t need = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : 1;
      if (i + need < n) {
        uint32_t v = c & (need == 1 ? 0x1F : need == 2 ? 0x0F : 0x07);
        bool ok = true;
        for (size_t k = 1; k <= need; ++k) {
          ok &= (static_cast<unsigned char>(text[i + k]) & 0xC0) == 0x80;
          v = (v << 6) | (static_cast<unsigned char>(text[i + k]) & 0x3F);
        }
        if (ok) cp = v, len = need + 1;
      }
    }
    if (len == 0) {
      out.push_back(text[i++]);
      continue;
    }
    if (cp >= '0' && cp <= '9') {
      out.push_back(static_cast<char>(cp));
    } else if (const unicode::DigitRange* d = Find(unicode::kDigits, cp)) {
      out.push_back(static_cast<char>('0' + d->value + (cp - d->first)));
    } else if (Find(unicode::kInvisible, cp) == nullptr) {
      out.append(text.substr(i, len));
    }
    i += len;
  }
  return out;
}

bool Ean13(std::string_view d) {
  int sum = 0;
  for (size_t i = 0; i < 12; ++i) sum += (d[i] - '0') * (i % 2 ? 3 : 1);
  return (10 - sum % 10) % 10 == d[12] - '0';
}

// The policy's context: the run text[i, i + run.size()) is no card number
// there (a phone number after '+', a decimal fraction, a barcode).
bool Exempt(std::string_view text, size_t i, std::string_view run) {
  // A '+' shortly before, with at most 15 digits from it to here: a phone
  // number, its groups joined by spaces or dashes.
  for (size_t q = i, seen = 0; q > 0 && i - q < 24; --q) {
    if (text[q - 1] == '+' && seen + run.size() <= 15) return true;
    seen += IsDigit(text[q - 1]);
  }
  const bool fraction = i > 1 && text[i - 1] == '.' && IsDigit(text[i - 2]);
  const bool barcode = run.size() == 13 && run[0] == '4' && Ean13(run);
  return fraction || barcode;
}

// Every run of digits in `text` (folded), between non-digits, that the
// policy takes for a card number.
std::vector<std::string> WholePans(std::string_view text) {
  std::vector<std::string> pans;
  for (size_t i = 0; i < text.size();) {
    if (!IsDigit(text[i])) {
      ++i;
      continue;
    }
    size_t e = i;
    while (e < text.size() && IsDigit(text[e])) ++e;
    const std::string_view run = text.substr(i, e - i);
    if (!Exempt(text, i, run) && IssuerAccepts(run, PanPolicy::Issuers::kTable) && LuhnValid(run)) {
      pans.emplace_back(run);
    }
    i = e;
  }
  return pans;
}

// True when `pan` is in `text` between non-digits, where the context does
// not exempt it (found by fuzzing: 0.4982965724920861e17 keeps a PAN's
// digits as a fraction, which the policy leaves).
bool Survives(std::string_view text, std::string_view pan) {
  for (size_t at = text.find(pan); at != std::string_view::npos; at = text.find(pan, at + 1)) {
    const bool before = at > 0 && IsDigit(text[at - 1]);
    const size_t end = at + pan.size();
    const bool after = end < text.size() && IsDigit(text[end]);
    if (!before && !after && !Exempt(text, at, pan)) return true;
  }
  return false;
}

// The digits after each "PAN=" of `text` (folded), 7 or more: track 2's
// expiry, service code and discretionary data.
std::vector<std::string> TrackTails(std::string_view text) {
  std::vector<std::string> tails;
  for (size_t eq = text.find('='); eq != std::string_view::npos; eq = text.find('=', eq + 1)) {
    size_t b = eq;
    while (b > 0 && IsDigit(text[b - 1])) --b;
    const std::string_view pan = text.substr(b, eq - b);
    if (pan.size() > 19 || (b > 0 && text[b - 1] == '+') || !IssuerAccepts(pan, PanPolicy::Issuers::kTable) ||
        !LuhnValid(pan) || (pan.size() == 13 && pan[0] == '4' && Ean13(pan))) {
      continue;
    }
    size_t e = eq + 1;
    while (e < text.size() && IsDigit(text[e])) ++e;
    if (e - eq - 1 >= 7) tails.emplace_back(text.substr(eq + 1, e - eq - 1));
  }
  return tails;
}

void CheckNoCardData(std::string_view input, std::string_view output, const char* where) {
  const std::string in = Fold(input), out = Fold(output);
  for (const std::string& pan : WholePans(in)) {
    FUZZ_CHECK(!Survives(out, pan), std::string(where) + ": " + pan + " in " + std::string(output));
  }
  for (const std::string& tail : TrackTails(in)) {
    // As a whole run after '=', right after a PAN or its mask (12 to 19
    // digits and '*', a mask or a PAN). Found by fuzzing: a prefix of other
    // digits after an '=', or the same digits after something else (a run
    // of digits that is no PAN, a mask joined to more digits), are no leak.
    bool left = false;
    for (size_t at = out.find("=" + tail); at != std::string::npos && !left; at = out.find("=" + tail, at + 1)) {
      const size_t end = at + 1 + tail.size();
      // The mask characters are the scanner's: * X x #.
      auto mask = [](char c) { return c == '*' || c == 'X' || c == 'x' || c == '#'; };
      size_t pan = 0;
      while (pan < at && (IsDigit(out[at - pan - 1]) || mask(out[at - pan - 1]))) ++pan;
      const std::string_view before = std::string_view(out).substr(at - pan, pan);
      const bool masked = std::any_of(before.begin(), before.end(), mask);
      const bool a_pan = !masked && !WholePans(before).empty();
      left = (end >= out.size() || !IsDigit(out[end])) && pan >= 12 && pan <= 19 && (masked || a_pan);
    }
    FUZZ_CHECK(!left, std::string(where) + ": track data " + tail + " in " + std::string(output));
  }
}

// A default sensitive name, or a path whose last step is one (card.cvv, card[cvv]).
bool SensitiveName(std::string_view key) {
  if (!key.empty() && key.back() == ']') key.remove_suffix(1);
  if (const size_t step = key.find_last_of(".["); step != std::string_view::npos) key.remove_prefix(step + 1);
  std::string k(key);
  for (char& c : k) c = (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
  for (const char* s : kDefaultSensitiveFields) {
    if (k == s) return true;
  }
  return false;
}

bool KeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '_' || c == '-';
}

// No sensitive name in `text` as a whole word before a delimiter (an
// optional quote, escaped quote or bracket, spaces, then = or :), nor as
// an XML element.
void CheckNoPairs(std::string_view text, const char* where) {
  for (size_t i = 0; i < text.size();) {
    if (!KeyChar(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < text.size() && KeyChar(text[j])) ++j;
    if (SensitiveName(text.substr(i, j - i))) {
      size_t p = j;
      if (p + 1 < text.size() && text[p] == '\\' && (text[p + 1] == '"' || text[p + 1] == '\'')) {
        p += 2;
      } else if (p < text.size() && (text[p] == '"' || text[p] == '\'' || text[p] == ']')) {
        ++p;
      }
      while (p < text.size() && (text[p] == ' ' || text[p] == '\t') && p - j < 16) ++p;
      const bool pair = p < text.size() && (text[p] == '=' || text[p] == ':');
      const bool element = i > 0 && text[i - 1] == '<' && j < text.size() && text[j] == '>';
      FUZZ_CHECK(!pair && !element, std::string(where) + ": sensitive pair in " + std::string(text));
    }
    i = j;
  }
}

// The document's names, strings (unescaped) and numbers, one a line: the
// text card numbers are looked for in (JSON text itself is not: the hex
// digits of an escape, \u0AA6, would join the digits after it).
void AppendValues(const Json& j, Json::Ref r, std::vector<std::string>* out) {
  std::string scratch;
  if (j.type(r) == Json::Type::kString) out->emplace_back(j.str(r, &scratch));
  if (j.type(r) == Json::Type::kNumber) out->emplace_back(j.raw(r));
  if (!j.IsContainer(r)) return;
  for (Json::Ref c = j.first(r); c != Json::kNone; c = j.next(c)) {
    if (j.IsObject(r)) out->emplace_back(j.key(c, &scratch));
    AppendValues(j, c, out);
  }
}

std::vector<std::string> Values(std::string_view json) {
  Json j;
  std::vector<std::string> out;
  if (j.Parse(json).ok()) AppendValues(j, j.root(), &out);
  return out;
}

std::string Lines(const std::vector<std::string>& values) {
  std::string s;
  for (const std::string& v : values) s += v + '\n';
  return s;
}

// A JSON number in exponent form written out: the digits of the integer
// it spells ("4.98e3" -> "4980"), empty when it has no exponent, is below
// 1, or its integer has more than 40 digits.
std::string IntegerOf(std::string_view number) {
  size_t i = !number.empty() && number[0] == '-' ? 1 : 0;
  std::string all;
  long point = -1;
  for (; i < number.size() && (IsDigit(number[i]) || number[i] == '.'); ++i) {
    if (number[i] == '.') {
      point = static_cast<long>(all.size());
    } else {
      all.push_back(number[i]);
    }
  }
  if (i >= number.size() || (number[i] != 'e' && number[i] != 'E')) return "";
  if (point < 0) point = static_cast<long>(all.size());
  ++i;
  const bool negative = i < number.size() && number[i] == '-';
  if (i < number.size() && (number[i] == '-' || number[i] == '+')) ++i;
  long exp = 0;
  for (; i < number.size() && IsDigit(number[i]) && exp < 1000; ++i) exp = exp * 10 + (number[i] - '0');
  if (exp >= 1000) return "";
  const long int_len = point + (negative ? -exp : exp);
  if (int_len <= 0 || int_len > 200) return "";
  std::string integer = all.substr(0, std::min<size_t>(all.size(), static_cast<size_t>(int_len)));
  if (static_cast<long>(integer.size()) < int_len) integer.append(static_cast<size_t>(int_len) - integer.size(), '0');
  while (integer.size() > 1 && integer[0] == '0') integer.erase(0, 1);
  return integer.size() <= 40 ? integer : "";
}

std::shared_ptr<const Plugin> Make() {
  toml::table table{{"type", "pci"}};
  Settings s(table, "plugins.p");
  Result<std::shared_ptr<const Plugin>> p = MakePciPlugin(s, "");
  if (!p.ok()) ::edgesync::fuzz::Fail(kTarget, "MakePciPlugin", p.status().ToString());
  return *p;
}

const Plugin& ThePlugin() {
  static const std::shared_ptr<const Plugin> plugin = Make();
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
  std::string scratch;
  std::vector<Json::Ref> stack{again.root()};
  while (!stack.empty()) {
    const Json::Ref r = stack.back();
    stack.pop_back();
    if (!again.IsContainer(r)) continue;
    for (Json::Ref c = again.first(r); c != Json::kNone; c = again.next(c)) {
      if (again.IsObject(r)) FUZZ_CHECK(!SensitiveName(again.key(c, &scratch)), std::string(again.key(c, &scratch)));
      stack.push_back(c);
    }
  }
  return out;
}

bool NothingLeft(std::string_view text) { return !HasPan(text); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  Json probe;
  const bool is_json = probe.Parse(input).ok();

  // Raw payload, user property (name and value), topic, content type.
  std::string raw(input), topic(input), content_type(input);
  std::vector<std::pair<std::string, std::string>> props{{"note", std::string(input)}, {std::string(input), "x"}};
  Event e;
  e.topic = topic;
  e.topic_text = &topic;
  e.content_type = &content_type;
  e.raw = &raw;
  e.properties = &props;
  FUZZ_CHECK(ThePlugin().Process(e) == Action::kKeep, "");
  FUZZ_CHECK(e.topic.data() == topic.data() || e.topic == std::string_view(topic), "the topic view is stale");
  FUZZ_CHECK(!props.empty() && props[0].first == "note", "the property named note was removed");
  for (const auto& [name, value] : props) {
    FUZZ_CHECK(!SensitiveName(name), "a property of a sensitive name is left: " + name);
  }
  for (const auto& [where, text] : {std::pair<const char*, std::string_view>{"topic", topic},
                                    {"content type", content_type},
                                    {"property value", props[0].second}}) {
    CheckNoCardData(input, text, where);
    CheckNoPairs(text, where);
    FUZZ_CHECK(NothingLeft(text), std::string(where) + ": a PAN is left in " + std::string(text));
  }
  if (props.size() == 2) CheckNoCardData(input, props[1].first, "property name");
  if (!is_json) {
    CheckNoCardData(input, raw, "raw");
    CheckNoPairs(raw, "raw");
    FUZZ_CHECK(NothingLeft(raw), "a PAN is left in " + raw);
    FUZZ_CHECK(props[0].second == raw, "a property is masked unlike a payload");
    return 0;
  }

  // JSON event; and the raw payload, which parsed, came out as it.
  const std::string as_parsed = MaskJson(input, false);
  const std::string as_edited = MaskJson(input, true);
  const std::vector<std::string> in_values = Values(input), out_values = Values(as_parsed);
  CheckNoCardData(Lines(in_values), Lines(out_values), "json");
  for (const std::string& v : out_values) {
    CheckNoPairs(v, "json value");
    FUZZ_CHECK(NothingLeft(v), "a PAN is left in the value " + v);
  }
  for (const std::string& v : in_values) {
    const std::string integer = IntegerOf(v);
    if (integer.empty()) continue;
    for (const std::string& pan : WholePans(integer)) {
      for (const std::string& w : out_values) {
        FUZZ_CHECK(IntegerOf(w) != pan, "json: " + v + " (" + pan + ") left as " + w);
      }
    }
  }
  // Compared as values: a document edited is written again, so white space
  // and escapes may differ.
  Json a, b, c;
  FUZZ_CHECK(a.Parse(as_parsed).ok() && b.Parse(as_edited).ok() && c.Parse(raw).ok(), "");
  FUZZ_CHECK(fuzz::JsonValue(a) == fuzz::JsonValue(b), "shortcut and walk differ: " + as_parsed + " vs " + as_edited);
  FUZZ_CHECK(fuzz::JsonValue(a) == fuzz::JsonValue(c), "raw and JSON stream differ: " + raw + " vs " + as_parsed);
  return 0;
}

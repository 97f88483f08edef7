#include "plugins/pci.h"

#include "base/env.h"
#include "base/openssl.h"
#include "plugins/card_scan.h"

#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <vector>

namespace edgesync {

namespace {

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A raw payload worth parsing as JSON: its first byte that is not white
// space can start a JSON value.
bool MayBeJson(std::string_view s) {
  for (char c : s) {
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') continue;
    return c == '{' || c == '[' || c == '"' || c == '-' || (c >= '0' && c <= '9') || c == 't' || c == 'f' ||
           c == 'n';
  }
  return false;
}

class PciPlugin : public Plugin {
 public:
  PciPlugin(bool token, std::string key, std::vector<std::string> sensitive)
      : token_(token), key_(std::move(key)), sensitive_(std::move(sensitive)) {
    for (const std::string& s : sensitive_) {
      if (s.empty() || s.size() > 63) continue;  // refused by MakePciPlugin
      max_sensitive_ = std::max(max_sensitive_, s.size());
      first_letters_[s.size()] |= 1u << (Fold(s[0]) & 31);
      names_ |= Json::NameBit(s);
    }
  }

  Action Process(Event& e) const override {
    if (e.json != nullptr && e.json->root() != Json::kNone) {
      Document(*e.json);
    } else if (e.raw != nullptr) {
      Raw(e.raw);
    }
    if (e.properties != nullptr) Properties(*e.properties);
    if (e.topic_text != nullptr && Text(*e.topic_text, &scratch_)) {
      e.topic_text->swap(scratch_);
      e.topic = *e.topic_text;
    }
    if (e.content_type != nullptr && Text(*e.content_type, &scratch_)) e.content_type->swap(scratch_);
    // The key an earlier plugin took from a field (key_from) before this
    // one masked the field: it travels as edgesync.key and becomes the
    // record's Kafka key centrally.
    if (!e.route.key.empty() && Text(e.route.key, &scratch_)) e.route.key.swap(scratch_);
    return Action::kKeep;
  }

 private:
  std::string Replace(std::string_view digits, std::string_view layout) const {
    if (!token_) return MaskLayout(digits, layout);
    unsigned char mac[32];
    unsigned int len = 0;
    HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), reinterpret_cast<const unsigned char*>(digits.data()),
         digits.size(), mac, &len);
    return "tok_" + ossl::Hex(mac, 16);
  }

  // ASCII case folding: the names are ASCII, and a non-ASCII byte only
  // ever equals itself.
  static char Fold(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

  // Called for every member name, property name and word before a
  // delimiter in text: a filter by length and first letter lets almost
  // every name through without a comparison. A path counts by its last
  // step (card.cvv, card[cvv]), as in text pairs.
  bool Sensitive(std::string_view key) const {
    if (!key.empty() && key.back() == ']') key.remove_suffix(1);
    if (const size_t step = key.find_last_of(".["); step != std::string_view::npos) key.remove_prefix(step + 1);
    if (key.empty() || key.size() > max_sensitive_) return false;
    if (((first_letters_[key.size()] >> (Fold(key[0]) & 31)) & 1) == 0) return false;
    for (const std::string& s : sensitive_) {
      if (s.size() == key.size() &&
          std::equal(s.begin(), s.end(), key.begin(), [](char a, char b) { return a == Fold(b); })) {
        return true;
      }
    }
    return false;
  }

  // Text (a raw payload that is not JSON, a string, a name, a property,
  // the topic, the content type): sensitive pairs removed, then PANs and
  // track data. Removing track data can join what was around it into a
  // new pair ("cv;4111...=2512...?v=1"): then again, kRescans times at
  // most (each pass removes or masks, and overwrites in the end, so the
  // last leaves neither). False, and *out untouched, when nothing changed.
  bool Text(std::string_view text, std::string* out) const {
    // A pair needs '=' or ':' after its name, or '<' before it.
    const bool delimiters = std::any_of(text.begin(), text.end(), [](char c) { return c == '=' || c == ':' || c == '<'; });
    if (!delimiters && !HasPan(text)) return false;
    std::string current, next;
    bool changed = false;
    for (int pass = 0; pass < kRescans; ++pass) {
      const std::string_view in = changed ? std::string_view(current) : text;
      bool again = false;
      if (RemoveSensitivePairs(in, sensitive_test_, &next)) {
        current.swap(next);
        changed = true;
      }
      const std::string_view masked_in = changed ? std::string_view(current) : text;
      if (MaskPans(masked_in, replace_, &next)) {
        current.swap(next);
        changed = true;
        again = RemoveSensitivePairs(current, sensitive_test_, nullptr);
      }
      if (!again) break;
      if (pass + 1 == kRescans && RemoveSensitivePairs(current, sensitive_test_, &next, /*overwrite_only=*/true)) {
        current.swap(next);
      }
    }
    if (!changed) return false;
    out->swap(current);
    return true;
  }

  // A document: most hold no card data, and one pass over their text shows
  // it (no PAN, track, sensitive pair or member there, no escape that could
  // hide one): the walk over every value is left out. A document an
  // earlier plugin edited is walked whatever its text says.
  void Document(Json& j) const {
    const std::string_view text = j.original();
    const bool values = j.dirty() || text.find('\\') != std::string_view::npos || HasPan(text) ||
                        (PairsPossible(text) && RemoveSensitivePairs(text, sensitive_test_, nullptr));
    // Sensitive names can only be there if their bits are in the names'
    // signature: then a walk over the members alone.
    const bool names = values || (j.name_signature() & names_) != 0;
    if (names) Walk(j, j.root(), values);
  }

  // Whether JSON text without escapes may hold a sensitive pair inside a
  // string (a member name or a value): it needs '=' or '<', or a ':' after
  // its name. A ':' between members follows a quote (white space aside),
  // one inside a string after a name does not (no '"' is inside a string
  // without escapes). Eight bytes at a time: this runs on every event.
  static bool PairsPossible(std::string_view json) {
    constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
    auto equal = [](uint64_t w, unsigned char c) {  // the high bit of each byte of w that is c
      const uint64_t x = w ^ (kOnes * c);
      return (x - kOnes) & ~x & kHigh;
    };
    auto member_colon = [&](size_t at) {
      while (at > 0 && (json[at - 1] == ' ' || json[at - 1] == '\t' || json[at - 1] == '\n' || json[at - 1] == '\r')) {
        --at;
      }
      return at > 0 && json[at - 1] == '"';
    };
    const size_t n = json.size();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
      uint64_t w;
      std::memcpy(&w, json.data() + i, 8);
      if ((equal(w, '=') | equal(w, '<')) != 0) return true;
      for (uint64_t c = equal(w, ':'); c != 0; c &= c - 1) {
        if (!member_colon(i + static_cast<size_t>(__builtin_ctzll(c)) / 8)) return true;
      }
    }
    for (; i < n; ++i) {
      if (json[i] == '=' || json[i] == '<' || (json[i] == ':' && !member_colon(i))) return true;
    }
    return false;
  }

  // A raw payload (a raw stream's, a dead letter's): a document when it
  // parses as one, else text.
  void Raw(std::string* raw) const {
    if (MayBeJson(*raw) && raw_json_.Parse(*raw).ok()) {
      Document(raw_json_);
      if (raw_json_.dirty()) raw_json_.Serialize(raw);
      return;
    }
    if (Text(*raw, &scratch_)) raw->swap(scratch_);
  }

  // Card data in names and values is masked; then properties whose name,
  // as it now reads, is sensitive go (cleaning a name can make one:
  // "cv<cvv>1</cvv>v" reads "cvv" once its pair is gone).
  void Properties(std::vector<std::pair<std::string, std::string>>& props) const {
    for (auto& [name, value] : props) {
      if (Text(name, &scratch_)) name.swap(scratch_);
      if (Text(value, &scratch_)) value.swap(scratch_);
    }
    props.erase(std::remove_if(props.begin(), props.end(), [&](const auto& p) { return Sensitive(p.first); }),
                props.end());
  }

  // Removes sensitive members; with `values`, reads every string, number
  // and member name as text too.
  void Walk(Json& j, Json::Ref r, bool values) const {
    switch (j.type(r)) {
      case Json::Type::kObject:
        for (Json::Ref c = j.first(r); c != Json::kNone;) {
          const Json::Ref next = j.next(c);
          std::string_view key = j.key(c, &key_scratch_);
          if (values && Text(key, &scratch_)) {  // card data in a name; it may then read as a sensitive one
            j.Rename(c, scratch_);
            key = scratch_;
          }
          if (Sensitive(key)) {
            j.Remove(c);
            c = next;
            continue;
          }
          if (values || j.IsContainer(c)) Walk(j, c, values);
          c = next;
        }
        break;
      case Json::Type::kArray:
        for (Json::Ref c = j.first(r); c != Json::kNone; c = j.next(c)) {
          if (values || j.IsContainer(c)) Walk(j, c, values);
        }
        break;
      case Json::Type::kString: {
        if (!values) break;
        std::string_view s = j.str(r, &value_scratch_);
        if (Text(s, &scratch_)) j.ReplaceWithString(r, scratch_);
        break;
      }
      case Json::Type::kNumber: {
        if (!values) break;
        // A PAN sent as a number, in any spelling (4.98e15, 4982...0.0,
        // -0.498E+16), leaves as a masked string.
        std::string_view s = j.raw(r);
        const bool exponent = s.find_first_of("eE") != std::string_view::npos;
        if ((s.size() >= 13 || exponent) && MaskPans(s, replace_, &scratch_)) j.ReplaceWithString(r, scratch_);
        break;
      }
      default:
        break;
    }
  }

  const bool token_;
  const std::string key_;
  const std::vector<std::string> sensitive_;
  size_t max_sensitive_ = 0;
  // [n] bit (c & 31): a sensitive name of n characters starts with c.
  std::array<uint32_t, 64> first_letters_{};
  uint64_t names_ = 0;  // Json::NameBit of every sensitive name
  const PanReplace replace_ = [this](std::string_view digits, std::string_view layout) {
    return Replace(digits, layout);
  };
  const NameTest sensitive_test_ = [this](std::string_view name) { return Sensitive(name); };
  // Scratch: Process runs on one thread at a time.
  mutable std::string scratch_, key_scratch_, value_scratch_;
  mutable Json raw_json_;
};

struct PciSettings {
  std::string mode = "mask";
  std::string token_key_file;
  std::vector<std::string> sensitive_fields{std::begin(kDefaultSensitiveFields), std::end(kDefaultSensitiveFields)};
  std::vector<std::string> more_sensitive_fields;

  static const OptionTable<PciSettings>& Options() {
    using P = PciSettings;
    static const auto* table = &(*new OptionTable<PciSettings>())  // never freed: a process-long constant
        .String("mode", &P::mode,
                "\"mask\": a PAN keeps its first six and last four digits, the rest `*`; \"token\": `tok_` + HMAC-SHA256 of its digits keyed by token_key_file, the same for the same card on every device with that key.")
        .String("token_key_file", &P::token_key_file,
                "The token key (at least 32 bytes, e.g. `head -c 32 /dev/urandom`); required with mode = \"token\". Relative to the file the table is in.")
        .List("sensitive_fields", &P::sensitive_fields,
              "Names (any case) of sensitive authentication data, removed with their values wherever they appear; replaces the default list.")
        .List("more_sensitive_fields", &P::more_sensitive_fields,
              "Names added to sensitive_fields (what a fleet usually wants).");
    return *table;
  }
};

}  // namespace

const PluginType& PciPluginType() {
  static const PluginType kType{
      "pci",
      "Card data never leaves the device readable: PANs masked or tokenised, sensitive authentication data removed, in payloads, properties, topics and keys (docs/plugins.md, \"pci\").",
      [] { return PciSettings::Options().Reference(); },
      [](Settings& s, const PluginContext& c) { return MakePciPlugin(s, c.base_dir, c.env); }};
  return kType;
}

Result<std::shared_ptr<const Plugin>> MakePciPlugin(Settings& s, const std::string& base_dir, Env* env) {
  PciSettings set;
  s.Read(PciSettings::Options(), &set);
  bool token = false;
  if (set.mode == "token") {
    token = true;
  } else if (set.mode != "mask") {
    s.Problem(*s.Get("mode"), "mode", "must be \"mask\" (first 6 and last 4 digits) or \"token\" (HMAC-SHA256)");
  }
  std::string key;
  const toml::node* key_node = s.Get("token_key_file");
  const std::optional<std::string> key_file =
      key_node != nullptr && key_node->is_string() ? std::optional<std::string>(set.token_key_file) : std::nullopt;
  if (token && key_node == nullptr) {
    s.Problem("token_key_file", "mode = \"token\" needs a key file (at least 32 bytes, e.g. head -c 32 /dev/urandom)");
  } else if (key_file) {
    std::string path = (!key_file->empty() && (*key_file)[0] != '/' && !base_dir.empty())
                           ? base_dir + "/" + *key_file
                           : *key_file;
    Result<std::string> bytes = env->ReadFile(path, kMaxKeyFileBytes);
    if (bytes.ok()) key = std::move(bytes).value();
    if (!bytes.ok()) {
      s.Problem(*s.Get("token_key_file"), "token_key_file", "cannot read " + path + ": " + bytes.status().message());
    } else if (key.size() < 32) {
      s.Problem(*s.Get("token_key_file"), "token_key_file",
                path + " holds " + std::to_string(key.size()) + " bytes; a token key needs at least 32");
    }
  }
  // sensitive_fields replaces the defaults; more_sensitive_fields adds to
  // them (or to sensitive_fields), which is what a fleet usually wants.
  std::vector<std::string> sensitive;
  const std::pair<const char*, const std::vector<std::string>*> lists[] = {
      {"sensitive_fields", &set.sensitive_fields}, {"more_sensitive_fields", &set.more_sensitive_fields}};
  for (const auto& [setting, list] : lists) {
    for (const std::string& f : *list) {
      if (f.empty() || f.size() > 63) s.Problem(*s.Get(setting), setting, "names are 1-63 characters");
      sensitive.push_back(Lower(f));
    }
  }
  if (!s.ok()) return s.status();
  return std::shared_ptr<const Plugin>(std::make_shared<PciPlugin>(token, std::move(key), std::move(sensitive)));
}

}  // namespace edgesync

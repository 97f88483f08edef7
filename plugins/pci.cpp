#include "plugins/pci.h"

#include <openssl/hmac.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <fstream>
#include <sstream>
#include <vector>

namespace edgesync {

bool LuhnValid(std::string_view digits) {
  int sum = 0;
  bool twice = false;
  for (size_t i = digits.size(); i-- > 0;) {
    int d = digits[i] - '0';
    if (twice) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    twice = !twice;
  }
  return sum % 10 == 0;
}

namespace {

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// Byte classes for the fast pass: 1 a digit, 2 a separator inside a run.
constexpr auto kClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = '0'; c <= '9'; ++c) t[static_cast<size_t>(c)] = 1;
  t[' '] = t['-'] = 2;
  return t;
}();

struct Group {
  size_t begin, end;  // a run of digits in the text
};

// A PAN candidate: 13-19 digits, first digit 2-6, Luhn-valid.
bool IsPan(std::string_view digits) {
  return digits.size() >= 13 && digits.size() <= 19 && digits[0] >= '2' && digits[0] <= '6' &&
         LuhnValid(digits);
}

}  // namespace

namespace {

// Finds the PANs of `text`: with `replace` and `out`, writes the text with
// each replaced into *out; without, stops at the first. True when it found one.
bool ScanPans(std::string_view text, const std::function<std::string(std::string_view, std::string_view)>* replace,
              std::string* out) {
  const size_t n = text.size();
  size_t copied = 0;  // text[0, copied) is in *out already
  bool found = false;
  thread_local std::vector<Group> groups;  // kept from call to call: no allocation per event
  thread_local std::string digits;
  for (size_t i = 0; i < n;) {
    if (!IsDigit(text[i])) {
      ++i;
      continue;
    }
    // The digit groups of one run, joined by single spaces or dashes.
    groups.clear();
    size_t j = i;
    size_t total = 0;
    for (;;) {
      const size_t start = j;
      while (j < n && IsDigit(text[j])) ++j;
      groups.push_back(Group{start, j});
      total += j - start;
      if (j + 1 < n && (text[j] == ' ' || text[j] == '-') && IsDigit(text[j + 1])) {
        ++j;
        continue;
      }
      break;
    }
    const size_t run_end = j;
    i = run_end;
    if (total < 13) continue;  // the common case: no PAN here
    // The longest span of whole groups that is a PAN, from each start group.
    for (size_t a = 0; a < groups.size();) {
      size_t best = SIZE_MAX;
      size_t count = 0;
      for (size_t b = a; b < groups.size(); ++b) {
        count += groups[b].end - groups[b].begin;
        if (count > 19) break;
        if (count < 13) continue;
        digits.clear();
        for (size_t k = a; k <= b; ++k) digits.append(text.substr(groups[k].begin, groups[k].end - groups[k].begin));
        if (IsPan(digits)) best = b;
      }
      if (best == SIZE_MAX) {
        ++a;
        continue;
      }
      if (out == nullptr) return true;
      digits.clear();
      for (size_t k = a; k <= best; ++k) digits.append(text.substr(groups[k].begin, groups[k].end - groups[k].begin));
      const size_t begin = groups[a].begin, end = groups[best].end;
      if (!found) out->clear();
      found = true;
      out->append(text.substr(copied, begin - copied));
      out->append((*replace)(digits, text.substr(begin, end - begin)));
      copied = end;
      a = best + 1;
    }
  }
  if (found) out->append(text.substr(copied));
  return found;
}

}  // namespace

bool MaskPans(std::string_view text,
              const std::function<std::string(std::string_view, std::string_view)>& replace,
              std::string* out) {
  if (!ScanPans(text, &replace, out)) return false;
  // The digits a mask keeps can join the groups after it into what reads as
  // a new card number ("4155555555525 14111 1111 1111 1111": the PAN's last
  // four, 4111, then three groups that were not part of it). Scan the result
  // again until nothing reads as one. Text can be made so that each pass
  // reveals one more (a chain of such groups, one link a pass): after
  // kRescans, one last pass turns every digit of what it finds into '*'.
  // That reveals nothing new (no digit is kept to start a group), so the
  // result never holds a PAN, and the work stays linear in the text.
  constexpr int kRescans = 8;
  thread_local std::string again;
  for (int pass = 0; ScanPans(*out, &replace, &again); ++pass) {
    out->swap(again);
    if (pass + 1 < kRescans) continue;
    static const std::function<std::string(std::string_view, std::string_view)> every_digit =
        [](std::string_view, std::string_view written) {
          std::string m(written);
          for (char& c : m) c = IsDigit(c) ? '*' : c;
          return m;
        };
    if (ScanPans(*out, &every_digit, &again)) out->swap(again);
    break;
  }
  return true;
}

namespace {

const char* const kDefaultSensitive[] = {"cvv", "cvc", "cvv2", "track1", "track2", "pin", "pin_block"};

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
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
      // Most events hold no card data: one pass over their text shows it,
      // and the walk over every value is left out.
      const bool clean = !e.json->dirty() && Clean(e.json->original());
      // Sensitive names can only be there if their bits are in the names'
      // signature; an edited document is walked whatever it says.
      const bool names = e.json->dirty() || (e.json->name_signature() & names_) != 0;
      if (!clean || names) Walk(*e.json, e.json->root(), /*values=*/!clean);
    } else if (e.raw != nullptr) {
      if (MaskPans(*e.raw, replace_, &scratch_)) e.raw->swap(scratch_);
    }
    if (e.properties != nullptr) {
      for (auto& [name, value] : *e.properties) {
        if (MaskPans(value, replace_, &scratch_)) value.swap(scratch_);
      }
    }
    return Action::kKeep;
  }

 private:
  std::string Replace(std::string_view digits, std::string_view written) const {
    if (token_) {
      unsigned char mac[32];
      unsigned int len = 0;
      HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()),
           reinterpret_cast<const unsigned char*>(digits.data()), digits.size(), mac, &len);
      static const char kHex[] = "0123456789abcdef";
      std::string t = "tok_";
      for (int i = 0; i < 16; ++i) {
        t.push_back(kHex[mac[i] >> 4]);
        t.push_back(kHex[mac[i] & 15]);
      }
      return t;
    }
    std::string m(written);
    size_t k = 0;
    for (char& c : m) {
      if (!IsDigit(c)) continue;
      if (k >= 6 && k + 4 < digits.size()) c = '*';
      ++k;
    }
    return m;
  }

  // ASCII case folding: the names are ASCII, and a non-ASCII byte only
  // ever equals itself.
  static char Fold(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

  // Called for every member name: a filter by length and first letter
  // lets almost every name through without a comparison.
  bool Sensitive(std::string_view key) const {
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

  // True when the JSON `text` (as parsed) provably holds no PAN: it has no
  // escapes (so every string and name is its own text) and no PAN anywhere
  // (strings, numbers, names and the syntax between them). A PAN needs 13
  // digit-or-separator bytes in a row, so the pass looks 12 bytes ahead and
  // skips 13 at a time past any other byte; a span that has 13 in a row is
  // checked exactly. Most of what pci costs on an event without card data.
  static bool Clean(std::string_view text) {
    if (text.find('\\') != std::string_view::npos) return false;
    const unsigned char* p = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    size_t i = 0;
    while (i + 13 <= n) {
      size_t j = i + 12;
      while (kClass[p[j]] != 0 && j > i) --j;
      if (kClass[p[j]] == 0) {  // no 13 in a row through j
        i = j + 1;
        continue;
      }
      size_t e = i + 13;
      bool plain = true;  // digits only: one group
      for (size_t k = i; k < e; ++k) plain &= kClass[p[k]] == 1;
      while (e < n && kClass[p[e]] != 0) plain &= kClass[p[e++]] == 1;
      // One group (a timestamp, an id) is a PAN only if it is one whole;
      // groups with separators go through the full scanner.
      const std::string_view span = text.substr(i, e - i);
      if (plain ? IsPan(span) : ScanPans(span, nullptr, nullptr)) return false;
      i = e + 1;
    }
    return true;
  }

  // Removes sensitive members; with `values`, masks the PANs of every
  // string, number and member name too.
  void Walk(Json& j, Json::Ref r, bool values) const {
    switch (j.type(r)) {
      case Json::Type::kObject:
        for (Json::Ref c = j.first(r); c != Json::kNone;) {
          const Json::Ref next = j.next(c);
          std::string_view key = j.key(c, &key_scratch_);
          if (Sensitive(key)) {
            j.Remove(c);
            c = next;
            continue;
          }
          if (values && MaskPans(key, replace_, &scratch_)) j.Rename(c, scratch_);  // a card number as a name
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
        if (MaskPans(s, replace_, &scratch_)) j.ReplaceWithString(r, scratch_);
        break;
      }
      case Json::Type::kNumber: {
        if (!values) break;
        // A PAN sent as a number leaves as a masked string.
        std::string_view s = j.raw(r);
        if (s.size() >= 13 && MaskPans(s, replace_, &scratch_)) {
          j.ReplaceWithString(r, scratch_);
        }
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
  const std::function<std::string(std::string_view, std::string_view)> replace_ =
      [this](std::string_view digits, std::string_view written) { return Replace(digits, written); };
  // Scratch buffers: Process runs on one thread at a time.
  mutable std::string scratch_, key_scratch_, value_scratch_;
};

}  // namespace

Result<std::shared_ptr<const Plugin>> MakePciPlugin(Settings& s, const std::string& base_dir) {
  s.OnlyKeys({"mode", "token_key_file", "sensitive_fields"});
  const std::string mode = s.String("mode").value_or("mask");
  bool token = false;
  if (mode == "token") {
    token = true;
  } else if (mode != "mask") {
    s.Problem(*s.Get("mode"), "mode", "must be \"mask\" (first 6 and last 4 digits) or \"token\" (HMAC-SHA256)");
  }
  std::string key;
  std::optional<std::string> key_file = s.String("token_key_file");
  if (token && !key_file) {
    s.Problem("token_key_file", "mode = \"token\" needs a key file (at least 32 bytes, e.g. head -c 32 /dev/urandom)");
  } else if (key_file) {
    std::string path = (!key_file->empty() && (*key_file)[0] != '/' && !base_dir.empty())
                           ? base_dir + "/" + *key_file
                           : *key_file;
    std::ifstream f(path, std::ios::binary);
    std::stringstream buf;
    buf << f.rdbuf();
    key = buf.str();
    if (!f) {
      s.Problem(*s.Get("token_key_file"), "token_key_file", "cannot read " + path);
    } else if (key.size() < 32) {
      s.Problem(*s.Get("token_key_file"), "token_key_file",
                path + " holds " + std::to_string(key.size()) + " bytes; a token key needs at least 32");
    }
  }
  std::vector<std::string> sensitive(std::begin(kDefaultSensitive), std::end(kDefaultSensitive));
  if (auto list = s.StringList("sensitive_fields")) {
    sensitive.clear();
    for (const std::string& f : *list) {
      if (f.empty() || f.size() > 63) {
        s.Problem(*s.Get("sensitive_fields"), "sensitive_fields", "names are 1-63 characters");
      }
      sensitive.push_back(Lower(f));
    }
  }
  if (!s.ok()) return s.status();
  return std::shared_ptr<const Plugin>(std::make_shared<PciPlugin>(token, std::move(key), std::move(sensitive)));
}

}  // namespace edgesync

#include "plugins/card_scan.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

#include "base/utf8.h"
#include "plugins/unicode_tables.h"

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

char LuhnCheckDigit(std::string_view body) {
  // Doubling starts at the last digit of `body`: it is second from the right
  // once the check digit follows.
  int sum = 0;
  bool twice = true;
  for (size_t i = body.size(); i-- > 0;) {
    int d = body[i] - '0';
    if (twice) d = d * 2 > 9 ? d * 2 - 9 : d * 2;
    sum += d;
    twice = !twice;
  }
  return static_cast<char>('0' + (10 - sum % 10) % 10);
}

bool IssuerAccepts(std::string_view d, PanPolicy::Issuers issuers) {
  const size_t n = d.size();
  if (n < 13 || n > 19) return false;
  switch (issuers) {
    case PanPolicy::Issuers::kAny: return true;
    case PanPolicy::Issuers::kTwoToSix: return d[0] >= '2' && d[0] <= '6';
    case PanPolicy::Issuers::kTable: break;
  }
  auto prefix = [&](size_t k) {
    int v = 0;
    for (size_t i = 0; i < k; ++i) v = v * 10 + (d[i] - '0');
    return v;
  };
  const bool long_ones = n >= 16;  // 16-19
  switch (d[0]) {
    case '1': return n == 15;  // UATP
    case '2': {
      const int p4 = prefix(4);
      if (p4 >= 2200 && p4 <= 2205) return long_ones;  // Mir, BORICA
      return p4 >= 2221 && p4 <= 2720 && n == 16;     // Mastercard
    }
    case '3': {
      const int p2 = prefix(2), p3 = prefix(3), p4 = prefix(4);
      if (p2 == 34 || p2 == 37) return n == 15;                                         // Amex
      if ((p3 >= 300 && p3 <= 305) || p4 == 3095 || p2 == 36 || p2 == 38 || p2 == 39) {  // Diners
        return n >= 14;
      }
      return p4 >= 3528 && p4 <= 3589 && long_ones;  // JCB (RuPay 353, 356)
    }
    case '4': return n == 13 || n == 16 || n == 19;  // Visa (Electron, Dankort, Elo)
    case '5':  // Mastercard 51-55; Maestro 50, 56-58; Verve, RuPay 508, Elo, Dankort
    case '6':  // Discover, UnionPay 62, RuPay 60/65, Maestro, InterPayment, Troy 65, Elo, Hipercard
    case '7':  // MII 7, petroleum: fleet and fuel cards
      return long_ones;
    case '8': {
      const int p2 = prefix(2);
      return (p2 == 81 || p2 == 82) && long_ones;  // UnionPay 81, RuPay 82 (not ICCIDs, 89)
    }
    case '9': return prefix(4) == 9792 && n == 16;  // Troy
    default: return false;
  }
}

std::string MaskLayout(std::string_view digits, std::string_view layout) {
  std::string m(layout);
  const size_t n = digits.size();
  const size_t head = n >= 13 ? 6 : 0;
  size_t k = 0;
  for (char& c : m) {
    if (c < '0' || c > '9') continue;
    if (k >= head && k + 4 < n) c = '*';
    ++k;
  }
  return m;
}

namespace {

bool IsAsciiDigit(char c) { return c >= '0' && c <= '9'; }

// ---- Tokens: what a reader sees at a position of the text ----

enum class Kind : uint8_t { kOther, kDigit, kSeparator, kInvisible };

struct Token {
  Kind kind = Kind::kOther;
  uint8_t value = 0;  // a digit's value
  uint8_t sep = 0;    // a separator's class (one SeparatorClass bit)
  char ascii = 0;     // a separator's ASCII stand-in in a layout
  uint32_t cp = 0;    // the code point it decodes to
  uint32_t len = 1;   // bytes of text it spans
};

// ASCII: digits and separators; '\\', '%' and '&' may start an escape.
constexpr auto kAscii = [] {
  std::array<Token, 128> t{};
  for (uint32_t c = 0; c < 128; ++c) {
    t[c].cp = c;
    t[c].ascii = static_cast<char>(c);
  }
  for (int c = '0'; c <= '9'; ++c) {
    t[static_cast<size_t>(c)].kind = Kind::kDigit;
    t[static_cast<size_t>(c)].value = static_cast<uint8_t>(c - '0');
  }
  auto sep = [&](char c, uint8_t cls) {
    t[static_cast<size_t>(c)].kind = Kind::kSeparator;
    t[static_cast<size_t>(c)].sep = cls;
  };
  sep(' ', kSepSpace);
  sep('-', kSepDash);
  for (char c : {'.', ',', '/', '_', ':', ';', '|', '\''}) sep(c, kSepPunct);
  for (int c = 1; c < 0x20; ++c) sep(static_cast<char>(c), kSepLine);
  return t;
}();

// A non-ASCII code point as a separator: its class and ASCII stand-in.
bool UnicodeSeparator(uint32_t cp, uint8_t* cls, char* ascii) {
  switch (cp) {
    case 0x00A0: case 0x1680: case 0x202F: case 0x205F: case 0x3000:
      *cls = kSepSpace, *ascii = ' ';
      return true;
    case 0x058A: case 0x1806: case 0x2E3A: case 0x2E3B: case 0x2212: case 0xFE58: case 0xFE63: case 0xFF0D:
      *cls = kSepDash, *ascii = '-';
      return true;
    case 0x0085: case 0x2028: case 0x2029:
      *cls = kSepLine, *ascii = ' ';
      return true;
    case 0x00B7: case 0x2024: case 0x2027: case 0x066B: case 0x3002: case 0xFE52: case 0xFF0E: case 0x2219:
      *cls = kSepPunct, *ascii = '.';
      return true;
    case 0x060C: case 0x066C: case 0x3001: case 0xFE50: case 0xFE51: case 0xFF0C:
      *cls = kSepPunct, *ascii = ',';
      return true;
    case 0x2044: case 0x2215: case 0xFF0F:
      *cls = kSepPunct, *ascii = '/';
      return true;
    case 0xFF3F: *cls = kSepPunct, *ascii = '_'; return true;
    case 0xFF1A: case 0xFE55: *cls = kSepPunct, *ascii = ':'; return true;
    case 0xFF1B: case 0xFE54: *cls = kSepPunct, *ascii = ';'; return true;
    case 0xFF5C: *cls = kSepPunct, *ascii = '|'; return true;
    case 0x2019: case 0x02BC: *cls = kSepPunct, *ascii = '\''; return true;
    default: break;
  }
  if (cp >= 0x2000 && cp <= 0x200A) {
    *cls = kSepSpace, *ascii = ' ';
    return true;
  }
  if (cp >= 0x2010 && cp <= 0x2015) {
    *cls = kSepDash, *ascii = '-';
    return true;
  }
  return false;
}

template <typename R, size_t N>
const R* FindRange(const R (&table)[N], uint32_t cp) {
  const R* it = std::upper_bound(table, table + N, cp, [](uint32_t c, const R& r) { return c < r.first; });
  if (it == table) return nullptr;
  --it;
  return cp <= it->last ? it : nullptr;
}

// What code point `cp` is to a reader, spanning `len` bytes of text.
Token Classify(uint32_t cp, uint32_t len) {
  Token t;
  t.cp = cp;
  t.len = len;
  if (cp < 128) {
    const Token& a = kAscii[cp];
    if (a.kind == Kind::kDigit || a.kind == Kind::kSeparator) {
      t.kind = a.kind;
      t.value = a.value;
      t.sep = a.sep;
      // An escaped control character (\u000a, %0A) stands as a space.
      t.ascii = a.kind == Kind::kSeparator && cp < 0x20 ? ' ' : a.ascii;
    }
    return t;
  }
  if (const unicode::DigitRange* d = FindRange(unicode::kDigits, cp)) {
    t.kind = Kind::kDigit;
    t.value = static_cast<uint8_t>(d->value + (cp - d->first));
    return t;
  }
  if (UnicodeSeparator(cp, &t.sep, &t.ascii)) {
    t.kind = Kind::kSeparator;
    return t;
  }
  if (FindRange(unicode::kInvisible, cp) != nullptr) t.kind = Kind::kInvisible;
  return t;
}

// `k` hex digits at text[at...], or -1.
int64_t HexAt(std::string_view text, size_t at, size_t k) {
  if (at + k > text.size()) return -1;
  int64_t v = 0;
  for (size_t i = 0; i < k; ++i) {
    const int h = HexDigitValue(text[at + i]);
    if (h < 0) return -1;
    v = v * 16 + h;
  }
  return v;
}

// Escapes a decoder downstream would turn into a character: JSON and C
// (\uXXXX with surrogate pairs, \UXXXXXXXX, \xHH, \t \n \r \/), URL
// (%HH, UTF-8 as several), HTML and XML (&#N; &#xH; and the named spaces,
// dashes and invisible characters).
Token Escape(std::string_view text, size_t i) {
  const size_t n = text.size();
  const char c = text[i];
  if (c == '\\' && i + 1 < n) {
    const char e = text[i + 1];
    if (e == 'u') {
      int64_t cp = HexAt(text, i + 2, 4);
      if (cp < 0) return Token{};
      uint32_t len = 6;
      if (cp >= 0xD800 && cp < 0xDC00 && i + 7 < n && text[i + 6] == '\\' && text[i + 7] == 'u') {
        const int64_t lo = HexAt(text, i + 8, 4);
        if (lo >= 0xDC00 && lo < 0xE000) {
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          len = 12;
        }
      }
      return Classify(static_cast<uint32_t>(cp), len);
    }
    if (e == 'U') {
      const int64_t cp = HexAt(text, i + 2, 8);
      return cp >= 0 && cp < 0x110000 ? Classify(static_cast<uint32_t>(cp), 10) : Token{};
    }
    if (e == 'x') {
      const int64_t cp = HexAt(text, i + 2, 2);
      return cp >= 0 ? Classify(static_cast<uint32_t>(cp), 4) : Token{};
    }
    if (e == 't' || e == 'n' || e == 'r') return Classify(e == 't' ? '\t' : '\n', 2);
    if (e == '/') return Classify('/', 2);
    return Token{};
  }
  if (c == '%') {
    const int64_t b = HexAt(text, i + 1, 2);
    if (b < 0) return Token{};
    if (b < 0x80) return Classify(static_cast<uint32_t>(b), 3);
    unsigned char bytes[4];
    size_t k = 0;
    for (size_t at = i; k < 4 && at + 2 < n && text[at] == '%'; at += 3) {
      const int64_t v = HexAt(text, at + 1, 2);
      if (v < 0) break;
      bytes[k++] = static_cast<unsigned char>(v);
    }
    uint32_t cp;
    const size_t len = DecodeUtf8(std::string_view(reinterpret_cast<const char*>(bytes), k), 0, &cp);
    if (len == 0) return Token{};
    return Classify(cp, static_cast<uint32_t>(3 * len));
  }
  if (c == '&' && i + 2 < n) {
    // Bounded: "&&&&..." must not search the rest of the text each time.
    const size_t semicolon = text.substr(i + 1, 12).find(';');
    if (semicolon == std::string_view::npos) return Token{};
    const size_t end = i + 1 + semicolon;
    const std::string_view body = text.substr(i + 1, end - i - 1);
    const uint32_t len = static_cast<uint32_t>(end - i + 1);
    if (body.size() >= 2 && body[0] == '#') {
      uint64_t cp = 0;
      const bool hex = body[1] == 'x' || body[1] == 'X';
      const std::string_view num = body.substr(hex ? 2 : 1);
      if (num.empty()) return Token{};
      for (char d : num) {
        const int v = hex ? HexDigitValue(d) : (IsAsciiDigit(d) ? d - '0' : -1);
        if (v < 0) return Token{};
        cp = cp * (hex ? 16 : 10) + static_cast<uint64_t>(v);
        if (cp >= 0x110000) return Token{};
      }
      return Classify(static_cast<uint32_t>(cp), len);
    }
    static constexpr std::pair<std::string_view, uint32_t> kNamed[] = {
        {"nbsp", 0xA0},    {"ensp", 0x2002},   {"emsp", 0x2003},  {"thinsp", 0x2009}, {"ndash", 0x2013},
        {"mdash", 0x2014}, {"minus", 0x2212},  {"shy", 0xAD},     {"zwsp", 0x200B},   {"zwj", 0x200D},
        {"zwnj", 0x200C},  {"period", '.'},    {"comma", ','},    {"sol", '/'},       {"lowbar", '_'},
        {"hyphen", 0x2010}, {"dash", 0x2010},  {"colon", ':'},    {"Tab", '\t'},      {"NewLine", '\n'},
    };
    for (const auto& [name, cp] : kNamed) {
      if (body == name) return Classify(cp, len);
    }
  }
  return Token{};
}

// Families of escapes, as different decoders undo them: a JSON or C
// decoder (\u, \U, \x, \t, \n, \r, \/), a URL decoder (%HH), an HTML
// or XML one (&#N;, &name;).
enum EscapeFamily : uint8_t { kEscBackslash = 1, kEscPercent = 2, kEscAmpersand = 4, kEscAll = 7 };

inline uint8_t FamilyOf(unsigned char c) {
  return c == '\\' ? kEscBackslash : c == '%' ? kEscPercent : c == '&' ? kEscAmpersand : 0;
}

// The token at text[i] (i < text.size()). An escape of a family in
// `escapes` that decodes to a digit, a separator or an invisible character
// is one token; any other escape is read as the characters it is written
// with ("%41" is '%', then the digits "41": a reader sees those).
inline Token Decode(std::string_view text, size_t i, bool unicode, uint8_t escapes) {
  const unsigned char c = static_cast<unsigned char>(text[i]);
  if (c < 0x80) {
    if (unicode && (FamilyOf(c) & escapes) != 0) {
      const Token t = Escape(text, i);
      return t.kind == Kind::kOther ? Token{} : t;
    }
    return kAscii[c];  // copied whole: no field written apart (a store the next load would wait on)
  }
  if (!unicode) return Token{};
  uint32_t cp;
  const size_t len = DecodeUtf8(text, i, &cp);
  if (len == 0) return Token{};
  return Classify(cp, static_cast<uint32_t>(len));
}

// ---- Runs of digit groups ----

struct Digit {
  uint32_t begin, end;  // its bytes in the text
  uint8_t value;
};

struct Group {
  uint32_t first, count;  // its digits: digits[first, first + count)
  // The separators before it (groups after the first): how many, their
  // classes, the first one's code point; `same` compares two groups'.
  uint8_t seps = 0, sep_classes = 0;
  uint32_t sep_cp = 0;
  bool SameSeparator(const Group& o) const { return seps == o.seps && sep_classes == o.sep_classes && sep_cp == o.sep_cp; }
};

// A span of the text to rewrite: [begin, end) becomes the replacement of
// the PAN with `digits` and `layout`; or, with keep, text[keep_begin,
// keep_end) as it is written (a PAN masked already, in front of track
// data), its middle digits masked; or the expansion of a number in
// exponent form, masked.
struct Hit {
  uint32_t begin = 0, end = 0;
  std::string digits, layout;
  bool keep = false;
  uint32_t keep_begin = 0, keep_end = 0;
  std::string expanded;
};

// A valid EAN-13: its last digit is the GS1 check digit (weights 1, 3).
bool Ean13(std::string_view d);

// The ASCII digits `d` (13-19 of them) are a PAN under `policy`: a network's
// prefix at its length, Luhn-valid, and not what the context says it is not
// (a 13-digit Visa-range EAN-13).
bool PanDigits(std::string_view d, const PanPolicy& policy) {
  if (!IssuerAccepts(d, policy.issuers) || !LuhnValid(d)) return false;
  return !(policy.context && d.size() == 13 && d[0] == '4' && Ean13(d));
}

bool Ean13(std::string_view d) {
  if (d.size() != 13) return false;
  int sum = 0;
  for (size_t i = 0; i < 12; ++i) sum += (d[i] - '0') * (i % 2 ? 3 : 1);
  return (10 - sum % 10) % 10 == d[12] - '0';
}

bool CardLayout(const Group* g, size_t k) {
  if (k == 3 && g[0].count == 4 && g[1].count == 6 && (g[2].count == 4 || g[2].count == 5)) return true;
  for (size_t i = 0; i + 1 < k; ++i) {
    if (g[i].count != 4) return false;
  }
  return g[k - 1].count >= 1 && g[k - 1].count <= 4;
}

// text[from, to) is a number on its own, as a parser would read one:
// no letter, digit or point right before it (a sign aside) or after it.
// "ab79e87c", part of a hex id, is not; "4.98e15" in "n=4.98e15," is.
bool NumberToken(std::string_view text, size_t from, size_t to) {
  auto word = [](char c) {
    return IsAsciiDigit(c) || c == '.' || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  };
  if (from > 0 && (text[from - 1] == '-' || text[from - 1] == '+')) --from;
  return (from == 0 || !word(text[from - 1])) && (to >= text.size() || !word(text[to]));
}

class Scanner {
 public:
  // Escapes of the families in `escapes` are decoded; the others are read
  // as the characters they are written with: "%341111..." shows 34 to a
  // reader and 4 to a URL decoder, so text with escapes is read more than
  // once (see ScanOnce).
  Scanner(std::string_view text, const PanPolicy& p, uint8_t escapes = kEscAll)
      : text_(text), n_(text.size()), p_(p), escapes_(escapes) {}

  // The families of the escapes read as a digit, separator or invisible
  // character: the text's other readings worth a scan. (Found by fuzzing:
  // "%111..." is a control character and digits to a URL decoder, a run of
  // ones to a reader.)
  uint8_t escapes_seen() const { return escapes_seen_; }

  // Every hit, in order; with `first_only`, stops at the first. Runs that
  // start in text[from, to) only (to = npos: the end); what they read
  // around them (track data, a tag, a sign) may lie outside.
  void Run(bool first_only, std::vector<Hit>* hits, size_t from = 0, size_t to = std::string_view::npos) {
    hits_ = hits;
    first_only_ = first_only;
    const size_t end = std::min(to, n_);
    for (size_t i = from; i < end;) {
      const Token& t = At(i);
      if (t.kind != Kind::kDigit) {
        i += t.len;
        continue;
      }
      i = ReadRun(i);
      if (first_only_ && !hits_->empty()) return;
    }
  }

 private:
  // Reads the run of groups that starts with the digit at `i`, records its
  // hits and returns where scanning goes on.
  size_t ReadRun(size_t i) {
    digits_.clear();
    groups_.clear();
    Group g{0, 0};
    size_t j = i;
    size_t last_end = i;  // the end of the last digit read
    for (;;) {
      // The digits of a group, with invisible characters between them.
      while (j < n_) {
        const Token& t = At(j);
        if (t.kind == Kind::kDigit) {
          digits_.push_back(Digit{static_cast<uint32_t>(j), static_cast<uint32_t>(j + t.len), t.value});
          ++g.count;
          j += t.len;
          last_end = j;
        } else if (t.kind == Kind::kInvisible) {
          j += t.len;
        } else {
          break;
        }
      }
      groups_.push_back(g);
      // Separators, then a digit: the run goes on.
      Group next{static_cast<uint32_t>(digits_.size()), 0};
      size_t k = last_end;
      while (k < n_ && next.seps <= p_.max_separators) {
        const Token& t = At(k);
        if (t.kind == Kind::kInvisible) {
          k += t.len;
          continue;
        }
        if (t.kind != Kind::kSeparator || (t.sep & p_.separators) == 0) break;
        if (next.seps == 0) next.sep_cp = t.cp;
        next.sep_classes |= t.sep;
        ++next.seps;
        k += t.len;
      }
      if (next.seps == 0 || next.seps > p_.max_separators || k >= n_ ||
          At(k).kind != Kind::kDigit) {
        break;
      }
      g = next;
      j = k;
    }
    run_end_ = last_end;
    Windows(i);
    size_t resume = run_end_;
    if (p_.tracks) resume = std::max(resume, Track());
    // Last: its scan of the expansion reuses digits_ and groups_.
    if (p_.exponents && ExponentForm()) return exponent_end_;
    return resume;
  }

  // The digits of groups [a, b] as ASCII, into digits_text_.
  std::string_view Text(uint32_t first, uint32_t count) {
    digits_text_.clear();
    for (uint32_t d = first; d < first + count; ++d) digits_text_.push_back(static_cast<char>('0' + digits_[d].value));
    return digits_text_;
  }

  bool Accepts(uint32_t first, uint32_t count) {
    if (count < 13 || count > 19) return false;
    return PanDigits(Text(first, count), p_);
  }

  // Whether groups [a, b] may form one card number, given what the loop
  // over b found: all their separators free (of a class that joins any
  // groups), or all the same as the first.
  bool Joined(size_t a, size_t b, bool free, bool same) const {
    if (free) return true;
    if (!same || !CardLayout(&groups_[a], b - a + 1)) return false;
    if (p_.layout_whole_run) {
      if (a > 0 && groups_[a].SameSeparator(groups_[a + 1])) return false;
      if (b + 1 < groups_.size() && groups_[b + 1].SameSeparator(groups_[a + 1])) return false;
    }
    return true;
  }

  void Add(uint32_t first, uint32_t count) {
    Hit h;
    h.begin = digits_[first].begin;
    h.end = digits_[first + count - 1].end;
    if (!first_only_) Layout(first, count, &h);
    hits_->push_back(std::move(h));
  }

  // The PAN of digits_[first, first + count): its ASCII digits, and its
  // layout (the separators between them as their ASCII stand-ins).
  void Layout(uint32_t first, uint32_t count, Hit* h) {
    for (uint32_t d = first; d < first + count; ++d) {
      if (d > first) {
        for (size_t k = digits_[d - 1].end; k < digits_[d].begin;) {
          const Token& t = At(k);
          if (t.kind == Kind::kSeparator) h->layout.push_back(t.ascii);
          k += t.len;
        }
      }
      const char c = static_cast<char>('0' + digits_[d].value);
      h->layout.push_back(c);
      h->digits.push_back(c);
    }
  }

  // The longest span of whole groups that is a PAN, from each start group;
  // inside a group too long to be one, what the policy looks for.
  void Windows(size_t run_begin) {
    const size_t k = groups_.size();
    if (p_.context && run_begin > 0 && text_[run_begin - 1] == '+' && digits_.size() <= 15) return;  // a phone
    if (p_.emv && Emv(run_begin)) return;
    for (size_t a = 0; a < k;) {
      size_t best = SIZE_MAX;
      uint32_t total = 0;
      bool free = true, same = true;
      for (size_t b = a; b < k; ++b) {
        total += groups_[b].count;
        if (total > 19) break;
        if (b > a) {
          const Group& g = groups_[b];
          free &= (g.sep_classes & p_.free_layout) == g.sep_classes;  // 1..max_separators of them
          same &= g.SameSeparator(groups_[a + 1]);
          if (!free && !same) break;  // no longer span is joined either
        }
        if (total < 13) continue;
        if (a == b ? !Fraction(a) : Joined(a, b, free, same)) {
          if (Accepts(groups_[a].first, total)) best = b;
        }
      }
      if (best != SIZE_MAX) {
        Add(groups_[a].first, groups_[best].first + groups_[best].count - groups_[a].first);
        if (first_only_) return;
        a = best + 1;
        continue;
      }
      if (groups_[a].count > 13 && p_.inside_longer_runs != PanPolicy::Inside::kNo) {
        Inside(groups_[a]);
        if (first_only_ && !hits_->empty()) return;
      }
      ++a;
    }
  }

  // Group a is the fraction of a decimal number ("0.4111..."): it follows
  // a single '.' after the run's only other group, and ends the run.
  bool Fraction(size_t a) const {
    return p_.context && a == 1 && groups_.size() == 2 && groups_[1].seps == 1 && groups_[1].sep_cp == '.';
  }

  // EMV tag 5A in hex: "5A", the length in bytes (2 digits), then the PAN
  // (its BCD digits, 'F' padding an odd count). True when the run is one.
  bool Emv(size_t run_begin) {
    if (run_begin < 2 || (text_[run_begin - 1] != 'A' && text_[run_begin - 1] != 'a') || text_[run_begin - 2] != '5') {
      return false;
    }
    const Group& g = groups_[0];
    if (g.count < 2 + 13) return false;
    const uint32_t bytes = digits_[g.first].value * 10u + digits_[g.first + 1].value;
    const uint32_t n = std::min({2 * bytes, g.count - 2, 19u});
    for (uint32_t len = n; len >= 13 && len + 1 >= n; --len) {
      if (Accepts(g.first + 2, len)) {
        Add(g.first + 2, len);
        return true;
      }
    }
    return false;
  }

  // A PAN inside group g, which is not one as a whole.
  void Inside(const Group& g) {
    const uint32_t n = g.count;
    if (p_.inside_longer_runs == PanPolicy::Inside::kEnds) {
      for (uint32_t len = std::min<uint32_t>(19, n - 1); len >= 13; --len) {
        if (Accepts(g.first, len)) return Add(g.first, len);
        if (Accepts(g.first + n - len, len)) return Add(g.first + n - len, len);
      }
      return;
    }
    for (uint32_t at = 0; at + 13 <= n;) {
      uint32_t found = 0;
      for (uint32_t len = std::min<uint32_t>(19, n - at); len >= 13 && found == 0; --len) {
        if (Accepts(g.first + at, len)) found = len;
      }
      if (found == 0) {
        ++at;
        continue;
      }
      Add(g.first + at, found);
      if (first_only_) return;
      at += found;
    }
  }

  // ---- Track data ----

  // The end of track data that starts at text[p], right after a PAN's last
  // digit, or 0: track 2 (=YYMM + service code + discretionary data, EMV's
  // D form with its F padding) or track 1 (^NAME^YYMM...), each up to its
  // end sentinel '?'.
  size_t TrackTail(size_t p) {
    if (p >= n_) return 0;
    const char c = text_[p];
    auto digits_from = [&](size_t q, size_t* count) {
      *count = 0;
      while (q < n_) {
        const Token& t = At(q);
        if (t.kind == Kind::kDigit) {
          ++*count;
        } else if (t.kind != Kind::kInvisible) {
          break;
        }
        q += t.len;
      }
      return q;
    };
    size_t q, count;
    if (c == '=' || c == 'D' || c == 'd') {
      q = digits_from(p + 1, &count);
      if (count < (c == '=' ? 4u : 7u)) return 0;
      while (q < n_ && (text_[q] == 'F' || text_[q] == 'f') && q < p + 48) ++q;
    } else if (c == '^') {
      const size_t caret = text_.substr(p + 1, 27).find('^');  // a name has 2-26 characters
      if (caret == std::string_view::npos) return 0;
      const size_t name_end = p + 1 + caret;
      for (size_t k = p + 1; k < name_end; ++k) {
        if (static_cast<unsigned char>(text_[k]) < 0x20 || text_[k] == '?') return 0;
      }
      q = digits_from(name_end + 1, &count);
      if (count < 4) return 0;
    } else {
      return 0;
    }
    if (q < n_ && text_[q] == '?') ++q;
    return q;
  }

  // Track data after the run: its PAN (the hit
  // that ends the run; else the last group, when a start sentinel or a
  // mask before it says it is one) and the data go as one hit. Returns
  // where scanning goes on.
  size_t Track() {
    auto mask = [](char c) { return c == '*' || c == 'X' || c == 'x' || c == '#'; };
    // Mask characters between the digits and the data: a PAN masked
    // already, its last digits too (found by fuzzing: "411111**********=").
    size_t after = run_end_;
    while (after < n_ && after - run_end_ < 16 && mask(text_[after])) ++after;
    const size_t tail = TrackTail(after);
    if (tail == 0) return 0;
    const Group& last = groups_.back();
    Hit* h = nullptr;
    if (!hits_->empty() && hits_->back().end == run_end_ && hits_->back().expanded.empty()) {
      h = &hits_->back();
    } else if (last.count > 19 && after == run_end_) {
      // A PAN at the end of a longer run, right before track data: EMV hex
      // ("57", the length, the PAN, 'D', ...) after other tags' digits.
      uint32_t found = 0;
      for (uint32_t len = 19; len >= 13 && found == 0; --len) {
        if (Accepts(last.first + last.count - len, len)) found = len;
      }
      if (found == 0 || (first_only_ && !hits_->empty())) return 0;
      Add(last.first + last.count - found, found);
      h = &hits_->back();
    } else if (last.count <= 19) {
      const uint32_t begin = digits_[last.first].begin;
      // A PAN masked already ("411111******1111=2512...") keeps its mask.
      size_t m = begin;
      while (m > 0 && begin - m < 16 && (mask(text_[m - 1]) || IsAsciiDigit(text_[m - 1]))) --m;
      const bool masked = after > run_end_ || (m < begin && text_.substr(m, begin - m).find_first_not_of(
                                                               "0123456789") != std::string_view::npos);
      if (!masked) m = begin;
      const size_t pan_length = (begin - m) + last.count + (after - run_end_);
      const bool sentinel = begin > 0 && (text_[begin - 1] == ';' || text_[begin - 1] == '%' ||
                                          text_[begin - 1] == 'B' || text_[begin - 1] == 'b');
      if (pan_length < 12 || pan_length > 19) return 0;
      if (!masked && !sentinel) return 0;
      if (first_only_ && !hits_->empty()) return 0;
      if (!hits_->empty() && hits_->back().end > m) return 0;
      Add(last.first, last.count);
      h = &hits_->back();
      if (masked) {
        h->begin = static_cast<uint32_t>(m);
        h->keep = true;
        h->keep_begin = h->begin;
        h->keep_end = static_cast<uint32_t>(after);
      }
    } else {
      return 0;
    }
    // The start sentinel and format code: ";", "%B", "B".
    size_t b = h->begin;
    if (b > 0 && text_[b - 1] == ';') {
      --b;
    } else {
      if (b > 0 && (text_[b - 1] == 'B' || text_[b - 1] == 'b')) --b;
      if (b > 0 && text_[b - 1] == '%') --b;
    }
    const uint32_t floor = hits_->size() >= 2 ? (*hits_)[hits_->size() - 2].end : 0;
    h->begin = static_cast<uint32_t>(std::max<size_t>(b, floor));
    h->end = static_cast<uint32_t>(tail);
    return tail;
  }

  // ---- Numbers in exponent form ----

  // The number in exponent form that the run ends in (4.98e15, 0.498E+16,
  // -498e13), a token on its own: when the integer it spells holds a PAN,
  // one hit for the whole number, its expansion masked. True when it added
  // that hit (exponent_end_ is then where scanning goes on).
  bool ExponentForm() {
    if (run_end_ >= n_ || (text_[run_end_] != 'e' && text_[run_end_] != 'E')) return false;
    // The mantissa: ASCII digits and a point before the 'e', whatever
    // groups the run had ("1 4.2e15" holds the number 4.2e15).
    size_t s = run_end_;
    bool point = false;
    while (s > 0 && (IsAsciiDigit(text_[s - 1]) || (text_[s - 1] == '.' && !point))) {
      if (text_[--s] == '.') point = true;
    }
    while (s < run_end_ && text_[s] == '.') ++s;
    if (s == run_end_) return false;
    size_t e = run_end_ + 1;
    if (e < n_ && (text_[e] == '+' || text_[e] == '-')) ++e;
    const size_t exp_digits = e;
    while (e < n_ && IsAsciiDigit(text_[e]) && e - exp_digits < 8) ++e;
    if (e == exp_digits) return false;
    const size_t begin = s > 0 && text_[s - 1] == '-' ? s - 1 : s;
    if (!NumberToken(text_, s, e)) return false;
    if (!hits_->empty() && hits_->back().end > begin) return false;  // masked already
    // The integer spelled holds no PAN: the digits as written were read as
    // any others (found by fuzzing: 4982965724920861e15 shows a PAN).
    std::string expanded;
    if (!ExpandExponent(text_.substr(begin, e - begin), &expanded) || !HasPan(expanded, p_)) return false;
    Hit h;
    h.begin = static_cast<uint32_t>(begin);
    h.end = static_cast<uint32_t>(e);
    h.expanded = std::move(expanded);
    hits_->push_back(std::move(h));
    exponent_end_ = e;
    return true;
  }

  // The token at text_[i], valid until the next call; notes escapes read.
  // ASCII, the common case, comes straight from the table: no token is
  // built (building one field by field, then reading it whole, stalled
  // the scan on the store).
  const Token& At(size_t i) {
    const unsigned char c = static_cast<unsigned char>(text_[i]);
    if (c < 0x80 && !(p_.unicode && (FamilyOf(c) & escapes_) != 0)) return kAscii[c];
    token_ = Decode(text_, i, p_.unicode, escapes_);
    if (token_.kind != Kind::kOther && token_.len > 1 && c < 0x80) escapes_seen_ |= FamilyOf(c);
    return token_;
  }
  Token token_;

  const std::string_view text_;
  const size_t n_;
  const PanPolicy& p_;
  const uint8_t escapes_;
  uint8_t escapes_seen_ = 0;
  std::vector<Hit>* hits_ = nullptr;
  bool first_only_ = false;
  size_t run_end_ = 0, exponent_end_ = 0;
  // The thread's buffers, kept from call to call: no allocation per event
  // once warmed up. Held by reference, so that no access pays for the
  // thread_local's guard. A nested scan (an expansion's) reuses them.
  struct Buffers {
    std::vector<Digit> digits;
    std::vector<Group> groups;
    std::string digits_text;
  };
  static Buffers& ThreadBuffers() {
    thread_local Buffers b;
    return b;
  }
  Buffers& buffers_ = ThreadBuffers();
  std::vector<Digit>& digits_ = buffers_.digits;
  std::vector<Group>& groups_ = buffers_.groups;
  std::string& digits_text_ = buffers_.digits_text;
};


// Byte classes for Candidates.
enum : uint8_t {
  kPanPart = 1,   // a digit, an ASCII separator or a mask character
  kDigitish = 2,  // a digit or a mask character
  kExponent = 4,  // 'e', 'E'
  kNotPlain = 8,  // a byte >= 0x80, or what may start an escape
};
constexpr auto kByteClass = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 128; ++c) {
    if (kAscii[static_cast<size_t>(c)].kind != Kind::kOther) t[static_cast<size_t>(c)] |= kPanPart;
    if (kAscii[static_cast<size_t>(c)].kind == Kind::kDigit) t[static_cast<size_t>(c)] |= kDigitish;
  }
  for (char c : {'*', 'X', 'x', '#'}) t[static_cast<size_t>(c)] |= kPanPart | kDigitish;
  t['e'] |= kExponent;
  t['E'] |= kExponent;
  for (int c = 0x80; c < 256; ++c) t[static_cast<size_t>(c)] = kNotPlain;
  for (char c : {'\\', '%', '&'}) t[static_cast<size_t>(c)] |= kNotPlain;
  return t;
}();

// SWAR on eight bytes: the high bit of each byte of w that equals c.
inline uint64_t BytesEqual(uint64_t w, char c) {
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  const uint64_t x = w ^ (kOnes * static_cast<unsigned char>(c));
  return (x - kOnes) & ~x & kHigh;
}

// For text that is all ASCII without escapes (else false, and *plain =
// false): calls visit(from, to) for each span where a run that may be a
// PAN or carry track data starts, until visit returns true (then true).
// Under any policy, such a run has 12 bytes in a row that are digits,
// separators or mask characters, 12 of them digits or mask characters (a
// PAN has 13 digits; a track's PAN 12); or it is a number in exponent form
// whose integer part reaches 13 digits. Most text costs a fraction of a
// scan: eight bytes at a time for the high bits, what starts an escape and
// the exponents' e, then a look 12 bytes ahead that, past any byte that
// cannot be in a PAN, moves on after it.
template <typename Visit>
bool Candidates(std::string_view text, bool* plain, const Visit& visit) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  constexpr size_t kMaxExponents = 32;  // more: the whole text is one span
  size_t exponents[kMaxExponents];
  size_t count = 0;
  bool many = false;
  uint64_t not_plain = 0;
  size_t i = 0;
  auto exponent_at = [&](size_t at) {  // an 'e' or 'E' at `at`
    if (at == 0 || !IsAsciiDigit(text[at - 1])) return;
    if (count < kMaxExponents) {
      exponents[count++] = at;
    } else {
      many = true;
    }
  };
  constexpr uint64_t kOnes = 0x0101010101010101ull, kHigh = 0x8080808080808080ull;
  uint64_t digits_before = 0;  // the last byte of the word before was a digit (its high bit)
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    std::memcpy(&w, p + i, 8);
    not_plain |= (w | BytesEqual(w, '\\') | BytesEqual(w, '%') | BytesEqual(w, '&')) & kHigh;
    // Digits, exactly for bytes below 0x80 (others end in a full scan).
    const uint64_t t = w | kHigh;
    const uint64_t digits = ((t - kOnes * '0') & ~(t - kOnes * ('9' + 1))) & kHigh;
    // 'e' and 'E' (0x65, 0x45: one compare with bit 5 set) right after a
    // digit; rare outside exponents. (The compare can flag a byte after an
    // 'e' too; exponent_at checks.)
    const uint64_t after_digit = (digits << 8) | digits_before;
    for (uint64_t e = BytesEqual(w | 0x2020202020202020ull, 'e') & after_digit; e != 0; e &= e - 1) {
      const size_t at = i + static_cast<size_t>(__builtin_ctzll(e)) / 8;
      if ((p[at] | 0x20) == 'e') exponent_at(at);
    }
    digits_before = digits >> 56;
  }
  for (; i < n; ++i) {
    not_plain |= (kByteClass[p[i]] & kNotPlain) != 0;
    if (kByteClass[p[i]] & kExponent) exponent_at(i);
  }
  *plain = not_plain == 0;
  if (!*plain) return false;
  if (many) return visit(0, n);
  for (i = 0; i + 12 <= n;) {
    size_t j = i + 11;
    while (j > i && (kByteClass[p[j]] & kPanPart)) --j;
    if (!(kByteClass[p[j]] & kPanPart)) {
      i = j + 1;
      continue;
    }
    size_t e = i + 12, digitish = 0;
    while (e < n && (kByteClass[p[e]] & kPanPart)) ++e;
    for (size_t k = i; k < e; ++k) digitish += (kByteClass[p[k]] & kDigitish) != 0;
    if (digitish >= 12 && visit(i, e)) return true;
    i = e + 1;
  }
  for (size_t k = 0; k < count; ++k) {
    // An exponent: its integer part, the digits before the point plus the
    // exponent, must reach 13 digits to hold a PAN.
    const size_t at = exponents[k];
    size_t q = at + 1;
    if (q < n && text[q] == '+') ++q;
    int64_t exp = 0;
    const size_t exp_begin = q;
    for (; q < n && IsAsciiDigit(text[q]) && exp < 1000; ++q) exp = exp * 10 + (text[q] - '0');
    if (q == exp_begin) continue;
    size_t s = at, point = at;
    while (s > 0 && (IsAsciiDigit(text[s - 1]) || (text[s - 1] == '.' && point == at))) {
      if (text[--s] == '.') point = s;
    }
    if (!NumberToken(text, s, q)) continue;
    if (static_cast<int64_t>(point - s) + exp >= 13 && visit(s, q)) return true;
  }
  return false;
}

// The span text[from, to) that Candidates gave, when it holds one run of
// contiguous ASCII digits with nothing around it that could make it more
// (a sign, a tag, track data, an exponent, a mask): the common case (a
// timestamp, an id), decided without a scan. *decided false otherwise.
bool SingleRun(std::string_view text, size_t from, size_t to, const PanPolicy& policy, bool* decided) {
  *decided = false;
  if (policy.inside_longer_runs != PanPolicy::Inside::kNo) return false;
  size_t a = from;
  while (a < to && !IsAsciiDigit(text[a])) {
    if (kByteClass[static_cast<unsigned char>(text[a])] & kDigitish) return false;  // a mask
    ++a;
  }
  size_t b = a;
  while (b < to && IsAsciiDigit(text[b])) ++b;
  for (size_t k = b; k < to; ++k) {
    if (kByteClass[static_cast<unsigned char>(text[k])] & kDigitish) return false;  // more digits, a mask
  }
  if (a > 0 && a == from) {
    const char before = text[a - 1];
    if (before == '+' || before == 'A' || before == 'a') return false;
  }
  if (b == to && b < text.size()) {
    const char after = text[b];
    if (after == '=' || after == 'D' || after == 'd' || after == '^' || after == 'e' || after == 'E') return false;
  }
  *decided = true;
  return PanDigits(text.substr(a, b - a), policy);
}

// One reading of the text: every hit replaced, into *out; false when there
// is none. *seen: the families of the escapes that mattered. Hits are few:
// the vector is local, so a nested scan (an expansion's) cannot disturb it.
bool ScanReading(std::string_view text, const PanPolicy& policy, const PanReplace& replace, uint8_t escapes,
                 std::string* out, uint8_t* seen) {
  std::vector<Hit> hits;
  Scanner s(text, policy, escapes);
  s.Run(false, &hits);
  *seen = s.escapes_seen();
  if (hits.empty()) return false;
  out->clear();
  size_t copied = 0;
  for (const Hit& h : hits) {
    out->append(text.substr(copied, h.begin - copied));
    if (!h.expanded.empty()) {
      std::string masked;
      out->append(MaskPans(h.expanded, policy, replace, &masked) ? masked : h.expanded);
    } else if (h.keep) {
      // As written, but no more than the first six and last four shown.
      std::string kept(text.substr(h.keep_begin, h.keep_end - h.keep_begin));
      for (size_t k = 6; k + 4 < kept.size(); ++k) {
        if (IsAsciiDigit(kept[k])) kept[k] = '*';
      }
      out->append(kept);
    } else {
      out->append(replace(h.digits, h.layout));
    }
    copied = h.end;
  }
  out->append(text.substr(copied));
  return true;
}

// The readings of a text whose escapes of the families `seen` mattered:
// every escape decoded (done first), none, and, when more than one family
// is there, each family alone (a JSON decoder leaves %34 as it is).
template <typename Reading>
bool OtherReadings(uint8_t seen, const Reading& reading) {
  if (seen == 0) return false;
  if (reading(uint8_t{0})) return true;
  if ((seen & (seen - 1)) == 0) return false;  // one family: all = it alone
  for (uint8_t f : {kEscBackslash, kEscPercent, kEscAmpersand}) {
    if ((seen & f) != 0 && reading(f)) return true;
  }
  return false;
}

// One pass: every reading of the text in turn, each on the result of the
// one before.
bool ScanOnce(std::string_view text, const PanPolicy& policy, const PanReplace& replace, std::string* out) {
  if (!HasPan(text, policy)) return false;
  uint8_t seen = 0, unused = 0;
  bool changed = ScanReading(text, policy, replace, kEscAll, out, &seen);
  std::string next;
  OtherReadings(seen, [&](uint8_t escapes) {
    if (ScanReading(changed ? std::string_view(*out) : text, policy, replace, escapes, &next, &unused)) {
      out->swap(next);
      changed = true;
    }
    return false;  // every reading, not only until one finds something
  });
  return changed;
}

}  // namespace

bool HasPan(std::string_view text, const PanPolicy& policy) {
  // The shortest spelling of a PAN has 5 bytes (42e14 is 4200000000000000).
  if (text.size() < 5) return false;
  std::vector<Hit> hits;
  bool plain = true;
  const bool found = Candidates(text, &plain, [&](size_t from, size_t to) {
    bool decided = false;
    const bool pan = SingleRun(text, from, to, policy, &decided);
    if (decided) return pan;
    Scanner(text, policy).Run(true, &hits, from, to);
    return !hits.empty();
  });
  if (plain) return found;
  Scanner decoded(text, policy);
  decoded.Run(true, &hits);
  if (!hits.empty()) return true;
  return OtherReadings(decoded.escapes_seen(), [&](uint8_t escapes) {
    Scanner(text, policy, escapes).Run(true, &hits);
    return !hits.empty();
  });
}

bool MaskPans(std::string_view text, const PanPolicy& policy, const PanReplace& replace, std::string* out) {
  std::string first;  // allocated only when there is a PAN
  if (!ScanOnce(text, policy, replace, &first)) return false;
  // The digits a mask keeps can join the groups after it into what reads as
  // a new card number ("4155555555525 14111 1111 1111 1111": the PAN's last
  // four, 4111, then three groups that were not part of it). Scan the result
  // again until nothing reads as one. Text can be made so that each pass
  // reveals one more (a chain of such groups, one link a pass): after
  // kRescans, one last pass turns every digit of what it finds into '*'.
  // That reveals nothing new (no digit is kept to start a group), so the
  // result never holds a PAN, and the work stays linear in the text.
  std::string current = std::move(first);
  std::string again;
  for (int pass = 0; ScanOnce(current, policy, replace, &again); ++pass) {
    current.swap(again);
    if (pass + 1 < kRescans) continue;
    static const PanReplace every_digit = [](std::string_view, std::string_view layout) {
      std::string m(layout);
      for (char& c : m) c = IsAsciiDigit(c) ? '*' : c;
      return m;
    };
    if (ScanOnce(current, policy, every_digit, &again)) current.swap(again);
    break;
  }
  out->swap(current);
  return true;
}

bool ExpandExponent(std::string_view s, std::string* out) {
  size_t i = 0;
  const bool negative = i < s.size() && s[i] == '-';
  if (negative) ++i;
  std::string mantissa;  // its digits, without the point
  int64_t point = -1;    // digits before the point
  for (; i < s.size() && (IsAsciiDigit(s[i]) || s[i] == '.'); ++i) {
    if (s[i] == '.') {
      if (point >= 0) return false;
      point = static_cast<int64_t>(mantissa.size());
    } else {
      mantissa.push_back(s[i]);
    }
  }
  if (mantissa.empty() || i >= s.size() || (s[i] != 'e' && s[i] != 'E')) return false;
  if (point < 0) point = static_cast<int64_t>(mantissa.size());
  ++i;
  bool exp_negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) exp_negative = s[i++] == '-';
  int64_t exp = 0;
  if (i >= s.size()) return false;
  for (; i < s.size(); ++i) {
    if (!IsAsciiDigit(s[i])) return false;
    exp = std::min<int64_t>(exp * 10 + (s[i] - '0'), 1'000'000);
  }
  if (exp_negative) exp = -exp;
  // Leading zeros move the point; the integer has `int_len` digits.
  size_t lead = 0;
  while (lead < mantissa.size() && mantissa[lead] == '0') ++lead;
  if (lead == mantissa.size()) return false;  // zero
  mantissa.erase(0, lead);
  const int64_t int_len = point - static_cast<int64_t>(lead) + exp;
  if (int_len < 1 || int_len > 40 || mantissa.size() > 64) return false;
  out->clear();
  if (negative) out->push_back('-');
  const size_t ilen = static_cast<size_t>(int_len);
  if (mantissa.size() <= ilen) {
    out->append(mantissa);
    out->append(ilen - mantissa.size(), '0');
  } else {
    out->append(mantissa, 0, ilen);
    std::string frac = mantissa.substr(ilen);
    while (!frac.empty() && frac.back() == '0') frac.pop_back();
    if (!frac.empty()) {
      out->push_back('.');
      out->append(frac);
    }
  }
  return true;
}

// ---- Sensitive pairs ----

namespace {

bool KeyChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsAsciiDigit(c) || c == '_' || c == '-';
}

bool SpaceChar(char c) { return c == ' ' || c == '\t'; }

// A quote at text[p], JSON-escaped or not ("\"" inside a string of JSON
// text): its length, 0 when none.
size_t QuoteAt(std::string_view text, size_t p) {
  if (p < text.size() && (text[p] == '"' || text[p] == '\'')) return 1;
  if (p + 1 < text.size() && text[p] == '\\' && (text[p + 1] == '"' || text[p + 1] == '\'')) return 2;
  return 0;
}

// End of an XML element's content from `from`: after "</name>" (any case),
// else at the next '<'; bounded.
size_t XmlValueEnd(std::string_view text, size_t from, std::string_view name) {
  const size_t limit = std::min(text.size(), from + 4096);
  for (size_t k = from; k < limit; ++k) {
    if (text[k] != '<') continue;
    const size_t gt = k + 2 + name.size();
    if (gt < text.size() && text[k + 1] == '/') {
      bool same = true;
      for (size_t c = 0; same && c < name.size(); ++c) same = (text[k + 2 + c] | 0x20) == (name[c] | 0x20);
      if (same && text[gt] == '>') return gt + 1;
    }
    return k;
  }
  return limit;
}

struct Pair {
  size_t begin, end;
};

// The pairs of `text`, in order (at most one, with first_only).
void FindPairs(std::string_view text, const NameTest& sensitive, bool first_only, std::vector<Pair>* pairs) {
  const size_t n = text.size();
  for (size_t i = 0; i < n;) {
    if (!KeyChar(text[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < n && KeyChar(text[j])) ++j;
    const std::string_view name = text.substr(i, j - i);
    if (name.size() > 63 || !sensitive(name)) {
      i = j;
      continue;
    }
    size_t begin = i, p = j;
    bool element = false;
    if (i > 0 && text[i - 1] == '<') {  // an XML element, maybe with attributes
      while (p < n && p - j < 256 && text[p] != '>' && text[p] != '<') ++p;
      element = p < n && text[p] == '>' && text[p - 1] != '/';
      if (element) {
        begin = i - 1;
        p = XmlValueEnd(text, p + 1, name);
      } else {
        p = j;  // "<cvv=1" (found by fuzzing): read as a pair
      }
    }
    if (!element) {
      // A quote or a path around the name (card.cvv, card[cvv]: the path
      // goes too), then the delimiter.
      if (i > 0 && (text[i - 1] == '"' || text[i - 1] == '\'')) {
        begin = i - (i > 1 && text[i - 2] == '\\' ? 2 : 1);
      } else {
        while (begin > 0 && i - begin < 256 && (text[begin - 1] == '.' || text[begin - 1] == '[') && begin > 1 &&
               (KeyChar(text[begin - 2]) || text[begin - 2] == ']')) {
          --begin;
          while (begin > 0 && i - begin < 256 && (KeyChar(text[begin - 1]) || text[begin - 1] == ']')) --begin;
        }
      }
      if (size_t q = QuoteAt(text, p)) {
        p += q;
      } else if (p < n && text[p] == ']') {
        ++p;
      }
      while (p < n && SpaceChar(text[p]) && p - j < 16) ++p;
      if (p >= n || (text[p] != '=' && text[p] != ':')) {
        i = j;
        continue;
      }
      ++p;
      if (p < n && text[p] == '>') ++p;  // =>
      while (p < n && SpaceChar(text[p]) && p - j < 32) ++p;
      // The value: quoted, or up to a delimiter.
      if (size_t q = QuoteAt(text, p)) {
        const char quote = text[p + q - 1];
        size_t e = p + q;
        while (e < n && e - p < 4096 && text[e] != '\n' && !(text[e] == quote && (q == 1 || text[e - 1] == '\\'))) {
          e += q == 1 && text[e] == '\\' && e + 1 < n ? 2 : 1;
        }
        p = e < n && text[e] == quote ? e + 1 : e;
      } else {
        while (p < n && p - j < 4096) {
          const char c = text[p];
          if (c == '&' || c == ',' || c == ';' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '}' ||
              c == ']' || c == ')' || c == '<' || c == '"' || c == '\'' || c == '\\') {
            break;
          }
          ++p;
        }
      }
    }
    pairs->push_back(Pair{begin, p});
    if (first_only) return;
    i = p;
  }
}

}  // namespace

bool RemoveSensitivePairs(std::string_view text, const NameTest& sensitive, std::string* out, bool overwrite_only) {
  std::vector<Pair> pairs;
  FindPairs(text, sensitive, out == nullptr, &pairs);
  if (pairs.empty() || out == nullptr) return !pairs.empty();
  // Removing a pair can join what was around it into a new one
  // ("cv<cvv>1</cvv>v=2"): the result is scanned again, kRescans times at
  // most; what is still found then is overwritten with '*' instead, which
  // joins nothing.
  std::string current(text), next;
  for (int pass = overwrite_only ? kRescans : 0; !pairs.empty(); ++pass) {
    const bool overwrite = pass == kRescans;
    next.clear();
    size_t copied = 0;
    for (Pair pr : pairs) {
      if (pr.begin < copied) continue;
      if (overwrite) {
        next.append(current, copied, pr.begin - copied);
        next.append(pr.end - pr.begin, '*');
        copied = pr.end;
        continue;
      }
      // One delimiter beside the pair goes with it.
      size_t begin = pr.begin, end = pr.end;
      if (end < current.size() && (current[end] == '&' || current[end] == ',' || current[end] == ';')) {
        ++end;
      } else if (begin > copied && (current[begin - 1] == '&' || current[begin - 1] == ',' || current[begin - 1] == ';')) {
        --begin;
      }
      next.append(current, copied, begin - copied);
      copied = end;
    }
    next.append(current, copied, std::string::npos);
    current.swap(next);
    if (overwrite) break;
    pairs.clear();
    FindPairs(current, sensitive, false, &pairs);
  }
  out->swap(current);
  return true;
}

}  // namespace edgesync

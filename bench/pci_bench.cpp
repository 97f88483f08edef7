// edgesync-bench-pci: how often the pci plugin's card number scanner
// (plugins/card_scan.h) takes a number that is not a card for one (false
// positives), and how often it finds real-shaped card numbers written in
// each disguise an attacker or a careless payment app uses (detection), for
// the chosen policy and the candidates it was chosen from. Then the
// plugin's cost on hostile 256 KiB payloads built to make it slow.
//
// Everything is generated from fixed seeds with our own arithmetic on
// std::mt19937_64 (whose output the standard fixes; its distributions it
// does not), so every run on every machine measures the same texts.
//
//   edgesync-bench-pci [--items N] [--seed S] [--no-timing]
//
// prints Markdown for bench/RESULTS.md. N: items per category (default
// 20000).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "base/utf8.h"
#include "plugins/card_scan.h"
#include "plugins/pci.h"

namespace edgesync::bench {
namespace {

class Rng {
 public:
  explicit Rng(uint64_t seed) : g_(seed) {}
  uint64_t Below(uint64_t n) { return g_() % n; }
  int Int(int lo, int hi) { return lo + static_cast<int>(Below(static_cast<uint64_t>(hi - lo + 1))); }
  std::string Digits(int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>('0' + Below(10)));
    return s;
  }
  template <typename T, size_t N>
  const T& Pick(const T (&a)[N]) {
    return a[Below(N)];
  }

 private:
  std::mt19937_64 g_;
};


std::string Pad(int64_t v, int width) {
  std::string s = std::to_string(v);
  while (static_cast<int>(s.size()) < width) s.insert(s.begin(), '0');
  return s;
}

// ---- Numbers that are not card numbers ----

struct Category {
  const char* name;
  std::function<std::string(Rng&)> make;
};

std::string Ean13(Rng& r) {
  static const char* kPrefixes[] = {"400", "401", "406", "420", "440", "500", "501", "560", "590", "640",
                                    "690", "693", "760", "800", "840", "871", "900", "930", "978", "979",
                                    "030", "070", "300", "350", "450", "490", "540", "570"};
  std::string s = std::string(r.Pick(kPrefixes)) + r.Digits(9);
  int sum = 0;
  for (size_t i = 0; i < 12; ++i) sum += (s[i] - '0') * (i % 2 ? 3 : 1);
  s.push_back(static_cast<char>('0' + (10 - sum % 10) % 10));
  return s;
}

std::string Imei(Rng& r) {
  // Type allocation codes as the reporting bodies hand them out: 35 and
  // 86 most, then 01, 99 and the BABT ranges 44-54.
  static const char* kTac[] = {"35", "35", "35", "35", "86", "86", "86", "01", "99", "44", "45", "49", "50",
                               "51", "52", "53", "54"};
  const std::string body = std::string(r.Pick(kTac)) + r.Digits(12);
  return body + LuhnCheckDigit(body);
}

std::string Iccid(Rng& r) {
  static const char* kCountry[] = {"8949", "8944", "8933", "8901", "8986", "8934", "8931", "8946"};
  const std::string body = std::string(r.Pick(kCountry)) + r.Digits(r.Int(14, 15));
  return body + LuhnCheckDigit(body);
}

std::string Decimal(Rng& r, int int_digits, int frac_digits, char point) {
  std::string s = std::to_string(r.Int(1, 9)) + r.Digits(int_digits - 1);
  if (frac_digits > 0) s += point + r.Digits(frac_digits);
  return s;
}

std::string IsoTime(Rng& r) {
  return "2026-" + Pad(r.Int(1, 12), 2) + "-" + Pad(r.Int(1, 28), 2) + "T" + Pad(r.Int(0, 23), 2) + ":" +
         Pad(r.Int(0, 59), 2) + ":" + Pad(r.Int(0, 59), 2) + (r.Below(2) ? "." + r.Digits(3) : "") + "Z";
}

std::string Ipv4(Rng& r) {
  return std::to_string(r.Int(1, 223)) + "." + std::to_string(r.Int(0, 255)) + "." + std::to_string(r.Int(0, 255)) +
         "." + std::to_string(r.Int(1, 254));
}

std::vector<Category> NonCards() {
  return {
      {"epoch seconds", [](Rng& r) { return std::to_string(1'600'000'000 + r.Int(0, 400'000'000)); }},
      {"epoch ms (13 digits)",
       [](Rng& r) { return std::to_string(1'600'000'000'000LL + static_cast<int64_t>(r.Below(400'000'000'000))); }},
      {"epoch µs (16 digits)",
       [](Rng& r) {
         return std::to_string(1'600'000'000'000'000LL + static_cast<int64_t>(r.Below(400'000'000'000'000)));
       }},
      {"epoch ns (19 digits)",
       [](Rng& r) {
         return std::to_string(1'600'000'000'000'000'000LL + static_cast<int64_t>(r.Below(400'000'000'000'000'000)));
       }},
      {"epoch s.µs (10.6, JSON float)", [](Rng& r) { return std::to_string(1'600'000'000 + r.Int(0, 400'000'000)) + "." + r.Digits(6); }},
      {"order ids (ORD-, 8-12 digits)", [](Rng& r) { return "ORD-" + r.Digits(r.Int(8, 12)); }},
      {"transaction ids (13-19 random digits)",
       [](Rng& r) { return std::to_string(r.Int(1, 9)) + r.Digits(r.Int(12, 18)); }},
      {"transaction ids (20-24 random digits)",
       [](Rng& r) { return std::to_string(r.Int(1, 9)) + r.Digits(r.Int(19, 23)); }},
      {"IMEI (15, Luhn)", Imei},
      {"IMEI as 2-6-6-1 with dashes", [](Rng& r) {
         const std::string s = Imei(r);
         return s.substr(0, 2) + "-" + s.substr(2, 6) + "-" + s.substr(8, 6) + "-" + s.substr(14);
       }},
      {"IMEISV (16, no check digit)",
       [](Rng& r) { return Imei(r).substr(0, 14) + Pad(r.Int(0, 99), 2); }},
      {"ICCID (19-20, Luhn)", Iccid},
      {"EAN-13", Ean13},
      {"EAN-13 lists (3 per line, comma)", [](Rng& r) { return Ean13(r) + "," + Ean13(r) + "," + Ean13(r); }},
      {"phone E.164", [](Rng& r) {
         static const char* kCc[] = {"49", "1", "44", "33", "34", "39", "31", "86", "91", "62", "7", "55", "61"};
         return "+" + std::string(r.Pick(kCc)) + std::to_string(r.Int(1, 9)) + r.Digits(r.Int(8, 11));
       }},
      {"phone, spaced international", [](Rng& r) {
         static const char* kCc[] = {"49", "1", "44", "33", "34", "39", "31", "86", "91", "62", "7", "55", "61"};
         return "+" + std::string(r.Pick(kCc)) + " " + std::to_string(r.Int(1, 9)) + r.Digits(r.Int(1, 3)) + " " +
                r.Digits(r.Int(3, 4)) + " " + r.Digits(r.Int(4, 5));
       }},
      {"phone, national", [](Rng& r) {
         switch (r.Below(4)) {
           case 0: return "0" + r.Digits(r.Int(2, 4)) + " " + r.Digits(r.Int(6, 8));
           case 1: return "(" + r.Digits(3) + ") " + r.Digits(3) + "-" + r.Digits(4);
           case 2: return "0" + r.Digits(3) + "/" + r.Digits(7);
           default: return "0" + r.Digits(1) + " " + r.Digits(2) + " " + r.Digits(2) + " " + r.Digits(2) + " " + r.Digits(2);
         }
       }},
      {"CSV sensor lines", [](Rng& r) {
         std::string s = IsoTime(r);
         const int fields = r.Int(4, 10);
         for (int i = 0; i < fields; ++i) {
           switch (r.Below(5)) {
             case 0: s += "," + Decimal(r, r.Int(1, 3), r.Int(1, 3), '.'); break;
             case 1: s += "," + std::to_string(r.Int(0, 9999)); break;
             case 2: s += "," + Decimal(r, 4, 2, '.'); break;  // 1013.25 hPa
             case 3: s += ",-" + Decimal(r, r.Int(1, 2), 1, '.'); break;
             default: s += "," + std::to_string(r.Int(900, 1100)); break;
           }
         }
         return s;
       }},
      {"CSV of 4-digit readings", [](Rng& r) {
         std::string s;
         const int fields = r.Int(4, 12);
         for (int i = 0; i < fields; ++i) s += (i ? "," : "") + std::to_string(r.Int(1000, 9999));
         return s;
       }},
      {"TSV/lines of readings", [](Rng& r) {
         std::string s;
         const int fields = r.Int(4, 12);
         const char sep = r.Below(2) ? '\t' : '\n';
         for (int i = 0; i < fields; ++i) s += (i ? std::string(1, sep) : "") + std::to_string(r.Int(0, 99999));
         return s;
       }},
      {"JSON arrays of readings", [](Rng& r) {
         std::string s = "[";
         const int fields = r.Int(4, 12);
         for (int i = 0; i < fields; ++i) {
           s += (i ? "," : "") + (r.Below(2) ? std::to_string(r.Int(0, 9999)) : Decimal(r, r.Int(1, 4), r.Int(1, 2), '.'));
         }
         return s + "]";
       }},
      {"decimals, '.' (lat/long, 15-17 digits)",
       [](Rng& r) { return (r.Below(2) ? "-" : "") + Decimal(r, r.Int(1, 3), r.Int(12, 15), '.'); }},
      {"decimals, ',' (European)", [](Rng& r) { return Decimal(r, r.Int(1, 7), r.Int(1, 6), ','); }},
      {"lat,long pairs", [](Rng& r) {
         return Decimal(r, 2, r.Int(6, 14), '.') + "," + Decimal(r, r.Int(1, 3), r.Int(6, 14), '.');
       }},
      {"ISO date-times", IsoTime},
      {"IPv4 addresses (1-3)", [](Rng& r) {
         std::string s = Ipv4(r);
         const int more = r.Int(0, 2);
         for (int i = 0; i < more; ++i) s += ", " + Ipv4(r);
         return s;
       }},
      {"versions", [](Rng& r) {
         return std::to_string(r.Int(0, 20)) + "." + std::to_string(r.Int(0, 99)) + "." + std::to_string(r.Int(0, 999)) +
                (r.Below(2) ? "." + std::to_string(r.Int(0, 99999)) : "");
       }},
      {"amounts", [](Rng& r) {
         switch (r.Below(3)) {
           case 0: return std::to_string(r.Int(0, 99999)) + "." + Pad(r.Int(0, 99), 2) + " EUR";
           case 1: return std::to_string(r.Int(1, 999)) + "," + Pad(r.Int(0, 999), 3) + "." + Pad(r.Int(0, 99), 2);
           default: return std::to_string(r.Int(1, 999)) + "." + Pad(r.Int(0, 999), 3) + "," + Pad(r.Int(0, 99), 2);
         }
       }},
  };
}

// ---- Card numbers, and the ways they are written ----

struct Network {
  const char* name;
  std::vector<std::string> prefixes;
  std::vector<int> lengths;
};

std::vector<Network> Networks() {
  return {
      {"Visa", {"4"}, {16, 16, 16, 13, 19}},
      {"Mastercard", {"51", "52", "53", "54", "55", "2221", "2500", "2720"}, {16}},
      {"Amex", {"34", "37"}, {15}},
      {"Discover", {"6011", "644", "649", "65"}, {16, 19}},
      {"JCB", {"3528", "3550", "3589"}, {16, 19}},
      {"UnionPay", {"62", "81"}, {16, 17, 18, 19}},
      {"Mir", {"2200", "2204"}, {16}},
      {"RuPay", {"60", "65", "81", "82", "508"}, {16}},
      {"Maestro", {"5018", "5020", "5038", "6304", "6759", "676770"}, {16, 19}},
      {"Diners", {"36", "300", "305", "38"}, {14, 16}},
      {"UATP", {"1"}, {15}},
      {"Troy", {"9792"}, {16}},
  };
}

std::string MakePan(Rng& r, const Network& n) {
  const std::string prefix = n.prefixes[r.Below(n.prefixes.size())];
  const int len = n.lengths[r.Below(n.lengths.size())];
  const std::string body = prefix + r.Digits(len - 1 - static_cast<int>(prefix.size()));
  return body + LuhnCheckDigit(body);
}

// The usual groups: 4-6-5 / 4-6-4 for 15 and 14 digits, else fours.
std::string Grouped(const std::string& pan, const std::string& sep) {
  std::vector<size_t> sizes;
  if (pan.size() == 15) sizes = {4, 6, 5};
  if (pan.size() == 14) sizes = {4, 6, 4};
  if (sizes.empty()) {
    for (size_t left = pan.size(); left > 0; left -= std::min<size_t>(4, left)) sizes.push_back(std::min<size_t>(4, left));
  }
  std::string s;
  size_t at = 0;
  for (size_t k = 0; k < sizes.size(); ++k) {
    if (k > 0) s += sep;
    s += pan.substr(at, sizes[k]);
    at += sizes[k];
  }
  return s;
}

std::string Utf8(uint32_t cp) {
  std::string s;
  AppendUtf8(cp, &s);
  return s;
}

std::string InDigits(const std::string& pan, uint32_t zero) {
  std::string s;
  for (char c : pan) s += Utf8(zero + static_cast<uint32_t>(c - '0'));
  return s;
}

std::string Exponent(const std::string& pan) {  // 4.982965724920861e15
  std::string m = pan.substr(0, 1) + "." + pan.substr(1);
  while (m.back() == '0') m.pop_back();
  if (m.back() == '.') m.pop_back();
  return m + "e" + std::to_string(pan.size() - 1);
}

struct Disguise {
  const char* name;
  std::function<std::string(const std::string& pan)> write;
  // Track data: found only when this (its expiry, service code and
  // discretionary data) is gone from the masked text too.
  std::string secret;
};

std::vector<Disguise> Disguises() {
  auto sep = [](const char* name, std::string s) {
    return Disguise{name, [s](const std::string& p) { return Grouped(p, s); }, ""};
  };
  auto hex4 = [](const std::string& p) {
    std::string s;
    for (char c : p) s += "\\u003" + std::string(1, c);
    return s;
  };
  return {
      {"plain", [](const std::string& p) { return p; }, ""},
      sep("spaces", " "),
      sep("dashes", "-"),
      sep("dots", "."),
      sep("slashes", "/"),
      sep("underscores", "_"),
      sep("commas", ","),
      sep("tabs", "\t"),
      sep("newlines", "\n"),
      sep("CRLF", "\r\n"),
      sep("NBSP (U+00A0)", Utf8(0xA0)),
      sep("zero width space (U+200B)", Utf8(0x200B)),
      sep("soft hyphen (U+00AD)", Utf8(0xAD)),
      sep("en dash (U+2013)", Utf8(0x2013)),
      sep("' - '", " - "),
      {"wrapped at a random place (newline)",
       [](const std::string& p) { return p.substr(0, 7 + p.size() % 5) + "\n" + p.substr(7 + p.size() % 5); }},
      {"Arabic-Indic digits", [](const std::string& p) { return InDigits(p, 0x660); }},
      {"Extended Arabic-Indic digits", [](const std::string& p) { return InDigits(p, 0x6F0); }},
      {"Devanagari digits", [](const std::string& p) { return InDigits(p, 0x966); }},
      {"fullwidth digits", [](const std::string& p) { return InDigits(p, 0xFF10); }},
      {"mathematical bold digits", [](const std::string& p) { return InDigits(p, 0x1D7CE); }},
      {"JSON \\u escapes", hex4},
      {"URL %3x escapes", [](const std::string& p) {
         std::string s;
         for (char c : p) s += "%3" + std::string(1, c);
         return s;
       }},
      {"HTML &#x3x; entities", [](const std::string& p) {
         std::string s;
         for (char c : p) s += "&#x3" + std::string(1, c) + ";";
         return s;
       }},
      {"number in exponent form", Exponent},
      {"number as N.0", [](const std::string& p) { return p + ".0"; }},
      {"as a decimal fraction (0.PAN)", [](const std::string& p) { return "0." + p; }},
      {"commas, then more 4-digit groups", [](const std::string& p) { return Grouped(p, ",") + ",1227,0042"; }},
      {"track 2", [](const std::string& p) { return ";" + p + "=251210123456?"; }, "251210123456"},
      {"track 2, no sentinels", [](const std::string& p) { return p + "=290110112345"; }, "290110112345"},
      {"track 1", [](const std::string& p) { return "%B" + p + "^DOE/JANE^251210100000?"; }, "DOE/JANE"},
      {"EMV tag 57 (track 2 equivalent, hex)",
       [](const std::string& p) {
         return "5F2403271231" + std::string("57") + Pad(static_cast<int64_t>(p.size() + 14) / 2, 2) + p + "D271210112345F";
       },
       "271210112345"},
      {"glued to its expiry (PAN + MMYY)", [](const std::string& p) { return p + "1227"; }},
      {"EMV tag 5A (hex: 5A, length, PAN)",
       [](const std::string& p) { return "5A" + Pad(static_cast<int64_t>(p.size() + 1) / 2, 2) + p + (p.size() % 2 ? "F" : "") + "5F2403271231"; }},
  };
}

// ---- Policies ----

struct Candidate {
  const char* name;
  PanPolicy policy;
};

std::vector<Candidate> Candidates() {
  std::vector<Candidate> c;
  PanPolicy before;
  before.issuers = PanPolicy::Issuers::kTwoToSix;
  before.unicode = false;
  before.separators = before.free_layout = kSepSpace | kSepDash;
  before.max_separators = 1;
  before.layout_whole_run = before.tracks = before.exponents = before.context = before.emv = false;
  c.push_back({"A. before: 2-6, 13-19, single space/dash, ASCII", before});
  PanPolicy any;
  any.issuers = PanPolicy::Issuers::kAny;
  any.free_layout = kSepAll;
  any.layout_whole_run = any.context = false;
  c.push_back({"B. any 13-19 Luhn-valid, every separator, any groups", any});
  PanPolicy two = any;
  two.issuers = PanPolicy::Issuers::kTwoToSix;
  c.push_back({"C. 2-6, every separator, any groups", two});
  PanPolicy table = any;
  table.issuers = PanPolicy::Issuers::kTable;
  c.push_back({"D. IIN table, every separator, any groups", table});
  PanPolicy layout = table;
  layout.free_layout = kSepSpace | kSepDash;
  c.push_back({"E. D, but punctuation and line breaks join only groups in card layout", layout});
  PanPolicy whole = layout;
  whole.layout_whole_run = true;
  c.push_back({"F. E, and a card layout must be its whole run", whole});
  PanPolicy chosen;
  c.push_back({"G. F + context: EAN-13, '+' phone numbers, decimal fractions (chosen)", chosen});
  PanPolicy lines = chosen;
  lines.free_layout = kSepSpace | kSepDash | kSepLine;
  c.push_back({"H. G, but tabs and newlines join groups of any size", lines});
  PanPolicy ends = chosen;
  ends.inside_longer_runs = PanPolicy::Inside::kEnds;
  c.push_back({"I. G + a PAN at either end of a longer run", ends});
  PanPolicy anywhere = chosen;
  anywhere.inside_longer_runs = PanPolicy::Inside::kAnywhere;
  c.push_back({"J. G + a PAN anywhere in a longer run", anywhere});
  PanPolicy any_g = chosen;
  any_g.issuers = PanPolicy::Issuers::kAny;
  c.push_back({"K. G with any 13-19 Luhn-valid instead of the IIN table", any_g});
  return c;
}

std::string Percent(size_t hits, size_t total) {
  char buf[32];
  const double p = total ? 100.0 * static_cast<double>(hits) / static_cast<double>(total) : 0;
  std::snprintf(buf, sizeof buf, p == 0 ? "0" : (p < 0.1 ? "%.3f" : "%.1f"), p);
  return buf;
}

// Text around what is looked for, as a log line or a JSON string holds it.
std::string InContext(const std::string& s, Rng& r) {
  static const char* kBefore[] = {"value ", "ref=", "\"v\":\"", "", "id: "};
  static const char* kAfter[] = {" ok", "&x=1", "\"", "", "\n"};
  return std::string(r.Pick(kBefore)) + s + r.Pick(kAfter);
}

// ---- Timing on hostile and ordinary payloads ----

std::shared_ptr<const Plugin> ThePlugin() {
  toml::table table{{"type", "pci"}};
  Settings s(table, "plugins.p");
  Result<std::shared_ptr<const Plugin>> p = MakePciPlugin(s, "");
  if (!p.ok()) {
    std::fprintf(stderr, "edgesync-bench-pci: %s\n", p.status().ToString().c_str());
    std::exit(2);
  }
  return *p;
}

double MicrosPerRun(const Plugin& plugin, const std::string& payload, int runs) {
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    std::string raw = payload;
    std::vector<std::pair<std::string, std::string>> props;
    Event e;
    e.topic = "t/x";
    e.raw = &raw;
    e.properties = &props;
    const auto t0 = std::chrono::steady_clock::now();
    plugin.Process(e);
    const auto t1 = std::chrono::steady_clock::now();
    times.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

std::string Repeat(const std::string& unit, size_t bytes) {
  std::string s;
  while (s.size() + unit.size() <= bytes) s += unit;
  return s;
}

}  // namespace
}  // namespace edgesync::bench

int main(int argc, char** argv) {
  using namespace edgesync;
  using namespace edgesync::bench;
  int items = 20000;
  uint64_t seed = 20261206;
  bool timing = true;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--items") == 0 && i + 1 < argc) {
      items = std::max(1, std::atoi(argv[++i]));
    } else if (std::strcmp(argv[i], "--seed") == 0 && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (std::strcmp(argv[i], "--no-timing") == 0) {
      timing = false;
    } else {
      std::fprintf(stderr, "usage: edgesync-bench-pci [--items N] [--seed S] [--no-timing]\n");
      return 2;
    }
  }
  const std::vector<Candidate> candidates = Candidates();

  // False positives: each category's items, in context, under each policy.
  std::printf("### False positives: non-card numbers taken for card numbers\n\n");
  std::printf("%d items a category (seed %llu), each inside text (`ref=...&x=1`, a JSON string, a log line). "
              "Percent of items in which the policy finds a PAN.\n\n",
              items, static_cast<unsigned long long>(seed));
  std::printf("| category |");
  for (size_t c = 0; c < candidates.size(); ++c) std::printf(" %c |", 'A' + static_cast<int>(c));
  std::printf("\n|---|");
  for (size_t c = 0; c < candidates.size(); ++c) std::printf("---|");
  std::printf("\n");
  std::vector<size_t> fp_total(candidates.size(), 0);
  size_t all_items = 0;
  uint64_t category_seed = seed;
  for (const Category& cat : NonCards()) {
    Rng r(++category_seed);
    std::vector<std::string> texts;
    for (int i = 0; i < items; ++i) texts.push_back(InContext(cat.make(r), r));
    std::printf("| %s |", cat.name);
    for (size_t c = 0; c < candidates.size(); ++c) {
      size_t hits = 0;
      for (const std::string& t : texts) hits += HasPan(t, candidates[c].policy);
      fp_total[c] += hits;
      std::printf(" %s |", Percent(hits, texts.size()).c_str());
    }
    all_items += texts.size();
    std::printf("\n");
  }
  std::printf("| **all categories** |");
  for (size_t c = 0; c < candidates.size(); ++c) std::printf(" **%s** |", Percent(fp_total[c], all_items).c_str());
  std::printf("\n\n");

  // Detection: real-shaped PANs of each network in each disguise.
  const std::vector<Network> networks = Networks();
  const std::vector<Disguise> disguises = Disguises();
  const int per_cell = std::max(1, items / 100);
  std::printf("### Detection: card numbers found, by disguise\n\n");
  std::printf("%d Luhn-valid PANs of each of %zu networks (%s", per_cell, networks.size(), networks[0].name);
  for (size_t i = 1; i < networks.size(); ++i) std::printf(", %s", networks[i].name);
  std::printf(") in each disguise, inside text. Percent found.\n\n| disguise |");
  for (size_t c = 0; c < candidates.size(); ++c) std::printf(" %c |", 'A' + static_cast<int>(c));
  std::printf("\n|---|");
  for (size_t c = 0; c < candidates.size(); ++c) std::printf("---|");
  std::printf("\n");
  std::vector<size_t> found_total(candidates.size(), 0);
  std::vector<std::vector<size_t>> by_network(candidates.size(), std::vector<size_t>(networks.size(), 0));
  size_t all_pans = 0;
  Rng r(seed ^ 0x5eed);
  for (const Disguise& d : disguises) {
    std::vector<std::pair<size_t, std::string>> texts;
    for (size_t n = 0; n < networks.size(); ++n) {
      for (int i = 0; i < per_cell; ++i) texts.emplace_back(n, InContext(d.write(MakePan(r, networks[n])), r));
    }
    std::printf("| %s |", d.name);
    for (size_t c = 0; c < candidates.size(); ++c) {
      size_t found = 0;
      for (const auto& [n, t] : texts) {
        bool f = HasPan(t, candidates[c].policy);
        if (f && !d.secret.empty()) {
          std::string out;
          f = MaskPans(t, candidates[c].policy, MaskLayout, &out) && out.find(d.secret) == std::string::npos;
        }
        found += f;
        by_network[c][n] += f;
      }
      found_total[c] += found;
      std::printf(" %s |", Percent(found, texts.size()).c_str());
    }
    all_pans += texts.size();
    std::printf("\n");
  }
  std::printf("| **all disguises** |");
  for (size_t c = 0; c < candidates.size(); ++c) std::printf(" **%s** |", Percent(found_total[c], all_pans).c_str());
  std::printf("\n\nBy network, over all disguises:\n\n| network |");
  for (size_t c = 0; c < candidates.size(); ++c) std::printf(" %c |", 'A' + static_cast<int>(c));
  std::printf("\n|---|");
  for (size_t c = 0; c < candidates.size(); ++c) std::printf("---|");
  std::printf("\n");
  for (size_t n = 0; n < networks.size(); ++n) {
    std::printf("| %s |", networks[n].name);
    for (size_t c = 0; c < candidates.size(); ++c) {
      std::printf(" %s |", Percent(by_network[c][n], disguises.size() * static_cast<size_t>(per_cell)).c_str());
    }
    std::printf("\n");
  }
  std::printf("\nPolicies:\n\n");
  for (size_t c = 0; c < candidates.size(); ++c) std::printf("- %c. %s\n", 'A' + static_cast<int>(c), candidates[c].name + 3);
  std::printf("\n");

  if (!timing) return 0;
  // Cost: the plugin (chosen policy) on raw payloads, medians of 5 runs.
  const std::shared_ptr<const Plugin> plugin = ThePlugin();
  constexpr size_t kHostile = 256 * 1024;
  Rng t(seed + 99);
  std::string telemetry;
  while (telemetry.size() < kHostile) telemetry += NonCards()[17].make(t) + "\n";
  struct Load {
    const char* name;
    std::string payload;
  };
  const Load loads[] = {
      {"telemetry CSV lines (no card data)", telemetry},
      {"one digit groups: \"1 1 1 ...\"", Repeat("1 ", kHostile)},
      {"4-digit groups, dots: \"4111.4111. ...\"", Repeat("4111.", kHostile)},
      {"a 256 KiB run of digits", Repeat("4", kHostile)},
      {"a chain that reveals a PAN a pass", [] {
         std::string s = "4000000000005000";
         for (char c = '0'; c <= '9'; ++c) {
           s[11] = c;
           if (LuhnValid(s)) break;
         }
         std::string link = "5000000000005000";
         for (char c = '0'; c <= '9'; ++c) {
           link[11] = c;
           if (LuhnValid(link)) break;
         }
         link = link.substr(4);
         while (s.size() < kHostile) s += " " + link;
         return s;
       }()},
      {"JSON \\u escapes of digits", Repeat("\\u0034\\u0031\\u0031\\u0031 ", kHostile)},
      {"Arabic-Indic digits and NBSP", Repeat(InDigits("4111", 0x660) + Utf8(0xA0), kHostile)},
      {"track 2 field separators: \"1234567890123=\"", Repeat("1234567890123=", kHostile)},
      {"track 1 carets: \"4111111111111111^\"", Repeat("4111111111111111^", kHostile)},
      {"exponents: \"1e1 \"", Repeat("4.1e15 ", kHostile)},
      {"sensitive names without values: \"cvv cvv \"", Repeat("cvv ", kHostile)},
      {"sensitive pairs: \"cvv=1&\"", Repeat("cvv=1&", kHostile)},
      {"XML elements never closed: \"<cvv>\"", Repeat("<cvv>1", kHostile)},
      {"every card number valid: \"4111111111111111 \"", Repeat("4111111111111111 ", kHostile)},
  };
  std::printf("### Cost on 256 KiB raw payloads (the chosen policy, mode mask)\n\n");
  std::printf("Microseconds for the plugin's Process on one payload, median of 5 runs.\n\n");
  std::printf("| payload | µs | MB/s |\n|---|---|---|\n");
  for (const Load& l : loads) {
    const double us = MicrosPerRun(*plugin, l.payload, 5);
    std::printf("| %s | %.0f | %.0f |\n", l.name, us, static_cast<double>(l.payload.size()) / us);
  }
  return 0;
}

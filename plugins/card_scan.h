// card_scan: finds card data in text, for the pci plugin (plugins/pci.h),
// its tests and its benchmarks.
//
// A primary account number (PAN) is 13 to 19 digits that pass the Luhn
// check and whose first digits and length are a card network's (PanPolicy
// says which). The scanner reads digits as a reader or a decoder would see
// them: ASCII, any Unicode decimal digit (Arabic-Indic, Devanagari,
// fullwidth, mathematical, superscript, ...), or an escape that decodes to
// one (\u0034, \x34, %34, &#52;, &#x34;; text with escapes that matter
// is read again with its escapes as written, as a person would, and with
// each family of escapes alone, as one decoder would), with
// invisible characters (soft hyphen, zero width space, combining marks)
// ignored between them, in groups joined by separators (spaces, dashes,
// dots, slashes, commas, underscores, tabs, newlines, and their Unicode and
// escaped forms).
// Track data (ISO 7813 track 1 and 2, EMV track 2 equivalent) is found
// around the PAN it carries; a JSON-style number in exponent form is read
// as the integer it spells.
//
// Work is linear in the text: every byte is decoded a bounded number of
// times, each run of digits is tried against at most 19 groups a start,
// and masking rescans its own output at most kRescans times. Any thread
// may call any function at any time: each thread has its own buffers.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

namespace edgesync {

// Separators that can join two groups of a card number's digits.
enum SeparatorClass : uint8_t {
  kSepSpace = 1,   // ' ', no-break and the other Unicode spaces
  kSepDash = 2,    // '-', hyphens, en and em dashes, minus signs
  kSepLine = 4,    // tab, CR, LF, VT, FF, the other C0 controls, NEL, U+2028/9
  kSepPunct = 8,   // . , / _ : ; | ' and their fullwidth, Arabic and CJK forms
  kSepAll = 15,
};

// What the scanner takes for a card number. The defaults are the pci
// plugin's policy (docs/plugins.md, `pci`); the others exist to be measured against
// it (bench/pci_bench.cpp).
struct PanPolicy {
  enum class Issuers : uint8_t {
    kTwoToSix,  // first digit 2-6, any length 13-19 (the scanner before this policy)
    kAny,       // any first digit, any length 13-19
    kTable,     // the networks' prefixes, each with its lengths (IssuerAccepts)
  };
  Issuers issuers = Issuers::kTable;
  // Non-ASCII digits and separators, invisible characters, escapes.
  bool unicode = true;
  // Separator classes that join groups at all.
  uint8_t separators = kSepAll;
  // Of those, the classes that join groups of any size ("4111 11 1111...").
  // Groups joined by the others must be laid out as cards print them, with
  // one separator throughout: 4-4-4-4 (the last group 1-4 digits, so
  // 4-4-4-4-3 too), or 4-6-5 and 4-6-4 (Amex, Diners).
  uint8_t free_layout = kSepSpace | kSepDash;
  // With true, a laid-out span must also be its whole run: no group joins
  // it on either side by the same separator (a CSV line of 4-digit
  // readings is then not a card number).
  bool layout_whole_run = true;
  // Up to this many separator characters between two groups ("4111 - 1111",
  // CRLF); more than one needs a card layout.
  int max_separators = 3;
  // A PAN inside a longer run of contiguous digits: not looked for, looked
  // for at the run's two ends (a PAN glued to a length byte or an expiry),
  // or anywhere in it.
  enum class Inside : uint8_t { kNo, kEnds, kAnywhere };
  Inside inside_longer_runs = Inside::kNo;
  // Track 1 and 2 data around a PAN removed; numbers in exponent form read.
  bool tracks = true;
  bool exponents = true;
  // What the context says is not a card number although its digits would
  // pass: a 13-digit Visa-range number that is a valid EAN-13 barcode (GS1
  // check digit; 13-digit Visa cards are no longer issued), a run of at
  // most 15 digits right after '+' (an E.164 phone number), the digits
  // after a decimal point on their own ("0.4111..." is a float's fraction).
  bool context = true;
  // EMV data in hex (tag 5A, the PAN, and tag 57, track 2 equivalent): the
  // PAN after the tag's length byte.
  bool emv = true;
};

// Rewrites one PAN: given its digits (ASCII, however they were written) and
// its layout (the PAN as written, with ASCII digits, ASCII stand-ins for
// its separators, invisible characters left out), returns the replacement.
// The layout holds nothing but ASCII digits and separators.
using PanReplace = std::function<std::string(std::string_view digits, std::string_view layout)>;

// Rewrites every PAN of `text` into *out with `replace`; track data around
// a PAN is removed with it (the replacement takes the place of the whole
// track). False, and *out untouched, when there is none. The result is
// scanned again until no PAN is left in it (the digits a mask keeps could
// join the next groups into a new one); text that still reveals new ones
// after kRescans passes has every digit of those replaced by '*'.
inline constexpr int kRescans = 8;
bool MaskPans(std::string_view text, const PanPolicy& policy, const PanReplace& replace, std::string* out);
inline bool MaskPans(std::string_view text, const PanReplace& replace, std::string* out) {
  return MaskPans(text, PanPolicy{}, replace, out);
}
// True when `text` holds a PAN or track data under `policy`.
bool HasPan(std::string_view text, const PanPolicy& policy = {});

// The masks of mode = "mask": the first six and last four digits kept
// (PCI DSS's most), the others '*'; a PAN shorter than 13 digits (in track
// data) keeps only its last four. `layout` as PanReplace gives it.
std::string MaskLayout(std::string_view digits, std::string_view layout);

bool LuhnValid(std::string_view digits);
// The digit that, appended to the ASCII digits `body`, makes them Luhn-valid.
char LuhnCheckDigit(std::string_view body);
// `digits` (13-19 ASCII digits) starts with a prefix `issuers` accepts,
// at a length that prefix is issued with.
bool IssuerAccepts(std::string_view digits, PanPolicy::Issuers issuers);

// The number `json_number` (JSON syntax: -?int(.frac)?([eE][+-]?exp)?)
// written without exponent, "-I.F" (fraction only when non-zero digits
// follow the point), into *out. False when it has no exponent, or when the
// integer it spells would have more than 40 digits or it is below 1 (no
// card number in either).
bool ExpandExponent(std::string_view json_number, std::string* out);

// Finds `name<delimiter>value` pairs in text whose name is sensitive:
// name=value (form encoding, query strings, logs), name: value, "name":"value"
// and 'name': value (JSON and YAML, broken or not), <name>value</name> and
// name="value" (XML elements and attributes); the name may be the last
// step of a path (card.cvv, card[cvv]). The pair goes, with one delimiter
// beside it (& , ;), into *out; false and *out untouched when there is
// none. With out == nullptr, only says whether there is one. Removing a
// pair can join what was around it into a new one: the result is scanned
// again, kRescans times at most, then what is still found is overwritten
// with '*' (which joins nothing); with overwrite_only, at once.
using NameTest = std::function<bool(std::string_view name)>;
bool RemoveSensitivePairs(std::string_view text, const NameTest& sensitive, std::string* out,
                          bool overwrite_only = false);

}  // namespace edgesync

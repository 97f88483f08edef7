// UTF-8 and hex digits, for every reader and writer of outside text here
// (the JSON library, the card scanner, log escaping). Pure functions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace edgesync {

// The value of the hex digit `c` (0-9, a-f, A-F), or -1.
inline int HexDigitValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The length of the UTF-8 sequence starting at text[i] (1 to 4), its code
// point in *cp; 0 when the bytes there are not well-formed UTF-8 (RFC 3629:
// no overlong forms, no surrogates, nothing above U+10FFFF, not cut short).
size_t DecodeUtf8(std::string_view text, size_t i, uint32_t* cp);

// Appends code point `cp` (at most U+10FFFF) as UTF-8.
void AppendUtf8(uint32_t cp, std::string* out);

}  // namespace edgesync

// Printable text: what a peer sent (an MQTT topic, a file name in the drop
// directory, a reason in a device's gap record), made safe to put inside
// one log line. Without it a device could end a log line and write the next
// one itself (a forged "refused ..." or "stats: ..." line), hide text with
// terminal escapes, or reorder what a reader sees with bidi controls.
// Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

namespace edgesync {

// True when `text` holds something AppendPrintable would change.
bool NeedsEscaping(std::string_view text);

// Appends `text` with every byte or character that is not printable
// written as an escape: control characters (C0, DEL, C1) as \n, \r, \t or
// \xNN; the line and paragraph separators and the bidi controls (U+2028,
// U+2029, U+202A..U+202E, U+2066..U+2069) as \u{XXXX}; bytes that are not
// UTF-8 as \xNN; and '\' as "\\", so that an escape in the output always
// came from this function. Valid, printable UTF-8 is copied as it is.
void AppendPrintable(std::string_view text, std::string* out);

inline std::string Printable(std::string_view text) {
  std::string out;
  AppendPrintable(text, &out);
  return out;
}

}  // namespace edgesync

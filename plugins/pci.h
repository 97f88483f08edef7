// pci: card data never leaves the device unmasked.
//
// Finds primary account numbers (PANs) in every string of the event (and in
// JSON numbers, and in raw payloads, and in MQTT user property values): 13
// to 19 digits, written together or in groups separated by single spaces
// or dashes, starting with 2-6 (the card networks' ranges: Visa, Mastercard,
// Amex, Discover, JCB, Diners, UnionPay, Maestro) and passing the Luhn
// check. A longer run of digits is not a PAN and is left alone, but within
// grouped digits ("4111 1111 1111 1111 0425") the groups that form a PAN are
// found. Each PAN becomes
//   mode = "mask":  first six and last four digits kept, the rest '*'
//                   (separators stay where they were);
//   mode = "token": "tok_" + the first 16 bytes of HMAC-SHA256(key, digits)
//                   in hex, keyed by `token_key_file`: the same PAN gives
//                   the same token, so the central side can still join.
// Object members named as sensitive (`sensitive_fields`, compared without
// case; default cvv, cvc, cvv2, track1, track2, pin, pin_block) are removed
// wherever they are nested.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/settings.h"

namespace edgesync {

Result<std::shared_ptr<const Plugin>> MakePciPlugin(Settings& s, const std::string& base_dir);

// The scanner itself, for tests and benchmarks: rewrites every PAN in
// `text` into `*out` with `replace` (given the PAN's digits and the text
// as written, returning the replacement). False, and *out untouched, when
// `text` holds none. The result is scanned again until no PAN is left in
// it (the digits a mask keeps could otherwise join the next groups); text
// that still reveals new ones after 8 passes has them replaced by '*' whole.
bool MaskPans(std::string_view text, const std::function<std::string(std::string_view digits,
                                                                     std::string_view written)>& replace,
              std::string* out);
bool LuhnValid(std::string_view digits);

}  // namespace edgesync

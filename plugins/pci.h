// pci: card data never leaves the device unmasked.
//
// On every path of an event: the payload (a JSON stream's document; a raw
// payload, read as JSON when it parses as JSON, else as text), the MQTT
// user properties (names and values), the topic and the content type.
//  - Primary account numbers (PANs), as plugins/card_scan.h finds them
//    (any digits a reader or decoder sees, in groups joined by separators,
//    JSON numbers in any spelling; the prefixes and lengths the card
//    networks issue, Luhn-valid), become
//      mode = "mask":  the first six and last four digits kept, the others
//                      '*', separators as ASCII stand-ins
//                      ("4111 11** **** 1111");
//      mode = "token": "tok_" + the first 16 bytes of HMAC-SHA256(key,
//                      digits) in hex, keyed by `token_key_file`: the same
//                      card, however written, gives the same token.
//  - Track data (ISO 7813 track 1 and 2, EMV track 2 equivalent) goes
//    whole: only the replacement of its PAN stays.
//  - Sensitive data by name (`sensitive_fields`, compared without case;
//    default kDefaultSensitiveFields) is removed: JSON members at any
//    depth, user properties, and name=value, name: value, "name":"value",
//    <name>value</name> pairs in text (raw payloads, strings, property
//    values).
// The policy, and what it deliberately leaves alone, is docs/plugins.md's `pci`
// table; bench/pci_bench.cpp measures it.
#pragma once

#include <memory>
#include <string>

#include "base/env.h"
#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/plugin_type.h"
#include "plugins/settings.h"

namespace edgesync {

// The default `sensitive_fields`: card verification values, PIN blocks and
// track data under the names payment applications give them.
inline constexpr const char* kDefaultSensitiveFields[] = {
    "cvv",     "cvv2",      "cvc",        "cvc2",       "cav2",       "csc",
    "icvv",    "security_code", "securitycode", "card_security_code", "pin", "pin_block", "pinblock",
    "track1",  "track2",    "track_1",    "track_2",    "track1_data", "track2_data",  "track_data",
    "trackdata"};

// type = "pci": card data masked or tokenised, sensitive authentication data removed.
const PluginType& PciPluginType();
// The token key file is read through `env`.
Result<std::shared_ptr<const Plugin>> MakePciPlugin(Settings& s, const std::string& base_dir,
                                                    Env* env = Env::Default());

}  // namespace edgesync

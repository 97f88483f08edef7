// ocpp: EV chargers' OCPP-J messages (OCPP 1.6 and 2.0.1 share the framing)
// normalised into one object the central side can query:
//   CALL        [2, "<uniqueId>", "<Action>", {payload}]
//   CALLRESULT  [3, "<uniqueId>", {payload}]
//   CALLERROR   [4, "<uniqueId>", "<errorCode>", "<errorDescription>", {errorDetails}]
// become
//   {"charger_id": "<from the topic>", "message_type": "CALL"|"CALLRESULT"|"CALLERROR",
//    "action": "<Action>" (null for results and errors: they do not carry it),
//    "unique_id": "<uniqueId>", "payload": {...}}
// with "error_code", "error_description" and the details as payload for a
// CALLERROR. The charger id is topic level `charger_id_level` (0-based,
// default 1: "ocpp/CP-0042/..."). CALLs are routed by action: `priorities`
// maps actions to "high"/"normal"/"low" (default: the transaction messages
// high, MeterValues low) and `drop_actions` lists actions not worth the
// uplink (e.g. Heartbeat). A payload that is not an OCPP-J frame goes to
// the dead-letter stream with the reason. With `frame_field` (a dotted
// path), the frame is that field of a wrapping object (gateways that add
// their own metadata), and the normalised object takes its place there.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/plugin_type.h"
#include "plugins/settings.h"

namespace edgesync {

// type = "ocpp": OCPP-J frames of chargers as one JSON object each.
const PluginType& OcppPluginType();
Result<std::shared_ptr<const Plugin>> MakeOcppPlugin(Settings& s);

}  // namespace edgesync

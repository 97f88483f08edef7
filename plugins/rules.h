// rules: declarative filtering, shaping and routing of JSON events.
//
//   [plugins.shape]
//   type = "rules"
//   [[plugins.shape.rules]]
//   name = "big-refunds"                       # named in errors and logs
//   topic = "terminal/+/payment/refund"        # MQTT filter(s); optional
//   when = 'amount.value >= 10000 and card.scheme in ["VISA", "MASTERCARD"]'
//   drop_fields = ["debug"]                    # dotted paths
//   keep_fields = ["id", "amount"]             # everything else goes
//   rename = { "amt" = "amount" }              # path = new member name
//   set = { site = "berlin-01", "meta.fleet" = "A" }  # static values
//   route = { stream = "alerts", topic = "edge.alerts", priority = "high",
//             key = "fixed", key_from = "device", stream_from = "kind" }
//   drop = true / keep = true                  # end the rules here
//
// Every rule whose topic filter and `when` match applies its actions: route
// first (so it can read a field the rule then removes), then drop_fields,
// keep_fields, rename, set (in key order); then `drop` drops the event or
// `keep` keeps it as it now is without looking at later rules. Rules run in
// order. Field actions apply to JSON objects; on raw streams rules match by
// topic only.
//
// `when` is an expression over the event's fields (dotted paths; array
// elements by index): comparisons ==, !=, <, <=, >, >= with a string,
// number, true, false or null; `path in [v, ...]`; `exists(path)`;
// `path starts_with "text"`; `path matches "regex"` (RE2 syntax, linear time
// whatever the input); combined with and, or, not and parentheses. A
// comparison with a missing field, or with a value of another type, is
// false (use exists() and not). A rule that cannot be parsed is a
// configuration error naming the rule and the column.
#pragma once

#include <memory>
#include <string>

#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/plugin_type.h"
#include "plugins/settings.h"

namespace edgesync {

// type = "rules": keeps, drops, reroutes or reshapes events by declarative
// rules ([[plugins.NAME.rules]]).
const PluginType& RulesPluginType();
Result<std::shared_ptr<const Plugin>> MakeRulesPlugin(Settings& s);

// The `when` language on its own, for tests and fuzzing: parses `text` and
// evaluates it against `doc`. InvalidArgument "column N: what" when it does
// not parse.
class Condition {
 public:
  static Result<std::unique_ptr<Condition>> Parse(std::string_view text);
  virtual ~Condition() = default;
  virtual bool Eval(const Json& doc) const = 0;
};

}  // namespace edgesync

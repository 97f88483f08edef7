// libFuzzer target for the rules plugin's `when` language (plugins/rules.h),
// which reads expressions from the configuration. Also linked with
// replay_main.cpp into rules_fuzz_replay, which ctest runs over
// corpus/rules/ with any compiler.
//
// The input's first line is a `when` expression; the rest, if it is JSON,
// one more event to evaluate it on, besides a few fixed ones (payments,
// OCPP, arrays, odd names). The expression is parsed on its own
// (Condition::Parse) and as the `when` of a rule with `drop = true` in a
// rules plugin (MakeRulesPlugin).
//
// Besides "no crash, no leak, no ASan/UBSan report", these must hold:
//  - a refusal is InvalidArgument "column N: ...";
//  - the plugin builds exactly when the expression parses;
//  - "not (E)" parses when E does (unless that nests it too deep) and
//    evaluates to the opposite on every event;
//  - the plugin drops an event exactly when E is true on it, and keeps it
//    unchanged otherwise (its shortcuts agree with the plain evaluation).
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "plugins/rules.h"
#include "tests/fuzz/fuzz_check.h"

namespace {
constexpr const char* kTarget = "rules_fuzz";

const char* const kEvents[] = {
    R"({"id":"e1","amount":{"value":12000,"currency":"EUR"},"card":{"scheme":"VISA","pan":"411111******1111"},"debug":true})",
    R"({"id":"e2","amount":{"value":10.50,"currency":"USD"},"card":{"scheme":"MASTERCARD"},"kind":"refund","items":[{"sku":"A-1","qty":2},{"sku":"B","qty":-1}]})",
    R"({"charger_id":"CP-0042","message_type":"CALL","action":"MeterValues","unique_id":"m1","payload":{"connectorId":1,"meterValue":[]}})",
    R"({"a":null,"b":false,"c":"","d":[],"e":{},"f":1e308,"g":-0,"h":"\u00e9\"","a.b":1,"0":[1,[2,[3]]]})",
    R"([1,"two",{"three":3}])",
    R"("just a string")",
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace edgesync;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t eol = input.find('\n');
  const std::string expr(input.substr(0, eol));
  const std::string_view rest = eol == std::string_view::npos ? std::string_view() : input.substr(eol + 1);

  Result<std::unique_ptr<Condition>> cond = Condition::Parse(expr);
  // The same expression as a rule of a plugin, as a configuration holds it.
  toml::table rule{{"when", expr}, {"drop", true}};
  toml::table table{{"type", "rules"}, {"rules", toml::array{std::move(rule)}}};
  Settings settings(table, "plugins.p");
  Result<std::shared_ptr<const Plugin>> plugin = MakeRulesPlugin(settings);
  if (!cond.ok()) {
    FUZZ_CHECK(cond.status().code() == Status::Code::kInvalidArgument, cond.status().ToString());
    FUZZ_CHECK(cond.status().message().rfind("column ", 0) == 0, cond.status().message());
    FUZZ_CHECK(!plugin.ok(), "plugin built from an expression that does not parse");
    return 0;
  }
  FUZZ_CHECK(plugin.ok(), plugin.status().ToString());
  Result<std::unique_ptr<Condition>> negated = Condition::Parse("not (" + expr + ")");
  FUZZ_CHECK(negated.ok() || negated.status().message().find("nested too deep") != std::string::npos,
             negated.status().ToString());

  std::vector<std::string> events(std::begin(kEvents), std::end(kEvents));
  events.emplace_back(rest);  // used only if it parses
  Json doc;
  for (const std::string& text : events) {
    if (!doc.Parse(text).ok()) continue;
    const bool holds = (*cond)->Eval(doc);
    FUZZ_CHECK((*cond)->Eval(doc) == holds, "evaluates differently a second time");
    if (negated.ok()) FUZZ_CHECK((*negated)->Eval(doc) == !holds, text);

    std::vector<std::pair<std::string, std::string>> props;
    Event e;
    e.topic = "terminal/t-1/payment";
    e.json = &doc;
    e.properties = &props;
    e.route.stream = "s";
    const Action a = (*plugin)->Process(e);
    FUZZ_CHECK(a == (holds ? Action::kDrop : Action::kKeep), text);
    FUZZ_CHECK(holds || !doc.dirty(), "a rule that does not match changed the event");
  }
  return 0;
}

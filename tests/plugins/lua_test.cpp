#include "plugins/lua.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace edgesync {
namespace {

class Lua : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("edgesync-lua-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The plugin for `script`, with `extra` settings lines.
  Result<std::shared_ptr<const Plugin>> Make(const std::string& script, const std::string& extra = "") {
    std::ofstream(dir_ + "/s.lua") << script;
    toml::table root = toml::parse("[plugins.p]\ntype = \"lua\"\nscript = \"s.lua\"\n" + extra, std::string("t.toml"));
    Settings s(*root["plugins"]["p"].as_table(), "plugins.p");
    return MakeLuaPlugin(s, dir_);
  }
  std::shared_ptr<const Plugin> MustMake(const std::string& script, const std::string& extra = "") {
    Result<std::shared_ptr<const Plugin>> p = Make(script, extra);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? *p : nullptr;
  }

  struct Out {
    Action action;
    std::string payload, error;
    Route route;
    std::vector<std::pair<std::string, std::string>> props;
  };
  Out Run(const Plugin& p, const std::string& payload, bool json = true) {
    Json j;
    std::string raw = payload;
    Event e;
    e.topic = "site/7/meter";
    e.received_at_us = 1795000000000123;
    std::vector<std::pair<std::string, std::string>> props = {{"tenant", "acme"}};
    e.properties = &props;
    e.route.stream = "s";
    if (json) {
      EXPECT_TRUE(j.Parse(payload).ok());
      e.json = &j;
    } else {
      e.raw = &raw;
    }
    Out o;
    o.action = p.Process(e);
    if (json) {
      j.Serialize(&o.payload);
    } else {
      o.payload = raw;
    }
    o.error = e.error;
    o.route = e.route;
    o.props = props;
    return o;
  }

  std::string dir_;
};

TEST_F(Lua, RewritesFieldsNestedAndTopLevel) {
  auto p = MustMake(R"(
function process(e)
  local p = e.payload
  p.site = "berlin"
  p.reading.kwh = p.reading.wh / 1000
  p.debug = nil
  p.tags[#p.tags + 1] = e.topic
  p.received = e.received_at_us
  return e
end)");
  ASSERT_TRUE(p);
  Out o = Run(*p, R"({"debug":1,"reading":{"wh":1500},"tags":["a"],"n":null})");
  EXPECT_EQ(o.action, Action::kKeep) << o.error;
  EXPECT_EQ(o.payload,
            R"({"n":null,"reading":{"kwh":1.5,"wh":1500},"received":1795000000000123,"site":"berlin","tags":["a","site/7/meter"]})");
}

TEST_F(Lua, NilDropsAndRouteAndPropertiesComeBack) {
  auto p = MustMake(R"(
function process(e)
  if e.payload.kind == "noise" then return nil end
  e.route.stream = "alerts"
  e.route.priority = "high"
  e.route.key = e.payload.device
  e.properties[#e.properties + 1] = {"checked", "yes"}
  return e
end)");
  ASSERT_TRUE(p);
  EXPECT_EQ(Run(*p, R"({"kind":"noise"})").action, Action::kDrop);
  Out o = Run(*p, R"({"kind":"alarm","device":"m-7"})");
  ASSERT_EQ(o.action, Action::kKeep) << o.error;
  EXPECT_EQ(o.route.stream, "alerts");
  EXPECT_EQ(o.route.priority, Priority::kHigh);
  EXPECT_EQ(o.route.key, "m-7");
  EXPECT_EQ(o.props, (std::vector<std::pair<std::string, std::string>>{{"tenant", "acme"}, {"checked", "yes"}}));
  // Untouched by the script: written back as it came.
  EXPECT_EQ(o.payload, R"({"device":"m-7","kind":"alarm"})");
}

TEST_F(Lua, IntegersFloatsNullsAndEmptyTables) {
  auto p = MustMake(R"(
function process(e)
  local p = e.payload
  p.int_is_integer = math.type(p.i) == "integer"
  p.float_is_float = math.type(p.f) == "float"
  p.null_is_null = p.z == edgesync.null
  p.empty = {}
  p.half = 1 / 2
  p.big = 9007199254740993
  return e
end)");
  ASSERT_TRUE(p);
  Out o = Run(*p, R"({"i":42,"f":2.50,"z":null})");
  EXPECT_EQ(o.payload,
            R"({"big":9007199254740993,"empty":{},"f":2.5,"float_is_float":true,"half":0.5,"i":42,"int_is_integer":true,"null_is_null":true,"z":null})");
}

TEST_F(Lua, RawStreamsSeeAndReturnStrings) {
  auto p = MustMake("function process(e) e.payload = string.upper(e.payload) return e end");
  ASSERT_TRUE(p);
  Out o = Run(*p, "temp=21", false);
  EXPECT_EQ(o.payload, "TEMP=21");
  auto bad = MustMake("function process(e) e.payload = {} return e end");
  EXPECT_EQ(Run(*bad, "x", false).action, Action::kDeadLetter);
}

TEST_F(Lua, TheSandboxHasNoWayOut) {
  for (const char* expr : {"io", "os", "package", "require", "load", "loadfile", "dofile", "debug", "math.random",
                           "math.randomseed", "string.dump", "collectgarbage", "print", "warn", "rawset"}) {
    auto p = MustMake(std::string("function process(e) e.payload.present = ") + expr + " ~= nil return e end");
    ASSERT_TRUE(p) << expr;
    Out o = Run(*p, "{}");
    EXPECT_EQ(o.payload, R"({"present":false})") << expr;
  }
}

TEST_F(Lua, GlobalsAreReadOnlyAtEventTime) {
  auto p = MustMake(R"(
count = 0
function process(e)
  count = count + 1
  return e
end)");
  ASSERT_TRUE(p);
  Out o = Run(*p, R"({"a":1})");
  EXPECT_EQ(o.action, Action::kDeadLetter);
  EXPECT_NE(o.error.find("globals and libraries are read only"), std::string::npos) << o.error;
  EXPECT_EQ(o.payload, R"({"a":1})");  // unchanged, for the dead-letter stream
  for (const char* sneaky : {"setmetatable(_G, nil)", "string.count = 1", "math.pi = 3", "table.insert = nil",
                             "getmetatable('').__index = {}", "edgesync.null = 1"}) {
    auto q = MustMake(std::string("function process(e) ") + sneaky + " return e end");
    ASSERT_TRUE(q) << sneaky;
    EXPECT_EQ(Run(*q, "{}").action, Action::kDeadLetter) << sneaky;
  }
  // What the libraries offer still works through the read-only tables.
  auto ok = MustMake("function process(e) e.payload.s = ('ab'):upper() .. string.rep('c', 2) .. math.floor(2.5) "
                     ".. table.concat({'x', 'y'}) .. utf8.char(233) return e end");
  EXPECT_EQ(Run(*ok, "{}").payload, "{\"s\":\"ABcc2xy\xc3\xa9\"}");
}

TEST_F(Lua, TheInstructionBudgetEndsALoopAndTheNextEventRuns) {
  auto p = MustMake(R"(
function process(e)
  if e.payload.spin then while true do end end
  e.payload.ok = true
  return e
end)", "instruction_budget = 100000\n");
  ASSERT_TRUE(p);
  Out o = Run(*p, R"({"spin":true})");
  EXPECT_EQ(o.action, Action::kDeadLetter);
  EXPECT_EQ(o.error, "lua: instruction budget of 100000 exceeded");
  EXPECT_EQ(Run(*p, R"({"spin":false})").payload, R"({"ok":true,"spin":false})");
  // pcall cannot swallow the budget: once spent, every instruction raises.
  auto q = MustMake("function process(e) while true do pcall(function() while true do end end) end end",
                    "instruction_budget = 100000\n");
  ASSERT_TRUE(q);
  EXPECT_EQ(Run(*q, "{}").error, "lua: instruction budget of 100000 exceeded");
}

TEST_F(Lua, TheMemoryLimitEndsAHogAndTheNextEventRuns) {
  auto p = MustMake(R"(
function process(e)
  if e.payload.hog then
    local t = {}
    for i = 1, 1e7 do t[i] = string.rep("x", 100) .. i end
  end
  return e
end)", "memory_limit = \"1MiB\"\ninstruction_budget = 100000000\n");
  ASSERT_TRUE(p);
  Out o = Run(*p, R"({"hog":true})");
  EXPECT_EQ(o.action, Action::kDeadLetter);
  EXPECT_NE(o.error.find("memory limit of 1048576 bytes reached"), std::string::npos) << o.error;
  EXPECT_EQ(Run(*p, R"({"hog":false})").action, Action::kKeep);
}

TEST_F(Lua, ErrorsNameTheScriptAndLine) {
  auto p = MustMake("function process(e)\n  local x = nil\n  return x.y\nend\n");
  ASSERT_TRUE(p);
  Out o = Run(*p, "{}");
  EXPECT_EQ(o.action, Action::kDeadLetter);
  EXPECT_NE(o.error.find("lua: s.lua:3: attempt to index a nil value"), std::string::npos) << o.error;
  for (const auto& [script, says] : std::vector<std::pair<std::string, std::string>>{
           {"function process(e) return 5 end", "returned a number"},
           {"function process(e) e.payload = {f = string.len} return e end", "cannot be written as JSON"},
           {"function process(e) local t = {} t.t = t e.payload = t return e end", "nested deeper"},
           {"function process(e) e.payload = {[true] = 1} return e end", "table key of type boolean"},
           {"function process(e) e.route.priority = 'urgent' return e end", "route.priority must be"},
           {"function process(e) e.payload = {s = '\\xff'} return e end", "not valid UTF-8"},
           {"function process(e) error({}) end", "not a string"},
       }) {
    auto q = MustMake(script);
    ASSERT_TRUE(q) << script;
    Out r = Run(*q, R"({"a":1})");
    EXPECT_EQ(r.action, Action::kDeadLetter) << script;
    EXPECT_NE(r.error.find(says), std::string::npos) << script << " -> " << r.error;
    EXPECT_EQ(r.payload, R"({"a":1})") << script;
  }
}

TEST_F(Lua, LoadProblemsAreConfigErrors) {
  Result<std::shared_ptr<const Plugin>> p = Make("function process(e)\n  return e +\nend\n");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("s.lua:3:"), std::string::npos) << p.status().message();
  EXPECT_NE(p.status().message().find("t.toml:3:10: plugins.p.script"), std::string::npos) << p.status().message();
  p = Make("function other(e) return e end");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("defines no function process(event)"), std::string::npos);
  EXPECT_TRUE(Make("function other(e) return e end", "function = \"other\"\n").ok());
  p = Make("error('boom at load')");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("boom at load"), std::string::npos);
  p = Make("function process(e) return e end", "color = \"red\"\n");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("plugins.p.color: unknown key"), std::string::npos);
  p = Make("function process(e) return e end", "memory_limit = \"lots\"\n");
  EXPECT_FALSE(p.ok());
  // Precompiled chunks are refused: only source is loaded.
  std::ofstream(dir_ + "/bin.lua") << "\x1bLua";
  toml::table root = toml::parse("[plugins.p]\ntype = \"lua\"\nscript = \"bin.lua\"\n", std::string("t.toml"));
  Settings s(*root["plugins"]["p"].as_table(), "plugins.p");
  EXPECT_FALSE(MakeLuaPlugin(s, dir_).ok());
}

TEST_F(Lua, TheReadmeExample) {
  auto p = MustMake(R"(
-- enrich.lua: readings in kWh, test meters dropped, alarms to their stream.
local TEST_PREFIX = "meter/test-"
function process(e)
  if e.topic:sub(1, #TEST_PREFIX) == TEST_PREFIX then return nil end  -- drop
  local p = e.payload
  if p.wh then p.kwh = p.wh / 1000 end
  if p.alarm == true then e.route.stream = "alarms" end
  e.route.key = p.meter
  return e
end)");
  ASSERT_TRUE(p);
  Out o = Run(*p, R"({"meter":"m-1","wh":2500,"alarm":true})");
  EXPECT_EQ(o.payload, R"({"alarm":true,"kwh":2.5,"meter":"m-1","wh":2500})");
  EXPECT_EQ(o.route.stream, "alarms");
  EXPECT_EQ(o.route.key, "m-1");
}

TEST_F(Lua, SameInputSameOutput) {
  auto p = MustMake(R"(
function process(e)
  local out = {}
  for k, v in pairs(e.payload) do out[string.upper(k)] = v end
  e.payload = out
  return e
end)");
  ASSERT_TRUE(p);
  const std::string in = R"({"zeta":1,"alpha":2,"mid":{"b":1,"a":2},"list":[3,2,1]})";
  Out a = Run(*p, in), b = Run(*p, in);
  EXPECT_EQ(a.payload, b.payload);
  EXPECT_EQ(a.payload, R"({"ALPHA":2,"LIST":[3,2,1],"MID":{"a":2,"b":1},"ZETA":1})");
}

}  // namespace
}  // namespace edgesync

#include "plugins/lua.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <atomic>
#include <sstream>

#include "plugins/lua_patterns.h"
#include "tests/support/fault_env.h"

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace edgesync {
namespace {

// Runs `f` on a thread of its own and returns what it returns. A regression
// that makes it hang (the faults these tests pin were endless loops) fails
// the test and ends the process: a thread spinning in Lua cannot be stopped,
// and CI must not wait for it.
template <typename F>
auto WithinDeadline(const std::string& what, F f) {
  auto result = std::async(std::launch::async, std::move(f));
  if (result.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
    ADD_FAILURE() << what << ": still running after 20 s (a script escaped its bounds)";
    std::fflush(stdout);
    std::_Exit(1);
  }
  return result.get();
}

class Lua : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("edgesync-lua-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  // The plugin for `script`, with `extra` settings lines.
  Result<std::shared_ptr<const Plugin>> Make(const std::string& script, const std::string& extra = "",
                                             Env* env = Env::Default()) {
    std::ofstream(dir_ + "/s.lua") << script;
    toml::table root = toml::parse("[plugins.p]\ntype = \"lua\"\nscript = \"s.lua\"\n" + extra, std::string("t.toml"));
    Settings s(*root["plugins"]["p"].as_table(), "plugins.p");
    return MakeLuaPlugin(s, dir_, env);
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

  // Run, under WithinDeadline.
  Out RunBounded(const Plugin& p, const std::string& what, const std::string& payload = "{}") {
    return WithinDeadline(what, [&] { return Run(p, payload); });
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
                           "math.randomseed", "string.dump", "collectgarbage", "print", "warn", "rawset",
                           "coroutine"}) {
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
  p = Make("error({})");  // not a string: it was read as one
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("running the top level: an error that is not a string"), std::string::npos)
      << p.status().message();
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


// ---- bounds: what Lua does outside the count hook ----

constexpr const char* kBudgetError = "lua: instruction budget of 1000000 exceeded";

TEST_F(Lua, FinalizersAreRefusedWhereverTheyComeFrom) {
  const std::string refused = "finalizers (__gc) are not allowed in edgesync scripts";
  // At the top level: `edgesync check` spun for good in the finalizer Lua
  // ran, hooks off, when Load collected.
  Result<std::shared_ptr<const Plugin>> top = WithinDeadline("a finalizer at the top level", [&] {
    return Make("setmetatable({}, {__gc = function() while true do end end})\nfunction process(e) return e end");
  });
  ASSERT_FALSE(top.ok());
  EXPECT_NE(top.status().message().find("running the top level: s.lua:1: " + refused), std::string::npos)
      << top.status().message();
  // During an event, in every form: a __gc field of any value marks the
  // object; one added to a metatable already in use is refused too, though
  // Lua would ignore it, so no script believes it has a finalizer.
  for (const char* body : {
           "setmetatable({}, {__gc = function() while true do end end})",
           "setmetatable({}, {__gc = false})",
           "local mt = {} local t = setmetatable({}, mt) mt.__gc = function() while true do end end",
           "local mt = {} setmetatable({}, mt) mt['__' .. 'gc'] = true",
           "local mt = {} setmetatable(mt, {__index = {}}) setmetatable({}, mt) mt.__gc = tostring",
       }) {
    auto p = MustMake(std::string("function process(e) ") + body + " return e end");
    ASSERT_TRUE(p) << body;
    Out o = RunBounded(*p, body);
    EXPECT_EQ(o.action, Action::kDeadLetter) << body;
    EXPECT_NE(o.error.find(refused), std::string::npos) << body << " -> " << o.error;
    EXPECT_EQ(o.payload, "{}") << body;
  }
  // The sandbox has no other way to one: no rawset (which would write
  // __gc around the seal), no debug.setmetatable, no collectgarbage.
  auto q = MustMake("function process(e) e.payload.n = (rawset and 1 or 0) + (debug and 1 or 0) + "
                    "(collectgarbage and 1 or 0) return e end");
  ASSERT_TRUE(q);
  EXPECT_EQ(Run(*q, "{}").payload, R"({"n":0})");
}

TEST_F(Lua, ClosingAStateRunsNoScriptCode) {
  // A finalizer on an object a global keeps would have run in lua_close,
  // when a reload or the agent's exit destroys the plugin: SIGTERM never
  // finished. The refusal is caught here, so the script loads.
  std::shared_ptr<const Plugin> p = WithinDeadline("loading", [&] {
    return MustMake(R"(
keep = {}
local ok, why = pcall(setmetatable, keep, {__gc = function() while true do end end})
assert(not ok and why:find("__gc"))
local mt = {}
keep2 = setmetatable({}, mt)
pcall(function() mt.__gc = function() while true do end end end)
function process(e) return e end)");
  });
  ASSERT_TRUE(p);
  EXPECT_EQ(RunBounded(*p, "an event").action, Action::kKeep);
  WithinDeadline("destroying the plugin", [&] {
    p.reset();
    return true;
  });
  // To-be-closed variables run inside the call that declared them, counted.
  Result<std::shared_ptr<const Plugin>> tbc = WithinDeadline("a __close at the top level", [&] {
    return Make("local x <close> = setmetatable({}, {__close = function() while true do end end})\n"
                "function process(e) return e end");
  });
  ASSERT_FALSE(tbc.ok());
  EXPECT_NE(tbc.status().message().find("instruction budget of 1000000 exceeded"), std::string::npos)
      << tbc.status().message();
}

// After the top level, the globals and libraries are locked: what the top
// level left there (metamethods on _G or on the string metatable, a heap
// nearly full) used to run unbounded, unprotected script code at that point
// (a hang, or an abort of the whole agent).
TEST_F(Lua, LockingWhatTheTopLevelLeftIsBoundedAndProtected) {
  const std::pair<std::string, std::string> cases[] = {
      {"utf8 = nil setmetatable(_G, {__index = function() while true do end end})\nfunction process(e) return e end",
       ""},
      {"setmetatable(_G, {__index = function() while true do end end})", "defines no function process(event)"},
      {"setmetatable(_G, {__index = function() error('x') end})", "defines no function process(event)"},
      {"setmetatable(getmetatable(''), {__newindex = function() while true do end end})\n"
       "function process(e) return e end", ""},
  };
  for (const auto& [script, says] : cases) {
    Result<std::shared_ptr<const Plugin>> p = WithinDeadline(script, [&] { return Make(script); });
    if (says.empty()) {
      ASSERT_TRUE(p.ok()) << script << ": " << p.status().ToString();
      EXPECT_EQ(RunBounded(**p, script).action, Action::kKeep) << script;
    } else {
      ASSERT_FALSE(p.ok()) << script;
      EXPECT_NE(p.status().message().find(says), std::string::npos) << p.status().message();
    }
  }
  // Thousands of globals to move aside with the heap nearly full: a memory
  // error, reported as one.
  Result<std::shared_ptr<const Plugin>> full = WithinDeadline("globals and a full heap", [&] {
    return Make("for i = 1, 6000 do _G['g' .. i] = i end\n"
                "local keep = {} for i = 1, 1e9 do local ok = pcall(function() keep[#keep + 1] = ('x'):rep(64) end) "
                "if not ok then break end end\nfunction process(e) return e end",
                "memory_limit = \"1MiB\"\ninstruction_budget = 100000000\n");
  });
  // Loaded or refused, the process is still here (it used to abort).
  if (!full.ok()) {
    EXPECT_NE(full.status().message().find("limit"), std::string::npos) << full.status().message();
  }
}

TEST_F(Lua, WeakTablesAreRefused) {
  // One collection of a weak-keyed table is quadratic in its entries (14 s
  // for 40,000 in 4 MB): collections run outside the budget.
  const std::string refused = "weak tables (__mode) are not allowed in edgesync scripts";
  for (const char* body : {
           "setmetatable({}, {__mode = 'k'})",
           "setmetatable({}, {__mode = ''})",
           "local mt = {} setmetatable({}, mt) mt.__mode = 'k'",
       }) {
    auto p = MustMake(std::string("function process(e) ") + body + " return e end");
    ASSERT_TRUE(p) << body;
    Out o = RunBounded(*p, body);
    EXPECT_EQ(o.action, Action::kDeadLetter) << body;
    EXPECT_NE(o.error.find(refused), std::string::npos) << body << " -> " << o.error;
  }
  Result<std::shared_ptr<const Plugin>> top =
      WithinDeadline("a weak table at the top level", [&] { return Make("cache = setmetatable({}, {__mode = 'k'})"); });
  ASSERT_FALSE(top.ok());
  EXPECT_NE(top.status().message().find(refused), std::string::npos) << top.status().message();
}

TEST_F(Lua, MetatablesStillWorkAsLuaDefinesThem) {
  // What sealing a metatable must not change: classes, inheritance, methods
  // added after the first object, __newindex functions and tables,
  // getmetatable's answers, protected metatables, changing the metatable of
  // a table already serving as one.
  auto p = MustMake(R"(
local Base = {} Base.__index = Base
function Base.new(x) return setmetatable({x = x}, Base) end
function Base:twice() return 2 * self.x end
local Derived = setmetatable({}, {__index = Base}) Derived.__index = Derived
local d = setmetatable({x = 5}, Derived)
function Derived:thrice() return 3 * self.x end   -- after d exists
local log = {}
local sink = setmetatable({}, {__newindex = function(t, k, v) log[#log + 1] = k end})
local store = {}
local redirect = setmetatable({}, {__newindex = store})
function process(e)
  local b = Base.new(4)
  sink.a = 1 sink.b = 2
  redirect.k = "v"
  local mt = {}
  local o = setmetatable({}, mt)
  mt.__index = function() return "late" end     -- a new field, after use
  setmetatable(mt, {__call = function() return "called" end})
  local locked = setmetatable({}, {__metatable = "locked"})
  local locked_mt = setmetatable({}, {__metatable = "no"})
  setmetatable({}, locked_mt)
  e.payload = {
    b.twice and b:twice() or 0, d:twice(), d:thrice(),
    getmetatable(b) == Base, getmetatable(Derived).__index == Base, getmetatable(d) == Derived,
    table.concat(log, ","), rawget(store, "k") or "", rawget(redirect, "k") == nil,
    o.anything, mt(), getmetatable(locked),
    (pcall(setmetatable, locked, {})), (pcall(setmetatable, locked_mt, {})),
    getmetatable(setmetatable({}, nil)) == nil,
  }
  return e
end)");
  ASSERT_TRUE(p);
  Out o = Run(*p, "{}");
  ASSERT_EQ(o.action, Action::kKeep) << o.error;
  EXPECT_EQ(o.payload, R"([8,10,15,true,true,true,"a,b","v",true,"late","called","locked",false,false,true])");
}

TEST_F(Lua, LibraryLoopsThatRunNoInstructionAreBudgeted) {
  struct Case {
    const char* body;
    const char* error;  // what the event's error says; "" when it is kept
  };
  const std::vector<Case> cases = {
      // Lua loops n times copying nothing: an empty result, at once.
      {"assert(string.rep('', 1e15) == '')", ""},
      {"assert(string.rep('', 1e15, '') == '')", ""},
      {"assert(('').rep('', math.maxinteger) == '')", ""},
      // The count comes from __len or the arguments: up to 2^63 nil moves.
      {"table.move({}, 1, math.maxinteger - 1, 1, {})", kBudgetError},
      {"table.move({}, -math.maxinteger, math.maxinteger - 1, 1)", "too many elements to move"},
      {"local t = " "setmetatable({}, {__len = function() return math.maxinteger - 1 end}) table.insert(t, 1, 'v')",
       kBudgetError},
      {"local t = " "setmetatable({}, {__len = function() return math.maxinteger end}) table.remove(t, 1)",
       kBudgetError},
      // Quicksort of 2^31 elements that __index (a C function) makes up.
      {"table.sort(setmetatable({}, {__len = function() return 2^31 - 2 end, __index = rawlen, "
       "__newindex = rawequal}))",
       kBudgetError},
      {"table.sort(setmetatable({}, {__len = function() return 2^31 - 2 end, __index = rawlen, "
       "__newindex = rawequal}), math.ult)",
       kBudgetError},
      {"local t = setmetatable({}, {__len = function() return math.maxinteger end}) table.unpack(t)",
       "too many results to unpack"},
  };
  for (const Case& c : cases) {
    auto p = MustMake(std::string("function process(e) ") + c.body + " return e end");
    ASSERT_TRUE(p) << c.body;
    Out o = RunBounded(*p, c.body);
    if (*c.error == '\0') {
      EXPECT_EQ(o.action, Action::kKeep) << c.body << " -> " << o.error;
    } else {
      EXPECT_EQ(o.action, Action::kDeadLetter) << c.body;
      EXPECT_NE(o.error.find(c.error), std::string::npos) << c.body << " -> " << o.error;
    }
  }
}

TEST_F(Lua, LibraryWorkThatReusesWhatIsPaidForIsBudgeted) {
  // Each call does work proportional to something built once (a string, a
  // grown stack, a format): the instructions of the loop around it are few.
  // Unmetered, each of these ran for minutes.
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"local t = {} for i = 1, 200000 do t[i] = i end", "while true do local n = select('#', table.unpack(t)) end"},
      {"local s = ('x'):rep(200000)", "while true do local n = select('#', s:byte(1, -1)) end"},
      {"local s = ('\\x80'):rep(1000000) local step = utf8.codes(s)", "while true do step(s, 0) end"},
      {"local s = ('a'):rep(1000000)", "while true do utf8.len(s) end"},
      {"local s = ('a'):rep(1000000)", "while true do utf8.offset(s, 1000000) end"},
      {"local s = ('a'):rep(1000000)", "while true do utf8.codepoint(s, 1, 100000) end"},
      {"local fmt = ('x'):rep(1000000)", "while true do string.packsize(fmt) end"},
      {"local s = ('a'):rep(1000000)", "while true do local x = s:rep(1) .. '' end"},
      {"local t = {} for i = 1, 100000 do t[i] = 'a' end", "while true do table.concat(t) end"},
      {"local t = {} for i = 1, 50000 do t[i] = i % 7 end", "while true do table.sort(t) end"},
      // A loop that swallows memory errors: each refusal is a full
      // collection of the heap.
      {"local keep = {} for i = 1, 50000 do keep[i] = {} end", "while true do pcall(string.rep, 'x', 1e8) end"},
  };
  for (const auto& [setup, loop] : cases) {
    auto p = MustMake("function process(e) " + setup + " " + loop + " return e end",
                      "instruction_budget = 10000000\nmemory_limit = \"32MiB\"\n");
    ASSERT_TRUE(p) << loop;
    Out o = RunBounded(*p, loop);
    EXPECT_EQ(o.action, Action::kDeadLetter) << loop;
    EXPECT_EQ(o.error, "lua: instruction budget of 10000000 exceeded") << loop;
  }
}

TEST_F(Lua, PatternMatchingIsBudgeted) {
  // Lua backtracks in C: the first of these runs for hours.
  for (const char* call : {
           "string.find(('a'):rep(5000), ('a*'):rep(20) .. 'b')",
           "(('a'):rep(5000)):find(('a*'):rep(20) .. 'b')",
           "string.match(('a'):rep(5000), ('a-'):rep(20) .. 'b')",
           "for w in (('a'):rep(300)):gmatch(('a?'):rep(100) .. 'b') do end",
           "string.gsub(('a'):rep(5000), ('a*'):rep(20) .. 'b', '')",
           "string.find(('ab'):rep(2500), ('(a*)b?'):rep(15) .. '%1c')",
           "string.find(('a'):rep(1000000), ('a'):rep(500000) .. 'b', 1, true)",
           "string.find(('a'):rep(1000000), ('a'):rep(500000) .. 'b')",
           "string.gsub(('x'):rep(100000), '', ('%0'):rep(100000))",
           // A set is scanned whole at every position it is tried at.
           "string.find(('b'):rep(200000), '[' .. ('a'):rep(100000) .. ']')",
           "string.gsub(('b'):rep(200000), '%f[' .. ('a'):rep(100000) .. ']', '')",
           // Option 'z' scans a string to its end, whatever the format's length.
           "local s = ('x'):rep(4000000) for i = 1, 100000 do pcall(string.unpack, 'z', s) end",
       }) {
    auto p = MustMake(std::string("function process(e) ") + call + " return e end");
    ASSERT_TRUE(p) << call;
    Out o = RunBounded(*p, call);
    EXPECT_EQ(o.action, Action::kDeadLetter) << call;
    EXPECT_EQ(o.error, kBudgetError) << call;
  }
  // pcall cannot swallow it: once spent, every further step raises too.
  auto q = MustMake("function process(e) while true do pcall(string.find, ('a'):rep(5000), ('a*'):rep(20) .. 'b') end "
                    "end");
  ASSERT_TRUE(q);
  EXPECT_EQ(RunBounded(*q, "pcall around a pattern").error, kBudgetError);
  // At load, a configuration error.
  Result<std::shared_ptr<const Plugin>> top = WithinDeadline("a pattern at the top level", [&] {
    return Make("string.find(('a'):rep(5000), ('a*'):rep(20) .. 'b')\nfunction process(e) return e end");
  });
  ASSERT_FALSE(top.ok());
  EXPECT_NE(top.status().message().find("running the top level: instruction budget of 1000000 exceeded"),
            std::string::npos)
      << top.status().message();
}

TEST_F(Lua, HugeAllocationsFailAsMemoryErrors) {
  const std::string memory = "lua: memory limit of 8388608 bytes reached";
  for (const char* body : {
           "local s = string.rep('x', 2^30)",
           "local s = ('x'):rep(2^20):rep(2^10)",
           "local s = string.format('%s%s', ('x'):rep(5e6), ('y'):rep(5e6))",
           "local s = table.concat({('x'):rep(3e6), ('y'):rep(3e6), ('z'):rep(3e6)})",
           "local t = {} for i = 1, 1e7 do t[i] = i end",
           "local s = ('x'):rep(4e6) s = s .. s .. s",
           "local s = string.pack('s', ('x'):rep(5e6)) .. ('y'):rep(4e6)",
           "local n = select('#', table.unpack({}, 1, 1e7))",
       }) {
    auto p = MustMake(std::string("function process(e) ") + body + " return e end", "instruction_budget = 100000000\n");
    ASSERT_TRUE(p) << body;
    Out o = RunBounded(*p, body);
    EXPECT_EQ(o.action, Action::kDeadLetter) << body;
    EXPECT_TRUE(o.error == memory || o.error.find("too many results") != std::string::npos ||
                o.error.find("resulting string too large") != std::string::npos)
        << body << " -> " << o.error;
    EXPECT_EQ(Run(*p, "{}").action, Action::kDeadLetter) << body;  // the same again: the state is fine
  }
  auto ok = MustMake("function process(e) return e end");
  EXPECT_EQ(Run(*ok, "{}").action, Action::kKeep);
}

TEST_F(Lua, TheReturnedEventIsBoundedToo) {
  // What the script returns is copied out of its heap into the agent's:
  // one table twice at each of 20 levels is 2^21 nodes (64 levels: 2^65), one string many
  // times is many copies. Both are refused, not built.
  for (const char* body : {
           "local t = {} for i = 1, 20 do t = {t, t} end e.payload = t",
           "local s = ('x'):rep(1e6) local t = {} for i = 1, 100 do t[i] = s end e.payload = t",
           "local s = ('x'):rep(1e6) for i = 1, 100 do e.properties[i] = {s, s} end",
       }) {
    auto p = MustMake(std::string("function process(e) ") + body + " return e end", "instruction_budget = 100000000\n");
    ASSERT_TRUE(p) << body;
    Out o = RunBounded(*p, body);
    EXPECT_EQ(o.action, Action::kDeadLetter) << body;
    EXPECT_NE(o.error.find("the returned event takes more than the memory limit (8388608 bytes)"), std::string::npos)
        << body << " -> " << o.error;
    EXPECT_EQ(o.payload, "{}") << body;
  }
  // An object with many members is written in key order without a
  // quadratic sort (it took minutes for 100,000 names).
  auto wide = MustMake(R"(
function process(e)
  local t = {}
  for i = 100000, 1, -1 do t["k" .. i] = i end
  t[7] = "int" t["7"] = "str"
  e.payload = t
  return e
end)", "instruction_budget = 100000000\nmemory_limit = \"64MiB\"\n");
  ASSERT_TRUE(wide);
  Out o = RunBounded(*wide, "a wide object");
  ASSERT_EQ(o.action, Action::kKeep) << o.error;
  EXPECT_EQ(o.payload.rfind(R"({"7":"int","7":"str","k1":1,"k10":10,"k100":100,"k1000":1000,"k10000":)", 0), 0u)
      << o.payload.substr(0, 100);
}

// A monotonic clock that moves `step` microseconds at each reading.
class SteppingClock final : public testing::FaultEnv {
 public:
  explicit SteppingClock(int64_t step) : FaultEnv(Env::Default()), step_(step) {}
  int64_t MonotonicMicros() override { return now_ += step_; }

 private:
  std::atomic<int64_t> now_{0};
  const int64_t step_;
};

TEST_F(Lua, TheTimeLimitIsTwoMicrosecondsPerInstructionOfTheBudget) {
  const std::string spin = "function process(e) if e.payload.spin then while true do end end return e end";
  // A clock that stands still: the budget ends the loop, as always.
  SteppingClock still(0);
  Result<std::shared_ptr<const Plugin>> p = Make(spin, "", &still);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(RunBounded(**p, "a spin, the clock still", R"({"spin":true})").error, kBudgetError);
  // 100 ms at every look: 2 s (the default budget's limit) pass in 20.
  SteppingClock fast(100'000);
  p = Make(spin, "", &fast);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  Out o = RunBounded(**p, "a spin, the clock racing", R"({"spin":true})");
  EXPECT_EQ(o.action, Action::kDeadLetter);
  EXPECT_EQ(o.error, "lua: time limit of 2000 ms exceeded (operations on big values: see docs/plugins.md)");
  EXPECT_EQ(RunBounded(**p, "the next event").action, Action::kKeep);  // a run of its own
  // Ten times the budget, ten times the time; at least a second.
  SteppingClock second(1'000'000);
  p = Make(spin, "instruction_budget = 10000000\n", &second);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(RunBounded(**p, "a spin, a second a look", R"({"spin":true})").error,
            "lua: time limit of 20000 ms exceeded (operations on big values: see docs/plugins.md)");
  p = Make(spin, "instruction_budget = 1000\n", &fast);
  ASSERT_TRUE(p.ok());
  EXPECT_NE(RunBounded(**p, "a small budget", R"({"spin":true})").error.find("budget of 1000 exceeded"),
            std::string::npos);
  // At load too.
  Result<std::shared_ptr<const Plugin>> top = Make("while true do end", "", &fast);
  ASSERT_FALSE(top.ok());
  EXPECT_NE(top.status().message().find("running the top level: time limit of 2000 ms exceeded"), std::string::npos)
      << top.status().message();
}

TEST_F(Lua, TheTimeLimitEndsOperationsOnBigValues) {
  // Each a single counted instruction or call whose own cost grows with a
  // value: 100,000 instructions of these loops took 33 s and 4 s. The time
  // limit (1 s for a budget of 500,000) ends them.
  for (const char* body : {
           "local s = ' ' for i = 1, 21 do s = s .. s end s = s .. '1' while true do for i = 1, s do end end",
           ("local s = 'x' for i = 1, 17 do s = s .. s end local t = {s:byte(1, -1)} "
            "table.move({}, 1, #t - 1, 1, t) while true do local k = next(t) end"),
       }) {
    auto p = MustMake(std::string("function process(e) ") + body + " return e end",
                      "instruction_budget = 500000\nmemory_limit = \"16MiB\"\n");
    ASSERT_TRUE(p) << body;
    const auto start = std::chrono::steady_clock::now();
    Out o = RunBounded(*p, body);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_EQ(o.action, Action::kDeadLetter) << body;
    EXPECT_EQ(o.error, "lua: time limit of 1000 ms exceeded (operations on big values: see docs/plugins.md)") << body;
    EXPECT_LT(seconds, 5.0) << body;
  }
}

// ---- the metered functions behave as Lua's ----

// Serialising results the same way in every state (no pattern functions:
// they are what is compared).
constexpr const char* kShowLua = R"lua(
local function esc(s)
  local out = {}
  for i = 1, #s do
    local b = s:byte(i)
    if b < 32 or b > 126 or b == 92 then out[#out + 1] = "\\" .. b .. ";" else out[#out + 1] = string.char(b) end
  end
  return table.concat(out)
end
local show
local function keyorder(a, b)
  if type(a) ~= type(b) then return type(a) < type(b) end
  return a < b
end
show = function(v)
  local t = type(v)
  if t == "string" then return '"' .. esc(v) .. '"' end
  if t == "function" then return "function" end
  if t == "table" then
    local keys = {}
    for k in next, v do keys[#keys + 1] = k end
    table.sort(keys, keyorder)
    local out = {}
    for _, k in ipairs(keys) do out[#out + 1] = show(k) .. "=" .. show(rawget(v, k)) end
    return "{" .. table.concat(out, ",") .. "}"
  end
  if math.type(v) == "float" then return string.format("%.17g", v) end
  return tostring(v)
end
local function showall(...)
  local out = {}
  for i = 1, select("#", ...) do out[#out + 1] = show((select(i, ...))) end
  return "(" .. table.concat(out, ",") .. ")"
end
)lua";

// A plain state with Lua's standard library; with `meter`, string's
// pattern functions are lua_patterns.h's.
std::string RunInPlainState(const std::string& chunk, LuaWorkMeter* meter) {
  lua_State* L = luaL_newstate();
  luaL_openlibs(L);
  if (meter != nullptr) {
    lua_getglobal(L, "string");
    SetLuaPatternFunctions(L, -1, meter);
    lua_pop(L, 1);
  }
  std::string out;
  if (luaL_loadbuffer(L, chunk.data(), chunk.size(), "@s.lua") != LUA_OK || lua_pcall(L, 0, 1, 0) != LUA_OK) {
    out = std::string("the chunk failed: ") + lua_tostring(L, -1);
  } else {
    size_t n = 0;
    const char* s = lua_tolstring(L, -1, &n);
    out.assign(s, n);
  }
  lua_close(L);
  return out;
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

// Compares two runs line by line (one case a line), naming the first cases
// that differ.
void ExpectSameLines(const std::string& lua, const std::string& ours) {
  const std::vector<std::string> a = Lines(lua), b = Lines(ours);
  EXPECT_EQ(a.size(), b.size());
  int shown = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()) && shown < 10; ++i) {
    if (a[i] != b[i]) {
      ADD_FAILURE() << "Lua:  " << a[i] << "\nours: " << b[i];
      ++shown;
    }
  }
}

class CountingMeter final : public LuaWorkMeter {
 public:
  void Charge(lua_State*, int64_t steps) override { steps_ += steps; }
  int64_t steps() const { return steps_; }

 private:
  int64_t steps_ = 0;
};

// Lines "call => results" for the pattern functions: a fixed list of cases
// (the manual's features, their edges, every malformed pattern), then
// `random` seeded random patterns and subjects, small enough for Lua's
// matcher to finish.
std::string PatternCases(int random) {
  return "local RANDOM = " + std::to_string(random) + "\n" + kShowLua + R"lua(
local lines = {}
local function check(name, f, ...)
  local args = {...}
  local shown = {}
  for i = 1, select("#", ...) do shown[i] = show(args[i]) end
  lines[#lines + 1] = name .. "(" .. table.concat(shown, ",") .. ") => " .. showall(pcall(f, ...))
end
local function gmatch_all(s, p, init)
  local out = {}
  for a, b, c in string.gmatch(s, p, init) do
    out[#out + 1] = showall(a, b, c)
    if #out > 40 then break end
  end
  return table.concat(out, ";")
end
local function all(s, p, ...)
  check("find", string.find, s, p, ...)
  check("match", string.match, s, p, ...)
  check("gmatch", gmatch_all, s, p, ...)
  check("gsub", string.gsub, s, p, "<%0>")
  check("gsub1", string.gsub, s, p, "[%1]", 2)
  check("gsubf", string.gsub, s, p, function(...) return select("#", ...) .. showall(...) end)
  check("gsubt", string.gsub, s, p, {a = "A", [1] = "one", b = false})
end
local bytes = {}
for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
bytes = table.concat(bytes)
local fixed = {
  {"hello world", "o w"}, {"hello", "l+"}, {"hello", "^h"}, {"hello", "^e"}, {"hello", "o$"}, {"a$b", "$b"},
  {"a$b", "a$"}, {"hello", "", 10}, {"hello", "", 6}, {"hello", "", 7}, {"hello", "l", -2}, {"hello", "l", -100},
  {"hello", "l", 0}, {"a.b", ".", 1, true}, {"a+b", "+", 1, true}, {"a+b", "+", 1, false}, {"abc", "b", 0},
  {"", ""}, {"", "a*"}, {"", "^$"}, {"THE (quick) fox", "%((%a+)%)"}, {"x = 10", "(%w+)%s*=%s*(%w+)"},
  {"abc", "()b()"}, {"f(a(b)c)d", "%b()"}, {"f(a(b)c", "%b()"}, {"||x||", "%b||"}, {"THE (quick) fox", "%f[%a]%a+"},
  {"THE (quick) fox", "%f[%A]"}, {"hello hello", "(h%a+) %1"}, {"aaa", "a-b"}, {"aaab", "a-b"}, {"aaa", "a?a?a?a"},
  {"[]", "[]]"}, {"a]", "[]a]+"}, {"a-b", "[a-]+"}, {"^", "[%^]"}, {"x^", "^x^"}, {"%", "%%"}, {"a.b", "%."},
  {"a\0b", "%z"}, {"a\0b", "\0"}, {"a\0b", "[\0]"}, {"a\0b", "a%zb"}, {"ab", "[%a-z]+"}, {"a-z", "[a-%z]+"},
  {"a-z", "[%w-]+"}, {"hello", "%w+", 3}, {"key = value", "^(%w+)%s*=%s*(%w+)$"}, {"  trim  ", "^%s*(.-)%s*$"},
  {"2024-01-02", "(%d+)-(%d+)-(%d+)"}, {"a,b,,c", "([^,]*)"}, {"abc", ""}, {"abc", "()"}, {"abc", ".-"},
  {"abc", ".*"}, {"abc", "x*"}, {"abc", "b*"}, {"^a^a", "^a"}, {"aXb", "%u"}, {"aXb", "%U+"}, {"a1 b2", "%a%d"},
  {"((a))", "%b()"}, {"abc", "(a)(b)(c)"}, {"abc", "((a)(b))"}, {"abc", "(a)%1"}, {"aa", "(a)%1"},
  {"abc", "()a()b()"}, {"abc", "()%1"}, {"ab", "a?b?c?"}, {"abba", "(b+)%1"}, {"x", "[a-]"}, {"-", "[a-]"},
  {"]", "[]-a]"}, {"b", "[]-a]"}, {"b", "[^]a]"}, {"\255\1", "[\1-\255]+"}, {"abc", "[^%a]"},
  -- malformed, and the limits
  {"a", "%"}, {"a", "[a"}, {"a", "[^"}, {"a", "[%"}, {"a", "[a%"}, {"a", "(a"}, {"a", "a)"}, {"a", "%b"},
  {"a", "%ba"}, {"a", "%f"}, {"a", "%fa"}, {"a", "%1"}, {"a", "(a)%2"}, {"a", "(a%1)"}, {"a", "%0"},
  {"a", "()%1"}, {"a", ("(a)"):rep(33)}, {"a", ("()"):rep(32)}, {"a", ("a?"):rep(300)},
  {("a"):rep(199), ("a?"):rep(199)}, {("a"):rep(200), ("a?"):rep(200)}, {"a", ("(" ):rep(40) .. "a" .. (")"):rep(40)},
  {bytes, "%a+"}, {bytes, "%c+"}, {bytes, "%d+"}, {bytes, "%g+"}, {bytes, "%l+"}, {bytes, "%p+"}, {bytes, "%s+"},
  {bytes, "%u+"}, {bytes, "%w+"}, {bytes, "%x+"}, {bytes, "%A+"}, {bytes, "%P+"}, {bytes, "[%p%s]+"},
  {bytes, "[^%c]+"}, {bytes, "[\128-\255]+"},
}
for _, c in ipairs(fixed) do all(table.unpack(c, 1, 4)) end
-- argument errors and conversions
check("find", string.find, nil, "a")
check("find", string.find, "a", nil)
check("find", string.find, "a", "a", "x")
check("find", string.find, 123, 2)
check("match", string.match, "a", "a", 1.5)
check("gmatch", string.gmatch, "a")
check("gsub", string.gsub, "abc", "%w")
check("gsub", string.gsub, "abc", "%w", "x", "bad")
check("gsub", string.gsub, "abc", "%w", "x", -1)
check("gsub", string.gsub, "abc", "%w", "x", 1.5)
check("gsub", string.gsub, "abc", "%w", 5)
check("gsub", string.gsub, "abc", "%w", 1.5)
check("gsub", string.gsub, "abc", "%w", "%2")
check("gsub", string.gsub, "abc", "%w", "%")
check("gsub", string.gsub, "abc", "%w", "%x")
check("gsub", string.gsub, "abc", "(%w)", "%%%1%0")
check("gsub", string.gsub, "abc", "()", "%1")
check("gsub", string.gsub, "abc", "%w", {a = true})
check("gsub", string.gsub, "abc", "%w", function() return {} end)
check("gsub", string.gsub, "abc", "%w", function() return 7 end)
check("gsub", string.gsub, "hello world", "(o)", "[%1]", 0)
check("gsub", string.gsub, "abc", "(", "x")
check("method", function(s) return s:find("b") end, "abc")
check("method", function(s) return s:gsub("b", nil) end, "abc")
check("method", function(s) return s:match() end, "abc")
-- random patterns and subjects
math.randomseed(20240607)
local atoms = {"a", "b", "c", ".", "%a", "%d", "%s", "%w", "%W", "[ab]", "[^a]", "[a-c]", "[%a_]", "%b()",
               "%f[%w]", "%f[%W]", "%1", "%2", "()", "$", "%%", "%.", "]", "-", "[]a]", "[", "%", "(", ")"}
local quantifiers = {"", "", "", "*", "+", "-", "?"}
local chars = {"a", "b", "c", " ", "(", ")", "1", "_", "\0", "\255", "%"}
for _ = 1, RANDOM do
  local parts = {}
  if math.random(4) == 1 then parts[1] = "^" end
  for _ = 1, math.random(0, 6) do parts[#parts + 1] = atoms[math.random(#atoms)] .. quantifiers[math.random(#quantifiers)] end
  local subject = {}
  for i = 1, math.random(0, 12) do subject[i] = chars[math.random(#chars)] end
  local init = math.random(3) == 1 and math.random(-3, 14) or nil
  all(table.concat(subject), table.concat(parts), init)
end
return table.concat(lines, "\n")
)lua";
}

TEST(LuaPatterns, GiveWhatLuaGivesOnEveryCase) {
  CountingMeter meter;
  const std::string chunk = PatternCases(3000);
  const std::string lua = RunInPlainState(chunk, nullptr);
  const std::string ours = RunInPlainState(chunk, &meter);
  ASSERT_EQ(lua.rfind("the chunk failed", 0), std::string::npos) << lua;
  EXPECT_GT(Lines(lua).size(), 20000u);
  ExpectSameLines(lua, ours);
  EXPECT_GT(meter.steps(), 100000);  // the work was charged
}

TEST(LuaPatterns, ChargeEveryStepAndStopWhenTheMeterRaises) {
  class Stopper final : public LuaWorkMeter {
   public:
    void Charge(lua_State* L, int64_t steps) override {
      steps_ += steps;
      if (steps_ > 1000000) luaL_error(L, "stopped after %d steps", static_cast<int>(steps_));
    }
    int64_t steps_ = 0;
  } stopper;
  const std::string result = WithinDeadline("a pattern that backtracks for hours", [&] {
    return RunInPlainState("return select(2, pcall(string.find, ('a'):rep(5000), ('a*'):rep(20) .. 'b'))", &stopper);
  });
  EXPECT_NE(result.find("stopped after"), std::string::npos) << result;
  EXPECT_LT(stopper.steps_, 1000000 + 2048);  // within a batch of the stop
  // Work grows with the subject, so charges do too.
  CountingMeter small, large;
  RunInPlainState("string.find(('a'):rep(100), 'b')", &small);
  RunInPlainState("string.find(('a'):rep(10000), 'b')", &large);
  EXPECT_GE(large.steps(), 50 * small.steps());
}

// Calls of the functions the sandbox meters or replaces, each a Lua
// function body returning what it saw; run in a plugin and in a plain state
// with Lua's library, they must see the same, errors included.
const char* const kLibraryCases[] = {
    // table.insert, remove, move, concat, unpack, pack, sort
    "local t = {1, 2, 3} table.insert(t, 'x') return show(t)",
    "local t = {1, 2, 3} table.insert(t, 1, 'x') return show(t)",
    "local t = {1, 2, 3} table.insert(t, 4, 'x') return show(t)",
    "local t = {1, 2, 3} table.insert(t, 5, 'x') return show(t)",
    "local t = {1, 2, 3} table.insert(t, 0, 'x') return show(t)",
    "local t = {1, 2, 3} table.insert(t, -1, 'x') return show(t)",
    "return showall(table.insert({}))",
    "return showall(table.insert({}, 1, 2, 3))",
    "return showall(table.insert(nil, 1))",
    "return showall(table.insert('abc', 1))",
    "local t = {1, 2, 3} return showall(table.insert(t, 1.0, 'x'), t)",
    "local t = {1, 2, 3} return showall(table.insert(t, 1.5, 'x'))",
    "local t = {1, 2, 3} return showall(table.remove(t), t)",
    "local t = {1, 2, 3} return showall(table.remove(t, 1), t)",
    "local t = {1, 2, 3} return showall(table.remove(t, 4), t)",
    "local t = {1, 2, 3} return showall(table.remove(t, 5), t)",
    "local t = {1, 2, 3} return showall(table.remove(t, 0), t)",
    "return showall(table.remove({}))",
    "return showall(table.remove({}, 0))",
    "return showall(table.remove({}, -1))",
    "return showall(table.remove({[0] = 'z'}, 0))",
    "return showall(table.move({1, 2, 3}, 1, 3, 2))",
    "return showall(table.move({1, 2, 3}, 2, 3, 1))",
    "return showall(table.move({1, 2, 3}, 1, 3, 1, {}))",
    "return showall(table.move({1, 2, 3}, 3, 1, 1, {}))",
    "return showall(table.move({1, 2, 3}, 1, math.maxinteger, 2))",
    "return showall(table.move({1, 2, 3}, -1, 1, 1, {}))",
    "return showall(table.move({1, 2, 3}, 1, 2, math.maxinteger))",
    "return showall(table.move(nil, 1, 2, 3))",
    "return showall(table.move({}, 1, 2, 3, 4))",
    "return showall(table.concat({1, 2, 'a'}))",
    "return showall(table.concat({}, ','))",
    "return showall(table.concat({1, 2, 3}, ', ', 2))",
    "return showall(table.concat({1, 2, 3}, ',', 2, 3))",
    "return showall(table.concat({1, {}, 3}))",
    "return showall(table.concat({1, 2, 3}, ',', 3, 2))",
    "return showall(table.concat({'a'}, nil, 1, 1))",
    "return showall(table.concat({1.5, 2}, '-'))",
    "return showall(table.concat({}, '', 1, 2))",
    "return showall(table.concat('abc'))",
    "return showall(table.unpack({1, 2, 3}))",
    "return showall(table.unpack({1, 2, 3}, 2))",
    "return showall(table.unpack({1, 2, 3}, 2, 5))",
    "return showall(table.unpack({}, 1, 0))",
    "return showall(table.unpack({}, math.maxinteger - 1, math.maxinteger))",
    "return showall(table.unpack({}, math.mininteger, math.mininteger + 1))",
    "return showall(table.unpack({}, -5, -3))",
    "return showall(table.unpack({}, 1, 1e8))",
    "return showall(table.unpack({}, math.mininteger, math.maxinteger))",
    "return showall(table.unpack(nil))",
    "return showall(table.unpack('abc'))",
    "return showall(table.pack(1, nil, 3))",
    "return showall(table.pack())",
    "local t = {3, 1, 2} table.sort(t) return show(t)",
    "local t = {'b', 'a', 'c', 'ab'} table.sort(t) return show(t)",
    "local t = {3, 1, 2} table.sort(t, function(a, b) return a > b end) return show(t)",
    "local t = {3, 2, 1, 5, 4} table.sort(t, math.ult) return show(t)",
    "local t = {1, 'x'} return showall(table.sort(t))",
    "local t = {{}, {}} return showall(table.sort(t))",
    "local t = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10} return showall(table.sort(t, function() return true end))",
    "local t = {} return showall(table.sort(t, 5))",
    "return showall(table.sort(nil))",
    ("local t, x = {}, 7 for i = 1, 300 do x = (x * 1103515245 + 12345) % 2147483648 t[i] = x % 1000 end "
     "table.sort(t) return show(t)"),
    ("local t, x = {}, 7 for i = 1, 300 do x = (x * 1103515245 + 12345) % 2147483648 t[i] = tostring(x % 1000) end "
     "table.sort(t, function(a, b) return a > b end) return show(t)"),
    // The same operations through metamethods, in the same order.
    ("local log, back = {}, {1, 2, 3} "
     "local p = setmetatable({}, {__index = function(_, k) log[#log + 1] = 'get' .. k return back[k] end, "
     "__newindex = function(_, k, v) log[#log + 1] = 'set' .. k .. '=' .. tostring(v) back[k] = v end, "
     "__len = function() log[#log + 1] = 'len' return #back end}) "
     "table.insert(p, 2, 'x') table.insert(p, 'y') table.remove(p, 1) table.remove(p) table.move(p, 1, 2, 3) "
     "local s = table.concat(p, ',') local u = showall(table.unpack(p)) table.sort(p) "
     "return table.concat(log, ' ') .. ' | ' .. s .. ' | ' .. u .. ' | ' .. show(back)"),
    // string.byte, rep, char, format, pack, packsize, unpack
    "return showall(('abc'):byte())",
    "return showall(('abc'):byte(-1))",
    "return showall(('abc'):byte(1, -1))",
    "return showall(('abc'):byte(10))",
    "return showall(('abc'):byte(0))",
    "return showall((''):byte())",
    "return showall(string.byte('abc', 2, 1))",
    "return showall(string.byte('abc', -10, 10))",
    "return showall(string.byte(nil))",
    "return showall(string.rep('ab', 3, ','))",
    "return showall(string.rep('ab', 0))",
    "return showall(string.rep('ab', -1))",
    "return showall(string.rep('', 5))",
    "return showall(string.rep('', 5, 'x'))",
    "return showall(string.rep('x', 3, ''))",
    // (string.rep('', 1e15) is not here: Lua's would not return.)
    "return showall(string.rep('x', math.maxinteger))",
    "return showall(string.rep('', 2.5))",
    "return showall(string.rep(nil, 1))",
    "return showall(string.rep('x'))",
    "return showall(string.char(72, 105))",
    "return showall(string.char())",
    "return showall(string.char(256))",
    "return showall(string.char('x'))",
    "return showall(string.format('%d %s %q %5.2f %x %c %%', 42, 'hi', 'a\\nb', 3.14159, 255, 65))",
    "return showall(string.format('%d', 'x'))",
    "return showall(string.format('%d', 1.5))",
    "return showall(string.format('%y'))",
    "return showall(string.format('%s'))",
    "return showall(string.format('%10.3s|%-5d|', 'abcdef', 7))",
    "return showall(string.format('%q', 1/0))",
    "return showall(string.format())",
    "return showall(string.pack('i4 s1 z', 7, 'ab', 'cd'))",
    "return showall(string.packsize('i4 i8'))",
    "return showall(string.unpack('i4', string.pack('i4', -5)))",
    "return showall(string.unpack('z', 'abc\\0def'))",
    "return showall(string.pack('i17'))",
    "return showall(string.packsize('s'))",
    "return showall(string.unpack('i4', 'ab'))",
    "return showall(string.unpack('bbb', 'abc', -2))",
    // utf8
    "return showall(utf8.char(72, 228, 8364, 128512))",
    "return showall(utf8.char())",
    "return showall(utf8.char(-1))",
    "return showall(utf8.char(0x7FFFFFFF))",
    "return showall(utf8.codepoint('h\\u{e4}x', 1, -1))",
    "return showall(utf8.codepoint('h\\u{e4}x', 3))",
    "return showall(utf8.codepoint('abc', 0))",
    "return showall(utf8.codepoint('abc', 1, 4))",
    "return showall(utf8.codepoint('\\xff'))",
    "return showall(utf8.codepoint('', 1, 0))",
    "return showall(utf8.codepoint('\\u{D7FF}\\xed\\xa0\\x80', 1, -1, true))",
    "return showall(utf8.codepoint('\\xed\\xa0\\x80'))",
    "return showall(utf8.len('h\\u{e4}x'))",
    "return showall(utf8.len('h\\u{e4}x', 2))",
    "return showall(utf8.len('h\\u{e4}x', 3))",
    "return showall(utf8.len('h\\xffx'))",
    "return showall(utf8.len('abc', 5))",
    "return showall(utf8.len('abc', 1, 5))",
    "return showall(utf8.len('abc', -1))",
    "return showall(utf8.len('abc', 4))",
    "return showall(utf8.len('', 1))",
    "return showall(utf8.len('abc', 0))",
    "return showall(utf8.len('abc', 3, 1))",
    "return showall(utf8.len('abc', 1, 1e15))",
    "return showall(utf8.codepoint('abc', 1, 1e15))",
    "return showall(string.byte('abc', 1, 1e15))",
    "return showall(utf8.offset('h\\u{e4}x', 3))",
    "return showall(utf8.offset('h\\u{e4}x', -1))",
    "return showall(utf8.offset('h\\u{e4}x', 0, 3))",
    "return showall(utf8.offset('h\\u{e4}x', 1, 3))",
    "return showall(utf8.offset('abc', 5))",
    "return showall(utf8.offset('abc', 1, 5))",
    "return showall(utf8.offset('abc', -5))",
    "return showall(utf8.offset('abc', 0))",
    "return showall(utf8.offset('', 1))",
    ("local out = {} for p, c in utf8.codes('h\\u{e4}x\\u{20ac}') do out[#out + 1] = p .. ':' .. c end "
     "return table.concat(out, ',')"),
    "local out = {} for p, c in utf8.codes('a\\xffb') do out[#out + 1] = p end return table.concat(out, ',')",
    ("local out = {} for p, c in utf8.codes('\\xed\\xa0\\x80', true) do out[#out + 1] = c end "
     "return table.concat(out, ',')"),
    "local out = {} for p, c in utf8.codes('\\xed\\xa0\\x80') do out[#out + 1] = c end return table.concat(out, ',')",
    "local f = utf8.codes('abc') return showall(f('abc', 1))",
    "local f = utf8.codes('abc') return showall(f('abc', 10))",
    "local f = utf8.codes('abc') return showall(f('abc', -1))",
    "local f = utf8.codes('a\\x80\\x80b') return showall(f('a\\x80\\x80b', 1))",
    "return showall(utf8.codes(nil))",
    // setmetatable's checks
    "return showall(setmetatable(1, {}))",
    "return showall(setmetatable({}, 1))",
    "return showall(setmetatable({}))",
    "return showall(setmetatable(setmetatable({}, {__metatable = 1}), {}))",
    "return showall(getmetatable(setmetatable({}, {__metatable = 'x'})))",
};

std::string LibraryCases() {
  std::string chunk = kShowLua;
  chunk += "local cases = {}\n";
  for (const char* c : kLibraryCases) chunk += "cases[#cases + 1] = function() " + std::string(c) + " end\n";
  chunk += R"lua(
function run()
  local out = {}
  for i, f in ipairs(cases) do
    local ok, r = pcall(f)
    out[i] = i .. ": " .. (ok and r or "error " .. show(r))
  end
  return table.concat(out, "\n")
end
)lua";
  return chunk;
}

TEST_F(Lua, MeteredLibraryFunctionsGiveWhatLuaGives) {
  const std::string chunk = LibraryCases();
  const std::string lua = RunInPlainState(chunk + "return run()", nullptr);
  ASSERT_EQ(lua.rfind("the chunk failed", 0), std::string::npos) << lua;
  auto p = MustMake(chunk + "function process(e) e.payload = run() return e end", "instruction_budget = 100000000\n");
  ASSERT_TRUE(p);
  Out o = Run(*p, "", false);
  ASSERT_EQ(o.action, Action::kKeep) << o.error;
  EXPECT_EQ(Lines(lua).size(), std::size(kLibraryCases));
  ExpectSameLines(lua, o.payload);
}

}  // namespace
}  // namespace edgesync

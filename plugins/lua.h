// lua: a fleet's own step in a chain, as a Lua 5.4 script (portable across
// the boards' CPU types, unlike a shared object).
//
//   [plugins.enrich]
//   type = "lua"
//   script = "enrich.lua"          # relative to the file the table is in
//   function = "process"           # default
//   instruction_budget = 1000000   # Lua VM instructions per event
//   memory_limit = "8MiB"          # or bytes; the script's whole heap
//
// The function gets the event as a table
//   { topic = "...", received_at_us = <integer>,
//     payload = <the JSON as tables, or the raw payload as a string>,
//     properties = { {name, value}, ... },
//     route = { stream = "...", kafka_topic = "...", priority = "...", key = "..." } }
// and returns a table (the event as it should go on: a field left out keeps
// its value) or nil (drop the event). JSON objects are tables with string
// keys, arrays are sequences, null is `edgesync.null`; numbers are integers
// when they are whole and fit 64 bits. A table written back is an array
// when its keys are exactly 1..n (an empty table is an object); an object's
// members are written in key order, so the output is deterministic. An
// empty kafka_topic or priority means the stream's own.
//
// Sandbox: only the base library (without dofile, loadfile, load, require,
// collectgarbage, print, warn and rawset, which reach outside the sandbox or
// around it), string (without dump), table, math (without random,
// randomseed) and utf8. No io, os, package, debug or coroutine; precompiled
// chunks are refused. After the script's top level has run, its globals and
// the library tables are read only (and strings' metatable protected), so a
// script cannot keep state from one event to the next through them; a table
// one of its own globals holds is not frozen.
//
// Bounds: the instruction budget counts VM instructions and, in the same
// units, the work Lua does where the count hook does not see it: heap growth
// (a unit per 64 bytes), library loops (pattern matching step by step, table
// functions element by element, ...; lua.cpp lists every function), and the
// copy of the returned event out of the script's heap, which the memory
// limit bounds too. Finalizers (__gc) and weak tables (__mode) are refused
// by setmetatable, also when added to a metatable later: Lua runs them
// outside any hook, in collections and in lua_close. So closing a state
// runs no script code. A time limit, 2 us per instruction of the budget (at
// least 1 s; 2 s by default), catches what the budget cannot count: single
// operations whose cost grows with the size of a value (comparing or
// converting long strings, ...): far above what a script that stays within
// its budget takes. Once the budget is spent, every further instruction
// raises, so pcall cannot swallow it. An error, an exhausted instruction
// budget or memory limit, or a result that cannot be written back sends the
// event, unchanged, to the dead-letter stream with the message ("lua:
// enrich.lua:12: attempt to index a nil value"), never drops it; the next
// event runs as if nothing happened. At load, the same is a configuration
// error.
#pragma once

#include <memory>
#include <string>

#include "base/env.h"
#include "base/status.h"
#include "plugins/plugin.h"
#include "plugins/plugin_type.h"
#include "plugins/settings.h"

namespace edgesync {

// type = "lua": a fleet's own step as a Lua 5.4 script.
const PluginType& LuaPluginType();
// `env` gives the time limit its monotonic clock.
Result<std::shared_ptr<const Plugin>> MakeLuaPlugin(Settings& s, const std::string& base_dir,
                                                    Env* env = Env::Default());

}  // namespace edgesync

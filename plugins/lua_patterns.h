// lua_patterns: Lua 5.4's pattern functions (string.find, string.match,
// string.gmatch, string.gsub) with every matching step charged to a meter,
// for the lua plugin's sandbox (plugins/lua.cpp).
//
// Lua's own implementation backtracks in C, where no count hook fires: a
// pattern such as ("a*"):rep(20) .. "b" against ("a"):rep(5000) runs for
// ages inside one call. These functions were written from the Lua 5.4
// reference manual (6.4.1 and the descriptions of the four functions) and
// behave like Lua's: the same results, captures, position captures, %b, %f,
// back references, anchors, init and plain arguments, gsub's replacement
// kinds and maximum, and the same error messages for malformed patterns
// (tests/plugins/lua_test.cpp compares them with the stock library, and
// tests/fuzz/lua_patterns_fuzz.cpp on random input). The one difference:
// they charge their work to the meter, which stops them when it raises.
#pragma once

#include <cstddef>
#include <cstdint>

struct lua_State;

namespace edgesync {

// Where the pattern functions account for their work, in steps (one step
// is about one Lua VM instruction's worth: a character tested, a match
// attempted, 16 bytes compared). Charge is called from inside the Lua
// function doing the work, with the steps done since its last call; it
// either returns (keep going) or raises a Lua error (lua_error/luaL_error,
// which does not return), and it must leave the Lua stack as it found it.
class LuaWorkMeter {
 public:
  virtual void Charge(lua_State* L, int64_t steps) = 0;

 protected:
  ~LuaWorkMeter() = default;
};

// Work is charged to a meter in batches of at least this many steps (and
// at the end of every call), so a runaway loop stops within a batch; bytes
// compared, scanned or decoded count one step per kLuaScanBytesPerStep.
constexpr int64_t kLuaChargeBatch = 1024;
constexpr size_t kLuaScanBytesPerStep = 16;

// Sets find, match, gmatch and gsub in the table at `index` (the string
// library's table) to the metered ones. `meter` must outlive the state.
void SetLuaPatternFunctions(lua_State* L, int index, LuaWorkMeter* meter);

// A start position argument of Lua's string functions as the manual defines
// it: negative counts from the end of a string of `len` bytes; clipped to
// [1, inf).
size_t LuaStartPosition(int64_t pos, size_t len);

}  // namespace edgesync

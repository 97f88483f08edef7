// libFuzzer target for the lua plugin's pattern functions
// (plugins/lua_patterns.h), compared with Lua's own. Also linked with
// replay_main.cpp into lua_patterns_fuzz_replay, which ctest runs over
// corpus/lua_patterns/ with any compiler.
//
// Input: byte 0 chooses the call (find, find plain, match, gmatch, gsub with
// a string, a function or a table, gsub with a maximum) and an init
// argument; byte 1 the pattern's length (at most 32); then the pattern; the
// rest, cut to 64 bytes, is the subject. The call runs in two plain states
// with Lua's standard library, one with edgesync's pattern functions, which
// charge a meter that stops them after kStepLimit steps. When ours finishes
// within it, Lua's (which backtracks the same way) finishes too, and:
// both give the same results, or raise the same error message.
#include <algorithm>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <string>
#include <string_view>

#include "plugins/lua_patterns.h"
#include "tests/fuzz/fuzz_check.h"

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace {
constexpr const char* kTarget = "lua_patterns_fuzz";
constexpr int64_t kStepLimit = 200000;
constexpr size_t kMaxPattern = 32;
constexpr size_t kMaxSubject = 64;

class StepLimit final : public edgesync::LuaWorkMeter {
 public:
  void Charge(lua_State* L, int64_t steps) override {
    steps_ += steps;
    if (steps_ > kStepLimit) {
      stopped_ = true;
      luaL_error(L, "step limit");
    }
  }
  void Reset() {
    steps_ = 0;
    stopped_ = false;
  }
  bool stopped() const { return stopped_; }

 private:
  int64_t steps_ = 0;
  bool stopped_ = false;
};

// Calls `call` (a chunk taking s, p, init and returning what it saw) in L.
const char* const kCalls[] = {
    "local s, p, i = ... return string.find(s, p, i)",
    "local s, p, i = ... return string.find(s, p, i, true)",
    "local s, p, i = ... return string.match(s, p, i)",
    ("local s, p, i = ... local out = {} for a, b in string.gmatch(s, p, i) do out[#out + 1] = tostring(a) .. '/' .. "
     "tostring(b) if #out > 40 then break end end return table.concat(out, ';')"),
    "local s, p = ... return string.gsub(s, p, '<%0%1>')",
    "local s, p = ... return string.gsub(s, p, function(...) return select('#', ...) .. table.concat({...}, '|') end)",
    "local s, p = ... return string.gsub(s, p, {a = 'A', [1] = 'one', b = false})",
    "local s, p, i = ... return string.gsub(s, p, '%%', i)",
};

lua_State* NewState(edgesync::LuaWorkMeter* meter) {
  lua_State* L = luaL_newstate();
  luaL_openlibs(L);
  if (meter != nullptr) {
    lua_getglobal(L, "string");
    edgesync::SetLuaPatternFunctions(L, -1, meter);
    lua_pop(L, 1);
  }
  for (const char* call : kCalls) {
    if (luaL_loadstring(L, call) != LUA_OK) std::abort();
  }
  return L;  // the calls' functions at 1..
}

// The results of call `which` as text: "ok" or "error", then each value.
std::string Run(lua_State* L, int which, std::string_view s, std::string_view p, lua_Integer init) {
  lua_settop(L, static_cast<int>(std::size(kCalls)));
  lua_pushvalue(L, which + 1);
  lua_pushlstring(L, s.data(), s.size());
  lua_pushlstring(L, p.data(), p.size());
  lua_pushinteger(L, init);
  const int base = static_cast<int>(std::size(kCalls));
  std::string out = lua_pcall(L, 3, LUA_MULTRET, 0) == LUA_OK ? "ok" : "error";
  for (int i = base + 1; i <= lua_gettop(L); ++i) {
    out += '\x1f';
    out += lua_typename(L, lua_type(L, i));
    out += ':';
    if (lua_type(L, i) == LUA_TSTRING || lua_type(L, i) == LUA_TNUMBER) {
      size_t n = 0;
      const char* v = lua_tolstring(L, i, &n);
      out.append(v, n);
    }
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static StepLimit meter;
  static lua_State* lua = NewState(nullptr);
  static lua_State* ours = NewState(&meter);
  if (size < 2) return 0;
  const int which = data[0] % static_cast<int>(std::size(kCalls));
  const lua_Integer init = static_cast<lua_Integer>((data[0] / std::size(kCalls)) % 16) - 4;  // -4 .. 11
  const size_t plen = std::min<size_t>(data[1] % (kMaxPattern + 1), size - 2);
  const std::string_view p(reinterpret_cast<const char*>(data) + 2, plen);
  std::string_view s(reinterpret_cast<const char*>(data) + 2 + plen, size - 2 - plen);
  if (s.size() > kMaxSubject) s = s.substr(0, kMaxSubject);

  meter.Reset();
  const std::string mine = Run(ours, which, s, p, init);
  if (meter.stopped()) return 0;  // too much backtracking for Lua's to be run here
  const std::string theirs = Run(lua, which, s, p, init);
  FUZZ_CHECK(mine == theirs, "ours: " + mine + "\nLua's: " + theirs);
  lua_gc(ours, LUA_GCCOLLECT);
  lua_gc(lua, LUA_GCCOLLECT);
  return 0;
}

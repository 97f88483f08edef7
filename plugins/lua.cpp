// The lua plugin (lua.h): a fleet's Lua 5.4 script run as a stateless step
// of a chain, in a sandbox whose work and memory are bounded.
//
// What bounds a script's work.
//
// The script's whole heap is the memory limit (Allocate). Its work is the
// instruction budget, counted in units of about one VM instruction: the
// count hook charges the instructions it sees, and whatever Lua does that
// the hook cannot see is charged too or cannot happen:
//
// - Growing the heap costs a unit per kAllocBytesPerUnit bytes, and an
//   allocation the memory limit refuses costs the full collection Lua then
//   runs (the heap's size in the same units): this bounds the work of every
//   function whose work is proportional to what it creates (string.rep,
//   upper, lower, reverse, sub, format's output, concatenation, tables
//   growing) and the collector's, which is proportional to allocation.
// - Finalizers and weak tables cannot exist. Lua runs __gc with hooks off,
//   during any collection step and in lua_close, so no budget could stop
//   one; a weak-keyed table makes one collection quadratic in the heap
//   (14 s for 40,000 entries in 4 MB, measured). setmetatable refuses a
//   metatable with a __gc or __mode field, and seals the metatable: from
//   then on a __gc or __mode field cannot be added to it (Seal). The only
//   other metatables are the library's own, out of the script's reach.
//   So collections, and lua_close, run no script code and no finalizer but
//   the C library's own, which frees a buffer.
// - To-be-closed variables (__close) run with hooks on, inside the call that
//   declared them: budgeted like any code.
// - C functions whose loops run for a count the script chooses, not for the
//   size of something it has already paid for, are replaced or charged:
//     string.find, match, gmatch, gsub: our own matcher, charged per step
//       (lua_patterns.cpp); Lua's backtracks without limit.
//     string.rep: charged per copy; an empty result is returned at once
//       (Lua loops n times copying nothing).
//     string.byte, table.unpack, utf8.codepoint: charged per value returned
//       (the stack they push onto is paid for once, then reused).
//     string.char, table.pack, utf8.char: per argument.
//     string.format: per argument and per 16 bytes of format.
//     string.pack, packsize, unpack: per byte of format (one option each).
//     table.insert, remove, move, concat: our own, per element moved (the
//       count comes from __len or the arguments: Lua loops up to 2^63
//       times over nothing).
//     table.sort: per comparison, through a metered comparison function
//       (Lua's own quicksort, so the same order).
//     utf8.len, utf8.offset, and the iterator of utf8.codes: per 16 bytes
//       scanned (the iterator rescans from the position it is given).
//     setmetatable: ours (above).
// - The rest of what the sandbox offers is O(1) per call, or bounded by what
//   the script has already paid for (the values it passes, what it
//   allocates): assert, error, getmetatable, ipairs, pairs, pcall, xpcall,
//   rawequal, rawget, rawlen, select, tostring, type, _G, _VERSION;
//   string.len, lower, upper, reverse, sub and the string metatable's
//   arithmetic; every math function (with Debian's 5.3 compatibility ones);
//   utf8.charpattern. next and tonumber: see below.
// - What the script returns is copied out of its heap (Stage): that copy is
//   bounded by the memory limit too, and charged.
//
// No coroutines (the library is not opened): the count hook is the main
// thread's, and each coroutine would start with a budget of its own.
//
// What the budget cannot see: single VM instructions, or calls, whose own
// cost grows with their operands: comparing long strings (<, <=, and == of
// equal lengths), converting a long string to a number (tonumber,
// arithmetic, a numeric argument, a `for` limit), next() skipping the empty
// part of a table, expanding `...`, each at most linear in the memory limit;
// following a chain of __index or __newindex tables, at most 2,000 links.
// Counted as one instruction each, a loop of them ran for minutes within
// the default budget (for i = 1, s with s 3 MB of spaces: 33 s per 100,000
// instructions). For them only, a time limit: 2 us per instruction of the
// budget (at least 1 s), checked by the count hook on the Env's monotonic
// clock, after every instruction once they are that slow. A script within
// its budget takes a small fraction of it (about 10 ns an instruction),
// so the limit changes no result of a script that does not lean on them.
//
// Load: the top level runs under the same bounds; its failure is a
// configuration error. Closing the state (a reload, the agent's exit) runs
// lua_close, which with neither finalizers nor pending to-be-closed
// variables (every call has returned) only frees memory.

#include "plugins/lua.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <vector>

#include "plugins/lua_patterns.h"

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace edgesync {

namespace {

constexpr int kMaxDepth = Json::kMaxDepth;

// The global table of edgesync's own (edgesync.null).
constexpr const char* kEdgesyncLib = "edgesync";
// The sentinel for JSON null: a light userdata only this file makes.
char null_sentinel;
// What the budget raises. Run tells it from the script's own errors by
// Limits::ended(), not by this text.
const char* const kBudgetMessage = "instruction budget exceeded";
const char* const kFinalizerRefusal =
    "finalizers (__gc) are not allowed in edgesync scripts: Lua runs them outside the instruction budget";
const char* const kWeakTableRefusal =
    "weak tables (__mode) are not allowed in edgesync scripts: collecting them is outside the instruction budget";

// The count hook fires at least this often, so that work charged by other
// means (below) ends a script within this many instructions.
constexpr int64_t kHookInterval = 1000;
// Heap growth charged as one unit of the budget.
constexpr size_t kAllocBytesPerUnit = 64;
// Bytes scanned (compared, decoded) charged as one unit, and the batch of
// elements charged at once by the table functions' loops: as the patterns.
constexpr size_t kScanBytesPerUnit = kLuaScanBytesPerStep;
constexpr int64_t kChargeBatch = kLuaChargeBatch;
// The time limit: this much per instruction of the budget, at least
// kMinTimeLimitMicros. A VM instruction takes nanoseconds (tens on a slow
// board); only operations on big values (see the top of this file) come
// near it.
constexpr int64_t kMicrosPerInstruction = 2;
constexpr int64_t kMinTimeLimitMicros = 1'000'000;
// When the instructions between two hooks took longer than this, the next
// hook comes after one instruction (until they are fast again).
constexpr int64_t kSlowIntervalMicros = 1000;

void CountHook(lua_State* L, lua_Debug*);

// The script's heap, instruction budget and time limit. One per state, the
// allocator's user data, so the count hook, the allocator and the library
// functions all reach it from the lua_State. Armed while the script runs
// (the top level, or one event): only then is anything charged.
class Limits final : public LuaWorkMeter {
 public:
  lua_State* L = nullptr;
  Env* env = nullptr;  // its monotonic clock times a run
  size_t heap_used = 0;
  size_t heap_limit = 0;
  int64_t budget = 0;

  enum class Ended { kNo, kBudget, kTime };

  int64_t time_limit_micros() const { return std::max(kMinTimeLimitMicros, budget * kMicrosPerInstruction); }

  // Starts a run with the whole budget.
  void Arm() {
    spent_ = 0;
    grown_ = 0;
    ended_ = Ended::kNo;
    armed_ = true;
    interval_ = kHookInterval;
    last_hook_micros_ = env->MonotonicMicros();
    deadline_micros_ = last_hook_micros_ + time_limit_micros();
    SetHook();
  }
  void Disarm() {
    armed_ = false;
    lua_sethook(L, nullptr, 0, 0);
  }
  // Whether the run ended on the budget or the time limit (then every
  // further instruction raised).
  Ended ended() const { return ended_; }

  // Spends `units`; false once the budget is spent. From then on every
  // instruction raises (the count hook at 1), so pcall cannot swallow it.
  bool Spend(int64_t units) {
    if (!armed_) return true;
    if (ended_ != Ended::kNo) return false;
    units += static_cast<int64_t>(grown_ / kAllocBytesPerUnit);  // the heap's growth since the last time
    grown_ %= kAllocBytesPerUnit;
    if (units < budget - spent_) {
      spent_ += units;
      return true;
    }
    spent_ = budget;
    End(Ended::kBudget);
    return false;
  }

  // LuaWorkMeter: raises when the budget is spent.
  void Charge(lua_State* state, int64_t units) override {
    if (!Spend(units)) luaL_error(state, "%s", kBudgetMessage);
  }

  // The count hook fired: the instructions it was set to count have run.
  // Also the time limit's check, for what the budget cannot see: a single
  // instruction whose cost grows with its operands. When instructions have
  // been that slow, the next check comes after one.
  bool OnHook() {
    if (!Spend(hook_count_)) return false;
    const int64_t now = env->MonotonicMicros();
    if (now >= deadline_micros_) {
      End(Ended::kTime);
      return false;
    }
    interval_ = now - last_hook_micros_ > kSlowIntervalMicros ? 1 : kHookInterval;
    last_hook_micros_ = now;
    SetHook();
    return true;
  }

  // The heap grew by `bytes`: charged with the next Spend (the count hook
  // comes within kHookInterval instructions; a C function between two
  // instructions allocates at most the memory limit).
  void OnGrowth(size_t bytes) { grown_ += bytes; }

  // An allocation was refused: Lua collects everything and asks again.
  void OnRefusal() {
    if (armed_) Spend(static_cast<int64_t>(heap_used / kAllocBytesPerUnit) + 1);
  }

 private:
  void SetHook() {
    hook_count_ = std::min(interval_, budget - spent_);
    lua_sethook(L, CountHook, LUA_MASKCOUNT, static_cast<int>(hook_count_));
  }
  void End(Ended why) {
    ended_ = why;
    hook_count_ = 1;
    lua_sethook(L, CountHook, LUA_MASKCOUNT, 1);
  }

  int64_t spent_ = 0;
  int64_t hook_count_ = 0;
  int64_t interval_ = kHookInterval;
  int64_t last_hook_micros_ = 0;
  int64_t deadline_micros_ = 0;
  size_t grown_ = 0;
  bool armed_ = false;
  Ended ended_ = Ended::kNo;
};

Limits* LimitsOf(lua_State* L) {
  void* ud = nullptr;
  lua_getallocf(L, &ud);
  return static_cast<Limits*>(ud);
}

void Charge(lua_State* L, int64_t units) { LimitsOf(L)->Charge(L, units); }

// Units charged for scanning `bytes` bytes.
int64_t ScanUnits(size_t bytes) { return 1 + static_cast<int64_t>(bytes / kScanBytesPerUnit); }

void CountHook(lua_State* L, lua_Debug*) {
  if (!LimitsOf(L)->OnHook()) luaL_error(L, "%s", kBudgetMessage);  // (Run tells the time limit by ended())
}

// Lua's allocator: the script's whole heap, bounded. Shrinking and freeing
// always succeed (Lua relies on it).
void* Allocate(void* ud, void* ptr, size_t old_size, size_t new_size) {
  Limits* limits = static_cast<Limits*>(ud);
  if (ptr == nullptr) old_size = 0;  // then old_size is the object's kind, not a size
  if (new_size == 0) {
    std::free(ptr);
    limits->heap_used -= old_size;
    return nullptr;
  }
  if (new_size > old_size) {
    const size_t growth = new_size - old_size;
    if (growth > limits->heap_limit - limits->heap_used) {
      limits->OnRefusal();
      return nullptr;  // Lua raises a memory error
    }
    limits->OnGrowth(growth);
  }
  void* p = std::realloc(ptr, new_size);
  if (p != nullptr) limits->heap_used = limits->heap_used - old_size + new_size;
  return p;
}

// Charges one unit per kChargeBatch elements of a C loop, so a loop that a
// table's __len makes endless ends with the budget, and a short one stays
// as cheap (and fails, if it does, where Lua's fails).
struct ElementTally {
  lua_State* L;
  int64_t count = 0;
  void Add() {
    if (++count == kChargeBatch) Flush();
  }
  void Flush() {
    if (count > 0) Charge(L, count);
    count = 0;
  }
};

// ---- read-only globals and libraries ----

int ReadOnly(lua_State* L) {
  const char* name = lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : "a field";
  return luaL_error(L, "globals and libraries are read only while events are processed (assigning %s): keep state in locals",
                    name);
}

// Makes the table at `index` read only: its contents move to a table of
// their own that it reads through, so every assignment to it, new key or
// not, reaches __newindex. `rawset` is gone and the metatable is protected.
void Freeze(lua_State* L, int index) {
  index = lua_absindex(L, index);
  lua_newtable(L);
  const int values = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, index) != 0) {
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, values);
  }
  lua_pushnil(L);
  while (lua_next(L, values) != 0) {
    lua_pop(L, 1);
    lua_pushvalue(L, -1);
    lua_pushnil(L);
    lua_rawset(L, index);
  }
  lua_newtable(L);  // the metatable
  lua_pushvalue(L, values);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, ReadOnly);
  lua_setfield(L, -2, "__newindex");
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");  // getmetatable/setmetatable cannot undo it
  lua_setmetatable(L, index);
  lua_pop(L, 1);  // values
}

// ---- setmetatable: no finalizers, no weak tables ----

bool IsKey(lua_State* L, int index, const char* key) {
  size_t n = 0;
  const char* s = lua_type(L, index) == LUA_TSTRING ? lua_tolstring(L, index, &n) : nullptr;
  return s != nullptr && n == std::strlen(key) && std::memcmp(s, key, n) == 0;
}

// Raises when the table at `index` has a field __gc or __mode (raw: what
// the collector reads).
void RefuseCollectorFields(lua_State* L, int index) {
  index = lua_absindex(L, index);
  lua_pushliteral(L, "__gc");
  if (lua_rawget(L, index) != LUA_TNIL) luaL_error(L, "%s", kFinalizerRefusal);
  lua_pushliteral(L, "__mode");
  if (lua_rawget(L, index) != LUA_TNIL) luaL_error(L, "%s", kWeakTableRefusal);
  lua_pop(L, 2);
}

// The __newindex of a sealed table's hidden metatable: (table, key, value).
// Upvalues: the __newindex the table's own metatable had (nil: none), and
// whether that metatable was protected (__metatable). Refuses the keys
// __gc and __mode, and otherwise does what that __newindex would have done.
int SealedNewIndex(lua_State* L) {
  if (IsKey(L, 2, "__gc")) return luaL_error(L, "%s", kFinalizerRefusal);
  if (IsKey(L, 2, "__mode")) return luaL_error(L, "%s", kWeakTableRefusal);
  lua_settop(L, 3);
  switch (lua_type(L, lua_upvalueindex(1))) {
    case LUA_TNIL: lua_rawset(L, 1); return 0;
    case LUA_TFUNCTION:
      lua_pushvalue(L, lua_upvalueindex(1));
      lua_insert(L, 1);
      lua_call(L, 3, 0);
      return 0;
    default:  // a table (or anything indexable) takes the assignment
      lua_pushvalue(L, lua_upvalueindex(1));
      lua_insert(L, 2);
      lua_settable(L, 2);
      return 0;
  }
}

// Whether the table at `index` can gain no __gc or __mode field: sealed,
// or frozen (every new field refused).
bool IsSealed(lua_State* L, int index, bool* by_seal = nullptr) {
  if (!lua_getmetatable(L, index)) return false;
  lua_pushliteral(L, "__newindex");
  lua_rawget(L, -2);
  const lua_CFunction f = lua_tocfunction(L, -1);
  lua_pop(L, 2);
  if (by_seal != nullptr) *by_seal = f == SealedNewIndex;
  return f == SealedNewIndex || f == ReadOnly;
}

// The registry key of the hidden metatable shared by every sealed table
// that had no metatable of its own (it holds nothing of theirs).
char sealed_plain_key;

// Gives the table at `index` a hidden metatable: a copy of the table at
// `mt` (0: none) whose __newindex is SealedNewIndex, and whose __metatable
// makes getmetatable still answer `mt` (or false for none), so the script
// never reaches the copy. A copy, not `mt` itself: the script could change
// `mt`. Charges the copy.
void SetSealedMetatable(lua_State* L, int index, int mt) {
  index = lua_absindex(L, index);
  luaL_checkstack(L, 6, "sealing a metatable");
  if (mt == 0) {
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &sealed_plain_key) != LUA_TTABLE) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushboolean(L, 0);
      lua_setfield(L, -2, "__metatable");
      lua_pushnil(L);
      lua_pushboolean(L, 0);
      lua_pushcclosure(L, SealedNewIndex, 2);
      lua_setfield(L, -2, "__newindex");
      lua_pushvalue(L, -1);
      lua_rawsetp(L, LUA_REGISTRYINDEX, &sealed_plain_key);
    }
    lua_setmetatable(L, index);
    return;
  }
  mt = lua_absindex(L, mt);
  lua_newtable(L);
  const int copy = lua_gettop(L);
  ElementTally tally{L};
  lua_pushnil(L);
  while (lua_next(L, mt) != 0) {
    tally.Add();
    lua_pushvalue(L, -2);
    lua_insert(L, -2);
    lua_rawset(L, copy);
  }
  tally.Flush();
  const bool protected_mt = lua_getfield(L, copy, "__metatable") != LUA_TNIL;
  lua_pop(L, 1);
  if (!protected_mt) {
    lua_pushvalue(L, mt);
    lua_setfield(L, copy, "__metatable");
  }
  lua_getfield(L, copy, "__newindex");
  lua_pushboolean(L, protected_mt);
  lua_pushcclosure(L, SealedNewIndex, 2);
  lua_setfield(L, copy, "__newindex");
  // `copy` has no __gc: `mt` went through setmetatable's refusal, or it is
  // sealed and cannot have gained one.
  lua_setmetatable(L, index);
}

// From now on the table at `index` cannot gain a __gc or __mode field.
void Seal(lua_State* L, int index) {
  index = lua_absindex(L, index);
  if (IsSealed(L, index)) return;
  if (lua_getmetatable(L, index)) {
    SetSealedMetatable(L, index, -1);
    lua_pop(L, 1);
  } else {
    SetSealedMetatable(L, index, 0);
  }
}

// setmetatable(table, metatable): Lua's, refusing a metatable with __gc or
// __mode and sealing the metatable it sets. A sealed table's own metatable
// can still be changed, unless the script protected it. Upvalue: Lua's.
int SetMetatable(lua_State* L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const int type = lua_type(L, 2);
  luaL_argexpected(L, type == LUA_TNIL || type == LUA_TTABLE, 2, "nil or table");
  if (type == LUA_TTABLE) {
    RefuseCollectorFields(L, 2);
    Seal(L, 2);
  }
  bool sealed = false;
  if (IsSealed(L, 1, &sealed) && sealed) {
    lua_getmetatable(L, 1);
    lua_pushliteral(L, "__newindex");
    lua_rawget(L, -2);
    lua_getupvalue(L, -1, 2);
    if (lua_toboolean(L, -1)) return luaL_error(L, "cannot change a protected metatable");
    lua_settop(L, 2);
    SetSealedMetatable(L, 1, type == LUA_TTABLE ? 2 : 0);
    lua_settop(L, 1);
    return 1;
  }
  return lua_tocfunction(L, lua_upvalueindex(1))(L);
}

// ---- library functions, metered ----

// Lua's function, the upvalue, called in the caller's frame: its error
// messages name the function as Lua's would.
int CallLibrary(lua_State* L) { return lua_tocfunction(L, lua_upvalueindex(1))(L); }

// An end position: negative counts from the end; clipped to [0, len].
size_t EndPosition(lua_Integer pos, size_t len) {
  if (pos > static_cast<lua_Integer>(len)) return len;
  if (pos >= 0) return static_cast<size_t>(pos);
  if (pos < -static_cast<lua_Integer>(len)) return 0;
  return len + static_cast<size_t>(pos) + 1;
}

// utf8's relative position: negative counts from the end (0 when before
// the start).
lua_Integer Utf8Position(lua_Integer pos, size_t len) {
  if (pos >= 0) return pos;
  if (0u - static_cast<size_t>(pos) > len) return 0;
  return static_cast<lua_Integer>(len) + pos + 1;
}

bool IsContinuation(char c) { return (static_cast<unsigned char>(c) & 0xC0) == 0x80; }

// string.byte(s, i, j): a unit per value.
int StringByte(lua_State* L) {
  size_t len = 0;
  luaL_checklstring(L, 1, &len);
  const lua_Integer i = luaL_optinteger(L, 2, 1);
  const size_t first = LuaStartPosition(i, len);
  const size_t last = EndPosition(luaL_optinteger(L, 3, i), len);
  if (first <= last) Charge(L, static_cast<int64_t>(last - first) + 1);
  return CallLibrary(L);
}

// string.rep(s, n, sep): a unit per copy; "" at once when that is all it
// can make (Lua would loop n times copying nothing).
int StringRep(lua_State* L) {
  size_t len = 0, sep_len = 0;
  luaL_checklstring(L, 1, &len);
  const lua_Integer n = luaL_checkinteger(L, 2);
  luaL_optlstring(L, 3, "", &sep_len);
  if (n > 0 && len == 0 && sep_len == 0) {
    lua_pushliteral(L, "");
    return 1;
  }
  // Otherwise each copy writes a byte at least: n is bounded by the result's
  // size, which the memory limit bounds (Lua refuses it before copying).
  const int results = CallLibrary(L);
  if (n > 0) Charge(L, n);
  return results;
}

// A unit per argument (string.char, table.pack, utf8.char).
int PerArgument(lua_State* L) {
  Charge(L, 1 + lua_gettop(L));
  return CallLibrary(L);
}

// string.format(fmt, ...): per argument and per 16 bytes of format.
int StringFormat(lua_State* L) {
  size_t len = 0;
  luaL_checklstring(L, 1, &len);
  Charge(L, ScanUnits(len) + 4 * static_cast<int64_t>(lua_gettop(L)));
  return CallLibrary(L);
}

// string.pack, packsize, unpack: a unit per byte of format (each option
// is at least one), and the scan of every string argument (option 'z'
// looks for the end of a zero-terminated string through all of it).
int PerFormatByte(lua_State* L) {
  size_t len = 0;
  luaL_checklstring(L, 1, &len);
  int64_t units = 1 + static_cast<int64_t>(len);
  for (int i = 2; i <= lua_gettop(L); ++i) {
    if (lua_type(L, i) == LUA_TSTRING) units += ScanUnits(lua_rawlen(L, i));
  }
  Charge(L, units);
  return CallLibrary(L);
}

// utf8.codepoint(s, i, j, lax): a unit per byte decoded (at most one value
// each).
int Utf8Codepoint(lua_State* L) {
  size_t len = 0;
  luaL_checklstring(L, 1, &len);
  const lua_Integer first = Utf8Position(luaL_optinteger(L, 2, 1), len);
  const lua_Integer last = Utf8Position(luaL_optinteger(L, 3, first), len);
  if (first >= 1 && last <= static_cast<lua_Integer>(len) && first <= last) Charge(L, last - first + 1);
  return CallLibrary(L);
}

// utf8.len(s, i, j, lax): per 16 bytes of the range.
int Utf8Len(lua_State* L) {
  size_t len = 0;
  luaL_checklstring(L, 1, &len);
  const lua_Integer first = Utf8Position(luaL_optinteger(L, 2, 1), len);
  const lua_Integer last = Utf8Position(luaL_optinteger(L, 3, -1), len);
  if (first >= 1 && first <= last && last <= static_cast<lua_Integer>(len)) {
    Charge(L, ScanUnits(static_cast<size_t>(last - first + 1)));
  }
  return CallLibrary(L);
}

// utf8.offset(s, n, i): per 16 bytes it moved over, charged once it knows
// (it raises only before it moves).
int Utf8Offset(lua_State* L) {
  size_t len = 0;
  luaL_checklstring(L, 1, &len);
  const lua_Integer n = luaL_checkinteger(L, 2);
  const lua_Integer from = Utf8Position(luaL_optinteger(L, 3, n >= 0 ? 1 : static_cast<lua_Integer>(len) + 1), len);
  const int results = CallLibrary(L);
  lua_Integer to = n >= 0 ? static_cast<lua_Integer>(len) + 1 : 1;  // not found: it went to the end
  if (lua_isinteger(L, -1)) to = lua_tointeger(L, -1);
  Charge(L, ScanUnits(static_cast<size_t>(to > from ? to - from : from - to)));
  return results;
}

// The iterator utf8.codes returns, metered: it skips the continuation bytes
// from the position it is given, which the script chooses. Upvalue: Lua's.
int Utf8CodesStep(lua_State* L) {
  size_t len = 0;
  const char* s = luaL_checklstring(L, 1, &len);
  size_t at = static_cast<size_t>(static_cast<lua_Unsigned>(lua_tointeger(L, 2)));
  const size_t from = at;
  while (at < len && IsContinuation(s[at])) ++at;
  Charge(L, ScanUnits(at - from));
  return CallLibrary(L);
}

// utf8.codes(s, lax): Lua's, with its iterator replaced by the metered one.
// Upvalues: Lua's codes, its strict and lax iterators, and their metered
// counterparts.
int Utf8Codes(lua_State* L) {
  const int results = CallLibrary(L);  // iterator, s, 0
  const int iterator = lua_gettop(L) - results + 1;
  lua_pushvalue(L, lua_rawequal(L, iterator, lua_upvalueindex(2)) ? lua_upvalueindex(3) : lua_upvalueindex(5));
  lua_replace(L, iterator);
  return results;
}

// table.sort's comparison when the script gives none: Lua's `<`, a unit per
// comparison and per 16 bytes of two strings compared.
int MeteredLessThan(lua_State* L) {
  int64_t units = 1;
  if (lua_type(L, 1) == LUA_TSTRING && lua_type(L, 2) == LUA_TSTRING) {
    units = ScanUnits(std::min(lua_rawlen(L, 1), lua_rawlen(L, 2)));
  }
  Charge(L, units);
  lua_pushboolean(L, lua_compare(L, 1, 2, LUA_OPLT));
  return 1;
}

// table.sort's comparison when the script gives a C function (a Lua one is
// counted by the hook): a unit per comparison. Upvalue: that function.
int MeteredComparison(lua_State* L) {
  Charge(L, 1);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, lua_gettop(L) - 1, 1);
  return 1;
}

// table.sort(list, comp): Lua's quicksort (the same order), each comparison
// charged.
int TableSort(lua_State* L) {
  if (lua_isnoneornil(L, 2)) {
    lua_settop(L, 1);
    lua_pushcfunction(L, MeteredLessThan);
  } else if (lua_iscfunction(L, 2)) {
    lua_settop(L, 2);
    lua_pushcclosure(L, MeteredComparison, 1);
  }
  return CallLibrary(L);
}

// ---- the table functions, metered: written from the manual (6.6) ----

// What a non-table must offer to be used as a list (Lua's table library
// accepts any value with these metamethods).
constexpr int kRead = 1, kWrite = 2, kLength = 4;

// Whether the metatable at the top has `field` (raw).
bool MetatableHas(lua_State* L, const char* field) {
  lua_pushstring(L, field);
  const bool has = lua_rawget(L, -2) != LUA_TNIL;
  lua_pop(L, 1);
  return has;
}

void CheckList(lua_State* L, int arg, int needs) {
  if (lua_type(L, arg) == LUA_TTABLE) return;
  if (lua_getmetatable(L, arg)) {
    const bool ok = (!(needs & kRead) || MetatableHas(L, "__index")) &&
                    (!(needs & kWrite) || MetatableHas(L, "__newindex")) &&
                    (!(needs & kLength) || MetatableHas(L, "__len"));
    lua_pop(L, 1);
    if (ok) return;
  }
  luaL_checktype(L, arg, LUA_TTABLE);  // raises
}

// #list, with __len, after checking it is a list.
lua_Integer ListLength(lua_State* L, int arg, int needs) {
  CheckList(L, arg, needs | kLength);
  return luaL_len(L, arg);
}

// table.insert(list, [pos,] value)
int TableInsert(lua_State* L) {
  const lua_Integer first_empty = static_cast<lua_Integer>(
      static_cast<lua_Unsigned>(ListLength(L, 1, kRead | kWrite)) + 1u);  // wraps as Lua's does
  lua_Integer pos = first_empty;
  switch (lua_gettop(L)) {
    case 2: break;
    case 3: {
      pos = luaL_checkinteger(L, 2);
      luaL_argcheck(L, static_cast<lua_Unsigned>(pos) - 1u < static_cast<lua_Unsigned>(first_empty), 2,
                    "position out of bounds");
      ElementTally tally{L};
      for (lua_Integer i = first_empty; i > pos; --i) {  // shift up
        tally.Add();
        lua_geti(L, 1, i - 1);
        lua_seti(L, 1, i);
      }
      tally.Flush();
      break;
    }
    default: return luaL_error(L, "wrong number of arguments to 'insert'");
  }
  lua_seti(L, 1, pos);
  return 0;
}

// table.remove(list [, pos])
int TableRemove(lua_State* L) {
  const lua_Integer size = ListLength(L, 1, kRead | kWrite);
  lua_Integer pos = luaL_optinteger(L, 2, size);
  if (pos != size) {
    luaL_argcheck(L, static_cast<lua_Unsigned>(pos) - 1u <= static_cast<lua_Unsigned>(size), 1,
                  "position out of bounds");  // (Lua names argument 1 here)
  }
  lua_geti(L, 1, pos);
  ElementTally tally{L};
  for (; pos < size; ++pos) {  // shift down
    tally.Add();
    lua_geti(L, 1, pos + 1);
    lua_seti(L, 1, pos);
  }
  tally.Flush();
  lua_pushnil(L);
  lua_seti(L, 1, pos);
  return 1;
}

// table.move(a1, f, e, t [, a2])
int TableMove(lua_State* L) {
  const lua_Integer f = luaL_checkinteger(L, 2);
  const lua_Integer e = luaL_checkinteger(L, 3);
  const lua_Integer t = luaL_checkinteger(L, 4);
  const int destination = lua_isnoneornil(L, 5) ? 1 : 5;
  CheckList(L, 1, kRead);
  CheckList(L, destination, kWrite);
  if (e >= f) {
    luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
    const lua_Integer n = e - f + 1;
    luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
    ElementTally tally{L};
    // Forwards unless that would overwrite elements before they move.
    if (t > e || t <= f || (destination != 1 && !lua_compare(L, 1, destination, LUA_OPEQ))) {
      for (lua_Integer i = 0; i < n; ++i) {
        tally.Add();
        lua_geti(L, 1, f + i);
        lua_seti(L, destination, t + i);
      }
    } else {
      for (lua_Integer i = n - 1; i >= 0; --i) {
        tally.Add();
        lua_geti(L, 1, f + i);
        lua_seti(L, destination, t + i);
      }
    }
    tally.Flush();
  }
  lua_pushvalue(L, destination);
  return 1;
}

void AddConcatField(lua_State* L, luaL_Buffer* b, lua_Integer i) {
  lua_geti(L, 1, i);
  if (!lua_isstring(L, -1)) {
    luaL_error(L, "invalid value (%s) at index %I in table for 'concat'", luaL_typename(L, -1),
               static_cast<LUAI_UACINT>(i));
  }
  luaL_addvalue(b);
}

// table.concat(list [, sep [, i [, j]]])
int TableConcat(lua_State* L) {
  lua_Integer last = ListLength(L, 1, kRead);
  size_t sep_len = 0;
  const char* sep = luaL_optlstring(L, 2, "", &sep_len);
  lua_Integer i = luaL_optinteger(L, 3, 1);
  last = luaL_optinteger(L, 4, last);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  ElementTally tally{L};
  for (; i < last; ++i) {
    tally.Add();
    AddConcatField(L, &b, i);
    luaL_addlstring(&b, sep, sep_len);
  }
  if (i == last) AddConcatField(L, &b, i);
  tally.Flush();
  luaL_pushresult(&b);
  return 1;
}

// table.unpack(list [, i [, j]])
int TableUnpack(lua_State* L) {
  lua_Integer i = luaL_optinteger(L, 2, 1);
  const lua_Integer e = luaL_opt(L, luaL_checkinteger, 3, luaL_len(L, 1));
  if (i > e) return 0;
  lua_Unsigned n = static_cast<lua_Unsigned>(e) - static_cast<lua_Unsigned>(i);  // values - 1
  if (n >= static_cast<unsigned int>(INT_MAX) || !lua_checkstack(L, static_cast<int>(++n))) {
    return luaL_error(L, "too many results to unpack");
  }
  Charge(L, static_cast<int64_t>(n));
  for (; i < e; ++i) lua_geti(L, 1, i);
  lua_geti(L, 1, e);
  return static_cast<int>(n);
}

// Replaces `name` in the table at `lib` by `f`, a closure over the old value.
// A library function the sandbox meters: `f` wraps Lua's own (its
// upvalue, called by CallLibrary), or replaces it.
struct Metered {
  const char* lib;
  const char* name;
  lua_CFunction f;
  bool wraps;
};
constexpr Metered kMetered[] = {
    {LUA_GNAME, "setmetatable", SetMetatable, true},
    {LUA_STRLIBNAME, "byte", StringByte, true},
    {LUA_STRLIBNAME, "rep", StringRep, true},
    {LUA_STRLIBNAME, "char", PerArgument, true},
    {LUA_STRLIBNAME, "format", StringFormat, true},
    {LUA_STRLIBNAME, "pack", PerFormatByte, true},
    {LUA_STRLIBNAME, "packsize", PerFormatByte, true},
    {LUA_STRLIBNAME, "unpack", PerFormatByte, true},
    {LUA_TABLIBNAME, "insert", TableInsert, false},
    {LUA_TABLIBNAME, "remove", TableRemove, false},
    {LUA_TABLIBNAME, "move", TableMove, false},
    {LUA_TABLIBNAME, "concat", TableConcat, false},
    {LUA_TABLIBNAME, "unpack", TableUnpack, false},
    {LUA_TABLIBNAME, "pack", PerArgument, true},
    {LUA_TABLIBNAME, "sort", TableSort, true},
    {LUA_UTF8LIBNAME, "char", PerArgument, true},
    {LUA_UTF8LIBNAME, "codepoint", Utf8Codepoint, true},
    {LUA_UTF8LIBNAME, "len", Utf8Len, true},
    {LUA_UTF8LIBNAME, "offset", Utf8Offset, true},
};

// Installs the metered functions (see the top of this file) in the opened
// libraries, whose tables are the globals of their names.
void MeterLibraries(lua_State* L, Limits* limits) {
  const int top = lua_gettop(L);
  for (const Metered& m : kMetered) {
    lua_getglobal(L, m.lib);
    const int lib = lua_gettop(L);
    if (m.wraps) lua_getfield(L, lib, m.name);
    lua_pushcclosure(L, m.f, m.wraps ? 1 : 0);
    lua_setfield(L, lib, m.name);
    lua_settop(L, top);
  }
  lua_getglobal(L, LUA_STRLIBNAME);
  SetLuaPatternFunctions(L, lua_gettop(L), limits);
  lua_settop(L, top);

  lua_getglobal(L, LUA_UTF8LIBNAME);
  const int utf8 = lua_gettop(L);
  // codes: Lua's two iterators, got from Lua's codes, and theirs metered.
  lua_getfield(L, utf8, "codes");
  const int codes = lua_gettop(L);
  for (const bool lax : {false, true}) {
    lua_pushvalue(L, codes);
    lua_pushliteral(L, "");
    lua_pushboolean(L, lax);
    lua_call(L, 2, 1);  // Lua's iterator
    lua_pushvalue(L, -1);
    lua_pushcclosure(L, Utf8CodesStep, 1);
  }
  lua_pushcclosure(L, Utf8Codes, 5);
  lua_setfield(L, utf8, "codes");
  lua_settop(L, top);
}

// What one node of the returned payload takes in the agent's document
// (Json), counted against the memory limit with the text it holds.
constexpr size_t kNodeBytes = 64;

class LuaPlugin : public Plugin {
 public:
  // Closing runs no script code and cannot hang: no finalizer can exist
  // (see the top of this file) and no call is under way.
  ~LuaPlugin() override {
    if (L_ != nullptr) lua_close(L_);
  }

  // Loads and runs the script's top level, then locks its globals.
  Status Load(const std::string& path, const std::string& code, const std::string& function, int64_t budget,
              int64_t memory, Env* env) {
    limits_.env = env;
    limits_.heap_limit = static_cast<size_t>(memory);
    limits_.budget = budget;
    function_ = function;
    script_ = path.substr(path.rfind('/') + 1);
    L_ = lua_newstate(Allocate, &limits_);
    if (L_ == nullptr) return Status::InvalidArgument("cannot create a Lua state");
    limits_.L = L_;
    OpenSandbox();
    if (luaL_loadbufferx(L_, code.data(), code.size(), ("@" + script_).c_str(), "t") != LUA_OK) {
      std::string why = lua_tostring(L_, -1);
      return Status::InvalidArgument(why);
    }
    // The top level, then the locking of what it left: both under the
    // bounds and protected (the script may have given _G or the string
    // metatable metamethods of its own, and the heap may be nearly full).
    limits_.Arm();
    int rc = lua_pcall(L_, 0, 0, 0);
    std::string failed = "running the top level: ";
    if (rc == LUA_OK) {
      failed.clear();
      lua_pushcfunction(L_, &LuaPlugin::LockUp);
      lua_pushlightuserdata(L_, this);
      rc = lua_pcall(L_, 1, 0, 0);
    }
    limits_.Disarm();
    if (rc != LUA_OK) return Status::InvalidArgument(failed + ErrorText(rc));
    lua_settop(L_, 0);
    lua_gc(L_, LUA_GCCOLLECT);
    return Status::OK();
  }

  Action Process(Event& e) const override {
    Action action = Run(e);
    if (action == Action::kDeadLetter && out_of_memory_) {
      // Garbage of earlier events may be what filled the heap: collect it
      // all and run once more (the script is stateless: same result).
      lua_gc(L_, LUA_GCCOLLECT);
      e.error.clear();
      action = Run(e);
    }
    return action;
  }

 private:
  // Why the protected call that returned `rc` failed, its error at the top.
  // Only a string is read: converting anything else could allocate, and
  // that is not protected here.
  std::string ErrorText(int rc) const {
    if (limits_.ended() == Limits::Ended::kBudget) {
      return "instruction budget of " + std::to_string(limits_.budget) + " exceeded";
    }
    if (limits_.ended() == Limits::Ended::kTime) {
      return "time limit of " + std::to_string(limits_.time_limit_micros() / 1000) +
             " ms exceeded (operations on big values: see docs/plugins.md)";
    }
    if (rc == LUA_ERRMEM) return "memory limit of " + std::to_string(limits_.heap_limit) + " bytes reached";
    if (lua_type(L_, -1) != LUA_TSTRING) return "an error that is not a string";
    // It goes into the dead letter's edgesync.error and the log: cut.
    constexpr size_t kMostErrorBytes = 1024;
    size_t n = 0;
    const char* why = lua_tolstring(L_, -1, &n);
    return std::string(why, std::min(n, kMostErrorBytes)) + (n > kMostErrorBytes ? "..." : "");
  }

  // lua_pcall'd after the top level: (plugin). Checks the function is
  // there and makes the globals and the libraries read only from now on:
  // no state from one event to the next (tables the script's own globals
  // hold are not frozen: lua.h says so). Raw access only, and the libraries
  // taken from the registry, not from globals the script may have changed.
  static int LockUp(lua_State* L) {
    const LuaPlugin* self = static_cast<const LuaPlugin*>(lua_touserdata(L, 1));
    lua_rawgeti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
    const int globals = lua_gettop(L);
    lua_pushstring(L, self->function_.c_str());
    if (lua_rawget(L, globals) != LUA_TFUNCTION) {
      return luaL_error(L, "the script defines no function %s(event)", self->function_.c_str());
    }
    lua_pop(L, 1);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    const int loaded = lua_gettop(L);
    for (const char* lib : {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME, kEdgesyncLib}) {
      lua_pushstring(L, lib);
      if (lua_rawget(L, loaded) == LUA_TTABLE) Freeze(L, -1);
      lua_pop(L, 1);
    }
    Freeze(L, globals);
    // Strings' metatable is shared by every string: not the script's to change.
    lua_pushliteral(L, "");
    lua_getmetatable(L, -1);
    lua_pushliteral(L, "__metatable");
    lua_pushboolean(L, 0);
    lua_rawset(L, -3);
    return 0;
  }

  // Everything that touches Lua runs inside lua_pcall (Protected), so an
  // error, the budget or the memory limit unwinds to here and never aborts
  // the agent. Protected keeps no C++ object with a destructor on its
  // frames (Lua unwinds with longjmp): what it produces goes to members
  // (staged_*), applied to the event once it has returned.
  Action Run(Event& e) const {
    lua_State* L = L_;
    lua_settop(L, 0);
    out_of_memory_ = false;
    staged_payload_ = false;
    staged_properties_ = false;
    staged_route_ = e.route;
    staged_priority_ = e.route.priority ? PriorityName(*e.route.priority) : "";
    if (e.json != nullptr) staged_root_ = Json::kNone;
    output_left_ = limits_.heap_limit;
    member_names_.clear();
    lua_pushcfunction(L, &LuaPlugin::Protected);
    lua_pushlightuserdata(L, const_cast<LuaPlugin*>(this));
    lua_pushlightuserdata(L, &e);
    limits_.Arm();
    const int rc = lua_pcall(L, 2, 1, 0);
    limits_.Disarm();
    if (rc != LUA_OK) {
      out_of_memory_ = rc == LUA_ERRMEM && limits_.ended() == Limits::Ended::kNo;
      const std::string why = ErrorText(rc);
      lua_settop(L, 0);
      return Fail(e, why);
    }
    const bool drop = lua_isnil(L, -1);
    lua_settop(L, 0);
    if (drop) return Action::kDrop;
    // Apply what the script returned, all at once.
    if (staged_priority_.empty()) {
      staged_route_.priority.reset();
    } else {
      staged_route_.priority = ParsePriority(staged_priority_);
    }
    e.route = staged_route_;
    if (staged_properties_ && e.properties != nullptr) e.properties->swap(staged_props_);
    if (staged_payload_) {
      if (e.json != nullptr) {
        e.json->SetRoot(staged_root_);
      } else if (e.raw != nullptr) {
        e.raw->swap(staged_raw_);
      }
    }
    return Action::kKeep;
  }

  // lua_pcall'd: (plugin, event) -> the function's result (nil or a table,
  // already staged).
  static int Protected(lua_State* L) {
    const LuaPlugin* self = static_cast<const LuaPlugin*>(lua_touserdata(L, 1));
    Event* e = static_cast<Event*>(lua_touserdata(L, 2));
    lua_settop(L, 0);
    lua_getglobal(L, self->function_.c_str());
    self->PushEvent(L, *e);
    lua_call(L, 1, 1);
    if (lua_isnil(L, -1)) return 1;
    if (!lua_istable(L, -1)) {
      return luaL_error(L, "%s returned a %s: return the event (a table) or nil", self->function_.c_str(),
                        luaL_typename(L, -1));
    }
    self->Stage(L, *e);
    return 1;
  }

  void OpenSandbox() {
    static const luaL_Reg kLibs[] = {{LUA_GNAME, luaopen_base}, {LUA_STRLIBNAME, luaopen_string},
                                     {LUA_TABLIBNAME, luaopen_table}, {LUA_MATHLIBNAME, luaopen_math},
                                     {LUA_UTF8LIBNAME, luaopen_utf8}};
    for (const luaL_Reg& lib : kLibs) {
      luaL_requiref(L_, lib.name, lib.func, 1);
      lua_pop(L_, 1);
    }
    // rawset would write around the read-only globals (and the sealed
    // metatables); the rest reach outside the sandbox (files, modules, code
    // from strings, stdout) or start a collection, which the budget does
    // not see.
    for (const char* name : {"dofile", "loadfile", "load", "require", "collectgarbage", "print", "warn", "rawset"}) {
      lua_pushnil(L_);
      lua_setglobal(L_, name);
    }
    RemoveField(LUA_MATHLIBNAME, "random");
    RemoveField(LUA_MATHLIBNAME, "randomseed");
    RemoveField(LUA_STRLIBNAME, "dump");
    MeterLibraries(L_, &limits_);
    // edgesync.null: JSON's null. Registered as a library too, where
    // LockUp finds it whatever the script does to its global.
    lua_newtable(L_);
    lua_pushlightuserdata(L_, &null_sentinel);
    lua_setfield(L_, -2, "null");
    luaL_getsubtable(L_, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_pushvalue(L_, -2);
    lua_setfield(L_, -2, kEdgesyncLib);
    lua_pop(L_, 1);
    lua_setglobal(L_, kEdgesyncLib);
  }

  void RemoveField(const char* table, const char* field) {
    lua_getglobal(L_, table);
    lua_pushnil(L_);
    lua_setfield(L_, -2, field);
    lua_pop(L_, 1);
  }

  static Action Fail(Event& e, const std::string& why) {
    e.error = "lua: " + why;
    return Action::kDeadLetter;
  }

  // ---- JSON to Lua (inside Protected) ----

  void PushJson(lua_State* L, const Json& j, Json::Ref r, int depth) const {
    if (depth > kMaxDepth) luaL_error(L, "the payload is nested too deep");
    luaL_checkstack(L, 4, "the payload is nested too deep");
    switch (j.type(r)) {
      case Json::Type::kNull: lua_pushlightuserdata(L, &null_sentinel); return;
      case Json::Type::kBool: lua_pushboolean(L, j.boolean(r)); return;
      case Json::Type::kNumber: {
        std::string_view t = j.raw(r);
        int64_t i = 0;
        auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), i);
        if (ec == std::errc() && p == t.data() + t.size()) {
          lua_pushinteger(L, i);
        } else {
          lua_pushnumber(L, j.number(r).value_or(HUGE_VAL));
        }
        return;
      }
      case Json::Type::kString: {
        std::string_view v = j.str(r, &scratch_);
        lua_pushlstring(L, v.data(), v.size());
        return;
      }
      case Json::Type::kArray: {
        lua_createtable(L, static_cast<int>(j.size(r)), 0);
        lua_Integer i = 1;
        for (Json::Ref c = j.first(r); c != Json::kNone; c = j.next(c)) {
          PushJson(L, j, c, depth + 1);
          lua_rawseti(L, -2, i++);
        }
        return;
      }
      case Json::Type::kObject: {
        lua_createtable(L, 0, static_cast<int>(j.size(r)));
        for (Json::Ref c = j.first(r); c != Json::kNone; c = j.next(c)) {
          std::string_view k = j.key(c, &scratch_);
          lua_pushlstring(L, k.data(), k.size());
          PushJson(L, j, c, depth + 1);
          lua_rawset(L, -3);
        }
        return;
      }
    }
  }

  static void SetString(lua_State* L, const char* field, std::string_view v) {
    lua_pushlstring(L, v.data(), v.size());
    lua_setfield(L, -2, field);
  }

  void PushEvent(lua_State* L, const Event& e) const {
    lua_createtable(L, 0, 5);
    SetString(L, "topic", e.topic);
    lua_pushinteger(L, e.received_at_us);
    lua_setfield(L, -2, "received_at_us");
    if (e.json != nullptr) {
      PushJson(L, *e.json, e.json->root(), 0);
    } else {
      lua_pushlstring(L, e.raw ? e.raw->data() : "", e.raw ? e.raw->size() : 0);
    }
    lua_setfield(L, -2, "payload");
    lua_createtable(L, e.properties ? static_cast<int>(e.properties->size()) : 0, 0);
    if (e.properties != nullptr) {
      lua_Integer i = 1;
      for (const auto& [name, value] : *e.properties) {
        lua_createtable(L, 2, 0);
        lua_pushlstring(L, name.data(), name.size());
        lua_rawseti(L, -2, 1);
        lua_pushlstring(L, value.data(), value.size());
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -2, i++);
      }
    }
    lua_setfield(L, -2, "properties");
    lua_createtable(L, 0, 4);
    SetString(L, "stream", e.route.stream);
    SetString(L, "kafka_topic", e.route.kafka_topic);
    SetString(L, "priority", e.route.priority ? PriorityName(*e.route.priority) : "");
    SetString(L, "key", e.route.key);
    lua_setfield(L, -2, "route");
  }

  // ---- Lua to JSON (inside Protected) ----

  // What the returned event makes outside the script (document nodes,
  // strings copied) is bounded by the memory limit too, and charged to the
  // budget: a table can hold one big string many times, or one subtable
  // twice at each of 64 levels.
  void TakeOutput(lua_State* L, size_t bytes) const {
    if (bytes > output_left_) {
      luaL_error(L, "the returned event takes more than the memory limit (%I bytes) outside the script",
                 static_cast<LUAI_UACINT>(limits_.heap_limit));
    }
    output_left_ -= bytes;
    limits_.Charge(L, 1 + static_cast<int64_t>(bytes / kAllocBytesPerUnit));
  }

  // The value at the top of the stack as a new node of `j`.
  Json::Ref ToJson(lua_State* L, Json& j, int depth) const {
    if (depth > kMaxDepth) {
      luaL_error(L, "the returned payload is nested deeper than %d (a table that holds itself?)", kMaxDepth);
    }
    luaL_checkstack(L, 6, "the returned payload is nested too deep");
    TakeOutput(L, kNodeBytes);
    switch (lua_type(L, -1)) {
      case LUA_TBOOLEAN: return j.NewBool(lua_toboolean(L, -1));
      case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, -1) == &null_sentinel) return j.NewNull();
        break;
      case LUA_TNUMBER:
        if (lua_isinteger(L, -1)) {
          char buf[24];
          auto [p, ec] = std::to_chars(buf, buf + sizeof buf, static_cast<int64_t>(lua_tointeger(L, -1)));
          return j.NewNumberText(std::string_view(buf, static_cast<size_t>(p - buf)));
        }
        return j.NewNumber(lua_tonumber(L, -1));
      case LUA_TSTRING: {
        size_t n = 0;
        const char* v = lua_tolstring(L, -1, &n);
        TakeOutput(L, n);
        if (!simdjson::validate_utf8(v, n)) luaL_error(L, "a returned string is not valid UTF-8 (JSON text must be)");
        return j.NewString(std::string_view(v, n));
      }
      case LUA_TTABLE: return TableToJson(L, j, depth);
      default: break;
    }
    return luaL_error(L, "a %s cannot be written as JSON", luaL_typename(L, -1));
  }

  // The table at the top: an array when its keys are exactly 1..n (n > 0),
  // else an object with its members in the byte order of their names (the
  // same table, the same text; an integer key before the string key that
  // reads the same).
  Json::Ref TableToJson(lua_State* L, Json& j, int depth) const {
    const int t = lua_gettop(L);
    const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, t));
    lua_Integer count = 0;
    bool array = n > 0;
    // The keys' names, as strings in `keys` (which keeps them alive: Lua
    // does not move strings) and as views in member_names_, after those of
    // the objects being written around this one.
    lua_createtable(L, 0, 0);
    const int keys = lua_gettop(L);
    const size_t base = member_names_.size();
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
      lua_pop(L, 1);
      ++count;
      MemberName member{{}, count, false};
      if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1)) {
        member.slot = lua_tointeger(L, -1);
        member.integer_key = true;
        if (member.slot < 1 || member.slot > n) array = false;
        lua_pushfstring(L, "%I", static_cast<LUAI_UACINT>(member.slot));
      } else if (lua_type(L, -1) == LUA_TSTRING) {
        array = false;
        lua_pushvalue(L, -1);
      } else {
        return luaL_error(L, "a table key of type %s cannot be a JSON member name", luaL_typename(L, -1));
      }
      size_t len = 0;
      const char* name = lua_tolstring(L, -1, &len);
      member.name = std::string_view(name, len);
      lua_rawseti(L, keys, count);
      member_names_.push_back(member);
    }
    if (array && count == n) {
      member_names_.resize(base);
      lua_pop(L, 1);
      const Json::Ref out = j.NewArray();
      for (lua_Integer i = 1; i <= n; ++i) {
        lua_rawgeti(L, t, i);
        const Json::Ref v = ToJson(L, j, depth + 1);
        lua_pop(L, 1);
        j.Append(out, v);
      }
      return out;
    }
    std::sort(member_names_.begin() + static_cast<ptrdiff_t>(base), member_names_.end(),
              [](const MemberName& a, const MemberName& b) {
                const int c = a.name.compare(b.name);
                return c != 0 ? c < 0 : a.integer_key && !b.integer_key;
              });
    const Json::Ref out = j.NewObject();
    for (size_t i = base; i < base + static_cast<size_t>(count); ++i) {
      const MemberName member = member_names_[i];  // a copy: nested tables add to the vector
      if (!simdjson::validate_utf8(member.name.data(), member.name.size())) {
        luaL_error(L, "a returned member name is not valid UTF-8");
      }
      TakeOutput(L, member.name.size());
      if (member.integer_key) {
        lua_rawgeti(L, t, member.slot);
      } else {
        lua_rawgeti(L, keys, member.slot);
        lua_rawget(L, t);
      }
      const Json::Ref v = ToJson(L, j, depth + 1);
      j.Append(out, v, member.name);
      lua_pop(L, 1);
    }
    member_names_.resize(base);
    lua_pop(L, 1);
    return out;
  }

  // A string field of the table at the top into *out; absent: unchanged.
  void StringField(lua_State* L, const char* name, std::string* out) const {
    const int type = lua_getfield(L, -1, name);
    if (type == LUA_TSTRING) {
      size_t n = 0;
      const char* v = lua_tolstring(L, -1, &n);
      TakeOutput(L, n);
      out->assign(v, n);
    } else if (type != LUA_TNIL) {
      luaL_error(L, "route.%s must be a string", name);
    }
    lua_pop(L, 1);
  }

  // Reads the returned event (at the top) into staged_*.
  void Stage(lua_State* L, const Event& e) const {
    if (lua_getfield(L, -1, "route") == LUA_TTABLE) {
      StringField(L, "stream", &staged_route_.stream);
      StringField(L, "kafka_topic", &staged_route_.kafka_topic);
      StringField(L, "key", &staged_route_.key);
      StringField(L, "priority", &staged_priority_);
      if (!staged_priority_.empty() && !ParsePriority(staged_priority_)) {
        luaL_error(L, "route.priority must be \"high\", \"normal\", \"low\" or \"\" (the stream's)");
      }
    } else if (!lua_isnil(L, -1)) {
      luaL_error(L, "route must be a table");
    }
    lua_pop(L, 1);
    const int ptype = lua_getfield(L, -1, "properties");
    if (ptype == LUA_TTABLE) {
      staged_props_.clear();
      const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, -1));
      for (lua_Integer i = 1; i <= n; ++i) {
        lua_rawgeti(L, -1, i);
        if (!lua_istable(L, -1) || lua_rawgeti(L, -1, 1) != LUA_TSTRING || lua_rawgeti(L, -2, 2) != LUA_TSTRING) {
          luaL_error(L, "properties must be a list of {name, value} strings");
        }
        TakeOutput(L, kNodeBytes + lua_rawlen(L, -2) + lua_rawlen(L, -1));
        staged_props_.emplace_back(lua_tostring(L, -2), lua_tostring(L, -1));
        lua_pop(L, 3);
      }
      staged_properties_ = true;
    } else if (ptype != LUA_TNIL) {
      luaL_error(L, "properties must be a list of {name, value}");
    }
    lua_pop(L, 1);
    const int type = lua_getfield(L, -1, "payload");
    if (type != LUA_TNIL) {
      if (e.json != nullptr) {
        staged_root_ = ToJson(L, *e.json, 0);
      } else if (type == LUA_TSTRING) {
        size_t n = 0;
        const char* v = lua_tolstring(L, -1, &n);
        TakeOutput(L, n);
        staged_raw_.assign(v, n);
      } else {
        luaL_error(L, "a raw stream's payload must come back as a string");
      }
      staged_payload_ = true;
    }
    lua_pop(L, 1);
  }

  struct MemberName {
    std::string_view name;
    lua_Integer slot;  // the integer key, or where the name is in `keys`
    bool integer_key;
  };

  // Process is const but called from one thread at a time (the Plugin
  // contract): the state is the plugin's own.
  lua_State* L_ = nullptr;
  mutable Limits limits_;
  std::string function_, script_;
  mutable std::string scratch_;
  // What Protected read from the script's result (see Run).
  mutable Route staged_route_;
  mutable std::string staged_priority_, staged_raw_;
  mutable std::vector<std::pair<std::string, std::string>> staged_props_;
  mutable Json::Ref staged_root_ = Json::kNone;
  mutable bool staged_payload_ = false, staged_properties_ = false, out_of_memory_ = false;
  // What the returned event may still take outside the script (TakeOutput).
  mutable size_t output_left_ = 0;
  // The member names of the objects being written out, innermost last.
  mutable std::vector<MemberName> member_names_;
};

struct LuaSettings {
  std::string script;
  std::string function = "process";
  int64_t instruction_budget = 1'000'000;
  int64_t memory_limit = 8 << 20;

  static const OptionTable<LuaSettings>& Options() {
    using L = LuaSettings;
    static const auto* table = &(*new OptionTable<LuaSettings>())  // never freed: a process-long constant
        .String("script", &L::script, "The .lua file, relative to the file the table is in.")
        .ShownAs("(required)")
        .String("function", &L::function, "The global function called with each event.")
        .Int("instruction_budget", &L::instruction_budget,
             "Lua VM instructions one event may take; past it the event is dead-lettered. A time limit backs it (2 us per instruction, at least 1 s).",
             1000, 1'000'000'000)
        .Size("memory_limit", &L::memory_limit, "The script's whole heap, its state included.", 256 << 10, 1ll << 30);
    return *table;
  }
};

}  // namespace

const PluginType& LuaPluginType() {
  static const PluginType kType{
      "lua", "A fleet's own step as a Lua 5.4 script, sandboxed and bounded in instructions, memory and time.",
      [] { return LuaSettings::Options().Reference(); },
      [](Settings& s, const PluginContext& c) { return MakeLuaPlugin(s, c.base_dir, c.env); }};
  return kType;
}

Result<std::shared_ptr<const Plugin>> MakeLuaPlugin(Settings& s, const std::string& base_dir, Env* env) {
  LuaSettings set;
  s.Read(LuaSettings::Options(), &set);
  const std::optional<std::string> script =
      s.Get("script") != nullptr && s.Get("script")->is_string() ? std::optional<std::string>(set.script) : std::nullopt;
  const std::string& function = set.function;
  const int64_t budget = set.instruction_budget;
  const int64_t memory = set.memory_limit;
  if (s.Get("script") == nullptr) s.Problem("script", "is required: the .lua file");
  if (!s.ok()) return s.status();
  const std::string path = (*script)[0] == '/' || base_dir.empty() ? *script : base_dir + "/" + *script;
  // A regular file of sane size only: a FIFO or /dev/zero named here must
  // not hang `check` or a reload.
  Result<std::string> code = env->ReadFile(path, kMaxConfigFileBytes);
  if (!code.ok()) {
    s.Problem(*s.Get("script"), "script", "cannot read " + path + ": " + code.status().message());
    return s.status();
  }
  auto plugin = std::make_shared<LuaPlugin>();
  Status st = plugin->Load(path, *code, function, budget, memory, env);
  if (!st.ok()) {
    s.Problem(*s.Get("script"), "script", path + ": " + st.message());
    return s.status();
  }
  return std::shared_ptr<const Plugin>(std::move(plugin));
}

}  // namespace edgesync

#include "plugins/lua.h"

#include <simdjson.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <vector>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
}

namespace edgesync {

namespace {

constexpr int kMaxDepth = Json::kMaxDepth;

// The sentinel for JSON null: a light userdata only this file makes.
char null_sentinel;
// What the count hook raises; Run tells it from the script's own errors.
const char* const kBudgetMessage = "instruction budget exceeded";

// The script's whole heap, bounded.
struct Heap {
  size_t used = 0;
  size_t limit = 0;
};

void* Allocate(void* ud, void* ptr, size_t old_size, size_t new_size) {
  Heap* h = static_cast<Heap*>(ud);
  if (ptr == nullptr) old_size = 0;  // then old_size is the object's kind, not a size
  if (new_size == 0) {
    std::free(ptr);
    h->used -= old_size;
    return nullptr;
  }
  if (new_size > old_size && h->used - old_size + new_size > h->limit) return nullptr;  // Lua raises a memory error
  void* p = std::realloc(ptr, new_size);
  if (p != nullptr) h->used = h->used - old_size + new_size;
  return p;
}

// Once the budget is spent, every further instruction raises again, so a
// script cannot swallow the error with pcall and keep going.
void BudgetHook(lua_State* L, lua_Debug*) {
  lua_sethook(L, BudgetHook, LUA_MASKCOUNT, 1);
  luaL_error(L, kBudgetMessage);
}

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

class LuaPlugin : public Plugin {
 public:
  ~LuaPlugin() override {
    if (L_ != nullptr) lua_close(L_);
  }

  // Loads and runs the script's top level, then locks its globals.
  Status Load(const std::string& path, const std::string& code, const std::string& function, int64_t budget,
              int64_t memory) {
    heap_.limit = static_cast<size_t>(memory);
    budget_ = static_cast<int>(std::min<int64_t>(budget, INT32_MAX));
    function_ = function;
    script_ = path.substr(path.rfind('/') + 1);
    L_ = lua_newstate(Allocate, &heap_);
    if (L_ == nullptr) return Status::InvalidArgument("cannot create a Lua state");
    OpenSandbox();
    if (luaL_loadbufferx(L_, code.data(), code.size(), ("@" + script_).c_str(), "t") != LUA_OK) {
      std::string why = lua_tostring(L_, -1);
      return Status::InvalidArgument(why);
    }
    lua_sethook(L_, BudgetHook, LUA_MASKCOUNT, budget_);
    const int rc = lua_pcall(L_, 0, 0, 0);
    lua_sethook(L_, nullptr, 0, 0);
    if (rc != LUA_OK) return Status::InvalidArgument(std::string("running the top level: ") + lua_tostring(L_, -1));
    if (lua_getglobal(L_, function_.c_str()) != LUA_TFUNCTION) {
      return Status::InvalidArgument("the script defines no function " + function_ + "(event)");
    }
    lua_pop(L_, 1);
    // Globals and the libraries read only from now on: no state from one
    // event to the next. (Tables the script's own globals hold are not
    // frozen: lua.h says so.)
    for (const char* lib : {LUA_STRLIBNAME, LUA_TABLIBNAME, LUA_MATHLIBNAME, LUA_UTF8LIBNAME, "edgesync"}) {
      if (lua_getglobal(L_, lib) == LUA_TTABLE) Freeze(L_, -1);
      lua_pop(L_, 1);
    }
    lua_pushglobaltable(L_);
    Freeze(L_, -1);
    lua_pop(L_, 1);
    // Strings' metatable is shared by every string: not the script's to change.
    lua_pushliteral(L_, "");
    lua_getmetatable(L_, -1);
    lua_pushboolean(L_, 0);
    lua_setfield(L_, -2, "__metatable");
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
    lua_pushcfunction(L, &LuaPlugin::Protected);
    lua_pushlightuserdata(L, const_cast<LuaPlugin*>(this));
    lua_pushlightuserdata(L, &e);
    lua_sethook(L, BudgetHook, LUA_MASKCOUNT, budget_);
    const int rc = lua_pcall(L, 2, 1, 0);
    lua_sethook(L, nullptr, 0, 0);
    if (rc != LUA_OK) {
      // Only a string is read: converting anything else could allocate, and
      // that is not protected here.
      std::string why = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "an error that is not a string";
      if (rc == LUA_ERRMEM) {
        out_of_memory_ = true;
        why = "memory limit of " + std::to_string(heap_.limit) + " bytes reached";
      } else if (why.find(kBudgetMessage) != std::string::npos) {
        why = "instruction budget of " + std::to_string(budget_) + " exceeded";
      }
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
    // rawset would write around the read-only globals; the rest reach
    // outside the sandbox (files, modules, code from strings, stdout).
    for (const char* name : {"dofile", "loadfile", "load", "require", "collectgarbage", "print", "warn", "rawset"}) {
      lua_pushnil(L_);
      lua_setglobal(L_, name);
    }
    RemoveField(LUA_MATHLIBNAME, "random");
    RemoveField(LUA_MATHLIBNAME, "randomseed");
    RemoveField(LUA_STRLIBNAME, "dump");
    // edgesync.null: JSON's null.
    lua_newtable(L_);
    lua_pushlightuserdata(L_, &null_sentinel);
    lua_setfield(L_, -2, "null");
    lua_setglobal(L_, "edgesync");
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

  // The value at the top of the stack as a new node of `j`.
  Json::Ref ToJson(lua_State* L, Json& j, int depth) const {
    if (depth > kMaxDepth) {
      luaL_error(L, "the returned payload is nested deeper than %d (a table that holds itself?)", kMaxDepth);
    }
    luaL_checkstack(L, 6, "the returned payload is nested too deep");
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
        if (!simdjson::validate_utf8(v, n)) luaL_error(L, "a returned string is not valid UTF-8 (JSON text must be)");
        return j.NewString(std::string_view(v, n));
      }
      case LUA_TTABLE: return TableToJson(L, j, depth);
      default: break;
    }
    return luaL_error(L, "a %s cannot be written as JSON", luaL_typename(L, -1));
  }

  // The table at the top: an array when its keys are exactly 1..n (n > 0),
  // else an object with its members in key order (the same table, the same
  // text).
  Json::Ref TableToJson(lua_State* L, Json& j, int depth) const {
    const int t = lua_gettop(L);
    const lua_Integer n = static_cast<lua_Integer>(lua_rawlen(L, t));
    lua_Integer count = 0;
    bool array = n > 0;
    lua_createtable(L, 0, 0);  // the keys, as strings, to sort
    const int keys = lua_gettop(L);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
      lua_pop(L, 1);
      ++count;
      if (lua_type(L, -1) == LUA_TNUMBER && lua_isinteger(L, -1)) {
        const lua_Integer k = lua_tointeger(L, -1);
        if (k < 1 || k > n) array = false;
        lua_pushfstring(L, "%I", static_cast<LUAI_UACINT>(k));
      } else if (lua_type(L, -1) == LUA_TSTRING) {
        array = false;
        lua_pushvalue(L, -1);
      } else {
        return luaL_error(L, "a table key of type %s cannot be a JSON member name", luaL_typename(L, -1));
      }
      lua_rawseti(L, keys, count);
    }
    if (array && count == n) {
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
    SortStrings(L, keys, count);
    const Json::Ref out = j.NewObject();
    for (lua_Integer i = 1; i <= count; ++i) {
      lua_rawgeti(L, keys, i);  // the name
      size_t len = 0;
      const char* name = lua_tolstring(L, -1, &len);
      if (!simdjson::validate_utf8(name, len)) luaL_error(L, "a returned member name is not valid UTF-8");
      lua_pushvalue(L, -1);
      if (lua_rawget(L, t) == LUA_TNIL) {  // an integer key, named as a string
        lua_pop(L, 1);
        lua_rawgeti(L, t, lua_tointeger(L, -1));
      }
      const Json::Ref v = ToJson(L, j, depth + 1);
      j.Append(out, v, std::string_view(name, len));
      lua_pop(L, 2);
    }
    lua_pop(L, 1);
    return out;
  }

  // Sorts the strings keys[1..n] (insertion sort: objects are small).
  static void SortStrings(lua_State* L, int keys, lua_Integer n) {
    for (lua_Integer i = 2; i <= n; ++i) {
      lua_rawgeti(L, keys, i);
      lua_Integer k = i - 1;
      for (; k >= 1; --k) {
        lua_rawgeti(L, keys, k);
        const bool greater = lua_compare(L, -2, -1, LUA_OPLT);  // strings: no metamethods
        if (!greater) {
          lua_pop(L, 1);
          break;
        }
        lua_rawseti(L, keys, k + 1);
      }
      lua_rawseti(L, keys, k + 1);
    }
  }

  // A string field of the table at the top into *out; absent: unchanged.
  static void StringField(lua_State* L, const char* name, std::string* out) {
    const int type = lua_getfield(L, -1, name);
    if (type == LUA_TSTRING) {
      size_t n = 0;
      const char* v = lua_tolstring(L, -1, &n);
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
        staged_raw_.assign(v, n);
      } else {
        luaL_error(L, "a raw stream's payload must come back as a string");
      }
      staged_payload_ = true;
    }
    lua_pop(L, 1);
  }

  // Process is const but called from one thread at a time (the Plugin
  // contract): the state is the plugin's own.
  lua_State* L_ = nullptr;
  Heap heap_;
  int budget_ = 0;
  std::string function_, script_;
  mutable std::string scratch_;
  // What Protected read from the script's result (see Run).
  mutable Route staged_route_;
  mutable std::string staged_priority_, staged_raw_;
  mutable std::vector<std::pair<std::string, std::string>> staged_props_;
  mutable Json::Ref staged_root_ = Json::kNone;
  mutable bool staged_payload_ = false, staged_properties_ = false, out_of_memory_ = false;
};

}  // namespace

Result<std::shared_ptr<const Plugin>> MakeLuaPlugin(Settings& s, const std::string& base_dir) {
  s.OnlyKeys({"script", "function", "instruction_budget", "memory_limit"});
  std::optional<std::string> script = s.String("script");
  const std::string function = s.String("function").value_or("process");
  const int64_t budget = s.Int("instruction_budget").value_or(1'000'000);
  const int64_t memory = s.Size("memory_limit").value_or(8 << 20);
  if (!script) s.Problem("script", "is required: the .lua file");
  if (budget < 1000 || budget > 1'000'000'000) {
    s.Problem(*s.Get("instruction_budget"), "instruction_budget", "must be between 1000 and 1000000000");
  }
  if (memory < (256 << 10) || memory > (1ll << 30)) {
    s.Problem(*s.Get("memory_limit"), "memory_limit", "must be between 256KiB and 1GiB");
  }
  if (!s.ok()) return s.status();
  const std::string path = (*script)[0] == '/' || base_dir.empty() ? *script : base_dir + "/" + *script;
  std::ifstream f(path, std::ios::binary);
  std::stringstream code;
  code << f.rdbuf();
  if (!f) {
    s.Problem(*s.Get("script"), "script", "cannot read " + path);
    return s.status();
  }
  auto plugin = std::make_shared<LuaPlugin>();
  Status st = plugin->Load(path, code.str(), function, budget, memory);
  if (!st.ok()) {
    s.Problem(*s.Get("script"), "script", path + ": " + st.message());
    return s.status();
  }
  return std::shared_ptr<const Plugin>(std::move(plugin));
}

}  // namespace edgesync

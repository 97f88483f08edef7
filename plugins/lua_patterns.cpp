// Lua 5.4 pattern matching, metered: see lua_patterns.h.
//
// A backtracking matcher over the pattern's text, as the manual defines it:
// single character classes with the quantifiers *, +, - and ?; %n back
// references; %bxy; %f[set]; captures and position captures; ^ and $
// anchors. Its recursion nests only where a quantifier or a capture must be
// able to backtrack, at most kMaxMatchDepth deep ("pattern too complex", as
// in Lua, where the C stack is the limit), so the C stack stays small; its
// time is what the meter allows.
//
// Every function here may raise (luaL_error, or the meter), which unwinds
// with longjmp: nothing on these frames has a destructor.

#include "plugins/lua_patterns.h"

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <cstring>

extern "C" {
#include <lauxlib.h>
#include <lua.h>
}

namespace edgesync {

namespace {

constexpr char kEsc = '%';
// Lua's limits: LUA_MAXCAPTURES and the matcher's depth (MAXCCALLS in
// lstrlib.c), kept so that the same patterns fail the same way.
constexpr int kMaxCaptures = 32;
constexpr int kMaxMatchDepth = 200;
constexpr ptrdiff_t kCapUnfinished = -1;
constexpr ptrdiff_t kCapPosition = -2;
constexpr int64_t kChargeBatch = kLuaChargeBatch;
constexpr size_t kBytesPerStep = kLuaScanBytesPerStep;

unsigned char Byte(char c) { return static_cast<unsigned char>(c); }

// One call's matching state. `steps` is work not yet charged.
struct Matcher {
  lua_State* L;
  LuaWorkMeter* meter;
  const char* subject;
  const char* subject_end;
  const char* pattern_end;
  int depth_left;
  int level;  // captures opened so far
  struct {
    const char* init;
    ptrdiff_t len;  // or kCapUnfinished, kCapPosition
  } capture[kMaxCaptures];
  int64_t steps;

  void Step(int64_t n = 1) {
    steps += n;
    if (steps >= kChargeBatch) Flush();
  }
  void Flush() {
    if (steps == 0) return;
    const int64_t n = steps;
    steps = 0;
    meter->Charge(L, n);
  }
  // Before each attempt at a position.
  void Restart() {
    level = 0;
    depth_left = kMaxMatchDepth;
  }
};

void Prepare(Matcher* m, lua_State* L, LuaWorkMeter* meter, const char* s, size_t ls, const char* p, size_t lp) {
  m->L = L;
  m->meter = meter;
  m->subject = s;
  m->subject_end = s + ls;
  m->pattern_end = p + lp;
  m->steps = 0;
  m->Restart();
}

LuaWorkMeter* MeterUpvalue(lua_State* L, int index) {
  return static_cast<LuaWorkMeter*>(lua_touserdata(L, lua_upvalueindex(index)));
}

// ---- single character classes ----

// Whether `c` is in the class %`cl` (cl a letter), or is `cl` itself.
bool InClass(int c, int cl) {
  bool in;
  switch (std::tolower(cl)) {
    case 'a': in = std::isalpha(c); break;
    case 'c': in = std::iscntrl(c); break;
    case 'd': in = std::isdigit(c); break;
    case 'g': in = std::isgraph(c); break;
    case 'l': in = std::islower(c); break;
    case 'p': in = std::ispunct(c); break;
    case 's': in = std::isspace(c); break;
    case 'u': in = std::isupper(c); break;
    case 'w': in = std::isalnum(c); break;
    case 'x': in = std::isxdigit(c); break;
    case 'z': in = c == 0; break;  // Lua 5.1's class for '\0', which 5.4 still accepts
    default: return cl == c;
  }
  return std::isupper(cl) ? !in : in;  // %A is the complement of %a
}

// Whether `c` is in the set that opens at `open` ('[') and closes at
// `close` (its ']'). A set is as long as the pattern makes it: its scan is
// charged by its length, like any other scan.
bool InSet(Matcher* m, int c, const char* open, const char* close) {
  m->Step(1 + (close - open) / static_cast<ptrdiff_t>(kBytesPerStep));
  const char* p = open + 1;
  bool in = true;
  if (*p == '^') {
    in = false;
    ++p;
  }
  for (; p < close; ++p) {
    if (*p == kEsc) {
      ++p;
      if (InClass(c, Byte(*p))) return in;
    } else if (p[1] == '-' && p + 2 < close) {
      if (Byte(p[0]) <= c && c <= Byte(p[2])) return in;
      p += 2;
    } else if (Byte(*p) == c) {
      return in;
    }
  }
  return !in;
}

// The end of the single character class that starts at `p`.
const char* ClassEnd(Matcher* m, const char* p) {
  if (*p == kEsc) {
    if (p + 1 >= m->pattern_end) luaL_error(m->L, "malformed pattern (ends with '%%')");
    return p + 2;
  }
  if (*p == '[') {
    const char* q = p + 1;
    if (q < m->pattern_end && *q == '^') ++q;
    // The first character is always a member, so "[]]" is the set of ']'.
    for (;;) {
      if (q >= m->pattern_end) luaL_error(m->L, "malformed pattern (missing ']')");
      const char c = *q++;
      if (c == kEsc && q < m->pattern_end) ++q;
      if (q < m->pattern_end && *q == ']') {
        m->Step((q - p) / static_cast<ptrdiff_t>(kBytesPerStep));
        return q + 1;
      }
    }
  }
  return p + 1;
}

// Whether the subject character at `s` is in the class [p, ep).
bool ClassMatches(Matcher* m, const char* s, const char* p, const char* ep) {
  if (s >= m->subject_end) return false;
  const int c = Byte(*s);
  switch (*p) {
    case '.': return true;
    case kEsc: return InClass(c, Byte(p[1]));
    case '[': return InSet(m, c, p, ep - 1);
    default: return Byte(*p) == c;
  }
}

// ---- the matcher ----

const char* Match(Matcher* m, const char* s, const char* p);

const char* MatchBalance(Matcher* m, const char* s, const char* p) {
  if (p + 1 >= m->pattern_end) luaL_error(m->L, "malformed pattern (missing arguments to '%%b')");
  if (s >= m->subject_end || *s != p[0]) return nullptr;
  const char open = p[0], close = p[1];
  int depth = 1;
  while (++s < m->subject_end) {
    m->Step();
    if (*s == close) {
      if (--depth == 0) return s + 1;
    } else if (*s == open) {
      ++depth;
    }
  }
  return nullptr;
}

// As many repetitions of the class [p, ep) as match, then fewer until the
// rest of the pattern (after ep's quantifier) matches.
const char* MatchLongest(Matcher* m, const char* s, const char* p, const char* ep) {
  ptrdiff_t count = 0;
  while (ClassMatches(m, s + count, p, ep)) {
    m->Step();
    ++count;
  }
  for (; count >= 0; --count) {
    const char* end = Match(m, s + count, ep + 1);
    if (end != nullptr) return end;
  }
  return nullptr;
}

// As few repetitions as let the rest of the pattern match.
const char* MatchShortest(Matcher* m, const char* s, const char* p, const char* ep) {
  for (;;) {
    const char* end = Match(m, s, ep + 1);
    if (end != nullptr) return end;
    if (!ClassMatches(m, s, p, ep)) return nullptr;
    m->Step();
    ++s;
  }
}

const char* OpenCapture(Matcher* m, const char* s, const char* p, ptrdiff_t what) {
  if (m->level >= kMaxCaptures) luaL_error(m->L, "too many captures");
  m->capture[m->level].init = s;
  m->capture[m->level].len = what;
  ++m->level;
  const char* end = Match(m, s, p);
  if (end == nullptr) --m->level;  // undo the capture
  return end;
}

const char* CloseCapture(Matcher* m, const char* s, const char* p) {
  int open = m->level - 1;
  while (open >= 0 && m->capture[open].len != kCapUnfinished) --open;
  if (open < 0) luaL_error(m->L, "invalid pattern capture");
  m->capture[open].len = s - m->capture[open].init;
  const char* end = Match(m, s, p);
  if (end == nullptr) m->capture[open].len = kCapUnfinished;  // undo
  return end;
}

// %1 .. %9 in a pattern: the text capture `digit` matched, again.
const char* MatchBackReference(Matcher* m, const char* s, int digit) {
  const int i = digit - '1';
  if (i < 0 || i >= m->level || m->capture[i].len == kCapUnfinished) {
    luaL_error(m->L, "invalid capture index %%%d", i + 1);
  }
  const ptrdiff_t len = m->capture[i].len;
  if (len == kCapPosition) return nullptr;  // a position is no text: never matches
  m->Step(1 + len / static_cast<ptrdiff_t>(kBytesPerStep));
  if (m->subject_end - s >= len && std::memcmp(m->capture[i].init, s, static_cast<size_t>(len)) == 0) return s + len;
  return nullptr;
}

// Where a match of the pattern from `p` that starts at `s` ends, or null.
const char* Match(Matcher* m, const char* s, const char* p) {
  if (m->depth_left-- == 0) luaL_error(m->L, "pattern too complex");
  const char* result = nullptr;
  for (;;) {
    m->Step();
    if (p == m->pattern_end) {
      result = s;
      break;
    }
    bool single = false;  // p starts a single character class
    switch (*p) {
      case '(':
        result = (p + 1 < m->pattern_end && p[1] == ')') ? OpenCapture(m, s, p + 2, kCapPosition)
                                                         : OpenCapture(m, s, p + 1, kCapUnfinished);
        break;
      case ')': result = CloseCapture(m, s, p + 1); break;
      case '$':
        if (p + 1 == m->pattern_end) {
          result = s == m->subject_end ? s : nullptr;
        } else {
          single = true;
        }
        break;
      case kEsc:
        if (p + 1 < m->pattern_end && p[1] == 'b') {
          s = MatchBalance(m, s, p + 2);
          if (s != nullptr) {
            p += 4;
            continue;
          }
        } else if (p + 1 < m->pattern_end && p[1] == 'f') {
          p += 2;
          if (p >= m->pattern_end || *p != '[') luaL_error(m->L, "missing '[' after '%%f' in pattern");
          const char* ep = ClassEnd(m, p);
          const int before = s == m->subject ? '\0' : Byte(s[-1]);
          const int here = s < m->subject_end ? Byte(*s) : '\0';
          if (!InSet(m, before, p, ep - 1) && InSet(m, here, p, ep - 1)) {
            p = ep;
            continue;
          }
        } else if (p + 1 < m->pattern_end && std::isdigit(Byte(p[1]))) {
          s = MatchBackReference(m, s, Byte(p[1]));
          if (s != nullptr) {
            p += 2;
            continue;
          }
        } else {
          single = true;
        }
        break;
      default: single = true; break;
    }
    if (!single) break;
    const char* ep = ClassEnd(m, p);
    const char quantifier = ep < m->pattern_end ? *ep : '\0';
    if (!ClassMatches(m, s, p, ep)) {
      if (quantifier == '*' || quantifier == '?' || quantifier == '-') {  // zero repetitions will do
        p = ep + 1;
        continue;
      }
      break;  // result stays null
    }
    if (quantifier == '?') {
      result = Match(m, s + 1, ep + 1);
      if (result != nullptr) break;
      p = ep + 1;
      continue;
    }
    if (quantifier == '+') {
      result = MatchLongest(m, s + 1, p, ep);
      break;
    }
    if (quantifier == '*') {
      result = MatchLongest(m, s, p, ep);
      break;
    }
    if (quantifier == '-') {
      result = MatchShortest(m, s, p, ep);
      break;
    }
    ++s;  // one character, no quantifier
    p = ep;
  }
  ++m->depth_left;
  return result;
}

// ---- captures ----

// Capture `i` of the match [s, e): its text at *text with its length
// returned, or, for a position capture, kCapPosition with the position
// pushed. With no captures, "capture 0" is the whole match.
ptrdiff_t GetCapture(Matcher* m, int i, const char* s, const char* e, const char** text) {
  if (i >= m->level) {
    if (i != 0) luaL_error(m->L, "invalid capture index %%%d", i + 1);
    *text = s;
    return e - s;
  }
  *text = m->capture[i].init;
  const ptrdiff_t len = m->capture[i].len;
  if (len == kCapUnfinished) luaL_error(m->L, "unfinished capture");
  if (len == kCapPosition) lua_pushinteger(m->L, (m->capture[i].init - m->subject) + 1);
  return len;
}

void PushCapture(Matcher* m, int i, const char* s, const char* e) {
  const char* text = nullptr;
  const ptrdiff_t len = GetCapture(m, i, s, e, &text);
  if (len != kCapPosition) lua_pushlstring(m->L, text, static_cast<size_t>(len));
}

// Pushes the captures (the whole match [s, e) when there are none and s is
// not null); returns how many.
int PushCaptures(Matcher* m, const char* s, const char* e) {
  const int n = (m->level == 0 && s != nullptr) ? 1 : m->level;
  luaL_checkstack(m->L, n, "too many captures");
  for (int i = 0; i < n; ++i) PushCapture(m, i, s, e);
  return n;
}

// ---- plain search ----

bool HasSpecials(Matcher* m, const char* p, size_t lp) {
  m->Step(1 + static_cast<int64_t>(lp / kBytesPerStep));
  return std::any_of(p, p + lp, [](char c) { return c != '\0' && std::strchr("^$*+?.([%-", c) != nullptr; });
}

// The first occurrence of [needle, needle + nl) in [hay, hay + hl), or null.
const char* FindPlain(Matcher* m, const char* hay, size_t hl, const char* needle, size_t nl) {
  if (nl == 0) return hay;
  if (nl > hl) return nullptr;
  const char* const last = hay + (hl - nl);  // the last place it can start
  const char* from = hay;
  while (from <= last) {
    const size_t span = static_cast<size_t>(last - from) + 1;
    const char* at = static_cast<const char*>(std::memchr(from, needle[0], span));
    m->Step(1 + static_cast<int64_t>((at == nullptr ? span : static_cast<size_t>(at - from)) / kBytesPerStep));
    if (at == nullptr) return nullptr;
    size_t same = 1;
    for (;;) {  // compare the rest in pieces, each charged
      const size_t piece = std::min<size_t>(nl - same, 4 * kBytesPerStep);
      if (piece == 0) return at;
      m->Step(1 + static_cast<int64_t>(piece / kBytesPerStep));
      if (std::memcmp(at + same, needle + same, piece) != 0) break;
      same += piece;
    }
    from = at + 1;
  }
  return nullptr;
}

// ---- the library functions ----

// string.find (find) and string.match (!find).
int FindOrMatch(lua_State* L, bool find) {
  size_t ls = 0, lp = 0;
  const char* s = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  const size_t init = LuaStartPosition(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) {  // starts after the end: nothing to find
    lua_pushnil(L);
    return 1;
  }
  Matcher m;
  Prepare(&m, L, MeterUpvalue(L, 1), s, ls, p, lp);
  if (find && (lua_toboolean(L, 4) || !HasSpecials(&m, p, lp))) {
    const char* at = FindPlain(&m, s + init, ls - init, p, lp);
    m.Flush();
    if (at == nullptr) {
      lua_pushnil(L);
      return 1;
    }
    lua_pushinteger(L, (at - s) + 1);
    lua_pushinteger(L, static_cast<lua_Integer>((at - s) + static_cast<ptrdiff_t>(lp)));
    return 2;
  }
  const bool anchored = lp > 0 && *p == '^';
  if (anchored) ++p;  // m.pattern_end stays where it is
  for (const char* from = s + init;; ++from) {
    m.Restart();
    const char* end = Match(&m, from, p);
    if (end != nullptr) {
      m.Flush();
      if (!find) return PushCaptures(&m, from, end);
      lua_pushinteger(L, (from - s) + 1);
      lua_pushinteger(L, end - s);
      return PushCaptures(&m, nullptr, nullptr) + 2;
    }
    if (anchored || from >= m.subject_end) break;
  }
  m.Flush();
  lua_pushnil(L);
  return 1;
}

int Find(lua_State* L) { return FindOrMatch(L, true); }
int MatchFunction(lua_State* L) { return FindOrMatch(L, false); }

// gmatch's iterator. Upvalues: the meter, the subject, the pattern, where
// the next search starts (0-based) and where the last match ended (-1:
// none yet), both updated as it goes.
int GmatchNext(lua_State* L) {
  size_t ls = 0, lp = 0;
  const char* s = lua_tolstring(L, lua_upvalueindex(2), &ls);
  const char* p = lua_tolstring(L, lua_upvalueindex(3), &lp);
  const lua_Integer start = lua_tointeger(L, lua_upvalueindex(4));
  const lua_Integer last_end = lua_tointeger(L, lua_upvalueindex(5));
  Matcher m;
  Prepare(&m, L, MeterUpvalue(L, 1), s, ls, p, lp);
  for (lua_Integer from = start; from <= static_cast<lua_Integer>(ls); ++from) {
    m.Restart();
    const char* end = Match(&m, s + from, p);
    // A match may not end where the previous one did (no empty match
    // right after a match).
    if (end != nullptr && end - s != last_end) {
      m.Flush();
      lua_pushinteger(L, end - s);
      lua_copy(L, -1, lua_upvalueindex(4));
      lua_replace(L, lua_upvalueindex(5));
      return PushCaptures(&m, s + from, end);
    }
  }
  m.Flush();
  return 0;
}

int Gmatch(lua_State* L) {
  size_t ls = 0;
  luaL_checklstring(L, 1, &ls);
  luaL_checkstring(L, 2);
  size_t init = LuaStartPosition(luaL_optinteger(L, 3, 1), ls) - 1;
  if (init > ls) init = ls + 1;  // after the end: no matches
  lua_settop(L, 2);
  lua_pushvalue(L, lua_upvalueindex(1));  // the meter
  lua_insert(L, 1);
  lua_pushinteger(L, static_cast<lua_Integer>(init));
  lua_pushinteger(L, -1);
  lua_pushcclosure(L, GmatchNext, 5);
  return 1;
}

// gsub's string replacement: %0 .. %9 and %%.
void AddReplacementString(Matcher* m, luaL_Buffer* b, const char* s, const char* e) {
  lua_State* L = m->L;
  size_t l = 0;
  const char* text = lua_tolstring(L, 3, &l);
  m->Step(1 + static_cast<int64_t>(l / kBytesPerStep));
  const char* const text_end = text + l;
  const char* esc;
  while ((esc = static_cast<const char*>(std::memchr(text, kEsc, static_cast<size_t>(text_end - text)))) != nullptr) {
    luaL_addlstring(b, text, static_cast<size_t>(esc - text));
    const char* code = esc + 1;
    if (code < text_end && *code == kEsc) {
      luaL_addchar(b, kEsc);
    } else if (code < text_end && *code == '0') {
      luaL_addlstring(b, s, static_cast<size_t>(e - s));
    } else if (code < text_end && std::isdigit(Byte(*code))) {
      const char* capture = nullptr;
      const ptrdiff_t len = GetCapture(m, *code - '1', s, e, &capture);
      if (len == kCapPosition) {
        luaL_addvalue(b);  // the position, pushed by GetCapture
      } else {
        luaL_addlstring(b, capture, static_cast<size_t>(len));
      }
    } else {
      luaL_error(L, "invalid use of '%c' in replacement string", kEsc);
    }
    text = code + 1;
  }
  luaL_addlstring(b, text, static_cast<size_t>(text_end - text));
}

// Adds the replacement for the match [s, e) to `b`; whether it changed the
// text (a function or table giving nil or false keeps the match).
bool AddReplacement(Matcher* m, luaL_Buffer* b, const char* s, const char* e, int kind) {
  lua_State* L = m->L;
  if (kind == LUA_TFUNCTION) {
    lua_pushvalue(L, 3);
    const int n = PushCaptures(m, s, e);
    lua_call(L, n, 1);
  } else if (kind == LUA_TTABLE) {
    PushCapture(m, 0, s, e);
    lua_gettable(L, 3);
  } else {
    AddReplacementString(m, b, s, e);
    return true;
  }
  if (!lua_toboolean(L, -1)) {
    lua_pop(L, 1);
    luaL_addlstring(b, s, static_cast<size_t>(e - s));
    return false;
  }
  if (!lua_isstring(L, -1)) return luaL_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
  luaL_addvalue(b);
  return true;
}

int Gsub(lua_State* L) {
  size_t ls = 0, lp = 0;
  const char* src = luaL_checklstring(L, 1, &ls);
  const char* p = luaL_checklstring(L, 2, &lp);
  const int kind = lua_type(L, 3);
  const lua_Integer max_replacements = luaL_optinteger(L, 4, static_cast<lua_Integer>(ls) + 1);
  luaL_argexpected(L, kind == LUA_TNUMBER || kind == LUA_TSTRING || kind == LUA_TFUNCTION || kind == LUA_TTABLE, 3,
                   "string/function/table");
  const bool anchored = lp > 0 && *p == '^';
  if (anchored) {
    ++p;
    --lp;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  Matcher m;
  Prepare(&m, L, MeterUpvalue(L, 1), src, ls, p, lp);
  const char* last_end = nullptr;
  lua_Integer n = 0;
  bool changed = false;
  while (n < max_replacements) {
    m.Restart();
    const char* end = Match(&m, src, p);
    if (end != nullptr && end != last_end) {  // no empty match right after a match
      ++n;
      changed = AddReplacement(&m, &b, src, end, kind) || changed;
      src = last_end = end;
    } else if (src < m.subject_end) {
      luaL_addchar(&b, *src++);
    } else {
      break;
    }
    if (anchored) break;
  }
  m.Flush();
  if (!changed) {
    lua_pushvalue(L, 1);  // the subject itself
  } else {
    luaL_addlstring(&b, src, static_cast<size_t>(m.subject_end - src));
    luaL_pushresult(&b);
  }
  lua_pushinteger(L, n);
  return 2;
}

}  // namespace

void SetLuaPatternFunctions(lua_State* L, int index, LuaWorkMeter* meter) {
  index = lua_absindex(L, index);
  static const luaL_Reg kFunctions[] = {{"find", Find}, {"match", MatchFunction}, {"gmatch", Gmatch}, {"gsub", Gsub}};
  for (const luaL_Reg& f : kFunctions) {
    lua_pushlightuserdata(L, meter);
    lua_pushcclosure(L, f.func, 1);
    lua_setfield(L, index, f.name);
  }
}

size_t LuaStartPosition(int64_t pos, size_t len) {
  if (pos > 0) return static_cast<size_t>(pos);
  if (pos == 0) return 1;
  if (pos < -static_cast<int64_t>(len)) return 1;
  return len + static_cast<size_t>(pos) + 1;
}

}  // namespace edgesync

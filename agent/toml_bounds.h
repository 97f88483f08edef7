// TOML bounds: what configuration text must satisfy before toml++ parses it.
//
// toml++ 3.3 builds, merges and frees tables recursively, and bounds only
// how deeply arrays and inline tables nest (256). One dotted key of a few
// tens of thousands of parts (`a.a.a...a = 1`), or a [table] header like
// it, makes as many nested tables and overflows the stack: the agent dies
// with SIGSEGV in `edgesync check`, at a reload or while it checks a fleet
// bundle. CheckTomlDepth reads the text once, without recursion, and
// refuses it before toml++ sees it.
//
// Pure functions of their arguments; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "base/status.h"

namespace edgesync {

// Deeper than any configuration edgesync reads: its deepest keys are about
// six tables down ([[plugins.NAME.rules]] with route = { ... }).
constexpr size_t kMaxTomlDepth = 32;

// InvalidArgument ("origin:line: ...") when a table or value in `text`
// would sit more than `max_depth` tables and arrays below the root: a
// [table] header's dotted parts, then a key's own, then the arrays and
// inline tables around a value. Counted from the text alone, as written:
// strings and comments are skipped; text that is not valid TOML is left
// for toml++ to refuse with its own message.
Status CheckTomlDepth(std::string_view text, const std::string& origin, size_t max_depth = kMaxTomlDepth);

}  // namespace edgesync

// Handing back the resident pages of this process's code and constants.
//
// Most of an idle agent's RSS is not its memory: it is pages of the program
// and of its shared libraries (libcrypto, SQLite, librdkafka, libstdc++...)
// that some code touched once, at start or in a burst, and that stay mapped
// until the kernel needs the memory. The kernel keeps them in its page cache,
// shared with every other process mapping the same files, and could drop
// them at any time. ReleaseFilePages unmaps them from this process
// (madvise MADV_DONTNEED); the next access maps them again from the page
// cache (a minor fault, no I/O while the kernel keeps them cached, a read of
// the file if it dropped them meanwhile, as after any eviction).
//
// Only pages that equal their file are touched, and only in the read-only
// segments of the program and of its loaded shared objects: pages of
// private read-only mappings never copied on write (/proc/self/smaps:
// Anonymous and Swap 0 for the whole mapping, else /proc/self/pagemap page
// by page). A relocated region (RELRO: read-only now, written by the
// dynamic linker first), a segment's zeroed end and anything a debugger
// patched keep their written pages; writable, shared and locked mappings,
// and everything that is not a loaded object's read-only segment (heap,
// stacks, [vdso], files a library mapped itself), are left. The pages are
// released from within dl_iterate_phdr, under the lock that keeps objects
// from being unloaded; if an object was loaded or unloaded since the pages
// were looked at, or a tracer is attached to any thread, nothing is
// released. Dropping such a page is what the kernel does under memory
// pressure; nothing the process wrote can be lost. One window remains: a
// tracer or a uprobe that patches a code page between the last look (some
// microseconds before) and the release loses its patch, and the page is
// the file's code again; the program runs as it would unpatched.
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

#include "base/status.h"

namespace edgesync {

struct ReleasedPages {
  uint64_t kib = 0;       // how much this process's RSS fell meanwhile
  uint64_t mappings = 0;  // read-only file mappings looked at
};

// One mapping of /proc/<pid>/smaps, as ReleaseFilePages judges it.
struct SmapsMapping {
  uintptr_t begin = 0, end = 0;
  std::string_view perms;  // "r-xp"
  uint64_t inode = 0;
  std::string_view path;   // "" for anonymous mappings
  uint64_t rss_kib = 0, anonymous_kib = 0, swap_kib = 0, locked_kib = 0;
  bool has_anonymous = false, has_swap = false;  // whether those lines were there
  bool locked_flag = false;                      // VmFlags has "lo"
};

// Whether every page of a mapping is its file's: none copied on write,
// whether in memory (Anonymous) or swapped out (Swap), both counted.
inline bool AllPagesAreTheFiles(const SmapsMapping& m) {
  return m.has_anonymous && m.anonymous_kib == 0 && m.has_swap && m.swap_kib == 0;
}

// Every mapping in the text of /proc/<pid>/smaps; InvalidArgument when it
// does not parse. The views point into `smaps`.
Status ParseSmaps(std::string_view smaps, const std::function<void(const SmapsMapping&)>& each);

// Whether a mapping is a private, read-only (never writable), unlocked
// mapping of a file: its pages are the file's, except those it counts as
// Anonymous (copied on write before it was made read-only).
bool IsReadOnlyFileMapping(const SmapsMapping& m);

// Releases this process's resident pages of its loaded objects' read-only
// segments that equal their file. Reads /proc/self/smaps: a few
// milliseconds for the agent's ~300 mappings. Unavailable, with nothing
// released, when traced, when a library came or went meanwhile, or not on
// Linux with glibc.
Result<ReleasedPages> ReleaseFilePages();

}  // namespace edgesync

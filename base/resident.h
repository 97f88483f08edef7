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
// private read-only mappings that were never copied on write. A relocated
// region (RELRO: read-only now, written by the dynamic linker first) keeps
// its written pages; writable, shared and locked mappings, and everything
// that is not a loaded object's read-only segment (heap, stacks, [vdso],
// files a library mapped itself), are left. The pages are released from
// within dl_iterate_phdr, which holds the dynamic linker's lock, so no
// object can be unloaded and its addresses reused meanwhile. Dropping such
// a page is what the kernel does under memory pressure; nothing the process
// wrote can be lost.
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
  uint64_t rss_kib = 0, anonymous_kib = 0, locked_kib = 0;
  bool locked_flag = false;  // VmFlags has "lo"
};

// Every mapping in the text of /proc/<pid>/smaps; InvalidArgument when it
// does not parse. The views point into `smaps`.
Status ParseSmaps(std::string_view smaps, const std::function<void(const SmapsMapping&)>& each);

// Whether a mapping is a private, read-only (never writable), unlocked
// mapping of a file: its pages are the file's, except those it counts as
// Anonymous (copied on write before it was made read-only).
bool IsReadOnlyFileMapping(const SmapsMapping& m);

// Releases this process's resident pages of its loaded objects' read-only
// segments that equal their file: whole mappings with no anonymous page,
// and page by page (/proc/self/pagemap) in the others. Reads
// /proc/self/smaps (about a millisecond for the agent's ~300 mappings).
// Linux with glibc only: elsewhere Unavailable.
Result<ReleasedPages> ReleaseFilePages();

}  // namespace edgesync

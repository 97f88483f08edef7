// What the benchmarks read of a process from /proc and getrusage: memory
// (VmRSS, VmHWM, and what the resident pages are, from smaps), CPU time,
// and a process's pid by its arguments.
#pragma once

#include <dirent.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace edgesync::bench {

// A /proc/<pid>/status field in KiB ("VmHWM", "VmRSS"); 0 when unreadable
// (the process is gone).
inline uint64_t StatusKib(pid_t pid, const char* field) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  const std::string key = std::string(field) + ":";
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) return std::stoull(line.substr(key.size()));
  }
  return 0;
}

// utime + stime of every thread of `pid`, seconds; -1 when unreadable.
inline double CpuSeconds(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return -1;
  std::istringstream fields(stat.substr(paren + 2));
  std::string f;
  unsigned long long utime = 0, stime = 0;
  // Fields from 3 (state) on; utime and stime are fields 14 and 15.
  for (int i = 3; i <= 15 && fields >> f; ++i) {
    if (i == 14) utime = std::stoull(f);
    if (i == 15) stime = std::stoull(f);
  }
  return static_cast<double>(utime + stime) / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

// Minor page faults of every thread of `pid` so far (a page mapped again
// from the page cache, or a first touch); 0 when unreadable.
inline uint64_t MinorFaults(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return 0;
  std::istringstream fields(stat.substr(paren + 2));
  std::string f;
  // Fields from 3 (state) on; minflt is field 10.
  for (int i = 3; i <= 10 && fields >> f; ++i) {
    if (i == 10) return std::stoull(f);
  }
  return 0;
}

// User + system CPU of the children reaped so far, seconds.
inline double ChildrenCpuSeconds() {
  rusage ru{};
  ::getrusage(RUSAGE_CHILDREN, &ru);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

// The pid of a running process one of whose arguments is `arg` exactly
// (e.g. the configuration file a broker was started with); -1 if none. For
// a child the harness started but does not show the pid of.
inline pid_t PidWithArgument(const std::string& arg) {
  DIR* proc = ::opendir("/proc");
  if (proc == nullptr) return -1;
  pid_t found = -1;
  while (dirent* e = ::readdir(proc)) {
    const std::string name = e->d_name;
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream in("/proc/" + name + "/cmdline", std::ios::binary);
    std::string cmdline((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (size_t begin = 0; begin < cmdline.size();) {
      size_t end = cmdline.find('\0', begin);
      if (end == std::string::npos) end = cmdline.size();
      if (cmdline.compare(begin, end - begin, arg) == 0) found = static_cast<pid_t>(std::stol(name));
      begin = end + 1;
    }
    if (found > 0) break;
  }
  ::closedir(proc);
  return found;
}

// Threads of `pid` (the Threads: line of its status); 0 when it is gone.
inline uint64_t ThreadCount(pid_t pid) { return StatusKib(pid, "Threads"); }

// What a process's resident memory is made of, in KiB, from
// /proc/<pid>/smaps: each mapping's Rss, split by what the mapping is.
//   anon / file: Anonymous pages against the rest (pages of files: the
//     program and its shared libraries, which other processes mapping the
//     same files share).
//   program: the executable's own file; libraries: every other file.
//   heap: [heap], glibc's main malloc arena (brk).
//   arenas: glibc's other malloc arenas, one per thread that allocated
//     while the others were busy (up to 8 per core): anonymous mappings
//     aligned to the arena reservation, each followed by the PROT_NONE rest
//     of its reservation (64 MiB on 64-bit, 1 MiB on 32-bit).
//   stacks: [stack] and thread stacks (anonymous mappings right above a
//     small PROT_NONE guard, as pthread_create makes them).
//   other_anon: every other anonymous mapping: allocations above malloc's
//     mmap threshold (zstd contexts, big buffers), libraries' own mmaps,
//     the relocated data of the libraries.
//   pss: the proportional set size, each page divided by the number of
//     processes that map it (a shared library's pages mostly).
// Labels are read from the mapping layout, which glibc does not promise;
// other_anon takes what no rule matches, so the parts always add up to rss.
struct RssBreakdown {
  uint64_t rss = 0, anon = 0, file = 0;
  uint64_t pss = 0;  // Rss with each page divided by the processes mapping it
  uint64_t program = 0, libraries = 0, heap = 0, arenas = 0, stacks = 0, other_anon = 0;
  uint64_t arena_count = 0, stack_count = 0;
  std::map<std::string, uint64_t> by_file;  // Rss per file (base name)
  bool ok() const { return rss > 0; }
  // The `n` files with the most resident pages, largest first.
  std::vector<std::pair<std::string, uint64_t>> TopFiles(size_t n) const {
    std::vector<std::pair<std::string, uint64_t>> v(by_file.begin(), by_file.end());
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
    if (v.size() > n) v.resize(n);
    return v;
  }
};

inline RssBreakdown ReadSmaps(pid_t pid) {
  struct Mapping {
    uint64_t start = 0, end = 0;
    std::string perms, path;
    uint64_t rss = 0, anon = 0, pss = 0;
  };
  std::vector<Mapping> maps;
  std::string exe;
  {
    char buf[4096];
    const std::string link = "/proc/" + std::to_string(pid) + "/exe";
    const ssize_t n = ::readlink(link.c_str(), buf, sizeof buf - 1);
    if (n > 0) exe.assign(buf, static_cast<size_t>(n));
  }
  std::ifstream in("/proc/" + std::to_string(pid) + "/smaps");
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    // A mapping's header: "start-end perms offset dev inode [path]"; its
    // fields: "Name:   value kB".
    const size_t colon = line.find(':');
    const size_t dash = line.find('-');
    if (dash != std::string::npos && (colon == std::string::npos || dash < colon) &&
        std::isxdigit(static_cast<unsigned char>(line[0]))) {
      std::istringstream h(line);
      Mapping m;
      std::string range, offset, dev, inode;
      h >> range >> m.perms >> offset >> dev >> inode;
      std::getline(h, m.path);
      m.path.erase(0, m.path.find_first_not_of(' '));
      m.start = std::stoull(range.substr(0, range.find('-')), nullptr, 16);
      m.end = std::stoull(range.substr(range.find('-') + 1), nullptr, 16);
      maps.push_back(std::move(m));
      continue;
    }
    if (maps.empty()) continue;
    if (line.rfind("Rss:", 0) == 0) maps.back().rss = std::stoull(line.substr(4));
    if (line.rfind("Anonymous:", 0) == 0) maps.back().anon = std::stoull(line.substr(10));
    if (line.rfind("Pss:", 0) == 0) maps.back().pss = std::stoull(line.substr(4));
  }
  RssBreakdown b;
  const uint64_t arena_align = sizeof(void*) == 8 ? 64ull << 20 : 1ull << 20;
  for (size_t i = 0; i < maps.size(); ++i) {
    const Mapping& m = maps[i];
    b.rss += m.rss;
    b.pss += m.pss;
    b.anon += m.anon;
    b.file += m.rss - m.anon;
    const bool is_file = !m.path.empty() && m.path[0] == '/';
    if (is_file) {
      // A file's private pages that were written (relocations) are
      // anonymous; they count as the file's here, as the kernel counts them
      // in its mapping.
      (m.path == exe ? b.program : b.libraries) += m.rss;
      b.by_file[m.path.substr(m.path.rfind('/') + 1)] += m.rss;
      continue;
    }
    if (m.path == "[heap]") {
      b.heap += m.rss;
      continue;
    }
    if (m.path == "[stack]") {
      b.stacks += m.rss;
      ++b.stack_count;
      continue;
    }
    const bool rw = m.perms.rfind("rw", 0) == 0;
    const bool anon_map = m.path.empty();
    const Mapping* prev = i > 0 ? &maps[i - 1] : nullptr;
    const Mapping* next = i + 1 < maps.size() ? &maps[i + 1] : nullptr;
    auto none = [](const Mapping* x) { return x != nullptr && x->perms.rfind("---", 0) == 0 && x->path.empty(); };
    if (rw && anon_map && none(prev) && prev->end == m.start && prev->end - prev->start <= (64u << 10)) {
      b.stacks += m.rss;
      ++b.stack_count;
    } else if (rw && anon_map && m.start % arena_align == 0 && none(next) && next->start == m.end) {
      b.arenas += m.rss;
      ++b.arena_count;
    } else {
      b.other_anon += m.rss;
    }
  }
  return b;
}

}  // namespace edgesync::bench

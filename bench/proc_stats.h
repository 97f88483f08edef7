// What the benchmarks read of a process from /proc and getrusage: memory
// (VmRSS, VmHWM), CPU time, and a process's pid by its arguments.
#pragma once

#include <dirent.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>

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

}  // namespace edgesync::bench

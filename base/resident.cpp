#include "base/resident.h"

#include <charconv>
#include <string>
#include <vector>

#if defined(__linux__) && defined(__GLIBC__)
#include <dirent.h>
#include <fcntl.h>
#include <link.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#endif

namespace edgesync {
namespace {

// The next space-separated token of `s`, consumed.
std::string_view Token(std::string_view* s) {
  size_t b = s->find_first_not_of(' ');
  if (b == std::string_view::npos) {
    *s = {};
    return {};
  }
  s->remove_prefix(b);
  size_t e = s->find(' ');
  std::string_view t = s->substr(0, e);
  s->remove_prefix(e == std::string_view::npos ? s->size() : e);
  return t;
}

template <typename T>
bool Number(std::string_view t, T* out, int base = 10) {
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), *out, base);
  return ec == std::errc() && p == t.data() + t.size();
}

bool IsHex(std::string_view t) {
  if (t.empty()) return false;
  for (char c : t) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// "7f00-7f10 r-xp 00000000 08:01 1234   /usr/lib/x.so": a mapping's first
// line. Field lines ("Rss:   4 kB", "VmFlags: rd ex") never start with
// two lower-case hex numbers joined by '-'; a line that does and then does
// not parse is malformed, not a field.
enum class Header { kNo, kYes, kMalformed };
Header ParseHeader(std::string_view line, SmapsMapping* m) {
  std::string_view range = Token(&line);
  size_t dash = range.find('-');
  if (dash == std::string_view::npos || !IsHex(range.substr(0, dash)) ||
      !IsHex(range.substr(dash + 1))) {
    return Header::kNo;
  }
  *m = SmapsMapping{};
  if (!Number(range.substr(0, dash), &m->begin, 16) || !Number(range.substr(dash + 1), &m->end, 16)) {
    return Header::kMalformed;
  }
  m->perms = Token(&line);
  Token(&line);  // offset
  Token(&line);  // device
  if (m->perms.size() != 4 || !Number(Token(&line), &m->inode)) return Header::kMalformed;
  size_t b = line.find_first_not_of(' ');
  m->path = b == std::string_view::npos ? std::string_view() : line.substr(b);
  return Header::kYes;
}

// "Rss:   1234 kB" -> 1234 in *kib when the line names `field`.
bool Field(std::string_view line, std::string_view field, uint64_t* kib) {
  if (line.size() <= field.size() || line.substr(0, field.size()) != field ||
      line[field.size()] != ':') {
    return false;
  }
  line.remove_prefix(field.size() + 1);
  return Number(Token(&line), kib);
}

}  // namespace

Status ParseSmaps(std::string_view smaps, const std::function<void(const SmapsMapping&)>& each) {
  SmapsMapping m;
  bool open = false;
  while (!smaps.empty()) {
    size_t eol = smaps.find('\n');
    std::string_view line = smaps.substr(0, eol);
    smaps.remove_prefix(eol == std::string_view::npos ? smaps.size() : eol + 1);
    if (line.empty()) continue;
    SmapsMapping next;
    switch (ParseHeader(line, &next)) {
      case Header::kYes:
        if (open) each(m);
        m = next;
        open = true;
        continue;
      case Header::kMalformed:
        return Status::InvalidArgument("smaps: a mapping's line does not parse: " + std::string(line));
      case Header::kNo:
        break;
    }
    if (!open) return Status::InvalidArgument("smaps: a field before the first mapping: " + std::string(line));
    if (Field(line, "Rss", &m.rss_kib) || Field(line, "Locked", &m.locked_kib)) continue;
    if (Field(line, "Anonymous", &m.anonymous_kib)) {
      m.has_anonymous = true;
      continue;
    }
    if (Field(line, "Swap", &m.swap_kib)) {
      m.has_swap = true;
      continue;
    }
    if (line.substr(0, 8) == "VmFlags:") {
      std::string_view flags = line.substr(8);
      for (std::string_view f = Token(&flags); !f.empty(); f = Token(&flags)) {
        if (f == "lo") m.locked_flag = true;
      }
    }
  }
  if (open) each(m);
  return Status::OK();
}

bool IsReadOnlyFileMapping(const SmapsMapping& m) {
  return m.perms.size() == 4 && m.perms[0] == 'r' && m.perms[1] == '-' && m.perms[3] == 'p' &&
         m.inode != 0 && !m.path.empty() && m.path[0] == '/' && m.locked_kib == 0 &&
         !m.locked_flag && m.end > m.begin;
}

#if defined(__linux__) && defined(__GLIBC__)
namespace {

Result<std::string> ReadProcFile(const char* path) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Status::FromErrno(std::string("open ") + path, errno);
  std::string text;
  char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return Status::FromErrno(std::string("read ") + path, err);
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return text;
}

// Pages [begin, end) that all equal the file they map.
struct Run {
  uintptr_t begin, end;
};

struct Walk {
  const std::vector<Run>* runs;
  uintptr_t page;
  // The loaded objects' counts when smaps was read: dl_phdr_info's
  // dlpi_adds (objects ever added) and dlpi_subs (ever removed), which
  // glibc fills under the lock the walk holds.
  unsigned long long adds = 0, subs = 0;
  bool changed = false;  // an object came or went since: nothing released
};

// Records dlpi_adds and dlpi_subs into the Walk, and stops.
int CountObjects(struct dl_phdr_info* info, size_t size, void* arg) {
  Walk* w = static_cast<Walk*>(arg);
  if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs)) {
    w->changed = true;  // a glibc without the counts: never release
    return 1;
  }
  w->adds = info->dlpi_adds;
  w->subs = info->dlpi_subs;
  return 1;
}

// Whether a debugger or tracer is attached to any thread (TracerPid in
// /proc/self/task/*/status): it writes breakpoints into code pages at any
// time. Unsure counts as traced.
bool Traced() {
  DIR* tasks = ::opendir("/proc/self/task");
  if (tasks == nullptr) return true;
  bool traced = false;
  while (dirent* e = ::readdir(tasks)) {
    if (e->d_name[0] == '.') continue;
    Result<std::string> status = ReadProcFile(("/proc/self/task/" + std::string(e->d_name) + "/status").c_str());
    if (!status.ok()) continue;  // a thread that has just exited
    size_t at = status->find("\nTracerPid:");
    if (at == std::string::npos) {
      traced = true;
      break;
    }
    std::string_view rest = std::string_view(*status).substr(at + 11);
    rest.remove_prefix(std::min(rest.size(), rest.find_first_not_of(" \t")));
    uint64_t pid = 1;
    if (std::from_chars(rest.data(), rest.data() + rest.size(), pid).ec != std::errc() || pid != 0) {
      traced = true;
      break;
    }
  }
  ::closedir(tasks);
  return traced;
}

// Resident pages of this process (/proc/self/statm's second field).
uint64_t ResidentPages() {
  Result<std::string> statm = ReadProcFile("/proc/self/statm");
  if (!statm.ok()) return 0;
  std::string_view rest = *statm;
  Token(&rest);  // size
  uint64_t resident = 0;
  return Number(Token(&rest), &resident) ? resident : 0;
}

// The runs of [begin, end) whose pages are resident and the file's own
// (/proc/self/pagemap: bit 63 present, bit 61 a file page, i.e. not copied
// on write). A page it cannot tell about is left out.
void FilePageRuns(int pagemap, uintptr_t begin, uintptr_t end, uintptr_t page, std::vector<Run>* runs) {
  constexpr uint64_t kPresent = 1ull << 63, kFilePage = 1ull << 61;
  uint64_t entries[512];
  uintptr_t run_begin = 0;  // 0: not in a run
  uintptr_t at = begin;
  while (at < end) {
    const size_t want = std::min<size_t>(512, (end - at) / page);
    const ssize_t n = ::pread(pagemap, entries, want * sizeof(uint64_t),
                              static_cast<off_t>(at / page * sizeof(uint64_t)));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // what it cannot tell about is left out
    const size_t got = static_cast<size_t>(n) / sizeof(uint64_t);
    for (size_t i = 0; i < got; ++i, at += page) {
      const bool clean = (entries[i] & (kPresent | kFilePage)) == (kPresent | kFilePage);
      if (clean && run_begin == 0) run_begin = at;
      if (!clean && run_begin != 0) {
        runs->push_back({run_begin, at});
        run_begin = 0;
      }
    }
    if (got == 0) break;
  }
  if (run_begin != 0) runs->push_back({run_begin, at});
}

// Whether an object's code was relocated in place (DT_TEXTREL): its
// read-only segments were written, so none of their pages is released.
bool HasTextRelocations(const struct dl_phdr_info* info) {
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_DYNAMIC) continue;
    const auto* d = reinterpret_cast<const ElfW(Dyn)*>(info->dlpi_addr + ph.p_vaddr);
    for (; d->d_tag != DT_NULL; ++d) {
      if (d->d_tag == DT_TEXTREL) return true;
      if (d->d_tag == DT_FLAGS && (d->d_un.d_val & DF_TEXTREL) != 0) return true;
    }
  }
  return false;
}

// For each loaded object, each read-only PT_LOAD segment: the runs within
// its whole pages, released. Runs with the lock under which glibc adds
// objects to its list and removes them (dlclose unmaps under it too), so
// no listed object's pages can be unmapped and mapped again as something
// else meanwhile; an object loaded or unloaded since the runs were read
// changes the counts, and then nothing is released. Nothing but a tracer
// (checked before) writes a listed object's read-only segment, so what the
// runs say of its pages, read before the lock, still holds.
int ReleaseObject(struct dl_phdr_info* info, size_t size, void* arg) {
  Walk* w = static_cast<Walk*>(arg);
  // An object loaded or unloaded between the smaps read and this lock: a
  // run read before may lie over its pages, which it may have written.
  if (size < offsetof(struct dl_phdr_info, dlpi_subs) + sizeof(info->dlpi_subs) ||
      info->dlpi_adds != w->adds || info->dlpi_subs != w->subs) {
    w->changed = true;
    return 1;
  }
  if (HasTextRelocations(info)) return 0;
  // The program headers lie in the object's first page, which the first
  // segment's release unmaps: read them all before releasing anything.
  std::vector<Run> segments;
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const ElfW(Phdr)& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD || (ph.p_flags & PF_W) != 0 || ph.p_memsz == 0) continue;
    // Whole pages only: a page the segment shares with a neighbour is left.
    const uintptr_t begin = (info->dlpi_addr + ph.p_vaddr + w->page - 1) & ~(w->page - 1);
    const uintptr_t end = (info->dlpi_addr + ph.p_vaddr + ph.p_memsz) & ~(w->page - 1);
    if (begin < end) segments.push_back({begin, end});
  }
  for (const Run& seg : segments) {
    for (const Run& r : *w->runs) {
      const uintptr_t b = std::max(seg.begin, r.begin), e = std::min(seg.end, r.end);
      if (b < e) ::madvise(reinterpret_cast<void*>(b), e - b, MADV_DONTNEED);
    }
  }
  return 0;
}

}  // namespace
#endif

#if defined(__linux__) && defined(__GLIBC__)
namespace {

// One look and release; `walk.changed` when a library came or went meanwhile.
Result<ReleasedPages> ReleaseOnce(uintptr_t page, bool* changed) {
  std::vector<Run> runs;
  Walk walk{&runs, page};
  ::dl_iterate_phdr(CountObjects, &walk);
  if (walk.changed) return Status::Unavailable("releasing file pages: this glibc does not count loaded objects");
  Result<std::string> smaps = ReadProcFile("/proc/self/smaps");
  if (!smaps.ok()) return smaps.status();
  std::vector<SmapsMapping> mixed;
  ReleasedPages out;
  EDGESYNC_RETURN_IF_ERROR(ParseSmaps(*smaps, [&](const SmapsMapping& m) {
    if (m.rss_kib == 0 || !IsReadOnlyFileMapping(m)) return;
    ++out.mappings;
    if (AllPagesAreTheFiles(m)) {
      runs.push_back({m.begin, m.end});
    } else {
      mixed.push_back(m);
    }
  }));
  if (!mixed.empty()) {
    // Some pages copied on write, in memory or swapped out (a relocated
    // region merged with the constants next to it; the zeroed end of a
    // segment): the others, page by page.
    int pagemap = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (pagemap >= 0) {
      for (const SmapsMapping& m : mixed) FilePageRuns(pagemap, m.begin, m.end, page, &runs);
      ::close(pagemap);
    }
  }
  // Checked again as late as it can be: a tracer attaching now could patch
  // a page between this look and the release (a window of microseconds).
  if (Traced()) return Status::Unavailable("releasing file pages: a tracer is attached (its breakpoints are written pages)");
  const uint64_t before = ResidentPages();
  ::dl_iterate_phdr(ReleaseObject, &walk);
  *changed = walk.changed;
  const uint64_t after = ResidentPages();
  out.kib = before > after ? (before - after) * page / 1024 : 0;
  return out;
}

}  // namespace
#endif

Result<ReleasedPages> ReleaseFilePages() {
#if defined(__linux__) && defined(__GLIBC__)
  if (Traced()) return Status::Unavailable("releasing file pages: a tracer is attached (its breakpoints are written pages)");
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  // A library loaded or unloaded by another thread meanwhile (a resolver
  // loading an NSS module, say) stops a round before it releases anything
  // of that library's; the next round looks again.
  for (int round = 0; round < 3; ++round) {
    bool changed = false;
    Result<ReleasedPages> r = ReleaseOnce(page, &changed);
    if (!r.ok() || !changed) return r;
  }
  return Status::Unavailable("releasing file pages: libraries were loaded or unloaded meanwhile, three times");
#else
  return Status::Unavailable("releasing file pages: Linux with glibc only");
#endif
}

}  // namespace edgesync

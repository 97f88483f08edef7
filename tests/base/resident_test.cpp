#include "base/resident.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <climits>
#include <cstring>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

std::vector<SmapsMapping> Parse(const std::string& text, std::vector<std::string>* paths) {
  std::vector<SmapsMapping> out;
  Status st = ParseSmaps(text, [&](const SmapsMapping& m) {
    out.push_back(m);
    paths->emplace_back(m.path);
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return out;
}

TEST(Resident, ParsesEachMappingAndTheFieldsThatDecide) {
  const std::string text =
      "55d0c1a00000-55d0c1b00000 r-xp 00001000 08:01 1311 /usr/bin/edge sync\n"
      "Size:               1024 kB\n"
      "Rss:                 512 kB\n"
      "Anonymous:             0 kB\n"
      "AnonHugePages:         0 kB\n"
      "Swap:                  0 kB\n"
      "Locked:                0 kB\n"
      "VmFlags: rd ex mr mw me sd\n"
      "55d0c2000000-55d0c2021000 rw-p 00000000 00:00 0                          [heap]\n"
      "Rss:                 132 kB\n"
      "Anonymous:           132 kB\n"
      "7f00aa000000-7f00aa010000 r--p 00020000 08:01 77 /usr/lib/libx.so (deleted)\n"
      "Rss:                  64 kB\n"
      "Anonymous:             8 kB\n"
      "Swap:                 12 kB\n"
      "Locked:               64 kB\n"
      "VmFlags: rd mr mw me lo\n"
      "7f00ab000000-7f00ab001000 ---p 00000000 00:00 0 \n"
      "Rss:                   0 kB\n";
  std::vector<std::string> paths;
  std::vector<SmapsMapping> m = Parse(text, &paths);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].begin, 0x55d0c1a00000u);
  EXPECT_EQ(m[0].end, 0x55d0c1b00000u);
  EXPECT_EQ(m[0].perms, "r-xp");
  EXPECT_EQ(m[0].inode, 1311u);
  EXPECT_EQ(paths[0], "/usr/bin/edge sync");
  EXPECT_EQ(m[0].rss_kib, 512u);
  EXPECT_EQ(m[0].anonymous_kib, 0u);
  EXPECT_FALSE(m[0].locked_flag);
  EXPECT_TRUE(AllPagesAreTheFiles(m[0]));
  EXPECT_EQ(paths[1], "[heap]");
  EXPECT_EQ(m[1].anonymous_kib, 132u);
  EXPECT_EQ(m[2].anonymous_kib, 8u);
  EXPECT_EQ(m[2].swap_kib, 12u);
  EXPECT_FALSE(AllPagesAreTheFiles(m[2]));
  EXPECT_EQ(m[2].locked_kib, 64u);
  EXPECT_TRUE(m[2].locked_flag);
  EXPECT_EQ(paths[3], "");
  EXPECT_EQ(m[3].inode, 0u);

  EXPECT_FALSE(AllPagesAreTheFiles(m[3])) << "no Anonymous or Swap line: unknown, not clean";
  EXPECT_FALSE(ParseSmaps("Rss: 4 kB\n", [](const SmapsMapping&) {}).ok());
  EXPECT_FALSE(ParseSmaps("7f00-7f10 r-xp 0 08:01 notanumber /x\nRss: 4 kB\n", [](const SmapsMapping&) {}).ok())
      << "a mapping's line that does not parse must not lend its fields to the one before";
  EXPECT_TRUE(ParseSmaps("", [](const SmapsMapping&) {}).ok());
}

TEST(Resident, OnlyPrivateReadOnlyUnlockedFileMappingsAreLookedAt) {
  SmapsMapping m;
  m.begin = 0x1000;
  m.end = 0x3000;
  m.perms = "r-xp";
  m.inode = 42;
  m.path = "/usr/lib/libx.so";
  m.rss_kib = 8;
  EXPECT_TRUE(IsReadOnlyFileMapping(m));
  SmapsMapping a = m;
  a.anonymous_kib = 4;  // its other pages still equal the file: looked at page by page
  EXPECT_TRUE(IsReadOnlyFileMapping(a));
  m.has_anonymous = m.has_swap = true;
  EXPECT_TRUE(AllPagesAreTheFiles(m));
  a.has_anonymous = a.has_swap = true;
  EXPECT_FALSE(AllPagesAreTheFiles(a));
  SmapsMapping sw = m;
  sw.swap_kib = 4;  // a written page, swapped out
  EXPECT_FALSE(AllPagesAreTheFiles(sw));
  SmapsMapping w = m;
  w.perms = "rw-p";
  EXPECT_FALSE(IsReadOnlyFileMapping(w)) << "writable";
  SmapsMapping s = m;
  s.perms = "r--s";
  EXPECT_FALSE(IsReadOnlyFileMapping(s)) << "shared";
  SmapsMapping g = m;
  g.perms = "---p";
  EXPECT_FALSE(IsReadOnlyFileMapping(g)) << "no access";
  SmapsMapping l = m;
  l.locked_flag = true;
  EXPECT_FALSE(IsReadOnlyFileMapping(l)) << "locked";
  SmapsMapping n = m;
  n.inode = 0;
  n.path = "[vdso]";
  EXPECT_FALSE(IsReadOnlyFileMapping(n)) << "not a file";
}

// The sum of `value` over this process's mappings for which `pick` says yes.
template <typename Pick, typename Value>
uint64_t SumOf(Pick pick, Value value) {
  std::ifstream in("/proc/self/smaps");
  std::stringstream text;
  text << in.rdbuf();
  uint64_t sum = 0;
  Status st = ParseSmaps(text.str(), [&](const SmapsMapping& m) {
    if (pick(m)) sum += value(m);
  });
  EXPECT_TRUE(st.ok()) << st.ToString();
  return sum;
}

// Resident KiB of this process's mappings for which `pick` says yes.
template <typename Pick>
uint64_t ResidentKib(Pick pick) {
  return SumOf(pick, [](const SmapsMapping& m) { return m.rss_kib; });
}

std::string ThisProgram() {
  char exe[PATH_MAX] = {};
  EXPECT_GT(::readlink("/proc/self/exe", exe, sizeof exe - 1), 0);
  return exe;
}

TEST(Resident, ReleasesTheCodePagesOfTheProgramAndItsLibrariesWhichStillRun) {
  const std::string program = ThisProgram();
  auto of_program = [&](const SmapsMapping& m) {
    return IsReadOnlyFileMapping(m) && m.path.substr(0, program.size()) == program;
  };
  auto file_pages = [](const SmapsMapping& m) { return m.rss_kib - m.anonymous_kib; };
  const uint64_t before = SumOf(of_program, file_pages);
  ASSERT_GT(before, 0u);
  Result<ReleasedPages> released = ReleaseFilePages();
  ASSERT_TRUE(released.ok()) << released.status().ToString();
  EXPECT_GT(released->mappings, 0u);
  EXPECT_GT(released->kib, 0u);
  // What runs since (the test, gtest, the smaps read) maps some pages again.
  EXPECT_LT(SumOf(of_program, file_pages), before);
  // Virtual calls through relocated tables, in this program and libstdc++.
  std::ostringstream still;
  still << "runs " << 42;
  EXPECT_EQ(still.str(), "runs 42");
}

// Constants of this program, in its read-only segment: more than two whole
// aligned 64 KiB blocks of them.
const unsigned char kConstants[4 * 65536] = {'c', 'o', 'n', 's', 't'};

// The mapping of this process that holds `at`, from smaps.
SmapsMapping MappingOf(uintptr_t at) {
  SmapsMapping found;
  std::ifstream in("/proc/self/smaps");
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  EXPECT_TRUE(ParseSmaps(all, [&](const SmapsMapping& m) {
                if (m.begin <= at && at < m.end) found = m;
              }).ok());
  found.perms = found.path = {};  // they pointed into `all`
  return found;
}

// Two pages of kConstants, both mapped: the first written through
// /proc/self/mem, as a debugger writes a breakpoint (the dynamic linker
// zeroing a segment's end writes the same way): a page copied on write
// inside a loaded object's read-only segment. Unlike mprotect, this leaves
// the mapping whole, with one written page among clean ones. Each lies in
// a 64 KiB block of its own that only kConstants fills: a fault elsewhere
// maps the whole aligned 64 KiB around it again (the kernel's
// fault-around), which must not bring the clean page back behind the
// test's back. Null when this kernel refuses the write.
unsigned char* WriteAPageOfTheConstants(uintptr_t* clean_page) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t block = std::max<uintptr_t>(65536, page);
  const uintptr_t at = (reinterpret_cast<uintptr_t>(kConstants) + block - 1) & ~(block - 1);
  EXPECT_LE(at + 2 * block, reinterpret_cast<uintptr_t>(kConstants) + sizeof kConstants);
  const volatile unsigned char* c = reinterpret_cast<const unsigned char*>(at);
  EXPECT_EQ(c[7] + c[block + 7], 0);  // both mapped, both the file's
  int fd = ::open("/proc/self/mem", O_RDWR | O_CLOEXEC);
  if (fd < 0) return nullptr;
  const char w = 'w';
  const ssize_t n = ::pwrite(fd, &w, 1, static_cast<off_t>(at + 7));
  ::close(fd);
  if (n != 1) return nullptr;
  *clean_page = at + block;
  return reinterpret_cast<unsigned char*>(at);
}

TEST(Resident, KeepsAPageTheProgramWroteInItsReadOnlySegment) {
  uintptr_t clean = 0;
  const volatile unsigned char* written = WriteAPageOfTheConstants(&clean);
  if (written == nullptr) GTEST_SKIP() << "this kernel refuses writes through /proc/self/mem";
  const SmapsMapping m = MappingOf(clean);
  ASSERT_GT(m.anonymous_kib, 0u);
  ASSERT_LT(m.anonymous_kib, m.rss_kib) << "the written page is not among clean ones: the test shows nothing";
  Result<ReleasedPages> released = ReleaseFilePages();
  ASSERT_TRUE(released.ok()) << released.status().ToString();
  // Whether the clean pages beside it went cannot be asserted: the page
  // cache may hold the file in large folios, and a fault on any page of
  // one (other constants, used by the test itself) maps all of it again.
  EXPECT_EQ(written[7], 'w') << "the written page was dropped and read again from the file";
}

// The same page swapped out: smaps counts it as Swap, not Anonymous.
TEST(Resident, KeepsAPageTheProgramWroteEvenWhenItIsSwappedOut) {
  std::ifstream swaps("/proc/swaps");
  std::string header, device;
  std::getline(swaps, header);
  if (!std::getline(swaps, device)) GTEST_SKIP() << "no swap on this machine";
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  uintptr_t clean = 0;
  unsigned char* p = WriteAPageOfTheConstants(&clean);
  if (p == nullptr) GTEST_SKIP() << "this kernel refuses writes through /proc/self/mem";
#ifndef MADV_PAGEOUT
  constexpr int MADV_PAGEOUT = 21;
#endif
  if (::madvise(p, page, MADV_PAGEOUT) != 0) GTEST_SKIP() << "MADV_PAGEOUT: " << std::strerror(errno);
  const SmapsMapping m = MappingOf(clean);
  if (m.swap_kib == 0 || m.anonymous_kib != 0 || m.rss_kib == 0) {
    GTEST_SKIP() << "the kernel did not swap the written page out alone";
  }
  Result<ReleasedPages> released = ReleaseFilePages();
  ASSERT_TRUE(released.ok()) << released.status().ToString();
  EXPECT_EQ(static_cast<volatile unsigned char*>(p)[7], 'w') << "the swapped-out written page was dropped";
}

TEST(Resident, LeavesFilesThatAreNotLoadedObjects) {
  harness::TempDir dir = testing::NewTempDir();
  const long page = ::sysconf(_SC_PAGESIZE);
  const std::string path = dir.path() + "/data";
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(static_cast<size_t>(4 * page), 'f');
  }
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  // A clean read-only mapping of a file no loaded object maps.
  void* q = ::mmap(nullptr, static_cast<size_t>(4 * page), PROT_READ, MAP_PRIVATE, fd, 0);
  ASSERT_NE(q, MAP_FAILED);
  ::close(fd);
  const volatile char* clean = static_cast<const char*>(q);
  char sum = 0;
  for (long i = 0; i < 4; ++i) sum = static_cast<char>(sum + clean[i * page]);
  EXPECT_EQ(sum, static_cast<char>(4 * 'f'));
  auto of = [q](const SmapsMapping& m) { return m.begin == reinterpret_cast<uintptr_t>(q); };
  const uint64_t before = ResidentKib(of);
  ASSERT_GT(before, 0u);
  ASSERT_TRUE(ReleaseFilePages().ok());
  EXPECT_EQ(ResidentKib(of), before) << "not a loaded object's segment: left alone";
  ::munmap(q, static_cast<size_t>(4 * page));
}

}  // namespace
}  // namespace edgesync

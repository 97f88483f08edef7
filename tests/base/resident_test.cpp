#include "base/resident.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <climits>
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
      "Locked:                0 kB\n"
      "VmFlags: rd ex mr mw me sd\n"
      "55d0c2000000-55d0c2021000 rw-p 00000000 00:00 0                          [heap]\n"
      "Rss:                 132 kB\n"
      "Anonymous:           132 kB\n"
      "7f00aa000000-7f00aa010000 r--p 00020000 08:01 77 /usr/lib/libx.so (deleted)\n"
      "Rss:                  64 kB\n"
      "Anonymous:             8 kB\n"
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
  EXPECT_EQ(paths[1], "[heap]");
  EXPECT_EQ(m[1].anonymous_kib, 132u);
  EXPECT_EQ(m[2].anonymous_kib, 8u);
  EXPECT_EQ(m[2].locked_kib, 64u);
  EXPECT_TRUE(m[2].locked_flag);
  EXPECT_EQ(paths[3], "");
  EXPECT_EQ(m[3].inode, 0u);

  EXPECT_FALSE(ParseSmaps("Rss: 4 kB\n", [](const SmapsMapping&) {}).ok());
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
  a.anonymous_kib = 4;  // its other pages still equal the file
  EXPECT_TRUE(IsReadOnlyFileMapping(a));
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

TEST(Resident, ReleasesTheCodePagesOfTheProgramAndItsLibrariesAndKeepsWhatWasWritten) {
  char exe[PATH_MAX] = {};
  ASSERT_GT(::readlink("/proc/self/exe", exe, sizeof exe - 1), 0);
  const std::string program = exe;
  auto of_program = [&](const SmapsMapping& m) { return IsReadOnlyFileMapping(m) && m.path == program; };
  auto file_pages = [](const SmapsMapping& m) { return m.rss_kib - m.anonymous_kib; };
  // Pages copied on write in read-only mappings: the relocated regions.
  auto written = [](const SmapsMapping& m) { return IsReadOnlyFileMapping(m) && m.anonymous_kib > 0; };
  auto anonymous_of = [](const SmapsMapping& m) { return m.anonymous_kib; };
  const uint64_t before = SumOf(of_program, file_pages);
  const uint64_t written_before = SumOf(written, anonymous_of);
  ASSERT_GT(before, 0u);
  ASSERT_GT(written_before, 0u) << "no relocated region to keep: the test shows nothing";

  Result<ReleasedPages> released = ReleaseFilePages();
  ASSERT_TRUE(released.ok()) << released.status().ToString();
  EXPECT_GT(released->mappings, 0u);
  EXPECT_GT(released->kib, 0u);
  // What runs since (the test, gtest, the smaps read) maps some pages again.
  EXPECT_LT(SumOf(of_program, file_pages), before);
  EXPECT_EQ(SumOf(written, anonymous_of), written_before) << "a page the process wrote was dropped";
  // Virtual calls through relocated tables, in this program and libstdc++.
  std::ostringstream still;
  still << "runs " << 42;
  EXPECT_EQ(still.str(), "runs 42");
}

TEST(Resident, LeavesWrittenPagesAndFilesThatAreNotLoadedObjects) {
  harness::TempDir dir = testing::NewTempDir();
  const long page = ::sysconf(_SC_PAGESIZE);
  const std::string path = dir.path() + "/data";
  {
    std::ofstream out(path, std::ios::binary);
    out << std::string(static_cast<size_t>(4 * page), 'f');
  }
  int fd = ::open(path.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  // A private mapping written once and then made read-only, as RELRO is.
  void* p = ::mmap(nullptr, static_cast<size_t>(4 * page), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ASSERT_NE(p, MAP_FAILED);
  char* written = static_cast<char*>(p);
  for (long i = 0; i < 4; ++i) written[i * page] = 'w';
  ASSERT_EQ(::mprotect(p, static_cast<size_t>(4 * page), PROT_READ), 0);
  // A clean read-only mapping of a file no loaded object maps.
  void* q = ::mmap(nullptr, static_cast<size_t>(4 * page), PROT_READ, MAP_PRIVATE, fd, 0);
  ASSERT_NE(q, MAP_FAILED);
  ::close(fd);
  const volatile char* clean = static_cast<const char*>(q);
  char sum = 0;
  for (long i = 0; i < 4; ++i) sum = static_cast<char>(sum + clean[i * page]);
  EXPECT_EQ(sum, static_cast<char>(4 * 'f'));
  auto of = [](void* at) {
    return [at](const SmapsMapping& m) { return m.begin == reinterpret_cast<uintptr_t>(at); };
  };
  const uint64_t clean_before = ResidentKib(of(q));
  ASSERT_GT(clean_before, 0u);

  ASSERT_TRUE(ReleaseFilePages().ok());
  for (long i = 0; i < 4; ++i) EXPECT_EQ(written[i * page], 'w') << "page " << i;
  EXPECT_EQ(ResidentKib(of(q)), clean_before) << "not a loaded object's segment: left alone";
  ::munmap(p, static_cast<size_t>(4 * page));
  ::munmap(q, static_cast<size_t>(4 * page));
}

}  // namespace
}  // namespace edgesync

// MemEnv: the in-memory Env the crash and full-disk tests stand on. Each test
// checks a behaviour those tests rely on and that a plausible bug would break.
#include "tests/support/mem_env.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <thread>
#include <vector>

using edgesync::AppendFile;
using edgesync::FileLock;
using edgesync::RandomRWFile;
using edgesync::Result;
using edgesync::Status;
using edgesync::testing::MemEnv;
using Code = edgesync::Status::Code;

namespace {

std::unique_ptr<AppendFile> MustAppend(MemEnv& env, const std::string& path) {
  Result<std::unique_ptr<AppendFile>> f = env.OpenAppend(path);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? std::move(f).value() : nullptr;
}

std::unique_ptr<RandomRWFile> MustRW(MemEnv& env, const std::string& path) {
  Result<std::unique_ptr<RandomRWFile>> f = env.OpenRandomRW(path, /*create=*/true);
  EXPECT_TRUE(f.ok()) << f.status().ToString();
  return f.ok() ? std::move(f).value() : nullptr;
}

// The content of `path`, or "<missing>" when it does not exist.
std::string Content(MemEnv& env, const std::string& path) {
  Result<std::string> r = env.ReadFile(path, edgesync::kMaxOwnFileBytes);
  if (!r.ok()) return r.status().code() == Code::kNotFound ? "<missing>" : r.status().ToString();
  return *r;
}

bool HasMessage(const Status& s, const std::string& part) {
  return s.message().find(part) != std::string::npos;
}

}  // namespace

TEST(MemEnv, FilesAndDirectories) {
  MemEnv env;
  EXPECT_EQ(env.OpenAppend("d/f").status().code(), Code::kNotFound);  // no parent dir
  EXPECT_EQ(env.OpenRandomRW("d/f", true).status().code(), Code::kNotFound);
  ASSERT_TRUE(env.CreateDirs("d//sub/").ok());
  EXPECT_TRUE(env.Exists("d"));
  EXPECT_TRUE(env.Exists("d/sub"));
  EXPECT_FALSE(env.Exists("d/f"));
  EXPECT_EQ(env.OpenRandomRW("d/f", /*create=*/false).status().code(), Code::kNotFound);
  EXPECT_EQ(env.ReadFile("d/f", edgesync::kMaxOwnFileBytes).status().code(), Code::kNotFound);
  EXPECT_EQ(env.FileSize("d/f").status().code(), Code::kNotFound);
  EXPECT_EQ(env.ListDir("nope").status().code(), Code::kNotFound);

  auto b = MustAppend(env, "d/b");
  ASSERT_TRUE(b->Append("hello ").ok());
  ASSERT_TRUE(b->Append("world").ok());
  EXPECT_EQ(Content(env, "d//b"), "hello world");
  EXPECT_EQ(*env.FileSize("d/b"), 11u);
  auto again = MustAppend(env, "d/b");  // reopening appends, does not truncate
  ASSERT_TRUE(again->Append("!").ok());
  EXPECT_EQ(Content(env, "d/b"), "hello world!");
  MustAppend(env, "d/a");
  MustAppend(env, "d/sub/deep");  // not a direct child of d

  Result<std::vector<std::string>> names = env.ListDir("d/");
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "sub"}));
  EXPECT_FALSE(env.ReadFile("d", edgesync::kMaxOwnFileBytes).ok());  // a directory is not a file

  ASSERT_TRUE(env.Rename("d/b", "d/a").ok());  // replaces the target
  EXPECT_EQ(Content(env, "d/a"), "hello world!");
  EXPECT_FALSE(env.Exists("d/b"));
  EXPECT_EQ(env.Rename("d/b", "d/c").code(), Code::kNotFound);
  EXPECT_EQ(env.Rename("d/a", "nodir/a").code(), Code::kNotFound);
  ASSERT_TRUE(env.RemoveFile("d/a").ok());
  EXPECT_FALSE(env.Exists("d/a"));
  EXPECT_TRUE(env.RemoveFile("d/a").ok());  // missing: still ok
  EXPECT_EQ(*env.ListDir("d"), (std::vector<std::string>{"sub"}));

  ASSERT_TRUE(env.Rename("d/sub", "moved").ok());  // a directory moves with its files
  EXPECT_EQ(Content(env, "moved/deep"), "");
  EXPECT_FALSE(env.Exists("d/sub/deep"));
}

TEST(MemEnv, TypeOfAndRemoveDir) {
  MemEnv env;
  ASSERT_TRUE(env.CreateDirs("d/sub").ok());
  MustAppend(env, "d/f");
  EXPECT_EQ(*env.TypeOf("d"), edgesync::Env::FileType::kDirectory);
  EXPECT_EQ(*env.TypeOf("d/f"), edgesync::Env::FileType::kRegular);
  EXPECT_EQ(env.TypeOf("d/missing").status().code(), Code::kNotFound);
  EXPECT_FALSE(env.RemoveDir("d").ok());    // not empty
  EXPECT_FALSE(env.RemoveDir("d/f").ok());  // a file
  ASSERT_TRUE(env.RemoveDir("d/sub").ok());
  EXPECT_FALSE(env.Exists("d/sub"));
  EXPECT_TRUE(env.RemoveDir("d/sub").ok());  // missing: still ok
  ASSERT_TRUE(env.RemoveFile("d/f").ok());
  ASSERT_TRUE(env.RemoveDir("d").ok());
  EXPECT_EQ(*env.ListDir(""), std::vector<std::string>{});
}

TEST(MemEnv, RandomRWFileReadsShortAndZeroFillsHoles) {
  MemEnv env;
  auto f = MustRW(env, "db");
  ASSERT_TRUE(f->Write(0, "abc").ok());
  ASSERT_TRUE(f->Write(5, "xy").ok());  // beyond the end: a hole of zeros
  EXPECT_EQ(Content(env, "db"), std::string("abc\0\0xy", 7));
  ASSERT_TRUE(f->Write(1, "B").ok());
  char buf[16];
  Result<size_t> n = f->Read(4, sizeof buf, buf);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(std::string(buf, *n), std::string("\0xy", 3));  // short at the end
  EXPECT_EQ(*f->Read(7, 4, buf), 0u);
  EXPECT_EQ(*f->Read(100, 4, buf), 0u);
  ASSERT_TRUE(f->Truncate(2).ok());
  EXPECT_EQ(*f->Size(), 2u);
  EXPECT_EQ(Content(env, "db"), "aB");
  EXPECT_EQ(env.UsedBytes(), 2u);
}

TEST(MemEnv, LockIsExclusiveUntilReleased) {
  MemEnv env;
  EXPECT_EQ(env.LockFile("nodir/LOCK").status().code(), Code::kNotFound);
  Result<std::unique_ptr<FileLock>> first = env.LockFile("LOCK");
  ASSERT_TRUE(first.ok());
  EXPECT_TRUE(env.Exists("LOCK"));  // created, like flock on an opened file
  EXPECT_EQ(env.LockFile("LOCK").status().code(), Code::kUnavailable);
  EXPECT_TRUE(env.LockFile("OTHER").ok());  // per path
  first->reset();
  EXPECT_TRUE(env.LockFile("LOCK").ok());
}

TEST(MemEnv, DropKeepsSyncedAppendsOnly) {
  MemEnv env;
  ASSERT_TRUE(env.CreateDirs("j").ok());
  auto f = MustAppend(env, "j/log");
  ASSERT_TRUE(env.SyncDir("j").ok());
  ASSERT_TRUE(f->Append("one.").ok());
  ASSERT_TRUE(f->Sync().ok());
  ASSERT_TRUE(f->Append("two.").ok());
  EXPECT_EQ(env.SyncCount("j/log"), 1u);
  EXPECT_EQ(env.SyncedContent("j/log"), "one.");
  env.PowerCut(MemEnv::CutMode::kDrop);
  EXPECT_EQ(Content(env, "j/log"), "one.");
  EXPECT_EQ(env.UsedBytes(), 4u);
}

TEST(MemEnv, TearLeavesSyncedContentPlusAPrefixOfTheRest) {
  const std::string synced = "synced|";
  const std::string full = synced + "record-1|record-2|record-3|";
  int nothing_extra = 0, torn_mid_write = 0, everything = 0;
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    MemEnv env(seed);
    auto f = MustAppend(env, "log");
    ASSERT_TRUE(env.SyncDir("").ok());
    ASSERT_TRUE(f->Append(synced).ok());
    ASSERT_TRUE(f->Sync().ok());
    for (const char* r : {"record-1|", "record-2|", "record-3|"}) ASSERT_TRUE(f->Append(r).ok());
    env.PowerCut(MemEnv::CutMode::kTear);
    std::string got = Content(env, "log");
    ASSERT_GE(got.size(), synced.size()) << "seed " << seed;
    ASSERT_EQ(full.compare(0, got.size(), got), 0) << "seed " << seed << ": " << got;
    if (got == synced) ++nothing_extra;
    if (got == full) ++everything;
    if (got.back() != '|') ++torn_mid_write;
    EXPECT_EQ(env.SyncedContent("log"), got);  // what survived is now on disk
  }
  EXPECT_GT(nothing_extra, 0);
  EXPECT_GT(torn_mid_write, 0);
  EXPECT_GT(everything, 0);
}

TEST(MemEnv, TearReplaysTruncatesInOrder) {
  // Synced "0123456789", then Truncate(4) and Write(4, "abcdef"): a cut can
  // leave only the synced content, the truncated one, or that plus a prefix
  // of "abcdef" -- never the old tail mixed with the new bytes.
  std::vector<std::string> allowed = {"0123456789", "0123"};
  for (size_t i = 1; i <= 6; ++i) allowed.push_back("0123" + std::string("abcdef", i));
  bool saw_truncated = false;
  for (uint64_t seed = 1; seed <= 100; ++seed) {
    MemEnv env(seed);
    auto f = MustRW(env, "db");
    ASSERT_TRUE(env.SyncDir("").ok());
    ASSERT_TRUE(f->Write(0, "0123456789").ok());
    ASSERT_TRUE(f->Sync().ok());
    ASSERT_TRUE(f->Truncate(4).ok());
    ASSERT_TRUE(f->Write(4, "abcdef").ok());
    env.PowerCut(MemEnv::CutMode::kTear);
    std::string got = Content(env, "db");
    EXPECT_NE(std::find(allowed.begin(), allowed.end(), got), allowed.end()) << got;
    saw_truncated |= got == "0123";
  }
  EXPECT_TRUE(saw_truncated);
}

TEST(MemEnv, NewFileIsDurableByNameOnlyAfterSyncDir) {
  MemEnv env;
  ASSERT_TRUE(env.CreateDirs("d").ok());
  auto kept = MustAppend(env, "d/kept");
  auto renamed = MustAppend(env, "d/tmp");
  ASSERT_TRUE(env.SyncDir("d").ok());
  auto later = MustAppend(env, "d/later");  // created after the SyncDir
  auto removed = MustAppend(env, "d/removed");
  ASSERT_TRUE(env.SyncDir("d").ok());
  ASSERT_TRUE(env.RemoveFile("d/removed").ok());   // durable at once
  auto fresh = MustAppend(env, "d/fresh");
  ASSERT_TRUE(env.Rename("d/fresh", "d/tmp2").ok());  // durable at once
  auto lost = MustAppend(env, "d/lost");
  ASSERT_TRUE(lost->Append("x").ok());
  ASSERT_TRUE(lost->Sync().ok());  // content synced, the name is not

  env.PowerCut(MemEnv::CutMode::kDrop);
  EXPECT_EQ(*env.ListDir("d"), (std::vector<std::string>{"kept", "later", "tmp", "tmp2"}));
  EXPECT_TRUE(env.Exists("d"));  // directories are durable once created
}

TEST(MemEnv, HandlesAndLocksFromBeforeACutAreDead) {
  MemEnv env;
  auto f = MustAppend(env, "log");
  auto rw = MustRW(env, "db");
  ASSERT_TRUE(env.SyncDir("").ok());
  Result<std::unique_ptr<FileLock>> old_lock = env.LockFile("LOCK");
  ASSERT_TRUE(old_lock.ok());
  env.PowerCut(MemEnv::CutMode::kDrop);

  Status s = f->Append("x");
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_TRUE(HasMessage(s, "stale handle after power cut")) << s.ToString();
  EXPECT_FALSE(f->Sync().ok());
  EXPECT_FALSE(f->Close().ok());
  char buf[4];
  EXPECT_FALSE(rw->Read(0, 4, buf).ok());
  EXPECT_FALSE(rw->Write(0, "x").ok());
  EXPECT_FALSE(rw->Truncate(0).ok());
  EXPECT_FALSE(rw->Size().ok());
  EXPECT_EQ(Content(env, "log"), "");

  // The cut released the lock; the old FileLock going away must not release
  // the new holder's.
  Result<std::unique_ptr<FileLock>> new_lock = env.LockFile("LOCK");
  ASSERT_TRUE(new_lock.ok());
  old_lock->reset();
  EXPECT_EQ(env.LockFile("LOCK").status().code(), Code::kUnavailable);

  auto g = MustAppend(env, "log");  // the env itself works again
  EXPECT_TRUE(g->Append("y").ok());
}

// A workload of 8 mutating operations, run until the first failure; returns
// how many succeeded.
int Workload(MemEnv& env) {
  int done = 0;
  auto step = [&done](const Status& s) {
    if (s.ok()) ++done;
    return s.ok();
  };
  Result<std::unique_ptr<AppendFile>> f = env.OpenAppend("log");  // creates
  if (!step(f.status())) return done;
  if (!step((*f)->Append("a")) || !step((*f)->Sync()) || !step(env.SyncDir(""))) return done;
  Result<std::unique_ptr<RandomRWFile>> rw = env.OpenRandomRW("db", /*create=*/true);
  if (!step(rw.status())) return done;
  if (!step((*rw)->Write(0, "b")) || !step((*rw)->Truncate(0)) ||
      !step(env.Rename("db", "db2"))) {
    return done;
  }
  return done;
}

TEST(MemEnv, CutPowerAfterLetsExactlyNOpsSucceed) {
  int total;
  {
    MemEnv env;
    total = Workload(env);
    ASSERT_EQ(total, 8);
    EXPECT_EQ(env.mutating_ops(), 8u);
    EXPECT_FALSE(env.power_lost());
  }
  for (int n = 0; n <= total; ++n) {
    MemEnv env;
    ASSERT_TRUE(env.CreateDirs("x").ok());  // not a mutating op
    env.CutPowerAfter(static_cast<uint64_t>(n));
    int done = Workload(env);
    EXPECT_EQ(done, n) << "cut after " << n;
    EXPECT_EQ(env.mutating_ops(), static_cast<uint64_t>(n));
    EXPECT_EQ(env.power_lost(), n < total);
    if (n < total) {
      Result<std::string> r = env.ReadFile("x", edgesync::kMaxOwnFileBytes);  // everything fails now...
      EXPECT_TRUE(HasMessage(r.status(), "injected: power lost")) << r.status().ToString();
      EXPECT_FALSE(env.ListDir("").ok());
      EXPECT_FALSE(env.CreateDirs("y").ok());
      EXPECT_TRUE(env.Exists("x"));  // ...but Exists and the clocks
      EXPECT_GT(env.NowMicros(), 0);
    }
    env.PowerCut(MemEnv::CutMode::kDrop);
    EXPECT_FALSE(env.power_lost());
    EXPECT_TRUE(env.OpenAppend("after").ok());
  }
}

TEST(MemEnv, FullDiskRefusesWholeWritesAndFreeBytesShrinks) {
  MemEnv env;
  EXPECT_EQ(*env.FreeBytes(""), uint64_t{1} << 40);  // unlimited
  env.SetCapacity(100);
  EXPECT_EQ(*env.FreeBytes(""), 100u);
  EXPECT_EQ(env.FreeBytes("nope").status().code(), Code::kNotFound);
  auto f = MustAppend(env, "log");
  ASSERT_TRUE(f->Append(std::string(60, 'a')).ok());
  EXPECT_EQ(*env.FreeBytes("log"), 40u);
  Status s = f->Append(std::string(41, 'b'));
  EXPECT_EQ(s.code(), Code::kNoSpace);
  EXPECT_TRUE(HasMessage(s, "No space left on device")) << s.ToString();
  EXPECT_EQ(*env.FileSize("log"), 60u);  // nothing written
  auto rw = MustRW(env, "db");
  EXPECT_EQ(rw->Write(30, std::string(11, 'c')).code(), Code::kNoSpace);  // a hole counts
  EXPECT_EQ(rw->Truncate(41).code(), Code::kNoSpace);
  EXPECT_EQ(*rw->Size(), 0u);
  ASSERT_TRUE(rw->Write(0, std::string(40, 'c')).ok());  // exactly full
  EXPECT_EQ(*env.FreeBytes(""), 0u);
  EXPECT_TRUE(rw->Write(10, "overwrite").ok());  // no growth: still fits
  EXPECT_EQ(env.UsedBytes(), 100u);
  ASSERT_TRUE(env.RemoveFile("log").ok());
  EXPECT_EQ(*env.FreeBytes(""), 60u);
  EXPECT_TRUE(f->Append("z").ok());  // the removed file no longer counts
  EXPECT_EQ(*env.FreeBytes(""), 60u);
}

TEST(MemEnv, FailWritesHitsMatchingPathsUntilCleared) {
  MemEnv env;
  ASSERT_TRUE(env.CreateDirs("journal").ok());
  auto bad = MustAppend(env, "journal/j-1");
  auto rw = MustRW(env, "j-db");
  auto good = MustAppend(env, "store");
  ASSERT_TRUE(bad->Append("kept").ok());
  env.FailWrites("j-");
  Status s = bad->Append("lost");
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_TRUE(HasMessage(s, "injected: Input/output error")) << s.ToString();
  EXPECT_FALSE(bad->Sync().ok());
  EXPECT_FALSE(rw->Write(0, "x").ok());
  EXPECT_FALSE(rw->Truncate(5).ok());
  EXPECT_EQ(env.SyncCount("journal/j-1"), 0u);
  EXPECT_EQ(Content(env, "journal/j-1"), "kept");
  EXPECT_EQ(Content(env, "j-db"), "");
  EXPECT_TRUE(good->Append("fine").ok());
  env.ClearFailures();
  EXPECT_TRUE(bad->Append("again").ok());
  EXPECT_TRUE(bad->Sync().ok());
  EXPECT_EQ(env.SyncedContent("journal/j-1"), "keptagain");
}

TEST(MemEnv, AdvanceClocksMovesBothClocks) {
  MemEnv env;
  const int64_t hour = int64_t{3600} * 1000 * 1000;
  int64_t wall = env.NowMicros();
  int64_t mono = env.MonotonicMicros();
  env.AdvanceClocks(hour);
  EXPECT_GE(env.NowMicros() - wall, hour);
  EXPECT_LT(env.NowMicros() - wall, 2 * hour);
  EXPECT_GE(env.MonotonicMicros() - mono, hour);
}

TEST(MemEnv, ConcurrentWritersAndReaders) {
  MemEnv env;
  ASSERT_TRUE(env.CreateDirs("d").ok());
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&env, t] {
      auto f = env.OpenAppend("d/f" + std::to_string(t));
      ASSERT_TRUE(f.ok());
      for (int i = 0; i < 300; ++i) {
        ASSERT_TRUE((*f)->Append("0123456789").ok());
        if (i % 50 == 0) {
          ASSERT_TRUE((*f)->Sync().ok());
        }
      }
    });
  }
  for (int i = 0; i < 100; ++i) {
    (void)env.ListDir("d");
    (void)env.FreeBytes("d");
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(env.UsedBytes(), 3u * 300 * 10);
}

TEST(MemEnv, HandlesMayOutliveTheEnv) {
  std::unique_ptr<AppendFile> f;
  std::unique_ptr<FileLock> lock;
  {
    MemEnv env;
    f = MustAppend(env, "log");
    lock = std::move(env.LockFile("LOCK")).value();
  }
  EXPECT_TRUE(f->Append("x").ok());
  lock.reset();
}

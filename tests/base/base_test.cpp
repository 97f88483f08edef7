#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <set>
#include <thread>
#include <vector>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/backoff.h"
#include "base/env.h"
#include "base/printable.h"
#include "base/status.h"
#include "base/token_bucket.h"
#include "tests/support/temp_dir.h"
#include "tests/support/virtual_clock_env.h"

namespace edgesync {
namespace {

TEST(Crc32c, KnownValues) {
  EXPECT_EQ(crc32c::Value("123456789"), 0xE3069283u);  // the standard check value
  EXPECT_EQ(crc32c::Value(""), 0u);
  EXPECT_EQ(crc32c::Extend(crc32c::Value("1234"), "56789"), crc32c::Value("123456789"));
}

// RFC 3720 (iSCSI), appendix B.4, for whichever implementation this build
// runs (crc32c::Implementation()) and for the portable one.
TEST(Crc32c, IscsiTestVectors) {
  std::string zeros(32, '\0'), ones(32, '\xFF'), up(32, '\0'), down(32, '\0');
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<char>(i);
    down[i] = static_cast<char>(31 - i);
  }
  // An iSCSI SCSI Read (10) command PDU.
  const unsigned char read_pdu[48] = {
      0x01, 0xC0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
      0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
      0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  const std::string pdu(reinterpret_cast<const char*>(read_pdu), sizeof read_pdu);
  const std::pair<std::string, uint32_t> vectors[] = {
      {zeros, 0x8A9136AAu}, {ones, 0x62A8AB43u}, {up, 0x46DD794Eu}, {down, 0x113FDB5Cu}, {pdu, 0xD9963A56u},
      {"123456789", 0xE3069283u}};
  for (const auto& [data, crc] : vectors) {
    EXPECT_EQ(crc32c::Value(data), crc) << crc32c::Implementation();
    EXPECT_EQ(crc32c::ExtendPortable(0, data), crc);
  }
}

// Extend and the portable code agree on every length and alignment the
// word-at-a-time paths of either treat differently, and across slices.
TEST(Crc32c, EveryLengthAndAlignmentMatchesThePortableCode) {
  std::string data(4096 + 64, '\0');
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (char& c : data) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    c = static_cast<char>(x);
  }
  for (size_t offset = 0; offset < 16; ++offset) {
    for (size_t len = 0; len <= 300; ++len) {
      std::string_view piece = std::string_view(data).substr(offset, len);
      ASSERT_EQ(crc32c::Value(piece), crc32c::ExtendPortable(0, piece)) << offset << " " << len;
    }
  }
  const std::string_view all(data);
  const uint32_t whole = crc32c::ExtendPortable(0, all);
  EXPECT_EQ(crc32c::Value(all), whole);
  for (size_t cut : {size_t{1}, size_t{7}, size_t{8}, size_t{1000}, all.size() - 1}) {
    EXPECT_EQ(crc32c::Extend(crc32c::Value(all.substr(0, cut)), all.substr(cut)), whole) << cut;
    EXPECT_EQ(crc32c::ExtendPortable(crc32c::ExtendPortable(0, all.substr(0, cut)), all.substr(cut)), whole);
  }
}

TEST(Coding, RoundTripsAndDetectsTruncation) {
  std::string s;
  PutU8(&s, 0xAB);
  PutU16(&s, 0xBEEF);
  PutU32(&s, 0xDEADBEEF);
  PutU64(&s, 0x0123456789ABCDEFull);
  PutI64(&s, -42);
  ASSERT_EQ(s.size(), 1u + 2 + 4 + 8 + 8);
  EXPECT_EQ(static_cast<unsigned char>(s[1]), 0xEF);  // little endian
  ByteReader r(s);
  EXPECT_EQ(r.U8(), 0xAB);
  EXPECT_EQ(r.U16(), 0xBEEF);
  EXPECT_EQ(r.U32(), 0xDEADBEEFu);
  EXPECT_EQ(r.U64(), 0x0123456789ABCDEFull);
  EXPECT_EQ(r.I64(), -42);
  EXPECT_FALSE(r.failed());
  EXPECT_EQ(r.U8(), 0);
  EXPECT_TRUE(r.failed());
  ByteReader big("ab");
  EXPECT_TRUE(big.Bytes(3).empty());
  EXPECT_TRUE(big.failed());
}

TEST(Status, CodesSayWhatToDo) {
  EXPECT_TRUE(Status::OK().ok());
  EXPECT_TRUE(Status::IOError("x").retriable());
  EXPECT_TRUE(Status::Unavailable("x").retriable());
  EXPECT_FALSE(Status::InvalidArgument("x").retriable());
  EXPECT_FALSE(Status::Corruption("x").retriable());
  EXPECT_EQ(Status::Corruption("bad crc").ToString(), "corruption: bad crc");
  Result<int> r = Status::NotFound("nope");
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kNotFound);
  Result<int> v = 7;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 7);
}

// ReadFile reads what the configuration, a profile, a script or the fleet's
// drop directory names: a FIFO there must not block it, a device must not be
// read forever, and a file cannot be larger than its bound.
TEST(PosixEnv, ReadFileTakesOnlyRegularFilesWithinTheBoundAndNeverBlocks) {
  harness::TempDir dir = testing::NewTempDir();
  Env* env = Env::Default();
  ASSERT_EQ(::mkfifo((dir / "fifo").c_str(), 0600), 0);
  ASSERT_EQ(::symlink("/dev/zero", (dir / "zero").c_str()), 0);
  ASSERT_TRUE(env->CreateDirs(dir / "d").ok());
  {
    auto f = env->OpenAppend(dir / "f");
    ASSERT_TRUE(f.ok() && (*f)->Append("0123456789").ok() && (*f)->Close().ok());
  }
  ASSERT_EQ(::symlink((dir / "f").c_str(), (dir / "link").c_str()), 0);
  auto read = [&](const std::string& path, uint64_t max) {
    auto done = std::async(std::launch::async, [&] { return env->ReadFile(path, max); });
    if (done.wait_for(std::chrono::seconds(20)) != std::future_status::ready) {
      ADD_FAILURE() << "ReadFile(" << path << ") blocked";
      std::_Exit(1);
    }
    return done.get();
  };
  const std::pair<std::string, std::string> refused[] = {
      {dir / "fifo", "is a FIFO, not a regular file"},
      {dir / "zero", "is a character device, not a regular file"},
      {dir / "d", "is a directory, not a regular file"},
  };
  for (const auto& [path, why] : refused) {
    Result<std::string> r = read(path, 1 << 20);
    ASSERT_FALSE(r.ok()) << path;
    EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
    EXPECT_NE(r.status().message().find(why), std::string::npos) << r.status().message();
  }
  Result<std::string> r = read(dir / "f", 9);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("10 bytes, more than the 9 allowed"), std::string::npos) << r.status().message();
  r = read(dir / "link", 10);  // a link to a regular file is followed
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, "0123456789");
}

TEST(Printable, WhatAPeerSentStaysOnOneLineAndSaysWhatItHeld) {
  EXPECT_EQ(Printable("plain text, ünïcödé €"), "plain text, ünïcödé €");
  EXPECT_FALSE(NeedsEscaping("plain text, ünïcödé €"));
  EXPECT_EQ(Printable("a\\nb"), "a\\\\nb") << "a backslash is doubled: escapes are ours alone";
  EXPECT_EQ(Printable("line\nedgesync-unpack: forged\r\t"), "line\\nedgesync-unpack: forged\\r\\t");
  EXPECT_EQ(Printable(std::string("nul\0esc\x1b[2Jdel\x7f", 15)), "nul\\x00esc\\x1B[2Jdel\\x7F");
  EXPECT_EQ(Printable("bad \xff\xc3( utf8 \xed\xa0\x80"), "bad \\xFF\\xC3( utf8 \\xED\\xA0\\x80");
  EXPECT_EQ(Printable("c1 \xc2\x85 ls \xe2\x80\xa8 rlo \xe2\x80\xae"), "c1 \\u{0085} ls \\u{2028} rlo \\u{202E}");
  for (std::string s : {"x\n", "\\", "\xff", "\xe2\x80\xae"}) EXPECT_TRUE(NeedsEscaping(s)) << s;
}

TEST(PosixEnv, FilesAndDirectories) {
  harness::TempDir dir = testing::NewTempDir();
  Env* env = Env::Default();
  std::string sub = dir / "a/b/c";
  ASSERT_TRUE(env->CreateDirs(sub).ok());
  ASSERT_TRUE(env->Exists(sub));
  {
    auto f = env->OpenAppend(sub + "/x.log");
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    ASSERT_TRUE((*f)->Append("hello ").ok());
    ASSERT_TRUE((*f)->Append("world").ok());
    ASSERT_TRUE((*f)->Sync().ok());
    ASSERT_TRUE((*f)->Close().ok());
  }
  auto text = env->ReadFile(sub + "/x.log", kMaxOwnFileBytes);
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "hello world");
  EXPECT_EQ(env->ReadFile(sub + "/missing", kMaxOwnFileBytes).status().code(), Status::Code::kNotFound);
  ASSERT_TRUE(env->Rename(sub + "/x.log", sub + "/y.log").ok());
  auto names = env->ListDir(sub);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, std::vector<std::string>{"y.log"});
  ASSERT_TRUE(env->RemoveFile(sub + "/y.log").ok());
  EXPECT_TRUE(env->RemoveFile(sub + "/y.log").ok());  // removing twice is fine
  EXPECT_FALSE(env->Exists(sub + "/y.log"));
  EXPECT_GT(env->NowMicros(), 1'600'000'000'000'000);
  int64_t a = env->MonotonicMicros();
  EXPECT_GE(env->MonotonicMicros(), a);
}

TEST(PosixEnv, TypeOfDoesNotFollowLinksAndRemoveDirTakesEmptyDirectories) {
  harness::TempDir dir = testing::NewTempDir();
  Env* env = Env::Default();
  ASSERT_TRUE(env->CreateDirs(dir / "d/sub").ok());
  ASSERT_TRUE((*env->OpenAppend(dir / "d/f"))->Close().ok());
  ASSERT_EQ(::symlink((dir / "d").c_str(), (dir / "link").c_str()), 0);
  EXPECT_EQ(*env->TypeOf(dir / "d"), Env::FileType::kDirectory);
  EXPECT_EQ(*env->TypeOf(dir / "d/f"), Env::FileType::kRegular);
  EXPECT_EQ(*env->TypeOf(dir / "link"), Env::FileType::kSymlink);
  EXPECT_EQ(*env->TypeOf("/dev/null"), Env::FileType::kOther);
  EXPECT_EQ(env->TypeOf(dir / "missing").status().code(), Status::Code::kNotFound);
  EXPECT_FALSE(env->RemoveDir(dir / "d").ok());  // not empty
  ASSERT_TRUE(env->RemoveDir(dir / "d/sub").ok());
  EXPECT_FALSE(env->Exists(dir / "d/sub"));
  EXPECT_TRUE(env->RemoveDir(dir / "d/sub").ok());  // missing: still ok
}

TEST(TokenBucket, UnlimitedNeverWaits) {
  TokenBucket b(0, 0, 0);
  b.Take(1 << 30, 0);
  EXPECT_EQ(b.WaitMicros(0), 0);
}

TEST(TokenBucket, HoldsTheRateOverTimeWithOneBurst) {
  // 1000 bytes/s, burst 1000: the first 1000 bytes go at once, then one
  // 100-byte message every 100 ms.
  TokenBucket b(1000, 1000, 0);
  int64_t now = 0;
  uint64_t sent = 0;
  while (now <= 10'000'000) {  // 10 s of simulated time
    int64_t wait = b.WaitMicros(now);
    if (wait > 0) {
      now += wait;
      continue;
    }
    b.Take(100, now);
    sent += 100;
    // Never more than burst + rate * elapsed + one message.
    ASSERT_LE(sent, 1000 + static_cast<uint64_t>(now / 1000) + 100) << "at " << now;
  }
  EXPECT_GE(sent, 1000u + 10'000u - 200u) << "the bucket must not hold back more than it should";
}

TEST(TokenBucket, AMessageLargerThanTheBurstGoesAndThenIsPaidFor) {
  TokenBucket b(1000, 100, 0);
  EXPECT_EQ(b.WaitMicros(0), 0);
  b.Take(5000, 0);  // 4900 bytes of debt: 4.9 s
  const int64_t wait = b.WaitMicros(0);
  EXPECT_GE(wait, 4'900'000);
  EXPECT_LE(wait, 4'900'010);
  EXPECT_EQ(b.WaitMicros(wait), 0);
  // Idle time fills the bucket only up to the burst.
  EXPECT_EQ(b.WaitMicros(wait + 60'000'000), 0);
  b.Take(200, wait + 60'000'000);
  EXPECT_GT(b.WaitMicros(wait + 60'000'000), 0) << "100 bytes of burst, 200 taken";
}

TEST(PosixEnv, WriteFileAtomicallyReplacesTheWholeFileWithTheModeAskedFor) {
  harness::TempDir dir = testing::NewTempDir();
  Env* env = Env::Default();
  const std::string path = dir / "metrics.prom";
  ASSERT_TRUE(env->WriteFileAtomically(path, "a longer first version\n").ok());
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u) << "the default is private";
  const mode_t old_umask = ::umask(022);
  Status written = env->WriteFileAtomically(path, "second\n", AtomicWriteOptions{.sync = false, .mode = 0666});
  ::umask(old_umask);
  ASSERT_TRUE(written.ok()) << written.ToString();
  EXPECT_EQ(*env->ReadFile(path, 100), "second\n");
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u) << "0666 less the umask, as open(2) gives";
  EXPECT_FALSE(env->Exists(path + ".tmp"));
}

TEST(PosixEnv, ACondVarWaitEndsAtItsDeadlineOrOnANotify) {
  Env* env = Env::Default();
  std::unique_ptr<CondVar> cv = env->NewCondVar();
  std::mutex mu;
  std::unique_lock<std::mutex> lock(mu);
  const int64_t start = env->MonotonicMicros();
  EXPECT_FALSE(WaitUntil(*cv, lock, start + 20'000, [] { return false; }));
  EXPECT_GE(env->MonotonicMicros() - start, 20'000) << "not before the deadline";
  bool ready = false;
  std::thread notifier([&] {
    std::lock_guard<std::mutex> l(mu);
    ready = true;
    cv->NotifyAll();
  });
  EXPECT_TRUE(WaitUntil(*cv, lock, env->MonotonicMicros() + 60'000'000, [&] { return ready; }));
  lock.unlock();
  notifier.join();
  EXPECT_LT(env->MonotonicMicros() - start, 30'000'000) << "the notify ended the wait, not the deadline";
}

TEST(Backoff, TheJitterComesFromTheEnv) {
  testing::VirtualClockEnv a(Env::Default(), 0, /*seed=*/7), b(Env::Default(), 0, /*seed=*/7);
  Backoff x(1000, 1'000'000, &a), y(1000, 1'000'000, &b);
  std::vector<int64_t> xs, ys;
  for (int i = 0; i < 12; ++i) {
    xs.push_back(x.NextMicros());
    ys.push_back(y.NextMicros());
    EXPECT_LE(xs.back(), std::min<int64_t>(1'000'000, 1000ll << i));
  }
  EXPECT_EQ(xs, ys) << "one seed, one sequence of pauses";
  EXPECT_NE(std::set<int64_t>(xs.begin(), xs.end()).size(), 1u);
}

TEST(VirtualClock, SleepsAndTimedWaitsEndWhenVirtualTimeReachesTheirDeadline) {
  testing::VirtualClockEnv env(Env::Default());
  const int64_t t0 = env.MonotonicMicros();
  const int64_t wall0 = env.NowMicros();
  std::atomic<bool> slept{false};
  std::thread sleeper([&] {
    env.SleepForMicros(3'600'000'000);  // an hour
    slept = true;
  });
  std::unique_ptr<CondVar> cv = env.NewCondVar();
  std::mutex mu;
  bool timed_out = false;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    timed_out = !cv->WaitUntil(lock, t0 + 7'200'000'000);  // two hours
  });
  ASSERT_TRUE(env.AwaitIdleWaiters(2)) << "both block while virtual time stands";
  env.Advance(3'599'999'999);
  ASSERT_TRUE(env.AwaitIdleWaiters(2)) << "a microsecond short of the hour: both still wait";
  EXPECT_FALSE(slept);
  env.Advance(1);
  sleeper.join();
  EXPECT_TRUE(slept);
  EXPECT_EQ(env.IdleWaiters(), 1);
  env.Advance(3'600'000'000);
  waiter.join();
  EXPECT_TRUE(timed_out);
  EXPECT_EQ(env.MonotonicMicros() - t0, 7'200'000'000);
  EXPECT_EQ(env.NowMicros() - wall0, 7'200'000'000) << "both clocks move together";
}

TEST(VirtualClock, ANotifyEndsATimedWaitWithoutTimeMoving) {
  testing::VirtualClockEnv env(Env::Default());
  std::unique_ptr<CondVar> cv = env.NewCondVar();
  std::mutex mu;
  bool ready = false, got = false;
  std::thread waiter([&] {
    std::unique_lock<std::mutex> lock(mu);
    got = WaitUntil(*cv, lock, env.MonotonicMicros() + 1'000'000, [&] { return ready; });
  });
  ASSERT_TRUE(env.AwaitIdleWaiters(1));
  {
    std::lock_guard<std::mutex> lock(mu);
    ready = true;
  }
  cv->NotifyOne();
  waiter.join();
  EXPECT_TRUE(got);
  EXPECT_EQ(env.IdleWaiters(), 0);
}

}  // namespace
}  // namespace edgesync

#include <gtest/gtest.h>
#include <unistd.h>

#include "base/coding.h"
#include "base/crc32c.h"
#include "base/env.h"
#include "base/status.h"
#include "base/token_bucket.h"
#include "tests/support/temp_dir.h"

namespace edgesync {
namespace {

TEST(Crc32c, KnownValues) {
  EXPECT_EQ(crc32c::Value("123456789"), 0xE3069283u);  // the standard check value
  EXPECT_EQ(crc32c::Value(""), 0u);
  std::string zeros(32, '\0');
  EXPECT_EQ(crc32c::Value(zeros), 0x8A9136AAu);  // RFC 3720 B.4
  EXPECT_EQ(crc32c::Extend(crc32c::Value("1234"), "56789"), crc32c::Value("123456789"));
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
  auto text = env->ReadFile(sub + "/x.log");
  ASSERT_TRUE(text.ok());
  EXPECT_EQ(*text, "hello world");
  EXPECT_EQ(env->ReadFile(sub + "/missing").status().code(), Status::Code::kNotFound);
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

}  // namespace
}  // namespace edgesync

// An Env whose random-access files (SQLite's, through EnvVfs) read as slowly
// as asked, and count their reads: a slow eMMC under the store, so that its
// deferred check runs for as long as a test needs, and a measure of how much
// of the file a step read.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "base/env.h"

namespace edgesync::testing {

class SlowReadsEnv : public EnvWrapper {
 public:
  using EnvWrapper::EnvWrapper;
  Result<std::unique_ptr<RandomRWFile>> OpenRandomRW(const std::string& path, bool create) override {
    auto f = EnvWrapper::OpenRandomRW(path, create);
    if (!f.ok()) return f;
    return std::unique_ptr<RandomRWFile>(new File(std::move(f).value(), this));
  }
  // Every read from now on first waits `us` microseconds; 0: none.
  void SetReadDelayMicros(int us) { delay_us_ = us; }
  uint64_t read() const { return bytes_read_.load(); }  // bytes
  uint64_t reads() const { return reads_.load(); }
  void Reset() { bytes_read_ = 0; }

 private:
  class File : public RandomRWFile {
   public:
    File(std::unique_ptr<RandomRWFile> f, SlowReadsEnv* env) : f_(std::move(f)), env_(env) {}
    Result<size_t> Read(uint64_t offset, size_t n, char* buf) override {
      if (const int us = env_->delay_us_.load(); us > 0) std::this_thread::sleep_for(std::chrono::microseconds(us));
      ++env_->reads_;
      Result<size_t> got = f_->Read(offset, n, buf);
      if (got.ok()) env_->bytes_read_ += *got;
      return got;
    }
    Status Write(uint64_t offset, std::string_view data) override { return f_->Write(offset, data); }
    Status Truncate(uint64_t size) override { return f_->Truncate(size); }
    Status Sync() override { return f_->Sync(); }
    Result<uint64_t> Size() override { return f_->Size(); }
    Status LockRange(uint64_t offset, uint64_t len, bool exclusive) override {
      return f_->LockRange(offset, len, exclusive);
    }
    Status UnlockRange(uint64_t offset, uint64_t len) override { return f_->UnlockRange(offset, len); }

   private:
    std::unique_ptr<RandomRWFile> f_;
    SlowReadsEnv* env_;
  };
  std::atomic<int> delay_us_{0};
  std::atomic<uint64_t> bytes_read_{0}, reads_{0};
};

}  // namespace edgesync::testing

// An Env that forwards to another and can be told to fail appends, to test
// what a full disk or an I/O error does without filling a disk.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/env.h"

namespace edgesync::testing {

class FaultEnv : public Env {
 public:
  explicit FaultEnv(Env* base) : base_(base) {}
  std::atomic<bool> fail_appends{false};
  // The next appends write half their bytes, then fail (a short write: disk full).
  std::atomic<bool> tear_appends{false};
  std::atomic<int> appends{0};

  Result<std::unique_ptr<AppendFile>> OpenAppend(const std::string& path) override {
    Result<std::unique_ptr<AppendFile>> f = base_->OpenAppend(path);
    if (!f.ok()) return f.status();
    return std::unique_ptr<AppendFile>(new File(this, std::move(f).value()));
  }
  Result<std::unique_ptr<RandomRWFile>> OpenRandomRW(const std::string& p, bool create) override {
    return base_->OpenRandomRW(p, create);
  }
  Result<std::string> ReadFile(const std::string& p, uint64_t max_bytes) override {
    return base_->ReadFile(p, max_bytes);
  }
  Status CreateDirs(const std::string& p) override { return base_->CreateDirs(p); }
  Result<std::vector<std::string>> ListDir(const std::string& d) override { return base_->ListDir(d); }
  Status RemoveFile(const std::string& p) override { return base_->RemoveFile(p); }
  Status RemoveDir(const std::string& d) override { return base_->RemoveDir(d); }
  Status Rename(const std::string& a, const std::string& b) override { return base_->Rename(a, b); }
  Status SyncDir(const std::string& d) override { return base_->SyncDir(d); }
  bool Exists(const std::string& p) override { return base_->Exists(p); }
  Result<FileType> TypeOf(const std::string& p) override { return base_->TypeOf(p); }
  Result<FileType> TypeOfTarget(const std::string& p) override { return base_->TypeOfTarget(p); }
  Result<uint64_t> FreeBytes(const std::string& p) override { return base_->FreeBytes(p); }
  Result<uint64_t> FileSize(const std::string& p) override { return base_->FileSize(p); }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& p) override { return base_->LockFile(p); }
  int64_t NowMicros() override { return base_->NowMicros(); }
  int64_t MonotonicMicros() override { return base_->MonotonicMicros(); }

 private:
  class File : public AppendFile {
   public:
    File(FaultEnv* env, std::unique_ptr<AppendFile> f) : env_(env), f_(std::move(f)) {}
    Status Append(std::string_view data) override {
      if (env_->fail_appends) return Status::IOError("injected: No space left on device");
      if (env_->tear_appends) {
        (void)f_->Append(data.substr(0, data.size() / 2));
        return Status::IOError("injected: short write, No space left on device");
      }
      ++env_->appends;
      return f_->Append(data);
    }
    Status Sync() override { return f_->Sync(); }
    Status Close() override { return f_->Close(); }

   private:
    FaultEnv* env_;
    std::unique_ptr<AppendFile> f_;
  };
  Env* base_;
};

}  // namespace edgesync::testing

// An Env that forwards to another and can be told to fail appends, to test
// what a full disk or an I/O error does without filling a disk.
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "base/env.h"

namespace edgesync::testing {

class FaultEnv : public EnvWrapper {
 public:
  explicit FaultEnv(Env* base) : EnvWrapper(base) {}
  std::atomic<bool> fail_appends{false};
  // The next appends write half their bytes, then fail (a short write: disk full).
  std::atomic<bool> tear_appends{false};
  std::atomic<int> appends{0};

  Result<std::unique_ptr<AppendFile>> OpenAppend(const std::string& path) override {
    Result<std::unique_ptr<AppendFile>> f = target()->OpenAppend(path);
    if (!f.ok()) return f.status();
    return std::unique_ptr<AppendFile>(new File(this, std::move(f).value()));
  }

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
};

}  // namespace edgesync::testing

// Env: every OS call the agent's logic makes (files, clocks, sleeping, timed
// waits, randomness that is not key material) goes through this interface,
// passed in by the caller, so tests can fail one call, drop unsynced data or
// move time without sleeping. Env::Default() is the POSIX implementation; it
// is thread-safe and lives for the whole process. EnvWrapper forwards every
// call to another Env: a test Env overrides only what it changes.
#pragma once

#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace edgesync {

// A file opened for appending. Not thread-safe: one owner at a time.
class AppendFile {
 public:
  virtual ~AppendFile() = default;
  // Appends `data` with a single write(): after it returns ok the bytes
  // survive a crash of this process (not a power cut: see Sync).
  virtual Status Append(std::string_view data) = 0;
  // fdatasync(): after it returns ok the bytes survive a power cut.
  virtual Status Sync() = 0;
  virtual Status Close() = 0;
};

// A file read and written at any offset: the store's SQLite files, through
// the VFS in buffer/sqlite_vfs.h. Not thread-safe: one owner at a time.
class RandomRWFile {
 public:
  virtual ~RandomRWFile() = default;
  // Reads up to `n` bytes at `offset` into `buf`; returns how many were
  // read (fewer only at the end of the file).
  virtual Result<size_t> Read(uint64_t offset, size_t n, char* buf) = 0;
  // Writes `data` at `offset`, extending the file as needed. Survives a
  // crash of this process once it returns ok (a power cut: see Sync).
  virtual Status Write(uint64_t offset, std::string_view data) = 0;
  virtual Status Truncate(uint64_t size) = 0;
  // fdatasync(): after it returns ok everything written survives a power cut.
  virtual Status Sync() = 0;
  virtual Result<uint64_t> Size() = 0;
  // An advisory lock on bytes [offset, offset + len) of the file, held by
  // this handle (not the process) until UnlockRange or its destruction;
  // an exclusive lock conflicts with any other lock on those bytes, a
  // shared one only with an exclusive one. It conflicts with other processes' POSIX record
  // locks too (fcntl), which is how SQLite's own VFS locks: the store's
  // VFS uses it so that other programs opening the store see it locked.
  // Unavailable when a conflicting lock is held; a lock already held is
  // converted. An Env with no other process to exclude (MemEnv) keeps the
  // default, which locks nothing.
  virtual Status LockRange(uint64_t offset, uint64_t len, bool exclusive) {
    (void)offset, (void)len, (void)exclusive;
    return Status::OK();
  }
  virtual Status UnlockRange(uint64_t offset, uint64_t len) {
    (void)offset, (void)len;
    return Status::OK();
  }
};

// An exclusive advisory lock on a file, held until destroyed (or the
// process dies: the kernel releases it, so a crash never leaves it stale).
class FileLock {
 public:
  virtual ~FileLock() = default;
};

// Bounds for files read whole with Env::ReadFile, each far above any real
// file of its kind: what a person or a fleet writes is small, and a path
// pointed at something else must not take the agent's memory.
constexpr uint64_t kMaxConfigFileBytes = 1 << 20;     // TOML files, profiles, Lua scripts
constexpr uint64_t kMaxKeyFileBytes = 64 << 10;       // PEM keys, key and password files
constexpr uint64_t kMaxDictionaryBytes = 16 << 20;    // zstd dictionaries and their training samples
constexpr uint64_t kMaxOwnFileBytes = 1ull << 32;     // files the agent wrote itself (journal segments)

// The directory part of `path`: "a/b" for "a/b/c", "." for "c", "/" for "/c".
std::string DirName(const std::string& path);

// A condition variable whose timed waits run on its Env's monotonic clock
// (Env::NewCondVar), so an Env with a virtual clock can end them when its
// time reaches their deadline. Used like std::condition_variable with a
// std::unique_lock<std::mutex>; wakeups may be spurious, so wait in a loop
// (or with the predicate form, WaitUntil below). Thread-safe.
class CondVar {
 public:
  virtual ~CondVar() = default;
  // Releases `lock`, waits for a Notify, takes `lock` again.
  virtual void Wait(std::unique_lock<std::mutex>& lock) = 0;
  // As Wait, but returns by Env::MonotonicMicros() >= `deadline_us` at the
  // latest: false if the deadline passed without a Notify.
  virtual bool WaitUntil(std::unique_lock<std::mutex>& lock, int64_t deadline_us) = 0;
  virtual void NotifyOne() = 0;
  virtual void NotifyAll() = 0;
};

// Waits on `cv` until `pred()` holds or the monotonic clock reaches
// `deadline_us`; returns pred() (as std::condition_variable::wait_until).
template <typename Pred>
bool WaitUntil(CondVar& cv, std::unique_lock<std::mutex>& lock, int64_t deadline_us, Pred pred) {
  while (!pred()) {
    if (!cv.WaitUntil(lock, deadline_us)) return pred();
  }
  return true;
}

// How Env::WriteFileAtomically writes.
struct AtomicWriteOptions {
  // fdatasync the file before the rename and the directory after it, so a
  // power cut leaves the old file or the new one. Off: a crash of the
  // process still leaves one or the other, a power cut may leave neither.
  bool sync = true;
  // Permissions of a new file (before the umask). The POSIX Env honours
  // it; Envs that build the write from OpenAppend create files 0600.
  uint32_t mode = 0600;
};

class Env;
// Env::WriteFileAtomically with the defaults: mode 0600, synced.
Status WriteFileAtomically(Env* env, const std::string& path, std::string_view data);

class Env {
 public:
  virtual ~Env() = default;
  static Env* Default();

  virtual Result<std::unique_ptr<AppendFile>> OpenAppend(const std::string& path) = 0;
  // Opens `path` for reading and writing; NotFound unless it exists or
  // `create` is set.
  virtual Result<std::unique_ptr<RandomRWFile>> OpenRandomRW(const std::string& path,
                                                             bool create) = 0;
  // Reads the whole of `path`, which must be a regular file (symbolic links
  // followed) of at most `max_bytes`. Anything else is refused without
  // reading it: a FIFO, device, socket or directory, or a larger file, is
  // InvalidArgument saying what it is. The open never blocks (a FIFO put
  // where a file belongs cannot hang the caller), and no more than
  // `max_bytes` + 1 bytes are ever read (a file that grows while it is read,
  // or lies about its size, is refused too). NotFound if nothing is there.
  virtual Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) = 0;
  // Creates `path` and its missing parents (mode 0700).
  virtual Status CreateDirs(const std::string& path) = 0;
  // Names (not paths) of the entries in `dir`, without "." and "..", sorted.
  virtual Result<std::vector<std::string>> ListDir(const std::string& dir) = 0;
  virtual Status RemoveFile(const std::string& path) = 0;
  // Removes the empty directory `dir`; ok if it does not exist.
  virtual Status RemoveDir(const std::string& dir) = 0;
  virtual Status Rename(const std::string& from, const std::string& to) = 0;
  // fsync() of a directory, so that creations and removals in it are durable.
  virtual Status SyncDir(const std::string& dir) = 0;
  virtual bool Exists(const std::string& path) = 0;
  // What `path` itself is: a symbolic link is reported, not followed
  // (lstat). NotFound if there is nothing at `path`.
  enum class FileType { kRegular, kDirectory, kSymlink, kOther };
  virtual Result<FileType> TypeOf(const std::string& path) = 0;
  // What `path` names once symbolic links are followed (stat): kSymlink
  // never. NotFound if nothing is there, or a link points nowhere.
  virtual Result<FileType> TypeOfTarget(const std::string& path) = 0;
  virtual Result<uint64_t> FileSize(const std::string& path) = 0;
  // Bytes an unprivileged writer can still put on the file system holding `path`.
  virtual Result<uint64_t> FreeBytes(const std::string& path) = 0;
  // Takes the lock on `path` (created if missing) without waiting;
  // Unavailable when another process holds it.
  virtual Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) = 0;

  // Writes `data` to `path` whole or not at all: into path + ".tmp",
  // renamed over `path` (synced before and after unless options say not).
  // The base implementation is built from OpenAppend, Rename and SyncDir of
  // this Env, so an Env that fails those fails it too.
  virtual Status WriteFileAtomically(const std::string& path, std::string_view data,
                                     const AtomicWriteOptions& options = {});

  // Wall clock, microseconds since the Unix epoch (may jump; may be wrong).
  virtual int64_t NowMicros() = 0;
  // Monotonic clock, microseconds from an arbitrary start: for intervals.
  virtual int64_t MonotonicMicros() = 0;
  // Returns once MonotonicMicros() has advanced by `micros` (at once if <= 0).
  virtual void SleepForMicros(int64_t micros) = 0;
  // A condition variable whose WaitUntil deadlines are on MonotonicMicros().
  virtual std::unique_ptr<CondVar> NewCondVar() = 0;
  // 64 uniformly random bits, for jitter, backoff and identifiers: NOT for
  // key material (keys come from OpenSSL's RAND_bytes, crypto/).
  virtual uint64_t RandomU64() = 0;
  // RandomU64 as a double uniform in [0, 1).
  double RandomUnit() { return static_cast<double>(RandomU64() >> 11) * 0x1.0p-53; }
};

// Forwards every call to `target`: derive from it and override only what a
// test Env changes (fail some writes, move time). WriteFileAtomically is
// not forwarded: the base implementation runs on this Env's own calls, so
// an override of OpenAppend or Rename applies to it.
class EnvWrapper : public Env {
 public:
  explicit EnvWrapper(Env* target) : target_(target) {}
  Env* target() const { return target_; }

  Result<std::unique_ptr<AppendFile>> OpenAppend(const std::string& path) override {
    return target_->OpenAppend(path);
  }
  Result<std::unique_ptr<RandomRWFile>> OpenRandomRW(const std::string& path, bool create) override {
    return target_->OpenRandomRW(path, create);
  }
  Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) override {
    return target_->ReadFile(path, max_bytes);
  }
  Status CreateDirs(const std::string& path) override { return target_->CreateDirs(path); }
  Result<std::vector<std::string>> ListDir(const std::string& dir) override { return target_->ListDir(dir); }
  Status RemoveFile(const std::string& path) override { return target_->RemoveFile(path); }
  Status RemoveDir(const std::string& dir) override { return target_->RemoveDir(dir); }
  Status Rename(const std::string& from, const std::string& to) override { return target_->Rename(from, to); }
  Status SyncDir(const std::string& dir) override { return target_->SyncDir(dir); }
  bool Exists(const std::string& path) override { return target_->Exists(path); }
  Result<FileType> TypeOf(const std::string& path) override { return target_->TypeOf(path); }
  Result<FileType> TypeOfTarget(const std::string& path) override { return target_->TypeOfTarget(path); }
  Result<uint64_t> FileSize(const std::string& path) override { return target_->FileSize(path); }
  Result<uint64_t> FreeBytes(const std::string& path) override { return target_->FreeBytes(path); }
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    return target_->LockFile(path);
  }
  int64_t NowMicros() override { return target_->NowMicros(); }
  int64_t MonotonicMicros() override { return target_->MonotonicMicros(); }
  void SleepForMicros(int64_t micros) override { target_->SleepForMicros(micros); }
  std::unique_ptr<CondVar> NewCondVar() override { return target_->NewCondVar(); }
  uint64_t RandomU64() override { return target_->RandomU64(); }

 private:
  Env* target_;
};

}  // namespace edgesync

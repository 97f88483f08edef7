// Env: every OS call the agent's logic makes (files, clocks, sleeping) goes
// through this interface, passed in by the caller, so tests can fail one call,
// drop unsynced data or move time without sleeping. Env::Default() is the
// POSIX implementation; it is thread-safe and lives for the whole process.
#pragma once

#include <cstdint>
#include <memory>
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

class Env;
// Writes `data` to `path` whole or not at all (mode 0600): into path + ".tmp",
// synced, renamed over `path`, the directory synced. A power cut leaves the
// old file or the new one.
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

  // Wall clock, microseconds since the Unix epoch (may jump; may be wrong).
  virtual int64_t NowMicros() = 0;
  // Monotonic clock, microseconds from an arbitrary start: for intervals.
  virtual int64_t MonotonicMicros() = 0;
};

}  // namespace edgesync

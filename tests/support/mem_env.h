// MemEnv: an Env whose files live in memory, for tests that need a power cut,
// a full disk or an I/O error at a chosen moment, without touching a disk.
//
// Paths are plain strings: "a/b/c" is file "c" in directory "a/b"; duplicate
// and trailing slashes are ignored. "" (relative paths) and "/" are the roots
// and always exist; every other directory must be made with CreateDirs.
//
// Durability model (what a PowerCut keeps):
// - File content: each file has its current content (what reads see) and its
//   synced content. AppendFile::Sync and RandomRWFile::Sync make synced =
//   current. Writes, appends and truncates since the last Sync are kept in
//   order in a log, which CutMode::kTear replays in part.
// - File names: a file created since the last SyncDir of its directory is not
//   yet durable by name, and a power cut removes it, synced or not.
// - Rename and RemoveFile are durable at once, as metadata is on a journaling
//   file system (ext4 data=ordered commits metadata in order): a renamed file
//   is durable by name under its new name, a removed file stays removed.
// - Directories are durable once created.
//
// Failure model:
// - PowerCut(mode) is the power loss plus the reboot: content and names fall
//   back as above, every handle opened before it fails from then on ("stale
//   handle after power cut"), every lock is released.
// - CutPowerAfter(n): the machine dies at the (n+1)-th mutating operation
//   from now. Mutating operations are Append, Write, Truncate, file Sync,
//   SyncDir, Rename, RemoveFile, RemoveDir and the creation of a file (by
//   OpenAppend, OpenRandomRW or LockFile); mutating_ops() counts the ones
//   that succeeded.
//   From the cut on every call but the clocks and Exists fails with
//   IOError "injected: power lost", until PowerCut().
// - SetCapacity(bytes): the current content of all files may not exceed it;
//   an Append, Write or growing Truncate that would fails with NoSpace and
//   changes nothing.
// - FailWrites(substring): Append, Write, Truncate and Sync of files whose
//   path contains it fail with IOError "injected: Input/output error" and
//   change nothing, until ClearFailures(). Survives a PowerCut (a bad disk).
//
// Thread-safe: one mutex over the whole file system. Handles and locks share
// ownership of that state, so they may outlive the MemEnv (they then keep
// working on the orphaned state). A handle keeps its file open after a
// RemoveFile or a Rename, as on POSIX; a removed file no longer counts
// against the capacity.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "base/env.h"

namespace edgesync::testing {

class MemEnv final : public Env {
 public:
  // `seed` drives every random choice (where kTear tears), so a failing
  // test replays exactly.
  explicit MemEnv(uint64_t seed = 1);
  ~MemEnv() override;
  MemEnv(const MemEnv&) = delete;
  MemEnv& operator=(const MemEnv&) = delete;

  // --- Env ---
  Result<std::unique_ptr<AppendFile>> OpenAppend(const std::string& path) override;
  Result<std::unique_ptr<RandomRWFile>> OpenRandomRW(const std::string& path,
                                                     bool create) override;
  Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) override;
  Status CreateDirs(const std::string& path) override;
  Result<std::vector<std::string>> ListDir(const std::string& dir) override;
  Status RemoveFile(const std::string& path) override;
  // IOError if `dir` is a file or not empty.
  Status RemoveDir(const std::string& dir) override;
  // Replaces `to` when it is a file; moves a whole directory too.
  Status Rename(const std::string& from, const std::string& to) override;
  Status SyncDir(const std::string& dir) override;
  bool Exists(const std::string& path) override;
  // kRegular or kDirectory: MemEnv has no links or special files.
  Result<FileType> TypeOf(const std::string& path) override;
  Result<FileType> TypeOfTarget(const std::string& path) override { return TypeOf(path); }  // no links here
  Result<uint64_t> FileSize(const std::string& path) override;
  // Capacity minus used bytes; 1 TiB minus used bytes when unlimited.
  Result<uint64_t> FreeBytes(const std::string& path) override;
  // Exclusive per path within this MemEnv: a second LockFile of the same path
  // is Unavailable until the first FileLock is destroyed (or a PowerCut).
  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override;
  // The real clocks plus the offset from AdvanceClocks.
  int64_t NowMicros() override;
  int64_t MonotonicMicros() override;
  // Real sleeps and waits; a deadline is on MonotonicMicros (offset
  // included: an AdvanceClocks during a wait does not end it sooner).
  void SleepForMicros(int64_t micros) override;
  std::unique_ptr<CondVar> NewCondVar() override;
  // From `seed`, apart from the random choices of PowerCut.
  uint64_t RandomU64() override;

  // --- Faults ---
  enum class CutMode {
    kDrop,  // every file reverts to its synced content
    kTear,  // and then a random prefix of the writes since, the last one torn
  };
  // Power loss and reboot: see the durability model above. Also clears a
  // pending or fired CutPowerAfter.
  void PowerCut(CutMode mode = CutMode::kDrop);
  // The machine dies after `ops` more successful mutating operations.
  void CutPowerAfter(uint64_t ops);
  bool power_lost() const;
  uint64_t mutating_ops() const;
  // Bytes the files may hold in total; 0 = unlimited (the default).
  void SetCapacity(uint64_t bytes);
  void FailWrites(std::string path_substring);
  void ClearFailures();
  // Moves both clocks forward (or back, if negative), to age data without sleeping.
  void AdvanceClocks(int64_t micros);

  // --- Introspection (never fails, not counted as operations) ---
  // Successful Syncs of the file since it was created; 0 if there is none.
  uint64_t SyncCount(const std::string& path) const;
  // What a kDrop power cut would leave in the file; "" if there is none.
  std::string SyncedContent(const std::string& path) const;
  // Total size of the current content of all files.
  uint64_t UsedBytes() const;

  struct State;  // the file system, shared with the handles and locks (in mem_env.cpp)

 private:
  std::shared_ptr<State> state_;
  std::atomic<int64_t> clock_offset_{0};
  std::mutex random_mu_;
  std::mt19937_64 random_;
};

}  // namespace edgesync::testing

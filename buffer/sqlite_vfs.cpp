#include "buffer/sqlite_vfs.h"

#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstring>

namespace edgesync {

struct EnvVfs::Registration {
  sqlite3_vfs vfs;  // first member: SQLite hands back a sqlite3_vfs*
  EnvVfs* owner;
};

namespace {

EnvVfs* Owner(sqlite3_vfs* vfs) { return reinterpret_cast<EnvVfs::Registration*>(vfs)->owner; }

// SQLite allocates szOsFile bytes and we placement-new this into them.
struct EnvFile {
  sqlite3_file base;  // first member, as SQLite requires
  RandomRWFile* file;  // owned: deleted by FileClose
  Env* env;
  std::string* path;
  bool sync_dir;          // a new journal or WAL: sync its directory once
  bool delete_on_close;
  bool main_db;           // the database file itself: the one SQLite locks
  int lock;               // SQLITE_LOCK_*: the level SQLite holds
};

EnvFile* Cast(sqlite3_file* f) { return reinterpret_cast<EnvFile*>(f); }

int ErrorCode(const Status& st, int io_error) {
  return st.code() == Status::Code::kNoSpace ? SQLITE_FULL : io_error;
}

int FileClose(sqlite3_file* f) {
  EnvFile* ef = Cast(f);
  delete ef->file;
  if (ef->delete_on_close) (void)ef->env->RemoveFile(*ef->path);
  delete ef->path;
  return SQLITE_OK;
}

int FileRead(sqlite3_file* f, void* buf, int amount, sqlite3_int64 offset) {
  EnvFile* ef = Cast(f);
  Result<size_t> n = ef->file->Read(static_cast<uint64_t>(offset), static_cast<size_t>(amount),
                                        static_cast<char*>(buf));
  if (!n.ok()) return SQLITE_IOERR_READ;
  if (*n < static_cast<size_t>(amount)) {
    // SQLite requires the rest zero-filled on a short read.
    std::memset(static_cast<char*>(buf) + *n, 0, static_cast<size_t>(amount) - *n);
    return SQLITE_IOERR_SHORT_READ;
  }
  return SQLITE_OK;
}

int FileWrite(sqlite3_file* f, const void* buf, int amount, sqlite3_int64 offset) {
  EnvFile* ef = Cast(f);
  Status st = ef->file->Write(
      static_cast<uint64_t>(offset),
      std::string_view(static_cast<const char*>(buf), static_cast<size_t>(amount)));
  return st.ok() ? SQLITE_OK : ErrorCode(st, SQLITE_IOERR_WRITE);
}

int FileTruncate(sqlite3_file* f, sqlite3_int64 size) {
  Status st = Cast(f)->file->Truncate(static_cast<uint64_t>(size));
  return st.ok() ? SQLITE_OK : SQLITE_IOERR_TRUNCATE;
}

int FileSync(sqlite3_file* f, int) {
  EnvFile* ef = Cast(f);
  if (!ef->file->Sync().ok()) return SQLITE_IOERR_FSYNC;
  if (ef->sync_dir) {
    if (!ef->env->SyncDir(DirName(*ef->path)).ok()) return SQLITE_IOERR_DIR_FSYNC;
    ef->sync_dir = false;
  }
  return SQLITE_OK;
}

int FileSize(sqlite3_file* f, sqlite3_int64* size) {
  Result<uint64_t> n = Cast(f)->file->Size();
  if (!n.ok()) return SQLITE_IOERR_FSTAT;
  *size = static_cast<sqlite3_int64>(*n);
  return SQLITE_OK;
}

// SQLite's lock bytes (its os.h): PENDING_BYTE, the RESERVED byte, then the
// 510 SHARED bytes. Its own POSIX VFS locks within these, so a lock here
// keeps another program's connection (the sqlite3 shell) out of a store
// the agent has open, as SQLite's own locks would.
constexpr uint64_t kLockBytes = 0x40000000;
constexpr uint64_t kLockBytesLength = 512;

// Within the agent nothing shares its connection's files (it holds the
// state directory's lock, and the connection runs in exclusive locking
// mode), so two levels do: SHARED takes the lock bytes shared, RESERVED
// and above exclusively. Another process's SQLite then waits (busy).
int FileLock(sqlite3_file* f, int level) {
  EnvFile* ef = Cast(f);
  if (!ef->main_db || level <= ef->lock) return SQLITE_OK;
  const bool exclusive = level >= SQLITE_LOCK_RESERVED;
  if (ef->lock == SQLITE_LOCK_NONE || exclusive != (ef->lock >= SQLITE_LOCK_RESERVED)) {
    Status st = ef->file->LockRange(kLockBytes, kLockBytesLength, exclusive);
    if (!st.ok()) return st.code() == Status::Code::kUnavailable ? SQLITE_BUSY : SQLITE_IOERR_LOCK;
  }
  ef->lock = level;
  return SQLITE_OK;
}
int FileUnlock(sqlite3_file* f, int level) {
  EnvFile* ef = Cast(f);
  if (!ef->main_db || level >= ef->lock) return SQLITE_OK;
  Status st = level == SQLITE_LOCK_NONE
                  ? ef->file->UnlockRange(kLockBytes, kLockBytesLength)
                  : ef->file->LockRange(kLockBytes, kLockBytesLength, /*exclusive=*/false);
  if (!st.ok()) return SQLITE_IOERR_UNLOCK;
  ef->lock = level;
  return SQLITE_OK;
}
int FileCheckReservedLock(sqlite3_file*, int* out) {
  *out = 0;  // another connection's RESERVED lock is not looked for
  return SQLITE_OK;
}
int FileControl(sqlite3_file*, int, void*) { return SQLITE_NOTFOUND; }
int FileSectorSize(sqlite3_file*) { return 4096; }
// Powersafe overwrite: a write torn by a power cut damages only the bytes
// it was writing, never others of the same sector. SQLite's own POSIX VFS
// assumes it by default (SQLITE_POWERSAFE_OVERWRITE), which the store ran
// on in production before it ran on this VFS, and MemEnv's torn writes keep
// to it too. Without it SQLite pads every WAL commit to a whole sector:
// about 20 KB more written per batch (bench/buffer_bench.cpp).
int FileDeviceCharacteristics(sqlite3_file*) { return SQLITE_IOCAP_POWERSAFE_OVERWRITE; }

const sqlite3_io_methods kIoMethods = {
    1,  // iVersion: no shared memory, no mmap
    FileClose, FileRead, FileWrite, FileTruncate, FileSync, FileSize, FileLock, FileUnlock,
    FileCheckReservedLock, FileControl, FileSectorSize, FileDeviceCharacteristics,
    nullptr, nullptr, nullptr, nullptr, nullptr, nullptr};

int VfsOpen(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
  f->pMethods = nullptr;  // SQLite calls xClose only when pMethods is set
  if (name == nullptr) return SQLITE_CANTOPEN;  // temp files: the store keeps them in memory
  Env* env = Owner(vfs)->env();
  const bool create = (flags & SQLITE_OPEN_CREATE) != 0;
  Result<std::unique_ptr<RandomRWFile>> file = env->OpenRandomRW(name, create);
  if (!file.ok()) return SQLITE_CANTOPEN;
  EnvFile* ef = Cast(f);
  ef->file = std::move(file).value().release();
  ef->env = env;
  ef->path = new std::string(name);
  ef->sync_dir = create && (flags & (SQLITE_OPEN_WAL | SQLITE_OPEN_MAIN_JOURNAL |
                                     SQLITE_OPEN_MAIN_DB)) != 0;
  ef->delete_on_close = (flags & SQLITE_OPEN_DELETEONCLOSE) != 0;
  ef->main_db = (flags & SQLITE_OPEN_MAIN_DB) != 0;
  ef->lock = SQLITE_LOCK_NONE;
  f->pMethods = &kIoMethods;
  if (out_flags) *out_flags = flags;
  return SQLITE_OK;
}

int VfsDelete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
  Env* env = Owner(vfs)->env();
  if (!env->RemoveFile(name).ok()) return SQLITE_IOERR_DELETE;
  if (sync_dir && !env->SyncDir(DirName(name)).ok()) return SQLITE_IOERR_DIR_FSYNC;
  return SQLITE_OK;
}

int VfsAccess(sqlite3_vfs* vfs, const char* name, int, int* out) {
  *out = Owner(vfs)->env()->Exists(name) ? 1 : 0;
  return SQLITE_OK;
}

int VfsFullPathname(sqlite3_vfs*, const char* name, int n, char* out) {
  if (static_cast<int>(std::strlen(name)) >= n) return SQLITE_CANTOPEN;
  std::strcpy(out, name);
  return SQLITE_OK;
}

// Randomness, sleeping (the busy handler's) and time come from the Env too.
int VfsRandomness(sqlite3_vfs* vfs, int n, char* out) {
  Env* env = Owner(vfs)->env();
  for (int i = 0; i < n; i += 8) {
    const uint64_t r = env->RandomU64();
    std::memcpy(out + i, &r, static_cast<size_t>(std::min(8, n - i)));
  }
  return n;
}
int VfsSleep(sqlite3_vfs* vfs, int micros) {
  Owner(vfs)->env()->SleepForMicros(micros);
  return micros;
}
int VfsCurrentTime(sqlite3_vfs* vfs, double* out) {
  // A Julian day number: the Unix epoch was day 2440587.5.
  *out = 2440587.5 + static_cast<double>(Owner(vfs)->env()->NowMicros()) / 86400e6;
  return SQLITE_OK;
}
int VfsGetLastError(sqlite3_vfs*, int, char*) { return 0; }

}  // namespace

EnvVfs::EnvVfs(Env* env) : env_(env), reg_(new Registration{}) {
  static std::atomic<uint64_t> counter{0};
  name_ = "edgesync-env-" + std::to_string(counter.fetch_add(1));
  sqlite3_vfs& v = reg_->vfs;
  v.iVersion = 1;
  v.szOsFile = sizeof(EnvFile);
  v.mxPathname = 1024;
  v.zName = name_.c_str();
  v.xOpen = VfsOpen;
  v.xDelete = VfsDelete;
  v.xAccess = VfsAccess;
  v.xFullPathname = VfsFullPathname;
  v.xRandomness = VfsRandomness;
  v.xSleep = VfsSleep;
  v.xCurrentTime = VfsCurrentTime;
  v.xGetLastError = VfsGetLastError;
  reg_->owner = this;
  sqlite3_vfs_register(&reg_->vfs, 0);
}

EnvVfs::~EnvVfs() { sqlite3_vfs_unregister(&reg_->vfs); }

}  // namespace edgesync

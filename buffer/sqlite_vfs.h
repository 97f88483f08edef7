// A SQLite VFS over an Env: every byte the store reads or writes goes
// through the same interface as the journal, so tests can cut power under
// SQLite too (drop or tear what was not synced), fill the disk or fail I/O.
//
// The store runs over it in production as in the tests (one SQLite setup).
//
// Version 1 of the VFS interface, without shared memory: SQLite then runs
// WAL only with locking_mode=EXCLUSIVE, which the store sets; the agent's
// lock on state_dir already keeps every other agent out. The database
// file's lock is RandomRWFile::LockRange over SQLite's own lock bytes, so
// another program using SQLite's POSIX VFS (the sqlite3 shell) finds a
// store the agent has open locked (SQLITE_BUSY) instead of reading a WAL it
// cannot index; MemEnv's locks are no-ops. No temporary files (the store
// sets temp_store=MEMORY).
#pragma once

#include <memory>
#include <string>

#include "base/env.h"

namespace edgesync {

// A VFS registered with SQLite under a unique name for as long as it lives;
// pass name() to sqlite3_open_v2. Destroy it only after closing every
// connection that uses it. `env` must outlive it.
class EnvVfs {
 public:
  explicit EnvVfs(Env* env);
  ~EnvVfs();
  EnvVfs(const EnvVfs&) = delete;
  EnvVfs& operator=(const EnvVfs&) = delete;

  const char* name() const { return name_.c_str(); }
  Env* env() const { return env_; }

  struct Registration;  // the sqlite3_vfs and its back pointer; in the .cpp

 private:
  Env* env_;
  std::string name_;
  std::unique_ptr<Registration> reg_;
};

}  // namespace edgesync

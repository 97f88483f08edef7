// Small helpers over SQLite's C API shared by the store (buffer/store.cpp)
// and edgesync-unpack's de-duplication file (central/dedupe_store.cpp).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <string>

#include "base/status.h"

namespace edgesync::sqlite {

// Owns a prepared statement; finalizes it on scope exit. Bound strings must
// outlive the statement's use (SQLITE_STATIC).
class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) { rc_ = sqlite3_prepare_v2(db, sql, -1, &s_, nullptr); }
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return rc_ == SQLITE_OK; }
  sqlite3_stmt* get() { return s_; }
  void Text(int i, const std::string& v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  void Int(int i, int64_t v) { sqlite3_bind_int64(s_, i, v); }
  void Blob(int i, const std::string& v) {
    sqlite3_bind_blob(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC);
  }
  int64_t ColInt(int i) { return sqlite3_column_int64(s_, i); }
  std::string ColText(int i) {
    const unsigned char* t = sqlite3_column_text(s_, i);
    return t ? std::string(reinterpret_cast<const char*>(t), static_cast<size_t>(sqlite3_column_bytes(s_, i)))
             : std::string();
  }
  std::string ColBlob(int i) {
    const void* p = sqlite3_column_blob(s_, i);
    return p ? std::string(static_cast<const char*>(p), static_cast<size_t>(sqlite3_column_bytes(s_, i)))
             : std::string();
  }

 private:
  sqlite3_stmt* s_ = nullptr;
  int rc_;
};

// The connection's last error as a Status: Corruption (damaged or not a
// database), NoSpace (disk full), Unavailable (busy or locked), else IOError.
inline Status Error(sqlite3* db, const std::string& what) {
  const int code = sqlite3_errcode(db);
  std::string msg = what + ": " + sqlite3_errmsg(db);
  if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) return Status::Corruption(std::move(msg));
  if (code == SQLITE_FULL) return Status::NoSpace(std::move(msg));
  if (code == SQLITE_BUSY || code == SQLITE_LOCKED) return Status::Unavailable(std::move(msg));
  return Status::IOError(std::move(msg));
}

// BEGIN IMMEDIATE ... COMMIT, rolled back when it goes out of scope
// uncommitted. Errors are read off the connection before the rollback.
class Transaction {
 public:
  explicit Transaction(sqlite3* db) : db_(db) {
    begun_ = sqlite3_exec(db, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~Transaction() {
    if (begun_ && !committed_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
  }
  Status Begun() const { return begun_ ? Status::OK() : Error(db_, "begin transaction"); }
  Status Commit(const std::string& what) {
    if (sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr) != SQLITE_OK) return Error(db_, what);
    committed_ = true;
    return Status::OK();
  }
  // The error of the step that failed; the rollback follows at scope exit.
  Status Fail(const std::string& what) const { return Error(db_, what); }

 private:
  sqlite3* db_;
  bool begun_ = false;
  bool committed_ = false;
};

}  // namespace edgesync::sqlite

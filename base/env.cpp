// The POSIX Env.
#include "base/env.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <random>
#include <thread>

namespace edgesync {
namespace {

class PosixAppendFile final : public AppendFile {
 public:
  PosixAppendFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixAppendFile() override {
    if (fd_ >= 0) ::close(fd_);
  }

  Status Append(std::string_view data) override {
    // One write() per record is the contract; a short write (disk full on
    // some file systems) is completed in a loop and reported if it fails.
    while (!data.empty()) {
      ssize_t n = ::write(fd_, data.data(), data.size());
      if (n < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("write " + path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    return Status::OK();
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) return Status::FromErrno("fdatasync " + path_, errno);
    return Status::OK();
  }

  Status Close() override {
    if (fd_ < 0) return Status::OK();
    int rc = ::close(fd_);
    fd_ = -1;
    if (rc != 0) return Status::FromErrno("close " + path_, errno);
    return Status::OK();
  }

 private:
  std::string path_;
  int fd_;
};

class PosixRandomRWFile final : public RandomRWFile {
 public:
  PosixRandomRWFile(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  ~PosixRandomRWFile() override { ::close(fd_); }

  Result<size_t> Read(uint64_t offset, size_t n, char* buf) override {
    size_t done = 0;
    while (done < n) {
      ssize_t r = ::pread(fd_, buf + done, n - done, static_cast<off_t>(offset + done));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("read " + path_, errno);
      }
      if (r == 0) break;
      done += static_cast<size_t>(r);
    }
    return done;
  }

  Status Write(uint64_t offset, std::string_view data) override {
    while (!data.empty()) {
      ssize_t r = ::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset));
      if (r < 0) {
        if (errno == EINTR) continue;
        return Status::FromErrno("write " + path_, errno);
      }
      data.remove_prefix(static_cast<size_t>(r));
      offset += static_cast<uint64_t>(r);
    }
    return Status::OK();
  }

  Status Truncate(uint64_t size) override {
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) {
      return Status::FromErrno("truncate " + path_, errno);
    }
    return Status::OK();
  }

  Status Sync() override {
    if (::fdatasync(fd_) != 0) return Status::FromErrno("fdatasync " + path_, errno);
    return Status::OK();
  }

  Result<uint64_t> Size() override {
    struct stat st;
    if (::fstat(fd_, &st) != 0) return Status::FromErrno("stat " + path_, errno);
    return static_cast<uint64_t>(st.st_size);
  }

  // Open file description locks: owned by this handle, so two handles of
  // one process exclude each other as two processes do, and closing some
  // other descriptor of the file does not drop them.
  Status LockRange(uint64_t offset, uint64_t len, bool exclusive) override {
    return Fcntl(exclusive ? F_WRLCK : F_RDLCK, offset, len);
  }
  Status UnlockRange(uint64_t offset, uint64_t len) override { return Fcntl(F_UNLCK, offset, len); }

 private:
  Status Fcntl(short type, uint64_t offset, uint64_t len) {
    struct flock fl = {};
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = static_cast<off_t>(offset);
    fl.l_len = static_cast<off_t>(len);
    if (::fcntl(fd_, F_OFD_SETLK, &fl) == 0) return Status::OK();
    if (errno == EAGAIN || errno == EACCES) return Status::Unavailable(path_ + " is locked");
    return Status::FromErrno("lock " + path_, errno);
  }

  std::string path_;
  int fd_;
};

// What a file that is not a regular one is, for an error message.
std::string FileKind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}

class PosixFileLock final : public FileLock {
 public:
  explicit PosixFileLock(int fd) : fd_(fd) {}
  ~PosixFileLock() override { ::close(fd_); }  // closing releases the flock

 private:
  int fd_;
};

// std::condition_variable on steady_clock, the clock of MonotonicMicros.
class PosixCondVar final : public CondVar {
 public:
  void Wait(std::unique_lock<std::mutex>& lock) override { cv_.wait(lock); }
  bool WaitUntil(std::unique_lock<std::mutex>& lock, int64_t deadline_us) override {
    // Clamped: a deadline in microseconds beyond what steady_clock's
    // nanoseconds hold would wrap and end the wait at once.
    constexpr int64_t kLatest = std::chrono::steady_clock::duration::max().count() / 1000 - 1;
    const std::chrono::steady_clock::time_point deadline{std::chrono::microseconds(std::min(deadline_us, kLatest))};
    return cv_.wait_until(lock, deadline) == std::cv_status::no_timeout;
  }
  void NotifyOne() override { cv_.notify_one(); }
  void NotifyAll() override { cv_.notify_all(); }

 private:
  std::condition_variable cv_;
};

class PosixEnv final : public Env {
 public:
  // The base implementation, with the mode honoured: open(2) with `mode`
  // (less the umask) instead of OpenAppend's 0600.
  Status WriteFileAtomically(const std::string& path, std::string_view data,
                             const AtomicWriteOptions& options) override {
    const std::string tmp = path + ".tmp";
    (void)::unlink(tmp.c_str());  // left by an interrupted write, usually not there
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, options.mode);
    if (fd < 0) return Status::FromErrno("open " + tmp, errno);
    PosixAppendFile f(tmp, fd);
    EDGESYNC_RETURN_IF_ERROR(f.Append(data));
    if (options.sync) EDGESYNC_RETURN_IF_ERROR(f.Sync());
    EDGESYNC_RETURN_IF_ERROR(f.Close());
    EDGESYNC_RETURN_IF_ERROR(Rename(tmp, path));
    return options.sync ? SyncDir(DirName(path)) : Status::OK();
  }

  void SleepForMicros(int64_t micros) override {
    if (micros > 0) std::this_thread::sleep_for(std::chrono::microseconds(micros));
  }

  std::unique_ptr<CondVar> NewCondVar() override { return std::make_unique<PosixCondVar>(); }

  uint64_t RandomU64() override {
    std::lock_guard<std::mutex> lock(rng_mu_);
    return rng_();
  }

  Result<std::unique_ptr<FileLock>> LockFile(const std::string& path) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return Status::FromErrno("open " + path, errno);
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      int err = errno;
      ::close(fd);
      if (err == EWOULDBLOCK) return Status::Unavailable(path + " is locked by another process");
      return Status::FromErrno("flock " + path, err);
    }
    return std::unique_ptr<FileLock>(new PosixFileLock(fd));
  }

  Result<std::unique_ptr<AppendFile>> OpenAppend(const std::string& path) override {
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return Status::FromErrno("open " + path, errno);
    return std::unique_ptr<AppendFile>(new PosixAppendFile(path, fd));
  }

  Result<std::unique_ptr<RandomRWFile>> OpenRandomRW(const std::string& path,
                                                     bool create) override {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0), 0600);
    if (fd < 0) {
      if (errno == ENOENT) return Status::NotFound(path);
      return Status::FromErrno("open " + path, errno);
    }
    return std::unique_ptr<RandomRWFile>(new PosixRandomRWFile(path, fd));
  }

  Result<std::string> ReadFile(const std::string& path, uint64_t max_bytes) override {
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
      if (errno == ENOENT) return Status::NotFound(path);
      return Status::FromErrno("open " + path, errno);
    }
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return Status::FromErrno("stat " + path, err);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return Status::InvalidArgument(path + " is " + FileKind(st.st_mode) + ", not a regular file");
    }
    if (static_cast<uint64_t>(st.st_size) > max_bytes) {
      ::close(fd);
      return Status::InvalidArgument(path + " is " + std::to_string(st.st_size) + " bytes, more than the " +
                                     std::to_string(max_bytes) + " allowed");
    }
    std::string out;
    out.reserve(static_cast<size_t>(st.st_size));
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0) {
        if (errno == EINTR) continue;
        int err = errno;
        ::close(fd);
        return Status::FromErrno("read " + path, err);
      }
      if (n == 0) break;
      if (out.size() + static_cast<size_t>(n) > max_bytes) {
        ::close(fd);
        return Status::InvalidArgument(path + " grew past the " + std::to_string(max_bytes) +
                                       " bytes allowed while it was read");
      }
      out.append(buf, static_cast<size_t>(n));
    }
    ::close(fd);
    return out;
  }

  Status CreateDirs(const std::string& path) override {
    if (path.empty()) return Status::InvalidArgument("empty directory path");
    for (size_t pos = 1; pos <= path.size(); ++pos) {
      if (pos != path.size() && path[pos] != '/') continue;
      std::string prefix = path.substr(0, pos);
      if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
        return Status::FromErrno("mkdir " + prefix, errno);
      }
    }
    return Status::OK();
  }

  Result<std::vector<std::string>> ListDir(const std::string& dir) override {
    DIR* d = ::opendir(dir.c_str());
    if (d == nullptr) {
      if (errno == ENOENT) return Status::NotFound(dir);
      return Status::FromErrno("opendir " + dir, errno);
    }
    std::vector<std::string> names;
    // readdir returns null both at the end and on an error (e.g. EOVERFLOW):
    // only errno tells them apart, and a partial listing must not pass for
    // the whole directory (recovery would miss segments).
    int err = 0;
    for (;;) {
      errno = 0;
      dirent* e = ::readdir(d);
      if (e == nullptr) {
        err = errno;
        break;
      }
      std::string name = e->d_name;
      if (name != "." && name != "..") names.push_back(std::move(name));
    }
    ::closedir(d);
    if (err != 0) return Status::FromErrno("readdir " + dir, err);
    std::sort(names.begin(), names.end());
    return names;
  }

  Status RemoveFile(const std::string& path) override {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Status::FromErrno("unlink " + path, errno);
    }
    return Status::OK();
  }

  Status RemoveDir(const std::string& dir) override {
    if (::rmdir(dir.c_str()) != 0 && errno != ENOENT) {
      return Status::FromErrno("rmdir " + dir, errno);
    }
    return Status::OK();
  }

  Status Rename(const std::string& from, const std::string& to) override {
    if (::rename(from.c_str(), to.c_str()) != 0) {
      return Status::FromErrno("rename " + from + " to " + to, errno);
    }
    return Status::OK();
  }

  Status SyncDir(const std::string& dir) override {
    int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return Status::FromErrno("open " + dir, errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0) return Status::FromErrno("fsync " + dir, err);
    return Status::OK();
  }

  Result<uint64_t> FileSize(const std::string& path) override {
    struct stat st;
    if (::stat(path.c_str(), &st) != 0) {
      if (errno == ENOENT) return Status::NotFound(path);
      return Status::FromErrno("stat " + path, errno);
    }
    return static_cast<uint64_t>(st.st_size);
  }

  Result<uint64_t> FreeBytes(const std::string& path) override {
    struct statvfs st;
    if (::statvfs(path.c_str(), &st) != 0) return Status::FromErrno("statvfs " + path, errno);
    return static_cast<uint64_t>(st.f_bavail) * st.f_frsize;
  }

  bool Exists(const std::string& path) override {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0;
  }

  Result<FileType> TypeOf(const std::string& path) override { return Type(path, /*follow_links=*/false); }
  Result<FileType> TypeOfTarget(const std::string& path) override { return Type(path, /*follow_links=*/true); }

  static Result<FileType> Type(const std::string& path, bool follow_links) {
    struct stat st;
    if ((follow_links ? ::stat(path.c_str(), &st) : ::lstat(path.c_str(), &st)) != 0) {
      if (errno == ENOENT) return Status::NotFound(path);
      return Status::FromErrno(std::string(follow_links ? "stat " : "lstat ") + path, errno);
    }
    if (S_ISREG(st.st_mode)) return FileType::kRegular;
    if (S_ISDIR(st.st_mode)) return FileType::kDirectory;
    if (S_ISLNK(st.st_mode)) return FileType::kSymlink;
    return FileType::kOther;
  }

  int64_t NowMicros() override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  int64_t MonotonicMicros() override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }

 private:
  std::mutex rng_mu_;
  std::mt19937_64 rng_{std::random_device{}()};
};

}  // namespace

std::string DirName(const std::string& path) {
  size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

Status Env::WriteFileAtomically(const std::string& path, std::string_view data,
                                const AtomicWriteOptions& options) {
  const std::string tmp = path + ".tmp";
  (void)RemoveFile(tmp);  // left by an interrupted write, usually not there
  {
    Result<std::unique_ptr<AppendFile>> f = OpenAppend(tmp);  // mode 0600
    if (!f.ok()) return f.status();
    EDGESYNC_RETURN_IF_ERROR((*f)->Append(data));
    if (options.sync) EDGESYNC_RETURN_IF_ERROR((*f)->Sync());
    EDGESYNC_RETURN_IF_ERROR((*f)->Close());
  }
  EDGESYNC_RETURN_IF_ERROR(Rename(tmp, path));
  return options.sync ? SyncDir(DirName(path)) : Status::OK();
}

Status WriteFileAtomically(Env* env, const std::string& path, std::string_view data) {
  return env->WriteFileAtomically(path, data);
}

Env* Env::Default() {
  static PosixEnv env;  // trivially destructible state; lives for the process
  return &env;
}

}  // namespace edgesync

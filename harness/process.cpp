// Child processes with fork/execve: everything the child needs (argv, envp,
// the resolved program path, opened files) is prepared before fork(), so the
// child only makes async-signal-safe calls between fork() and execve().
#include "harness/process.h"

#include "base/env.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <thread>

extern char** environ;

namespace edgesync::harness {
namespace {

using Clock = std::chrono::steady_clock;

bool IsExecutableFile(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
         ::access(path.c_str(), X_OK) == 0;
}

}  // namespace

Result<std::string> FindProgram(const std::string& name) {
  if (name.find('/') != std::string::npos) {
    if (!IsExecutableFile(name)) return Status::NotFound("no executable file " + name);
    return name;
  }
  std::string path;
  if (const char* p = std::getenv("PATH"); p != nullptr) {
    path = p;
  } else {
    size_t n = ::confstr(_CS_PATH, nullptr, 0);
    path.resize(n);
    ::confstr(_CS_PATH, path.data(), n);
    path.resize(n > 0 ? n - 1 : 0);
  }
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::string dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + name;
    if (IsExecutableFile(candidate)) return candidate;
    start = end + 1;
  }
  return Status::NotFound(name + " not found in PATH");
}

namespace {

// The inherited environment with `extra` ("K=V") replacing or adding entries.
std::vector<std::string> BuildEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  auto key_of = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string kv = *e;
    bool replaced = false;
    for (const std::string& x : extra) {
      if (key_of(x) == key_of(kv)) replaced = true;
    }
    if (!replaced) env.push_back(std::move(kv));
  }
  for (const std::string& x : extra) env.push_back(x);
  return env;
}

void CloseFd(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

int OpenForOutput(const std::string& path) {
  return ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
}

int PidfdOpen(pid_t pid) {
#ifdef SYS_pidfd_open
  long fd = ::syscall(SYS_pidfd_open, pid, 0);
  if (fd >= 0) {
    ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
    return static_cast<int>(fd);
  }
#else
  (void)pid;
#endif
  return -1;
}

int RemainingMs(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return left > INT_MAX ? INT_MAX : static_cast<int>(left);
}

// Runs in the child between fork() and execve(): async-signal-safe calls only.
[[noreturn]] void ExecChild(pid_t parent, const char* path, char* const* argv,
                            char* const* envp, int in_fd, int out_fd, int err_fd,
                            int report_fd) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != parent) ::_exit(127);  // the parent died before prctl()
  for (int sig = 1; sig < NSIG; ++sig) ::signal(sig, SIG_DFL);
  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  // dup2() clears FD_CLOEXEC on the target; the sources stay close-on-exec.
  if ((in_fd >= 0 && ::dup2(in_fd, STDIN_FILENO) < 0) ||
      (out_fd >= 0 && ::dup2(out_fd, STDOUT_FILENO) < 0) ||
      (err_fd >= 0 && ::dup2(err_fd, STDERR_FILENO) < 0)) {
    int err = errno;
    (void)!::write(report_fd, &err, sizeof(err));
    ::_exit(127);
  }
  // Descriptors that some library opened without O_CLOEXEC do not leak into
  // the child; the report pipe stays open until execve() closes it.
  if (report_fd > 3) ::close_range(3, static_cast<unsigned>(report_fd) - 1, 0);
  ::close_range(static_cast<unsigned>(report_fd) + 1, ~0U, 0);

  ::execve(path, argv, envp);
  int err = errno;
  (void)!::write(report_fd, &err, sizeof(err));
  ::_exit(127);
}

}  // namespace

Result<Process> Process::Spawn(const SpawnOptions& opts) {
  if (opts.argv.empty()) return Status::InvalidArgument("Spawn: empty argv");
  Result<std::string> path = FindProgram(opts.argv[0]);
  if (!path.ok()) return path.status();

  std::vector<char*> argv;
  for (const std::string& a : opts.argv) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = BuildEnv(opts.env);
  std::vector<char*> envp;
  for (const std::string& e : env_strings) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);

  // Each pair: [0] parent's end or file, [1] child's end. All close-on-exec.
  int in_parent = -1, in_child = -1, out_parent = -1, out_child = -1, err_child = -1;
  int report[2] = {-1, -1};
  auto close_all = [&] {
    CloseFd(in_parent);
    CloseFd(in_child);
    CloseFd(out_parent);
    CloseFd(out_child);
    CloseFd(err_child);
    CloseFd(report[0]);
    CloseFd(report[1]);
  };
  auto fail = [&](const std::string& what) {
    int err = errno;
    close_all();
    return Status::FromErrno("Spawn " + opts.argv[0] + ": " + what, err);
  };

  if (opts.pipe_stdin) {
    // A socket rather than a pipe so that WriteStdin() can use MSG_NOSIGNAL.
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return fail("socketpair");
    in_parent = sv[0];
    in_child = sv[1];
  }
  if (opts.pipe_stdout) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) return fail("pipe");
    out_parent = p[0];
    out_child = p[1];
  } else if (!opts.stdout_path.empty()) {
    out_child = OpenForOutput(opts.stdout_path);
    if (out_child < 0) return fail("open " + opts.stdout_path);
  }
  if (!opts.stderr_path.empty()) {
    err_child = OpenForOutput(opts.stderr_path);
    if (err_child < 0) return fail("open " + opts.stderr_path);
  }
  if (::pipe2(report, O_CLOEXEC) != 0) return fail("pipe");

  pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return fail("fork");
  if (pid == 0) {
    ExecChild(parent, path->c_str(), argv.data(), envp.data(), in_child, out_child,
              err_child, report[1]);
  }

  CloseFd(in_child);
  CloseFd(out_child);
  CloseFd(err_child);
  CloseFd(report[1]);
  int child_errno = 0;
  ssize_t n;
  do {
    n = ::read(report[0], &child_errno, sizeof(child_errno));
  } while (n < 0 && errno == EINTR);
  CloseFd(report[0]);
  if (n > 0) {
    int wstatus;
    while (::waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
    }
    close_all();
    if (child_errno == ENOENT || child_errno == EACCES || child_errno == ENOEXEC) {
      return Status::NotFound("Spawn: cannot execute " + *path + ": " +
                              std::strerror(child_errno));
    }
    return Status::FromErrno("Spawn: child setup for " + *path, child_errno);
  }

  Process p;
  p.pid_ = pid;
  p.pidfd_ = PidfdOpen(pid);
  p.stdin_fd_ = in_parent;
  p.stdout_fd_ = out_parent;
  return p;
}

Process::Process(Process&& other) noexcept { *this = std::move(other); }

Process& Process::operator=(Process&& other) noexcept {
  if (this != &other) {
    Reset();
    pid_ = other.pid_;
    pidfd_ = other.pidfd_;
    stdin_fd_ = other.stdin_fd_;
    stdout_fd_ = other.stdout_fd_;
    stdout_eof_ = other.stdout_eof_;
    stdout_buf_ = std::move(other.stdout_buf_);
    exit_status_ = other.exit_status_;
    other.pid_ = -1;
    other.pidfd_ = other.stdin_fd_ = other.stdout_fd_ = -1;
    other.exit_status_.reset();
  }
  return *this;
}

Process::~Process() { Reset(); }

void Process::Reset() {
  if (pid_ > 0 && !exit_status_) {
    ::kill(pid_, SIGKILL);
    int wstatus;
    while (::waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
    }
  }
  CloseFds();
  pid_ = -1;
  exit_status_.reset();
  stdout_buf_.clear();
  stdout_eof_ = false;
}

void Process::CloseFds() {
  CloseFd(pidfd_);
  CloseFd(stdin_fd_);
  CloseFd(stdout_fd_);
}

void Process::Reaped(int wstatus) {
  if (WIFEXITED(wstatus)) {
    exit_status_ = WEXITSTATUS(wstatus);
  } else if (WIFSIGNALED(wstatus)) {
    exit_status_ = 128 + WTERMSIG(wstatus);
  } else {
    exit_status_ = -1;
  }
  CloseFd(pidfd_);
}

Status Process::Signal(int sig) {
  if (pid_ <= 0 || exit_status_) return Status::NotFound("process already reaped");
  if (::kill(pid_, sig) != 0) return Status::FromErrno("kill", errno);
  return Status::OK();
}

bool Process::Running() {
  if (pid_ <= 0 || exit_status_) return false;
  int wstatus;
  pid_t r;
  do {
    r = ::waitpid(pid_, &wstatus, WNOHANG);
  } while (r < 0 && errno == EINTR);
  if (r == 0) return true;
  if (r == pid_) {
    Reaped(wstatus);
  } else {
    exit_status_ = -1;  // reaped by someone else (SIGCHLD ignored?): status unknown
  }
  return false;
}

Result<int> Process::Wait(std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return Status::NotFound("no process");
  Clock::time_point deadline = Clock::now() + timeout;
  while (Running()) {
    int left = RemainingMs(deadline);
    if (left == 0) {
      return Status::Unavailable("pid " + std::to_string(pid_) + " still running after " +
                                 std::to_string(timeout.count()) + " ms");
    }
    if (pidfd_ >= 0) {
      // The pidfd becomes readable when the child exits.
      pollfd pfd{pidfd_, POLLIN, 0};
      if (::poll(&pfd, 1, left) < 0 && errno != EINTR) {
        return Status::FromErrno("poll pidfd", errno);
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(std::min(left, 5)));
    }
  }
  return *exit_status_;
}

Status Process::Stop(std::chrono::milliseconds grace) {
  if (!Running()) return Status::OK();
  EDGESYNC_RETURN_IF_ERROR(Signal(SIGTERM));
  if (Wait(grace).ok()) return Status::OK();
  ::kill(pid_, SIGKILL);
  Result<int> r = Wait(std::chrono::seconds(30));
  return r.ok() ? Status::OK() : r.status();
}

Status Process::WriteStdin(std::string_view data) {
  if (stdin_fd_ < 0) return Status::InvalidArgument("stdin is not a pipe, or was closed");
  while (!data.empty()) {
    ssize_t n = ::send(stdin_fd_, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("write to child stdin", errno);
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::OK();
}

Status Process::CloseStdin() {
  if (stdin_fd_ < 0) return Status::InvalidArgument("stdin is not a pipe, or was closed");
  CloseFd(stdin_fd_);
  return Status::OK();
}

Result<std::string> Process::ReadLine(std::chrono::milliseconds timeout) {
  if (stdout_fd_ < 0) return Status::InvalidArgument("stdout is not a pipe");
  Clock::time_point deadline = Clock::now() + timeout;
  for (;;) {
    size_t nl = stdout_buf_.find('\n');
    if (nl != std::string::npos) {
      std::string line = stdout_buf_.substr(0, nl);
      stdout_buf_.erase(0, nl + 1);
      return line;
    }
    if (stdout_eof_) {
      if (stdout_buf_.empty()) return Status::NotFound("end of child stdout");
      return std::exchange(stdout_buf_, std::string());
    }
    pollfd pfd{stdout_fd_, POLLIN, 0};
    int r = ::poll(&pfd, 1, RemainingMs(deadline));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("poll child stdout", errno);
    }
    if (r == 0) return Status::Unavailable("no line from child stdout within timeout");
    char buf[4096];
    ssize_t n = ::read(stdout_fd_, buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return Status::FromErrno("read child stdout", errno);
    }
    if (n == 0) {
      stdout_eof_ = true;
    } else {
      stdout_buf_.append(buf, static_cast<size_t>(n));
    }
  }
}

int FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  int port = -1;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

Result<int> RunToEnd(const SpawnOptions& opts, std::chrono::milliseconds timeout) {
  Result<Process> p = Process::Spawn(opts);
  if (!p.ok()) return p.status();
  Result<int> code = p->Wait(timeout);
  if (!code.ok()) (void)p->Stop(std::chrono::seconds(1));
  return code;
}

Result<int> RunToEnd(std::vector<std::string> argv, const std::string& stdout_path,
                     std::chrono::milliseconds timeout) {
  SpawnOptions o;
  o.argv = std::move(argv);
  o.stdout_path = stdout_path;
  return RunToEnd(o, timeout);
}

Status WaitForTcp(const std::string& host, int port, std::chrono::milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string service = std::to_string(port);
  if (int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res); rc != 0) {
    return Status::InvalidArgument("resolve " + host + ": " + ::gai_strerror(rc));
  }
  Clock::time_point deadline = Clock::now() + timeout;
  bool connected = false;
  while (!connected) {
    for (addrinfo* ai = res; ai != nullptr && !connected; ai = ai->ai_next) {
      int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
      if (fd < 0) continue;
      connected = ::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0;
      ::close(fd);
    }
    if (connected || Clock::now() >= deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::freeaddrinfo(res);
  if (!connected) {
    return Status::Unavailable("nothing accepts connections on " + host + ":" + service +
                               " after " + std::to_string(timeout.count()) + " ms");
  }
  return Status::OK();
}

std::string ProgramPath(const std::string& name) {
  if (const char* dir = std::getenv("EDGESYNC_BIN_DIR"); dir != nullptr && *dir != '\0') {
    std::string candidate = std::string(dir) + "/" + name;
    if (IsExecutableFile(candidate)) return candidate;
  }
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    std::string exe(self, static_cast<size_t>(n));
    std::string candidate = exe.substr(0, exe.rfind('/') + 1) + name;
    if (IsExecutableFile(candidate)) return candidate;
  }
  return name;
}

Result<TempDir> TempDir::Create(const std::string& prefix) {
  const char* tmp = std::getenv("TMPDIR");
  std::string base = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  std::string tmpl = base + "/" + prefix + ".XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) return Status::FromErrno("mkdtemp " + tmpl, errno);
  TempDir d;
  d.path_ = tmpl;
  return d;
}

TempDir::TempDir(TempDir&& other) noexcept { *this = std::move(other); }

TempDir& TempDir::operator=(TempDir&& other) noexcept {
  if (this != &other) {
    if (!path_.empty() && !keep_) {
      std::error_code ec;
      std::filesystem::remove_all(path_, ec);
    }
    path_ = std::exchange(other.path_, std::string());
    keep_ = other.keep_;
  }
  return *this;
}

TempDir::~TempDir() {
  if (std::getenv("EDGESYNC_KEEP_TEST_DIRS") != nullptr) return;  // for a post-mortem
  if (!path_.empty() && !keep_) {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
}

std::string ReadWholeFile(const std::string& path) {
  Result<std::string> text = Env::Default()->ReadFile(path, kMaxOwnFileBytes);
  return text.ok() ? std::move(text).value() : std::string();
}

}  // namespace edgesync::harness

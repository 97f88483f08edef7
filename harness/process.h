// Child processes for tests and the demo: spawn a program with its output
// redirected or piped, talk to it over stdin/stdout, signal it, wait for it
// with a deadline, and never leave it running. Also loopback port helpers and
// the lookup of the programs this build produces.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/status.h"

namespace edgesync::harness {

struct SpawnOptions {
  std::vector<std::string> argv;  // argv[0] is a path or a name looked up in PATH
  std::string stdout_path;        // empty: inherit; else truncate+redirect to this file
  std::string stderr_path;        // same for stderr
  bool pipe_stdin = false;        // WriteStdin() available
  bool pipe_stdout = false;       // ReadLine() available (overrides stdout_path)
  std::vector<std::string> env;   // extra "K=V" entries added to the inherited
                                  // environment; they replace inherited ones
};

// One child process. Move-only; the destructor SIGKILLs and reaps a child
// that still runs, so a failing test cannot leak it. The child also gets
// SIGKILL when the thread that spawned it exits (PR_SET_PDEATHSIG): spawn
// from a thread that outlives the child, normally the main thread.
// The child starts with all signals unblocked and at their default action,
// whatever the parent blocked or ignored.
// Not thread-safe: one owner at a time (ReadLine and WriteStdin may be used
// from two threads, nothing else concurrently).
class Process {
 public:
  // Fails with NotFound when argv[0] cannot be found or executed, with
  // InvalidArgument for an empty argv, IOError when the OS refuses.
  static Result<Process> Spawn(const SpawnOptions& opts);

  Process(Process&& other) noexcept;
  Process& operator=(Process&& other) noexcept;
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;
  ~Process();

  pid_t pid() const { return pid_; }
  // NotFound once the child has been reaped.
  Status Signal(int sig);
  // False once the child has exited; reaps it then.
  bool Running();
  // Waits for the child to exit and reaps it: its exit code, or 128+signal
  // when a signal ended it. Unavailable when it still runs after `timeout`.
  // Returns the same value again when called after the child was reaped.
  Result<int> Wait(std::chrono::milliseconds timeout);
  // SIGTERM, wait up to `grace`, then SIGKILL. OK once the child is gone
  // (exit_status() tells how it ended: 137 means it had to be killed).
  Status Stop(std::chrono::milliseconds grace = std::chrono::seconds(10));
  // Exit code or 128+signal once reaped; nullopt while it runs.
  std::optional<int> exit_status() const { return exit_status_; }

  // Writes all of `data` to the child's stdin (pipe_stdin). IOError when the
  // child closed its end (no SIGPIPE reaches this process).
  Status WriteStdin(std::string_view data);
  Status CloseStdin();
  // One line from the child's stdout (pipe_stdout), without the '\n'.
  // Unavailable when no full line arrived within `timeout`; NotFound at EOF
  // (a last line without '\n' is returned before that).
  Result<std::string> ReadLine(std::chrono::milliseconds timeout);

 private:
  Process() = default;
  void Reset();
  void CloseFds();
  // Records the waitpid() status of the reaped child.
  void Reaped(int wstatus);

  pid_t pid_ = -1;
  int pidfd_ = -1;   // pidfd_open() of the child, -1 if unavailable
  int stdin_fd_ = -1;
  int stdout_fd_ = -1;
  bool stdout_eof_ = false;
  std::string stdout_buf_;
  std::optional<int> exit_status_;
};

// A TCP port on 127.0.0.1 that was free a moment ago (bind to port 0, read
// the port, close). Another process may take it before the caller binds:
// callers that start servers on it retry with a new port. -1 on error.
int FreeLoopbackPort();

// Polls connect() to host:port until it succeeds (OK) or `timeout` passes
// (Unavailable). `host` is a numeric address or a name.
Status WaitForTcp(const std::string& host, int port, std::chrono::milliseconds timeout);

// The executable file execve() runs for `name`: `name` itself when it
// contains a '/', else the first match in $PATH (execvp()'s rule).
// NotFound when there is none.
Result<std::string> FindProgram(const std::string& name);

// Where a program of this build lives: $EDGESYNC_BIN_DIR/name if that
// variable is set and the file exists; else the directory of this
// executable + "/" + name if that exists; else `name` (PATH lookup).
std::string ProgramPath(const std::string& name);

// Runs a program to its end: its exit code as Process::Wait gives it.
// Unavailable when it still runs after `timeout` (it is killed then).
Result<int> RunToEnd(const SpawnOptions& opts, std::chrono::milliseconds timeout = std::chrono::seconds(30));
// The same for `argv`, stdout to `stdout_path` if given, else inherited.
Result<int> RunToEnd(std::vector<std::string> argv, const std::string& stdout_path = "",
                     std::chrono::milliseconds timeout = std::chrono::seconds(30));

// The whole file (a child's output, a log), or "" when it cannot be read.
std::string ReadWholeFile(const std::string& path);

// A fresh private directory (mode 0700) under $TMPDIR (default /tmp), removed
// with everything in it by the destructor unless Keep() was called or
// EDGESYNC_KEEP_TEST_DIRS is set; for test and demo working directories.
// Move-only.
class TempDir {
 public:
  static Result<TempDir> Create(const std::string& prefix = "edgesync");
  TempDir(TempDir&& other) noexcept;
  TempDir& operator=(TempDir&& other) noexcept;
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();

  const std::string& path() const { return path_; }
  // path() + "/" + name.
  std::string File(const std::string& name) const { return path_ + "/" + name; }
  std::string operator/(const std::string& name) const { return File(name); }
  // Leaves the directory in place (for a post-mortem of a failed test).
  void Keep() { keep_ = true; }

 private:
  TempDir() = default;
  std::string path_;
  bool keep_ = false;
};

}  // namespace edgesync::harness

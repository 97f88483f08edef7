// Process, FreeLoopbackPort, WaitForTcp, ProgramPath, TempDir.
#include "harness/process.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <sstream>

namespace edgesync::harness {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

Process SpawnOrDie(SpawnOptions opts) {
  Result<Process> p = Process::Spawn(opts);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return std::move(p.value());
}

SpawnOptions Shell(const std::string& script) {
  SpawnOptions o;
  o.argv = {"sh", "-c", script};
  return o;
}

TEST(ProcessTest, ExitCodeAndStdoutLines) {
  SpawnOptions o = Shell("echo hello; printf 'two\\nlast'; exit 3");
  o.pipe_stdout = true;
  Process p = SpawnOrDie(o);
  EXPECT_GT(p.pid(), 0);
  Result<std::string> l1 = p.ReadLine(seconds(10));
  ASSERT_TRUE(l1.ok()) << l1.status().ToString();
  EXPECT_EQ(*l1, "hello");
  Result<std::string> l2 = p.ReadLine(seconds(10));
  ASSERT_TRUE(l2.ok());
  EXPECT_EQ(*l2, "two");
  Result<std::string> l3 = p.ReadLine(seconds(10));
  ASSERT_TRUE(l3.ok());
  EXPECT_EQ(*l3, "last");  // no trailing newline: returned at EOF
  Result<std::string> eof = p.ReadLine(seconds(10));
  EXPECT_EQ(eof.status().code(), Status::Code::kNotFound);
  Result<int> code = p.Wait(seconds(10));
  ASSERT_TRUE(code.ok()) << code.status().ToString();
  EXPECT_EQ(*code, 3);
  EXPECT_FALSE(p.Running());
  EXPECT_EQ(p.exit_status(), 3);
  EXPECT_EQ(p.Wait(seconds(1)).value(), 3);  // same answer once reaped
}

TEST(ProcessTest, ReadLineTimesOutWhileChildIsSilent) {
  SpawnOptions o;
  o.argv = {"sleep", "30"};
  o.pipe_stdout = true;
  Process p = SpawnOrDie(o);
  Result<std::string> line = p.ReadLine(milliseconds(100));
  EXPECT_EQ(line.status().code(), Status::Code::kUnavailable);
  EXPECT_TRUE(p.Stop(seconds(5)).ok());
}

TEST(ProcessTest, WaitTimesOutThenSignalEndsChild) {
  SpawnOptions o;
  o.argv = {"sleep", "30"};
  Process p = SpawnOrDie(o);
  EXPECT_TRUE(p.Running());
  Result<int> early = p.Wait(milliseconds(100));
  EXPECT_EQ(early.status().code(), Status::Code::kUnavailable);
  ASSERT_TRUE(p.Signal(SIGTERM).ok());
  Result<int> code = p.Wait(seconds(10));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 128 + SIGTERM);
  EXPECT_EQ(p.Signal(SIGTERM).code(), Status::Code::kNotFound);
}

TEST(ProcessTest, StdinRoundTripThroughCat) {
  SpawnOptions o;
  o.argv = {"cat"};
  o.pipe_stdin = true;
  o.pipe_stdout = true;
  Process p = SpawnOrDie(o);
  ASSERT_TRUE(p.WriteStdin("alpha\nbeta\n").ok());
  EXPECT_EQ(p.ReadLine(seconds(10)).value(), "alpha");
  EXPECT_EQ(p.ReadLine(seconds(10)).value(), "beta");
  ASSERT_TRUE(p.CloseStdin().ok());
  EXPECT_EQ(p.ReadLine(seconds(10)).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(p.Wait(seconds(10)).value(), 0);
}

TEST(ProcessTest, WriteToExitedChildIsAnErrorNotSigpipe) {
  SpawnOptions o;
  o.argv = {"true"};
  o.pipe_stdin = true;
  Process p = SpawnOrDie(o);
  ASSERT_EQ(p.Wait(seconds(10)).value(), 0);
  // The child's end is closed once it exited: the write must fail, and
  // this process must survive it.
  Status s = p.WriteStdin(std::string(1 << 16, 'x'));
  EXPECT_FALSE(s.ok());
}

TEST(ProcessTest, StopKillsAChildThatIgnoresSigterm) {
  // The ignored disposition survives exec, so sleep ignores SIGTERM too.
  SpawnOptions o = Shell("trap '' TERM; echo ready; exec sleep 30");
  o.pipe_stdout = true;
  Process p = SpawnOrDie(o);
  ASSERT_EQ(p.ReadLine(seconds(10)).value(), "ready");
  ASSERT_TRUE(p.Stop(milliseconds(200)).ok());
  EXPECT_EQ(p.exit_status(), 128 + SIGKILL);
}

TEST(ProcessTest, StopLetsAGracefulChildExit) {
  SpawnOptions o = Shell("trap 'exit 7' TERM; echo ready; while :; do sleep 0.05; done");
  o.pipe_stdout = true;
  Process p = SpawnOrDie(o);
  ASSERT_EQ(p.ReadLine(seconds(10)).value(), "ready");
  ASSERT_TRUE(p.Stop(seconds(10)).ok());
  EXPECT_EQ(p.exit_status(), 7);
}

TEST(ProcessTest, ChildStartsWithDefaultSignalsEvenIfParentBlocksThem) {
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &term, &old), 0);
  SpawnOptions o;
  o.argv = {"sleep", "30"};
  Result<Process> p = Process::Spawn(o);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ASSERT_TRUE(p.ok());
  ASSERT_TRUE(p->Signal(SIGTERM).ok());
  EXPECT_EQ(p->Wait(seconds(10)).value(), 128 + SIGTERM);
}

TEST(ProcessTest, RedirectsAndEnvironment) {
  Result<TempDir> dir = TempDir::Create("harness-process");
  ASSERT_TRUE(dir.ok());
  SpawnOptions o = Shell("echo \"out $EDGESYNC_TEST_VAR\"; echo err >&2");
  o.env = {"EDGESYNC_TEST_VAR=forty-two"};
  o.stdout_path = dir->File("out.txt");
  o.stderr_path = dir->File("err.txt");
  Process p = SpawnOrDie(o);
  ASSERT_EQ(p.Wait(seconds(10)).value(), 0);
  EXPECT_EQ(ReadWholeFile(o.stdout_path), "out forty-two\n");
  EXPECT_EQ(ReadWholeFile(o.stderr_path), "err\n");
}

TEST(ProcessTest, EnvReplacesAnInheritedVariable) {
  ASSERT_EQ(setenv("EDGESYNC_TEST_INHERITED", "old", 1), 0);
  SpawnOptions o = Shell("echo $EDGESYNC_TEST_INHERITED");
  o.env = {"EDGESYNC_TEST_INHERITED=new"};
  o.pipe_stdout = true;
  Process p = SpawnOrDie(o);
  EXPECT_EQ(p.ReadLine(seconds(10)).value(), "new");
  EXPECT_EQ(p.Wait(seconds(10)).value(), 0);
  unsetenv("EDGESYNC_TEST_INHERITED");
}

TEST(ProcessTest, MissingProgramIsNotFound) {
  SpawnOptions o;
  o.argv = {"edgesync-no-such-program-anywhere"};
  EXPECT_EQ(Process::Spawn(o).status().code(), Status::Code::kNotFound);
  o.argv = {"./edgesync-no-such-file"};
  EXPECT_EQ(Process::Spawn(o).status().code(), Status::Code::kNotFound);
  o.argv = {};
  EXPECT_EQ(Process::Spawn(o).status().code(), Status::Code::kInvalidArgument);
}

TEST(ProcessTest, DestructorKillsAndReapsTheChild) {
  pid_t pid;
  {
    SpawnOptions o;
    o.argv = {"sleep", "30"};
    Process p = SpawnOrDie(o);
    pid = p.pid();
    ASSERT_EQ(::kill(pid, 0), 0);
    Process moved = std::move(p);  // the moved-from object must not kill it
    ASSERT_EQ(::kill(pid, 0), 0);
    EXPECT_EQ(moved.pid(), pid);
  }
  // Reaped, not a zombie: the pid no longer exists.
  EXPECT_EQ(::kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST(PortTest, FreePortRefusesUntilSomethingListens) {
  int port = FreeLoopbackPort();
  ASSERT_GT(port, 0);
  EXPECT_EQ(WaitForTcp("127.0.0.1", port, milliseconds(50)).code(), Status::Code::kUnavailable);

  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(fd, 4), 0);
  EXPECT_TRUE(WaitForTcp("127.0.0.1", port, seconds(5)).ok());
  ::close(fd);
}

TEST(ProgramPathTest, PrefersEdgesyncBinDir) {
  Result<TempDir> dir = TempDir::Create("harness-bin");
  ASSERT_TRUE(dir.ok());
  std::string prog = dir->File("edgesync-fake-tool");
  { std::ofstream(prog) << "#!/bin/sh\nexit 0\n"; }
  ASSERT_EQ(::chmod(prog.c_str(), 0755), 0);
  const char* saved = std::getenv("EDGESYNC_BIN_DIR");
  std::string saved_value = saved ? saved : "";
  ASSERT_EQ(setenv("EDGESYNC_BIN_DIR", dir->path().c_str(), 1), 0);
  EXPECT_EQ(ProgramPath("edgesync-fake-tool"), prog);
  EXPECT_EQ(ProgramPath("edgesync-absent-tool"), "edgesync-absent-tool");
  if (saved) {
    setenv("EDGESYNC_BIN_DIR", saved_value.c_str(), 1);
  } else {
    unsetenv("EDGESYNC_BIN_DIR");
  }
}

TEST(TempDirTest, RemovedWithItsContents) {
  std::string path;
  {
    Result<TempDir> dir = TempDir::Create("harness-tmp");
    ASSERT_TRUE(dir.ok());
    path = dir->path();
    { std::ofstream(dir->File("f")) << "x"; }
    ASSERT_EQ(::access(dir->File("f").c_str(), F_OK), 0);
  }
  EXPECT_NE(::access(path.c_str(), F_OK), 0);
}

}  // namespace
}  // namespace edgesync::harness

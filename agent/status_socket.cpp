#include "agent/status_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace edgesync {

namespace {

Result<sockaddr_un> Address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument("status socket path " + path + " is longer than " +
                                   std::to_string(sizeof(addr.sun_path) - 1) +
                                   " bytes; choose a shorter agent.state_dir");
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  return addr;
}

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

Result<std::unique_ptr<StatusSocket>> StatusSocket::Listen(const std::string& path) {
  Result<sockaddr_un> addr = Address(path);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return Status::FromErrno("status socket", errno);
  ::unlink(path.c_str());  // a dead agent's; ours holds the lock now
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0 ||
      ::chmod(path.c_str(), 0660) != 0 || ::listen(fd, 8) != 0) {
    const int err = errno;
    ::close(fd);
    return Status::FromErrno("status socket " + path, err);
  }
  return std::unique_ptr<StatusSocket>(new StatusSocket(path, fd));
}

StatusSocket::~StatusSocket() {
  ::close(fd_);
  ::unlink(path_.c_str());
}

void StatusSocket::Serve(const std::function<std::string()>& reply) {
  for (;;) {
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return;  // EAGAIN: no one else is waiting (or a transient error)
    // The reply fits the socket buffer in all but huge configurations; a
    // client that does not read within a second is not waited for longer.
    timeval tv{.tv_sec = 1, .tv_usec = 0};
    ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    const std::string text = reply();
    size_t off = 0;
    while (off < text.size()) {
      ssize_t n = ::send(c, text.data() + off, text.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::close(c);
  }
}

Result<std::string> QueryStatusSocket(const std::string& path, int timeout_ms) {
  Result<sockaddr_un> addr = Address(path);
  if (!addr.ok()) return addr.status();
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("socket", errno);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) != 0) {
    const int err = errno;
    ::close(fd);
    if (err == ENOENT || err == ECONNREFUSED) return Status::Unavailable("no agent answers on " + path);
    return Status::FromErrno("connect to " + path, err);
  }
  std::string out;
  const int64_t deadline = NowMs() + timeout_ms;
  char buf[16384];
  for (;;) {
    const int64_t left = deadline - NowMs();
    pollfd p{.fd = fd, .events = POLLIN, .revents = 0};
    const int ready = left <= 0 ? 0 : ::poll(&p, 1, static_cast<int>(left));
    if (ready < 0 && errno == EINTR) continue;
    if (ready == 0) {
      ::close(fd);
      return Status::IOError("the agent accepted on " + path + " but did not answer within " +
                             std::to_string(timeout_ms) + " ms");
    }
    ssize_t n = ::read(fd, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return Status::FromErrno("read " + path, err);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

}  // namespace edgesync

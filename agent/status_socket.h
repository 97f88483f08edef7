// The agent's status socket: `edgesync status` connects to
// <state_dir>/status.sock and reads one JSON document (the health record,
// with per-stream figures) until the agent closes the connection. The socket
// is mode 0660 inside the 0700 state directory: only the agent's user (and
// root) can ask.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "base/status.h"

namespace edgesync {

class StatusSocket {
 public:
  // Listens on `path`, replacing a socket left by an agent that died (the
  // caller holds the state directory's lock, so no other agent uses it).
  static Result<std::unique_ptr<StatusSocket>> Listen(const std::string& path);
  ~StatusSocket();  // closes and removes the socket
  StatusSocket(const StatusSocket&) = delete;
  StatusSocket& operator=(const StatusSocket&) = delete;

  int fd() const { return fd_; }  // readable: a client is waiting
  // Answers every waiting client with `reply()` and closes its connection.
  // Never blocks for long: a client that does not read is dropped.
  void Serve(const std::function<std::string()>& reply);

 private:
  StatusSocket(std::string path, int fd) : path_(std::move(path)), fd_(fd) {}
  std::string path_;
  int fd_;
};

// Asks the agent listening on `path`: its reply, or Unavailable when no agent
// answers there (none running, or a stale socket), IOError when it accepted
// but did not answer within `timeout_ms` (a wedged agent).
Result<std::string> QueryStatusSocket(const std::string& path, int timeout_ms);

}  // namespace edgesync

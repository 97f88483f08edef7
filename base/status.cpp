#include "base/status.h"

#include <cerrno>
#include <cstring>

namespace edgesync {

Status Status::FromErrno(const std::string& what, int err) {
  std::string m = what + ": " + std::strerror(err);
  if (err == ENOSPC || err == EDQUOT) return NoSpace(std::move(m));
  return IOError(std::move(m));
}

std::string Status::ToString() const {
  const char* name = "ok";
  switch (code_) {
    case Code::kOk: return "ok";
    case Code::kInvalidArgument: name = "invalid argument"; break;
    case Code::kNotFound: name = "not found"; break;
    case Code::kCorruption: name = "corruption"; break;
    case Code::kIOError: name = "I/O error"; break;
    case Code::kUnavailable: name = "unavailable"; break;
    case Code::kAborted: name = "aborted"; break;
    case Code::kNoSpace: name = "no space"; break;
  }
  return std::string(name) + ": " + message_;
}

}  // namespace edgesync

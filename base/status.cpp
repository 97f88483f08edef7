#include "base/status.h"

#include <cstring>

namespace edgesync {

Status Status::FromErrno(const std::string& what, int err) {
  return IOError(what + ": " + std::strerror(err));
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
  }
  return std::string(name) + ": " + message_;
}

}  // namespace edgesync

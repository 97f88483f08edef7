// Status and Result<T>: errors as values. The code tells the caller what to
// do next; the message tells the operator what happened and what to do.
// No exception crosses a module boundary. Thread-compatible value types.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <utility>

namespace edgesync {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,  // the input or configuration is wrong: give up, say why
    kNotFound,         // the thing asked for does not exist
    kCorruption,       // stored data failed a check: move it aside, report
    kIOError,          // the OS refused (permission, bad sector): retry later
    kNoSpace,          // the file system is full (ENOSPC, EDQUOT): free space, retry
    kUnavailable,      // a peer is unreachable or busy: retry later with backoff
    kAborted,          // stopped on request (shutdown)
  };

  Status() = default;
  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
  static Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
  static Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
  static Status IOError(std::string m) { return {Code::kIOError, std::move(m)}; }
  static Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
  static Status Aborted(std::string m) { return {Code::kAborted, std::move(m)}; }
  static Status NoSpace(std::string m) { return {Code::kNoSpace, std::move(m)}; }
  // An IOError (NoSpace for ENOSPC and EDQUOT) carrying strerror(err) after `what`.
  static Status FromErrno(const std::string& what, int err);

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // True when the same call may succeed later without any change of input.
  bool retriable() const {
    return code_ == Code::kIOError || code_ == Code::kNoSpace || code_ == Code::kUnavailable;
  }
  // "corruption: <message>", or "ok".
  std::string ToString() const;

 private:
  Status(Code c, std::string m) : code_(c), message_(std::move(m)) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// A value or the Status saying why there is none.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : status_(std::move(status)) { assert(!status_.ok()); }  // NOLINT

  bool ok() const { return status_.ok(); }
  const Status& status() const { return status_; }
  T& value() & { assert(ok()); return *value_; }
  const T& value() const& { assert(ok()); return *value_; }
  T&& value() && { assert(ok()); return std::move(*value_); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T operator*() && { return std::move(*this).value(); }  // by value: safe on temporaries

 private:
  Status status_;
  std::optional<T> value_;
};

}  // namespace edgesync

// Returns the Status of `expr` from the enclosing function when it is not ok.
#define EDGESYNC_RETURN_IF_ERROR(expr)          \
  do {                                          \
    ::edgesync::Status _st = (expr);            \
    if (!_st.ok()) return _st;                  \
  } while (0)

// Status and Result<T>: the error convention of every ocix library.
//
// Libraries never throw. A function that can fail returns Status (no value)
// or Result<T> (a value or a Status). Codes mirror containerd's errdefs so
// the gRPC and FUSE boundaries can map them in exactly one place each.
// Context is added as an error rises: status.WithContext("prepare KEY").
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace ocix::core {

enum class Code {
  kOk = 0,
  kNotFound,
  kAlreadyExists,
  kFailedPrecondition,
  kInvalidArgument,
  kUnavailable,
  kCorruption,  // untrusted input is malformed or fails verification
  kInternal,
  kCanceled,
  kUnimplemented,
  kPermissionDenied,
  kIoError,
};

std::string_view CodeName(Code code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "context: message" — the caller says what it was doing.
  Status WithContext(std::string_view context) const;
  // "CODE: message", for logs and CLI output.
  std::string ToString() const;

  // Explicitly drop a status whose failure does not matter (e.g. cleanup).
  void IgnoreError() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status NotFound(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status AlreadyExists(std::string m) { return {Code::kAlreadyExists, std::move(m)}; }
inline Status FailedPrecondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }
inline Status InvalidArgument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status Unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status Corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
inline Status Internal(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status Unimplemented(std::string m) { return {Code::kUnimplemented, std::move(m)}; }
inline Status IoError(std::string m) { return {Code::kIoError, std::move(m)}; }
// An errno-carrying I/O failure: "what: strerror(err)".
Status ErrnoError(std::string_view what, int err);

// A value or an error. Accessing value() of an error is a programming bug.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}        // NOLINT(google-explicit-constructor)
  Result(Status status) : v_(std::move(status)) {  // NOLINT(google-explicit-constructor)
    assert(!std::get<Status>(v_).ok() && "Result from an OK status has no value");
  }

  bool ok() const { return std::holds_alternative<T>(v_); }
  const Status& status() const {
    static const Status kOk;
    return ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace ocix::core

// Propagate a failed Status (or the Status of a failed Result) to the caller.
#define OCIX_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::ocix::core::Status ocix_status_ = (expr);  \
    if (!ocix_status_.ok()) return ocix_status_; \
  } while (0)

#define OCIX_CONCAT_INNER(a, b) a##b
#define OCIX_CONCAT(a, b) OCIX_CONCAT_INNER(a, b)
// `OCIX_ASSIGN_OR_RETURN(auto x, F());` binds x to F()'s value or returns its error.
#define OCIX_ASSIGN_OR_RETURN(lhs, expr) OCIX_ASSIGN_OR_RETURN_IMPL(OCIX_CONCAT(ocix_result_, __LINE__), lhs, expr)
#define OCIX_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                               \
  if (!tmp.ok()) return tmp.status();              \
  lhs = std::move(tmp).value()

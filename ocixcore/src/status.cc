#include "ocix/core/status.h"

#include <cerrno>
#include <cstring>

namespace ocix::core {

std::string_view CodeName(Code code) {
  switch (code) {
    case Code::kOk: return "OK";
    case Code::kNotFound: return "NotFound";
    case Code::kAlreadyExists: return "AlreadyExists";
    case Code::kFailedPrecondition: return "FailedPrecondition";
    case Code::kInvalidArgument: return "InvalidArgument";
    case Code::kUnavailable: return "Unavailable";
    case Code::kCorruption: return "Corruption";
    case Code::kInternal: return "Internal";
    case Code::kCanceled: return "Canceled";
    case Code::kUnimplemented: return "Unimplemented";
    case Code::kPermissionDenied: return "PermissionDenied";
    case Code::kIoError: return "IoError";
  }
  return "Unknown";
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += message_;
  return {code_, std::move(m)};
}

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s(CodeName(code_));
  s += ": ";
  s += message_;
  return s;
}

Status ErrnoError(std::string_view what, int err) {
  std::string m(what);
  m += ": ";
  m += std::strerror(err);
  Code code = Code::kIoError;
  if (err == ENOENT) code = Code::kNotFound;
  if (err == EEXIST) code = Code::kAlreadyExists;
  if (err == EACCES || err == EPERM) code = Code::kPermissionDenied;
  if (err == EINVAL) code = Code::kInvalidArgument;
  return {code, std::move(m)};
}

}  // namespace ocix::core

// BlobReader: where the chunk store fetches compressed frames from — one
// blob (an OCIX layer) in an OCI layout on disk, in a registry, or in memory
// in tests. Like leveldb's Env, it keeps the network and the disk behind a
// small interface so tests can inject faults.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "ocix/core/ranges.h"
#include "ocix/core/status.h"

namespace ocix::core {

// Owns one file descriptor and closes it once. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& o) noexcept : fd_(o.Release()) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) Reset(o.Release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  // Gives up ownership without closing.
  int Release() { return std::exchange(fd_, -1); }
  // Closes the current fd (errors ignored: for read-only fds nothing is lost)
  // and takes ownership of fd.
  void Reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Reads byte ranges of one immutable blob.
//
// Thread-safe: implementations must allow concurrent ReadRanges calls (the
// chunk store calls them from every FUSE worker thread).
class BlobReader {
 public:
  virtual ~BlobReader() = default;

  // Returns one buffer per range, in request order. Implementations may merge
  // adjacent ranges into one request; callers pass all the ranges they need
  // at once for that reason. Each buffer should hold exactly range.length
  // bytes, but callers must not trust that (nor the bytes): the content is
  // untrusted until hashed. Errors: InvalidArgument for a range past the
  // blob's end; Unavailable / IoError when the source fails (after whatever
  // retries the implementation does); NotFound if the blob is gone.
  virtual Result<std::vector<std::string>> ReadRanges(std::span<const ByteRange> ranges) = 0;

  // "file /path/to/blob", "registry host/repo@sha256:..." — for error messages.
  virtual std::string Describe() const = 0;
};

// A blob in a local file (an OCI layout's blobs/sha256/<hex>), read with
// pread. The file is opened once, here (NotFound if missing); its size is
// taken at open, so ranges past that size are InvalidArgument. The content
// is not digest-checked (the chunk store hashes every chunk).
Result<std::unique_ptr<BlobReader>> OpenFileBlobReader(const std::string& path);

}  // namespace ocix::core

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
#include "ocix/core/unique_fd.h"

namespace ocix::core {

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

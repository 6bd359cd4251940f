#include "ocix/core/store/blob_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <limits>

namespace ocix::core {

namespace {

class FileBlobReader final : public BlobReader {
 public:
  FileBlobReader(std::string path, UniqueFd fd, uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size) {}

  // pread does not move a shared file offset, so concurrent calls are safe.
  Result<std::vector<std::string>> ReadRanges(std::span<const ByteRange> ranges) override {
    for (const ByteRange& r : ranges) {
      if (r.offset > size_ || r.length > size_ - r.offset)
        return InvalidArgument(Describe() + ": range [" + std::to_string(r.offset) + ", +" + std::to_string(r.length) +
                               ") past the end (" + std::to_string(size_) + " bytes)");
    }
    std::vector<std::string> out(ranges.size());
    for (size_t i = 0; i < ranges.size(); ++i) {
      out[i].resize(ranges[i].length);
      size_t done = 0;
      while (done < out[i].size()) {
        ssize_t n =
            ::pread(fd_.get(), out[i].data() + done, out[i].size() - done, static_cast<off_t>(ranges[i].offset + done));
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return ErrnoError(Describe() + ": pread", errno);
        // The file shrank since it was opened: a blob must be immutable.
        if (n == 0) return IoError(Describe() + ": unexpected end of file (was the blob modified?)");
        done += static_cast<size_t>(n);
      }
    }
    return out;
  }

  std::string Describe() const override { return "file " + path_; }

 private:
  const std::string path_;
  const UniqueFd fd_;
  const uint64_t size_;
};

}  // namespace

Result<std::unique_ptr<BlobReader>> OpenFileBlobReader(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return ErrnoError("open blob " + path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("stat blob " + path, errno);
  if (!S_ISREG(st.st_mode)) return InvalidArgument("blob " + path + " is not a regular file");
  return std::unique_ptr<BlobReader>(
      std::make_unique<FileBlobReader>(path, std::move(fd), static_cast<uint64_t>(st.st_size)));
}

}  // namespace ocix::core

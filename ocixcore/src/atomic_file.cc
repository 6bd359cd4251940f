#include "ocix/core/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <filesystem>

#include "ocix/core/unique_fd.h"

namespace ocix::core {

Status WriteFileAtomic(const std::string& path, std::string_view data, const AtomicWriteOptions& options) {
  // Unique per call: threads of one process may write the same name at once.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp." + std::to_string(getpid()) + "." + std::to_string(++counter);
  Status failed;
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, options.mode));
    if (!fd.valid()) return ErrnoError("create " + tmp, errno);
    while (!data.empty()) {
      ssize_t n = ::write(fd.get(), data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        failed = ErrnoError("write " + tmp, errno);
        break;
      }
      data.remove_prefix(static_cast<size_t>(n));
    }
    if (failed.ok() && options.sync && ::fsync(fd.get()) != 0) failed = ErrnoError("fsync " + tmp, errno);
    if (failed.ok() && ::close(fd.Release()) != 0) failed = ErrnoError("close " + tmp, errno);
  }
  if (failed.ok() && ::rename(tmp.c_str(), path.c_str()) != 0) failed = ErrnoError("rename to " + path, errno);
  if (!failed.ok()) {
    ::unlink(tmp.c_str());
    return failed;
  }
  if (options.sync_dir) {
    std::string dir = std::filesystem::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    UniqueFd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d.valid() || ::fsync(d.get()) != 0) return ErrnoError("fsync " + dir, errno);
  }
  return {};
}

}  // namespace ocix::core

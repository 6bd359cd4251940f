// Writing a whole file so readers see the old content or the new, never a
// part: a unique temp file in the same directory, then rename over the name.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "ocix/core/status.h"

namespace ocix::core {

struct AtomicWriteOptions {
  mode_t mode = 0644;     // of a new file (before the umask)
  bool sync = false;      // fsync the data before the rename (survives a crash)
  bool sync_dir = false;  // and fsync the directory after it (the name survives too)
};

// The temp file is removed again when anything fails; a crash leaves at most
// a "<path>.tmp.<pid>.<n>" file.
Status WriteFileAtomic(const std::string& path, std::string_view data, const AtomicWriteOptions& options = {});

}  // namespace ocix::core

// `ocix mount`, `ocix umount`, `ocix cache stats`.
#pragma once

#include <string>

#include "image_refs.h"

namespace ocix::cli {

struct MountOptions {
  std::string image, mountpoint;
  std::string cache_dir = "/var/lib/ocix/cache";
  std::string state_dir = "/run/ocix/mounts";
  bool foreground = false;
  std::string prefetch = "all";   // none | list | all
  int prefetch_parallel = 2;      // batches in flight across layers
  uint64_t readahead = 2u << 20;  // largest read-ahead window (fuse::LayerFsOptions); 0: off
  core::RegistryOptions registry;
};

// Mounts the image's root filesystem read-only at mountpoint, served by a
// background process (or this one with foreground) until `ocix umount`.
int RunMount(const MountOptions& options);
int RunUmount(const std::string& mountpoint, const std::string& state_dir);
int RunCacheStats(const std::string& cache_dir, const std::string& state_dir, bool as_json);

}  // namespace ocix::cli

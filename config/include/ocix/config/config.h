// The daemon's configuration: a TOML file (--config) into plain structs.
// Every key, its type and default is documented in docs/CONFIGURATION.md;
// a key that is not known is an error (typos must not be silently ignored).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include "ocix/core/registry/client.h"
#include "ocix/core/status.h"

namespace ocix::config {

enum class PrefetchMode { kNone, kList, kAll };

struct Config {
  // [daemon]
  std::string address = "/run/ocix-snapshotter/ocix-snapshotter.sock";  // --address overrides
  std::string root = "/var/lib/ocix-snapshotter";                       // --root overrides
  std::string log_level = "info";                                       // trace, debug, info, warn, error
  // [metrics] address = "127.0.0.1:9863"; empty: no metrics endpoint.
  std::string metrics_address;

  // [cache]
  std::string cache_dir;         // empty: <root>/cache
  uint64_t cache_max_bytes = 0;  // 0: unbounded (size = "10GiB" style strings accepted)

  // [prefetch]
  PrefetchMode prefetch = PrefetchMode::kList;
  int prefetch_max_in_flight = 2;  // batches fetching at once across layers

  // [fetch]
  int fetch_attempts = 4;                          // per request, >= 1
  std::chrono::milliseconds fetch_timeout{15000};  // a transfer idle this long is retried
  std::chrono::milliseconds connect_timeout{5000};
  // Largest read-ahead window in blob order (fuse::LayerFsOptions); 0: off.
  uint64_t readahead_bytes = 2u << 20;

  // [registry]
  std::string hosts_dir = "/etc/containerd/certs.d";  // containerd hosts.toml tree
  std::string docker_config;                          // empty: $DOCKER_CONFIG or ~/.docker/config.json

  // The registry client options these settings imply.
  core::RegistryOptions RegistryOptions() const;
  // cache_dir, or <root>/cache when it is empty (after any --root override).
  std::string CacheDir() const;

  friend bool operator==(const Config&, const Config&) = default;
};

// Parses TOML text. InvalidArgument naming the key (and line) for unknown
// keys, wrong types, out-of-range values or malformed TOML.
core::Result<Config> ParseConfig(std::string_view toml_text);
// Reads and parses a file; NotFound if it does not exist.
core::Result<Config> LoadConfig(const std::string& path);

}  // namespace ocix::config

// Fuzzes the daemon's configuration parser (toml++ underneath, which throws
// on bad input): no crash, no escaping exception, every error is
// InvalidArgument, and an accepted file holds only values in range.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "ocix/config/config.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "config invariant broken: %s\n", what);
  std::abort();
}

bool Absolute(const std::string& path, bool allow_empty) { return path.empty() ? allow_empty : path.front() == '/'; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocix::config;  // NOLINT(google-build-using-namespace)
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = ParseConfig(text);
  if (!config.ok()) {
    if (config.status().code() != ocix::core::Code::kInvalidArgument) {
      std::fprintf(stderr, "%s\n", config.status().ToString().c_str());
      Fail("error is not InvalidArgument");
    }
    return 0;
  }
  const Config& c = *config;
  if (!Absolute(c.address, false) || !Absolute(c.root, false) || !Absolute(c.cache_dir, true) ||
      !Absolute(c.hosts_dir, true) || !Absolute(c.docker_config, true))
    Fail("relative path accepted");
  if (c.log_level != "trace" && c.log_level != "debug" && c.log_level != "info" && c.log_level != "warn" &&
      c.log_level != "error")
    Fail("unknown log level accepted");
  if (c.prefetch_max_in_flight < 1 || c.prefetch_max_in_flight > 64) Fail("prefetch.max_in_flight out of range");
  if (c.fetch_attempts < 1 || c.fetch_attempts > 100) Fail("fetch.attempts out of range");
  for (auto t : {c.fetch_timeout, c.connect_timeout})
    if (t.count() < 1 || t.count() > 24 * 3600 * 1000) Fail("timeout out of range");
  if (!Absolute(c.CacheDir(), false)) Fail("cache directory not absolute");

  auto o = c.RegistryOptions();
  if (o.max_attempts != c.fetch_attempts || o.low_speed_timeout != c.fetch_timeout ||
      o.connect_timeout != c.connect_timeout || o.certs_dir != c.hosts_dir || o.docker_config != c.docker_config)
    Fail("registry options do not follow the configuration");

  // Parsing is a pure function of the text.
  auto again = ParseConfig(text);
  if (!again.ok() || !(*again == c)) Fail("second parse differs");
  return 0;
}

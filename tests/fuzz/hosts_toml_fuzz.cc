// Fuzzes ParseHostsToml (toml++ underneath, which throws on bad input): no
// crash, no escaping exception, and an accepted file always ends with the
// server and names only known capabilities.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "ocix/core/registry/hosts.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocix::core;  // NOLINT(google-build-using-namespace)
  auto hosts = ParseHostsToml({reinterpret_cast<const char*>(data), size}, "registry.example:5000");
  if (!hosts.ok()) return 0;
  if (hosts->empty()) {
    std::fprintf(stderr, "accepted hosts.toml yields no endpoint\n");
    std::abort();
  }
  for (const auto& h : *hosts) {
    if ((h.scheme != "http" && h.scheme != "https") || h.host.empty()) std::abort();
    for (const auto& c : h.capabilities)
      if (c != kCapabilityPull && c != kCapabilityResolve && c != kCapabilityPush) std::abort();
  }
  return 0;
}

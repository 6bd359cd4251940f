// Fuzzes ParseWwwAuthenticate: no crash or hang, and every accepted challenge
// has a non-empty lowercase scheme.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "ocix/core/registry/auth.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto challenges = ocix::core::ParseWwwAuthenticate({reinterpret_cast<const char*>(data), size});
  if (!challenges.ok()) return 0;
  for (const auto& c : *challenges) {
    if (c.scheme.empty()) std::abort();
    for (char ch : c.scheme)
      if (ch >= 'A' && ch <= 'Z') std::abort();
  }
  return 0;
}

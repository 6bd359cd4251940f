// Fuzzes the RFC 3339 parser used for version 0 times: no crash, and a
// parsed instant formats and parses back to itself.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "ocix/core/rfc3339.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocix::core;  // NOLINT(google-build-using-namespace)
  auto t = ParseRfc3339({reinterpret_cast<const char*>(data), size});
  if (!t.ok()) return 0;
  auto s = FormatRfc3339(*t);
  if (!s.ok()) return 0;  // offsets can push an instant past year 9999
  auto back = ParseRfc3339(*s);
  if (!back.ok() || !(*back == *t)) {
    std::fprintf(stderr, "RFC 3339 round trip differs\n");
    std::abort();
  }
  return 0;
}

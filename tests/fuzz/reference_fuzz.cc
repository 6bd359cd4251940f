// Fuzzes Reference::Parse: no crash, and an accepted reference prints to a
// string that parses back to the same reference.
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "ocix/core/registry/reference.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using ocix::core::Reference;
  auto r = Reference::Parse({reinterpret_cast<const char*>(data), size});
  if (!r.ok()) return 0;
  auto back = Reference::Parse(r->ToString());
  if (!back.ok() || back->ToString() != r->ToString() || back->host != r->host || back->repository != r->repository ||
      back->tag != r->tag || back->digest != r->digest) {
    std::fprintf(stderr, "reference round trip differs: %s\n", r->ToString().c_str());
    std::abort();
  }
  return 0;
}

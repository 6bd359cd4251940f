// Fuzzes layer application: tar/gzip/zstd parsing (libarchive) plus our
// whiteout, hardlink and path handling. Any accepted tree must encode.
#include <cstdio>
#include <cstdlib>

#include "ocix/core/codec.h"
#include "ocix/core/layer_builder.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocix::core;  // NOLINT(google-build-using-namespace)
  LayerBuilder b;
  if (!b.ApplyLayerMemory({data, size}).ok()) return 0;
  for (uint64_t version : {0, 1}) {
    auto m = b.Finish(version);
    if (!m.ok()) continue;  // e.g. a v0 time outside RFC 3339 years is fine to refuse
    auto bytes = EncodeManifest(*m);
    if (!bytes.ok() && version == 1) {
      std::fprintf(stderr, "valid tree does not encode: %s\n", bytes.status().ToString().c_str());
      std::abort();
    }
  }
  return 0;
}

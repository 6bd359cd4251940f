// Fuzzes the manifest decoder: no input may crash it, and whatever it
// accepts must re-encode and decode to the same model.
#include <cstdio>
#include <cstdlib>

#include "ocix/core/codec.h"
#include "ocix/core/listing.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocix::core;  // NOLINT(google-build-using-namespace)
  auto m = DecodeManifest({data, size});
  if (!m.ok()) return 0;
  auto bytes = EncodeManifest(*m);
  if (!bytes.ok()) {
    std::fprintf(stderr, "accepted manifest does not re-encode: %s\n", bytes.status().ToString().c_str());
    std::abort();
  }
  auto again = DecodeManifest({reinterpret_cast<const uint8_t*>(bytes->data()), bytes->size()});
  if (!again.ok() || !(*again == *m)) {
    std::fprintf(stderr, "re-encoded manifest decodes differently\n");
    std::abort();
  }
  (void)FormatListing(*m);
  (void)FormatJson(*m);
  return 0;
}

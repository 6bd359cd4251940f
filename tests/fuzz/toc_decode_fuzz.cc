// Fuzzes the TOC decoder (and the footer decoder on the input's last 64
// bytes): no input may crash them; a TOC they accept must re-encode and
// decode to the same TOC, and an accepted footer must re-encode to its bytes.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "ocix/core/ocix_layer.h"

namespace {

// Where the TOC frame would start: frames must lie before it.
constexpr uint64_t kTocOffset = uint64_t{1} << 40;

[[noreturn]] void Fail(const char* what, const std::string& detail = "") {
  std::fprintf(stderr, "%s %s\n", what, detail.c_str());
  std::abort();
}

bool SameToc(const ocix::core::Toc& a, const ocix::core::Toc& b) {
  return a.chunk_size == b.chunk_size && a.manifest == b.manifest && a.manifest_bytes == b.manifest_bytes &&
         a.contents == b.contents && a.prefetch == b.prefetch;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ocix::core;  // NOLINT(google-build-using-namespace)

  if (size >= kFooterSize) {
    auto f = DecodeFooter({data + size - kFooterSize, kFooterSize}, size);
    if (f.ok()) {
      const std::string again = EncodeFooter(*f);
      if (again.size() != kFooterSize || std::memcmp(again.data(), data + size - kFooterSize, kFooterSize) != 0)
        Fail("accepted footer re-encodes differently");
      if (f->toc_offset < 8 || f->toc_offset + f->toc_size > size - kFooterSize)
        Fail("accepted footer points outside the blob");
    }
  }

  auto toc = DecodeToc({data, size}, kTocOffset);
  if (!toc.ok()) return 0;
  if (toc->manifest.version != 1 || !toc->manifest.layer) Fail("accepted TOC without a layer manifest");
  for (const ContentTable& t : toc->contents) {
    if (t.chunks.size() != (t.size + toc->chunk_size - 1) / toc->chunk_size) Fail("accepted wrong chunk count");
    for (const ChunkLocation& c : t.chunks)
      if (c.frame_size == 0 || c.blob_offset + c.frame_size > kTocOffset) Fail("accepted frame past the TOC");
  }
  auto payload = EncodeToc(*toc);
  if (!payload.ok()) Fail("accepted TOC does not re-encode:", payload.status().ToString());
  auto again = DecodeToc({reinterpret_cast<const uint8_t*>(payload->data()), payload->size()}, kTocOffset);
  if (!again.ok()) Fail("re-encoded TOC does not decode:", again.status().ToString());
  if (!SameToc(*again, *toc)) Fail("re-encoded TOC decodes differently");
  (void)FormatTocJson(*toc);
  return 0;
}

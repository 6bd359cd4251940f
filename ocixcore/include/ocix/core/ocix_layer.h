// The OCIX layer blob: an ordinary tar+zstd OCI layer, built so that each
// file's content can be read lazily (docs/FORMAT.md, "OCIX layers").
//
//   [zstd frames of the tar stream][TOC skippable frame][footer skippable frame]
//
// Every regular file's content is cut into chunk_size pieces and each piece is
// its own zstd frame holding exactly those bytes; tar headers, padding and the
// end-of-archive marker go in frames of their own between them. Any zstd
// decoder sees one tar stream (skippable frames are skipped), so stock
// runtimes unpack the layer as usual. The TOC (zstd-compressed canonical CBOR)
// holds the layer's version 1 manifest and, for every content hash, where its
// chunk frames are. The footer, a fixed-size skippable frame at the very end,
// locates the TOC when the layer descriptor's annotations are not at hand.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ocix/core/blake3.h"
#include "ocix/core/manifest.h"
#include "ocix/core/status.h"

namespace ocix::core {

inline constexpr std::string_view kOcixLayerMediaType = "application/vnd.oci.image.layer.v1.tar+zstd";
// Annotations on the layer descriptor. containerd passes descriptor
// annotations under containerd.io/snapshot/ to snapshotters as labels.
inline constexpr std::string_view kAnnotationPrefix = "containerd.io/snapshot/ocix/";
inline constexpr std::string_view kAnnotationTocDigest = "containerd.io/snapshot/ocix/toc.digest";
inline constexpr std::string_view kAnnotationTocOffset = "containerd.io/snapshot/ocix/toc.offset";
inline constexpr std::string_view kAnnotationTocSize = "containerd.io/snapshot/ocix/toc.size";
inline constexpr std::string_view kAnnotationManifestDigest = "containerd.io/snapshot/ocix/manifest.digest";

// zstd skippable frames: magic 0x184D2A5? (little endian), u32 payload size.
inline constexpr uint32_t kTocFrameMagic = 0x184D2A5E;
inline constexpr uint32_t kFooterFrameMagic = 0x184D2A5F;
inline constexpr std::string_view kFooterMagic = "OCIXTOC1";
// 8-byte frame header + magic(8) + toc offset(8) + toc size(8) + sha256(32).
inline constexpr size_t kFooterSize = 64;
inline constexpr uint64_t kDefaultChunkSize = 1u << 20;
// A TOC larger than this is refused before it is fetched or decompressed.
inline constexpr uint64_t kMaxTocBytes = 256u << 20;

// Where one chunk of a file's content lives in the blob.
struct ChunkLocation {
  uint64_t blob_offset = 0;  // start of its zstd frame
  uint64_t frame_size = 0;   // compressed bytes of that frame
  Digest digest;             // BLAKE3-256 of the chunk's bytes
  bool operator==(const ChunkLocation&) const = default;
};

struct ContentTable {
  Digest digest;  // BLAKE3-256 of the whole content
  uint64_t size = 0;
  std::vector<ChunkLocation> chunks;  // chunk i holds bytes [i*chunk_size, ...)
  bool operator==(const ContentTable&) const = default;
};

struct Toc {
  uint64_t chunk_size = kDefaultChunkSize;
  Manifest manifest;                   // version 1, layer = true
  std::string manifest_bytes;          // its canonical encoding
  std::vector<ContentTable> contents;  // sorted by digest, unique
  std::vector<std::string> prefetch;   // paths whose chunks come first

  const ContentTable* Find(const Digest& d) const;
  // Uncompressed [offset, size) of chunk i of a content of `size` bytes.
  std::pair<uint64_t, uint64_t> ChunkRange(uint64_t size, size_t i) const;
};

// Encodes the TOC as canonical CBOR, then zstd; returns the compressed bytes
// (the TOC frame's payload).
Result<std::string> EncodeToc(const Toc& toc);
// Decompresses and decodes an untrusted TOC payload, validating everything:
// the manifest, that every regular file with content has a table whose chunk
// count matches its size, that frames lie before `toc_offset` and do not
// overlap.
Result<Toc> DecodeToc(std::span<const uint8_t> payload, uint64_t toc_offset);

struct Footer {
  uint64_t toc_offset = 0;  // of the TOC frame's payload in the blob
  uint64_t toc_size = 0;    // payload bytes
  std::array<uint8_t, 32> toc_sha256{};
  std::string TocDigest() const;  // "sha256:<hex>"
};
std::string EncodeFooter(const Footer& f);
// Parses the last kFooterSize bytes of a blob of blob_size bytes.
Result<Footer> DecodeFooter(std::span<const uint8_t> last_bytes, uint64_t blob_size);
// Reads and checks the TOC of an OCIX layer blob in a local file, found by
// its footer (whose TOC digest is checked).
Result<Toc> ReadTocFromFile(const std::string& path);
// JSON of a TOC for `ocix inspect --layer --json`: chunk size, prefetch list,
// content tables (blob offsets of every chunk frame) and the manifest.
std::string FormatTocJson(const Toc& toc);

// Reads the TOC location from layer descriptor annotations (all or nothing).
Result<std::optional<Footer>> FooterFromAnnotations(const std::map<std::string, std::string>& annotations);

}  // namespace ocix::core

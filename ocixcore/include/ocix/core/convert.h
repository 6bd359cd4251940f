// Converting OCI images into OCIX images (`ocix convert`).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ocix/core/oci_layout.h"
#include "ocix/core/ocix_layer.h"
#include "ocix/core/status.h"

namespace ocix::core {

struct ConvertOptions {
  uint64_t chunk_size = kDefaultChunkSize;
  int zstd_level = 3;
  // Paths (absolute, as in the image) whose content goes first in each layer
  // that has them, in this order, marked in the TOC for prefetching.
  std::vector<std::string> prefetch;
};

struct ConvertedLayer {
  Descriptor descriptor;  // media type, digest, size, ocix annotations
  std::string diff_id;    // sha256 of the uncompressed tar (for the config)
  uint64_t tar_bytes = 0;
  uint64_t toc_bytes = 0;
  uint64_t files = 0;    // regular files with content
  uint64_t entries = 0;  // manifest entries
  uint64_t manifest_bytes = 0;
};

// Progress of a long step: bytes done of total (total 0 when unknown).
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

// Rewrites one layer blob (tar, tar+gzip or tar+zstd; its digest is checked
// as it streams) as an OCIX layer written to out_path. Memory does not grow
// with the layer's size: one chunk is held at a time.
Result<ConvertedLayer> ConvertLayer(const std::string& src_path, std::string_view src_digest,
                                    const std::string& out_path, const ConvertOptions& options,
                                    const ProgressFn& progress = {});

struct LocalLayer {
  std::string path;
  std::string digest;  // checked as the file streams
};

// Squashes layers (applied in order, whiteouts and all) into one OCIX layer
// holding the final tree (the seed's model). Contents are kept in spool_dir
// (removed after) between the two passes, so memory stays bounded; disk use
// is the uncompressed size of every file in the layers.
Result<ConvertedLayer> ConvertFlattened(const std::vector<LocalLayer>& layers, const std::string& out_path,
                                        const std::string& spool_dir, const ConvertOptions& options,
                                        const ProgressFn& progress = {});

}  // namespace ocix::core

namespace ocix::core {

// A blob as a local file. A temporary one (fetched for the caller) is the
// caller's to delete.
struct LocalBlob {
  std::string path;
  bool temporary = false;
};

// Where images come from and go to: an OCI layout directory here; a registry
// in ocix_registry. Blobs are verified against their descriptors by sources.
class ImageSource {
 public:
  virtual ~ImageSource() = default;
  // The descriptor the reference names (an index or a manifest) and its bytes.
  virtual Result<std::pair<Descriptor, std::string>> Root() = 0;
  // A small blob (JSON), digest-checked.
  virtual Result<std::string> ReadBlob(const Descriptor& d, size_t max_size) = 0;
  // A local file holding the blob, made in tmp_dir if it must be fetched.
  // The caller checks its digest while reading it.
  virtual Result<LocalBlob> BlobFile(const Descriptor& d, const std::string& tmp_dir, const ProgressFn& progress) = 0;
};

class ImageSink {
 public:
  virtual ~ImageSink() = default;
  // Stores a blob held in a file (the sink may move it).
  virtual Status PutBlobFile(const Descriptor& d, const std::string& path, const ProgressFn& progress) = 0;
  virtual Status PutBlob(const Descriptor& d, std::string_view data) = 0;
  // Stores the root (index or manifest) and names it with the sink's tag.
  virtual Status PutRoot(const Descriptor& d, std::string_view data) = 0;
};

// The OCI layout "DIR:TAG" as a source or a sink (created when missing).
Result<std::unique_ptr<ImageSource>> OpenLayoutSource(const LayoutRef& ref);
Result<std::unique_ptr<ImageSink>> OpenLayoutSink(const LayoutRef& ref);

// What ConvertImage reports as it goes, for progress bars and logs.
struct ConvertEvents {
  std::function<void(const std::string& what, uint64_t total)> begin_step;
  ProgressFn progress;
  std::function<void(const ConvertedLayer&)> layer_done;
};

struct ConvertImageOptions {
  ConvertOptions layer;
  std::optional<Platform> platform;  // only this platform of an index
  bool flatten = false;              // one layer per image (ConvertFlattened)
  std::string tmp_dir = "/var/tmp";
};

struct ConvertImageResult {
  Descriptor root;  // the new index or manifest
  std::vector<ConvertedLayer> layers;
};

// Converts every image manifest the source's root reaches (all platforms of
// an index, or the one chosen) into OCIX and stores the result in the sink.
// Layers that already carry OCIX annotations are kept as they are.
Result<ConvertImageResult> ConvertImage(ImageSource& src, ImageSink& dst, const ConvertImageOptions& options,
                                        const ConvertEvents& events = {});

}  // namespace ocix::core

namespace ocix::core {

struct VerifyReport {
  uint64_t files = 0;   // content tables checked
  uint64_t chunks = 0;  // chunk frames decompressed and hashed
  uint64_t content_bytes = 0;
  uint64_t entries = 0;  // manifest entries compared with the tar stream
};

// Checks an OCIX layer blob against itself and its descriptor: the TOC is
// found (annotations, else footer) and its digest checked; every chunk frame
// is one zstd frame at its offset that decompresses to its size and BLAKE3;
// every content hashes to its digest; the whole blob's digest matches the
// descriptor; and the tar stream, read as any runtime would, yields exactly
// the TOC's manifest. The first failure is reported as Corruption naming the
// path it concerns.
Result<VerifyReport> VerifyOcixLayer(const std::string& blob_path, const Descriptor& d);

// Verifies every OCIX layer of every image the source's root reaches.
// `on_layer` is told about each layer as it passes.
Status VerifyImage(ImageSource& src, const std::string& tmp_dir,
                   const std::function<void(const Descriptor&, const VerifyReport&)>& on_layer = {});

}  // namespace ocix::core

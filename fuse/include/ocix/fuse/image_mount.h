// A whole image's root filesystem, read-only: one LayerFs per OCIX layer,
// stacked with overlayfs (or bind-mounted when there is one layer), as a
// container would see it.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "ocix/core/oci_layout.h"
#include "ocix/core/store/blob_reader.h"
#include "ocix/core/store/chunk_store.h"
#include "ocix/fuse/layer_fs.h"

namespace ocix::fuse {

// Finds, fetches and checks a layer's TOC: location and digest from the
// descriptor's annotations, else from the footer (last 64 bytes of the blob,
// d.size long). The TOC's sha256 is checked before it is decoded.
core::Result<core::Toc> FetchToc(core::BlobReader& blob, const core::Descriptor& d);

// FetchToc's first half, for callers that keep the TOC (the snapshotter
// stores it to mount again after a restart without the registry): the
// footer and the digest-checked, still undecoded payload.
struct TocPayload {
  core::Footer footer;
  std::string payload;
};
core::Result<TocPayload> FetchTocPayload(core::BlobReader& blob, const core::Descriptor& d);
// Decodes a payload FetchTocPayload returned (or one read back from disk:
// its sha256 is checked against the footer again).
core::Result<core::Toc> DecodeTocPayload(const TocPayload& p, const core::Descriptor& d);

// The attributes of a directory a layer leaves implied: the nearest lower
// layer (lowers[0] is the one right below) that lists the path as a
// directory, unless something in between hides it (a whiteout or a
// non-directory at an ancestor, or an opaque ancestor). Null if none.
const core::Entry* FindLowerDir(std::span<const core::Manifest* const> lowers, std::string_view path);

struct MountLayer {
  core::Descriptor descriptor;
  std::unique_ptr<core::BlobReader> blob;
};

class ImageMount {
 public:
  // Mounts every layer (bottom first) under work_dir/layers/N, then the
  // stack at mountpoint. On failure, what was mounted is unmounted again.
  // REQUIRES: store outlives the ImageMount.
  static core::Result<std::unique_ptr<ImageMount>> Create(std::vector<MountLayer> layers, core::ChunkStore& store,
                                                          const std::string& work_dir, const std::string& mountpoint,
                                                          const LayerFsOptions& options = {});
  ~ImageMount();  // Unmount()
  ImageMount(const ImageMount&) = delete;
  ImageMount& operator=(const ImageMount&) = delete;

  // Unmounts the stack, then the layers. Safe to call twice.
  void Unmount();
  // Blocks until every layer's session has ended (e.g. after `ocix umount`).
  void Wait();
  // Starts background fetching (a thread per layer, top layer first), with
  // at most max_in_flight batches fetching at once across the layers.
  void StartPrefetch(Prefetch what, int max_in_flight = 2);

  const std::vector<std::unique_ptr<LayerFs>>& layers() const { return layers_; }
  const std::vector<std::string>& layer_dirs() const { return layer_dirs_; }

 private:
  ImageMount() = default;
  std::vector<std::unique_ptr<LayerFs>> layers_;
  std::vector<std::string> layer_dirs_;
  std::vector<std::thread> prefetchers_;
  std::unique_ptr<std::counting_semaphore<>> prefetch_slots_;
  std::string mountpoint_;
  bool stacked_ = false;
};

}  // namespace ocix::fuse

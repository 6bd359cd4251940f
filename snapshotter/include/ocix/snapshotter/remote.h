// Remote (OCIX) layers of the snapshotter: finding a layer from the labels
// containerd's pull clients send, fetching and keeping its TOC, and serving
// it with a lazy FUSE filesystem over the node's shared chunk cache.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <semaphore>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "ocix/config/config.h"
#include "ocix/core/containerd_labels.h"
#include "ocix/core/oci_layout.h"
#include "ocix/core/registry/reference.h"
#include "ocix/core/store/chunk_store.h"
#include "ocix/fuse/image_mount.h"
#include "ocix/fuse/layer_fs.h"
#include "ocix/snapshotter/metadata.h"

namespace ocix::snapshotter {

using core::kLabelCriImageRef;
using core::kLabelCriLayerDigest;
using core::kLabelStargzDigest;
using core::kLabelStargzRef;
using core::kLabelStargzSize;
using core::kLabelTargetRef;

// Where a layer lives, from Prepare's labels.
struct LayerLocation {
  std::string image_ref;  // as sent
  core::Reference ref;
  core::Descriptor layer;  // digest, size when known, containerd.io/snapshot/ocix/* annotations
};
// Null when the labels do not say where the layer is (then containerd must
// download it). InvalidArgument when they say it badly.
core::Result<std::optional<LayerLocation>> LocateLayer(const Labels& labels);

// Observes each registry fetch: seconds, bytes received, success.
using FetchObserver = std::function<void(double, uint64_t, bool)>;

struct RemoteStats {
  uint64_t mounted = 0;
  std::array<uint64_t, fuse::kFuseOpCount> fuse_ops{};  // by fuse::FuseOp
  uint64_t fuse_read_bytes = 0, fuse_read_errors = 0;
  uint64_t served_chunks = 0, served_frame_bytes = 0;
  uint64_t readahead_chunks = 0, readahead_frame_bytes = 0;
  uint64_t prefetched_chunks = 0, prefetch_errors = 0;
};

class RemoteLayers {
 public:
  struct Options {
    std::string toc_dir;  // TOCs kept for remounting after a restart
    config::Config config;
    FetchObserver on_fetch;  // may be empty
  };
  static core::Result<std::unique_ptr<RemoteLayers>> Open(Options options);
  ~RemoteLayers();  // unmounts everything
  RemoteLayers(const RemoteLayers&) = delete;
  RemoteLayers& operator=(const RemoteLayers&) = delete;

  // Fetches and checks the layer's TOC from the registry (network; call it
  // without locks). NotFound when the layer is not OCIX.
  core::Result<fuse::TocPayload> FetchToc(const LayerLocation& where);
  // Writes the TOC where Restore finds it (temp + fsync + rename).
  core::Status KeepToc(const fuse::TocPayload& toc);
  // What the metadata records for a layer (annotations carry the footer).
  static RemoteLayer Describe(const LayerLocation& where, const fuse::TocPayload& toc);

  // A layer's filesystem, indexed and ready to mount (the slow part: TOC
  // decode and indexing), so callers can do it before taking locks.
  struct Layer {
    std::unique_ptr<fuse::LayerFs> fs;
    std::thread prefetcher;
    Usage usage;
    ~Layer();  // unmounts, then joins the prefetcher
  };
  // From a TOC (fetched, or read back from toc_dir when `toc` is null: no
  // registry contact). `lowers` are the mounted remote layers below, nearest
  // first (for implied directories' attributes).
  core::Result<std::unique_ptr<Layer>> Load(const RemoteLayer& layer, const fuse::TocPayload* toc,
                                            const std::vector<int64_t>& lowers);
  // Mounts a loaded layer as layer `id` at mountpoint and starts its prefetch.
  core::Status Attach(int64_t id, std::unique_ptr<Layer> layer, const std::string& mountpoint);
  // Load + Attach.
  core::Status Mount(int64_t id, const RemoteLayer& layer, const fuse::TocPayload* toc, const std::string& mountpoint,
                     const std::vector<int64_t>& lowers);
  // Deletes kept TOCs (and temp files) whose digest is not in `keep`.
  void ForgetTocsExcept(const std::set<std::string>& keep);
  // Unmounts layer id (no-op if not mounted).
  void Unmount(int64_t id);
  void UnmountAll();
  bool IsMounted(int64_t id) const;
  // Uncompressed bytes and entries of a mounted layer.
  Usage LayerUsage(int64_t id) const;

  RemoteStats stats() const;
  core::StoreStats store_stats() const { return store_->stats(); }

 private:
  explicit RemoteLayers(Options options);
  core::Result<fuse::TocPayload> LoadToc(const RemoteLayer& layer) const;

  // Keeps the cache under config.cache_max_bytes (when set), every 10 s.
  void TrimLoop();

  Options options_;
  std::unique_ptr<core::ChunkStore> store_;
  std::mutex trim_mu_;
  std::condition_variable trim_cv_;
  bool stopping_ = false;  // GUARDED_BY(trim_mu_)
  std::thread trimmer_;
  std::unique_ptr<std::counting_semaphore<>> prefetch_slots_;
  mutable std::mutex mu_;
  std::map<int64_t, std::unique_ptr<Layer>> mounted_;  // GUARDED_BY(mu_)
  RemoteStats retired_;                                // counters of layers unmounted since start, GUARDED_BY(mu_)
};

}  // namespace ocix::snapshotter

// A read-only FUSE filesystem (libfuse3 low-level API) serving one OCIX layer.
//
// The tree comes from the layer's TOC at once; file contents are read through
// the node's ChunkStore, which fetches and verifies missing chunks from the
// layer's blob on first read. The filesystem presents the layer the way
// overlayfs expects a lower layer: whiteouts are character devices 0:0 and
// opaque directories carry trusted.overlay.opaque=y, so layers stack.
//
// Inode numbers are entry indices (immutable tree), so there is no per-inode
// state and forget is a no-op. Every request gets exactly one reply.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <semaphore>
#include <string>
#include <string_view>
#include <thread>

#include "ocix/core/ocix_layer.h"
#include "ocix/core/status.h"
#include "ocix/core/store/blob_reader.h"
#include "ocix/core/store/chunk_store.h"

struct fuse_session;

namespace ocix::fuse {

struct LayerFsOptions {
  // The tree never changes: let the kernel cache names and attributes.
  double entry_timeout_s = 86400;
  double attr_timeout_s = 86400;
  unsigned max_threads = 8;
  std::string fsname = "ocix";
  // Metadata for directories the layer leaves implied (they exist in a lower
  // layer): overlayfs shows the upper layer's attributes, so inventing them
  // would change the stacked view. Returns null when no lower layer has one
  // (then: 0755, root, time 0, as unpackers create them).
  std::function<const core::Entry*(std::string_view path)> lower_dir;
  // Read-ahead in blob order. A blob holds files in path order, so a read
  // that misses the cache may also fetch the whole frames that follow it,
  // in requests of their own on the layer's read-ahead thread (the read
  // waits only for its own chunks). It starts at readahead_min_bytes when a
  // miss lands close to the previous one; at each miss the window doubles if
  // most of the last read-ahead was read since and halves (to nothing below
  // the minimum) if little of it was, up to readahead_max_bytes, so
  // scattered reads fetch only what they read. A file of four or more
  // chunks whose third read misses (an executable being run) gets the rest
  // of it, in batches of readahead_max_bytes, unless the rest is more than
  // eight of them. 0 for readahead_max_bytes turns it all off; a minimum
  // above the maximum is taken as the maximum.
  uint64_t readahead_min_bytes = 128u << 10;
  uint64_t readahead_max_bytes = 2u << 20;
};

// FUSE requests a layer answers, counted by kind.
enum class FuseOp : uint8_t {
  kLookup,
  kGetattr,
  kReadlink,
  kOpen,
  kRead,
  kOpendir,
  kReaddir,
  kReaddirplus,
  kGetxattr,
  kListxattr,
  kStatfs,
};
inline constexpr size_t kFuseOpCount = 11;
std::string_view FuseOpName(FuseOp op);

struct LayerFsStats {
  std::array<std::atomic<uint64_t>, kFuseOpCount> ops{};  // by FuseOp
  uint64_t op(FuseOp o) const { return ops[static_cast<size_t>(o)].load(); }
  std::atomic<uint64_t> read_bytes{0}, read_errors{0};
  // Chunks reads were answered from, each counted once per layer, and the
  // compressed bytes of their frames: what the workload needed from the blob.
  std::atomic<uint64_t> served_chunks{0}, served_frame_bytes{0};
  // Chunks fetched by read-ahead (not asked for by the read itself).
  std::atomic<uint64_t> readahead_chunks{0}, readahead_frame_bytes{0};
  std::atomic<uint64_t> prefetched_chunks{0}, prefetch_errors{0};
  std::atomic<bool> prefetch_done{false};
  std::atomic<int> active_reads{0};  // on-demand reads in progress (prefetch yields to them)
};

// What to fetch in the background after mounting.
enum class Prefetch {
  kNone,  // only what is read
  kList,  // the TOC's prefetch list
  kAll,   // the prefetch list, then every other chunk of the layer
};

class LayerFs {
 public:
  // Indexes the TOC (synthesizing directories a layer leaves implied).
  // REQUIRES: store outlives the LayerFs.
  static core::Result<std::unique_ptr<LayerFs>> Create(core::Toc toc, core::ChunkStore& store,
                                                       std::unique_ptr<core::BlobReader> blob,
                                                       LayerFsOptions options = {});
  ~LayerFs();  // unmounts if mounted
  LayerFs(const LayerFs&) = delete;
  LayerFs& operator=(const LayerFs&) = delete;

  // Mounts read-only at mountpoint and serves on its own threads.
  core::Status Mount(const std::string& mountpoint);
  // Unmounts and waits for the serving threads. Safe to call twice.
  void Unmount();
  // Blocks until the session ends (unmounted from outside or Unmount()).
  void Wait();
  // Fetches chunks in the background (see Prefetch) in batches of about
  // batch_bytes, waiting while on-demand reads are in progress. Returns
  // when done or when Unmount() is called; call it on a thread of your own.
  // `slots` (optional, shared by the layers of a node or image) bounds how
  // many prefetch batches are in flight at once.
  void RunPrefetch(Prefetch what, uint64_t batch_bytes = 8u << 20, std::counting_semaphore<>* slots = nullptr);

  const LayerFsStats& stats() const { return stats_; }
  size_t inode_count() const;
  // The layer's manifest (from its TOC).
  const core::Manifest& manifest() const;

  struct Impl;  // the FUSE callbacks reach it through fuse_req_userdata

 private:
  LayerFs() = default;
  std::unique_ptr<Impl> impl_;
  LayerFsStats stats_;
  fuse_session* session_ = nullptr;
  std::string mountpoint_;
  std::thread loop_;
  std::atomic<bool> stop_prefetch_{false};
};

}  // namespace ocix::fuse

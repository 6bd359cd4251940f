// The snapshotter: containerd's Snapshotter interface over SQLite metadata,
// overlayfs directories for ordinary snapshots and lazy FUSE mounts for
// remote (OCIX) layers. The gRPC service (service.h) is a thin mapping of it.
//
// On disk, under root:
//   metadata.db            SQLite (metadata.h)
//   snapshots/<id>/fs      a snapshot's tree: an overlayfs upper dir, or a
//                          remote layer's FUSE mountpoint
//   snapshots/<id>/work    overlayfs work dir (active snapshots)
//   tocs/<sha256>.toc      TOCs of remote layers, to mount them again after a
//                          restart without the registry
//   cache/                 the node's shared chunk cache (unless configured)
//
// Overlay snapshots behave as containerd's overlayfs snapshotter (same mount
// shapes: bind for a single layer, overlay otherwise). The remote handshake:
// a Prepare whose labels carry containerd.io/snapshot.ref (the target chain
// ID) and say where an OCIX layer lives gets that layer mounted and committed
// under the target name, and the answer AlreadyExists; anything that cannot
// be served remotely is prepared normally, so containerd downloads it.
#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <string>
#include <vector>

#include "ocix/config/config.h"
#include "ocix/core/unique_fd.h"
#include "ocix/snapshotter/filter.h"
#include "ocix/snapshotter/metadata.h"
#include "ocix/snapshotter/remote.h"

namespace ocix::snapshotter {

struct MountSpec {
  std::string type, source;
  std::vector<std::string> options;
  bool operator==(const MountSpec&) const = default;
};

class Snapshotter {
 public:
  struct Options {
    std::string root;
    config::Config config;  // cache_dir empty: <root>/cache
    FetchObserver on_fetch;
  };
  // Opens the metadata and cache and mounts every remote snapshot again
  // from its kept TOC (no registry contact). A layer that cannot be mounted
  // is logged and left recorded (its reads fail until it is removed).
  static core::Result<std::unique_ptr<Snapshotter>> Open(Options options);
  ~Snapshotter();  // unmounts the remote layers

  core::Result<std::vector<MountSpec>> Prepare(const std::string& key, const std::string& parent, const Labels& labels);
  core::Result<std::vector<MountSpec>> View(const std::string& key, const std::string& parent, const Labels& labels);
  core::Result<std::vector<MountSpec>> Mounts(const std::string& key);
  core::Status Commit(const std::string& name, const std::string& key, const Labels& labels);
  core::Status Remove(const std::string& key);
  core::Result<Info> Stat(const std::string& key);
  core::Result<Info> Update(const Info& info, const std::vector<std::string>& fieldpaths);
  core::Status Walk(const Filter& filter, const std::function<void(const Info&)>& fn);
  core::Result<Usage> GetUsage(const std::string& key);
  // Deletes directories (and mounts) no snapshot owns.
  core::Status Cleanup();

  RemoteStats remote_stats() const { return remote_->stats(); }
  core::StoreStats store_stats() const { return remote_->store_stats(); }
  const std::string& root() const { return options_.root; }

 private:
  explicit Snapshotter(Options options);
  core::Result<std::vector<MountSpec>> CreateLocal(Kind kind, const std::string& key, const std::string& parent,
                                                   const Labels& labels);
  // OK when the layer is now mounted and committed as `target`.
  core::Status PrepareRemote(const std::string& target, const std::string& parent, const Labels& labels,
                             const LayerLocation& where);
  std::vector<MountSpec> MountsFor(const Snapshot& s) const;
  std::string Dir(int64_t id) const;
  std::string FsDir(int64_t id) const { return Dir(id) + "/fs"; }
  std::vector<int64_t> RemoteLowers(const std::vector<int64_t>& parent_ids);
  void Restore();
  // Unavailable when a layer of the chain is a remote layer that could not
  // be mounted again after a restart (its directory would be empty).
  core::Status CheckChain(const std::vector<int64_t>& ids) const;

  Options options_;
  core::UniqueFd root_lock_;                  // flock: one daemon per root
  std::vector<std::string> overlay_options_;  // e.g. index=off
  // Held shared by calls that create or delete snapshot directories and
  // TOCs, exclusively by Cleanup, so it never deletes one being made.
  std::shared_mutex dirs_mu_;
  mutable std::mutex unavailable_mu_;
  std::map<int64_t, std::string> unavailable_;  // id -> why; GUARDED_BY(unavailable_mu_)
  std::unique_ptr<Metadata> meta_;
  std::unique_ptr<RemoteLayers> remote_;
  // Targets being prepared remotely: a second Prepare of the same layer waits.
  std::mutex preparing_mu_;
  std::condition_variable preparing_cv_;
  std::set<std::string> preparing_;  // GUARDED_BY(preparing_mu_)
};

// The current time in nanoseconds since the epoch.
int64_t NowNs();
// Disk usage of a tree as containerd computes it: 512-byte blocks of each
// inode once (hard links counted once), and the inode count.
core::Result<Usage> DiskUsage(const std::string& dir);

}  // namespace ocix::snapshotter

// Snapshot metadata in SQLite: what containerd's snapshotters keep in bolt
// (snapshots/storage), plus where a remote (OCIX) snapshot's layer lives.
//
// Keys are opaque strings (containerd's contain spaces, slashes and colons);
// every snapshot also has an internal id that never changes — not even on
// Commit, which renames the key — and is never reused, so on-disk
// directories are named by id. Timestamps are nanoseconds since the epoch
// (UTC), returned exactly as stored.
//
// Every mutation is one transaction (WAL, synchronous=FULL): after a crash
// or kill -9 the database holds every completed call and nothing partial.
// Thread-safe: one connection behind a mutex (calls are short; no I/O other
// than SQLite's happens under it).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "ocix/core/status.h"

struct sqlite3;

namespace ocix::snapshotter {

enum class Kind { kUnknown = 0, kView = 1, kActive = 2, kCommitted = 3 };
std::string_view KindName(Kind k);  // "view", "active", "committed" (filters use these)

using Labels = std::map<std::string, std::string>;

// What containerd's snapshots.Info holds.
struct Info {
  std::string name;
  std::string parent;  // parent's name, empty for none
  Kind kind = Kind::kUnknown;
  int64_t created_ns = 0, updated_ns = 0;
  Labels labels;
};

struct Usage {
  int64_t size = 0, inodes = 0;
};

// Where a remote snapshot's layer lives, enough to mount it again after a
// restart (the TOC itself is kept in a file named by toc_digest).
struct RemoteLayer {
  std::string image_ref;     // registry reference the layer was pulled with
  std::string layer_digest;  // sha256:...
  int64_t layer_size = 0;    // 0 when unknown
  std::string toc_digest;    // sha256 of the TOC payload
  uint64_t toc_offset = 0, toc_size = 0;
  Labels annotations;  // the layer's containerd.io/snapshot/ocix/* annotations
};

// A snapshot as the snapshotter needs it for mounts.
struct Snapshot {
  int64_t id = 0;
  Kind kind = Kind::kUnknown;
  std::vector<int64_t> parent_ids;  // nearest first
  bool remote = false;
};

class Metadata {
 public:
  // Opens (creating if needed) the database at path.
  static core::Result<std::unique_ptr<Metadata>> Open(const std::string& path);
  ~Metadata();
  Metadata(const Metadata&) = delete;
  Metadata& operator=(const Metadata&) = delete;

  // Creates an active or view snapshot (or, with remote set, a committed
  // remote one). InvalidArgument for another kind or bad labels;
  // AlreadyExists if key exists; NotFound if parent does not exist;
  // FailedPrecondition if parent is not committed. `prepare` runs inside the
  // transaction with the new snapshot (e.g. to create its directories): if
  // it fails, nothing is recorded.
  core::Result<Snapshot> Create(Kind kind, const std::string& key, const std::string& parent, const Labels& labels,
                                int64_t now_ns, const std::optional<RemoteLayer>& remote = std::nullopt,
                                const std::function<core::Status(const Snapshot&)>& prepare = {});
  // Active or view snapshot for mounts. NotFound; FailedPrecondition when committed.
  core::Result<Snapshot> GetActive(const std::string& key) const;
  // Any snapshot by key. NotFound.
  core::Result<Snapshot> Get(const std::string& key) const;
  core::Result<Info> GetInfo(const std::string& key) const;
  // Updates labels as containerd does: no field paths replace all labels;
  // "labels" replaces all; "labels.K" sets K (or deletes it when the new
  // value is empty). Other paths: InvalidArgument.
  core::Result<Info> UpdateInfo(const Info& info, const std::vector<std::string>& fieldpaths, int64_t now_ns);
  // Active key becomes committed snapshot `name` (same id): AlreadyExists if
  // name exists; NotFound; FailedPrecondition if key is not active.
  core::Result<Snapshot> Commit(const std::string& key, const std::string& name, const Labels& labels,
                                const Usage& usage, int64_t now_ns);
  // NotFound; FailedPrecondition if it has children. `remove` runs inside
  // the transaction (e.g. unmount); if it fails nothing is removed.
  core::Result<Snapshot> Remove(const std::string& key,
                                const std::function<core::Status(const Snapshot&)>& remove = {});
  core::Result<Usage> GetUsage(const std::string& key) const;
  // Every snapshot's info, in id order (parents before children), read in
  // one consistent view; fn runs after the lock is released.
  core::Status Walk(const std::function<void(const Info&)>& fn) const;
  // Keys of the remote snapshots, in id order.
  core::Result<std::vector<std::string>> RemoteKeys() const;
  // TOC digests the remote snapshots refer to.
  core::Result<std::set<std::string>> TocDigests() const;
  core::Result<std::optional<RemoteLayer>> GetRemote(int64_t id) const;
  // Ids of every snapshot (to find directories nothing owns).
  core::Result<std::vector<int64_t>> Ids() const;

 private:
  Metadata() = default;
  core::Result<Snapshot> LoadSnapshotLocked(const std::string& key) const;
  core::Result<Labels> LoadLabelsLocked(int64_t id) const;
  core::Status WriteLabelsLocked(int64_t id, const Labels& labels);
  core::Status ExecLocked(const char* sql);

  struct DbCloser {
    void operator()(sqlite3* db) const;
  };
  mutable std::mutex mu_;
  std::unique_ptr<sqlite3, DbCloser> db_;
};

// containerd's label limit: key plus value at most 4096 bytes.
core::Status ValidateLabels(const Labels& labels);

}  // namespace ocix::snapshotter

#include "ocix/snapshotter/snapshotter.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <set>

namespace ocix::snapshotter {
namespace {

using core::Result;
using core::Status;
namespace fs = std::filesystem;

Status MakeDir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST) return core::ErrnoError("mkdir " + path, errno);
  if (::chmod(path.c_str(), mode) != 0) return core::ErrnoError("chmod " + path, errno);
  return {};
}

// Removes a snapshot directory, first detaching a mount left on its fs/.
void RemoveTree(const std::string& dir) {
  ::umount2((dir + "/fs").c_str(), MNT_DETACH);
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) spdlog::warn("remove {}: {}", dir, ec.message());
}

}  // namespace

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Result<Usage> DiskUsage(const std::string& dir) {
  std::set<std::pair<dev_t, ino_t>> seen;
  Usage u;
  auto visit = [&](const std::string& p) -> Status {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0) return core::ErrnoError("stat " + p, errno);
    if (seen.emplace(st.st_dev, st.st_ino).second) u.size += static_cast<int64_t>(st.st_blocks) * 512;
    return {};
  };
  OCIX_RETURN_IF_ERROR(visit(dir));
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::recursive_directory_iterator();
       it.increment(ec)) {
    OCIX_RETURN_IF_ERROR(visit(it->path().string()));
  }
  if (ec) return core::IoError("walk " + dir + ": " + ec.message());
  u.inodes = static_cast<int64_t>(seen.size());
  return u;
}

Snapshotter::Snapshotter(Options options) : options_(std::move(options)) {}

Snapshotter::~Snapshotter() {
  if (remote_) remote_->UnmountAll();
}

std::string Snapshotter::Dir(int64_t id) const { return options_.root + "/snapshots/" + std::to_string(id); }

Result<std::unique_ptr<Snapshotter>> Snapshotter::Open(Options options) {
  if (options.root.empty()) return core::InvalidArgument("snapshotter root must be set");
  options.root = fs::absolute(options.root).lexically_normal().string();
  if (options.root.size() > 1 && options.root.back() == '/') options.root.pop_back();
  if (options.config.cache_dir.empty()) options.config.cache_dir = options.root + "/cache";
  std::unique_ptr<Snapshotter> s(new Snapshotter(std::move(options)));
  std::error_code ec;
  fs::create_directories(s->options_.root, ec);
  if (ec) return core::IoError("create " + s->options_.root + ": " + ec.message());
  OCIX_RETURN_IF_ERROR(MakeDir(s->options_.root, 0700));
  OCIX_RETURN_IF_ERROR(MakeDir(s->options_.root + "/snapshots", 0700));
  // Two daemons on one root would share the database and detach each
  // other's FUSE mounts.
  const std::string lock_path = s->options_.root + "/lock";
  s->root_lock_ = core::UniqueFd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!s->root_lock_.valid()) return core::ErrnoError("open " + lock_path, errno);
  if (::flock(s->root_lock_.get(), LOCK_EX | LOCK_NB) != 0)
    return core::FailedPrecondition("another ocix-snapshotter uses " + s->options_.root);
  // As containerd does: without index=off, overlayfs refuses a lower layer
  // it saw under another upper (and our FUSE lowers are mounted afresh).
  if (fs::exists("/sys/module/overlay/parameters/index")) s->overlay_options_.push_back("index=off");
  OCIX_ASSIGN_OR_RETURN(s->meta_, Metadata::Open(s->options_.root + "/metadata.db"));
  RemoteLayers::Options ro;
  ro.toc_dir = s->options_.root + "/tocs";
  ro.config = s->options_.config;
  ro.on_fetch = s->options_.on_fetch;
  OCIX_ASSIGN_OR_RETURN(s->remote_, RemoteLayers::Open(std::move(ro)));
  s->Restore();
  // Directories and TOCs a crash left behind.
  if (Status c = s->Cleanup(); !c.ok()) spdlog::warn("cleanup at start: {}", c.ToString());
  return s;
}

std::vector<int64_t> Snapshotter::RemoteLowers(const std::vector<int64_t>& parent_ids) {
  std::vector<int64_t> out;
  for (int64_t id : parent_ids)
    if (remote_->IsMounted(id)) out.push_back(id);
  return out;
}

void Snapshotter::Restore() {
  int restored = 0, failed = 0;
  auto keys = meta_->RemoteKeys();
  if (!keys.ok()) {
    spdlog::error("restore: {}", keys.status().ToString());
    return;
  }
  for (const std::string& key : *keys) {  // parents first: ids grow
    auto s = meta_->Get(key);
    if (!s.ok()) continue;
    auto layer = meta_->GetRemote(s->id);
    Status st = !layer.ok() ? layer.status()
                : !*layer   ? core::Internal("remote record missing")
                            : remote_->Mount(s->id, **layer, nullptr, FsDir(s->id), RemoteLowers(s->parent_ids));
    if (st.ok()) {
      ++restored;
    } else {
      ++failed;
      spdlog::error("remount remote snapshot {} (id {}): {}", key, s->id, st.ToString());
      std::lock_guard lock(unavailable_mu_);
      unavailable_[s->id] = st.ToString();
    }
  }
  if (restored + failed > 0) spdlog::info("remounted {} remote layers ({} failed)", restored, failed);
}

Status Snapshotter::CheckChain(const std::vector<int64_t>& ids) const {
  std::lock_guard lock(unavailable_mu_);
  for (int64_t id : ids)
    if (auto it = unavailable_.find(id); it != unavailable_.end())
      return core::Unavailable("remote layer (id " + std::to_string(id) + ") is not mounted: " + it->second +
                               "; remove the image and pull it again");
  return {};
}

std::vector<MountSpec> Snapshotter::MountsFor(const Snapshot& s) const {
  if (s.parent_ids.empty()) {
    // One layer: overlayfs needs a lower dir, so a bind mount.
    return {MountSpec{"bind", FsDir(s.id), {s.kind == Kind::kView ? "ro" : "rw", "rbind"}}};
  }
  std::vector<std::string> options;
  if (s.kind == Kind::kActive) {
    options.push_back("workdir=" + Dir(s.id) + "/work");
    options.push_back("upperdir=" + FsDir(s.id));
  } else if (s.parent_ids.size() == 1) {
    return {MountSpec{"bind", FsDir(s.parent_ids[0]), {"ro", "rbind"}}};
  }
  std::string lower = "lowerdir=";
  for (size_t i = 0; i < s.parent_ids.size(); ++i) {
    if (i > 0) lower += ':';
    lower += FsDir(s.parent_ids[i]);
  }
  options.push_back(std::move(lower));
  options.insert(options.end(), overlay_options_.begin(), overlay_options_.end());
  return {MountSpec{"overlay", "overlay", std::move(options)}};
}

Result<std::vector<MountSpec>> Snapshotter::CreateLocal(Kind kind, const std::string& key, const std::string& parent,
                                                        const Labels& labels) {
  // The new upper dir's root takes its owner from the layer below, so the
  // container's / keeps it (as containerd's overlayfs does). Stat'ed before
  // the metadata lock: the layer below may be a FUSE mount.
  std::optional<std::pair<uid_t, gid_t>> owner;
  if (!parent.empty()) {
    auto p = meta_->Get(parent);
    if (p.ok()) {
      std::vector<int64_t> chain{p->id};
      chain.insert(chain.end(), p->parent_ids.begin(), p->parent_ids.end());
      OCIX_RETURN_IF_ERROR(CheckChain(chain));
      struct stat st {};
      if (kind == Kind::kActive && ::stat(FsDir(p->id).c_str(), &st) == 0) owner = {st.st_uid, st.st_gid};
    }
  }
  std::shared_lock dirs(dirs_mu_);
  std::string created;
  auto s = meta_->Create(kind, key, parent, labels, NowNs(), std::nullopt, [&](const Snapshot& snap) -> Status {
    const std::string dir = Dir(snap.id);
    RemoveTree(dir);  // an id reused after a rolled-back transaction
    OCIX_RETURN_IF_ERROR(MakeDir(dir, 0700));
    created = dir;
    OCIX_RETURN_IF_ERROR(MakeDir(dir + "/fs", 0755));
    if (kind == Kind::kActive) {
      OCIX_RETURN_IF_ERROR(MakeDir(dir + "/work", 0711));
      if (owner && ::lchown((dir + "/fs").c_str(), owner->first, owner->second) != 0)
        return core::ErrnoError("chown " + dir + "/fs", errno);
    }
    return {};
  });
  if (!s.ok()) {
    if (!created.empty()) RemoveTree(created);
    return s.status();
  }
  return MountsFor(*s);
}

Status Snapshotter::PrepareRemote(const std::string& target, const std::string& parent, const Labels& labels,
                                  const LayerLocation& where) {
  {
    std::unique_lock lock(preparing_mu_);
    preparing_cv_.wait(lock, [&] { return !preparing_.contains(target); });
    if (auto info = meta_->GetInfo(target); info.ok())
      return info->kind == Kind::kCommitted && info->parent == parent
                 ? core::AlreadyExists("target snapshot " + target + " already exists")
                 : core::FailedPrecondition("target " + target + " exists with another parent or kind");
    preparing_.insert(target);
  }
  struct Done {
    Snapshotter* self;
    const std::string& target;
    ~Done() {
      std::lock_guard lock(self->preparing_mu_);
      self->preparing_.erase(target);
      self->preparing_cv_.notify_all();
    }
  } done{this, target};

  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(b - a).count();
  };
  OCIX_ASSIGN_OR_RETURN(fuse::TocPayload toc, remote_->FetchToc(where));
  const auto fetched = Clock::now();
  RemoteLayer layer = RemoteLayers::Describe(where, toc);
  // Decoding and indexing happen here, without the metadata lock.
  std::vector<int64_t> lowers;
  if (!parent.empty()) {
    OCIX_ASSIGN_OR_RETURN(Snapshot p, meta_->Get(parent));
    std::vector<int64_t> chain{p.id};
    chain.insert(chain.end(), p.parent_ids.begin(), p.parent_ids.end());
    OCIX_RETURN_IF_ERROR(CheckChain(chain));
    lowers = RemoteLowers(chain);
  }
  OCIX_ASSIGN_OR_RETURN(auto loaded, remote_->Load(layer, &toc, lowers));
  const auto indexed = Clock::now();
  std::shared_lock dirs(dirs_mu_);
  OCIX_RETURN_IF_ERROR(remote_->KeepToc(toc));
  int64_t mounted_id = -1;
  std::string created;
  auto s = meta_->Create(Kind::kCommitted, target, parent, labels, NowNs(), layer, [&](const Snapshot& snap) -> Status {
    const std::string dir = Dir(snap.id);
    RemoveTree(dir);
    OCIX_RETURN_IF_ERROR(MakeDir(dir, 0700));
    created = dir;
    OCIX_RETURN_IF_ERROR(remote_->Attach(snap.id, std::move(loaded), FsDir(snap.id)));
    mounted_id = snap.id;
    return {};
  });
  if (!s.ok()) {
    if (mounted_id >= 0) remote_->Unmount(mounted_id);
    if (!created.empty()) RemoveTree(created);
    return s.status();
  }
  const auto ready = Clock::now();
  spdlog::info(
      "remote snapshot {} ready: layer {} of {} (TOC {} bytes) in {} ms (TOC fetch {} ms, decode and index {} ms, "
      "keep, mount and commit {} ms)",
      target, where.layer.digest, where.image_ref, toc.payload.size(), ms(start, ready), ms(start, fetched),
      ms(fetched, indexed), ms(indexed, ready));
  return {};
}

Result<std::vector<MountSpec>> Snapshotter::Prepare(const std::string& key, const std::string& parent,
                                                    const Labels& labels) {
  if (auto t = labels.find(std::string(kLabelTargetRef)); t != labels.end() && !t->second.empty()) {
    const std::string& target = t->second;
    // containerd then looks the target up by its ref label and parent: only
    // a committed target on the same parent can stand in for this layer.
    auto existing = meta_->GetInfo(target);
    if (existing.ok() && existing->kind == Kind::kCommitted && existing->parent == parent)
      return core::AlreadyExists("target snapshot " + target + " already exists");
    auto where =
        existing.ok() ? Result<std::optional<LayerLocation>>(std::optional<LayerLocation>()) : LocateLayer(labels);
    if (!where.ok()) {
      spdlog::warn("prepare {}: {}; preparing it normally", key, where.status().ToString());
    } else if (*where) {
      Status r = PrepareRemote(target, parent, labels, **where);
      if (r.ok()) return core::AlreadyExists("target snapshot " + target + " already exists (remote)");
      if (r.code() == core::Code::kAlreadyExists) return r;
      // containerd downloads and applies the layer itself instead.
      spdlog::warn("layer {} of {} cannot be served remotely ({}); preparing {} normally", (*where)->layer.digest,
                   (*where)->image_ref, r.ToString(), key);
    }
  }
  return CreateLocal(Kind::kActive, key, parent, labels);
}

Result<std::vector<MountSpec>> Snapshotter::View(const std::string& key, const std::string& parent,
                                                 const Labels& labels) {
  return CreateLocal(Kind::kView, key, parent, labels);
}

Result<std::vector<MountSpec>> Snapshotter::Mounts(const std::string& key) {
  OCIX_ASSIGN_OR_RETURN(Snapshot s, meta_->GetActive(key));
  OCIX_RETURN_IF_ERROR(CheckChain(s.parent_ids));
  return MountsFor(s);
}

Status Snapshotter::Commit(const std::string& name, const std::string& key, const Labels& labels) {
  OCIX_ASSIGN_OR_RETURN(Snapshot s, meta_->GetActive(key));
  if (s.kind != Kind::kActive) return core::FailedPrecondition("snapshot " + key + " is not active");
  OCIX_ASSIGN_OR_RETURN(Usage usage, DiskUsage(FsDir(s.id)));
  auto r = meta_->Commit(key, name, labels, usage, NowNs());
  if (!r.ok()) return r.status();
  // The work dir is only needed while the snapshot is an upper dir.
  std::error_code ec;
  fs::remove_all(Dir(s.id) + "/work", ec);
  return {};
}

Status Snapshotter::Remove(const std::string& key) {
  std::shared_lock dirs(dirs_mu_);
  // The row goes first (as containerd does); the mount and directory after,
  // without the metadata lock (unmounting waits for the FUSE session). A
  // crash in between leaves a directory no row owns, which Cleanup removes.
  OCIX_ASSIGN_OR_RETURN(Snapshot s, meta_->Remove(key));
  if (s.remote) remote_->Unmount(s.id);
  {
    std::lock_guard lock(unavailable_mu_);
    unavailable_.erase(s.id);
  }
  RemoveTree(Dir(s.id));
  return {};
}

Result<Info> Snapshotter::Stat(const std::string& key) { return meta_->GetInfo(key); }

Result<Info> Snapshotter::Update(const Info& info, const std::vector<std::string>& fieldpaths) {
  return meta_->UpdateInfo(info, fieldpaths, NowNs());
}

Status Snapshotter::Walk(const Filter& filter, const std::function<void(const Info&)>& fn) {
  return meta_->Walk([&](const Info& info) {
    auto adaptor = [&info](std::span<const std::string> path) -> std::optional<std::string> {
      if (path.empty()) return std::nullopt;
      if (path[0] == "name") return info.name;
      if (path[0] == "parent") return info.parent;
      if (path[0] == "kind") return std::string(KindName(info.kind));
      if (path[0] == "labels") {
        if (path.size() < 2) return std::nullopt;
        // A label key with dots arrives as several fields: join them back.
        std::string k = path[1];
        for (size_t i = 2; i < path.size(); ++i) k += "." + path[i];
        auto it = info.labels.find(k);
        if (it == info.labels.end()) return std::nullopt;
        return it->second;
      }
      return std::nullopt;
    };
    if (filter.Match(adaptor)) fn(info);
  });
}

Result<Usage> Snapshotter::GetUsage(const std::string& key) {
  OCIX_ASSIGN_OR_RETURN(Snapshot s, meta_->Get(key));
  if (s.kind == Kind::kCommitted) {
    if (s.remote) return remote_->LayerUsage(s.id);
    return meta_->GetUsage(key);
  }
  return DiskUsage(FsDir(s.id));
}

Status Snapshotter::Cleanup() {
  std::unique_lock dirs(dirs_mu_);
  std::error_code ec;
  std::vector<fs::path> found;
  for (const auto& e : fs::directory_iterator(options_.root + "/snapshots", ec)) found.push_back(e.path());
  if (ec) return core::IoError("list snapshots: " + ec.message());
  OCIX_ASSIGN_OR_RETURN(std::vector<int64_t> ids, meta_->Ids());
  std::set<std::string> live;
  for (int64_t id : ids) live.insert(std::to_string(id));
  std::vector<std::string> doomed;
  for (const fs::path& p : found)
    if (!live.contains(p.filename().string())) doomed.push_back(p.string());
  for (const std::string& d : doomed) {
    spdlog::info("cleanup: removing {}", d);
    RemoveTree(d);
  }
  OCIX_ASSIGN_OR_RETURN(std::set<std::string> tocs, meta_->TocDigests());
  remote_->ForgetTocsExcept(tocs);
  return {};
}

}  // namespace ocix::snapshotter

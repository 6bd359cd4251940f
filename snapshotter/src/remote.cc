#include "ocix/snapshotter/remote.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ocix/core/atomic_file.h"
#include "ocix/core/ocix_layer.h"
#include "ocix/core/registry/blob_reader.h"
#include "ocix/core/unique_fd.h"

namespace ocix::snapshotter {
namespace {

using core::Result;
using core::Status;

// Times every registry request of a layer for the fetch metrics.
class ObservedBlobReader final : public core::BlobReader {
 public:
  ObservedBlobReader(std::unique_ptr<core::BlobReader> inner, FetchObserver observe)
      : inner_(std::move(inner)), observe_(std::move(observe)) {}
  Result<std::vector<std::string>> ReadRanges(std::span<const core::ByteRange> ranges) override {
    auto start = std::chrono::steady_clock::now();
    auto r = inner_->ReadRanges(ranges);
    if (observe_) {
      uint64_t bytes = 0;
      if (r.ok())
        for (const auto& b : *r) bytes += b.size();
      observe_(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), bytes, r.ok());
    }
    return r;
  }
  std::string Describe() const override { return inner_->Describe(); }

 private:
  std::unique_ptr<core::BlobReader> inner_;
  FetchObserver observe_;
};

const std::string* Find(const Labels& labels, std::string_view key) {
  auto it = labels.find(std::string(key));
  return it == labels.end() || it->second.empty() ? nullptr : &it->second;
}

fuse::Prefetch ToPrefetch(config::PrefetchMode m) {
  switch (m) {
    case config::PrefetchMode::kNone: return fuse::Prefetch::kNone;
    case config::PrefetchMode::kList: return fuse::Prefetch::kList;
    case config::PrefetchMode::kAll: return fuse::Prefetch::kAll;
  }
  return fuse::Prefetch::kNone;
}

void AddLayerStats(RemoteStats& r, const fuse::LayerFsStats& s) {
  for (size_t i = 0; i < fuse::kFuseOpCount; ++i) r.fuse_ops[i] += s.ops[i];
  r.fuse_read_bytes += s.read_bytes;
  r.fuse_read_errors += s.read_errors;
  r.served_chunks += s.served_chunks;
  r.served_frame_bytes += s.served_frame_bytes;
  r.readahead_chunks += s.readahead_chunks;
  r.readahead_frame_bytes += s.readahead_frame_bytes;
  r.prefetched_chunks += s.prefetched_chunks;
  r.prefetch_errors += s.prefetch_errors;
}

std::string TocFileName(std::string_view digest) { return std::string(digest.substr(digest.find(':') + 1)) + ".toc"; }

}  // namespace

Result<std::optional<LayerLocation>> LocateLayer(const Labels& labels) {
  const std::string* ref = Find(labels, kLabelCriImageRef);
  const std::string* digest = Find(labels, kLabelCriLayerDigest);
  if (ref == nullptr || digest == nullptr) {
    ref = Find(labels, kLabelStargzRef);
    digest = Find(labels, kLabelStargzDigest);
  }
  if (ref == nullptr || digest == nullptr) return std::optional<LayerLocation>();
  LayerLocation where;
  where.image_ref = *ref;
  auto parsed = core::Reference::Parse(*ref);
  if (!parsed.ok()) return parsed.status().WithContext("layer location label");
  where.ref = std::move(*parsed);
  if (!core::IsValidSha256Digest(*digest))
    return core::InvalidArgument("layer digest label: invalid digest " + *digest);
  where.layer.digest = *digest;
  if (const std::string* size = Find(labels, kLabelStargzSize)) {
    char* end = nullptr;
    long long n = std::strtoll(size->c_str(), &end, 10);
    if (end != nullptr && *end == '\0' && n > 0) where.layer.size = n;
  }
  for (const auto& [k, v] : labels)
    if (k.starts_with(core::kAnnotationPrefix)) where.layer.annotations.emplace(k, v);
  return std::optional<LayerLocation>(std::move(where));
}

RemoteLayers::Layer::~Layer() {
  if (fs) fs->Unmount();  // also stops the prefetcher
  if (prefetcher.joinable()) prefetcher.join();
}

RemoteLayers::RemoteLayers(Options options) : options_(std::move(options)) {}

RemoteLayers::~RemoteLayers() {
  {
    std::lock_guard lock(trim_mu_);
    stopping_ = true;
  }
  trim_cv_.notify_all();
  if (trimmer_.joinable()) trimmer_.join();
  UnmountAll();
}

void RemoteLayers::TrimLoop() {
  const uint64_t max = options_.config.cache_max_bytes;
  const uint64_t low = max / 10 * 9;  // trim below the limit, not to it, so it does not run every round
  std::unique_lock lock(trim_mu_);
  while (!trim_cv_.wait_for(lock, std::chrono::seconds(10), [this] { return stopping_; })) {
    lock.unlock();
    auto r = store_->Trim(max, low);
    if (!r.ok()) {
      spdlog::warn("cache trim: {}", r.status().ToString());
    } else if (*r > 0) {
      spdlog::info("cache trim: evicted {} chunks to stay under {} bytes", *r, max);
    }
    lock.lock();
  }
}

Result<std::unique_ptr<RemoteLayers>> RemoteLayers::Open(Options options) {
  std::unique_ptr<RemoteLayers> r(new RemoteLayers(std::move(options)));
  std::error_code ec;
  std::filesystem::create_directories(r->options_.toc_dir, ec);
  if (ec) return core::IoError("create " + r->options_.toc_dir + ": " + ec.message());
  core::ChunkStore::Options so;
  so.root = r->options_.config.cache_dir;
  OCIX_ASSIGN_OR_RETURN(r->store_, core::ChunkStore::Open(so));
  if (r->options_.config.cache_max_bytes > 0) r->trimmer_ = std::thread([p = r.get()] { p->TrimLoop(); });
  r->prefetch_slots_ =
      std::make_unique<std::counting_semaphore<>>(std::max(1, r->options_.config.prefetch_max_in_flight));
  return r;
}

Result<fuse::TocPayload> RemoteLayers::FetchToc(const LayerLocation& where) {
  auto blob = core::MakeRegistryBlobReader(options_.config.RegistryOptions(), where.ref, where.layer.digest);
  ObservedBlobReader observed(std::move(blob), options_.on_fetch);
  return fuse::FetchTocPayload(observed, where.layer);
}

Status RemoteLayers::KeepToc(const fuse::TocPayload& toc) {
  const std::string path = options_.toc_dir + "/" + TocFileName(toc.footer.TocDigest());
  if (std::filesystem::exists(path)) return {};
  // The metadata row that names this file is committed durably next; the
  // file and its name must be durable first.
  core::AtomicWriteOptions o;
  o.mode = 0600;
  o.sync = true;
  o.sync_dir = true;
  return core::WriteFileAtomic(path, toc.payload, o).WithContext("keep TOC");
}

RemoteLayer RemoteLayers::Describe(const LayerLocation& where, const fuse::TocPayload& toc) {
  RemoteLayer r;
  r.image_ref = where.image_ref;
  r.layer_digest = where.layer.digest;
  r.layer_size = where.layer.size;
  r.toc_digest = toc.footer.TocDigest();
  r.toc_offset = toc.footer.toc_offset;
  r.toc_size = toc.footer.toc_size;
  // The footer as annotations, so a restart finds the TOC's place without
  // the blob; the manifest digest (if the image had one) is checked again.
  r.annotations[std::string(core::kAnnotationTocDigest)] = r.toc_digest;
  r.annotations[std::string(core::kAnnotationTocOffset)] = std::to_string(r.toc_offset);
  r.annotations[std::string(core::kAnnotationTocSize)] = std::to_string(r.toc_size);
  if (auto md = where.layer.annotations.find(std::string(core::kAnnotationManifestDigest));
      md != where.layer.annotations.end())
    r.annotations[md->first] = md->second;
  return r;
}

Result<fuse::TocPayload> RemoteLayers::LoadToc(const RemoteLayer& layer) const {
  core::Descriptor d;
  d.digest = layer.layer_digest;
  d.annotations = layer.annotations;
  OCIX_ASSIGN_OR_RETURN(std::optional<core::Footer> footer, core::FooterFromAnnotations(d.annotations));
  if (!footer) return core::Corruption("layer " + layer.layer_digest + ": no TOC location recorded");
  const std::string path = options_.toc_dir + "/" + TocFileName(layer.toc_digest);
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::NotFound("TOC " + path + " is missing");
  std::ostringstream ss;
  ss << in.rdbuf();
  return fuse::TocPayload{*footer, std::move(ss).str()};
}

Result<std::unique_ptr<RemoteLayers::Layer>> RemoteLayers::Load(const RemoteLayer& layer, const fuse::TocPayload* toc,
                                                                const std::vector<int64_t>& lowers) {
  fuse::TocPayload loaded;
  if (toc == nullptr) {
    OCIX_ASSIGN_OR_RETURN(loaded, LoadToc(layer));
    toc = &loaded;
  }
  core::Descriptor d;
  d.digest = layer.layer_digest;
  d.size = layer.layer_size;
  d.annotations = layer.annotations;
  OCIX_ASSIGN_OR_RETURN(core::Toc t, fuse::DecodeTocPayload(*toc, d));
  OCIX_ASSIGN_OR_RETURN(core::Reference ref, core::Reference::Parse(layer.image_ref));
  auto blob = std::make_unique<ObservedBlobReader>(
      core::MakeRegistryBlobReader(options_.config.RegistryOptions(), ref, layer.layer_digest), options_.on_fetch);

  fuse::LayerFsOptions o;
  o.fsname = "ocix-" + layer.layer_digest.substr(7, 12);
  o.readahead_max_bytes = options_.config.readahead_bytes;
  // The lower layers' manifests are read only while Create indexes the tree;
  // the lock keeps them mounted (and alive) for that long.
  std::lock_guard lock(mu_);
  std::vector<const core::Manifest*> lower_manifests;
  for (int64_t l : lowers)
    if (auto it = mounted_.find(l); it != mounted_.end()) lower_manifests.push_back(&it->second->fs->manifest());
  o.lower_dir = [lower_manifests](std::string_view path) { return fuse::FindLowerDir(lower_manifests, path); };
  auto m = std::make_unique<Layer>();
  for (const core::Entry& e : t.manifest.entries) {
    ++m->usage.inodes;
    if (e.type == core::FileType::kRegular) m->usage.size += static_cast<int64_t>(e.size);
  }
  OCIX_ASSIGN_OR_RETURN(m->fs, fuse::LayerFs::Create(std::move(t), *store_, std::move(blob), o));
  return m;
}

Status RemoteLayers::Attach(int64_t id, std::unique_ptr<Layer> m, const std::string& mountpoint) {
  // A daemon killed with -9 leaves its FUSE mount behind, dead (ENOTCONN).
  ::umount2(mountpoint.c_str(), MNT_DETACH);
  std::error_code ec;
  std::filesystem::create_directories(mountpoint, ec);
  if (ec) return core::IoError("create " + mountpoint + ": " + ec.message());
  OCIX_RETURN_IF_ERROR(m->fs->Mount(mountpoint));
  if (options_.config.prefetch != config::PrefetchMode::kNone) {
    fuse::LayerFs* fs = m->fs.get();
    auto* slots = prefetch_slots_.get();
    fuse::Prefetch what = ToPrefetch(options_.config.prefetch);
    m->prefetcher = std::thread([fs, slots, what] { fs->RunPrefetch(what, 8u << 20, slots); });
  }
  std::lock_guard lock(mu_);
  mounted_[id] = std::move(m);
  return {};
}

Status RemoteLayers::Mount(int64_t id, const RemoteLayer& layer, const fuse::TocPayload* toc,
                           const std::string& mountpoint, const std::vector<int64_t>& lowers) {
  OCIX_ASSIGN_OR_RETURN(auto m, Load(layer, toc, lowers));
  return Attach(id, std::move(m), mountpoint);
}

void RemoteLayers::ForgetTocsExcept(const std::set<std::string>& keep) {
  std::error_code ec;
  std::vector<std::filesystem::path> doomed;
  for (const auto& e : std::filesystem::directory_iterator(options_.toc_dir, ec)) {
    const std::string name = e.path().filename().string();
    bool kept = false;
    for (const std::string& d : keep) kept = kept || name == TocFileName(d);
    if (!kept) doomed.push_back(e.path());
  }
  for (const auto& p : doomed) std::filesystem::remove(p, ec);
}

void RemoteLayers::Unmount(int64_t id) {
  std::unique_ptr<Layer> m;
  {
    std::lock_guard lock(mu_);
    auto it = mounted_.find(id);
    if (it == mounted_.end()) return;
    m = std::move(it->second);
    mounted_.erase(it);
    AddLayerStats(retired_, m->fs->stats());
  }
  m.reset();  // unmounts outside the lock
}

void RemoteLayers::UnmountAll() {
  std::map<int64_t, std::unique_ptr<Layer>> all;
  {
    std::lock_guard lock(mu_);
    all.swap(mounted_);
  }
  // Top layers first (higher ids), though each is independent.
  while (!all.empty()) all.erase(std::prev(all.end()));
}

bool RemoteLayers::IsMounted(int64_t id) const {
  std::lock_guard lock(mu_);
  return mounted_.contains(id);
}

Usage RemoteLayers::LayerUsage(int64_t id) const {
  std::lock_guard lock(mu_);
  auto it = mounted_.find(id);
  return it == mounted_.end() ? Usage{} : it->second->usage;
}

RemoteStats RemoteLayers::stats() const {
  std::lock_guard lock(mu_);
  RemoteStats r = retired_;
  r.mounted = mounted_.size();
  for (const auto& [id, m] : mounted_) AddLayerStats(r, m->fs->stats());
  return r;
}

}  // namespace ocix::snapshotter

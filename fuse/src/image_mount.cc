#include "ocix/fuse/image_mount.h"

#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>

#include "ocix/core/sha256.h"

namespace ocix::fuse {

core::Result<TocPayload> FetchTocPayload(core::BlobReader& blob, const core::Descriptor& d) {
  OCIX_ASSIGN_OR_RETURN(std::optional<core::Footer> footer, core::FooterFromAnnotations(d.annotations));
  if (!footer) {
    if (d.size < static_cast<int64_t>(core::kFooterSize)) return core::NotFound("layer " + d.digest + " is not OCIX");
    core::ByteRange tail{static_cast<uint64_t>(d.size) - core::kFooterSize, core::kFooterSize};
    OCIX_ASSIGN_OR_RETURN(auto bytes, blob.ReadRanges({&tail, 1}));
    OCIX_ASSIGN_OR_RETURN(core::Footer f,
                          core::DecodeFooter({reinterpret_cast<const uint8_t*>(bytes[0].data()), bytes[0].size()},
                                             static_cast<uint64_t>(d.size)));
    footer = f;
  }
  core::ByteRange r{footer->toc_offset, footer->toc_size};
  if (footer->toc_offset < 8 || footer->toc_size > UINT64_MAX - footer->toc_offset ||
      (d.size > 0 && footer->toc_offset + footer->toc_size > static_cast<uint64_t>(d.size)))
    return core::Corruption("layer " + d.digest + ": TOC location outside the blob");
  OCIX_ASSIGN_OR_RETURN(auto payload, blob.ReadRanges({&r, 1}));
  TocPayload p{*footer, std::move(payload[0])};
  if (core::Sha256::OciDigest(p.payload) != p.footer.TocDigest())
    return core::Corruption("layer " + d.digest + ": TOC digest mismatch");
  return p;
}

core::Result<core::Toc> DecodeTocPayload(const TocPayload& p, const core::Descriptor& d) {
  if (core::Sha256::OciDigest(p.payload) != p.footer.TocDigest())
    return core::Corruption("layer " + d.digest + ": TOC digest mismatch");
  auto toc =
      core::DecodeToc({reinterpret_cast<const uint8_t*>(p.payload.data()), p.payload.size()}, p.footer.toc_offset - 8);
  if (!toc.ok()) return toc.status().WithContext("layer " + d.digest);
  if (auto md = d.annotations.find(std::string(core::kAnnotationManifestDigest));
      md != d.annotations.end() && md->second != core::Sha256::OciDigest(toc->manifest_bytes))
    return core::Corruption("layer " + d.digest + ": manifest digest differs from the annotation");
  return toc;
}

core::Result<core::Toc> FetchToc(core::BlobReader& blob, const core::Descriptor& d) {
  OCIX_ASSIGN_OR_RETURN(TocPayload p, FetchTocPayload(blob, d));
  return DecodeTocPayload(p, d);
}

const core::Entry* FindLowerDir(std::span<const core::Manifest* const> lowers, std::string_view path) {
  for (const core::Manifest* lm : lowers) {
    bool opaque_above = false;
    for (std::string_view a = core::ParentPath(path); !a.empty(); a = core::ParentPath(a)) {
      const core::Entry* e = lm->Find(a);
      if (e == nullptr) continue;
      if (e->type != core::FileType::kDirectory) return nullptr;  // whiteout or file: hidden
      opaque_above = opaque_above || e->opaque;
    }
    if (const core::Entry* e = lm->Find(path)) return e->type == core::FileType::kDirectory ? e : nullptr;
    if (opaque_above) return nullptr;  // nothing below this layer shows through
  }
  return nullptr;
}

core::Result<std::unique_ptr<ImageMount>> ImageMount::Create(std::vector<MountLayer> layers, core::ChunkStore& store,
                                                             const std::string& work_dir, const std::string& mountpoint,
                                                             const LayerFsOptions& options) {
  if (layers.empty()) return core::InvalidArgument("an image without layers");
  std::unique_ptr<ImageMount> m(new ImageMount());
  m->mountpoint_ = mountpoint;
  for (size_t i = 0; i < layers.size(); ++i) {
    OCIX_ASSIGN_OR_RETURN(core::Toc toc, FetchToc(*layers[i].blob, layers[i].descriptor));
    LayerFsOptions o = options;
    o.fsname = "ocix-" + layers[i].descriptor.digest.substr(7, 12);
    // Implied directories take their attributes from the nearest layer
    // below that lists the path, unless something in between hides it: a
    // whiteout or non-directory at an ancestor, or an opaque ancestor.
    ImageMount* self = m.get();
    o.lower_dir = [self, i](std::string_view path) -> const core::Entry* {
      std::vector<const core::Manifest*> lowers;
      for (size_t j = i; j-- > 0;) lowers.push_back(&self->layers_[j]->manifest());
      return FindLowerDir(lowers, path);
    };
    OCIX_ASSIGN_OR_RETURN(auto fs, LayerFs::Create(std::move(toc), store, std::move(layers[i].blob), o));
    const std::string dir = work_dir + "/layers/" + std::to_string(i);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return core::IoError("create " + dir + ": " + ec.message());
    OCIX_RETURN_IF_ERROR(fs->Mount(dir));
    m->layers_.push_back(std::move(fs));
    m->layer_dirs_.push_back(dir);
  }
  int rc;
  if (m->layer_dirs_.size() == 1) {
    // overlayfs needs two lower layers without an upper one: bind instead.
    rc = ::mount(m->layer_dirs_[0].c_str(), mountpoint.c_str(), nullptr, MS_BIND, nullptr);
    if (rc == 0) rc = ::mount(nullptr, mountpoint.c_str(), nullptr, MS_BIND | MS_REMOUNT | MS_RDONLY, nullptr);
  } else {
    std::string lower;
    for (size_t i = m->layer_dirs_.size(); i-- > 0;) lower += (lower.empty() ? "" : ":") + m->layer_dirs_[i];
    const std::string opts = "lowerdir=" + lower;
    rc = ::mount("overlay", mountpoint.c_str(), "overlay", MS_RDONLY, opts.c_str());
  }
  if (rc != 0) return core::ErrnoError("mount the image at " + mountpoint, errno);
  m->stacked_ = true;
  return m;
}

void ImageMount::StartPrefetch(Prefetch what, int max_in_flight) {
  if (what == Prefetch::kNone || !prefetchers_.empty()) return;
  prefetch_slots_ = std::make_unique<std::counting_semaphore<>>(std::max(1, max_in_flight));
  for (size_t i = layers_.size(); i-- > 0;) {
    LayerFs* fs = layers_[i].get();
    std::counting_semaphore<>* slots = prefetch_slots_.get();
    prefetchers_.emplace_back([fs, what, slots] { fs->RunPrefetch(what, 8u << 20, slots); });
  }
}

void ImageMount::Unmount() {
  if (stacked_) {
    ::umount2(mountpoint_.c_str(), MNT_DETACH);
    stacked_ = false;
  }
  for (auto& l : layers_) l->Unmount();
  for (auto& t : prefetchers_)
    if (t.joinable()) t.join();
  prefetchers_.clear();
}

void ImageMount::Wait() {
  for (auto& l : layers_) l->Wait();
}

ImageMount::~ImageMount() { Unmount(); }

}  // namespace ocix::fuse

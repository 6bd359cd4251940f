// ConvertLayer: LayerBuilder (layer mode) reads the source layer; this file's
// LayerWriter observes every member and writes the OCIX blob.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <unordered_set>

#include "ocix/core/codec.h"
#include "ocix/core/convert.h"
#include "ocix/core/layer_builder.h"
#include "ocix/core/sha256.h"
#include "ocix/core/unique_fd.h"

namespace ocix::core {

namespace {

struct ArchiveWriteFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

// Writes the OCIX blob: tar bytes come from libarchive's writer through
// OnTarBytes into `pending_`; frames are cut at chunk boundaries.
class LayerWriter final : public MemberObserver {
 public:
  LayerWriter(int fd, const ConvertOptions& o) : fd_(fd), opts_(o) {}
  // Freeing an unfinished tar writer writes its trailer through Write(): do
  // it while the members that callback uses are still alive.
  ~LayerWriter() override { tar_.reset(); }
  LayerWriter(const LayerWriter&) = delete;
  LayerWriter& operator=(const LayerWriter&) = delete;

  Status Open() {
    cctx_.reset(ZSTD_createCCtx());
    if (!cctx_) return Internal("zstd context");
    ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_compressionLevel, opts_.zstd_level);
    ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_contentSizeFlag, 1);
    // BLAKE3 verifies every chunk; zstd's own checksum would be redundant.
    ZSTD_CCtx_setParameter(cctx_.get(), ZSTD_c_checksumFlag, 0);
    tar_.reset(archive_write_new());
    // pax keeps nanosecond times, long names and xattrs (SCHILY.xattr, which
    // containerd reads); no blocking, so bytes reach us as they are written.
    if (archive_write_set_format_pax(tar_.get()) != ARCHIVE_OK ||
        archive_write_set_bytes_per_block(tar_.get(), 0) != ARCHIVE_OK ||
        archive_write_open(tar_.get(), this, nullptr, &LayerWriter::Write, nullptr) != ARCHIVE_OK)
      return Internal(std::string("tar writer: ") + archive_error_string(tar_.get()));
    chunk_.reserve(opts_.chunk_size);
    return Status::Ok();
  }

  Status OnMember(archive_entry* member, const std::string& path) override {
    (void)path;
    std::unique_ptr<archive_entry, EntryFree> e(archive_entry_clone(member));
    if (!e) return Internal("clone tar entry");
    // Holes are written as zeros (zstd makes them nearly free); times other
    // than mtime only make the layer less reproducible.
    archive_entry_sparse_clear(e.get());
    archive_entry_unset_atime(e.get());
    archive_entry_unset_ctime(e.get());
    archive_entry_unset_birthtime(e.get());
    if (archive_write_header(tar_.get(), e.get()) < ARCHIVE_WARN)
      return Corruption(std::string("rewrite tar header: ") + archive_error_string(tar_.get()));
    file_chunks_.clear();
    return Status::Ok();
  }

  Status OnData(std::span<const uint8_t> data) override {
    while (!data.empty()) {
      const size_t take = std::min<size_t>(data.size(), opts_.chunk_size - chunk_.size());
      chunk_.insert(chunk_.end(), data.begin(), data.begin() + static_cast<long>(take));
      data = data.subspan(take);
      if (chunk_.size() == opts_.chunk_size) OCIX_RETURN_IF_ERROR(EmitChunk());
    }
    return Status::Ok();
  }

  Status OnMemberEnd(const Entry* file) override {
    if (!chunk_.empty()) OCIX_RETURN_IF_ERROR(EmitChunk());
    if (file != nullptr && !file_chunks_.empty() && seen_.insert(file->digest.Hex()).second) {
      ContentTable t;
      t.digest = file->digest;
      t.size = file->size;
      t.chunks = std::move(file_chunks_);
      tables_.push_back(std::move(t));
    }
    file_chunks_.clear();
    return Status::Ok();
  }

  // Ends the tar, then writes TOC and footer. Returns the TOC footer data.
  Result<Footer> Finish(Toc& toc) {
    if (archive_write_close(tar_.get()) != ARCHIVE_OK)
      return Internal(std::string("close tar: ") + archive_error_string(tar_.get()));
    OCIX_RETURN_IF_ERROR(FlushFrame(nullptr));
    std::sort(tables_.begin(), tables_.end(),
              [](const ContentTable& a, const ContentTable& b) { return a.digest < b.digest; });
    toc.contents = std::move(tables_);
    OCIX_ASSIGN_OR_RETURN(std::string payload, EncodeToc(toc));
    Footer f;
    std::string header;
    header.push_back(static_cast<char>(kTocFrameMagic & 0xff));
    header.push_back(static_cast<char>(kTocFrameMagic >> 8 & 0xff));
    header.push_back(static_cast<char>(kTocFrameMagic >> 16 & 0xff));
    header.push_back(static_cast<char>(kTocFrameMagic >> 24 & 0xff));
    for (int i = 0; i < 4; ++i) header.push_back(static_cast<char>(payload.size() >> (8 * i) & 0xff));
    OCIX_RETURN_IF_ERROR(Out(header));
    f.toc_offset = offset_;
    f.toc_size = payload.size();
    OCIX_RETURN_IF_ERROR(Out(payload));
    const std::string digest = Sha256::OciDigest(payload);
    std::memcpy(f.toc_sha256.data(), Digest::FromHex(digest.substr(7))->bytes.data(), f.toc_sha256.size());
    OCIX_RETURN_IF_ERROR(Out(EncodeFooter(f)));
    return f;
  }

  uint64_t blob_bytes() const { return offset_; }
  uint64_t tar_bytes() const { return tar_bytes_; }
  std::string blob_digest() { return blob_sha_.FinishOciDigest(); }
  std::string diff_id() { return tar_sha_.FinishOciDigest(); }
  size_t files() const { return tables_.size(); }

 private:
  static la_ssize_t Write(archive*, void* self, const void* buf, size_t n) {
    auto* w = static_cast<LayerWriter*>(self);
    w->pending_.append(static_cast<const char*>(buf), n);
    w->tar_sha_.Update({static_cast<const uint8_t*>(buf), n});
    w->tar_bytes_ += n;
    return static_cast<la_ssize_t>(n);
  }

  // Tar headers and padding so far become one frame; then the chunk's bytes
  // pass through the tar writer and become a frame of their own.
  Status EmitChunk() {
    OCIX_RETURN_IF_ERROR(FlushFrame(nullptr));
    size_t done = 0;
    while (done < chunk_.size()) {
      la_ssize_t n = archive_write_data(tar_.get(), chunk_.data() + done, chunk_.size() - done);
      if (n <= 0) return Corruption(std::string("tar data: ") + archive_error_string(tar_.get()));
      done += static_cast<size_t>(n);
    }
    if (pending_.size() != chunk_.size()) return Internal("tar writer added bytes inside a chunk");
    ChunkLocation loc;
    loc.digest = Blake3::Hash(std::span<const uint8_t>(chunk_.data(), chunk_.size()));
    OCIX_RETURN_IF_ERROR(FlushFrame(&loc));
    file_chunks_.push_back(loc);
    chunk_.clear();
    return Status::Ok();
  }

  Status FlushFrame(ChunkLocation* loc) {
    if (pending_.empty()) return Status::Ok();
    frame_.resize(ZSTD_compressBound(pending_.size()));
    size_t n = ZSTD_compress2(cctx_.get(), frame_.data(), frame_.size(), pending_.data(), pending_.size());
    if (ZSTD_isError(n)) return Internal(std::string("zstd: ") + ZSTD_getErrorName(n));
    if (loc) {
      loc->blob_offset = offset_;
      loc->frame_size = n;
    }
    OCIX_RETURN_IF_ERROR(Out({frame_.data(), n}));
    pending_.clear();
    return Status::Ok();
  }

  Status Out(std::string_view bytes) {
    blob_sha_.Update(bytes);
    while (!bytes.empty()) {
      ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("write layer", errno);
      bytes.remove_prefix(static_cast<size_t>(n));
      offset_ += static_cast<uint64_t>(n);
    }
    return Status::Ok();
  }

  const int fd_;
  const ConvertOptions& opts_;
  std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx_;
  std::unique_ptr<archive, ArchiveWriteFree> tar_;
  std::string pending_;  // uncompressed tar bytes not yet in a frame
  std::string frame_;
  std::vector<uint8_t> chunk_;
  std::vector<ChunkLocation> file_chunks_;
  std::vector<ContentTable> tables_;
  std::unordered_set<std::string> seen_;
  Sha256 blob_sha_, tar_sha_;
  uint64_t offset_ = 0, tar_bytes_ = 0;
};

}  // namespace

namespace {

// Writes TOC and footer after the tar and describes the finished blob.
Result<ConvertedLayer> FinishLayer(LayerWriter& writer, Toc& toc, int fd, const std::string& out_path) {
  OCIX_ASSIGN_OR_RETURN(toc.manifest_bytes, EncodeManifest(toc.manifest));
  OCIX_ASSIGN_OR_RETURN(Footer footer, writer.Finish(toc));
  if (::fsync(fd) != 0) return ErrnoError("fsync " + out_path, errno);
  ConvertedLayer out;
  out.descriptor.media_type = std::string(kOcixLayerMediaType);
  out.descriptor.size = static_cast<int64_t>(writer.blob_bytes());
  out.descriptor.digest = writer.blob_digest();
  out.descriptor.annotations[std::string(kAnnotationTocDigest)] = footer.TocDigest();
  out.descriptor.annotations[std::string(kAnnotationTocOffset)] = std::to_string(footer.toc_offset);
  out.descriptor.annotations[std::string(kAnnotationTocSize)] = std::to_string(footer.toc_size);
  out.descriptor.annotations[std::string(kAnnotationManifestDigest)] = Sha256::OciDigest(toc.manifest_bytes);
  out.diff_id = writer.diff_id();
  out.tar_bytes = writer.tar_bytes();
  out.toc_bytes = footer.toc_size;
  out.files = toc.contents.size();
  out.entries = toc.manifest.entries.size();
  out.manifest_bytes = toc.manifest_bytes.size();
  return out;
}

}  // namespace

Result<ConvertedLayer> ConvertLayer(const std::string& src_path, std::string_view src_digest,
                                    const std::string& out_path, const ConvertOptions& options,
                                    const ProgressFn& progress) {
  UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out.valid()) return ErrnoError("create " + out_path, errno);
  const int fd = out.get();
  LayerWriter writer(fd, options);
  OCIX_RETURN_IF_ERROR(writer.Open());
  LayerBuilder builder(LayerBuilder::Mode::kLayer);
  builder.SetObserver(&writer);
  if (progress) builder.SetReadProgress([&](uint64_t n) { progress(n, 0); });
  Toc toc;
  toc.chunk_size = options.chunk_size;
  // Two passes over the source when prefetching: first the listed files
  // (plain regular members, in the layer's order; every member of such a
  // path, so the last one still wins), then everything else.
  const std::unordered_set<std::string> wanted(options.prefetch.begin(), options.prefetch.end());
  std::unordered_set<std::string> taken;  // outlives both passes' filters
  auto plain_file = [](archive_entry* ae) {
    return archive_entry_filetype(ae) == AE_IFREG && archive_entry_hardlink(ae) == nullptr;
  };
  if (!wanted.empty()) {
    builder.SetFilter([&](const std::string& path, archive_entry* ae) {
      if (!wanted.count(path) || !plain_file(ae)) return false;
      if (taken.insert(path).second) toc.prefetch.push_back(path);
      return true;
    });
    OCIX_RETURN_IF_ERROR(builder.ApplyLayerFile(src_path, src_digest));
    builder.SetFilter(
        [&](const std::string& path, archive_entry* ae) { return !(taken.count(path) && plain_file(ae)); });
  }
  OCIX_RETURN_IF_ERROR(builder.ApplyLayerFile(src_path, src_digest));
  OCIX_ASSIGN_OR_RETURN(toc.manifest, builder.Finish(1));
  return FinishLayer(writer, toc, fd, out_path);
}

namespace {

// Keeps every file content of the source layers in a directory named by its
// BLAKE3, so the flattened tar can be written in any order afterwards.
class Spool final : public MemberObserver {
 public:
  explicit Spool(std::string dir) : dir_(std::move(dir)) {}
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  std::string PathOf(const Digest& d) const { return dir_ + "/" + d.Hex(); }

  Status OnMember(archive_entry* ae, const std::string&) override {
    if (archive_entry_filetype(ae) != AE_IFREG || archive_entry_hardlink(ae) || archive_entry_size(ae) <= 0)
      return Status::Ok();
    tmp_ = dir_ + "/incoming";
    fd_.Reset(::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    if (!fd_.valid()) return ErrnoError("create " + tmp_, errno);
    return Status::Ok();
  }
  Status OnData(std::span<const uint8_t> data) override {
    while (fd_.valid() && !data.empty()) {
      ssize_t n = ::write(fd_.get(), data.data(), data.size());
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("write " + tmp_, errno);
      data = data.subspan(static_cast<size_t>(n));
    }
    return Status::Ok();
  }
  Status OnMemberEnd(const Entry* file) override {
    if (!fd_.valid()) return Status::Ok();
    fd_.Reset();
    if (file == nullptr) return Status::Ok();
    if (::rename(tmp_.c_str(), PathOf(file->digest).c_str()) != 0) return ErrnoError("spool " + tmp_, errno);
    return Status::Ok();
  }

 private:
  std::string dir_, tmp_;
  UniqueFd fd_;
};

// A tar member for a manifest entry (the flattened tree has no member of its
// own). Names are relative, as OCI layers write them.
std::unique_ptr<archive_entry, EntryFree> MemberFor(const Entry& e, const std::string& data_name) {
  std::unique_ptr<archive_entry, EntryFree> ae(archive_entry_new());
  archive_entry_set_pathname_utf8(ae.get(), e.path == "/" ? "./" : e.path.c_str() + 1);
  if (!data_name.empty()) {
    archive_entry_set_filetype(ae.get(), AE_IFREG);
    archive_entry_set_hardlink_utf8(ae.get(), data_name.c_str() + 1);
    archive_entry_set_size(ae.get(), 0);
  }
  archive_entry_set_perm(ae.get(), e.mode);
  archive_entry_set_uid(ae.get(), e.uid);
  archive_entry_set_gid(ae.get(), e.gid);
  if (!e.user.empty()) archive_entry_set_uname_utf8(ae.get(), e.user.c_str());
  if (!e.group.empty()) archive_entry_set_gname_utf8(ae.get(), e.group.c_str());
  archive_entry_set_mtime(ae.get(), e.mtime.sec, e.mtime.nsec);
  for (const Xattr& x : e.xattrs)
    archive_entry_xattr_add_entry(ae.get(), x.name.c_str(), x.value.data(), x.value.size());
  if (!data_name.empty()) return ae;
  switch (e.type) {
    case FileType::kRegular:
      archive_entry_set_filetype(ae.get(), AE_IFREG);
      archive_entry_set_size(ae.get(), static_cast<la_int64_t>(e.size));
      break;
    case FileType::kDirectory: archive_entry_set_filetype(ae.get(), AE_IFDIR); break;
    case FileType::kSymlink:
      archive_entry_set_filetype(ae.get(), AE_IFLNK);
      archive_entry_set_symlink_utf8(ae.get(), e.target.c_str());
      break;
    case FileType::kCharDevice:
    case FileType::kBlockDevice:
      archive_entry_set_filetype(ae.get(), e.type == FileType::kCharDevice ? AE_IFCHR : AE_IFBLK);
      archive_entry_set_rdevmajor(ae.get(), e.rdev_major);
      archive_entry_set_rdevminor(ae.get(), e.rdev_minor);
      break;
    case FileType::kFifo: archive_entry_set_filetype(ae.get(), AE_IFIFO); break;
    case FileType::kHardlink:
    case FileType::kWhiteout: break;  // not in a flattened tree / handled by the caller
  }
  return ae;
}

}  // namespace

Result<ConvertedLayer> ConvertFlattened(const std::vector<LocalLayer>& layers, const std::string& out_path,
                                        const std::string& spool_dir, const ConvertOptions& options,
                                        const ProgressFn& progress) {
  std::error_code ec;
  std::filesystem::create_directories(spool_dir, ec);
  if (ec) return IoError("create " + spool_dir + ": " + ec.message());
  struct SpoolCleanup {
    std::string dir;
    ~SpoolCleanup() {
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);
    }
  } cleanup{spool_dir};

  // Pass 1: the final tree, with every content kept in the spool.
  Spool spool(spool_dir);
  LayerBuilder builder;
  builder.SetObserver(&spool);
  if (progress) builder.SetReadProgress([&](uint64_t n) { progress(n, 0); });
  for (const LocalLayer& l : layers) OCIX_RETURN_IF_ERROR(builder.ApplyLayerFile(l.path, l.digest));
  OCIX_ASSIGN_OR_RETURN(Manifest flat, builder.Finish(1));

  // Pass 2: one tar of that tree in bytewise path order (parents first). The
  // first name of a hardlinked file in that order carries its data.
  UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!out.valid()) return ErrnoError("create " + out_path, errno);
  const int fd = out.get();
  LayerWriter writer(fd, options);
  OCIX_RETURN_IF_ERROR(writer.Open());
  std::vector<const Entry*> order;
  for (const Entry& e : flat.entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const Entry* a, const Entry* b) { return a->path < b->path; });
  std::map<std::string, std::string> data_name;  // primary path -> name that carries the data
  std::vector<char> buf(1 << 20);
  for (const Entry* e : order) {
    const Entry* file = e->type == FileType::kHardlink ? flat.Find(e->target) : e;
    std::string carrier;
    if (file->type == FileType::kRegular) {
      auto [it, first] = data_name.emplace(file->path, e->path);
      if (!first) carrier = it->second;
    }
    Entry meta = *file;
    meta.path = e->path;
    auto ae = MemberFor(meta, carrier);
    OCIX_RETURN_IF_ERROR(writer.OnMember(ae.get(), e->path));
    const bool with_data = file->type == FileType::kRegular && carrier.empty() && file->size > 0;
    if (with_data) {
      const std::string src = spool.PathOf(file->digest);
      UniqueFd in(::open(src.c_str(), O_RDONLY | O_CLOEXEC));
      if (!in.valid()) return ErrnoError("spooled content of " + file->path, errno);
      uint64_t left = file->size;
      while (left > 0) {
        ssize_t n = ::read(in.get(), buf.data(), std::min<uint64_t>(buf.size(), left));
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return Corruption("spooled content of " + file->path + " is short");
        OCIX_RETURN_IF_ERROR(writer.OnData({reinterpret_cast<const uint8_t*>(buf.data()), static_cast<size_t>(n)}));
        left -= static_cast<uint64_t>(n);
      }
    }
    OCIX_RETURN_IF_ERROR(writer.OnMemberEnd(with_data ? file : nullptr));
  }
  Toc toc;
  toc.chunk_size = options.chunk_size;
  toc.manifest = std::move(flat);
  toc.manifest.layer = true;  // one layer that stands alone
  return FinishLayer(writer, toc, fd, out_path);
}

}  // namespace ocix::core

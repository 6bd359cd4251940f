// ConvertLayer: LayerBuilder (layer mode) reads the source layer; this file's
// LayerWriter observes every member and writes the OCIX blob.
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <memory>
#include <unordered_set>

#include "ocix/core/codec.h"
#include "ocix/core/convert.h"
#include "ocix/core/layer_builder.h"
#include "ocix/core/sha256.h"

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

Result<ConvertedLayer> ConvertLayer(const std::string& src_path, std::string_view src_digest,
                                    const std::string& out_path, const ConvertOptions& options,
                                    const ProgressFn& progress) {
  int fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create " + out_path, errno);
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  LayerWriter writer(fd, options);
  OCIX_RETURN_IF_ERROR(writer.Open());
  LayerBuilder builder(LayerBuilder::Mode::kLayer);
  builder.SetObserver(&writer);
  if (progress) builder.SetReadProgress([&](uint64_t n) { progress(n, 0); });
  Toc toc;
  toc.chunk_size = options.chunk_size;
  if (!options.prefetch.empty()) {
    // Two passes over the source: first the listed files (plain regular
    // members only, in the layer's order; a hardlink's target must come
    // before it), then everything else.
    std::unordered_set<std::string> wanted(options.prefetch.begin(), options.prefetch.end());
    std::unordered_set<std::string> taken;
    builder.SetFilter([&](const std::string& path, archive_entry* ae) {
      if (!wanted.count(path) || archive_entry_filetype(ae) != AE_IFREG || archive_entry_hardlink(ae)) return false;
      if (!taken.insert(path).second) return false;
      toc.prefetch.push_back(path);
      return true;
    });
    OCIX_RETURN_IF_ERROR(builder.ApplyLayerFile(src_path, src_digest));
    builder.SetFilter([&](const std::string& path, archive_entry*) { return !taken.count(path); });
  }
  OCIX_RETURN_IF_ERROR(builder.ApplyLayerFile(src_path, src_digest));
  OCIX_ASSIGN_OR_RETURN(toc.manifest, builder.Finish(1));
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

}  // namespace ocix::core

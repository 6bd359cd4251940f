#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>

#include "ocix/core/codec.h"
#include "ocix/core/convert.h"
#include "ocix/core/layer_builder.h"
#include "ocix/core/oci_json.h"
#include "ocix/core/sha256.h"
#include "ocix/core/unique_fd.h"

namespace ocix::core {

namespace {

class File {
 public:
  explicit File(int fd) : fd_(fd) {}
  int fd() const { return fd_.get(); }

  Status ReadAt(uint64_t off, uint64_t len, std::string& out) const {
    out.resize(len);
    uint64_t done = 0;
    while (done < len) {
      ssize_t n = ::pread(fd_.get(), out.data() + done, len - done, static_cast<off_t>(off + done));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return ErrnoError("read layer", errno);
      if (n == 0) return Corruption("layer ends before offset " + std::to_string(off + len));
      done += static_cast<uint64_t>(n);
    }
    return Status::Ok();
  }

 private:
  UniqueFd fd_;
};

// The hole map says which bytes hold data; everything else must read as zero.
bool HolesAreZero(const std::vector<Extent>& data, uint64_t off, std::string_view bytes) {
  uint64_t pos = off;
  const uint64_t end = off + bytes.size();
  for (const Extent& x : data) {
    if (x.offset >= end) break;
    for (; pos < std::min(x.offset, end); ++pos)
      if (bytes[pos - off] != 0) return false;
    pos = std::max(pos, x.offset + x.length);
  }
  for (; pos < end; ++pos)
    if (bytes[pos - off] != 0) return false;
  return true;
}

Status PathError(const std::string& path, const std::string& what) { return Corruption("\"" + path + "\": " + what); }

}  // namespace

Result<VerifyReport> VerifyOcixLayer(const std::string& blob_path, const Descriptor& d) {
  File f(::open(blob_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (f.fd() < 0) return ErrnoError("open " + blob_path, errno);
  struct stat st {};
  if (::fstat(f.fd(), &st) != 0) return ErrnoError("stat " + blob_path, errno);
  const auto size = static_cast<uint64_t>(st.st_size);
  if (static_cast<int64_t>(size) != d.size)
    return Corruption("layer is " + std::to_string(size) + " bytes, its descriptor says " + std::to_string(d.size));

  // 1. The TOC: from the annotations when present (they are what the signed
  // image manifest vouches for), else from the footer.
  OCIX_ASSIGN_OR_RETURN(std::optional<Footer> from_annotations, FooterFromAnnotations(d.annotations));
  std::string tail;
  OCIX_RETURN_IF_ERROR(
      f.ReadAt(size - std::min<uint64_t>(size, kFooterSize), std::min<uint64_t>(size, kFooterSize), tail));
  auto footer = DecodeFooter({reinterpret_cast<const uint8_t*>(tail.data()), tail.size()}, size);
  // A layer its descriptor calls OCIX but without a footer is damaged.
  if (!footer.ok()) return Corruption("footer: " + footer.status().message());
  if (from_annotations &&
      (from_annotations->toc_offset != footer->toc_offset || from_annotations->toc_size != footer->toc_size ||
       from_annotations->toc_sha256 != footer->toc_sha256))
    return Corruption("footer and annotations name different TOCs");
  std::string payload;
  OCIX_RETURN_IF_ERROR(f.ReadAt(footer->toc_offset, footer->toc_size, payload));
  if (Sha256::OciDigest(payload) != footer->TocDigest()) return Corruption("TOC digest mismatch");
  OCIX_ASSIGN_OR_RETURN(
      Toc toc, DecodeToc({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, footer->toc_offset - 8));
  if (auto md = d.annotations.find(std::string(kAnnotationManifestDigest));
      md != d.annotations.end() && md->second != Sha256::OciDigest(toc.manifest_bytes))
    return Corruption("manifest digest differs from the layer's annotation");

  // 2. Every chunk of every content, reported by the first path using it.
  std::map<Digest, const Entry*> entry_of;
  for (const Entry& e : toc.manifest.entries)
    if (e.type == FileType::kRegular && e.size > 0) entry_of.emplace(e.digest, &e);
  VerifyReport report;
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> dctx(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  std::string frame, plain;
  for (const ContentTable& t : toc.contents) {
    auto p = entry_of.find(t.digest);
    const std::string path = p != entry_of.end() ? p->second->path : "(content " + t.digest.Hex() + ", no path)";
    const std::vector<Extent>* holes_map = p != entry_of.end() && p->second->data ? &*p->second->data : nullptr;
    Blake3 whole;
    for (size_t i = 0; i < t.chunks.size(); ++i) {
      const ChunkLocation& c = t.chunks[i];
      const auto [uoff, usize] = toc.ChunkRange(t.size, i);
      const std::string where = "chunk " + std::to_string(i) + " at blob offset " + std::to_string(c.blob_offset);
      OCIX_RETURN_IF_ERROR(f.ReadAt(c.blob_offset, c.frame_size, frame));
      if (ZSTD_findFrameCompressedSize(frame.data(), frame.size()) != c.frame_size)
        return PathError(path, where + ": not one zstd frame of " + std::to_string(c.frame_size) + " bytes");
      if (ZSTD_getFrameContentSize(frame.data(), frame.size()) != usize)
        return PathError(path, where + ": frame does not declare " + std::to_string(usize) + " bytes");
      plain.resize(usize);
      size_t n = ZSTD_decompressDCtx(dctx.get(), plain.data(), plain.size(), frame.data(), frame.size());
      if (ZSTD_isError(n) || n != usize) return PathError(path, where + ": does not decompress");
      if (Blake3::Hash(plain) != c.digest) return PathError(path, where + ": BLAKE3 mismatch");
      if (holes_map && !HolesAreZero(*holes_map, uoff, plain))
        return PathError(path, where + ": bytes outside the sparse map's data regions are not zero");
      whole.Update(plain);
      ++report.chunks;
      report.content_bytes += usize;
    }
    if (whole.Finish() != t.digest) return PathError(path, "content BLAKE3 mismatch");
    ++report.files;
  }

  // 3. The tar stream as runtimes see it, and the blob's digest.
  LayerBuilder builder(LayerBuilder::Mode::kLayer);
  OCIX_RETURN_IF_ERROR(builder.ApplyLayerFile(blob_path, d.digest).WithContext("tar stream"));
  OCIX_ASSIGN_OR_RETURN(Manifest from_tar, builder.Finish(1));
  // The tar stores sparse files densely; the TOC's hole maps were checked
  // against the content above.
  Manifest toc_dense = toc.manifest;
  for (Entry& e : toc_dense.entries) e.data.reset();
  if (!(from_tar == toc_dense)) {
    size_t i = 0;
    while (i < from_tar.entries.size() && i < toc_dense.entries.size() && from_tar.entries[i] == toc_dense.entries[i])
      ++i;
    const std::string path = i < toc_dense.entries.size()  ? toc_dense.entries[i].path
                             : i < from_tar.entries.size() ? from_tar.entries[i].path
                                                           : "/";
    return PathError(path, "the tar stream and the TOC's manifest disagree");
  }
  report.entries = from_tar.entries.size();
  return report;
}

Status VerifyImage(ImageSource& src, const std::string& tmp_dir,
                   const std::function<void(const Descriptor&, const VerifyReport&)>& on_layer) {
  using nlohmann::json;
  OCIX_ASSIGN_OR_RETURN(auto root, src.Root());
  std::vector<std::pair<Descriptor, std::string>> manifests;
  OCIX_ASSIGN_OR_RETURN(json j, ParseJsonObject(root.second, "root"));
  if (auto ms = j.find("manifests"); ms != j.end() && ms->is_array()) {
    for (const json& m : *ms) {
      OCIX_ASSIGN_OR_RETURN(Descriptor d, DescriptorFromJson(m, "index entry"));
      OCIX_ASSIGN_OR_RETURN(std::string body, src.ReadBlob(d, 4u << 20));
      manifests.emplace_back(d, std::move(body));
    }
  } else {
    manifests.push_back(std::move(root));
  }
  for (const auto& [md, body] : manifests) {
    OCIX_ASSIGN_OR_RETURN(json m, ParseJsonObject(body, "manifest " + md.digest));
    if (!m.contains("layers") || !m["layers"].is_array()) return Corruption("manifest " + md.digest + " has no layers");
    for (const json& l : m["layers"]) {
      OCIX_ASSIGN_OR_RETURN(Descriptor d, DescriptorFromJson(l, "layer"));
      if (!d.annotations.count(std::string(kAnnotationTocDigest)))
        return Corruption("layer " + d.digest + " is not an OCIX layer (no " + std::string(kAnnotationTocDigest) + ")");
      OCIX_ASSIGN_OR_RETURN(LocalBlob blob, src.BlobFile(d, tmp_dir, {}));
      auto r = VerifyOcixLayer(blob.path, d);
      if (blob.temporary) std::remove(blob.path.c_str());
      if (!r.ok()) return r.status().WithContext("layer " + d.digest);
      if (on_layer) on_layer(d, *r);
    }
  }
  return Status::Ok();
}

}  // namespace ocix::core

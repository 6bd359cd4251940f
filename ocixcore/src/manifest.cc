#include "ocix/core/manifest.h"

#include <algorithm>
#include <string>

#include "ocix/core/limits.h"
#include "ocix/core/utf8.h"

namespace ocix::core {

std::string_view FileTypeName(FileType t) {
  switch (t) {
    case FileType::kRegular: return "file";
    case FileType::kDirectory: return "dir";
    case FileType::kSymlink: return "symlink";
    case FileType::kHardlink: return "hardlink";
    case FileType::kCharDevice: return "char";
    case FileType::kBlockDevice: return "block";
    case FileType::kFifo: return "fifo";
    case FileType::kWhiteout: return "whiteout";
  }
  return "unknown";
}

const Entry* Manifest::Find(std::string_view path) const {
  auto it = std::lower_bound(entries.begin(), entries.end(), path,
                             [](const Entry& e, std::string_view p) { return CanonicalLess(e.path, p); });
  if (it != entries.end() && it->path == path) return &*it;
  return nullptr;
}

std::string_view ParentPath(std::string_view path) {
  if (path.size() <= 1) return {};
  size_t slash = path.rfind('/');
  return slash == 0 ? path.substr(0, 1) : path.substr(0, slash);
}

namespace {

// Quotes a path for an error message without letting control bytes through.
std::string Quote(std::string_view path) {
  std::string out;
  for (char c : path.substr(0, 512)) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  if (path.size() > 512) out += "...";
  return out;
}

Status PathError(std::string_view path, std::string_view what) {
  std::string m = "path \"" + Quote(path) + "\": ";
  m += what;
  return Corruption(std::move(m));
}

}  // namespace

Status ValidatePath(std::string_view path) {
  if (path.empty()) return PathError(path, "empty path");
  if (path.size() > kMaxPathBytes) return PathError(path, "longer than 4096 bytes");
  if (path[0] != '/') return PathError(path, "not absolute");
  if (path.find('\0') != std::string_view::npos) return PathError(path, "contains NUL");
  if (!IsValidUtf8(path)) return PathError(path, "not valid UTF-8");
  if (path == "/") return Status::Ok();
  size_t pos = 1;
  while (true) {
    size_t next = path.find('/', pos);
    std::string_view comp = path.substr(pos, next == std::string_view::npos ? std::string_view::npos : next - pos);
    if (comp.empty()) return PathError(path, "empty component");
    if (comp == "." || comp == "..") return PathError(path, "\".\" or \"..\" component");
    if (comp.size() > kMaxNameBytes) return PathError(path, "component longer than 255 bytes");
    if (next == std::string_view::npos) break;
    pos = next + 1;
  }
  return Status::Ok();
}

namespace {

Status ValidateExtents(const Entry& e) {
  if (!e.data) return Status::Ok();
  const std::vector<Extent>& data = *e.data;
  if (data.size() > kMaxExtentsPerFile) return PathError(e.path, "too many sparse data regions");
  if (e.size == 0) return PathError(e.path, "sparse map of an empty file (omit it)");
  uint64_t end = 0;
  for (size_t i = 0; i < data.size(); ++i) {
    const Extent& x = data[i];
    if (x.length == 0) return PathError(e.path, "empty sparse data region");
    if (i > 0 && x.offset <= end) return PathError(e.path, "sparse data regions overlap, touch or are unsorted");
    if (x.offset > e.size || x.length > e.size - x.offset)
      return PathError(e.path, "sparse data region beyond the file size");
    end = x.offset + x.length;
  }
  if (data.size() == 1 && data[0].offset == 0 && data[0].length == e.size)
    return PathError(e.path, "sparse map of a file without holes (omit it)");
  return Status::Ok();
}

Status ValidateChunks(const Entry& e) {
  if (!e.chunks) return Status::Ok();
  const ChunkList& c = *e.chunks;
  if (c.chunk_size < kMinChunkSize || c.chunk_size > kMaxChunkSize || (c.chunk_size & (c.chunk_size - 1)) != 0)
    return PathError(e.path, "chunk size is not a power of two in [4 KiB, 64 MiB]");
  uint64_t want = e.size / c.chunk_size + (e.size % c.chunk_size != 0);
  if (c.digests.size() != want) return PathError(e.path, "chunk count does not match the file size");
  return Status::Ok();
}

Status ValidateXattrs(const Entry& e) {
  if (e.xattrs.size() > kMaxXattrsPerFile) return PathError(e.path, "too many xattrs");
  for (size_t i = 0; i < e.xattrs.size(); ++i) {
    const Xattr& x = e.xattrs[i];
    if (x.name.empty() || x.name.size() > kMaxXattrNameBytes || x.name.find('\0') != std::string::npos ||
        !IsValidUtf8(x.name))
      return PathError(e.path, "bad xattr name");
    if (x.value.size() > kMaxXattrValueBytes) return PathError(e.path, "xattr value larger than 64 KiB");
    if (i > 0 && !CanonicalLess(e.xattrs[i - 1].name, x.name))
      return PathError(e.path, "xattrs unsorted or duplicated");
  }
  return Status::Ok();
}

Status ValidateEntry(const Manifest& m, const Entry& e) {
  OCIX_RETURN_IF_ERROR(ValidatePath(e.path));
  if (e.mode > 07777) return PathError(e.path, "mode has bits beyond 07777");
  if (e.uid > kMaxId || e.gid > kMaxId) return PathError(e.path, "uid or gid out of range");
  if (e.user.size() > kMaxOwnerNameBytes || e.group.size() > kMaxOwnerNameBytes)
    return PathError(e.path, "owner name too long");
  if (!IsValidUtf8(e.user) || !IsValidUtf8(e.group)) return PathError(e.path, "owner name not UTF-8");
  if (e.mtime.nsec >= 1'000'000'000) return PathError(e.path, "nanoseconds out of range");
  OCIX_RETURN_IF_ERROR(ValidateXattrs(e));
  if (e.type != FileType::kRegular && (e.size != 0 || e.data || e.chunks))
    return PathError(e.path, "size or content on a non-regular file");
  if (e.type != FileType::kDirectory && e.opaque) return PathError(e.path, "opaque flag on a non-directory");
  if (e.type != FileType::kCharDevice && e.type != FileType::kBlockDevice && (e.rdev_major || e.rdev_minor))
    return PathError(e.path, "device numbers on a non-device");
  if (e.type != FileType::kSymlink && e.type != FileType::kHardlink && !e.target.empty())
    return PathError(e.path, "link target on a non-link");

  switch (e.type) {
    case FileType::kRegular: {
      if (e.size > kMaxFileSize) return PathError(e.path, "size out of range");
      if (e.size == 0 && e.digest != Blake3::Hash(std::string_view{}))
        return PathError(e.path, "empty file whose hash is not BLAKE3 of empty input (size lies)");
      OCIX_RETURN_IF_ERROR(ValidateExtents(e));
      OCIX_RETURN_IF_ERROR(ValidateChunks(e));
      break;
    }
    case FileType::kDirectory:
      if (e.opaque && !m.layer) return PathError(e.path, "opaque directory in a flattened manifest");
      break;
    case FileType::kSymlink:
      if (e.target.empty()) return PathError(e.path, "symlink without target");
      if (e.target.size() > kMaxSymlinkBytes) return PathError(e.path, "symlink target too long");
      if (e.target.find('\0') != std::string::npos || !IsValidUtf8(e.target))
        return PathError(e.path, "symlink target has NUL or is not UTF-8");
      break;
    case FileType::kHardlink: {
      if (e.target == e.path) return PathError(e.path, "hardlink to itself");
      if (!CanonicalLess(e.target, e.path))
        return PathError(e.path, "hardlink must name the first of its names in canonical order");
      const Entry* t = m.Find(e.target);
      if (t == nullptr) return PathError(e.path, "hardlink target \"" + Quote(e.target) + "\" does not exist");
      if (t->type != FileType::kRegular)
        return PathError(e.path, "hardlink target \"" + Quote(e.target) + "\" is not a regular file");
      break;
    }
    case FileType::kCharDevice:
    case FileType::kBlockDevice:
    case FileType::kFifo: break;
    case FileType::kWhiteout:
      if (!m.layer) return PathError(e.path, "whiteout in a flattened manifest");
      if (e.path == "/") return PathError(e.path, "whiteout of the root");
      break;
  }
  // Parents: a flattened tree is complete (only "/" may be implied); a layer
  // may rely on directories of the layers below it.
  std::string_view parent = ParentPath(e.path);
  if (!parent.empty()) {
    const Entry* p = m.Find(parent);
    if (p == nullptr) {
      if (!m.layer && parent != "/") return PathError(e.path, "parent directory does not exist");
    } else if (p->type != FileType::kDirectory) {
      return PathError(e.path, "parent is not a directory");
    }
  }
  return Status::Ok();
}

}  // namespace

Status ValidateManifest(const Manifest& m) {
  if (m.version != 0 && m.version != 1) return Corruption("unsupported manifest version " + std::to_string(m.version));
  if (m.version == 0 && m.layer) return Corruption("version 0 cannot describe a layer");
  if (m.entries.size() > kMaxEntries) return Corruption("too many entries");
  // Order first: the per-entry checks look paths up by binary search.
  for (size_t i = 1; i < m.entries.size(); ++i) {
    if (!CanonicalLess(m.entries[i - 1].path, m.entries[i].path))
      return PathError(m.entries[i].path, "entries unsorted or duplicated");
  }
  for (const Entry& e : m.entries) OCIX_RETURN_IF_ERROR(ValidateEntry(m, e));
  if (const Entry* root = m.Find("/"); root != nullptr && root->type != FileType::kDirectory)
    return PathError("/", "root is not a directory");
  return Status::Ok();
}

}  // namespace ocix::core

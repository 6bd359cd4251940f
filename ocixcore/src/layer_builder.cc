#include "ocix/core/layer_builder.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <unordered_map>
#include <vector>

#include "ocix/core/limits.h"
#include "ocix/core/sha256.h"
#include "ocix/core/utf8.h"

namespace ocix::core {

// One inode of the tree. Hardlinked paths share the same Node.
struct LayerBuilder::Node {
  Entry meta;  // everything but the path
};

namespace {

struct ArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

bool IsDescendant(std::string_view path, std::string_view dir) {
  if (dir == "/") return path.size() > 1;
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 && path[dir.size()] == '/';
}

std::string ArchiveError(archive* a, std::string_view what) {
  const char* s = archive_error_string(a);
  return std::string(what) + ": " + (s ? s : "unknown libarchive error");
}

// Pathname as UTF-8 regardless of the process locale, when libarchive has it.
const char* PathnameOf(archive_entry* ae) {
  const char* p = archive_entry_pathname_utf8(ae);
  return p ? p : archive_entry_pathname(ae);
}

}  // namespace

// Byte source for libarchive that verifies the blob's digest as it streams.
struct LayerBuilder::Source {
  int fd = -1;
  std::span<const uint8_t> memory;
  bool memory_done = false;
  std::vector<uint8_t> buf;
  Sha256 sha;
  uint64_t bytes = 0;
  int read_errno = 0;
  const std::function<void(uint64_t)>* progress = nullptr;

  static la_ssize_t Read(archive*, void* self, const void** out) {
    auto* s = static_cast<Source*>(self);
    if (s->fd < 0) {
      if (s->memory_done) return 0;
      s->memory_done = true;
      *out = s->memory.data();
      s->bytes += s->memory.size();
      return static_cast<la_ssize_t>(s->memory.size());
    }
    ssize_t n;
    do {
      n = ::read(s->fd, s->buf.data(), s->buf.size());
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      s->read_errno = errno;
      return -1;
    }
    s->sha.Update({s->buf.data(), static_cast<size_t>(n)});
    s->bytes += static_cast<uint64_t>(n);
    if (s->progress && *s->progress) (*s->progress)(s->bytes);
    *out = s->buf.data();
    return n;
  }

  // Hashes what libarchive did not need (padding after the end marker).
  Status Drain() {
    if (fd < 0) return Status::Ok();
    const void* ignored;
    la_ssize_t n;
    while ((n = Read(nullptr, this, &ignored)) > 0) {
    }
    if (n < 0) return ErrnoError("read layer", read_errno);
    return Status::Ok();
  }
};

LayerBuilder::LayerBuilder(Mode mode) : mode_(mode) {}
LayerBuilder::~LayerBuilder() = default;

Result<std::string> NormalizeTarPath(std::string_view name) {
  std::string out;
  size_t pos = 0;
  while (pos <= name.size()) {
    size_t next = name.find('/', pos);
    if (next == std::string_view::npos) next = name.size();
    std::string_view comp = name.substr(pos, next - pos);
    pos = next + 1;
    if (comp.empty() || comp == ".") continue;
    if (comp == "..")
      return Corruption("tar member \"" + std::string(name.substr(0, 512)) + "\" has a \"..\" component");
    out += '/';
    out += comp;
  }
  if (out.empty()) out = "/";
  OCIX_RETURN_IF_ERROR(ValidatePath(out).WithContext("tar member"));
  return out;
}

Status LayerBuilder::ApplyLayerFile(const std::string& path, std::string_view expected_digest) {
  Source src;
  src.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (src.fd < 0) return ErrnoError("open " + path, errno);
  src.buf.resize(1 << 20);
  src.progress = &read_progress_;
  Status s = Apply(src);
  if (s.ok()) s = src.Drain();
  ::close(src.fd);
  if (!s.ok()) return s.WithContext("layer " + path);
  if (!expected_digest.empty()) {
    std::string got = src.sha.FinishOciDigest();
    if (got != expected_digest)
      return Corruption("layer " + path + ": digest " + got + " does not match " + std::string(expected_digest));
  }
  return Status::Ok();
}

Status LayerBuilder::ApplyLayerMemory(std::span<const uint8_t> blob) {
  Source src;
  src.memory = blob;
  return Apply(src).WithContext("layer");
}

Status LayerBuilder::Apply(Source& src) {
  ++layer_;
  std::unique_ptr<archive, ArchiveFree> a(archive_read_new());
  archive_read_support_filter_gzip(a.get());
  archive_read_support_filter_zstd(a.get());
  archive_read_support_format_tar(a.get());
  if (archive_read_open(a.get(), &src, nullptr, &Source::Read, nullptr) != ARCHIVE_OK)
    return Corruption(ArchiveError(a.get(), "open tar stream"));
  while (true) {
    archive_entry* ae = nullptr;
    int r = archive_read_next_header(a.get(), &ae);
    if (r == ARCHIVE_EOF) break;
    if (r < ARCHIVE_WARN) {
      if (src.read_errno != 0) return ErrnoError("read layer", src.read_errno);
      return Corruption(ArchiveError(a.get(), "read tar header"));
    }
    ++stats_.entries;
    OCIX_RETURN_IF_ERROR(ApplyEntry(a.get(), ae));
  }
  stats_.blob_bytes += src.bytes;
  return Status::Ok();
}

// Descendants of a directory: the keys that start with "dir/". They are
// contiguous in bytewise order, but siblings such as "dir-x" or "dir.txt"
// sort between "dir" and "dir/...", so the walk starts at the prefix.
std::map<std::string, LayerBuilder::Slot>::iterator LayerBuilder::FirstDescendant(const std::string& dir) {
  return tree_.lower_bound(dir == "/" ? dir : dir + "/");
}

void LayerBuilder::RemoveLower(const std::string& path, bool keep_self) {
  bool self_removed = false;
  if (auto self = tree_.find(path); self != tree_.end() && !keep_self && self->second.layer < layer_) {
    tree_.erase(self);
    self_removed = true;
  }
  bool kept_children = false;
  for (auto it = FirstDescendant(path); it != tree_.end() && IsDescendant(it->first, path);) {
    if (it->second.layer < layer_) {
      it = tree_.erase(it);
    } else {
      kept_children = true;
      ++it;
    }
  }
  // A whited-out directory that this layer also puts children in (without
  // its own member) comes back as the implicit parent an unpacker would make.
  if (self_removed && kept_children) {
    auto n = std::make_shared<Node>();
    n->meta.type = FileType::kDirectory;
    n->meta.mode = 0755;
    tree_.emplace(path, Slot{std::move(n), layer_});
  }
}

Status LayerBuilder::EnsureParents(const std::string& path) {
  // Ancestors top-down: "/a/b/c" -> "/", "/a", "/a/b".
  for (size_t slash = 0; slash != std::string::npos && slash < path.size(); slash = path.find('/', slash + 1)) {
    std::string dir = slash == 0 ? "/" : path.substr(0, slash);
    auto it = tree_.find(dir);
    if (it == tree_.end()) {
      // The root may stay implied; a layer's parents may come from below.
      if (dir == "/" || mode_ == Mode::kLayer) continue;
      // Tars may omit parents; unpackers create them 0755 root-owned. Time 0
      // keeps the result independent of when it was made.
      auto n = std::make_shared<Node>();
      n->meta.type = FileType::kDirectory;
      n->meta.mode = 0755;
      tree_.emplace(dir, Slot{std::move(n), layer_});
    } else if (it->second.node->meta.type == FileType::kWhiteout) {
      // A layer that deletes a directory and puts children under its name
      // replaces it: an opaque directory, as an unpacker would leave it.
      auto n = std::make_shared<Node>();
      n->meta.type = FileType::kDirectory;
      n->meta.mode = 0755;
      n->meta.opaque = true;
      it->second = Slot{std::move(n), layer_};
    } else if (it->second.node->meta.type != FileType::kDirectory) {
      // Unpackers would follow a symlink here; a layer built from a real
      // filesystem never has members below a non-directory.
      return Corruption("path \"" + path + "\": parent \"" + dir + "\" is a " +
                        std::string(FileTypeName(it->second.node->meta.type)) + ", not a directory");
    }
  }
  return Status::Ok();
}

Status LayerBuilder::PutWhiteout(const std::string& path) {
  if (path == "/") return Corruption("whiteout of the root");
  auto it = tree_.find(path);
  if (it != tree_.end()) {
    // This layer also puts something here: that already hides what is below,
    // and for a directory the whiteout means "replace, do not merge".
    if (it->second.node->meta.type == FileType::kDirectory) it->second.node->meta.opaque = true;
    return Status::Ok();
  }
  OCIX_RETURN_IF_ERROR(EnsureParents(path));
  auto n = std::make_shared<Node>();
  n->meta.type = FileType::kWhiteout;
  tree_.emplace(path, Slot{std::move(n), layer_});
  return Status::Ok();
}

Status LayerBuilder::MarkOpaque(const std::string& dir) {
  auto it = tree_.find(dir);
  if (it != tree_.end() && it->second.node->meta.type == FileType::kDirectory) {
    it->second.node->meta.opaque = true;
    return Status::Ok();
  }
  if (it != tree_.end() && it->second.node->meta.type != FileType::kWhiteout)
    return Corruption("opaque marker in \"" + dir + "\", which is not a directory");
  OCIX_RETURN_IF_ERROR(EnsureParents(dir));
  // No member for the directory (yet): the marker implies one.
  auto n = std::make_shared<Node>();
  n->meta.type = FileType::kDirectory;
  n->meta.mode = 0755;
  n->meta.opaque = true;
  tree_.insert_or_assign(dir, Slot{std::move(n), layer_});
  return Status::Ok();
}

Status LayerBuilder::Put(const std::string& path, std::shared_ptr<Node> node) {
  OCIX_RETURN_IF_ERROR(EnsureParents(path));
  auto it = tree_.find(path);
  if (it != tree_.end()) {
    const FileType old_type = it->second.node->meta.type;
    const bool both_dirs = old_type == FileType::kDirectory && node->meta.type == FileType::kDirectory;
    // Layer mode: a directory that this layer whited out or marked opaque
    // stays opaque whatever order the members came in.
    if (mode_ == Mode::kLayer && node->meta.type == FileType::kDirectory &&
        (old_type == FileType::kWhiteout || (both_dirs && it->second.node->meta.opaque)))
      node->meta.opaque = true;
    it->second = Slot{std::move(node), layer_};
    if (!both_dirs) {
      // A non-directory replaces the whole subtree.
      auto child = FirstDescendant(path);
      while (child != tree_.end() && IsDescendant(child->first, path)) child = tree_.erase(child);
    }
  } else {
    tree_.emplace(path, Slot{std::move(node), layer_});
  }
  return Status::Ok();
}

// Holes of a sparse member: hashed as zeros, and handed to the observer as
// zeros (the rewritten layer stores them densely).
Status LayerBuilder::Zeros(uint64_t n, Blake3& h) {
  h.UpdateZeros(n);
  if (!observer_) return Status::Ok();
  static constexpr uint8_t kZeros[64 * 1024] = {};
  while (n > 0) {
    const size_t step = static_cast<size_t>(std::min<uint64_t>(n, sizeof kZeros));
    OCIX_RETURN_IF_ERROR(observer_->OnData({kZeros, step}));
    n -= step;
  }
  return Status::Ok();
}

Status LayerBuilder::ReadContent(archive* a, archive_entry* ae, Entry& e) {
  Blake3 h;
  uint64_t pos = 0;
  std::vector<Extent> extents;
  bool holes = false;
  const void* buf;
  size_t len;
  la_int64_t off;
  int r;
  while ((r = archive_read_data_block(a, &buf, &len, &off)) == ARCHIVE_OK) {
    if (off < 0 || static_cast<uint64_t>(off) < pos) return Corruption("data blocks out of order");
    const auto uoff = static_cast<uint64_t>(off);
    if (uoff > pos) {
      OCIX_RETURN_IF_ERROR(Zeros(uoff - pos, h));
      holes = true;
    }
    if (len == 0) {
      pos = uoff;
      continue;
    }
    h.Update({static_cast<const uint8_t*>(buf), len});
    if (observer_) OCIX_RETURN_IF_ERROR(observer_->OnData({static_cast<const uint8_t*>(buf), len}));
    if (!extents.empty() && extents.back().offset + extents.back().length == uoff) {
      extents.back().length += len;
    } else {
      if (extents.size() >= kMaxExtentsPerFile) return Corruption("too many sparse data regions");
      extents.push_back({uoff, len});
    }
    pos = uoff + len;
    stats_.content_bytes += len;
  }
  if (r != ARCHIVE_EOF) return Corruption(ArchiveError(a, "read file data"));
  if (!archive_entry_size_is_set(ae) || archive_entry_size(ae) < 0) return Corruption("file without a size");
  e.size = static_cast<uint64_t>(archive_entry_size(ae));
  if (pos > e.size) return Corruption("more data than the file size");
  if (pos < e.size) {
    OCIX_RETURN_IF_ERROR(Zeros(e.size - pos, h));
    holes = true;
  }
  e.digest = h.Finish();
  if (holes) e.data = std::move(extents);
  return Status::Ok();
}

namespace {

Status ReadMeta(archive_entry* ae, Entry& e) {
  e.mode = static_cast<uint32_t>(archive_entry_perm(ae)) & 07777;
  const la_int64_t uid = archive_entry_uid(ae), gid = archive_entry_gid(ae);
  if (uid < 0 || gid < 0 || static_cast<uint64_t>(uid) > kMaxId || static_cast<uint64_t>(gid) > kMaxId)
    return Corruption("uid or gid out of range");
  e.uid = static_cast<uint32_t>(uid);
  e.gid = static_cast<uint32_t>(gid);
  // Names are optional; numeric ids are authoritative. Drop unusable names.
  auto name = [](const char* s) {
    std::string v = s ? s : "";
    return v.size() <= kMaxOwnerNameBytes && IsValidUtf8(v) ? v : std::string();
  };
  e.user = name(archive_entry_uname(ae));
  e.group = name(archive_entry_gname(ae));
  if (archive_entry_mtime_is_set(ae)) {
    e.mtime.sec = archive_entry_mtime(ae);
    const long nsec = archive_entry_mtime_nsec(ae);
    e.mtime.nsec = nsec >= 0 && nsec < 1'000'000'000 ? static_cast<uint32_t>(nsec) : 0;
  }
  archive_entry_xattr_reset(ae);
  const char* xname;
  const void* xvalue;
  size_t xsize;
  while (archive_entry_xattr_next(ae, &xname, &xvalue, &xsize) == ARCHIVE_OK) {
    if (e.xattrs.size() >= kMaxXattrsPerFile) return Corruption("too many xattrs");
    e.xattrs.push_back({xname ? xname : "", std::string(static_cast<const char*>(xvalue), xsize)});
  }
  // Canonical order; a repeated name keeps its last value.
  std::stable_sort(e.xattrs.begin(), e.xattrs.end(),
                   [](const Xattr& a, const Xattr& b) { return CanonicalLess(a.name, b.name); });
  for (size_t i = e.xattrs.size(); i-- > 1;) {
    if (e.xattrs[i - 1].name == e.xattrs[i].name) e.xattrs.erase(e.xattrs.begin() + static_cast<long>(i - 1));
  }
  return Status::Ok();
}

}  // namespace

Status LayerBuilder::ApplyEntry(archive* a, archive_entry* ae) {
  const char* raw = PathnameOf(ae);
  if (raw == nullptr) return Corruption("tar member without a name");
  OCIX_ASSIGN_OR_RETURN(std::string path, NormalizeTarPath(raw));
  if (filter_ && !filter_(path, ae)) return Status::Ok();  // libarchive skips its data
  auto error = [&](const Status& s) { return s.WithContext("tar member \"" + path + "\""); };
  if (observer_) OCIX_RETURN_IF_ERROR(error(observer_->OnMember(ae, path)));
  const Entry* file = nullptr;
  OCIX_RETURN_IF_ERROR(error(Record(a, ae, path, file)));
  if (observer_) OCIX_RETURN_IF_ERROR(error(observer_->OnMemberEnd(file)));
  return Status::Ok();
}

Status LayerBuilder::Record(archive* a, archive_entry* ae, const std::string& path, const Entry*& file) {
  const size_t slash = path.rfind('/');
  const std::string_view base = std::string_view(path).substr(slash + 1);
  const std::string parent = slash == 0 ? "/" : path.substr(0, slash);

  // Whiteouts (OCI image-spec layer.md) act on the layers below only.
  if (base.substr(0, 4) == ".wh.") {
    if (base == ".wh..wh..opq") {
      if (mode_ == Mode::kLayer) return MarkOpaque(parent);
      RemoveLower(parent, /*keep_self=*/true);
    } else if (base.substr(0, 8) != ".wh..wh.") {  // other ".wh..wh." names are aufs bookkeeping
      std::string victim = (parent == "/" ? "" : parent) + "/" + std::string(base.substr(4));
      OCIX_RETURN_IF_ERROR(ValidatePath(victim).WithContext("whiteout"));
      if (mode_ == Mode::kLayer) return PutWhiteout(victim);
      RemoveLower(victim, /*keep_self=*/false);
    }
    return Status::Ok();
  }

  if (const char* link =
          archive_entry_hardlink_utf8(ae) ? archive_entry_hardlink_utf8(ae) : archive_entry_hardlink(ae)) {
    OCIX_ASSIGN_OR_RETURN(std::string target, NormalizeTarPath(link));
    auto it = tree_.find(target);
    if (it == tree_.end()) {
      return Corruption("hardlink to missing \"" + target + "\"" +
                        (mode_ == Mode::kLayer ? " (links into lower layers are not supported)" : ""));
    }
    if (target == path) return Corruption("hardlink to itself");
    std::shared_ptr<Node> node = it->second.node;
    // Only regular files share an inode in the manifest; other hardlinked
    // types (rare: devices, fifos) become independent copies.
    if (node->meta.type == FileType::kDirectory || node->meta.type == FileType::kWhiteout)
      return Corruption("hardlink to a " + std::string(FileTypeName(node->meta.type)));
    if (node->meta.type != FileType::kRegular) node = std::make_shared<Node>(*node);
    return Put(path, std::move(node));
  }

  auto node = std::make_shared<Node>();
  Entry& e = node->meta;
  OCIX_RETURN_IF_ERROR(ReadMeta(ae, e));
  switch (archive_entry_filetype(ae)) {
    case AE_IFREG:
      e.type = FileType::kRegular;
      OCIX_RETURN_IF_ERROR(ReadContent(a, ae, e));
      if (e.size > 0) file = &e;
      break;
    case AE_IFDIR: e.type = FileType::kDirectory; break;
    case AE_IFLNK: {
      e.type = FileType::kSymlink;
      const char* t = archive_entry_symlink_utf8(ae) ? archive_entry_symlink_utf8(ae) : archive_entry_symlink(ae);
      e.target = t ? t : "";
      if (e.target.empty()) return Corruption("symlink without a target");
      break;
    }
    case AE_IFCHR:
    case AE_IFBLK: {
      e.type = archive_entry_filetype(ae) == AE_IFCHR ? FileType::kCharDevice : FileType::kBlockDevice;
      e.rdev_major = static_cast<uint32_t>(archive_entry_rdevmajor(ae));
      e.rdev_minor = static_cast<uint32_t>(archive_entry_rdevminor(ae));
      break;
    }
    case AE_IFIFO: e.type = FileType::kFifo; break;
    default: return Corruption("unsupported file type (socket or unknown)");
  }
  if (path == "/" && e.type != FileType::kDirectory) return Corruption("the root is not a directory");
  return Put(path, std::move(node));
}

Result<Manifest> LayerBuilder::Finish(uint64_t version) const {
  Manifest m;
  m.version = version;
  if (mode_ == Mode::kLayer) {
    if (version != 1) return InvalidArgument("a layer manifest needs format version 1");
    m.layer = true;
  }
  std::vector<std::pair<const std::string*, const Node*>> order;
  order.reserve(tree_.size());
  for (const auto& [path, slot] : tree_) order.emplace_back(&path, slot.node.get());
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return CanonicalLess(*a.first, *b.first); });
  // The canonically first name of a hardlinked file carries it; the others
  // point at that name.
  std::unordered_map<const Node*, const std::string*> primary;
  m.entries.reserve(order.size());
  for (const auto& [path, node] : order) {
    Entry e;
    if (node->meta.type == FileType::kRegular) {
      auto [it, inserted] = primary.emplace(node, path);
      if (!inserted) {
        e.type = FileType::kHardlink;
        e.target = *it->second;
      }
    }
    if (e.type != FileType::kHardlink) {
      e = node->meta;
      if (version == 0) {
        // Version 0 has no words for these; the content hash is unchanged.
        e.xattrs.clear();
        e.data.reset();
      }
    }
    e.path = *path;
    m.entries.push_back(std::move(e));
  }
  OCIX_RETURN_IF_ERROR(ValidateManifest(m).WithContext("layers gave an invalid tree"));
  return m;
}

}  // namespace ocix::core

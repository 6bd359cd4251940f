// The OCIX manifest model: a filesystem tree apart from its file contents.
//
// One Manifest describes either a whole root filesystem (flattened) or, in
// version 1 with layer=true, one layer of a stack (with whiteouts and opaque
// directories). Entries are kept in canonical order (CanonicalLess), which is
// also the CBOR map order, so a path lookup is a binary search.
// See docs/FORMAT.md for the encodings of versions 0 and 1.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ocix/core/blake3.h"
#include "ocix/core/status.h"

namespace ocix::core {

enum class FileType : uint8_t {
  kRegular,
  kDirectory,
  kSymlink,
  kHardlink,  // another name of a regular file (Entry::target = primary path)
  kCharDevice,
  kBlockDevice,
  kFifo,
  kWhiteout,  // layer manifests only: the path is deleted from lower layers
};

// Short names used by `ocix inspect` (mtree's words where mtree has one).
std::string_view FileTypeName(FileType t);

struct Timestamp {
  int64_t sec = 0;
  uint32_t nsec = 0;  // < 1e9
  auto operator<=>(const Timestamp&) const = default;
};

// A data region of a sparse file; everything else reads as zeros.
struct Extent {
  uint64_t offset = 0;
  uint64_t length = 0;
  auto operator<=>(const Extent&) const = default;
};

// Optional per-file chunk table (v1): BLAKE3 of each chunk_size piece of the
// content, so a reader can verify a piece without the whole file.
struct ChunkList {
  uint64_t chunk_size = 0;
  std::vector<Digest> digests;
  bool operator==(const ChunkList&) const = default;
};

struct Xattr {
  std::string name;
  std::string value;  // raw bytes
  auto operator<=>(const Xattr&) const = default;
};

struct Entry {
  std::string path;  // absolute and normalized: "/", "/etc", "/etc/passwd"
  FileType type = FileType::kRegular;
  uint32_t mode = 0;  // permission bits only (07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  std::string user;  // optional names; empty = absent
  std::string group;
  Timestamp mtime;
  // Version 0 may carry these; they are kept so v0 decodes and re-encodes
  // unchanged. Version 1 drops them: they vary between builds for no reason.
  std::optional<Timestamp> atime, ctime, btime;
  uint64_t size = 0;  // regular files
  Digest digest;      // regular files: BLAKE3-256 of the whole content
  // Sparse regular files: the data regions (possibly none: all hole).
  // nullopt = a file without holes.
  std::optional<std::vector<Extent>> data;
  std::optional<ChunkList> chunks;
  std::string target;  // symlink: target as stored; hardlink: primary path
  uint32_t rdev_major = 0, rdev_minor = 0;
  std::vector<Xattr> xattrs;  // sorted by name, unique
  bool opaque = false;        // directories of layer manifests

  bool operator==(const Entry&) const = default;
};

struct Manifest {
  uint64_t version = 1;
  bool layer = false;
  std::vector<Entry> entries;  // canonical order, unique paths

  // Entry at `path`, or nullptr. REQUIRES: entries in canonical order.
  const Entry* Find(std::string_view path) const;
  bool operator==(const Manifest&) const = default;
};

// Canonical CBOR order of text keys: shorter first, then bytewise.
inline bool CanonicalLess(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return a.size() < b.size();
  return a < b;
}

// Checks a path is absolute and normalized: "/" or "/a/b" with no empty,
// "." or ".." component, no NUL, valid UTF-8, within the length limits.
Status ValidatePath(std::string_view path);
// Parent of a normalized path ("/a/b" -> "/a", "/a" -> "/"); "/" has none.
std::string_view ParentPath(std::string_view path);

// Every semantic rule of docs/FORMAT.md: order, paths, parents, hardlinks,
// per-type fields, limits. Errors name the offending path.
Status ValidateManifest(const Manifest& m);

}  // namespace ocix::core

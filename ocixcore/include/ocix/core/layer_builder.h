// Applies OCI layer tarballs in order and yields the manifest of the result.
//
// This is the OCI image-spec's layer model, done in memory on metadata only:
// later entries replace earlier ones, `.wh.NAME` deletes NAME from the layers
// below, `DIR/.wh..wh..opq` hides everything the layers below put in DIR, and
// hardlinks share one file. File contents are hashed while streaming and then
// dropped, so memory grows with the number of paths, not their sizes.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "ocix/core/manifest.h"
#include "ocix/core/status.h"

struct archive;
struct archive_entry;

namespace ocix::core {

struct LayerStats {
  uint64_t entries = 0;
  uint64_t content_bytes = 0;  // uncompressed file data read from the tar
  uint64_t blob_bytes = 0;     // compressed bytes read from the blob
};

class LayerBuilder {
 public:
  LayerBuilder();
  ~LayerBuilder();
  LayerBuilder(const LayerBuilder&) = delete;
  LayerBuilder& operator=(const LayerBuilder&) = delete;

  // Applies one layer file (tar, tar+gzip or tar+zstd, detected from the
  // bytes). When expected_digest ("sha256:...") is non-empty the blob is
  // hashed as it streams and a mismatch fails the call.
  Status ApplyLayerFile(const std::string& path, std::string_view expected_digest);
  // The same for a layer held in memory (tests, fuzzing).
  Status ApplyLayerMemory(std::span<const uint8_t> blob);

  // The flattened tree as a manifest of the given version.
  Result<Manifest> Finish(uint64_t version) const;

  const LayerStats& stats() const { return stats_; }

 private:
  struct Node;
  struct Source;
  struct Slot {
    std::shared_ptr<Node> node;  // shared by the names of one hardlinked file
    int layer;                   // index of the layer that last put this path
  };
  Status Apply(Source& src);
  Status ApplyEntry(::archive* a, ::archive_entry* ae);
  Status Put(const std::string& path, std::shared_ptr<Node> node);
  void RemoveLower(const std::string& path, bool keep_self);
  std::map<std::string, Slot>::iterator FirstDescendant(const std::string& dir);
  Status EnsureParents(const std::string& path);

  // Bytewise order keeps a directory's descendants ("dir/...") contiguous.
  std::map<std::string, Slot> tree_;
  int layer_ = -1;
  LayerStats stats_;
};

// Turns a tar member name into a manifest path: strips "./" and leading
// slashes, drops "." components and trailing slashes; ".." is an error
// (a layer must not reach outside the root).
Result<std::string> NormalizeTarPath(std::string_view name);

}  // namespace ocix::core

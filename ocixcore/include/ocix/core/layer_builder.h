// Applies OCI layer tarballs and yields the manifest of the result.
//
// Flatten mode (default) is the OCI image-spec's layer model, done in memory
// on metadata only: later entries replace earlier ones, `.wh.NAME` deletes
// NAME from the layers below, `DIR/.wh..wh..opq` hides everything the layers
// below put in DIR, and hardlinks share one file. Layer mode describes one
// layer by itself: whiteouts become whiteout entries and opaque markers
// opaque directories (a version 1 layer manifest).
//
// File contents are hashed while streaming and then dropped, so memory grows
// with the number of paths, not their sizes. An observer sees every member
// and its bytes as they stream (the converter rewrites the layer from them).
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

// Sees each tar member as LayerBuilder reads it. Calls come in order:
// OnMember, then OnData for a regular file's whole logical content (holes as
// zeros), then OnMemberEnd with the entry as recorded (null for members that
// are not a regular file with content: directories, links, whiteouts, ...).
class MemberObserver {
 public:
  virtual ~MemberObserver() = default;
  virtual Status OnMember(::archive_entry* member, const std::string& path) = 0;
  virtual Status OnData(std::span<const uint8_t> data) = 0;
  virtual Status OnMemberEnd(const Entry* file) = 0;
};

class LayerBuilder {
 public:
  enum class Mode { kFlatten, kLayer };
  // Decides per member whether to take it (true) or skip it entirely.
  using Filter = std::function<bool(const std::string& path, ::archive_entry* member)>;

  explicit LayerBuilder(Mode mode = Mode::kFlatten);
  ~LayerBuilder();
  LayerBuilder(const LayerBuilder&) = delete;
  LayerBuilder& operator=(const LayerBuilder&) = delete;

  // Applies one layer file (tar, tar+gzip or tar+zstd, detected from the
  // bytes). When expected_digest ("sha256:...") is non-empty the blob is
  // hashed as it streams and a mismatch fails the call.
  Status ApplyLayerFile(const std::string& path, std::string_view expected_digest);
  // The same for a layer held in memory (tests, fuzzing).
  Status ApplyLayerMemory(std::span<const uint8_t> blob);

  // REQUIRES: observer outlives every Apply call. nullptr removes it.
  void SetObserver(MemberObserver* observer) { observer_ = observer; }
  void SetFilter(Filter filter) { filter_ = std::move(filter); }
  // Called with the blob bytes read so far in the current layer.
  void SetReadProgress(std::function<void(uint64_t)> fn) { read_progress_ = std::move(fn); }

  // The tree as a manifest of the given version (layer mode: version 1
  // with layer=true).
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
  // Records one member in the tree; `file` is set to the recorded entry of a
  // regular file with content (valid until the tree changes).
  Status Record(::archive* a, ::archive_entry* ae, const std::string& path, const Entry*& file);
  Status Put(const std::string& path, std::shared_ptr<Node> node);
  void RemoveLower(const std::string& path, bool keep_self);
  std::map<std::string, Slot>::iterator FirstDescendant(const std::string& dir);
  Status EnsureParents(const std::string& path);
  Status PutWhiteout(const std::string& path);
  Status MarkOpaque(const std::string& dir);
  Status ReadContent(::archive* a, ::archive_entry* ae, Entry& e);
  Status Zeros(uint64_t n, Blake3& h);

  Mode mode_;
  MemberObserver* observer_ = nullptr;
  Filter filter_;
  std::function<void(uint64_t)> read_progress_;
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

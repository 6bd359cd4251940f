// `ocix pull REF`: pulls an image into containerd through containerd's own
// gRPC API (our equivalent of ctr-remote's rpull). Layers are prepared on
// containerd's Snapshots service with the cri.* labels, so a remote
// snapshotter (ours: the `ocix` proxy plugin) can mount them lazily; where a
// snapshotter returns mounts instead, the layer is fetched and applied with
// containerd's Diff service.
//
// The pure pieces (chain IDs, labels) are declared here so cli_tests can
// check them against containerd's behaviour.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ocix/core/oci_layout.h"
#include "ocix/core/registry/client.h"
#include "ocix/core/registry/reference.h"
#include "ocix/core/status.h"

namespace ocix::cli {

struct PullOptions {
  std::string ref;                                          // as given; also the image record's name
  std::string address = "/run/containerd/containerd.sock";  // containerd's gRPC socket
  std::string ns = "default";                               // containerd namespace
  std::string snapshotter = "ocix";
  std::string platform;                      // empty: this host
  std::chrono::milliseconds timeout{30000};  // per containerd call (transfers get more)
  std::string tmp_dir;                       // empty: $TMPDIR or /var/tmp
  core::RegistryOptions registry;
};

// Progress of long steps (a layer's download and upload); main wires the
// ProgressBar in. Layer lines and the summary go to standard output.
struct PullEvents {
  std::function<void(const std::string& what, uint64_t total)> begin_step;
  std::function<void(uint64_t done, uint64_t total)> progress;
  std::function<void()> end_step;
};

int RunPull(const PullOptions& options, const PullEvents& events);

// ---- pure helpers (tested by cli_tests) ----

// identity.ChainID of one more layer: diff_id when parent is empty, else
// "sha256:" + hex(sha256(parent + " " + diff_id)).
std::string ChainId(std::string_view parent, std::string_view diff_id);
// The chain ID of every prefix: result[i] names layers 0..i.
std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids);

// rootfs.diff_ids of an image config (each a validated sha256 digest).
core::Result<std::vector<std::string>> ParseDiffIds(std::string_view config_json);

// containerd's images.IsLayerType.
bool IsLayerMediaType(std::string_view media_type);

// images.ChildGCLabels: the GC reference labels a parent (index or manifest)
// carries for its children: "containerd.io/gc.ref.content.m.<i>" for
// manifests, ".config" for a config, ".l.<i>" for layers, "." + <i> otherwise.
std::map<std::string, std::string> ChildGcLabels(const std::vector<core::Descriptor>& children);

// The labels sent with Prepare and Commit of layer i (as containerd's
// unpacker with snapshotters.AppendInfoHandlerWrapper does): the layer's
// "containerd.io/snapshot/" annotations, containerd.io/snapshot.ref = chain
// ID and the cri.* labels. image_ref is what the snapshotter resolves.
std::map<std::string, std::string> SnapshotLabels(const std::string& image_ref, const std::string& manifest_digest,
                                                  const std::vector<core::Descriptor>& layers, size_t i,
                                                  const std::string& chain_id);

// cri.image-layers: layers[from:] digests, comma-separated, cut before the
// label (key + value) would exceed containerd's 4096-byte limit.
std::string ImageLayersLabel(const std::vector<core::Descriptor>& layers, size_t from);

// Largest key + value containerd accepts for one label.
inline constexpr size_t kMaxLabelBytes = 4096;

// "containerd.io/distribution.source.<hostname without port>" and the
// repository list with repo merged in (sorted, unique), as
// docker.AppendDistributionSourceLabel does.
std::string DistributionSourceKey(const core::Reference& ref);
std::string AppendDistributionSource(std::string_view existing, std::string_view repo);

// The content store ingest ref containerd uses for a descriptor
// (remotes.MakeRefKey): "index-", "manifest-", "layer-", "config-" + digest.
std::string ContentRefKey(const core::Descriptor& d);

// RFC 3339 UTC ("2024-01-02T03:04:05Z"), the format of containerd.io/gc.expire.
std::string Rfc3339Utc(std::chrono::system_clock::time_point t);

}  // namespace ocix::cli

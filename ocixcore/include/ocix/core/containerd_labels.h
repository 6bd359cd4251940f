// Label keys of containerd's remote-snapshot protocol, shared by the pull
// client (`ocix pull`) and the snapshotter that answers it.
#pragma once

#include <string_view>

namespace ocix::core {

// Prepare's target: the chain ID the snapshot is committed under when the
// snapshotter can provide the layer itself.
inline constexpr std::string_view kLabelTargetRef = "containerd.io/snapshot.ref";
// Annotations of a layer with this prefix are passed to Prepare as labels.
inline constexpr std::string_view kLabelInheritedPrefix = "containerd.io/snapshot/";
// What containerd's CRI plugin (and nerdctl, ocix pull) send.
inline constexpr std::string_view kLabelCriImageRef = "containerd.io/snapshot/cri.image-ref";
inline constexpr std::string_view kLabelCriLayerDigest = "containerd.io/snapshot/cri.layer-digest";
inline constexpr std::string_view kLabelCriManifestDigest = "containerd.io/snapshot/cri.manifest-digest";
inline constexpr std::string_view kLabelCriImageLayers = "containerd.io/snapshot/cri.image-layers";
// What ctr-remote's rpull sends.
inline constexpr std::string_view kLabelStargzRef = "containerd.io/snapshot/remote/stargz.reference";
inline constexpr std::string_view kLabelStargzDigest = "containerd.io/snapshot/remote/stargz.digest";
inline constexpr std::string_view kLabelStargzSize = "containerd.io/snapshot/remote/stargz.size";

}  // namespace ocix::core

// The pure parts of `ocix pull`, checked against what containerd 1.6 does
// (image-spec identity.ChainID, images.ChildGCLabels, the unpacker's and
// snapshotters.AppendInfoHandlerWrapper's labels).
#include <gtest/gtest.h>

#include <chrono>

#include "pull.h"

namespace ocix::cli {
namespace {

using core::Descriptor;

const std::string kA = "sha256:" + std::string(64, 'a');
const std::string kB = "sha256:" + std::string(64, 'b');
const std::string kC = "sha256:" + std::string(64, 'c');
constexpr char kTarGzip[] = "application/vnd.oci.image.layer.v1.tar+gzip";

Descriptor Layer(const std::string& digest, std::map<std::string, std::string> annotations = {}) {
  Descriptor d;
  d.media_type = kTarGzip;
  d.digest = digest;
  d.size = 10;
  d.annotations = std::move(annotations);
  return d;
}

TEST(ChainId, MatchesImageSpecIdentity) {
  // sha256("A B") then sha256("AB C"), computed independently with Python.
  const std::string ab = "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c";
  const std::string abc = "sha256:c1377126441fb2f5ec2c21ae2a60255331d639e830f0ee1b40a36e52d4c40588";
  EXPECT_EQ(ChainId("", kA), kA);
  EXPECT_EQ(ChainId(kA, kB), ab);
  EXPECT_EQ(ChainIds({kA, kB, kC}), (std::vector<std::string>{kA, ab, abc}));
  EXPECT_TRUE(ChainIds({}).empty());
}

TEST(ParseDiffIds, ReadsRootfs) {
  auto ids = ParseDiffIds(R"({"architecture":"amd64","rootfs":{"type":"layers","diff_ids":[")" + kA + R"(",")" + kB +
                          R"("]}})");
  ASSERT_TRUE(ids.ok()) << ids.status().ToString();
  EXPECT_EQ(*ids, (std::vector<std::string>{kA, kB}));
  EXPECT_FALSE(ParseDiffIds("{").ok());
  EXPECT_FALSE(ParseDiffIds(R"({"rootfs":{}})").ok());
  EXPECT_FALSE(ParseDiffIds(R"({"rootfs":{"diff_ids":["sha512:00"]}})").ok());
  EXPECT_FALSE(ParseDiffIds(R"({"rootfs":{"diff_ids":[1]}})").ok());
}

TEST(IsLayerMediaType, FollowsContainerd) {
  EXPECT_TRUE(IsLayerMediaType("application/vnd.oci.image.layer.v1.tar"));
  EXPECT_TRUE(IsLayerMediaType("application/vnd.oci.image.layer.v1.tar+zstd"));
  EXPECT_TRUE(IsLayerMediaType("application/vnd.docker.image.rootfs.diff.tar.gzip"));
  EXPECT_TRUE(IsLayerMediaType("application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"));
  EXPECT_FALSE(IsLayerMediaType("application/vnd.oci.image.config.v1+json"));
  EXPECT_FALSE(IsLayerMediaType("application/vnd.oci.image.manifest.v1+json"));
}

TEST(ChildGcLabels, ManifestChildren) {
  Descriptor config;
  config.media_type = "application/vnd.oci.image.config.v1+json";
  config.digest = kC;
  auto labels = ChildGcLabels({config, Layer(kA), Layer(kB)});
  EXPECT_EQ(labels, (std::map<std::string, std::string>{{"containerd.io/gc.ref.content.config", kC},
                                                        {"containerd.io/gc.ref.content.l.0", kA},
                                                        {"containerd.io/gc.ref.content.l.1", kB}}));
}

TEST(ChildGcLabels, IndexChildren) {
  Descriptor m1, m2, other;
  m1.media_type = "application/vnd.oci.image.manifest.v1+json";
  m1.digest = kA;
  m2.media_type = "application/vnd.docker.distribution.manifest.v2+json";
  m2.digest = kB;
  other.media_type = "application/vnd.oci.image.index.v1+json";
  other.digest = kC;
  auto labels = ChildGcLabels({m1, m2, other});
  EXPECT_EQ(labels, (std::map<std::string, std::string>{{"containerd.io/gc.ref.content.m.0", kA},
                                                        {"containerd.io/gc.ref.content.m.1", kB},
                                                        {"containerd.io/gc.ref.content.0", kC}}));
}

TEST(SnapshotLabels, CriLabelsAndInheritedAnnotations) {
  std::vector<Descriptor> layers = {Layer(kA),
                                    Layer(kB, {{"containerd.io/snapshot/ocix/toc.digest", kC},
                                               {"containerd.io/snapshot.ref", "ignored"},
                                               {"org.opencontainers.image.title", "not for snapshotters"}}),
                                    Layer(kC)};
  auto labels = SnapshotLabels("127.0.0.1:5000/busybox:latest", kC, layers, 1, "sha256:chain");
  EXPECT_EQ(labels, (std::map<std::string, std::string>{
                        {"containerd.io/snapshot.ref", "sha256:chain"},
                        {"containerd.io/snapshot/cri.image-ref", "127.0.0.1:5000/busybox:latest"},
                        {"containerd.io/snapshot/cri.layer-digest", kB},
                        {"containerd.io/snapshot/cri.manifest-digest", kC},
                        // From this layer on, as AppendInfoHandlerWrapper passes children[i:].
                        {"containerd.io/snapshot/cri.image-layers", kB + "," + kC},
                        {"containerd.io/snapshot/ocix/toc.digest", kC},
                    }));
}

TEST(ImageLayersLabel, StaysUnderTheLabelLimit) {
  std::vector<Descriptor> layers(100, Layer(kA));  // 100 * 72 bytes: far more than 4096
  std::string v = ImageLayersLabel(layers, 0);
  const std::string key = "containerd.io/snapshot/cri.image-layers";
  EXPECT_LE(key.size() + v.size(), kMaxLabelBytes);
  // As many whole digests as fit: (4096 - 39 + 1) / 72 = 56.
  EXPECT_EQ(v.size(), 56 * 71 + 55);
  EXPECT_EQ(ImageLayersLabel(layers, 100), "");
  Descriptor not_layer = Layer(kB);
  not_layer.media_type = "application/vnd.oci.image.config.v1+json";
  EXPECT_EQ(ImageLayersLabel({Layer(kA), not_layer, Layer(kC)}, 0), kA + "," + kC);
}

TEST(DistributionSource, KeyAndValue) {
  auto ref = core::Reference::Parse("127.0.0.1:5000/library/busybox:1");
  ASSERT_TRUE(ref.ok());
  EXPECT_EQ(DistributionSourceKey(*ref), "containerd.io/distribution.source.127.0.0.1");
  auto hub = core::Reference::Parse("busybox");
  ASSERT_TRUE(hub.ok());
  EXPECT_EQ(DistributionSourceKey(*hub), "containerd.io/distribution.source.docker.io");
  auto v6 = core::Reference::Parse("[::1]:5000/x:y");
  ASSERT_TRUE(v6.ok());
  EXPECT_EQ(DistributionSourceKey(*v6), "containerd.io/distribution.source.::1");
  EXPECT_EQ(AppendDistributionSource("", "b"), "b");
  EXPECT_EQ(AppendDistributionSource("c,a", "b"), "a,b,c");
  EXPECT_EQ(AppendDistributionSource("a,b", "b"), "a,b");
}

TEST(ContentRefKey, LikeMakeRefKey) {
  Descriptor m;
  m.media_type = "application/vnd.oci.image.manifest.v1+json";
  m.digest = kA;
  EXPECT_EQ(ContentRefKey(m), "manifest-" + kA);
  EXPECT_EQ(ContentRefKey(Layer(kB)), "layer-" + kB);
  Descriptor c;
  c.media_type = "application/vnd.docker.container.image.v1+json";
  c.digest = kC;
  EXPECT_EQ(ContentRefKey(c), "config-" + kC);
}

TEST(Rfc3339Utc, Formats) {
  EXPECT_EQ(Rfc3339Utc(std::chrono::system_clock::from_time_t(1700000000)), "2023-11-14T22:13:20Z");
}

}  // namespace
}  // namespace ocix::cli

#include "ocix/core/oci_layout.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <cctype>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "ocix/core/sha256.h"
#include "ocix/core/status.h"

namespace ocix::core {
namespace {

namespace fs = std::filesystem;

constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";
constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kConfigType[] = "application/vnd.oci.image.config.v1+json";
constexpr char kLayerType[] = "application/vnd.oci.image.layer.v1.tar+gzip";

struct Blob {
  std::string digest;
  int64_t size;
};

// A throwaway OCI layout directory.
class TempLayout {
 public:
  TempLayout() {
    std::string tmpl = (fs::temp_directory_path() / "ocix-layout-test-XXXXXX").string();
    char* d = mkdtemp(tmpl.data());
    EXPECT_NE(d, nullptr);
    dir_ = tmpl;
    fs::create_directories(dir_ / "blobs" / "sha256");
    Write("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  }
  ~TempLayout() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  TempLayout(const TempLayout&) = delete;
  TempLayout& operator=(const TempLayout&) = delete;

  std::string dir() const { return dir_.string(); }

  void Write(const std::string& rel, const std::string& content) {
    std::ofstream out(dir_ / rel, std::ios::binary | std::ios::trunc);
    out << content;
    EXPECT_TRUE(out.good()) << rel;
  }

  Blob AddBlob(const std::string& content) {
    Blob b{Sha256::OciDigest(content), static_cast<int64_t>(content.size())};
    Write("blobs/sha256/" + b.digest.substr(7), content);
    return b;
  }

  // An image manifest with one config and the given layers.
  Blob AddImage(const std::vector<Blob>& layers, const std::string& config_json = R"({"architecture":"amd64"})") {
    Blob config = AddBlob(config_json);
    std::string json = R"({"schemaVersion":2,"mediaType":")" + std::string(kManifestType) + R"(","config":)" +
                       Desc(kConfigType, config) + R"(,"layers":[)";
    for (size_t i = 0; i < layers.size(); ++i) {
      if (i) json += ",";
      json += Desc(kLayerType, layers[i]);
    }
    json += "]}";
    return AddBlob(json);
  }

  static std::string Desc(const std::string& media_type, const Blob& b, const std::string& extra = "") {
    return R"({"mediaType":")" + media_type + R"(","digest":")" + b.digest + R"(","size":)" + std::to_string(b.size) +
           extra + "}";
  }
  static std::string Tagged(const std::string& tag) {
    return R"(,"annotations":{"org.opencontainers.image.ref.name":")" + tag + R"("})";
  }
  static std::string OnPlatform(const std::string& os, const std::string& arch, const std::string& variant = "") {
    return R"(,"platform":{"os":")" + os + R"(","architecture":")" + arch + R"(")" +
           (variant.empty() ? "" : R"(,"variant":")" + variant + R"(")") + "}";
  }

  void SetIndex(const std::vector<std::string>& descriptors) {
    std::string json = R"({"schemaVersion":2,"manifests":[)";
    for (size_t i = 0; i < descriptors.size(); ++i) {
      if (i) json += ",";
      json += descriptors[i];
    }
    Write("index.json", json + "]}");
  }

 private:
  fs::path dir_;
};

Platform P(std::string os, std::string arch, std::string variant = "") {
  Platform p;
  p.os = std::move(os);
  p.architecture = std::move(arch);
  p.variant = std::move(variant);
  return p;
}

TEST(Sha256Test, KnownVectors) {
  EXPECT_EQ(Sha256::OciDigest(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256::OciDigest("abc"), "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  Sha256 h;
  h.Update(std::string_view("a"));
  h.Update(std::string_view(""));
  h.Update(std::string_view("bc"));
  EXPECT_EQ(h.FinishOciDigest(), Sha256::OciDigest("abc"));
  // Two blocks: "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq" (FIPS 180-2).
  EXPECT_EQ(Sha256::OciDigest("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(OciLayoutTest, ResolveByTag) {
  TempLayout t;
  Blob l1 = t.AddBlob("layer one");
  Blob l2 = t.AddBlob("layer two");
  Blob img1 = t.AddImage({l1, l2});
  Blob img2 = t.AddImage({l2}, R"({"architecture":"arm64"})");
  t.SetIndex({TempLayout::Desc(kManifestType, img1, TempLayout::Tagged("v1")),
              TempLayout::Desc(kManifestType, img2, TempLayout::Tagged("v2"))});
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok()) << layout.status().ToString();
  EXPECT_EQ(layout->dir(), t.dir());

  auto r = layout->Resolve("v1", P("linux", "amd64"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->digest, img1.digest);
  EXPECT_EQ(r->config.media_type, kConfigType);
  EXPECT_EQ(r->config.digest, Sha256::OciDigest(R"({"architecture":"amd64"})"));
  ASSERT_EQ(r->layers.size(), 2u);
  EXPECT_EQ(r->layers[0].digest, l1.digest);
  EXPECT_EQ(r->layers[0].size, l1.size);
  EXPECT_EQ(r->layers[0].media_type, kLayerType);
  EXPECT_EQ(r->layers[1].digest, l2.digest);

  auto r2 = layout->Resolve("v2", P("linux", "amd64"));
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_EQ(r2->digest, img2.digest);
  ASSERT_EQ(r2->layers.size(), 1u);
  EXPECT_EQ(r2->layers[0].digest, l2.digest);

  // Blobs are found by digest and verified.
  EXPECT_EQ(layout->BlobPath(l1.digest), t.dir() + "/blobs/sha256/" + l1.digest.substr(7));
  auto data = layout->ReadBlob(r->layers[0], 1 << 20);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  EXPECT_EQ(*data, "layer one");
}

TEST(OciLayoutTest, MissingTagIsNotFound) {
  TempLayout t;
  Blob img = t.AddImage({t.AddBlob("x")});
  t.SetIndex({TempLayout::Desc(kManifestType, img, TempLayout::Tagged("latest"))});
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok());
  auto r = layout->Resolve("nope", P("linux", "amd64"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("nope"), std::string::npos) << r.status().message();
  // Tags match exactly.
  EXPECT_EQ(layout->Resolve("lates", P("linux", "amd64")).status().code(), Code::kNotFound);
  EXPECT_EQ(layout->Resolve("latest2", P("linux", "amd64")).status().code(), Code::kNotFound);
}

TEST(OciLayoutTest, EmptyTagSelectsTheOnlyImage) {
  TempLayout t;
  Blob img = t.AddImage({t.AddBlob("x")});
  t.SetIndex({TempLayout::Desc(kManifestType, img)});  // no ref name at all
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok());
  auto r = layout->Resolve("", P("linux", "amd64"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->digest, img.digest);
  // A tag still has to match an annotation.
  EXPECT_EQ(layout->Resolve("latest", P("linux", "amd64")).status().code(), Code::kNotFound);

  Blob img2 = t.AddImage({t.AddBlob("y")});
  t.SetIndex({TempLayout::Desc(kManifestType, img, TempLayout::Tagged("a")),
              TempLayout::Desc(kManifestType, img2, TempLayout::Tagged("b"))});
  auto several = layout->Resolve("", P("linux", "amd64"));
  ASSERT_FALSE(several.ok());
  EXPECT_EQ(several.status().code(), Code::kInvalidArgument);

  t.SetIndex({});
  EXPECT_EQ(layout->Resolve("", P("linux", "amd64")).status().code(), Code::kNotFound);
}

TEST(OciLayoutTest, NestedIndexPicksThePlatform) {
  TempLayout t;
  Blob amd64 = t.AddImage({t.AddBlob("amd64 layer")});
  Blob arm64 = t.AddImage({t.AddBlob("arm64 layer")});
  Blob win = t.AddImage({t.AddBlob("windows layer")});
  Blob armv7 = t.AddImage({t.AddBlob("armv7 layer")});
  std::string index = R"({"schemaVersion":2,"mediaType":")" + std::string(kIndexType) + R"(","manifests":[)" +
                      TempLayout::Desc(kManifestType, win, TempLayout::OnPlatform("windows", "amd64")) + "," +
                      TempLayout::Desc(kManifestType, amd64, TempLayout::OnPlatform("linux", "amd64")) + "," +
                      TempLayout::Desc(kManifestType, armv7, TempLayout::OnPlatform("linux", "arm", "v7")) + "," +
                      TempLayout::Desc(kManifestType, arm64, TempLayout::OnPlatform("linux", "arm64", "v8")) + "]}";
  Blob idx = t.AddBlob(index);
  t.SetIndex({TempLayout::Desc(kIndexType, idx, TempLayout::Tagged("multi"))});
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok());

  auto r = layout->Resolve("multi", P("linux", "amd64"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->digest, amd64.digest) << "windows/amd64 comes first but is another OS";
  r = layout->Resolve("multi", P("linux", "arm64"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->digest, arm64.digest) << "no variant wanted: any variant fits";
  r = layout->Resolve("multi", P("linux", "arm64", "v8"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->digest, arm64.digest);
  r = layout->Resolve("multi", P("linux", "arm", "v7"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->digest, armv7.digest);
  r = layout->Resolve("multi", P("windows", "amd64"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->digest, win.digest);
  EXPECT_EQ(layout->Resolve("multi", P("linux", "arm", "v6")).status().code(), Code::kNotFound);
  EXPECT_EQ(layout->Resolve("multi", P("linux", "s390x")).status().code(), Code::kNotFound);
  // Without its media type in the descriptor, the index is recognized by its content.
  t.SetIndex(
      {R"({"digest":")" + idx.digest + R"(","size":)" + std::to_string(idx.size) + TempLayout::Tagged("multi") + "}"});
  r = layout->Resolve("multi", P("linux", "amd64"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->digest, amd64.digest);
}

// Regression test for a fixed bug (ocixcore/src/oci_layout.cc, OciLayout::Resolve, the matches.size() > 1
// branch): when index.json lists one manifest per platform under the same tag
// (each descriptor with a "platform"), Resolve means to "pick ours", but it
// calls ResolveDescriptor on each match in turn and ResolveDescriptor never
// looks at the descriptor's platform for an image manifest, so the first
// match is always returned whatever the platform.
TEST(OciLayoutTest, RegressionSameTagSeveralPlatformsInIndexJson) {
  TempLayout t;
  Blob amd64 = t.AddImage({t.AddBlob("amd64 layer")});
  Blob arm64 = t.AddImage({t.AddBlob("arm64 layer")});
  t.SetIndex(
      {TempLayout::Desc(kManifestType, amd64, TempLayout::Tagged("t") + TempLayout::OnPlatform("linux", "amd64")),
       TempLayout::Desc(kManifestType, arm64, TempLayout::Tagged("t") + TempLayout::OnPlatform("linux", "arm64"))});
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok());
  auto a = layout->Resolve("t", P("linux", "amd64"));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EXPECT_EQ(a->digest, amd64.digest);
  auto b = layout->Resolve("t", P("linux", "arm64"));
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_EQ(b->digest, arm64.digest) << "got the amd64 image for linux/arm64";
  EXPECT_FALSE(layout->Resolve("t", P("linux", "s390x")).ok());
}

TEST(OciLayoutTest, DigestMismatchIsCorruption) {
  TempLayout t;
  Blob img = t.AddImage({t.AddBlob("x")});
  t.SetIndex({TempLayout::Desc(kManifestType, img, TempLayout::Tagged("v"))});
  // Same size, different bytes under the manifest's name.
  std::string path = "blobs/sha256/" + img.digest.substr(7);
  std::string tampered(static_cast<size_t>(img.size), ' ');
  t.Write(path, tampered);
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok());
  auto r = layout->Resolve("v", P("linux", "amd64"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().ToString();
  EXPECT_NE(r.status().message().find(img.digest), std::string::npos) << r.status().message();

  // ReadBlob checks the same for any descriptor.
  Descriptor d;
  d.digest = Sha256::OciDigest("expected");
  d.size = 8;
  t.Write("blobs/sha256/" + d.digest.substr(7), "tampered");
  auto b = layout->ReadBlob(d, 1024);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), Code::kCorruption);
}

TEST(OciLayoutTest, SizeMismatchIsCorruption) {
  TempLayout t;
  Blob img = t.AddImage({t.AddBlob("x")});
  Blob wrong = img;
  wrong.size += 1;
  t.SetIndex({TempLayout::Desc(kManifestType, wrong, TempLayout::Tagged("v"))});
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok());
  auto r = layout->Resolve("v", P("linux", "amd64"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().ToString();

  wrong.size = img.size - 1;
  t.SetIndex({TempLayout::Desc(kManifestType, wrong, TempLayout::Tagged("v"))});
  r = layout->Resolve("v", P("linux", "amd64"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kCorruption) << r.status().ToString();

  Descriptor big;
  big.digest = img.digest;
  big.size = img.size;
  auto capped = layout->ReadBlob(big, static_cast<size_t>(img.size - 1));
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.status().code(), Code::kCorruption);
}

TEST(OciLayoutTest, MissingBlobFails) {
  TempLayout t;
  Blob img = t.AddImage({t.AddBlob("x")});
  fs::remove(fs::path(t.dir()) / "blobs" / "sha256" / img.digest.substr(7));
  t.SetIndex({TempLayout::Desc(kManifestType, img, TempLayout::Tagged("v"))});
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok());
  EXPECT_FALSE(layout->Resolve("v", P("linux", "amd64")).ok());
}

TEST(OciLayoutTest, BadDescriptorsAndJson) {
  TempLayout t;
  Blob img = t.AddImage({t.AddBlob("x")});
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok());
  const std::vector<std::string> bad_indexes = {
      "not json",
      "[]",
      R"({"manifests":{}})",
      R"({"schemaVersion":2})",
      R"({"manifests":[{"digest":"sha256:xyz","size":1}]})",
      R"({"manifests":[{"digest":"md5:d41d8cd98f00b204e9800998ecf8427e","size":1}]})",
      R"({"manifests":[{"digest":")" + img.digest + R"(","size":-1}]})",
      R"({"manifests":[{"digest":")" + img.digest + R"(","size":"12"}]})",
      R"({"manifests":[{"digest":")" + img.digest + R"("}]})",
      // Upper-case hex is not a valid OCI sha256 digest.
      R"({"manifests":[{"digest":"sha256:)" +
          [&] {
            std::string h = img.digest.substr(7);
            for (char& ch : h) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            return h;
          }() +
          R"(","size":)" + std::to_string(img.size) + "}]}",
      // Path traversal through the digest.
      R"({"manifests":[{"digest":"sha256:../../../../../../../../../../../../../../../etc/passwd","size":1}]})",
  };
  for (const std::string& idx : bad_indexes) {
    t.Write("index.json", idx);
    auto r = layout->Resolve("", P("linux", "amd64"));
    ASSERT_FALSE(r.ok()) << idx;
    EXPECT_EQ(r.status().code(), Code::kCorruption) << idx << ": " << r.status().ToString();
  }
  // A manifest blob of an unsupported media type.
  Blob odd = t.AddBlob(R"({"schemaVersion":2})");
  t.SetIndex({TempLayout::Desc("application/x-unknown", odd)});
  EXPECT_FALSE(layout->Resolve("", P("linux", "amd64")).ok());
}

TEST(OciLayoutTest, OpenChecksTheLayoutFile) {
  auto missing = OciLayout::Open("/nonexistent/ocix-test-layout");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  TempLayout t;
  t.Write("oci-layout", R"({"other":"1.0.0"})");
  auto no_version = OciLayout::Open(t.dir());
  ASSERT_FALSE(no_version.ok());
  EXPECT_EQ(no_version.status().code(), Code::kCorruption);
  t.Write("oci-layout", "{");
  EXPECT_EQ(OciLayout::Open(t.dir()).status().code(), Code::kCorruption);
  t.Write("oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  EXPECT_TRUE(OciLayout::Open(t.dir()).ok());
  // index.json is read by Resolve.
  auto layout = OciLayout::Open(t.dir());
  ASSERT_TRUE(layout.ok());
  EXPECT_EQ(layout->Resolve("x", P("linux", "amd64")).status().code(), Code::kNotFound);
}

TEST(LayoutRefTest, Parse) {
  struct Case {
    const char* in;
    const char* dir;
    const char* tag;
  };
  const Case cases[] = {
      {"dir:tag", "dir", "tag"}, {"dir", "dir", ""},
      {"/a:b/c", "/a:b/c", ""},  // the ':' is before the last '/': part of the path
      {"./x:y", "./x", "y"},     {"/srv/images/alpine:3.19", "/srv/images/alpine", "3.19"},
      {"a:b:c", "a:b", "c"},     {"dir:", "dir", ""},
      {"/a/b/", "/a/b/", ""},    {"", "", ""},
  };
  for (const Case& c : cases) {
    LayoutRef r = LayoutRef::Parse(c.in);
    EXPECT_EQ(r.dir, c.dir) << c.in;
    EXPECT_EQ(r.tag, c.tag) << c.in;
  }
}

TEST(PlatformTest, ParseAndToString) {
  auto p = Platform::Parse("linux/arm64/v8");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->os, "linux");
  EXPECT_EQ(p->architecture, "arm64");
  EXPECT_EQ(p->variant, "v8");
  EXPECT_EQ(p->ToString(), "linux/arm64/v8");
  p = Platform::Parse("linux/amd64");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->variant, "");
  EXPECT_EQ(p->ToString(), "linux/amd64");
  for (const char* bad : {"", "linux", "linux/", "/amd64", "a/b/c/d"}) {
    auto r = Platform::Parse(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    }
  }
  Platform host = Platform::Host();
  EXPECT_EQ(host.os, "linux");
  EXPECT_FALSE(host.architecture.empty());
}

TEST(OciLayoutTest, TarLayerMediaTypes) {
  for (const char* mt :
       {"application/vnd.oci.image.layer.v1.tar", "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd", "application/vnd.docker.image.rootfs.diff.tar.gzip"}) {
    EXPECT_TRUE(IsTarLayerMediaType(mt)) << mt;
  }
  for (const char* mt : {"", "application/vnd.oci.image.config.v1+json", "application/vnd.oci.image.layer.v1.tar+bz2",
                         "application/octet-stream"}) {
    EXPECT_FALSE(IsTarLayerMediaType(mt)) << mt;
  }
}

}  // namespace
}  // namespace ocix::core

// Reading images from an OCI image layout directory (index.json + blobs/).
//
// Every JSON blob read here is checked against its descriptor's digest and
// size first; layer blobs are verified while they stream (LayerBuilder).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocix/core/status.h"

namespace ocix::core {

struct Platform {
  std::string os = "linux";
  std::string architecture;  // GOARCH names: amd64, arm64, ...
  std::string variant;
  // The platform this process runs on.
  static Platform Host();
  // "linux/amd64", "linux/arm64/v8".
  static Result<Platform> Parse(std::string_view s);
  std::string ToString() const;
  // Does an image for `this` platform run on `want`? An empty variant on
  // either side matches any variant.
  bool Satisfies(const Platform& want) const;
};

struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<hex>", validated
  int64_t size = 0;
  std::map<std::string, std::string> annotations;
  std::optional<Platform> platform;  // set on index entries that name one
};

struct ImageManifest {
  std::string digest;  // of the manifest blob
  Descriptor config;
  std::vector<Descriptor> layers;
};

// "DIR:TAG" -> {DIR, TAG}; "DIR" alone -> tag empty (the layout's only image).
struct LayoutRef {
  std::string dir;
  std::string tag;
  static LayoutRef Parse(std::string_view s);
};

class OciLayout {
 public:
  static Result<OciLayout> Open(std::string dir);

  // Resolves the tag (org.opencontainers.image.ref.name) to an image
  // manifest, descending through image indexes to the platform's entry.
  // An empty tag selects the layout's only manifest.
  Result<ImageManifest> Resolve(std::string_view tag, const Platform& platform) const;

  // Path of a blob by digest. REQUIRES: digest validated (Descriptor does).
  std::string BlobPath(std::string_view digest) const;
  // Reads a blob of at most max_size bytes and checks its digest and size.
  Result<std::string> ReadBlob(const Descriptor& d, size_t max_size) const;

  const std::string& dir() const { return dir_; }

 private:
  explicit OciLayout(std::string dir) : dir_(std::move(dir)) {}
  Result<ImageManifest> ResolveDescriptor(const Descriptor& d, const Platform& platform, int depth) const;
  std::string dir_;
};

// "sha256:" and 64 lowercase hex digits: the only digests we accept.
bool IsSha256Digest(std::string_view digest);

// Is this a layer media type we can read as a tar stream?
bool IsTarLayerMediaType(std::string_view media_type);

}  // namespace ocix::core

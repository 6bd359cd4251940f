#include "ocix/core/oci_layout.h"

#include <sys/utsname.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "ocix/core/oci_json.h"
#include "ocix/core/sha256.h"

namespace ocix::core {

namespace {

using nlohmann::json;

constexpr std::string_view kMediaIndex = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kMediaManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kMediaDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view kMediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr std::string_view kRefName = "org.opencontainers.image.ref.name";
// Index and manifest JSON are small; bound what we read of them.
constexpr size_t kMaxJsonBlob = 4u << 20;

Result<std::string> ReadFile(const std::string& path, size_t max_size) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFound("cannot open " + path);
  std::string data;
  char buf[65536];
  while (in) {
    in.read(buf, sizeof buf);
    data.append(buf, static_cast<size_t>(in.gcount()));
    if (data.size() > max_size) return Corruption(path + ": larger than " + std::to_string(max_size) + " bytes");
  }
  if (in.bad()) return IoError("read " + path);
  return data;
}

}  // namespace

bool IsSha256Digest(std::string_view d) {
  if (d.size() != 7 + 64 || d.substr(0, 7) != "sha256:") return false;
  for (char c : d.substr(7))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

Result<json> ParseJsonObject(std::string_view text, std::string_view what) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Corruption(std::string(what) + ": not valid JSON");
  if (!j.is_object()) return Corruption(std::string(what) + ": not a JSON object");
  return j;
}

std::string JsonString(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
}

Result<Descriptor> DescriptorFromJson(const json& j, std::string_view what) {
  if (!j.is_object()) return Corruption(std::string(what) + ": descriptor is not an object");
  Descriptor d;
  d.media_type = JsonString(j, "mediaType");
  d.digest = JsonString(j, "digest");
  if (!IsSha256Digest(d.digest))
    return Corruption(std::string(what) + ": bad or unsupported digest \"" + d.digest.substr(0, 80) + "\"");
  auto size = j.find("size");
  if (size == j.end() || !size->is_number_integer() || size->get<int64_t>() < 0)
    return Corruption(std::string(what) + ": descriptor without a valid size");
  d.size = size->get<int64_t>();
  if (auto p = j.find("platform"); p != j.end()) {
    if (!p->is_object()) return Corruption(std::string(what) + ": platform is not an object");
    Platform pl;
    pl.os = JsonString(*p, "os");
    pl.architecture = JsonString(*p, "architecture");
    pl.variant = JsonString(*p, "variant");
    d.platform = std::move(pl);
  }
  if (auto a = j.find("annotations"); a != j.end() && a->is_object()) {
    for (const auto& [k, v] : a->items())
      if (v.is_string()) d.annotations[k] = v.get<std::string>();
  }
  return d;
}

json DescriptorToJson(const Descriptor& d) {
  json j = {{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}};
  if (!d.annotations.empty()) j["annotations"] = d.annotations;
  if (d.platform) {
    json p = {{"os", d.platform->os}, {"architecture", d.platform->architecture}};
    if (!d.platform->variant.empty()) p["variant"] = d.platform->variant;
    j["platform"] = p;
  }
  return j;
}

Platform Platform::Host() {
  Platform p;
  utsname u{};
  uname(&u);
  std::string m = u.machine;
  if (m == "x86_64")
    p.architecture = "amd64";
  else if (m == "aarch64")
    p.architecture = "arm64";
  else if (m.rfind("arm", 0) == 0)
    p.architecture = "arm";
  else if (m == "i686" || m == "i386")
    p.architecture = "386";
  else
    p.architecture = m;
  return p;
}

Result<Platform> Platform::Parse(std::string_view s) {
  Platform p;
  std::vector<std::string> parts;
  std::string cur;
  for (char c : s) {
    if (c == '/') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() || parts[1].empty())
    return InvalidArgument("platform \"" + std::string(s) + "\" is not OS/ARCH[/VARIANT]");
  p.os = parts[0];
  p.architecture = parts[1];
  if (parts.size() == 3) p.variant = parts[2];
  return p;
}

bool Platform::Satisfies(const Platform& want) const {
  return os == want.os && architecture == want.architecture &&
         (variant.empty() || want.variant.empty() || variant == want.variant);
}

std::string Platform::ToString() const { return os + "/" + architecture + (variant.empty() ? "" : "/" + variant); }

LayoutRef LayoutRef::Parse(std::string_view s) {
  // A tag never contains '/', so a ':' after the last '/' separates it.
  size_t colon = s.rfind(':');
  size_t slash = s.rfind('/');
  if (colon == std::string_view::npos || (slash != std::string_view::npos && colon < slash))
    return {std::string(s), ""};
  return {std::string(s.substr(0, colon)), std::string(s.substr(colon + 1))};
}

bool IsTarLayerMediaType(std::string_view mt) {
  return mt == "application/vnd.oci.image.layer.v1.tar" || mt == "application/vnd.oci.image.layer.v1.tar+gzip" ||
         mt == "application/vnd.oci.image.layer.v1.tar+zstd" ||
         mt == "application/vnd.oci.image.layer.nondistributable.v1.tar" ||
         mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" ||
         mt == "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" ||
         mt == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
         mt == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}

Result<OciLayout> OciLayout::Open(std::string dir) {
  OCIX_ASSIGN_OR_RETURN(std::string layout, ReadFile(dir + "/oci-layout", 4096));
  OCIX_ASSIGN_OR_RETURN(json j, ParseJsonObject(layout, dir + "/oci-layout"));
  if (JsonString(j, "imageLayoutVersion").empty()) return Corruption(dir + "/oci-layout: no imageLayoutVersion");
  return OciLayout(std::move(dir));
}

std::string OciLayout::BlobPath(std::string_view digest) const {
  return dir_ + "/blobs/sha256/" + std::string(digest.substr(7));
}

Result<std::string> OciLayout::ReadBlob(const Descriptor& d, size_t max_size) const {
  if (static_cast<uint64_t>(d.size) > max_size)
    return Corruption("blob " + d.digest + " larger than " + std::to_string(max_size) + " bytes");
  OCIX_ASSIGN_OR_RETURN(std::string data, ReadFile(BlobPath(d.digest), max_size));
  if (static_cast<int64_t>(data.size()) != d.size)
    return Corruption("blob " + d.digest + ": size " + std::to_string(data.size()) + ", descriptor says " +
                      std::to_string(d.size));
  if (Sha256::OciDigest(data) != d.digest) return Corruption("blob " + d.digest + ": digest mismatch");
  return data;
}

Result<ImageManifest> OciLayout::ResolveDescriptor(const Descriptor& d, const Platform& platform, int depth) const {
  if (depth > 4) return Corruption("image indexes nested too deeply");
  OCIX_ASSIGN_OR_RETURN(std::string text, ReadBlob(d, kMaxJsonBlob));
  OCIX_ASSIGN_OR_RETURN(json j, ParseJsonObject(text, "blob " + d.digest));
  std::string mt = d.media_type.empty() ? JsonString(j, "mediaType") : d.media_type;
  if (mt.empty()) mt = j.contains("manifests") ? kMediaIndex : kMediaManifest;
  if (mt == kMediaIndex || mt == kMediaDockerList) {
    auto ms = j.find("manifests");
    if (ms == j.end() || !ms->is_array()) return Corruption("index " + d.digest + " has no manifests");
    for (const json& m : *ms) {
      OCIX_ASSIGN_OR_RETURN(Descriptor child, DescriptorFromJson(m, "index " + d.digest));
      // An entry without a platform is taken to fit any.
      if (child.platform && !child.platform->Satisfies(platform)) continue;
      return ResolveDescriptor(child, platform, depth + 1);
    }
    return NotFound("index " + d.digest + " has no manifest for " + platform.ToString());
  }
  if (mt != kMediaManifest && mt != kMediaDockerManifest)
    return InvalidArgument("unsupported manifest media type \"" + mt + "\"");
  ImageManifest im;
  im.digest = d.digest;
  auto config = j.find("config");
  if (config == j.end()) return Corruption("manifest " + d.digest + " has no config");
  OCIX_ASSIGN_OR_RETURN(im.config, DescriptorFromJson(*config, "manifest " + d.digest + " config"));
  auto layers = j.find("layers");
  if (layers == j.end() || !layers->is_array()) return Corruption("manifest " + d.digest + " has no layers");
  for (const json& l : *layers) {
    OCIX_ASSIGN_OR_RETURN(Descriptor ld, DescriptorFromJson(l, "manifest " + d.digest + " layer"));
    im.layers.push_back(std::move(ld));
  }
  return im;
}

Result<ImageManifest> OciLayout::Resolve(std::string_view tag, const Platform& platform) const {
  OCIX_ASSIGN_OR_RETURN(std::string text, ReadFile(dir_ + "/index.json", kMaxJsonBlob));
  OCIX_ASSIGN_OR_RETURN(json j, ParseJsonObject(text, dir_ + "/index.json"));
  auto ms = j.find("manifests");
  if (ms == j.end() || !ms->is_array()) return Corruption(dir_ + "/index.json has no manifests");
  std::vector<Descriptor> matches;
  for (const json& m : *ms) {
    OCIX_ASSIGN_OR_RETURN(Descriptor d, DescriptorFromJson(m, dir_ + "/index.json"));
    auto name = d.annotations.find(std::string(kRefName));
    if (tag.empty() || (name != d.annotations.end() && name->second == tag)) matches.push_back(std::move(d));
  }
  if (matches.empty()) return NotFound("tag \"" + std::string(tag) + "\" not in " + dir_);
  if (matches.size() > 1) {
    if (tag.empty()) return InvalidArgument(dir_ + " holds several images: name one as DIR:TAG");
    // Several platforms under one tag: pick ours.
    for (const Descriptor& d : matches) {
      if (d.platform && !d.platform->Satisfies(platform)) continue;
      return ResolveDescriptor(d, platform, 0);
    }
    return NotFound("tag \"" + std::string(tag) + "\" has no image for " + platform.ToString());
  }
  return ResolveDescriptor(matches[0], platform, 0);
}

}  // namespace ocix::core

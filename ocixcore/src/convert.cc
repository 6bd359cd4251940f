#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "ocix/core/convert.h"

#include "ocix/core/atomic_file.h"
#include "ocix/core/oci_json.h"
#include "ocix/core/sha256.h"

namespace ocix::core {

namespace {

using nlohmann::json;
namespace fs = std::filesystem;

constexpr std::string_view kMediaIndex = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kMediaManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kMediaConfig = "application/vnd.oci.image.config.v1+json";
constexpr std::string_view kMediaDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view kMediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr std::string_view kRefName = "org.opencontainers.image.ref.name";
constexpr size_t kMaxJson = 4u << 20;

Descriptor DescribeJson(std::string_view media_type, const std::string& body) {
  Descriptor d;
  d.media_type = media_type;
  d.digest = Sha256::OciDigest(body);
  d.size = static_cast<int64_t>(body.size());
  return d;
}

class LayoutSource final : public ImageSource {
 public:
  LayoutSource(OciLayout layout, std::string tag) : layout_(std::move(layout)), tag_(std::move(tag)) {}

  Result<std::pair<Descriptor, std::string>> Root() override {
    std::ifstream in(layout_.dir() + "/index.json", std::ios::binary);
    if (!in) return NotFound("no index.json in " + layout_.dir());
    std::string text((std::istreambuf_iterator<char>(in)), {});
    OCIX_ASSIGN_OR_RETURN(json index, ParseJsonObject(text, layout_.dir() + "/index.json"));
    auto ms = index.find("manifests");
    if (ms == index.end() || !ms->is_array()) return Corruption(layout_.dir() + "/index.json has no manifests");
    std::vector<Descriptor> matches;
    for (const json& m : *ms) {
      OCIX_ASSIGN_OR_RETURN(Descriptor d, DescriptorFromJson(m, "index.json"));
      auto name = d.annotations.find(std::string(kRefName));
      if (tag_.empty() || (name != d.annotations.end() && name->second == tag_)) matches.push_back(std::move(d));
    }
    if (matches.empty()) return NotFound("tag \"" + tag_ + "\" not in " + layout_.dir());
    if (matches.size() > 1) return InvalidArgument(layout_.dir() + ": several images match \"" + tag_ + "\"");
    Descriptor d = matches[0];
    d.annotations.erase(std::string(kRefName));
    OCIX_ASSIGN_OR_RETURN(std::string body, layout_.ReadBlob(d, kMaxJson));
    return std::make_pair(std::move(d), std::move(body));
  }

  Result<std::string> ReadBlob(const Descriptor& d, size_t max_size) override { return layout_.ReadBlob(d, max_size); }

  Result<LocalBlob> BlobFile(const Descriptor& d, const std::string&, const ProgressFn&) override {
    std::string path = layout_.BlobPath(d.digest);
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return ErrnoError("blob " + d.digest, errno);
    if (st.st_size != d.size) return Corruption("blob " + d.digest + ": size differs from its descriptor");
    return LocalBlob{path, false};
  }

 private:
  OciLayout layout_;
  std::string tag_;
};

class LayoutSink final : public ImageSink {
 public:
  explicit LayoutSink(LayoutRef ref) : ref_(std::move(ref)) {}

  Status Init() {
    std::error_code ec;
    fs::create_directories(ref_.dir + "/blobs/sha256", ec);
    if (ec) return IoError("create " + ref_.dir + ": " + ec.message());
    if (!fs::exists(ref_.dir + "/oci-layout"))
      OCIX_RETURN_IF_ERROR(WriteFileAtomic(ref_.dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})"));
    if (!fs::exists(ref_.dir + "/index.json"))
      OCIX_RETURN_IF_ERROR(WriteFileAtomic(ref_.dir + "/index.json", R"({"schemaVersion":2,"manifests":[]})"));
    return Status::Ok();
  }

  Status PutBlobFile(const Descriptor& d, const std::string& path, const ProgressFn&) override {
    const std::string dst = BlobPath(d);
    if (fs::exists(dst)) {
      std::remove(path.c_str());
      return Status::Ok();
    }
    std::error_code ec;
    fs::rename(path, dst, ec);
    if (ec) {  // another filesystem: copy
      fs::copy_file(path, dst, fs::copy_options::overwrite_existing, ec);
      if (ec) return IoError("store blob " + d.digest + ": " + ec.message());
      std::remove(path.c_str());
    }
    return Status::Ok();
  }

  Status PutBlob(const Descriptor& d, std::string_view data) override {
    if (fs::exists(BlobPath(d))) return Status::Ok();
    return WriteFileAtomic(BlobPath(d), data);
  }

  Status PutRoot(const Descriptor& d, std::string_view data) override {
    OCIX_RETURN_IF_ERROR(PutBlob(d, data));
    std::ifstream in(ref_.dir + "/index.json", std::ios::binary);
    std::string text((std::istreambuf_iterator<char>(in)), {});
    OCIX_ASSIGN_OR_RETURN(json index, ParseJsonObject(text, ref_.dir + "/index.json"));
    json kept = json::array();
    if (auto ms = index.find("manifests"); ms != index.end() && ms->is_array()) {
      for (const json& m : *ms) {
        bool same_tag = m.is_object() && m.contains("annotations") && m["annotations"].is_object() &&
                        m["annotations"].value(std::string(kRefName), "") == ref_.tag;
        if (!same_tag) kept.push_back(m);
      }
    }
    Descriptor named = d;
    if (!ref_.tag.empty()) named.annotations[std::string(kRefName)] = ref_.tag;
    kept.push_back(DescriptorToJson(named));
    index["schemaVersion"] = 2;
    index["manifests"] = kept;
    return WriteFileAtomic(ref_.dir + "/index.json", index.dump());
  }

 private:
  std::string BlobPath(const Descriptor& d) const { return ref_.dir + "/blobs/sha256/" + d.digest.substr(7); }
  LayoutRef ref_;
};

bool IsIndex(std::string_view mt) { return mt == kMediaIndex || mt == kMediaDockerList; }

class Converter {
 public:
  Converter(ImageSource& src, ImageSink& dst, const ConvertImageOptions& o, const ConvertEvents& ev)
      : src_(src), dst_(dst), opts_(o), ev_(ev) {}

  Result<ConvertImageResult> Run() {
    OCIX_ASSIGN_OR_RETURN(auto root, src_.Root());
    auto& [desc, body] = root;
    OCIX_ASSIGN_OR_RETURN(json j, ParseJsonObject(body, "root " + desc.digest));
    std::string mt = desc.media_type.empty() ? j.value("mediaType", "") : desc.media_type;
    if (mt.empty()) mt = j.contains("manifests") ? kMediaIndex : kMediaManifest;
    ConvertImageResult result;
    if (IsIndex(mt)) {
      OCIX_ASSIGN_OR_RETURN(result.root, ConvertIndex(j, desc));
    } else {
      OCIX_ASSIGN_OR_RETURN(Descriptor m, ConvertManifest(desc, body));
      result.root = m;
    }
    std::string root_body;
    if (IsIndex(result.root.media_type)) {
      root_body = root_index_;
    } else {
      root_body = last_manifest_;
    }
    OCIX_RETURN_IF_ERROR(dst_.PutRoot(result.root, root_body));
    result.layers = std::move(layers_);
    return result;
  }

 private:
  Result<Descriptor> ConvertIndex(const json& index, const Descriptor& desc) {
    auto ms = index.find("manifests");
    if (ms == index.end() || !ms->is_array()) return Corruption("index " + desc.digest + " has no manifests");
    json out_manifests = json::array();
    for (const json& m : *ms) {
      OCIX_ASSIGN_OR_RETURN(Descriptor child, DescriptorFromJson(m, "index " + desc.digest));
      if (opts_.platform && child.platform && !child.platform->Satisfies(*opts_.platform)) continue;
      if (IsIndex(child.media_type)) return Unimplemented("nested image indexes");
      OCIX_ASSIGN_OR_RETURN(std::string body, src_.ReadBlob(child, kMaxJson));
      OCIX_ASSIGN_OR_RETURN(Descriptor converted, ConvertManifest(child, body));
      converted.platform = child.platform;
      converted.annotations = child.annotations;
      out_manifests.push_back(DescriptorToJson(converted));
    }
    if (out_manifests.empty()) return NotFound("no manifest in the index matches the platform");
    json out = {{"schemaVersion", 2}, {"mediaType", kMediaIndex}, {"manifests", out_manifests}};
    if (auto a = index.find("annotations"); a != index.end() && a->is_object()) out["annotations"] = *a;
    root_index_ = out.dump();
    Descriptor d = DescribeJson(kMediaIndex, root_index_);
    OCIX_RETURN_IF_ERROR(dst_.PutBlob(d, root_index_));
    return d;
  }

  Result<Descriptor> ConvertManifest(const Descriptor& desc, const std::string& body) {
    OCIX_ASSIGN_OR_RETURN(json m, ParseJsonObject(body, "manifest " + desc.digest));
    const std::string mt =
        desc.media_type.empty() ? m.value("mediaType", std::string(kMediaManifest)) : desc.media_type;
    if (mt != kMediaManifest && mt != kMediaDockerManifest)
      return InvalidArgument("manifest " + desc.digest + ": unsupported media type \"" + mt + "\"");
    auto cfg_it = m.find("config");
    if (cfg_it == m.end()) return Corruption("manifest " + desc.digest + " has no config");
    OCIX_ASSIGN_OR_RETURN(Descriptor cfg_desc, DescriptorFromJson(*cfg_it, "config"));
    OCIX_ASSIGN_OR_RETURN(std::string cfg_body, src_.ReadBlob(cfg_desc, kMaxJson));
    OCIX_ASSIGN_OR_RETURN(json cfg, ParseJsonObject(cfg_body, "config " + cfg_desc.digest));
    auto layers_it = m.find("layers");
    if (layers_it == m.end() || !layers_it->is_array()) return Corruption("manifest " + desc.digest + " has no layers");

    json new_layers = json::array();
    json diff_ids = json::array();
    auto old_diff_ids = cfg.contains("rootfs") && cfg["rootfs"].is_object()
                            ? cfg["rootfs"].value("diff_ids", json::array())
                            : json::array();
    if (opts_.flatten) {
      OCIX_ASSIGN_OR_RETURN(auto converted, Flatten(*layers_it));
      new_layers.push_back(DescriptorToJson(converted.first));
      diff_ids.push_back(converted.second);
      // History must list one non-empty layer per layer; there is one now.
      json created = cfg.value("created", json());
      cfg["history"] = json::array({json{{"created_by", "ocix convert --flatten"}}});
      if (!created.is_null()) cfg["history"][0]["created"] = created;
    } else {
      size_t i = 0;
      for (const json& l : *layers_it) {
        OCIX_ASSIGN_OR_RETURN(Descriptor ld, DescriptorFromJson(l, "layer"));
        OCIX_ASSIGN_OR_RETURN(auto converted, ConvertOneLayer(ld, i, layers_it->size(), old_diff_ids));
        new_layers.push_back(DescriptorToJson(converted.first));
        diff_ids.push_back(converted.second);
        ++i;
      }
    }
    if (!cfg.contains("rootfs") || !cfg["rootfs"].is_object()) cfg["rootfs"] = json::object();
    cfg["rootfs"]["type"] = "layers";
    cfg["rootfs"]["diff_ids"] = diff_ids;
    const std::string new_cfg = cfg.dump();
    Descriptor new_cfg_desc = DescribeJson(kMediaConfig, new_cfg);
    OCIX_RETURN_IF_ERROR(dst_.PutBlob(new_cfg_desc, new_cfg));

    json out = {{"schemaVersion", 2},
                {"mediaType", kMediaManifest},
                {"config", DescriptorToJson(new_cfg_desc)},
                {"layers", new_layers}};
    if (auto a = m.find("annotations"); a != m.end() && a->is_object()) out["annotations"] = *a;
    last_manifest_ = out.dump();
    Descriptor d = DescribeJson(kMediaManifest, last_manifest_);
    OCIX_RETURN_IF_ERROR(dst_.PutBlob(d, last_manifest_));
    return d;
  }

  Result<std::pair<Descriptor, std::string>> Flatten(const json& layers) {
    std::vector<LocalLayer> locals;
    std::vector<LocalBlob> fetched;
    auto cleanup = [&] {
      for (const LocalBlob& b : fetched)
        if (b.temporary) std::remove(b.path.c_str());
    };
    for (const json& l : layers) {
      auto ld = DescriptorFromJson(l, "layer");
      if (!ld.ok()) {
        cleanup();
        return ld.status();
      }
      if (!IsTarLayerMediaType(ld->media_type)) {
        cleanup();
        return InvalidArgument("layer " + ld->digest + ": unsupported media type \"" + ld->media_type + "\"");
      }
      auto blob = src_.BlobFile(*ld, opts_.tmp_dir, ev_.progress);
      if (!blob.ok()) {
        cleanup();
        return blob.status();
      }
      fetched.push_back(*blob);
      locals.push_back({blob->path, ld->digest});
    }
    const std::string tag = std::to_string(getpid()) + "." + std::to_string(flattened_++);
    const std::string out_path = opts_.tmp_dir + "/ocix-flat." + tag;
    if (ev_.begin_step) ev_.begin_step("flatten " + std::to_string(locals.size()) + " layers", 0);
    auto layer = ConvertFlattened(locals, out_path, opts_.tmp_dir + "/ocix-spool." + tag, opts_.layer, ev_.progress);
    cleanup();
    if (!layer.ok()) {
      std::remove(out_path.c_str());
      return layer.status().WithContext("flatten");
    }
    Status s = dst_.PutBlobFile(layer->descriptor, out_path, ev_.progress);
    std::remove(out_path.c_str());
    OCIX_RETURN_IF_ERROR(s);
    if (ev_.layer_done) ev_.layer_done(*layer);
    layers_.push_back(*layer);
    return std::make_pair(layer->descriptor, layer->diff_id);
  }

  // Returns the new layer descriptor and its diff_id.
  Result<std::pair<Descriptor, std::string>> ConvertOneLayer(const Descriptor& ld, size_t index, size_t count,
                                                             const json& old_diff_ids) {
    if (auto done = converted_.find(ld.digest); done != converted_.end()) return done->second;
    if (ld.annotations.count(std::string(kAnnotationTocDigest))) {
      // Already OCIX: keep it, and its diff_id from the source config.
      if (index >= old_diff_ids.size() || !old_diff_ids[index].is_string())
        return Corruption("config has no diff_id for layer " + ld.digest);
      OCIX_ASSIGN_OR_RETURN(LocalBlob blob, src_.BlobFile(ld, opts_.tmp_dir, ev_.progress));
      if (!blob.temporary) {
        // The sink may move what it is given: give it a copy.
        const std::string copy =
            opts_.tmp_dir + "/ocix-copy." + std::to_string(getpid()) + "." + ld.digest.substr(7, 16);
        std::error_code ec;
        fs::copy_file(blob.path, copy, fs::copy_options::overwrite_existing, ec);
        if (ec) return IoError("copy blob " + ld.digest + ": " + ec.message());
        blob = LocalBlob{copy, true};
      }
      Status put = dst_.PutBlobFile(ld, blob.path, ev_.progress);
      std::remove(blob.path.c_str());
      OCIX_RETURN_IF_ERROR(put);
      return converted_[ld.digest] = {ld, old_diff_ids[index].get<std::string>()};
    }
    if (!IsTarLayerMediaType(ld.media_type))
      return InvalidArgument("layer " + ld.digest + ": unsupported media type \"" + ld.media_type + "\"");
    if (ev_.begin_step)
      ev_.begin_step("layer " + std::to_string(index + 1) + "/" + std::to_string(count) + " " + ld.digest.substr(7, 12),
                     static_cast<uint64_t>(ld.size));
    OCIX_ASSIGN_OR_RETURN(LocalBlob src_blob, src_.BlobFile(ld, opts_.tmp_dir, ev_.progress));
    const std::string out_path =
        opts_.tmp_dir + "/ocix-layer." + std::to_string(getpid()) + "." + ld.digest.substr(7, 16);
    auto layer = ConvertLayer(src_blob.path, ld.digest, out_path, opts_.layer, ev_.progress);
    if (src_blob.temporary) std::remove(src_blob.path.c_str());
    if (!layer.ok()) {
      std::remove(out_path.c_str());
      return layer.status().WithContext("convert layer " + ld.digest);
    }
    Status s = dst_.PutBlobFile(layer->descriptor, out_path, ev_.progress);
    std::remove(out_path.c_str());
    OCIX_RETURN_IF_ERROR(s);
    if (ev_.layer_done) ev_.layer_done(*layer);
    layers_.push_back(*layer);
    return converted_[ld.digest] = {layer->descriptor, layer->diff_id};
  }

  ImageSource& src_;
  ImageSink& dst_;
  const ConvertImageOptions& opts_;
  const ConvertEvents& ev_;
  std::map<std::string, std::pair<Descriptor, std::string>> converted_;
  std::vector<ConvertedLayer> layers_;
  std::string root_index_, last_manifest_;
  int flattened_ = 0;
};

}  // namespace

Result<std::unique_ptr<ImageSource>> OpenLayoutSource(const LayoutRef& ref) {
  OCIX_ASSIGN_OR_RETURN(OciLayout layout, OciLayout::Open(ref.dir));
  return std::unique_ptr<ImageSource>(std::make_unique<LayoutSource>(std::move(layout), ref.tag));
}

Result<std::unique_ptr<ImageSink>> OpenLayoutSink(const LayoutRef& ref) {
  auto sink = std::make_unique<LayoutSink>(ref);
  OCIX_RETURN_IF_ERROR(sink->Init());
  return std::unique_ptr<ImageSink>(std::move(sink));
}

Result<ConvertImageResult> ConvertImage(ImageSource& src, ImageSink& dst, const ConvertImageOptions& options,
                                        const ConvertEvents& events) {
  return Converter(src, dst, options, events).Run();
}

}  // namespace ocix::core

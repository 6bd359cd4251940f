#include "image_refs.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>

namespace ocix::cli {

using namespace ocix::core;  // NOLINT(google-build-using-namespace): CLI glue only

namespace {

constexpr size_t kMaxJson = 4u << 20;

class RegistrySource final : public ImageSource {
 public:
  RegistrySource(Reference ref, RegistryClient& client) : ref_(std::move(ref)), client_(client) {}

  Result<std::pair<Descriptor, std::string>> Root() override { return client_.GetManifest(ref_); }

  Result<std::string> ReadBlob(const Descriptor& d, size_t max_size) override {
    // Manifests named by an index live under /manifests/, everything else
    // under /blobs/.
    if (IsManifestType(d.media_type)) {
      Reference by_digest = ref_;
      by_digest.tag.clear();
      by_digest.digest = d.digest;
      OCIX_ASSIGN_OR_RETURN(auto m, client_.GetManifest(by_digest));
      if (m.second.size() > max_size) return Corruption("manifest " + d.digest + " too large");
      return std::move(m.second);
    }
    return client_.GetBlob(ref_, d, max_size);
  }

  Result<LocalBlob> BlobFile(const Descriptor& d, const std::string& tmp_dir, const ProgressFn& progress) override {
    std::string path = tmp_dir + "/ocix-fetch." + std::to_string(getpid()) + "." + d.digest.substr(7, 16);
    OCIX_RETURN_IF_ERROR(client_.DownloadBlob(ref_, d, path, progress));
    return LocalBlob{path, true};
  }

 private:
  static bool IsManifestType(std::string_view mt) {
    return mt == "application/vnd.oci.image.manifest.v1+json" || mt == "application/vnd.oci.image.index.v1+json" ||
           mt == "application/vnd.docker.distribution.manifest.v2+json" ||
           mt == "application/vnd.docker.distribution.manifest.list.v2+json";
  }
  Reference ref_;
  RegistryClient& client_;
};

class RegistrySink final : public ImageSink {
 public:
  RegistrySink(Reference ref, RegistryClient& client, std::optional<std::string> mount_from)
      : ref_(std::move(ref)), client_(client), mount_from_(std::move(mount_from)) {}

  Status PutBlobFile(const Descriptor& d, const std::string& path, const ProgressFn& progress) override {
    return client_.PushBlob(ref_, d, path, mount_from_, progress);
  }

  Status PutBlob(const Descriptor& d, std::string_view data) override {
    if (IsManifest(d.media_type)) {
      // Manifests go under /manifests/ by digest; the root is tagged later.
      Reference by_digest = ref_;
      by_digest.tag.clear();
      by_digest.digest = d.digest;
      return client_.PushManifest(by_digest, d.media_type, data);
    }
    char tmpl[] = "/tmp/ocix-blob.XXXXXX";
    int fd = ::mkstemp(tmpl);
    if (fd < 0) return ErrnoError("temp file", errno);
    const std::string path = tmpl;
    bool ok = ::write(fd, data.data(), data.size()) == static_cast<ssize_t>(data.size());
    ::close(fd);
    Status s = ok ? client_.PushBlob(ref_, d, path) : IoError("write " + path);
    ::unlink(path.c_str());
    return s;
  }

  Status PutRoot(const Descriptor& d, std::string_view data) override {
    OCIX_RETURN_IF_ERROR(PutBlob(d, data));
    if (ref_.tag.empty()) return Status::Ok();
    Reference tagged = ref_;
    tagged.digest.clear();
    return client_.PushManifest(tagged, d.media_type, data);
  }

 private:
  static bool IsManifest(std::string_view mt) {
    return mt == "application/vnd.oci.image.manifest.v1+json" || mt == "application/vnd.oci.image.index.v1+json";
  }
  Reference ref_;
  RegistryClient& client_;
  std::optional<std::string> mount_from_;
};

bool IsDir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

}  // namespace

Result<ImageRef> ParseImageRef(const std::string& s) {
  ImageRef r;
  if (s.rfind("oci:", 0) == 0) {
    r.is_layout = true;
    r.layout = LayoutRef::Parse(s.substr(4));
    return r;
  }
  LayoutRef as_layout = LayoutRef::Parse(s);
  if (IsDir(as_layout.dir)) {
    r.is_layout = true;
    r.layout = as_layout;
    return r;
  }
  auto ref = Reference::Parse(s);
  if (!ref.ok())
    return ref.status().WithContext("\"" + s + "\" is neither an OCI layout (oci:DIR:TAG) nor a reference");
  r.registry = std::move(*ref);
  return r;
}

Result<std::unique_ptr<ImageSource>> OpenSource(const ImageRef& ref, RegistryClient& client) {
  if (ref.is_layout) return OpenLayoutSource(ref.layout);
  return std::unique_ptr<ImageSource>(std::make_unique<RegistrySource>(ref.registry, client));
}

Result<std::unique_ptr<ImageSink>> OpenSink(const ImageRef& ref, RegistryClient& client, const ImageRef* source) {
  if (ref.is_layout) return OpenLayoutSink(ref.layout);
  std::optional<std::string> mount_from;
  // Unchanged blobs (e.g. already-OCIX layers) can be mounted across
  // repositories of one registry instead of uploaded again.
  if (source && !source->is_layout && source->registry.host == ref.registry.host &&
      source->registry.repository != ref.registry.repository)
    mount_from = source->registry.repository;
  return std::unique_ptr<ImageSink>(std::make_unique<RegistrySink>(ref.registry, client, mount_from));
}

}  // namespace ocix::cli

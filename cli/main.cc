// ocix: the command-line tool. Exceptions (CLI11's) stop at this boundary;
// everything below reports errors as Status.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <clocale>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "ocix/core/codec.h"
#include "ocix/core/layer_builder.h"
#include "ocix/core/limits.h"
#include "ocix/core/listing.h"
#include "ocix/core/oci_layout.h"

namespace {

using namespace ocix::core;  // NOLINT(google-build-using-namespace): main only

int Fail(const Status& s) {
  std::fprintf(stderr, "ocix: %s\n", s.ToString().c_str());
  return 1;
}

// Writes atomically (temp file + rename) so a failed run leaves no partial OUT.
Status WriteOutput(const std::string& path, const std::string& data) {
  if (path == "-") {
    if (std::fwrite(data.data(), 1, data.size(), stdout) != data.size() || std::fflush(stdout) != 0)
      return ErrnoError("write stdout", errno);
    return Status::Ok();
  }
  std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("create " + tmp, errno);
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      ::unlink(tmp.c_str());
      return ErrnoError("write " + tmp, err);
    }
    off += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0 || ::close(fd) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError("flush " + tmp, err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return ErrnoError("rename to " + path, err);
  }
  return Status::Ok();
}

Result<std::string> ReadInput(const std::string& path) {
  std::string data;
  if (path == "-") {
    data.assign(std::istreambuf_iterator<char>(std::cin), {});
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) return NotFound("cannot open " + path);
    data.assign(std::istreambuf_iterator<char>(in), {});
    if (in.bad()) return IoError("read " + path);
  }
  if (data.size() > kMaxManifestBytes) return Corruption(path + ": larger than the 256 MiB manifest limit");
  return data;
}

struct ManifestOptions {
  std::string src, out, platform;
  uint64_t version = 1;
  bool verbose = false;
};

int RunManifest(const ManifestOptions& o) {
  auto start = std::chrono::steady_clock::now();
  LayoutRef ref = LayoutRef::Parse(o.src);
  auto layout = OciLayout::Open(ref.dir);
  if (!layout.ok()) return Fail(layout.status());
  Platform platform = Platform::Host();
  if (!o.platform.empty()) {
    auto p = Platform::Parse(o.platform);
    if (!p.ok()) return Fail(p.status());
    platform = *p;
  }
  auto image = layout->Resolve(ref.tag, platform);
  if (!image.ok()) return Fail(image.status().WithContext(o.src));
  LayerBuilder builder;
  for (const Descriptor& layer : image->layers) {
    if (!IsTarLayerMediaType(layer.media_type))
      return Fail(InvalidArgument("layer " + layer.digest + ": unsupported media type \"" + layer.media_type + "\""));
    Status s = builder.ApplyLayerFile(layout->BlobPath(layer.digest), layer.digest);
    if (!s.ok()) return Fail(s);
  }
  auto manifest = builder.Finish(o.version);
  if (!manifest.ok()) return Fail(manifest.status());
  auto bytes = EncodeManifest(*manifest);
  if (!bytes.ok()) return Fail(bytes.status());
  Status s = WriteOutput(o.out, *bytes);
  if (!s.ok()) return Fail(s);
  if (o.verbose) {
    double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    const LayerStats& st = builder.stats();
    std::fprintf(stderr,
                 "ocix: %zu layers, %llu tar members, %zu paths, %llu content bytes, manifest %zu bytes, %.3f s "
                 "(%.1f MB/s of content)\n",
                 image->layers.size(), static_cast<unsigned long long>(st.entries), manifest->entries.size(),
                 static_cast<unsigned long long>(st.content_bytes), bytes->size(), secs,
                 secs > 0 ? static_cast<double>(st.content_bytes) / secs / 1e6 : 0.0);
  }
  return 0;
}

int RunInspect(const std::string& file, bool json) {
  auto data = ReadInput(file);
  if (!data.ok()) return Fail(data.status());
  auto m = DecodeManifest({reinterpret_cast<const uint8_t*>(data->data()), data->size()});
  if (!m.ok()) return Fail(m.status().WithContext(file));
  Status s = WriteOutput("-", json ? FormatJson(*m) : FormatListing(*m));
  return s.ok() ? 0 : Fail(s);
}

}  // namespace

int main(int argc, char** argv) {
  std::setlocale(LC_ALL, "C.UTF-8");  // libarchive converts names via the locale
  CLI::App app{"ocix: make, inspect and serve OCIX images (lazily loaded container images)"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "ocix 0.1.0");

  ManifestOptions mo;
  auto* manifest = app.add_subcommand(
      "manifest", "Apply an OCI image's layers and write the canonical OCIX manifest of the resulting root filesystem");
  manifest->add_option("SRC", mo.src, "OCI image layout as DIR:TAG (or DIR when it holds one image)")->required();
  manifest->add_option("OUT", mo.out, "output file ('-' for standard output)")->required();
  manifest
      ->add_option("--format-version", mo.version,
                   "1 (ours: numeric owners, whole mode, ns times, xattrs, holes) or 0 (the seed tool's; "
                   "drops xattrs and hole maps)")
      ->check(CLI::IsMember({0, 1}))
      ->capture_default_str();
  manifest->add_option("--platform", mo.platform, "OS/ARCH[/VARIANT] to pick from an index (default: this host)");
  manifest->add_flag("-v,--verbose", mo.verbose, "print statistics to standard error");

  std::string inspect_file;
  bool inspect_json = false;
  auto* inspect = app.add_subcommand("inspect", "Print a manifest (either version) as an mtree-like listing or JSON");
  inspect->add_option("FILE", inspect_file, "manifest file ('-' for standard input)")->required();
  inspect->add_flag("--json", inspect_json, "print JSON instead (schema in docs/FORMAT.md)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (manifest->parsed()) return RunManifest(mo);
  if (inspect->parsed()) return RunInspect(inspect_file, inspect_json);
  return 2;
}

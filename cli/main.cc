// ocix: the command-line tool. Exceptions (CLI11's) stop at this boundary;
// everything below reports errors as Status.
#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <clocale>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>

#include "image_refs.h"
#include "mount.h"
#include "ocix/core/atomic_file.h"
#include "ocix/core/codec.h"
#include "ocix/core/convert.h"
#include "ocix/core/layer_builder.h"
#include "ocix/core/limits.h"
#include "ocix/core/listing.h"
#include "ocix/core/oci_layout.h"
#include "ocix/core/ocix_layer.h"
#include "pull.h"

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
  AtomicWriteOptions o;
  o.sync = true;
  return WriteFileAtomic(path, data, o);
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

int RunInspect(const std::string& file, bool json, bool layer) {
  if (layer) {
    auto toc = ReadTocFromFile(file);
    if (!toc.ok()) return Fail(toc.status());
    Status s = WriteOutput("-", json ? FormatTocJson(*toc) : FormatListing(toc->manifest));
    return s.ok() ? 0 : Fail(s);
  }
  auto data = ReadInput(file);
  if (!data.ok()) return Fail(data.status());
  auto m = DecodeManifest({reinterpret_cast<const uint8_t*>(data->data()), data->size()});
  if (!m.ok()) return Fail(m.status().WithContext(file));
  Status s = WriteOutput("-", json ? FormatJson(*m) : FormatListing(*m));
  return s.ok() ? 0 : Fail(s);
}

// A one-line progress bar on standard error when it is a terminal; silent
// otherwise (logs and CI stay clean).
class ProgressBar {
 public:
  ProgressBar() : tty_(isatty(STDERR_FILENO) == 1) {}
  void Begin(const std::string& what, uint64_t total) {
    End();
    what_ = what;
    total_ = total;
    start_ = std::chrono::steady_clock::now();
    active_ = true;
    Update(0, total);
  }
  void Update(uint64_t done, uint64_t total) {
    if (!tty_ || !active_) return;
    if (total) total_ = total;
    auto now = std::chrono::steady_clock::now();
    if (done != 0 && done != total_ && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    const double secs = std::chrono::duration<double>(now - start_).count();
    const double rate = secs > 0 ? static_cast<double>(done) / secs / 1e6 : 0;
    if (total_ > 0) {
      const int pct =
          static_cast<int>(100.0 * static_cast<double>(std::min(done, total_)) / static_cast<double>(total_));
      const int filled = pct / 5;
      std::fprintf(stderr, "\r%-32s [%-20s] %3d%% %7.1f MB/s", what_.c_str(), std::string(filled, '#').c_str(), pct,
                   rate);
    } else {
      std::fprintf(stderr, "\r%-32s %10.1f MB %7.1f MB/s", what_.c_str(), static_cast<double>(done) / 1e6, rate);
    }
  }
  void End() {
    if (tty_ && active_) std::fputc('\n', stderr);
    active_ = false;
  }

 private:
  bool tty_;
  bool active_ = false;
  std::string what_;
  uint64_t total_ = 0;
  std::chrono::steady_clock::time_point start_, last_;
};

// Registry settings shared by every command that talks to a registry.
struct RegistryCliOptions {
  std::string certs_dir = "/etc/containerd/certs.d";
  std::string docker_config;
  RegistryOptions ToOptions() const {
    RegistryOptions o;
    o.certs_dir = certs_dir;
    o.docker_config = docker_config;
    return o;
  }
  void AddTo(CLI::App* cmd) {
    cmd->add_option("--hosts-dir", certs_dir,
                    "containerd registry hosts directory (HOST/hosts.toml: mirrors, plain http, CAs)")
        ->capture_default_str();
    cmd->add_option("--docker-config", docker_config,
                    "docker config.json with registry credentials (default: $DOCKER_CONFIG or ~/.docker)");
  }
};

struct ConvertCliOptions {
  std::string src, dst, platform, prefetch_file;
  uint64_t chunk_size = kDefaultChunkSize;
  int level = 3;
  bool quiet = false;
  bool flatten = false;
  RegistryCliOptions registry;
};

Result<std::vector<std::string>> ReadPrefetchList(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("cannot open " + path);
  std::vector<std::string> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line[0] != '/') line = "/" + line;
    OCIX_RETURN_IF_ERROR(ValidatePath(line).WithContext(path));
    out.push_back(line);
  }
  return out;
}

int RunConvert(const ConvertCliOptions& o) {
  ConvertImageOptions opts;
  opts.layer.chunk_size = o.chunk_size;
  opts.layer.zstd_level = o.level;
  opts.flatten = o.flatten;
  if (!o.platform.empty()) {
    auto p = Platform::Parse(o.platform);
    if (!p.ok()) return Fail(p.status());
    opts.platform = *p;
  }
  if (!o.prefetch_file.empty()) {
    auto list = ReadPrefetchList(o.prefetch_file);
    if (!list.ok()) return Fail(list.status());
    opts.layer.prefetch = std::move(*list);
  }
  if (const char* t = std::getenv("TMPDIR")) opts.tmp_dir = t;
  auto src_ref = ocix::cli::ParseImageRef(o.src);
  if (!src_ref.ok()) return Fail(src_ref.status());
  auto dst_ref = ocix::cli::ParseImageRef(o.dst);
  if (!dst_ref.ok()) return Fail(dst_ref.status());
  RegistryClient client(o.registry.ToOptions());
  auto src = ocix::cli::OpenSource(*src_ref, client);
  if (!src.ok()) return Fail(src.status().WithContext(o.src));
  auto dst = ocix::cli::OpenSink(*dst_ref, client, &*src_ref);
  if (!dst.ok()) return Fail(dst.status().WithContext(o.dst));
  ProgressBar bar;
  ConvertEvents ev;
  if (!o.quiet) {
    ev.begin_step = [&](const std::string& what, uint64_t total) { bar.Begin(what, total); };
    ev.progress = [&](uint64_t done, uint64_t total) { bar.Update(done, total); };
  }
  auto r = ConvertImage(**src, **dst, opts, ev);
  bar.End();
  if (!r.ok()) return Fail(r.status());
  if (!o.quiet) {
    for (const ConvertedLayer& l : r->layers)
      std::fprintf(stderr, "ocix: %s  %llu bytes (tar %llu, TOC %llu), %llu files, %llu entries\n",
                   l.descriptor.digest.c_str(), static_cast<unsigned long long>(l.descriptor.size),
                   static_cast<unsigned long long>(l.tar_bytes), static_cast<unsigned long long>(l.toc_bytes),
                   static_cast<unsigned long long>(l.files), static_cast<unsigned long long>(l.entries));
  }
  std::printf("%s\n", r->root.digest.c_str());
  return 0;
}

int RunVerify(const std::string& ref, const RegistryCliOptions& registry) {
  auto parsed = ocix::cli::ParseImageRef(ref);
  if (!parsed.ok()) return Fail(parsed.status());
  RegistryClient client(registry.ToOptions());
  auto src = ocix::cli::OpenSource(*parsed, client);
  if (!src.ok()) return Fail(src.status().WithContext(ref));
  const char* tmp = std::getenv("TMPDIR");
  Status s = VerifyImage(**src, tmp ? tmp : "/var/tmp", [](const Descriptor& d, const VerifyReport& r) {
    std::printf("ok %s: %llu entries, %llu files, %llu chunks, %llu content bytes\n", d.digest.c_str(),
                static_cast<unsigned long long>(r.entries), static_cast<unsigned long long>(r.files),
                static_cast<unsigned long long>(r.chunks), static_cast<unsigned long long>(r.content_bytes));
  });
  if (!s.ok()) return Fail(s.WithContext("verify " + ref));
  std::printf("verified %s\n", ref.c_str());
  return 0;
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
  bool inspect_layer = false;
  inspect->add_flag("--layer", inspect_layer,
                    "FILE is an OCIX layer blob: print its TOC's manifest (with --json: chunk locations too)");

  ConvertCliOptions co;
  auto* convert = app.add_subcommand(
      "convert", "Convert an OCI image into an OCIX image (lazily loadable, still a valid OCI image)");
  convert->add_option("SRC", co.src, "source image: registry reference (host/repo:tag) or OCI layout oci:DIR:TAG")
      ->required();
  convert->add_option("DST", co.dst, "destination: registry reference or OCI layout oci:DIR:TAG (created if missing)")
      ->required();
  convert->add_option("--platform", co.platform, "convert only this OS/ARCH[/VARIANT] of an index (default: all)");
  convert->add_option("--chunk-size", co.chunk_size, "bytes per content chunk (power of two, 4 KiB - 64 MiB)")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        uint64_t n = std::strtoull(v.c_str(), nullptr, 10);
        if (n < kMinChunkSize || n > kMaxChunkSize || (n & (n - 1)) != 0)
          return "must be a power of two between 4096 and 67108864";
        return "";
      });
  convert->add_option("--level", co.level, "zstd compression level")->check(CLI::Range(1, 19))->capture_default_str();
  convert->add_option("--prefetch", co.prefetch_file,
                      "file listing paths (one per line) to put first and mark for prefetch");
  convert->add_flag("-q,--quiet", co.quiet, "no progress or summary on standard error");
  convert->add_flag("--flatten", co.flatten, "squash all layers of each image into one OCIX layer");
  co.registry.AddTo(convert);

  std::string verify_ref;
  auto* verify = app.add_subcommand(
      "verify", "Check every OCIX layer of an image: TOC, frames, chunk and file hashes, tar stream");
  verify->add_option("IMAGE", verify_ref, "registry reference (host/repo:tag) or OCI layout oci:DIR:TAG")->required();
  RegistryCliOptions verify_registry;
  verify_registry.AddTo(verify);

  ocix::cli::MountOptions mount_opts;
  RegistryCliOptions mount_registry;
  auto* mount =
      app.add_subcommand("mount", "Mount an OCIX image's root filesystem read-only, lazily (no containerd needed)");
  mount->add_option("IMAGE", mount_opts.image, "registry reference or OCI layout oci:DIR:TAG")->required();
  mount->add_option("DIR", mount_opts.mountpoint, "mountpoint (an existing directory)")->required();
  mount->add_option("--cache", mount_opts.cache_dir, "content-addressed chunk cache shared by all mounts")
      ->capture_default_str();
  mount->add_option("--state-dir", mount_opts.state_dir, "where mounts keep their state")->capture_default_str();
  mount->add_flag("-f,--foreground", mount_opts.foreground, "serve in this process until unmounted");
  mount
      ->add_option("--prefetch", mount_opts.prefetch,
                   "background fetching: none, list (the image's prefetch list) or all (list, then the rest)")
      ->check(CLI::IsMember({"none", "list", "all"}))
      ->capture_default_str();
  mount
      ->add_option("--prefetch-parallel", mount_opts.prefetch_parallel,
                   "prefetch batches fetching at once (always behind on-demand reads)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  mount
      ->add_option("--readahead", mount_opts.readahead,
                   "largest read-ahead window in bytes: reads that miss near each other, or a file missed twice, "
                   "fetch what follows in the blob in the background (0: off)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{64} << 20))
      ->capture_default_str();
  mount_registry.AddTo(mount);
  int fetch_attempts = 4;
  double fetch_timeout_s = 10;
  mount->add_option("--fetch-attempts", fetch_attempts, "tries per registry request before a read fails with EIO")
      ->check(CLI::Range(1, 20))
      ->capture_default_str();
  mount
      ->add_option("--fetch-timeout", fetch_timeout_s,
                   "seconds to connect, or without progress, before one try of a registry request fails")
      ->check(CLI::Range(0.1, 600.0))
      ->capture_default_str();

  std::string umount_dir, umount_state = "/run/ocix/mounts";
  auto* umount = app.add_subcommand("umount", "Unmount what ocix mount mounted");
  umount->add_option("DIR", umount_dir, "mountpoint")->required();
  umount->add_option("--state-dir", umount_state, "as given to ocix mount")->capture_default_str();

  std::string cache_dir = "/var/lib/ocix/cache", cache_state = "/run/ocix/mounts";
  bool cache_json = false;
  auto* cache = app.add_subcommand("cache", "Inspect the node's content-addressed chunk cache");
  cache->require_subcommand(1);
  auto* cache_stats =
      cache->add_subcommand("stats", "Entries and bytes stored, plus hits and fetched bytes of the live mounts");
  cache_stats->add_option("--cache", cache_dir, "cache directory")->capture_default_str();
  cache_stats->add_option("--state-dir", cache_state, "mount state directory")->capture_default_str();
  cache_stats->add_flag("--json", cache_json, "print JSON");

  ocix::cli::PullOptions po;
  RegistryCliOptions pull_registry;
  double pull_timeout_s = 30;
  bool pull_quiet = false;
  if (const char* a = std::getenv("CONTAINERD_ADDRESS"); a && *a) po.address = a;
  if (const char* n = std::getenv("CONTAINERD_NAMESPACE"); n && *n) po.ns = n;
  auto* pull = app.add_subcommand(
      "pull",
      "Pull an image into containerd (content, image record, snapshots): layers a remote snapshotter such as ocix "
      "prepares are mounted lazily, the others are fetched and applied. Then: ctr run --snapshotter ocix REF ID");
  pull->add_option("REF", po.ref, "registry reference (host/repo:tag or @digest); also the containerd image name")
      ->required();
  pull->add_option("-a,--address", po.address, "containerd's gRPC socket (env CONTAINERD_ADDRESS)")
      ->capture_default_str();
  pull->add_option("-n,--namespace", po.ns, "containerd namespace (env CONTAINERD_NAMESPACE)")->capture_default_str();
  pull->add_option("--snapshotter", po.snapshotter, "containerd snapshotter to unpack into")->capture_default_str();
  pull->add_option("--platform", po.platform, "OS/ARCH[/VARIANT] to pick from an index (default: this host)");
  pull->add_option("--timeout", pull_timeout_s,
                   "seconds each containerd call may take (content transfers and layer applies get more per byte)")
      ->check(CLI::Range(1.0, 3600.0))
      ->capture_default_str();
  pull->add_flag("-q,--quiet", pull_quiet, "no progress bar on standard error");
  pull_registry.AddTo(pull);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  if (manifest->parsed()) return RunManifest(mo);
  if (inspect->parsed()) return RunInspect(inspect_file, inspect_json, inspect_layer);
  if (convert->parsed()) return RunConvert(co);
  if (verify->parsed()) return RunVerify(verify_ref, verify_registry);
  if (mount->parsed()) {
    mount_opts.registry = mount_registry.ToOptions();
    mount_opts.registry.max_attempts = fetch_attempts;
    const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(fetch_timeout_s * 1000));
    mount_opts.registry.connect_timeout = timeout;
    mount_opts.registry.low_speed_timeout = timeout;
    // Prefetch batches span many chunk frames with small tar header frames
    // between them: fetch those gaps rather than split the request.
    mount_opts.registry.range_coalesce_gap = 64u << 10;
    return ocix::cli::RunMount(mount_opts);
  }
  if (umount->parsed()) return ocix::cli::RunUmount(umount_dir, umount_state);
  if (cache_stats->parsed()) return ocix::cli::RunCacheStats(cache_dir, cache_state, cache_json);
  if (pull->parsed()) {
    po.registry = pull_registry.ToOptions();
    po.timeout = std::chrono::milliseconds(static_cast<int64_t>(pull_timeout_s * 1000));
    ProgressBar bar;
    ocix::cli::PullEvents ev;
    if (!pull_quiet) {
      ev.begin_step = [&](const std::string& what, uint64_t total) { bar.Begin(what, total); };
      ev.progress = [&](uint64_t done, uint64_t total) { bar.Update(done, total); };
      ev.end_step = [&] { bar.End(); };
    }
    return ocix::cli::RunPull(po, ev);
  }
  return 2;
}

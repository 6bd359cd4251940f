// `ocix mount`, `ocix umount` and `ocix cache stats`: lazy image mounts for
// debugging and tests, without containerd.
#include "mount.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "ocix/core/atomic_file.h"
#include "ocix/core/registry/blob_reader.h"
#include "ocix/core/sha256.h"
#include "ocix/fuse/image_mount.h"

namespace ocix::cli {

using namespace ocix::core;  // NOLINT(google-build-using-namespace): CLI glue only
using nlohmann::json;
namespace fs = std::filesystem;

namespace {

// Each mount's state lives in STATE/<id>, id derived from the mountpoint.
Result<std::string> StateDirFor(const std::string& state_root, const std::string& mountpoint) {
  std::error_code ec;
  fs::path real = fs::canonical(mountpoint, ec);
  if (ec) return NotFound("mountpoint " + mountpoint + ": " + ec.message());
  return state_root + "/" + Sha256::OciDigest(real.string()).substr(7, 16);
}

Status WriteJson(const std::string& path, const json& j) { return WriteFileAtomic(path, j.dump(1) + "\n"); }

Result<json> ReadJson(const std::string& path) {
  std::ifstream in(path);
  if (!in) return NotFound("no " + path);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Corruption(path + ": not a JSON object");
  return j;
}

json StatsJson(const ChunkStore& store, const fuse::ImageMount& m) {
  const StoreStats s = store.stats();
  uint64_t reads = 0, read_bytes = 0, read_errors = 0, served_frame_bytes = 0, readahead_frame_bytes = 0;
  uint64_t prefetched = 0, prefetch_pending = 0, prefetch_errors = 0;
  for (const auto& l : m.layers()) {
    prefetched += l->stats().prefetched_chunks;
    prefetch_errors += l->stats().prefetch_errors;
    prefetch_pending += l->stats().prefetch_done ? 0 : 1;
    reads += l->stats().op(fuse::FuseOp::kRead);
    served_frame_bytes += l->stats().served_frame_bytes;
    readahead_frame_bytes += l->stats().readahead_frame_bytes;
    read_bytes += l->stats().read_bytes;
    read_errors += l->stats().read_errors;
  }
  json ops = json::object();
  for (size_t i = 0; i < fuse::kFuseOpCount; ++i) {
    uint64_t n = 0;
    for (const auto& l : m.layers()) n += l->stats().ops[i];
    ops[std::string(fuse::FuseOpName(static_cast<fuse::FuseOp>(i)))] = n;
  }
  return {{"hits", s.hits},
          {"misses", s.misses},
          {"fetched_chunks", s.fetched_chunks},
          {"fetched_bytes", s.fetched_bytes},
          {"fetch_requests", s.fetch_requests},
          {"corrupt_chunks", s.corrupt_chunks},
          {"rechecked", s.rechecked},
          {"fetch_errors", s.fetch_errors},
          {"reads", reads},
          {"read_bytes", read_bytes},
          {"read_errors", read_errors},
          {"served_frame_bytes", served_frame_bytes},
          {"readahead_frame_bytes", readahead_frame_bytes},
          {"prefetched_chunks", prefetched},
          {"prefetch_pending", prefetch_pending},
          {"prefetch_errors", prefetch_errors},
          {"fuse_ops", ops}};
}

// Resolves the image and opens a blob reader per layer (bottom first).
Result<std::vector<fuse::MountLayer>> OpenLayers(const ImageRef& ref, const RegistryOptions& ropts) {
  std::vector<fuse::MountLayer> out;
  const Platform platform = Platform::Host();
  if (ref.is_layout) {
    OCIX_ASSIGN_OR_RETURN(OciLayout layout, OciLayout::Open(ref.layout.dir));
    OCIX_ASSIGN_OR_RETURN(ImageManifest im, layout.Resolve(ref.layout.tag, platform));
    for (const Descriptor& d : im.layers) {
      OCIX_ASSIGN_OR_RETURN(auto blob, OpenFileBlobReader(layout.BlobPath(d.digest)));
      out.push_back({d, std::move(blob)});
    }
    return out;
  }
  RegistryClient client(ropts);
  OCIX_ASSIGN_OR_RETURN(ResolvedImage im, client.ResolveImage(ref.registry, platform));
  for (const Descriptor& d : im.image.layers) out.push_back({d, MakeRegistryBlobReader(ropts, ref.registry, d.digest)});
  return out;
}

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// The mount's life in the serving process: mount, report, serve, clean up.
Status Serve(const MountOptions& o, const std::string& state, int ready_fd) {
  OCIX_ASSIGN_OR_RETURN(ImageRef ref, ParseImageRef(o.image));
  OCIX_ASSIGN_OR_RETURN(auto layers, OpenLayers(ref, o.registry));
  ChunkStore::Options so;
  so.root = o.cache_dir;
  OCIX_ASSIGN_OR_RETURN(auto store, ChunkStore::Open(so));
  fuse::LayerFsOptions lo;
  lo.readahead_max_bytes = o.readahead;
  OCIX_ASSIGN_OR_RETURN(auto mount, fuse::ImageMount::Create(std::move(layers), *store, state, o.mountpoint, lo));
  mount->StartPrefetch(o.prefetch == "none"   ? fuse::Prefetch::kNone
                       : o.prefetch == "list" ? fuse::Prefetch::kList
                                              : fuse::Prefetch::kAll,
                       o.prefetch_parallel);
  json info = {{"mountpoint", fs::canonical(o.mountpoint).string()},
               {"image", o.image},
               {"pid", getpid()},
               {"layers", mount->layer_dirs()},
               {"cache", o.cache_dir}};
  OCIX_RETURN_IF_ERROR(WriteJson(state + "/info.json", info));
  if (ready_fd >= 0) {
    char ok = 0;
    (void)!::write(ready_fd, &ok, 1);
    ::close(ready_fd);
  }
  // Serve until every layer is unmounted (ocix umount) or a signal asks us
  // to stop; publish counters once a second for `ocix cache stats`.
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    mount->Wait();
    done = true;
  });
  while (!done && !g_stop) {
    WriteJson(state + "/stats.json", StatsJson(*store, *mount)).IgnoreError();
    for (int i = 0; i < 10 && !done && !g_stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  mount->Unmount();
  waiter.join();
  std::error_code ec;
  fs::remove_all(state, ec);
  return Status::Ok();
}

}  // namespace

int RunMount(const MountOptions& o) {
  auto state = [&]() -> Result<std::string> {
    OCIX_ASSIGN_OR_RETURN(std::string s, StateDirFor(o.state_dir, o.mountpoint));
    if (fs::exists(s + "/info.json")) return AlreadyExists(o.mountpoint + " is already an ocix mount");
    std::error_code ec;
    fs::create_directories(s, ec);
    if (ec) return IoError("create " + s + ": " + ec.message());
    return s;
  }();
  if (!state.ok()) {
    std::fprintf(stderr, "ocix: %s\n", state.status().ToString().c_str());
    return 1;
  }
  signal(SIGTERM, OnSignal);
  signal(SIGINT, OnSignal);
  if (o.foreground) {
    Status s = Serve(o, *state, -1);
    if (!s.ok()) std::fprintf(stderr, "ocix: mount: %s\n", s.ToString().c_str());
    return s.ok() ? 0 : 1;
  }
  // Fork before any thread exists; the child serves, the parent reports
  // whether the mount came up.
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return 1;
  pid_t pid = ::fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    ::close(pipefd[0]);
    ::setsid();
    int devnull = ::open("/dev/null", O_RDWR);
    int log = ::open((*state + ".log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (devnull >= 0) ::dup2(devnull, STDIN_FILENO);
    if (log >= 0) ::dup2(log, STDOUT_FILENO);
    if (log >= 0) ::dup2(log, STDERR_FILENO);
    Status s = Serve(o, *state, pipefd[1]);
    if (!s.ok()) {
      const std::string msg = s.ToString();
      (void)!::write(pipefd[1], msg.data(), msg.size());
      std::error_code ec;
      fs::remove_all(*state, ec);
    }
    _exit(s.ok() ? 0 : 1);
  }
  ::close(pipefd[1]);
  std::string msg;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof buf)) > 0) {
    msg.append(buf, static_cast<size_t>(n));
    if (msg.size() == 1 && msg[0] == 0) break;  // mounted
  }
  ::close(pipefd[0]);
  if (msg.size() == 1 && msg[0] == 0) {
    std::printf("%s\n", o.mountpoint.c_str());
    return 0;
  }
  ::waitpid(pid, nullptr, 0);
  std::fprintf(stderr, "ocix: mount: %s\n", msg.empty() ? "the serving process died" : msg.c_str());
  return 1;
}

int RunUmount(const std::string& mountpoint, const std::string& state_root) {
  auto state = StateDirFor(state_root, mountpoint);
  if (!state.ok()) {
    std::fprintf(stderr, "ocix: %s\n", state.status().ToString().c_str());
    return 1;
  }
  auto info = ReadJson(*state + "/info.json");
  if (!info.ok()) {
    std::fprintf(stderr, "ocix: %s is not an ocix mount\n", mountpoint.c_str());
    return 1;
  }
  const std::string mp = info->value("mountpoint", mountpoint);
  if (::umount2(mp.c_str(), 0) != 0 && errno != EINVAL) {
    std::fprintf(stderr, "ocix: umount %s: %s\n", mp.c_str(), std::strerror(errno));
    return 1;
  }
  // Unmounting the layers ends the serving process's sessions.
  for (const auto& l : info->value("layers", json::array()))
    if (l.is_string()) ::umount2(l.get<std::string>().c_str(), MNT_DETACH);
  const pid_t pid = info->value("pid", 0);
  for (int i = 0; pid > 0 && i < 100 && ::kill(pid, 0) == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (pid > 0 && ::kill(pid, 0) == 0) ::kill(pid, SIGTERM);
  return 0;
}

int RunCacheStats(const std::string& cache_dir, const std::string& state_root, bool as_json) {
  ChunkStore::Options so;
  so.root = cache_dir;
  auto store = ChunkStore::Open(so);
  if (!store.ok()) {
    std::fprintf(stderr, "ocix: %s\n", store.status().ToString().c_str());
    return 1;
  }
  const StoreStats s = (*store)->stats();
  json out = {{"entries", s.entries}, {"bytes", s.bytes}, {"mounts", 0}};
  // Counters of the mounts serving from this cache right now.
  std::error_code ec;
  for (const auto& d : fs::directory_iterator(state_root, ec)) {
    auto info = ReadJson(d.path().string() + "/info.json");
    auto stats = ReadJson(d.path().string() + "/stats.json");
    if (!info.ok() || !stats.ok() || info->value("cache", "") != cache_dir) continue;
    out["mounts"] = out["mounts"].get<int>() + 1;
    for (const auto& [k, v] : stats->items())
      if (v.is_number_unsigned()) out[k] = out.value(k, uint64_t{0}) + v.get<uint64_t>();
  }
  if (as_json) {
    std::printf("%s\n", out.dump(1).c_str());
  } else {
    for (const auto& [k, v] : out.items()) std::printf("%s: %s\n", k.c_str(), v.dump().c_str());
  }
  return 0;
}

}  // namespace ocix::cli

// ocix-snapshotter: containerd's Snapshots API on a unix socket, for
// containerd's proxy_plugins (see integration/deploy/). Exceptions stop at
// this process boundary; the libraries return Status.
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include "ocix/config/config.h"
#include "ocix/snapshotter/metrics.h"
#include "ocix/snapshotter/service.h"
#include "ocix/snapshotter/snapshotter.h"

#ifndef OCIX_VERSION
#define OCIX_VERSION "0.1.0"
#endif

namespace {

using ocix::core::Status;

// The daemon's counters, read from the snapshotter's stats at each scrape.
ocix::core::Result<ocix::snapshotter::MetricsRegistry::CollectorId> AddSnapshotterCollector(
    ocix::snapshotter::MetricsRegistry& reg, const ocix::snapshotter::Snapshotter& sn) {
  using ocix::snapshotter::MetricType;
  std::vector<ocix::snapshotter::MetricDesc> d = {
      {"ocix_fetched_bytes_total", "Compressed bytes of chunks received from registries.", MetricType::kCounter, {}},
      {"ocix_fetched_chunks_total", "Chunks received from registries.", MetricType::kCounter, {}},
      {"ocix_fetch_requests_total", "Range requests made to registries for chunks.", MetricType::kCounter, {}},
      {"ocix_fetch_errors_total", "Chunk fetches that failed after retries.", MetricType::kCounter, {}},
      {"ocix_cache_hits_total", "Chunks found in the node cache when needed.", MetricType::kCounter, {}},
      {"ocix_cache_misses_total", "Chunks not in the node cache when needed.", MetricType::kCounter, {}},
      {"ocix_verification_failures_total",
       "Fetched chunks that failed verification (never served).",
       MetricType::kCounter,
       {}},
      {"ocix_cache_entries", "Chunks stored in the node cache.", MetricType::kGauge, {}},
      {"ocix_cache_bytes", "Uncompressed bytes stored in the node cache.", MetricType::kGauge, {}},
      {"ocix_cache_evicted_chunks_total",
       "Chunks removed to keep the cache under its size limit.",
       MetricType::kCounter,
       {}},
      {"ocix_fuse_operations_total", "FUSE requests served by remote layers.", MetricType::kCounter, {"op"}},
      {"ocix_fuse_read_bytes_total", "Bytes returned by FUSE reads.", MetricType::kCounter, {}},
      {"ocix_fuse_read_errors_total", "FUSE reads answered with an error.", MetricType::kCounter, {}},
      {"ocix_served_chunks_total",
       "Chunks FUSE reads were answered from, each counted once per mounted layer.",
       MetricType::kCounter,
       {}},
      {"ocix_served_frame_bytes_total",
       "Compressed frame bytes of the chunks counted by ocix_served_chunks_total (what reads needed from blobs).",
       MetricType::kCounter,
       {}},
      {"ocix_readahead_chunks_total",
       "Chunks fetched by read-ahead along with a read that missed.",
       MetricType::kCounter,
       {}},
      {"ocix_readahead_frame_bytes_total",
       "Compressed frame bytes of the chunks counted by ocix_readahead_chunks_total.",
       MetricType::kCounter,
       {}},
      {"ocix_cache_rechecked_chunks_total",
       "Cached chunks of an earlier boot that passed their check before first use.",
       MetricType::kCounter,
       {}},
      {"ocix_prefetched_chunks_total", "Chunks fetched by background prefetch.", MetricType::kCounter, {}},
      {"ocix_mounted_layers", "Remote layers currently mounted.", MetricType::kGauge, {}},
  };
  return reg.AddCollector(std::move(d), [&sn](std::vector<ocix::snapshotter::Sample>& out) {
    auto st = sn.store_stats();
    auto r = sn.remote_stats();
    auto add = [&out](std::string name, double v, std::vector<std::string> labels = {}) {
      out.push_back({std::move(name), std::move(labels), v});
    };
    add("ocix_fetched_bytes_total", static_cast<double>(st.fetched_bytes));
    add("ocix_fetched_chunks_total", static_cast<double>(st.fetched_chunks));
    add("ocix_fetch_requests_total", static_cast<double>(st.fetch_requests));
    add("ocix_fetch_errors_total", static_cast<double>(st.fetch_errors));
    add("ocix_cache_hits_total", static_cast<double>(st.hits));
    add("ocix_cache_misses_total", static_cast<double>(st.misses));
    add("ocix_verification_failures_total", static_cast<double>(st.corrupt_chunks));
    add("ocix_cache_rechecked_chunks_total", static_cast<double>(st.rechecked));
    add("ocix_cache_entries", static_cast<double>(st.entries));
    add("ocix_cache_bytes", static_cast<double>(st.bytes));
    add("ocix_cache_evicted_chunks_total", static_cast<double>(st.evicted));
    for (size_t i = 0; i < ocix::fuse::kFuseOpCount; ++i)
      add("ocix_fuse_operations_total", static_cast<double>(r.fuse_ops[i]),
          {std::string(ocix::fuse::FuseOpName(static_cast<ocix::fuse::FuseOp>(i)))});
    add("ocix_fuse_read_bytes_total", static_cast<double>(r.fuse_read_bytes));
    add("ocix_fuse_read_errors_total", static_cast<double>(r.fuse_read_errors));
    add("ocix_served_chunks_total", static_cast<double>(r.served_chunks));
    add("ocix_served_frame_bytes_total", static_cast<double>(r.served_frame_bytes));
    add("ocix_readahead_chunks_total", static_cast<double>(r.readahead_chunks));
    add("ocix_readahead_frame_bytes_total", static_cast<double>(r.readahead_frame_bytes));
    add("ocix_prefetched_chunks_total", static_cast<double>(r.prefetched_chunks));
    add("ocix_mounted_layers", static_cast<double>(r.mounted));
  });
}

Status PrepareSocketPath(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path dir = fs::path(path).parent_path();
  if (!dir.empty()) {
    fs::create_directories(dir, ec);
    if (ec) return ocix::core::IoError("create " + dir.string() + ": " + ec.message());
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    // A socket left by a previous run; anything else is not ours to delete.
    if (!S_ISSOCK(st.st_mode)) return ocix::core::FailedPrecondition(path + " exists and is not a socket");
    if (::unlink(path.c_str()) != 0) return ocix::core::ErrnoError("remove stale socket " + path, errno);
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ocix-snapshotter: containerd remote snapshotter for lazily pulled OCIX images"};
  std::string address, root, config_path, log_level;
  bool version = false;
  app.add_option("--address", address,
                 "unix socket to serve on (default: /run/ocix-snapshotter/ocix-snapshotter.sock)");
  app.add_option("--root", root, "state directory (default: /var/lib/ocix-snapshotter)");
  app.add_option("--config", config_path, "TOML configuration file (docs/CONFIGURATION.md)");
  app.add_option("--log-level", log_level, "trace, debug, info, warn or error (overrides the config)");
  app.add_flag("--version", version, "print the version and exit");
  CLI11_PARSE(app, argc, argv);
  if (version) {
    std::printf("ocix-snapshotter %s\n", OCIX_VERSION);
    return 0;
  }

  ocix::config::Config cfg;
  if (!config_path.empty()) {
    auto c = ocix::config::LoadConfig(config_path);
    if (!c.ok()) {
      std::fprintf(stderr, "ocix-snapshotter: %s\n", c.status().ToString().c_str());
      return 2;
    }
    cfg = std::move(*c);
  }
  if (!address.empty()) cfg.address = address;
  if (!root.empty()) cfg.root = root;
  if (!log_level.empty()) cfg.log_level = log_level;
  auto level = spdlog::level::from_str(cfg.log_level);
  if (level == spdlog::level::off && cfg.log_level != "off") {
    std::fprintf(stderr, "ocix-snapshotter: unknown log level %s\n", cfg.log_level.c_str());
    return 2;
  }
  spdlog::set_level(level);
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %^%l%$ %v");

  // Signals are taken by sigwait on this thread only; every thread started
  // below inherits the mask.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ocix::snapshotter::MetricsRegistry metrics;
  ocix::snapshotter::Histogram* fetch_latency = nullptr;
  if (auto buckets = ocix::snapshotter::ExponentialBuckets(0.001, 2, 15); buckets.ok()) {
    auto h = metrics.AddHistogram("ocix_fetch_duration_seconds", "Latency of range requests to registries.",
                                  std::move(*buckets));
    if (h.ok()) fetch_latency = *h;
  }

  ocix::snapshotter::Snapshotter::Options so;
  so.root = cfg.root;
  so.config = cfg;
  so.on_fetch = [fetch_latency](double seconds, uint64_t, bool) {
    if (fetch_latency != nullptr) fetch_latency->Observe(seconds);
  };
  auto sn = ocix::snapshotter::Snapshotter::Open(std::move(so));
  if (!sn.ok()) {
    spdlog::critical("open {}: {}", cfg.root, sn.status().ToString());
    return 1;
  }
  if (Status s = PrepareSocketPath(cfg.address); !s.ok()) {
    spdlog::critical("{}", s.ToString());
    return 1;
  }

  auto collector = AddSnapshotterCollector(metrics, **sn);
  if (!collector.ok()) {
    spdlog::critical("metrics: {}", collector.status().ToString());
    return 1;
  }
  std::unique_ptr<ocix::snapshotter::MetricsServer> metrics_server;
  if (!cfg.metrics_address.empty()) {
    auto ms = ocix::snapshotter::MetricsServer::Start(metrics, cfg.metrics_address);
    if (!ms.ok()) {
      spdlog::critical("metrics on {}: {}", cfg.metrics_address, ms.status().ToString());
      return 1;
    }
    metrics_server = std::move(*ms);
    spdlog::info("metrics on http://{}/metrics", cfg.metrics_address);
  }

  ocix::snapshotter::SnapshotsService service(**sn);
  grpc::ServerBuilder builder;
  builder.AddListeningPort("unix:" + cfg.address, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  // The socket is created 0600 (umask while listening) and chmod'ed again:
  // only root may talk to the snapshotter.
  mode_t old_umask = ::umask(0077);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  ::umask(old_umask);
  if (!server) {
    spdlog::critical("cannot listen on {}", cfg.address);
    return 1;
  }
  ::chmod(cfg.address.c_str(), 0600);
  spdlog::info("ocix-snapshotter {} serving on {} (root {}, cache {})", OCIX_VERSION, cfg.address, cfg.root,
               cfg.cache_dir.empty() ? cfg.root + "/cache" : cfg.cache_dir);

  int sig = 0;
  sigwait(&stop, &sig);
  spdlog::info("signal {}: shutting down", sig);
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server->Wait();
  metrics_server.reset();  // no scrape may read the snapshotter from here on
  metrics.RemoveCollector(*collector);
  sn->reset();  // unmounts the remote layers
  ::unlink(cfg.address.c_str());
  spdlog::info("stopped");
  return 0;
}

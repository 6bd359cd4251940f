// Prometheus metrics of the daemon.
//
// A MetricsRegistry owns counters, gauges and histograms, each optionally a
// family with fixed label names whose children are picked by label values
// (ocix_fuse_operations_total{op="read"}). Collectors add samples computed at
// scrape time from other objects' stats (the chunk store, mounted layers), so
// those objects need not know about metrics. Render() writes the text
// exposition format 0.0.4; MetricsServer serves it at GET /metrics.
//
// Everything here is thread-safe. Metric objects are owned by the registry
// and live as long as it does: callers keep the plain pointers they get back
// (look a labelled child up once, then update it lock-free). In the daemon:
//
//   MetricsRegistry registry;
//   OCIX_ASSIGN_OR_RETURN(auto buckets, ExponentialBuckets(0.001, 2, 16));
//   OCIX_ASSIGN_OR_RETURN(Histogram* fetch, registry.AddHistogram("ocix_fetch_duration_seconds", "...", buckets));
//   fetch->Observe(seconds);  // from the fetch observer
//   OCIX_ASSIGN_OR_RETURN(auto id, registry.AddCollector(
//       {{"ocix_cache_hits_total", "Chunks found in the cache.", MetricType::kCounter, {}}},
//       [&](std::vector<Sample>& out) { out.push_back({"ocix_cache_hits_total", {}, double(store.stats().hits)}); }));
//   OCIX_ASSIGN_OR_RETURN(auto server, MetricsServer::Start(registry, "127.0.0.1:9863"));
//   ...
//   server.reset();                 // stop scrapes, then
//   registry.RemoveCollector(id);   // before `store` goes away
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ocix/core/status.h"

struct MHD_Daemon;

namespace ocix::snapshotter {

enum class MetricType { kCounter, kGauge, kHistogram };

// A value that only goes up (operations, bytes, errors).
class Counter {
 public:
  // Negative and NaN deltas are ignored: a counter never goes down.
  void Inc(double delta = 1);
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// A value that goes up and down (entries, bytes in use, mounted layers).
class Gauge {
 public:
  void Set(double value) { value_.store(value, std::memory_order_relaxed); }
  void Add(double delta);  // negative to decrease
  double Value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0};
};

// Observations counted in buckets with fixed upper bounds (e.g. fetch latency
// in seconds). Observations are rare next to FUSE operations, so a mutex keeps
// the buckets, sum and count consistent with each other for a scrape.
class Histogram {
 public:
  // Counts value in every bucket whose upper bound is >= value (Prometheus'
  // cumulative "le"); NaN is ignored.
  void Observe(double value);

  struct Snapshot {
    std::vector<double> bounds;        // upper bounds, +Inf not included
    std::vector<uint64_t> cumulative;  // one per bound, then +Inf (== count)
    double sum = 0;
    uint64_t count = 0;
  };
  Snapshot Snap() const;

 private:
  template <typename M>
  friend class MetricFamily;
  explicit Histogram(const std::vector<double>& bounds) : bounds_(bounds), counts_(bounds.size() + 1) {}

  const std::vector<double> bounds_;  // validated by the registry
  mutable std::mutex mu_;
  std::vector<uint64_t> counts_;  // per bucket (not cumulative), the last one is +Inf
  double sum_ = 0;
};

// Upper bounds start, start*factor, ... (count of them), for AddHistogram.
// InvalidArgument unless start > 0, factor > 1 and 1 <= count <= 64.
core::Result<std::vector<double>> ExponentialBuckets(double start, double factor, int count);

// A metric with fixed label names; M is Counter, Gauge or Histogram.
template <typename M>
class MetricFamily {
 public:
  // The child with these label values (one per label name, in the order the
  // names were registered), created at zero on first use. InvalidArgument for
  // the wrong number of values.
  core::Result<M*> WithLabels(const std::vector<std::string>& values);

 private:
  friend class MetricsRegistry;
  MetricFamily(std::vector<std::string> label_names, std::vector<double> bounds)
      : label_names_(std::move(label_names)), bounds_(std::move(bounds)) {}
  void Render(const std::string& name, std::string& out) const;

  const std::vector<std::string> label_names_;
  const std::vector<double> bounds_;  // histograms only
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<M>> children_;  // sorted: stable output
};

extern template class MetricFamily<Counter>;
extern template class MetricFamily<Gauge>;
extern template class MetricFamily<Histogram>;

// A family whose samples a collector computes at scrape time.
struct MetricDesc {
  std::string name;
  std::string help;
  MetricType type = MetricType::kGauge;  // kCounter or kGauge
  std::vector<std::string> label_names;
};

// One sample from a collector.
struct Sample {
  std::string name;                       // one of the collector's MetricDescs
  std::vector<std::string> label_values;  // one per label name of that desc
  double value = 0;
};

class MetricsRegistry {
 public:
  // Appends the samples of this scrape. Runs on the server's thread, so it
  // must only read state that is safe to read concurrently (atomics, a
  // Stats() snapshot under the owner's lock) and must not call RemoveCollector.
  using CollectFn = std::function<void(std::vector<Sample>& out)>;
  using CollectorId = uint64_t;

  MetricsRegistry();
  ~MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;

  // Metric names match [a-zA-Z_:][a-zA-Z0-9_:]*; label names match
  // [a-zA-Z_][a-zA-Z0-9_]*, do not start with "__", are distinct and (for
  // histograms) not "le". InvalidArgument otherwise; AlreadyExists when a
  // name is taken (a histogram X also takes X_bucket, X_sum and X_count).
  core::Result<Counter*> AddCounter(std::string name, std::string help);
  core::Result<MetricFamily<Counter>*> AddCounterFamily(std::string name, std::string help,
                                                        std::vector<std::string> label_names);
  core::Result<Gauge*> AddGauge(std::string name, std::string help);
  core::Result<MetricFamily<Gauge>*> AddGaugeFamily(std::string name, std::string help,
                                                    std::vector<std::string> label_names);
  // bounds: finite and strictly increasing; the +Inf bucket is implicit.
  core::Result<Histogram*> AddHistogram(std::string name, std::string help, std::vector<double> bounds);
  core::Result<MetricFamily<Histogram>*> AddHistogramFamily(std::string name, std::string help,
                                                            std::vector<std::string> label_names,
                                                            std::vector<double> bounds);

  // Registers the families a collector reports (counters and gauges, names
  // checked as above) and the callback run at every Render(). Samples naming
  // another family or with the wrong number of label values are dropped.
  core::Result<CollectorId> AddCollector(std::vector<MetricDesc> families, CollectFn collect);
  // When it returns, the callback is not running and will not run again, so
  // the objects it reads may be destroyed. Unknown ids are ignored.
  void RemoveCollector(CollectorId id);

  // The text exposition format 0.0.4: families sorted by name, children by
  // label values; families without samples are left out.
  std::string Render() const;

 private:
  struct Entry;
  struct Collector;
  core::Status Reserve(const std::string& name, MetricType type, const std::vector<std::string>& label_names);
  template <typename M>
  core::Result<MetricFamily<M>*> AddFamily(std::string name, std::string help, MetricType type,
                                           std::vector<std::string> label_names, std::vector<double> bounds);

  mutable std::mutex mu_;  // guards entries_, sample_names_, next_id_
  std::vector<std::unique_ptr<Entry>> entries_;
  std::set<std::string, std::less<>> sample_names_;  // every name a sample line can carry
  CollectorId next_id_ = 1;
  // Held while callbacks run so RemoveCollector can wait for a scrape in
  // flight; never taken while mu_ is held.
  mutable std::mutex collect_mu_;
  std::vector<std::unique_ptr<Collector>> collectors_;
};

// Serves a registry at GET /metrics (text/plain; version=0.0.4) over HTTP
// with libmicrohttpd's internal thread. Other paths are 404, other methods 405.
class MetricsServer {
 public:
  // address: "HOST:PORT" where HOST is an IPv4 address, a bracketed IPv6
  // address ("[::1]:9090") or a name (its first address); only that address
  // is bound. An empty HOST (":9090") binds every IPv4 interface; PORT 0
  // picks a free port (see port()). The registry must outlive the server.
  // InvalidArgument for a malformed or unknown address, Unavailable when a
  // name cannot be resolved now; IoError (or PermissionDenied) when the
  // socket cannot be bound, e.g. the port is taken.
  static core::Result<std::unique_ptr<MetricsServer>> Start(const MetricsRegistry& registry, std::string_view address);
  // Stops serving: requests in flight finish, the socket is closed.
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  uint16_t port() const { return port_; }

 private:
  struct DaemonDeleter {
    void operator()(MHD_Daemon* daemon) const;
  };
  explicit MetricsServer(uint16_t port) : port_(port) {}

  uint16_t port_;
  std::unique_ptr<MHD_Daemon, DaemonDeleter> daemon_;
};

}  // namespace ocix::snapshotter

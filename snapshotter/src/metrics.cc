#include "ocix/snapshotter/metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <utility>
#include <variant>

#include "ocix/core/unique_fd.h"

namespace ocix::snapshotter {

namespace {

using core::Result;
using core::Status;

// Go's strconv.FormatFloat(v, 'g', -1, 64) as Prometheus' own clients write
// values: shortest round-trip digits, with the special values spelt their way.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  if (ec != std::errc()) return "NaN";  // cannot happen with 64 bytes
  return std::string(buf, end);
}

void AppendEscaped(std::string& out, std::string_view s, bool quote) {
  for (char c : s) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out += c;
    }
  }
}

// {a="x",b="y"} (nothing without labels); `extra` is the histogram's le.
void AppendLabels(std::string& out, const std::vector<std::string>& names, const std::vector<std::string>& values,
                  const char* extra_name = nullptr, std::string_view extra_value = {}) {
  if (names.empty() && extra_name == nullptr) return;
  out += '{';
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) out += ',';
    out += names[i];
    out += "=\"";
    AppendEscaped(out, values[i], /*quote=*/true);
    out += '"';
  }
  if (extra_name != nullptr) {
    if (!names.empty()) out += ',';
    out += extra_name;
    out += "=\"";
    AppendEscaped(out, extra_value, /*quote=*/true);
    out += '"';
  }
  out += '}';
}

void AppendSample(std::string& out, std::string_view name, const std::vector<std::string>& names,
                  const std::vector<std::string>& values, double value) {
  out += name;
  AppendLabels(out, names, values);
  out += ' ';
  out += FormatValue(value);
  out += '\n';
}

std::string_view TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

bool IsMetricName(std::string_view s) {
  if (s.empty()) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

bool IsLabelName(std::string_view s) {
  if (s.empty() || s.starts_with("__")) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (i > 0 && c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
}

Status ValidateBounds(const std::vector<double>& bounds) {
  for (size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) return core::InvalidArgument("histogram bucket bounds must be finite");
    if (i > 0 && !(bounds[i - 1] < bounds[i])) {
      return core::InvalidArgument("histogram bucket bounds must be strictly increasing");
    }
  }
  return Status::Ok();
}

// The names a family's sample lines carry: a histogram's are all suffixed.
std::vector<std::string> SampleNames(const std::string& name, MetricType type) {
  if (type != MetricType::kHistogram) return {name};
  return {name, name + "_bucket", name + "_sum", name + "_count"};
}

// One family's text for Render: rendered separately, sorted by name, joined.
struct Block {
  std::string_view name;
  std::string_view help;
  MetricType type;
  std::string samples;
};

}  // namespace

void Counter::Inc(double delta) {
  if (!(delta >= 0)) return;  // also rejects NaN
  value_.fetch_add(delta, std::memory_order_relaxed);
}

void Gauge::Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }

void Histogram::Observe(double value) {
  if (std::isnan(value)) return;
  // The first bound >= value; past the end is the +Inf bucket.
  size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), value) - bounds_.begin();
  std::lock_guard lock(mu_);
  ++counts_[bucket];
  sum_ += value;
}

Histogram::Snapshot Histogram::Snap() const {
  Snapshot snap;
  snap.bounds = bounds_;
  snap.cumulative.reserve(counts_.size());
  std::lock_guard lock(mu_);
  uint64_t running = 0;
  for (uint64_t c : counts_) {
    running += c;
    snap.cumulative.push_back(running);
  }
  snap.count = running;
  snap.sum = sum_;
  return snap;
}

Result<std::vector<double>> ExponentialBuckets(double start, double factor, int count) {
  if (!(start > 0) || !(factor > 1) || count < 1 || count > 64) {
    return core::InvalidArgument("exponential buckets need start > 0, factor > 1 and 1 <= count <= 64");
  }
  std::vector<double> bounds;
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) bounds.push_back(bound);
  if (!std::isfinite(bounds.back())) return core::InvalidArgument("exponential buckets overflow");
  return bounds;
}

template <typename M>
Result<M*> MetricFamily<M>::WithLabels(const std::vector<std::string>& values) {
  if (values.size() != label_names_.size()) {
    return core::InvalidArgument("metric family has " + std::to_string(label_names_.size()) + " labels, got " +
                                 std::to_string(values.size()) + " values");
  }
  std::lock_guard lock(mu_);
  auto it = children_.find(values);
  if (it == children_.end()) {
    std::unique_ptr<M> child;
    if constexpr (std::is_same_v<M, Histogram>) {
      child = std::unique_ptr<Histogram>(new Histogram(bounds_));  // private constructor: make_unique cannot reach it
    } else {
      child = std::make_unique<M>();
    }
    it = children_.emplace(values, std::move(child)).first;
  }
  return it->second.get();
}

template <typename M>
void MetricFamily<M>::Render(const std::string& name, std::string& out) const {
  std::lock_guard lock(mu_);
  for (const auto& [values, child] : children_) {
    if constexpr (std::is_same_v<M, Histogram>) {
      Histogram::Snapshot snap = child->Snap();
      const std::string bucket = name + "_bucket";
      for (size_t i = 0; i <= snap.bounds.size(); ++i) {
        out += bucket;
        AppendLabels(out, label_names_, values, "le", i < snap.bounds.size() ? FormatValue(snap.bounds[i]) : "+Inf");
        out += ' ';
        out += std::to_string(snap.cumulative[i]);
        out += '\n';
      }
      AppendSample(out, name + "_sum", label_names_, values, snap.sum);
      AppendSample(out, name + "_count", label_names_, values, static_cast<double>(snap.count));
    } else {
      AppendSample(out, name, label_names_, values, child->Value());
    }
  }
}

template class MetricFamily<Counter>;
template class MetricFamily<Gauge>;
template class MetricFamily<Histogram>;

struct MetricsRegistry::Entry {
  std::string name;
  std::string help;
  MetricType type;
  std::variant<std::unique_ptr<MetricFamily<Counter>>, std::unique_ptr<MetricFamily<Gauge>>,
               std::unique_ptr<MetricFamily<Histogram>>>
      family;
};

struct MetricsRegistry::Collector {
  CollectorId id;
  std::vector<MetricDesc> families;
  CollectFn collect;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

// Checks a new family's names and claims its sample names; mu_ is held.
Status MetricsRegistry::Reserve(const std::string& name, MetricType type, const std::vector<std::string>& label_names) {
  if (!IsMetricName(name)) return core::InvalidArgument("invalid metric name \"" + name + "\"");
  auto bad_label = [&name](std::string_view why, const std::string& label) {
    std::string m = "metric ";
    m += name;
    m += ": ";
    m += why;
    m += " \"";
    m += label;
    m += '"';
    return core::InvalidArgument(std::move(m));
  };
  for (size_t i = 0; i < label_names.size(); ++i) {
    const std::string& label = label_names[i];
    if (!IsLabelName(label)) return bad_label("invalid label name", label);
    if (type == MetricType::kHistogram && label == "le") return bad_label("a histogram cannot have the label", label);
    if (std::find(label_names.begin(), label_names.begin() + i, label) != label_names.begin() + i) {
      return bad_label("duplicate label name", label);
    }
  }
  std::vector<std::string> names = SampleNames(name, type);
  for (const std::string& n : names) {
    if (sample_names_.contains(n)) return core::AlreadyExists("metric name " + n + " is already registered");
  }
  sample_names_.insert(names.begin(), names.end());
  return Status::Ok();
}

template <typename M>
Result<MetricFamily<M>*> MetricsRegistry::AddFamily(std::string name, std::string help, MetricType type,
                                                    std::vector<std::string> label_names, std::vector<double> bounds) {
  OCIX_RETURN_IF_ERROR(ValidateBounds(bounds));
  std::lock_guard lock(mu_);
  OCIX_RETURN_IF_ERROR(Reserve(name, type, label_names));
  std::unique_ptr<MetricFamily<M>> family(new MetricFamily<M>(std::move(label_names), std::move(bounds)));
  MetricFamily<M>* raw = family.get();
  entries_.push_back(std::make_unique<Entry>(Entry{std::move(name), std::move(help), type, std::move(family)}));
  return raw;
}

Result<Counter*> MetricsRegistry::AddCounter(std::string name, std::string help) {
  OCIX_ASSIGN_OR_RETURN(auto* family, AddCounterFamily(std::move(name), std::move(help), {}));
  return family->WithLabels({});
}

Result<MetricFamily<Counter>*> MetricsRegistry::AddCounterFamily(std::string name, std::string help,
                                                                 std::vector<std::string> label_names) {
  return AddFamily<Counter>(std::move(name), std::move(help), MetricType::kCounter, std::move(label_names), {});
}

Result<Gauge*> MetricsRegistry::AddGauge(std::string name, std::string help) {
  OCIX_ASSIGN_OR_RETURN(auto* family, AddGaugeFamily(std::move(name), std::move(help), {}));
  return family->WithLabels({});
}

Result<MetricFamily<Gauge>*> MetricsRegistry::AddGaugeFamily(std::string name, std::string help,
                                                             std::vector<std::string> label_names) {
  return AddFamily<Gauge>(std::move(name), std::move(help), MetricType::kGauge, std::move(label_names), {});
}

Result<Histogram*> MetricsRegistry::AddHistogram(std::string name, std::string help, std::vector<double> bounds) {
  OCIX_ASSIGN_OR_RETURN(auto* family, AddHistogramFamily(std::move(name), std::move(help), {}, std::move(bounds)));
  return family->WithLabels({});
}

Result<MetricFamily<Histogram>*> MetricsRegistry::AddHistogramFamily(std::string name, std::string help,
                                                                     std::vector<std::string> label_names,
                                                                     std::vector<double> bounds) {
  return AddFamily<Histogram>(std::move(name), std::move(help), MetricType::kHistogram, std::move(label_names),
                              std::move(bounds));
}

Result<MetricsRegistry::CollectorId> MetricsRegistry::AddCollector(std::vector<MetricDesc> families,
                                                                   CollectFn collect) {
  if (!collect) return core::InvalidArgument("collector without a callback");
  for (const MetricDesc& desc : families) {
    if (desc.type == MetricType::kHistogram) {
      return core::InvalidArgument("metric " + desc.name + ": collectors report counters and gauges only");
    }
  }
  CollectorId id;
  {
    std::lock_guard lock(mu_);
    // Check every desc (including against each other) before claiming any name.
    std::set<std::string, std::less<>> saved = sample_names_;
    for (const MetricDesc& desc : families) {
      Status status = Reserve(desc.name, desc.type, desc.label_names);
      if (!status.ok()) {
        sample_names_ = std::move(saved);
        return status;
      }
    }
    id = next_id_++;
  }
  auto collector = std::make_unique<Collector>(Collector{id, std::move(families), std::move(collect)});
  std::lock_guard lock(collect_mu_);
  collectors_.push_back(std::move(collector));
  return id;
}

void MetricsRegistry::RemoveCollector(CollectorId id) {
  std::unique_ptr<Collector> removed;
  {
    std::lock_guard lock(collect_mu_);  // waits for a scrape in flight
    auto it = std::find_if(collectors_.begin(), collectors_.end(), [id](const auto& c) { return c->id == id; });
    if (it == collectors_.end()) return;
    removed = std::move(*it);
    collectors_.erase(it);
  }
  std::lock_guard lock(mu_);
  for (const MetricDesc& desc : removed->families) {
    for (const std::string& n : SampleNames(desc.name, desc.type)) sample_names_.erase(n);
  }
}

std::string MetricsRegistry::Render() const {
  std::vector<Block> blocks;
  std::string out;
  // Collectors first, without mu_: a callback may take its owner's locks, and
  // those owners may register metrics (mu_) while holding them.
  std::lock_guard collect_lock(collect_mu_);
  for (const auto& collector : collectors_) {
    std::vector<Sample> samples;
    collector->collect(samples);
    for (const MetricDesc& desc : collector->families) {
      std::vector<const Sample*> mine;
      for (const Sample& s : samples) {
        if (s.name == desc.name && s.label_values.size() == desc.label_names.size()) mine.push_back(&s);
      }
      // Sorted like the registry's own children; a repeated label set keeps its first value.
      std::stable_sort(mine.begin(), mine.end(),
                       [](const Sample* a, const Sample* b) { return a->label_values < b->label_values; });
      Block block{desc.name, desc.help, desc.type, {}};
      for (size_t i = 0; i < mine.size(); ++i) {
        if (i > 0 && mine[i]->label_values == mine[i - 1]->label_values) continue;
        AppendSample(block.samples, desc.name, desc.label_names, mine[i]->label_values, mine[i]->value);
      }
      blocks.push_back(std::move(block));
    }
  }
  // Blocks point into collectors_ and entries_, so both locks stay held until
  // the text is assembled.
  std::lock_guard lock(mu_);
  for (const auto& entry : entries_) {
    Block block{entry->name, entry->help, entry->type, {}};
    std::visit([&](const auto& family) { family->Render(entry->name, block.samples); }, entry->family);
    blocks.push_back(std::move(block));
  }
  std::sort(blocks.begin(), blocks.end(), [](const Block& a, const Block& b) { return a.name < b.name; });
  for (const Block& block : blocks) {
    if (block.samples.empty()) continue;
    out += "# HELP ";
    out += block.name;
    out += ' ';
    AppendEscaped(out, block.help, /*quote=*/false);
    out += "\n# TYPE ";
    out += block.name;
    out += ' ';
    out += TypeName(block.type);
    out += '\n';
    out += block.samples;
  }
  return out;
}

// --- MetricsServer ---

namespace {

struct AddrInfoDeleter {
  void operator()(addrinfo* ai) const { freeaddrinfo(ai); }
};
struct ResponseDeleter {
  void operator()(MHD_Response* r) const { MHD_destroy_response(r); }
};

MHD_Result Reply(MHD_Connection* connection, unsigned int status, std::string_view body, const char* content_type,
                 const char* allow = nullptr) {
  // MUST_COPY: the body is a local string that dies before MHD sends it.
  std::unique_ptr<MHD_Response, ResponseDeleter> response(
      MHD_create_response_from_buffer(body.size(), const_cast<char*>(body.data()), MHD_RESPMEM_MUST_COPY));
  if (!response) return MHD_NO;
  if (MHD_add_response_header(response.get(), MHD_HTTP_HEADER_CONTENT_TYPE, content_type) != MHD_YES) return MHD_NO;
  if (allow != nullptr && MHD_add_response_header(response.get(), MHD_HTTP_HEADER_ALLOW, allow) != MHD_YES) {
    return MHD_NO;
  }
  return MHD_queue_response(connection, status, response.get());
}

MHD_Result HandleRequest(void* cls, MHD_Connection* connection, const char* url, const char* method,
                         const char* /*version*/, const char* /*upload_data*/, size_t* /*upload_data_size*/,
                         void** /*req_cls*/) {
  const auto* registry = static_cast<const MetricsRegistry*>(cls);
  // Answering on the first call is fine for bodiless requests; MHD closes
  // the connection after the reply if a client did send a body.
  std::string_view m(method);
  if (m != MHD_HTTP_METHOD_GET && m != MHD_HTTP_METHOD_HEAD) {
    return Reply(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "method not allowed\n", "text/plain; charset=utf-8",
                 "GET, HEAD");
  }
  if (std::string_view(url) != "/metrics") {
    return Reply(connection, MHD_HTTP_NOT_FOUND, "not found; metrics are at /metrics\n", "text/plain; charset=utf-8");
  }
  return Reply(connection, MHD_HTTP_OK, registry->Render(), "text/plain; version=0.0.4; charset=utf-8");
}

// "HOST:PORT", "[V6]:PORT" or ":PORT" into host and port digits.
Status SplitAddress(std::string_view address, std::string& host, std::string& port) {
  const std::string bad = "invalid metrics address \"" + std::string(address) + "\" (want HOST:PORT)";
  size_t colon;
  if (address.starts_with('[')) {
    size_t close = address.find(']');
    if (close == std::string_view::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return core::InvalidArgument(bad);
    }
    host = address.substr(1, close - 1);
    colon = close + 1;
    if (host.empty()) return core::InvalidArgument(bad);
  } else {
    colon = address.rfind(':');
    if (colon == std::string_view::npos) return core::InvalidArgument(bad);
    host = address.substr(0, colon);
    if (host.find(':') != std::string::npos) return core::InvalidArgument(bad + ": bracket IPv6 addresses");
  }
  port = address.substr(colon + 1);
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || port.size() > 5 || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return core::InvalidArgument(bad + ": bad port");
  }
  if (host.empty()) host = "0.0.0.0";  // Go's ":PORT" convention, IPv4 only
  return Status::Ok();
}

}  // namespace

void MetricsServer::DaemonDeleter::operator()(MHD_Daemon* daemon) const { MHD_stop_daemon(daemon); }

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const MetricsRegistry& registry, std::string_view address) {
  std::string host, port_text;
  OCIX_RETURN_IF_ERROR(SplitAddress(address, host, port_text));

  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  int gai = getaddrinfo(host.c_str(), port_text.c_str(), &hints, &found);
  std::unique_ptr<addrinfo, AddrInfoDeleter> info(found);
  if (gai == EAI_AGAIN) return core::Unavailable("metrics address " + host + ": " + gai_strerror(gai));
  if (gai != 0 || info == nullptr) return core::InvalidArgument("metrics address " + host + ": " + gai_strerror(gai));

  const std::string what = "metrics address " + std::string(address);
  core::UniqueFd fd(socket(info->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return core::ErrnoError(what + ": socket", errno);
  int on = 1;
  // A restarted daemon rebinds while the old connections sit in TIME_WAIT.
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) != 0) {
    return core::ErrnoError(what + ": SO_REUSEADDR", errno);
  }
  // "[::]:PORT" means IPv6 only: bind exactly what was asked for.
  if (info->ai_family == AF_INET6 && setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) != 0) {
    return core::ErrnoError(what + ": IPV6_V6ONLY", errno);
  }
  if (bind(fd.get(), info->ai_addr, info->ai_addrlen) != 0) {
    int err = errno;
    Status status = core::ErrnoError(what + ": bind", err);
    // EINVAL/EADDRNOTAVAIL are about the machine, not the string's syntax.
    if (status.code() == core::Code::kInvalidArgument) return core::IoError(status.message());
    return status;
  }
  if (listen(fd.get(), 64) != 0) return core::ErrnoError(what + ": listen", errno);
  sockaddr_storage bound{};
  socklen_t bound_len = sizeof(bound);
  if (getsockname(fd.get(), reinterpret_cast<sockaddr*>(&bound), &bound_len) != 0) {
    return core::ErrnoError(what + ": getsockname", errno);
  }
  uint16_t port = bound.ss_family == AF_INET6 ? ntohs(reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port)
                                              : ntohs(reinterpret_cast<sockaddr_in*>(&bound)->sin_port);

  std::unique_ptr<MetricsServer> server(new MetricsServer(port));
  unsigned int flags = MHD_USE_AUTO_INTERNAL_THREAD;
  if (info->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
  // MHD owns the socket from here: it closes it in MHD_stop_daemon, and on
  // some failure paths of MHD_start_daemon but not others, so a failed start
  // leaks it rather than risking a double close.
  int listen_fd = fd.Release();
  server->daemon_.reset(MHD_start_daemon(
      flags, 0, nullptr, nullptr, &HandleRequest, const_cast<MetricsRegistry*>(&registry), MHD_OPTION_LISTEN_SOCKET,
      listen_fd, MHD_OPTION_CONNECTION_LIMIT, 64u, MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END));
  if (!server->daemon_) return core::Internal(what + ": cannot start the HTTP server");
  return server;
}

MetricsServer::~MetricsServer() = default;

}  // namespace ocix::snapshotter

#include "ocix/snapshotter/metrics.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "ocix/core/unique_fd.h"

namespace ocix::snapshotter {
namespace {

TEST(MetricsRegistryTest, CounterText) {
  MetricsRegistry registry;
  auto counter = registry.AddCounter("ocix_test_requests_total", "Requests served.");
  ASSERT_TRUE(counter.ok()) << counter.status().ToString();
  EXPECT_EQ(registry.Render(),
            "# HELP ocix_test_requests_total Requests served.\n"
            "# TYPE ocix_test_requests_total counter\n"
            "ocix_test_requests_total 0\n");
  (*counter)->Inc();
  (*counter)->Inc(2.5);
  (*counter)->Inc(-7);  // ignored: counters never go down
  (*counter)->Inc(std::nan(""));
  EXPECT_EQ((*counter)->Value(), 3.5);
  EXPECT_EQ(registry.Render(),
            "# HELP ocix_test_requests_total Requests served.\n"
            "# TYPE ocix_test_requests_total counter\n"
            "ocix_test_requests_total 3.5\n");
}

TEST(MetricsRegistryTest, GaugeAndLabelledFamilyText) {
  MetricsRegistry registry;
  auto gauge = registry.AddGauge("ocix_test_mounted_layers", "Layers mounted.");
  ASSERT_TRUE(gauge.ok());
  (*gauge)->Set(5);
  (*gauge)->Add(-2);
  auto ops = registry.AddCounterFamily("ocix_fuse_operations_total", "FUSE operations.", {"op", "layer"});
  ASSERT_TRUE(ops.ok());
  auto read = (*ops)->WithLabels({"read", "sha256:aa"});
  auto lookup = (*ops)->WithLabels({"lookup", "sha256:aa"});
  ASSERT_TRUE(read.ok() && lookup.ok());
  (*read)->Inc(10);
  (*lookup)->Inc(1e6);
  // The same label values give the same child.
  auto read_again = (*ops)->WithLabels({"read", "sha256:aa"});
  ASSERT_TRUE(read_again.ok());
  EXPECT_EQ(*read_again, *read);
  EXPECT_EQ((*ops)->WithLabels({"read"}).status().code(), core::Code::kInvalidArgument);

  // Families sorted by name, children by label values.
  EXPECT_EQ(registry.Render(),
            "# HELP ocix_fuse_operations_total FUSE operations.\n"
            "# TYPE ocix_fuse_operations_total counter\n"
            "ocix_fuse_operations_total{op=\"lookup\",layer=\"sha256:aa\"} 1e+06\n"
            "ocix_fuse_operations_total{op=\"read\",layer=\"sha256:aa\"} 10\n"
            "# HELP ocix_test_mounted_layers Layers mounted.\n"
            "# TYPE ocix_test_mounted_layers gauge\n"
            "ocix_test_mounted_layers 3\n");
}

TEST(MetricsRegistryTest, FamilyWithoutChildrenIsLeftOut) {
  MetricsRegistry registry;
  ASSERT_TRUE(registry.AddGaugeFamily("ocix_test_by_layer", "Per layer.", {"layer"}).ok());
  EXPECT_EQ(registry.Render(), "");
}

TEST(MetricsRegistryTest, SpecialValues) {
  MetricsRegistry registry;
  auto a = registry.AddGauge("a", "a");
  auto b = registry.AddGauge("b", "b");
  auto c = registry.AddGauge("c", "c");
  auto d = registry.AddGauge("d", "d");
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && d.ok());
  (*a)->Set(std::numeric_limits<double>::infinity());
  (*b)->Set(-std::numeric_limits<double>::infinity());
  (*c)->Set(std::nan(""));
  (*d)->Set(0.000123);
  EXPECT_EQ(registry.Render(),
            "# HELP a a\n# TYPE a gauge\na +Inf\n"
            "# HELP b b\n# TYPE b gauge\nb -Inf\n"
            "# HELP c c\n# TYPE c gauge\nc NaN\n"
            "# HELP d d\n# TYPE d gauge\nd 0.000123\n");
}

TEST(MetricsRegistryTest, Escaping) {
  MetricsRegistry registry;
  auto family = registry.AddGaugeFamily("ocix_test_escape", "Help with \\ and\nnewline and \"quotes\".", {"path"});
  ASSERT_TRUE(family.ok());
  auto child = (*family)->WithLabels({"a\"b\\c\nd"});
  ASSERT_TRUE(child.ok());
  (*child)->Set(1);
  // HELP escapes backslash and newline only; label values also the quote.
  EXPECT_EQ(registry.Render(),
            "# HELP ocix_test_escape Help with \\\\ and\\nnewline and \"quotes\".\n"
            "# TYPE ocix_test_escape gauge\n"
            "ocix_test_escape{path=\"a\\\"b\\\\c\\nd\"} 1\n");
}

TEST(MetricsRegistryTest, HistogramText) {
  MetricsRegistry registry;
  auto h = registry.AddHistogram("ocix_fetch_seconds", "Fetch latency.", {0.1, 1, 10});
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  for (double v : {0.05, 0.1, 0.5, 100.0}) (*h)->Observe(v);  // 0.1 falls in le="0.1": bounds are inclusive
  (*h)->Observe(std::nan(""));                                // ignored
  EXPECT_EQ(registry.Render(),
            "# HELP ocix_fetch_seconds Fetch latency.\n"
            "# TYPE ocix_fetch_seconds histogram\n"
            "ocix_fetch_seconds_bucket{le=\"0.1\"} 2\n"
            "ocix_fetch_seconds_bucket{le=\"1\"} 3\n"
            "ocix_fetch_seconds_bucket{le=\"10\"} 3\n"
            "ocix_fetch_seconds_bucket{le=\"+Inf\"} 4\n"
            "ocix_fetch_seconds_sum 100.65\n"
            "ocix_fetch_seconds_count 4\n");
}

TEST(MetricsRegistryTest, HistogramFamilyText) {
  MetricsRegistry registry;
  auto family = registry.AddHistogramFamily("ocix_fetch_seconds", "Fetch latency.", {"registry"}, {0.5});
  ASSERT_TRUE(family.ok());
  auto child = (*family)->WithLabels({"r.example"});
  ASSERT_TRUE(child.ok());
  (*child)->Observe(0.25);
  (*child)->Observe(0.75);
  EXPECT_EQ(registry.Render(),
            "# HELP ocix_fetch_seconds Fetch latency.\n"
            "# TYPE ocix_fetch_seconds histogram\n"
            "ocix_fetch_seconds_bucket{registry=\"r.example\",le=\"0.5\"} 1\n"
            "ocix_fetch_seconds_bucket{registry=\"r.example\",le=\"+Inf\"} 2\n"
            "ocix_fetch_seconds_sum{registry=\"r.example\"} 1\n"
            "ocix_fetch_seconds_count{registry=\"r.example\"} 2\n");
}

TEST(MetricsRegistryTest, HistogramBucketMath) {
  MetricsRegistry registry;
  auto bounds = ExponentialBuckets(0.001, 2, 4);
  ASSERT_TRUE(bounds.ok());
  EXPECT_EQ(*bounds, (std::vector<double>{0.001, 0.002, 0.004, 0.008}));
  auto h = registry.AddHistogram("h", "h", *bounds);
  ASSERT_TRUE(h.ok());
  // Just below, at and just above each bound, below the first and above the last.
  for (double v : {0.0, -1.0, 0.001, 0.0015, 0.002, 0.0020001, 0.008, 0.0081, 1e9}) (*h)->Observe(v);
  Histogram::Snapshot snap = (*h)->Snap();
  EXPECT_EQ(snap.bounds, *bounds);
  // <=0.001: 0, -1, 0.001; <=0.002: +0.0015, 0.002; <=0.004: +0.0020001; <=0.008: +0.008; +Inf: +0.0081, 1e9.
  EXPECT_EQ(snap.cumulative, (std::vector<uint64_t>{3, 5, 6, 7, 9}));
  EXPECT_EQ(snap.count, 9u);
  EXPECT_DOUBLE_EQ(snap.sum, -1.0 + 0.001 + 0.0015 + 0.002 + 0.0020001 + 0.008 + 0.0081 + 1e9);

  EXPECT_FALSE(ExponentialBuckets(0, 2, 3).ok());
  EXPECT_FALSE(ExponentialBuckets(1, 1, 3).ok());
  EXPECT_FALSE(ExponentialBuckets(1, 2, 0).ok());
  EXPECT_FALSE(ExponentialBuckets(1e300, 1e10, 64).ok());

  // An empty bound list is just the +Inf bucket.
  auto only_inf = registry.AddHistogram("only_inf", "x", {});
  ASSERT_TRUE(only_inf.ok());
  (*only_inf)->Observe(3);
  EXPECT_EQ((*only_inf)->Snap().cumulative, (std::vector<uint64_t>{1}));
}

TEST(MetricsRegistryTest, RejectsBadNames) {
  MetricsRegistry registry;
  EXPECT_EQ(registry.AddCounter("", "x").status().code(), core::Code::kInvalidArgument);
  EXPECT_EQ(registry.AddCounter("9lives", "x").status().code(), core::Code::kInvalidArgument);
  EXPECT_EQ(registry.AddCounter("has-dash", "x").status().code(), core::Code::kInvalidArgument);
  EXPECT_TRUE(registry.AddCounter("ns:sub_total", "x").ok());
  EXPECT_EQ(registry.AddGauge("ns:sub_total", "x").status().code(), core::Code::kAlreadyExists);
  EXPECT_EQ(registry.AddCounterFamily("c1", "x", {"__reserved"}).status().code(), core::Code::kInvalidArgument);
  EXPECT_EQ(registry.AddCounterFamily("c2", "x", {"a:b"}).status().code(), core::Code::kInvalidArgument);
  EXPECT_EQ(registry.AddCounterFamily("c3", "x", {"op", "op"}).status().code(), core::Code::kInvalidArgument);
  EXPECT_EQ(registry.AddHistogramFamily("h1", "x", {"le"}, {1}).status().code(), core::Code::kInvalidArgument);
  EXPECT_TRUE(registry.AddCounterFamily("c4", "x", {"le"}).ok());  // only histograms reserve le
  EXPECT_EQ(registry.AddHistogram("h2", "x", {1, 1}).status().code(), core::Code::kInvalidArgument);
  EXPECT_EQ(registry.AddHistogram("h3", "x", {2, 1}).status().code(), core::Code::kInvalidArgument);
  EXPECT_EQ(registry.AddHistogram("h4", "x", {1, std::numeric_limits<double>::infinity()}).status().code(),
            core::Code::kInvalidArgument);
  // A histogram's sample names clash both ways.
  EXPECT_TRUE(registry.AddHistogram("lat", "x", {1}).ok());
  EXPECT_EQ(registry.AddCounter("lat_sum", "x").status().code(), core::Code::kAlreadyExists);
  EXPECT_TRUE(registry.AddCounter("size_count", "x").ok());
  EXPECT_EQ(registry.AddHistogram("size", "x", {1}).status().code(), core::Code::kAlreadyExists);
  // Failed registrations claimed nothing.
  EXPECT_TRUE(registry.AddCounter("h2", "x").ok());
}

TEST(MetricsRegistryTest, Collectors) {
  MetricsRegistry registry;
  int calls = 0;
  double hits = 7;
  auto id = registry.AddCollector(
      {{"ocix_chunk_cache_hits_total", "Chunk cache hits.", MetricType::kCounter, {}},
       {"ocix_fuse_layer_reads_total", "Reads per layer.", MetricType::kCounter, {"layer"}},
       {"ocix_fuse_layer_empty", "No samples.", MetricType::kGauge, {}}},
      [&](std::vector<Sample>& out) {
        ++calls;
        out.push_back({"ocix_chunk_cache_hits_total", {}, hits});
        out.push_back({"ocix_fuse_layer_reads_total", {"sha256:bb"}, 2});
        out.push_back({"ocix_fuse_layer_reads_total", {"sha256:aa"}, 1});
        out.push_back({"ocix_fuse_layer_reads_total", {"sha256:aa"}, 99});  // repeated label set: dropped
        out.push_back({"ocix_fuse_layer_reads_total", {}, 5});              // wrong label count: dropped
        out.push_back({"ocix_not_declared", {}, 5});                        // unknown family: dropped
      });
  ASSERT_TRUE(id.ok()) << id.status().ToString();
  auto gauge = registry.AddGauge("ocix_a_gauge", "Registered metrics mix with collected ones.");
  ASSERT_TRUE(gauge.ok());
  const std::string expected =
      "# HELP ocix_a_gauge Registered metrics mix with collected ones.\n"
      "# TYPE ocix_a_gauge gauge\n"
      "ocix_a_gauge 0\n"
      "# HELP ocix_chunk_cache_hits_total Chunk cache hits.\n"
      "# TYPE ocix_chunk_cache_hits_total counter\n"
      "ocix_chunk_cache_hits_total 7\n"
      "# HELP ocix_fuse_layer_reads_total Reads per layer.\n"
      "# TYPE ocix_fuse_layer_reads_total counter\n"
      "ocix_fuse_layer_reads_total{layer=\"sha256:aa\"} 1\n"
      "ocix_fuse_layer_reads_total{layer=\"sha256:bb\"} 2\n";
  EXPECT_EQ(registry.Render(), expected);
  EXPECT_EQ(calls, 1);
  hits = 8;
  EXPECT_NE(registry.Render().find("ocix_chunk_cache_hits_total 8\n"), std::string::npos);

  // Collector names are taken like any other.
  EXPECT_EQ(registry.AddCounter("ocix_chunk_cache_hits_total", "x").status().code(), core::Code::kAlreadyExists);
  EXPECT_EQ(
      registry
          .AddCollector({{"ocix_new", "x", MetricType::kGauge, {}}, {"ocix_a_gauge", "x", MetricType::kGauge, {}}},
                        [](std::vector<Sample>&) {})
          .status()
          .code(),
      core::Code::kAlreadyExists);
  EXPECT_TRUE(registry.AddGauge("ocix_new", "x").ok());  // the failed collector claimed nothing
  EXPECT_EQ(
      registry.AddCollector({{"h", "x", MetricType::kHistogram, {}}}, [](std::vector<Sample>&) {}).status().code(),
      core::Code::kInvalidArgument);
  EXPECT_EQ(registry.AddCollector({}, nullptr).status().code(), core::Code::kInvalidArgument);

  registry.RemoveCollector(*id);
  registry.RemoveCollector(*id);  // unknown now: ignored
  const int calls_before = calls;
  EXPECT_EQ(registry.Render().find("ocix_chunk_cache_hits_total"), std::string::npos);
  EXPECT_EQ(calls, calls_before);
  EXPECT_TRUE(registry.AddCounter("ocix_chunk_cache_hits_total", "now free").ok());
}

TEST(MetricsRegistryTest, ConcurrentUpdatesAndScrapes) {
  MetricsRegistry registry;
  auto counter = registry.AddCounter("c_total", "c");
  auto gauge = registry.AddGauge("g", "g");
  auto family = registry.AddCounterFamily("ops_total", "ops", {"op"});
  auto hist = registry.AddHistogram("h_seconds", "h", {0.5});
  ASSERT_TRUE(counter.ok() && gauge.ok() && family.ok() && hist.ok());
  constexpr int kThreads = 8;
  constexpr int kIterations = 20000;
  constexpr uint64_t kTotal = uint64_t{kThreads} * kIterations;
  std::atomic<bool> done{false};
  std::thread scraper([&] {
    while (!done.load()) EXPECT_FALSE(registry.Render().empty());
  });
  std::vector<std::thread> threads;
  threads.reserve(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kIterations; ++i) {
        (*counter)->Inc();
        (*gauge)->Add(t % 2 == 0 ? 1 : -1);
        // Looked up every time: children are created concurrently too.
        auto child = (*family)->WithLabels({i % 2 == 0 ? "read" : "lookup"});
        ASSERT_TRUE(child.ok());
        (*child)->Inc();
        (*hist)->Observe(i % 2 == 0 ? 0.25 : 1);
      }
    });
  }
  for (auto& t : threads) t.join();
  done = true;
  scraper.join();
  EXPECT_EQ((*counter)->Value(), kTotal);
  EXPECT_EQ((*gauge)->Value(), 0);
  EXPECT_EQ((*(*family)->WithLabels({"read"}))->Value(), kTotal / 2);
  EXPECT_EQ((*(*family)->WithLabels({"lookup"}))->Value(), kTotal / 2);
  Histogram::Snapshot snap = (*hist)->Snap();
  EXPECT_EQ(snap.cumulative, (std::vector<uint64_t>{kTotal / 2, kTotal}));
  EXPECT_DOUBLE_EQ(snap.sum, static_cast<double>(kTotal) * 0.625);  // half 0.25, half 1
}

// RemoveCollector waits for a scrape in flight, so the collector's objects
// can be destroyed right after it.
TEST(MetricsRegistryTest, RemoveCollectorWaitsForScrape) {
  MetricsRegistry registry;
  std::atomic<bool> in_collect{false};
  std::atomic<bool> finished{false};
  auto id = registry.AddCollector({{"slow", "x", MetricType::kGauge, {}}}, [&](std::vector<Sample>& out) {
    in_collect = true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    out.push_back({"slow", {}, 1});
    finished = true;
  });
  ASSERT_TRUE(id.ok());
  std::thread scraper([&] { (void)registry.Render(); });
  while (!in_collect.load()) std::this_thread::yield();
  registry.RemoveCollector(*id);
  EXPECT_TRUE(finished.load());
  scraper.join();
}

// --- MetricsServer ---

struct HttpReply {
  int status = 0;
  std::string headers;
  std::string body;
};

// A TCP connection to the loopback address of either family (invalid when refused).
core::UniqueFd Connect(uint16_t port, bool v6 = false) {
  core::UniqueFd fd(socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_TRUE(fd.valid());
  sockaddr_storage storage{};
  socklen_t len;
  if (v6) {
    auto* addr = reinterpret_cast<sockaddr_in6*>(&storage);
    addr->sin6_family = AF_INET6;
    addr->sin6_port = htons(port);
    addr->sin6_addr = in6addr_loopback;
    len = sizeof(*addr);
  } else {
    auto* addr = reinterpret_cast<sockaddr_in*>(&storage);
    addr->sin_family = AF_INET;
    addr->sin_port = htons(port);
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof(*addr);
  }
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&storage), len) != 0) return {};
  return fd;
}

// One HTTP/1.1 request over a plain socket (Connection: close, read to EOF).
HttpReply HttpRequest(uint16_t port, const std::string& method, const std::string& path, bool v6 = false) {
  HttpReply reply;
  core::UniqueFd fd = Connect(port, v6);
  if (!fd.valid()) {
    ADD_FAILURE() << "connect: " << std::strerror(errno);
    return reply;
  }
  std::string request = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  EXPECT_EQ(send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL), static_cast<ssize_t>(request.size()));
  std::string raw;
  char buf[4096];
  for (ssize_t n; (n = recv(fd.get(), buf, sizeof(buf), 0)) > 0;) raw.append(buf, n);
  size_t end = raw.find("\r\n\r\n");
  if (end == std::string::npos || raw.compare(0, 9, "HTTP/1.1 ") != 0) {
    ADD_FAILURE() << "bad reply: " << raw;
    return reply;
  }
  reply.status = std::stoi(raw.substr(9, 3));
  reply.headers = raw.substr(0, end);
  reply.body = raw.substr(end + 4);
  return reply;
}

TEST(MetricsServerTest, ServesMetrics) {
  MetricsRegistry registry;
  auto counter = registry.AddCounter("ocix_test_total", "A test counter.");
  ASSERT_TRUE(counter.ok());
  (*counter)->Inc(3);
  auto server = MetricsServer::Start(registry, "127.0.0.1:0");
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const uint16_t port = (*server)->port();
  ASSERT_NE(port, 0);

  HttpReply reply = HttpRequest(port, "GET", "/metrics");
  EXPECT_EQ(reply.status, 200);
  EXPECT_NE(reply.headers.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << reply.headers;
  EXPECT_EQ(reply.body,
            "# HELP ocix_test_total A test counter.\n"
            "# TYPE ocix_test_total counter\n"
            "ocix_test_total 3\n");
  // Every scrape renders afresh; a query string does not change the path.
  (*counter)->Inc();
  EXPECT_NE(HttpRequest(port, "GET", "/metrics?x=1").body.find("ocix_test_total 4\n"), std::string::npos);

  HttpReply head = HttpRequest(port, "HEAD", "/metrics");
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.body, "");

  EXPECT_EQ(HttpRequest(port, "GET", "/").status, 404);
  EXPECT_EQ(HttpRequest(port, "GET", "/metricsx").status, 404);
  HttpReply post = HttpRequest(port, "POST", "/metrics");
  EXPECT_EQ(post.status, 405);
  EXPECT_NE(post.headers.find("Allow: GET, HEAD"), std::string::npos) << post.headers;

  // Destroying the server closes the socket.
  server = core::Internal("dropped");
  EXPECT_FALSE(Connect(port).valid());
}

TEST(MetricsServerTest, PortInUseIsIoError) {
  MetricsRegistry registry;
  auto first = MetricsServer::Start(registry, "127.0.0.1:0");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  auto second = MetricsServer::Start(registry, "127.0.0.1:" + std::to_string((*first)->port()));
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), core::Code::kIoError) << second.status().ToString();
}

TEST(MetricsServerTest, BadAddresses) {
  MetricsRegistry registry;
  for (const char* address : {"", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:65536", "127.0.0.1:-1",
                              "127.0.0.1:123456", "::1:80", "[::1]", "[::1]80", "[]:80", "[::1]:"}) {
    auto server = MetricsServer::Start(registry, address);
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_EQ(server.status().code(), core::Code::kInvalidArgument) << address << ": " << server.status().ToString();
  }
  // Unavailable when there is no resolver to ask.
  auto unknown = MetricsServer::Start(registry, "no-such-host.invalid:80");
  ASSERT_FALSE(unknown.ok());
  EXPECT_TRUE(unknown.status().code() == core::Code::kInvalidArgument ||
              unknown.status().code() == core::Code::kUnavailable)
      << unknown.status().ToString();
  // An address that is not this machine's cannot be bound.
  auto foreign = MetricsServer::Start(registry, "192.0.2.1:0");
  ASSERT_FALSE(foreign.ok());
  EXPECT_EQ(foreign.status().code(), core::Code::kIoError) << foreign.status().ToString();
}

TEST(MetricsServerTest, Ipv6Loopback) {
  MetricsRegistry registry;
  auto server = MetricsServer::Start(registry, "[::1]:0");
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback: " << server.status().ToString();
  const uint16_t port = (*server)->port();
  ASSERT_NE(port, 0);
  EXPECT_EQ(HttpRequest(port, "GET", "/metrics", /*v6=*/true).status, 200);
  // Only ::1 is bound: the same port on 127.0.0.1 is not served.
  EXPECT_FALSE(Connect(port).valid());
}

}  // namespace
}  // namespace ocix::snapshotter

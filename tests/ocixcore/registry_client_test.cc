// RegistryClient against a real docker-registry (Debian's distribution v2),
// started per test on 127.0.0.1 with a free port and a private temp dir,
// optionally behind integration/lib/fault_proxy.py or with Basic (htpasswd)
// or Bearer (integration/lib/token_server.py) auth. Skips when
// /usr/bin/docker-registry (or a helper's dependency) is missing.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ocix/core/registry/client.h"
#include "ocix/core/sha256.h"

namespace ocix::core {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;

const char* const kRegistryBin = "/usr/bin/docker-registry";
const char* const kPython = "/usr/bin/python3";  // Debian's, which has python3-jwt

fs::path HelperDir() { return fs::path(__FILE__).parent_path() / ".." / ".." / "integration" / "lib"; }

std::string ReadFile(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}
void WriteFile(const fs::path& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// A port nothing listens on right now (the kernel picks it; we close it).
int FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  int port = -1;
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0)
    port = ntohs(addr.sin_port);
  close(fd);
  return port;
}

// True once 127.0.0.1:port answers an HTTP request to path with any status.
bool HttpAnswers(int port, const std::string& path) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  bool ok = false;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
    std::string req = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(req.size())) {
      char buf[16] = {};
      ok = recv(fd, buf, sizeof buf - 1, 0) >= 12 && std::string_view(buf).starts_with("HTTP/1.");
    }
  }
  close(fd);
  return ok;
}

// A child process, killed (TERM, then KILL) when this goes away. The child
// also dies with the test process (PR_SET_PDEATHSIG).
class Process {
 public:
  Process(const std::vector<std::string>& argv, const fs::path& log) {
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = fork();
    if (pid_ == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);
      FILE* f = std::fopen(log.c_str(), "a");
      if (f) {
        dup2(fileno(f), 1);
        dup2(fileno(f), 2);
      }
      execv(args[0], args.data());
      _exit(127);
    }
  }
  ~Process() { Stop(); }
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  bool Running() {
    if (pid_ <= 0) return false;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    return true;
  }
  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
};

struct Blob {
  Descriptor desc;
  std::string data;
  std::string path;
};

class RegistryServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access(kRegistryBin, X_OK) != 0)
      GTEST_SKIP() << kRegistryBin << " not installed (apt-get install docker-registry)";
    std::string name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::temp_directory_path() / ("ocix-registry-" + std::to_string(getpid()) + "-" + name);
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    procs_.clear();  // stops every child (TERM, then KILL)
    if (!HasFailure() && !dir_.empty()) fs::remove_all(dir_);
    if (HasFailure()) std::fprintf(stderr, "kept %s for inspection\n", dir_.c_str());
  }

  // Starts a registry with `auth_yaml` (an "auth:" block or empty); returns its port or -1.
  int StartRegistry(const std::string& name, const std::string& auth_yaml = "") {
    fs::path d = dir_ / name;
    fs::create_directories(d / "data");
    for (int attempt = 0; attempt < 3; ++attempt) {  // the free port may be taken meanwhile
      int port = FreePort();
      WriteFile(d / "config.yml",
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n"
                "storage:\n  filesystem:\n    rootdirectory: " +
                    (d / "data").string() +
                    "\n  delete:\n    enabled: true\n"
                    "http:\n  addr: 127.0.0.1:" +
                    std::to_string(port) + "\n  secret: ocix-test\n" + auth_yaml);
      auto p = std::make_unique<Process>(std::vector<std::string>{kRegistryBin, "serve", (d / "config.yml").string()},
                                         d / "registry.log");
      for (int i = 0; i < 100 && p->Running(); ++i) {
        if (HttpAnswers(port, "/v2/")) {
          procs_.push_back(std::move(p));
          return port;
        }
        std::this_thread::sleep_for(milliseconds(100));
      }
    }
    ADD_FAILURE() << "docker-registry did not start; log:\n" << ReadFile(d / "registry.log");
    return -1;
  }

  // Starts a Python helper that writes its port to a file; returns the port or -1.
  int StartHelper(const std::string& script, std::vector<std::string> args, const std::string& name) {
    fs::path port_file = dir_ / (name + ".port");
    std::vector<std::string> argv = {
        kPython, (HelperDir() / script).string(), "--port-file", port_file.string(), "--lifetime", "300"};
    argv.insert(argv.end(), args.begin(), args.end());
    auto p = std::make_unique<Process>(argv, dir_ / (name + ".log"));
    for (int i = 0; i < 100 && p->Running(); ++i) {
      std::string port = ReadFile(port_file);
      if (!port.empty()) {
        procs_.push_back(std::move(p));
        return std::stoi(port);
      }
      std::this_thread::sleep_for(milliseconds(100));
    }
    ADD_FAILURE() << script << " did not start; log:\n" << ReadFile(dir_ / (name + ".log"));
    return -1;
  }

  int StartProxy(int upstream, std::vector<std::string> args, const std::string& name = "proxy") {
    args.insert(args.begin(), {"--upstream", "127.0.0.1:" + std::to_string(upstream)});
    return StartHelper("fault_proxy.py", args, name);
  }

  // The proxy's counters: {"requests", "failed", "dropped", "bytes_served"}.
  std::string ProxyStats(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string out;
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) {
      std::string req = "GET /__proxy/stats HTTP/1.0\r\nHost: x\r\n\r\n";
      (void)!send(fd, req.data(), req.size(), MSG_NOSIGNAL);
      char buf[4096];
      ssize_t n;
      while ((n = recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, static_cast<size_t>(n));
    }
    close(fd);
    return out.substr(out.find("\r\n\r\n") == std::string::npos ? 0 : out.find("\r\n\r\n") + 4);
  }

  RegistryOptions Options() {
    RegistryOptions o;
    o.certs_dir = "";  // built-in defaults: plain HTTP to 127.0.0.1
    o.docker_config = (dir_ / "no-docker-config.json").string();
    o.initial_backoff = milliseconds(20);
    o.max_backoff = milliseconds(200);
    o.connect_timeout = milliseconds(2000);
    o.low_speed_timeout = milliseconds(10000);
    o.push_chunk_threshold = 64 << 10;
    o.push_chunk_size = 48 << 10;
    return o;
  }

  Reference Ref(int port, const std::string& repo_and_tag) {
    auto r = Reference::Parse("127.0.0.1:" + std::to_string(port) + "/" + repo_and_tag);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : Reference{};
  }

  Blob MakeBlob(const std::string& data, const std::string& media_type = "application/vnd.oci.image.layer.v1.tar") {
    Blob b;
    b.data = data;
    b.desc.media_type = media_type;
    b.desc.digest = Sha256::OciDigest(data);
    b.desc.size = static_cast<int64_t>(data.size());
    b.path = (dir_ / ("blob-" + b.desc.digest.substr(7, 16))).string();
    WriteFile(b.path, data);
    return b;
  }

  static std::string RandomBytes(size_t n, uint32_t seed) {
    std::mt19937 rng(seed);
    std::string s(n, '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    return s;
  }

  static std::string DescriptorJson(const Descriptor& d, const std::string& platform_json = "") {
    return "{\"mediaType\":\"" + d.media_type + "\",\"digest\":\"" + d.digest +
           "\",\"size\":" + std::to_string(d.size) + (platform_json.empty() ? "" : ",\"platform\":" + platform_json) +
           "}";
  }

  // Pushes an image manifest (config + layers) by digest and returns its bytes and descriptor.
  Blob PushImageManifest(RegistryClient& c, const Reference& repo, const std::vector<Blob>& layers,
                         const std::string& arch) {
    Blob config = MakeBlob("{\"architecture\":\"" + arch + "\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\"}}",
                           "application/vnd.oci.image.config.v1+json");
    EXPECT_TRUE(c.PushBlob(repo, config.desc, config.path).ok());
    std::string body = "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"config\":" +
                       DescriptorJson(config.desc) + ",\"layers\":[";
    for (size_t i = 0; i < layers.size(); ++i) {
      EXPECT_TRUE(c.PushBlob(repo, layers[i].desc, layers[i].path).ok());
      body += (i ? "," : "") + DescriptorJson(layers[i].desc);
    }
    body += "]}";
    Blob m = MakeBlob(body, "application/vnd.oci.image.manifest.v1+json");
    Reference by_digest = repo;
    by_digest.tag.clear();
    by_digest.digest = m.desc.digest;
    Status s = c.PushManifest(by_digest, m.desc.media_type, body);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return m;
  }

  // A two-platform index tagged `ref`; returns {index, amd64 manifest, arm64 manifest}.
  std::vector<Blob> PushIndex(RegistryClient& c, const Reference& ref, const std::vector<Blob>& layers) {
    Blob amd = PushImageManifest(c, ref, layers, "amd64");
    Blob arm = PushImageManifest(c, ref, {layers.front()}, "arm64");
    std::string body =
        "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\",\"manifests\":[" +
        DescriptorJson(amd.desc, R"({"os":"linux","architecture":"amd64"})") + "," +
        DescriptorJson(arm.desc, R"({"os":"linux","architecture":"arm64","variant":"v8"})") + "]}";
    Blob index = MakeBlob(body, "application/vnd.oci.image.index.v1+json");
    Status s = c.PushManifest(ref, index.desc.media_type, body);
    EXPECT_TRUE(s.ok()) << s.ToString();
    return {index, amd, arm};
  }

  // The registry's stored copy of a blob (filesystem driver layout).
  fs::path StoredBlob(const std::string& registry, const std::string& digest) {
    std::string hex = digest.substr(7);
    return dir_ / registry / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256" / hex.substr(0, 2) / hex /
           "data";
  }

  fs::path dir_;
  std::vector<std::unique_ptr<Process>> procs_;
};

TEST_F(RegistryServerTest, PushPullRoundTrip) {
  int port = StartRegistry("reg");
  ASSERT_GT(port, 0);
  RegistryClient c(Options());
  Reference ref = Ref(port, "ocix/app:v1");
  Blob small = MakeBlob(RandomBytes(1000, 1));
  Blob big = MakeBlob(RandomBytes(200 << 10, 2));  // > push_chunk_threshold: PATCH chunks
  Blob empty = MakeBlob("");

  auto before = c.BlobExists(ref, big.desc.digest);
  ASSERT_TRUE(before.ok()) << before.status().ToString();
  EXPECT_FALSE(*before);

  uint64_t last_progress = 0;
  RegistryStats s0 = c.stats();
  Status pushed = c.PushBlob(ref, big.desc, big.path, {}, [&](uint64_t done, uint64_t total) {
    EXPECT_EQ(total, big.data.size());
    last_progress = done;
  });
  ASSERT_TRUE(pushed.ok()) << pushed.ToString();
  EXPECT_EQ(last_progress, big.data.size());
  // HEAD + POST + 5 PATCHes (48 KiB chunks of 200 KiB) + PUT.
  EXPECT_EQ(c.stats().requests - s0.requests, 8u);
  EXPECT_EQ(c.stats().bytes_uploaded - s0.bytes_uploaded, big.data.size());

  s0 = c.stats();
  ASSERT_TRUE(c.PushBlob(ref, small.desc, small.path).ok());
  EXPECT_EQ(c.stats().requests - s0.requests, 3u);  // HEAD + POST + monolithic PUT
  ASSERT_TRUE(c.PushBlob(ref, empty.desc, empty.path).ok());

  // Present already: only the HEAD.
  s0 = c.stats();
  ASSERT_TRUE(c.PushBlob(ref, big.desc, big.path).ok());
  EXPECT_EQ(c.stats().requests - s0.requests, 1u);
  EXPECT_EQ(c.stats().bytes_uploaded, s0.bytes_uploaded);

  auto exists = c.BlobExists(ref, big.desc.digest);
  ASSERT_TRUE(exists.ok());
  EXPECT_TRUE(*exists);

  auto blobs = PushIndex(c, ref, {small, big, empty});
  const Blob& index = blobs[0];
  const Blob& amd = blobs[1];
  const Blob& arm = blobs[2];

  auto by_tag = c.GetManifest(ref);
  ASSERT_TRUE(by_tag.ok()) << by_tag.status().ToString();
  EXPECT_EQ(by_tag->second, index.data);
  EXPECT_EQ(by_tag->first.digest, index.desc.digest);
  EXPECT_EQ(by_tag->first.size, index.desc.size);
  EXPECT_EQ(by_tag->first.media_type, "application/vnd.oci.image.index.v1+json");

  Reference by_digest_ref = ref;
  by_digest_ref.tag.clear();
  by_digest_ref.digest = amd.desc.digest;
  auto by_digest = c.GetManifest(by_digest_ref);
  ASSERT_TRUE(by_digest.ok()) << by_digest.status().ToString();
  EXPECT_EQ(by_digest->second, amd.data);
  EXPECT_EQ(by_digest->first.media_type, "application/vnd.oci.image.manifest.v1+json");

  auto resolved = c.ResolveImage(ref, Platform{"linux", "arm64", ""});
  ASSERT_TRUE(resolved.ok()) << resolved.status().ToString();
  EXPECT_EQ(resolved->manifest.digest, arm.desc.digest);
  EXPECT_EQ(resolved->manifest_body, arm.data);
  ASSERT_TRUE(resolved->index.has_value());
  EXPECT_EQ(resolved->index->digest, index.desc.digest);
  EXPECT_EQ(resolved->index_body, index.data);
  ASSERT_EQ(resolved->image.layers.size(), 1u);
  EXPECT_EQ(resolved->image.layers[0].digest, small.desc.digest);

  auto amd_image = c.ResolveImage(ref, Platform{"linux", "amd64", ""});
  ASSERT_TRUE(amd_image.ok()) << amd_image.status().ToString();
  EXPECT_EQ(amd_image->manifest.digest, amd.desc.digest);
  ASSERT_EQ(amd_image->image.layers.size(), 3u);
  EXPECT_EQ(amd_image->image.layers[1].digest, big.desc.digest);
  EXPECT_EQ(amd_image->image.config.media_type, "application/vnd.oci.image.config.v1+json");

  auto riscv = c.ResolveImage(ref, Platform{"linux", "riscv64", ""});
  ASSERT_FALSE(riscv.ok());
  EXPECT_EQ(riscv.status().code(), Code::kNotFound);

  auto got = c.GetBlob(ref, small.desc, 1 << 20);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, small.data);
  auto capped = c.GetBlob(ref, big.desc, 1000);
  ASSERT_FALSE(capped.ok());
  EXPECT_EQ(capped.status().code(), Code::kCorruption);

  std::string out = (dir_ / "download").string();
  uint64_t seen = 0;
  Status dl = c.DownloadBlob(ref, big.desc, out, [&](uint64_t done, uint64_t) { seen = done; });
  ASSERT_TRUE(dl.ok()) << dl.ToString();
  EXPECT_EQ(ReadFile(out), big.data);
  EXPECT_EQ(seen, big.data.size());
  ASSERT_TRUE(c.DownloadBlob(ref, empty.desc, out + ".empty").ok());
  EXPECT_TRUE(fs::exists(out + ".empty"));
  EXPECT_EQ(fs::file_size(out + ".empty"), 0u);
}

TEST_F(RegistryServerTest, NotFoundAndDigestMismatch) {
  int port = StartRegistry("reg");
  ASSERT_GT(port, 0);
  RegistryClient c(Options());
  Reference ref = Ref(port, "ocix/nf:v1");
  auto missing = c.GetManifest(ref);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
  EXPECT_NE(missing.status().message().find("ocix/nf:v1"), std::string::npos) << missing.status().message();

  Blob b = MakeBlob(RandomBytes(5000, 3));
  auto absent = c.GetBlob(ref, b.desc, 1 << 20);
  ASSERT_FALSE(absent.ok());
  EXPECT_EQ(absent.status().code(), Code::kNotFound);
  EXPECT_NE(absent.status().message().find(b.desc.digest), std::string::npos);

  ASSERT_TRUE(c.PushBlob(ref, b.desc, b.path).ok());
  Blob m = PushImageManifest(c, ref, {b}, "amd64");
  // A descriptor whose size lies.
  Descriptor wrong_size = b.desc;
  wrong_size.size = 4000;
  std::string out = (dir_ / "out").string();
  Status st = c.DownloadBlob(ref, wrong_size, out);
  EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_FALSE(fs::exists(out));

  // Corrupt the registry's stored copies: content no longer matches its digest.
  std::string bad = b.data;
  bad[100] ^= 1;
  WriteFile(StoredBlob("reg", b.desc.digest), bad);
  st = c.DownloadBlob(ref, b.desc, out);
  EXPECT_EQ(st.code(), Code::kCorruption) << st.ToString();
  EXPECT_FALSE(fs::exists(out));                      // never renamed into place
  for (const auto& e : fs::directory_iterator(dir_))  // and the temp file is gone
    EXPECT_EQ(e.path().filename().string().find(".ocix-tmp-"), std::string::npos) << e.path();
  auto small = c.GetBlob(ref, b.desc, 1 << 20);
  ASSERT_FALSE(small.ok());
  EXPECT_EQ(small.status().code(), Code::kCorruption);

  // Still valid JSON (the registry parses manifests it serves): alter the layer digest's last hex digit.
  std::string bad_manifest = m.data;
  size_t pos = bad_manifest.find(b.desc.digest) + b.desc.digest.size() - 1;
  bad_manifest[pos] = bad_manifest[pos] == '0' ? '1' : '0';
  WriteFile(StoredBlob("reg", m.desc.digest), bad_manifest);
  Reference by_digest = ref;
  by_digest.tag.clear();
  by_digest.digest = m.desc.digest;
  auto gm = c.GetManifest(by_digest);
  ASSERT_FALSE(gm.ok());
  EXPECT_EQ(gm.status().code(), Code::kCorruption) << gm.status().ToString();
}

TEST_F(RegistryServerTest, RangesAreCoalesced) {
  int port = StartRegistry("reg");
  ASSERT_GT(port, 0);
  RegistryClient c(Options());
  Reference ref = Ref(port, "ocix/ranges");
  Blob b = MakeBlob(RandomBytes(300000, 4));
  ASSERT_TRUE(c.PushBlob(ref, b.desc, b.path).ok());

  std::vector<ByteRange> ranges = {{1000, 10}, {0, 10}, {10, 20}, {5, 3}, {200000, 5}, {1005, 100}, {299990, 10}};
  RegistryStats s0 = c.stats();
  auto got = c.GetRanges(ref, b.desc.digest, ranges);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  // Runs: [0,30), [1000,1105), [200000,200005), [299990,300000).
  EXPECT_EQ(c.stats().requests - s0.requests, 4u);
  EXPECT_EQ(c.stats().bytes_downloaded - s0.bytes_downloaded, 30u + 105u + 5u + 10u);
  ASSERT_EQ(got->size(), ranges.size());
  for (size_t i = 0; i < ranges.size(); ++i)
    EXPECT_EQ((*got)[i], b.data.substr(ranges[i].offset, ranges[i].length)) << "range " << i;

  std::vector<ByteRange> past_end = {{299995, 10}};
  auto bad = c.GetRanges(ref, b.desc.digest, past_end);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument) << bad.status().ToString();
}

TEST_F(RegistryServerTest, CrossRepositoryMount) {
  int port = StartRegistry("reg");
  ASSERT_GT(port, 0);
  RegistryClient c(Options());
  Reference a = Ref(port, "team/a"), b = Ref(port, "team/b");
  Blob blob = MakeBlob(RandomBytes(100000, 5));
  ASSERT_TRUE(c.PushBlob(a, blob.desc, blob.path).ok());
  RegistryStats s0 = c.stats();
  Status st = c.PushBlob(b, blob.desc, blob.path, std::string("team/a"));
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(c.stats().bytes_uploaded, s0.bytes_uploaded);  // mounted, not uploaded
  EXPECT_EQ(c.stats().requests - s0.requests, 2u);         // HEAD + POST ?mount=
  auto in_b = c.BlobExists(b, blob.desc.digest);
  ASSERT_TRUE(in_b.ok());
  EXPECT_TRUE(*in_b);
}

TEST_F(RegistryServerTest, BasicAuth) {
  if (access("/usr/bin/htpasswd", X_OK) != 0) GTEST_SKIP() << "htpasswd missing (apt-get install apache2-utils)";
  fs::path htpasswd = dir_ / "htpasswd";
  ASSERT_EQ(std::system(("htpasswd -Bbn alice 's3cret-pw' > " + htpasswd.string()).c_str()), 0);
  int port = StartRegistry("reg", "auth:\n  htpasswd:\n    realm: ocix\n    path: " + htpasswd.string() + "\n");
  ASSERT_GT(port, 0);
  std::string host = "127.0.0.1:" + std::to_string(port);
  WriteFile(dir_ / "good.json", R"({"auths":{")" + host + R"(":{"auth":"YWxpY2U6czNjcmV0LXB3"}}})");
  WriteFile(dir_ / "bad.json", R"({"auths":{")" + host + R"(":{"username":"alice","password":"wrong-pw"}}})");

  RegistryOptions o = Options();
  o.docker_config = (dir_ / "good.json").string();
  RegistryClient c(o);
  Reference ref = Ref(port, "private/img:v1");
  Blob b = MakeBlob(RandomBytes(4000, 6));
  Status pushed = c.PushBlob(ref, b.desc, b.path);
  ASSERT_TRUE(pushed.ok()) << pushed.ToString();
  PushImageManifest(c, ref, {b}, "amd64");
  auto got = c.GetBlob(ref, b.desc, 1 << 20);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, b.data);

  RegistryClient anonymous(Options());
  auto denied = anonymous.GetBlob(ref, b.desc, 1 << 20);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), Code::kPermissionDenied) << denied.status().ToString();

  o.docker_config = (dir_ / "bad.json").string();
  RegistryClient wrong(o);
  auto refused = wrong.GetBlob(ref, b.desc, 1 << 20);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied) << refused.status().ToString();
  EXPECT_EQ(refused.status().message().find("wrong-pw"), std::string::npos);
  EXPECT_NE(refused.status().message().find("unauthorized"), std::string::npos);
}

TEST_F(RegistryServerTest, BearerTokenAuth) {
  if (std::system((std::string(kPython) + " -c 'import jwt, cryptography' 2>/dev/null").c_str()) != 0)
    GTEST_SKIP() << "python3-jwt / python3-cryptography missing";
  fs::path key = dir_ / "key.pem", cert = dir_ / "cert.pem";
  std::string openssl = "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ocix-token -keyout " +
                        key.string() + " -out " + cert.string() + " 2>/dev/null";
  ASSERT_EQ(std::system(openssl.c_str()), 0);
  int token_port = StartHelper("token_server.py",
                               {"--key", key.string(), "--cert", cert.string(), "--issuer", "ocix-issuer", "--service",
                                "ocix-registry", "--user", "bob", "--password", "t0ken-pw"},
                               "token");
  ASSERT_GT(token_port, 0);
  int port = StartRegistry("reg", "auth:\n  token:\n    realm: http://127.0.0.1:" + std::to_string(token_port) +
                                      "/token\n    service: ocix-registry\n    issuer: ocix-issuer\n"
                                      "    rootcertbundle: " +
                                      cert.string() + "\n");
  ASSERT_GT(port, 0);
  std::string host = "127.0.0.1:" + std::to_string(port);
  WriteFile(dir_ / "config.json", R"({"auths":{")" + host + R"(":{"username":"bob","password":"t0ken-pw"}}})");
  RegistryOptions o = Options();
  o.docker_config = (dir_ / "config.json").string();
  RegistryClient c(o);
  Reference ref = Ref(port, "secure/img:v1");
  Blob b = MakeBlob(RandomBytes(70000, 7));  // chunked: PATCHes carry the token too
  Status pushed = c.PushBlob(ref, b.desc, b.path);
  ASSERT_TRUE(pushed.ok()) << pushed.ToString();
  Blob m = PushImageManifest(c, ref, {b}, "amd64");
  Status tagged = c.PushManifest(ref, m.desc.media_type, m.data);
  ASSERT_TRUE(tagged.ok()) << tagged.ToString();
  EXPECT_GE(c.stats().token_requests, 1u);

  // Pull-scoped token: fetched once, then reused from the cache.
  RegistryStats s0 = c.stats();
  for (int i = 0; i < 5; ++i) {
    auto got = c.GetManifest(ref);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(got->second, m.data);
  }
  EXPECT_EQ(c.stats().token_requests - s0.token_requests, 1u);
  auto blob = c.GetBlob(ref, b.desc, 1 << 20);
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_EQ(c.stats().token_requests - s0.token_requests, 1u);  // same scope, same token

  RegistryClient anonymous(Options());
  auto denied = anonymous.GetManifest(ref);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), Code::kPermissionDenied) << denied.status().ToString();

  WriteFile(dir_ / "wrong.json", R"({"auths":{")" + host + R"(":{"username":"bob","password":"nope-pw"}}})");
  o.docker_config = (dir_ / "wrong.json").string();
  RegistryClient wrong(o);
  auto refused = wrong.GetManifest(ref);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message().find("nope-pw"), std::string::npos);
}

TEST_F(RegistryServerTest, MirrorFromHostsToml) {
  int server = StartRegistry("server");
  int mirror = StartRegistry("mirror");
  ASSERT_GT(server, 0);
  ASSERT_GT(mirror, 0);
  int dead = FreePort();  // nothing listens here
  RegistryClient direct(Options());
  // The image exists only on the mirror, under the same repository name.
  Reference on_mirror = Ref(mirror, "lib/app:v1");
  Blob layer = MakeBlob(RandomBytes(3000, 8));
  Blob m = PushImageManifest(direct, on_mirror, {layer}, "amd64");
  ASSERT_TRUE(direct.PushManifest(on_mirror, m.desc.media_type, m.data).ok());

  std::string server_host = "127.0.0.1:" + std::to_string(server);
  fs::path certs = dir_ / "certs.d";
  fs::create_directories(certs / server_host);
  WriteFile(certs / server_host / "hosts.toml",
            "server = \"http://" + server_host + "\"\n\n[host.\"http://127.0.0.1:" + std::to_string(dead) +
                "\"]\n  capabilities = [\"pull\", \"resolve\"]\n\n[host.\"http://127.0.0.1:" + std::to_string(mirror) +
                "\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
  RegistryOptions o = Options();
  o.certs_dir = certs.string();
  o.max_attempts = 2;
  RegistryClient c(o);
  Reference via_server = Ref(server, "lib/app:v1");
  // The dead mirror fails to connect, the live mirror has it: the server is never needed.
  auto got = c.GetManifest(via_server);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->second, m.data);
  auto blob = c.GetBlob(via_server, layer.desc, 1 << 20);
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_EQ(*blob, layer.data);
  EXPECT_GE(c.stats().retries, 1u);  // the dead mirror was retried before moving on

  // Push is not a mirror capability: it lands on the server.
  Blob pushed = MakeBlob(RandomBytes(2000, 9));
  ASSERT_TRUE(c.PushBlob(via_server, pushed.desc, pushed.path).ok());
  auto on_server = direct.BlobExists(via_server, pushed.desc.digest);
  ASSERT_TRUE(on_server.ok());
  EXPECT_TRUE(*on_server);
  auto on_mirror_too = direct.BlobExists(on_mirror, pushed.desc.digest);
  ASSERT_TRUE(on_mirror_too.ok());
  EXPECT_FALSE(*on_mirror_too);

  // Content only on the server: the mirrors miss (404 / no connection), the server answers.
  auto fallback = c.GetBlob(via_server, pushed.desc, 1 << 20);
  ASSERT_TRUE(fallback.ok()) << fallback.status().ToString();
  EXPECT_EQ(*fallback, pushed.data);
}

TEST_F(RegistryServerTest, Retries503ThenSucceeds) {
  int port = StartRegistry("reg");
  ASSERT_GT(port, 0);
  RegistryClient direct(Options());
  Reference ref = Ref(port, "flaky/app:v1");
  Blob layer = MakeBlob(RandomBytes(1000, 10));
  Blob m = PushImageManifest(direct, ref, {layer}, "amd64");
  ASSERT_TRUE(direct.PushManifest(ref, m.desc.media_type, m.data).ok());

  int proxy = StartProxy(port, {"--fail-first", "2", "--fail-pattern", "^GET /v2/flaky/app/manifests/"});
  ASSERT_GT(proxy, 0);
  RegistryClient c(Options());
  auto got = c.GetManifest(Ref(proxy, "flaky/app:v1"));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->second, m.data);
  EXPECT_EQ(c.stats().retries, 2u);
  EXPECT_EQ(c.stats().requests, 3u);
  std::string stats = ProxyStats(proxy);
  EXPECT_NE(stats.find("\"failed\": 2"), std::string::npos) << stats;

  // More 503s than attempts: Unavailable naming the cause.
  int proxy2 = StartProxy(port, {"--fail-first", "100", "--fail-pattern", "manifests"}, "proxy2");
  ASSERT_GT(proxy2, 0);
  RegistryClient d(Options());
  auto failed = d.GetManifest(Ref(proxy2, "flaky/app:v1"));
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.status().code(), Code::kUnavailable);
  EXPECT_NE(failed.status().message().find("503"), std::string::npos) << failed.status().message();
  EXPECT_EQ(d.stats().requests, 4u);  // max_attempts
}

TEST_F(RegistryServerTest, DroppedConnectionsResume) {
  int port = StartRegistry("reg");
  ASSERT_GT(port, 0);
  RegistryClient direct(Options());
  Reference ref = Ref(port, "drop/app");
  Blob b = MakeBlob(RandomBytes(300000, 11));
  ASSERT_TRUE(direct.PushBlob(ref, b.desc, b.path).ok());

  // Every blob GET is cut after 100000 body bytes, twice.
  int proxy = StartProxy(port, {"--drop-after", "100000", "--drop-count", "2"});
  ASSERT_GT(proxy, 0);
  RegistryClient c(Options());
  Reference via = Ref(proxy, "drop/app");
  std::string out = (dir_ / "out").string();
  Status st = c.DownloadBlob(via, b.desc, out);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(ReadFile(out), b.data);
  EXPECT_EQ(c.stats().retries, 2u);
  // Resumed with Range, not restarted: every byte crossed the wire once.
  EXPECT_EQ(c.stats().bytes_downloaded, b.data.size());
  std::string stats = ProxyStats(proxy);
  EXPECT_NE(stats.find("\"dropped\": 2"), std::string::npos) << stats;

  // A range read cut short is retried.
  int proxy2 = StartProxy(port, {"--drop-after", "50000", "--drop-count", "1"}, "proxy2");
  ASSERT_GT(proxy2, 0);
  RegistryClient r(Options());
  std::vector<ByteRange> ranges = {{1000, 150000}, {152000, 1000}};
  auto got = r.GetRanges(Ref(proxy2, "drop/app"), b.desc.digest, ranges);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ((*got)[0], b.data.substr(1000, 150000));
  EXPECT_EQ((*got)[1], b.data.substr(152000, 1000));
  EXPECT_EQ(r.stats().retries, 1u);
  EXPECT_EQ(r.stats().requests, 3u);  // first run twice, second run once
}

TEST_F(RegistryServerTest, UnreachableRegistryFailsInBoundedTime) {
  int port = FreePort();  // closed: connection refused
  RegistryOptions o = Options();
  o.max_attempts = 3;
  o.connect_timeout = milliseconds(1000);
  RegistryClient c(o);
  auto start = std::chrono::steady_clock::now();
  auto r = c.GetManifest(Ref(port, "none/app:v1"));
  auto elapsed = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable) << r.status().ToString();
  EXPECT_NE(r.status().message().find("3 attempts"), std::string::npos) << r.status().message();
  EXPECT_EQ(c.stats().requests, 3u);
  EXPECT_EQ(c.stats().retries, 2u);
  EXPECT_LT(elapsed, std::chrono::seconds(30));

  Blob b = MakeBlob("x");
  Status dl = c.DownloadBlob(Ref(port, "none/app"), b.desc, (dir_ / "out").string());
  EXPECT_EQ(dl.code(), Code::kUnavailable) << dl.ToString();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(30));
}

}  // namespace
}  // namespace ocix::core

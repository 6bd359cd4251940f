#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "ocix/core/registry/hosts.h"

namespace ocix::core {
namespace {

namespace fs = std::filesystem;

std::vector<std::string> All() { return {"pull", "resolve", "push"}; }

TEST(RegistryHosts, DefaultsWithoutConfig) {
  auto hub = HostsFor("docker.io", "");
  ASSERT_TRUE(hub.ok());
  ASSERT_EQ(hub->size(), 1u);
  EXPECT_EQ((*hub)[0].BaseUrl(), "https://registry-1.docker.io/v2");
  EXPECT_EQ((*hub)[0].capabilities, All());

  EXPECT_EQ(DefaultHost("ghcr.io").BaseUrl(), "https://ghcr.io/v2");
  // containerd talks plain HTTP to loopback registries.
  EXPECT_EQ(DefaultHost("localhost:5000").scheme, "http");
  EXPECT_EQ(DefaultHost("127.0.0.1:5000").scheme, "http");
  EXPECT_EQ(DefaultHost("[::1]:5000").scheme, "http");
  EXPECT_EQ(DefaultHost("localhost").scheme, "http");
  EXPECT_EQ(DefaultHost("localhost.example.com").scheme, "https");
  EXPECT_EQ(DefaultHost("127.0.0.2:5000").scheme, "https");
}

TEST(RegistryHosts, ServerAndMirrorsInFileOrder) {
  // The mirror names sort opposite to their file order: order must follow the file.
  auto hosts = ParseHostsToml(R"(
server = "https://registry.example.com"

[host."https://z-mirror.example.com"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = "/etc/certs/z.pem"
  client = [["/etc/certs/c.cert", "/etc/certs/c.key"]]
  [host."https://z-mirror.example.com".header]
    x-custom = "one"
    x-multi = ["a", "b"]

[host."http://a-mirror:5000/prefix"]
  capabilities = ["pull"]
  ca = ["/1.pem", "/2.pem"]
  client = "/both.pem"

[host."https://b-mirror/custom/path"]
  override_path = true
)",
                              "registry.example.com");
  ASSERT_TRUE(hosts.ok()) << hosts.status().ToString();
  ASSERT_EQ(hosts->size(), 4u);
  const RegistryHost& z = (*hosts)[0];
  EXPECT_EQ(z.BaseUrl(), "https://z-mirror.example.com/v2");
  EXPECT_EQ(z.capabilities, (std::vector<std::string>{"pull", "resolve"}));
  EXPECT_TRUE(z.Has("pull"));
  EXPECT_FALSE(z.Has("push"));
  EXPECT_TRUE(z.skip_verify);
  EXPECT_EQ(z.ca_files, (std::vector<std::string>{"/etc/certs/z.pem"}));
  EXPECT_EQ(z.client_cert, "/etc/certs/c.cert");
  EXPECT_EQ(z.client_key, "/etc/certs/c.key");
  EXPECT_EQ(z.headers.at("x-custom"), "one");
  EXPECT_EQ(z.headers.at("x-multi"), "a, b");

  const RegistryHost& a = (*hosts)[1];
  EXPECT_EQ(a.scheme, "http");
  EXPECT_EQ(a.host, "a-mirror:5000");
  EXPECT_EQ(a.path_prefix, "/prefix/v2");  // containerd appends /v2 unless override_path
  EXPECT_EQ(a.capabilities, (std::vector<std::string>{"pull"}));
  EXPECT_FALSE(a.skip_verify);
  EXPECT_EQ(a.ca_files, (std::vector<std::string>{"/1.pem", "/2.pem"}));
  EXPECT_EQ(a.client_cert, "/both.pem");
  EXPECT_EQ(a.client_key, "");

  const RegistryHost& b = (*hosts)[2];
  EXPECT_TRUE(b.override_path);
  EXPECT_EQ(b.BaseUrl(), "https://b-mirror/custom/path");
  EXPECT_EQ(b.capabilities, All());  // default capabilities

  const RegistryHost& server = (*hosts)[3];
  EXPECT_EQ(server.BaseUrl(), "https://registry.example.com/v2");
  EXPECT_EQ(server.capabilities, All());
}

TEST(RegistryHosts, WithoutServerFallsBackToDefaultHost) {
  auto hosts = ParseHostsToml("[host.\"http://127.0.0.1:9000\"]\ncapabilities = [\"pull\"]\n", "docker.io");
  ASSERT_TRUE(hosts.ok()) << hosts.status().ToString();
  ASSERT_EQ(hosts->size(), 2u);
  EXPECT_EQ((*hosts)[0].BaseUrl(), "http://127.0.0.1:9000/v2");
  EXPECT_EQ((*hosts)[1].BaseUrl(), "https://registry-1.docker.io/v2");
}

TEST(RegistryHosts, TopLevelKeysApplyToServer) {
  auto hosts = ParseHostsToml(
      "server = \"https://r.example:8443\"\nskip_verify = true\ncapabilities = [\"pull\",\"resolve\"]\n"
      "ca = \"/ca.pem\"\n[header]\nauthorization-extra = \"x\"\n",
      "r.example:8443");
  ASSERT_TRUE(hosts.ok()) << hosts.status().ToString();
  ASSERT_EQ(hosts->size(), 1u);
  EXPECT_TRUE((*hosts)[0].skip_verify);
  EXPECT_FALSE((*hosts)[0].Has("push"));
  EXPECT_EQ((*hosts)[0].ca_files, (std::vector<std::string>{"/ca.pem"}));
  EXPECT_EQ((*hosts)[0].headers.at("authorization-extra"), "x");
}

TEST(RegistryHosts, ErrorsNotCrashes) {
  for (const char* bad : {
           "server = ",                                       // malformed TOML
           "[host.\"https://m\"\ncapabilities = [\"pull\"]",  // unterminated table header
           "server = \"ftp://r\"",                            // scheme
           "server = 5",                                      // type
           "[host.\"https://m\"]\ncapabilities = [\"fly\"]",  // unknown capability
           "[host.\"https://m\"]\nskip_verify = \"yes\"",     // type
           "[host.\"https://m\"]\nclient = [[\"a\",\"b\",\"c\"]]",
           "[host.\"https://m\"]\n[host.\"https://m\".header]\nx = 1", "host = 3",
           "\xff\xfe = 1",  // invalid UTF-8
       }) {
    auto r = ParseHostsToml(bad, "r");
    ASSERT_FALSE(r.ok()) << "accepted: " << bad;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad << ": " << r.status().ToString();
  }
}

class RegistryHostsDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("ocix-hosts-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  void Write(const std::string& host, const std::string& text) {
    fs::create_directories(dir_ / host);
    std::ofstream(dir_ / host / "hosts.toml") << text;
  }
  fs::path dir_;
};

TEST_F(RegistryHostsDir, PerHostThenDefaultThenBuiltIn) {
  Write("reg.example:5000", "server = \"http://reg.example:5000\"\n");
  Write("_default", "[host.\"https://mirror.example\"]\ncapabilities = [\"pull\"]\n");
  auto own = HostsFor("reg.example:5000", dir_.string());
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  ASSERT_EQ(own->size(), 1u);
  EXPECT_EQ((*own)[0].BaseUrl(), "http://reg.example:5000/v2");

  auto other = HostsFor("other.example", dir_.string());
  ASSERT_TRUE(other.ok());
  ASSERT_EQ(other->size(), 2u);
  EXPECT_EQ((*other)[0].BaseUrl(), "https://mirror.example/v2");
  EXPECT_EQ((*other)[1].BaseUrl(), "https://other.example/v2");

  fs::remove_all(dir_ / "_default");
  auto builtin = HostsFor("other.example", dir_.string());
  ASSERT_TRUE(builtin.ok());
  ASSERT_EQ(builtin->size(), 1u);
  EXPECT_EQ((*builtin)[0].BaseUrl(), "https://other.example/v2");

  auto missing_dir = HostsFor("other.example", (dir_ / "nope").string());
  ASSERT_TRUE(missing_dir.ok());
  EXPECT_EQ(missing_dir->size(), 1u);
}

TEST_F(RegistryHostsDir, MalformedFileNamesIt) {
  Write("bad.example", "server = [");
  auto r = HostsFor("bad.example", dir_.string());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("bad.example/hosts.toml"), std::string::npos) << r.status().message();
}

}  // namespace
}  // namespace ocix::core

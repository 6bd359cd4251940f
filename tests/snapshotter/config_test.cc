#include "ocix/config/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace ocix::config {
namespace {

using std::chrono::milliseconds;

Config MustParse(std::string_view text) {
  auto c = ParseConfig(text);
  EXPECT_TRUE(c.ok()) << c.status().ToString() << "\n" << text;
  return c.ok() ? std::move(c).value() : Config();
}

// Parsing must fail with InvalidArgument whose message holds every part.
void ExpectInvalid(std::string_view text, std::initializer_list<std::string_view> parts) {
  auto c = ParseConfig(text);
  ASSERT_FALSE(c.ok()) << "accepted:\n" << text;
  EXPECT_EQ(c.status().code(), core::Code::kInvalidArgument) << c.status().ToString();
  for (auto part : parts) {
    EXPECT_NE(c.status().message().find(part), std::string::npos) << c.status().message() << "\nwanted: " << part;
  }
}

TEST(Config, EmptyIsDefaults) {
  Config c = MustParse("");
  EXPECT_EQ(c, Config());
  EXPECT_EQ(c.address, "/run/ocix-snapshotter/ocix-snapshotter.sock");
  EXPECT_EQ(c.root, "/var/lib/ocix-snapshotter");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.metrics_address, "");
  EXPECT_EQ(c.cache_dir, "");
  EXPECT_EQ(c.CacheDir(), "/var/lib/ocix-snapshotter/cache");
  EXPECT_EQ(c.cache_max_bytes, 0u);
  EXPECT_EQ(c.prefetch, PrefetchMode::kList);
  EXPECT_EQ(c.prefetch_max_in_flight, 2);
  EXPECT_EQ(c.fetch_attempts, 4);
  EXPECT_EQ(c.fetch_timeout, milliseconds(15000));
  EXPECT_EQ(c.connect_timeout, milliseconds(5000));
  EXPECT_EQ(c.readahead_bytes, 2u << 20);
  EXPECT_EQ(c.hosts_dir, "/etc/containerd/certs.d");
  EXPECT_EQ(c.docker_config, "");
  EXPECT_EQ(MustParse("# only a comment\n\n[daemon]\n[fetch]\n"), Config());
}

// The documented example spells out every default.
TEST(Config, ExampleFileIsTheDefaults) {
  auto c = LoadConfig("../config/example.toml");  // tests run in tests/
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(*c, Config());
}

TEST(Config, EveryKey) {
  Config c = MustParse(R"(
[daemon]
address = "/run/o.sock"
root = "/srv/ocix"
log_level = "debug"

[metrics]
address = "127.0.0.1:9863"

[cache]
dir = "/cache"
max_size = "10GiB"

[prefetch]
mode = "all"
max_in_flight = 8

[fetch]
attempts = 6
timeout = "1m30s"
connect_timeout = 2500
readahead = "512KiB"

[registry]
hosts_dir = "/etc/ocix/certs.d"
docker_config = "/root/.docker/config.json"
)");
  EXPECT_EQ(c.address, "/run/o.sock");
  EXPECT_EQ(c.root, "/srv/ocix");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.metrics_address, "127.0.0.1:9863");
  EXPECT_EQ(c.cache_dir, "/cache");
  EXPECT_EQ(c.CacheDir(), "/cache");
  EXPECT_EQ(c.cache_max_bytes, 10ull << 30);
  EXPECT_EQ(c.prefetch, PrefetchMode::kAll);
  EXPECT_EQ(c.prefetch_max_in_flight, 8);
  EXPECT_EQ(c.fetch_attempts, 6);
  EXPECT_EQ(c.fetch_timeout, milliseconds(90000));
  EXPECT_EQ(c.connect_timeout, milliseconds(2500));
  EXPECT_EQ(c.readahead_bytes, 512u << 10);
  EXPECT_EQ(c.hosts_dir, "/etc/ocix/certs.d");
  EXPECT_EQ(c.docker_config, "/root/.docker/config.json");

  core::RegistryOptions o = c.RegistryOptions();
  EXPECT_EQ(o.certs_dir, "/etc/ocix/certs.d");
  EXPECT_EQ(o.docker_config, "/root/.docker/config.json");
  EXPECT_EQ(o.max_attempts, 6);
  EXPECT_EQ(o.low_speed_timeout, milliseconds(90000));
  EXPECT_EQ(o.connect_timeout, milliseconds(2500));
  // What the file does not set keeps the client's defaults.
  EXPECT_EQ(o.user_agent, core::RegistryOptions().user_agent);
}

TEST(Config, DefaultRegistryOptionsMatchTheClient) {
  core::RegistryOptions mine = Config().RegistryOptions(), client;
  EXPECT_EQ(mine.certs_dir, client.certs_dir);
  EXPECT_EQ(mine.docker_config, client.docker_config);
  EXPECT_EQ(mine.max_attempts, client.max_attempts);
  EXPECT_EQ(mine.low_speed_timeout, client.low_speed_timeout);
  EXPECT_EQ(mine.connect_timeout, client.connect_timeout);
  // Lazy reads fetch frames with tar headers between them: one request each run.
  EXPECT_EQ(mine.range_coalesce_gap, 64u << 10);
}

TEST(Config, Sizes) {
  auto size = [](std::string_view v) { return MustParse("[cache]\nmax_size = " + std::string(v)).cache_max_bytes; };
  EXPECT_EQ(size("0"), 0u);
  EXPECT_EQ(size("123456789"), 123456789u);
  EXPECT_EQ(size("\"4096\""), 4096u);
  EXPECT_EQ(size("\"4096B\""), 4096u);
  EXPECT_EQ(size("\"500MB\""), 500'000'000u);
  EXPECT_EQ(size("\"500mb\""), 500'000'000u);
  EXPECT_EQ(size("\"64KiB\""), 65536u);
  EXPECT_EQ(size("\"2kB\""), 2000u);
  EXPECT_EQ(size("\"3MiB\""), 3u << 20);
  EXPECT_EQ(size("\"10 GiB\""), 10ull << 30);
  EXPECT_EQ(size("\"1.5GiB\""), 3ull << 29);
  EXPECT_EQ(size("\"1TB\""), 1'000'000'000'000u);
  EXPECT_EQ(size("\"2TiB\""), 2ull << 40);
  EXPECT_EQ(size("\"16777215TiB\""), 16777215ull << 40);

  for (std::string_view bad : {"\"\"", "\"GiB\"", "\"10 G\"", "\"10K\"", "\"-1GiB\"", "\"1.5\"", "\"1.GiB\"", "\"1e9\"",
                               "\"10GiB \"", "\"16777216TiB\"", "\"99999999999999999999\"", "1.5", "true", "[1]"})
    ExpectInvalid("[cache]\nmax_size = " + std::string(bad), {"cache.max_size (line 2)"});
  ExpectInvalid("[cache]\nmax_size = -1", {"cache.max_size (line 2)", "negative"});
  ExpectInvalid("[cache]\nmax_size = \"16777216TiB\"", {"cache.max_size (line 2)", "too large"});
  ExpectInvalid("[cache]\nmax_size = \"1.5B\"", {"cache.max_size (line 2)", "fractions of a byte"});
}

TEST(Config, Durations) {
  auto timeout = [](std::string_view v) { return MustParse("[fetch]\ntimeout = " + std::string(v)).fetch_timeout; };
  EXPECT_EQ(timeout("\"15s\""), milliseconds(15000));
  EXPECT_EQ(timeout("\"500ms\""), milliseconds(500));
  EXPECT_EQ(timeout("\"2m\""), milliseconds(120000));
  EXPECT_EQ(timeout("\"1h\""), milliseconds(3600000));
  EXPECT_EQ(timeout("\"1m30s\""), milliseconds(90000));
  EXPECT_EQ(timeout("\"1h1m1s1ms\""), milliseconds(3661001));
  EXPECT_EQ(timeout("\"1.5s\""), milliseconds(1500));
  EXPECT_EQ(timeout("\"24h\""), milliseconds(86400000));
  EXPECT_EQ(timeout("1"), milliseconds(1));
  EXPECT_EQ(timeout("750"), milliseconds(750));
  EXPECT_EQ(MustParse("[fetch]\nconnect_timeout = \"100ms\"").connect_timeout, milliseconds(100));

  for (std::string_view bad : {"\"\"", "\"15\"", "\"s\"", "\"15 s\"", "\"1d\"", "\"1us\"", "\"-1s\"", "\"1.s\"", "1.5",
                               "true", "1970-01-01T00:00:00Z"})
    ExpectInvalid("[fetch]\ntimeout = " + std::string(bad), {"fetch.timeout (line 2)", "expected a duration"});
  for (std::string_view bad : {"0", "-5", "\"0s\"", "\"0.5ms\"", "\"24h1ms\"", "\"99999999999999h\"", "86400001"})
    ExpectInvalid("[fetch]\nconnect_timeout = " + std::string(bad),
                  {"fetch.connect_timeout (line 2)", "between 1ms and 24h"});
}

TEST(Config, EnumsAndRanges) {
  EXPECT_EQ(MustParse("[prefetch]\nmode = \"none\"").prefetch, PrefetchMode::kNone);
  EXPECT_EQ(MustParse("[prefetch]\nmode = \"list\"").prefetch, PrefetchMode::kList);
  ExpectInvalid("[prefetch]\nmode = \"List\"", {"prefetch.mode (line 2)", "none, list, all"});
  ExpectInvalid("[prefetch]\nmode = 1", {"prefetch.mode (line 2)", "expected a string"});
  for (std::string_view level : {"trace", "debug", "info", "warn", "error"})
    EXPECT_EQ(MustParse("[daemon]\nlog_level = \"" + std::string(level) + "\"").log_level, level);
  ExpectInvalid("[daemon]\nlog_level = \"warning\"", {"daemon.log_level (line 2)"});

  EXPECT_EQ(MustParse("[prefetch]\nmax_in_flight = 1").prefetch_max_in_flight, 1);
  EXPECT_EQ(MustParse("[prefetch]\nmax_in_flight = 64").prefetch_max_in_flight, 64);
  ExpectInvalid("[prefetch]\nmax_in_flight = 0", {"prefetch.max_in_flight (line 2)", "between 1 and 64"});
  ExpectInvalid("[prefetch]\nmax_in_flight = 65", {"prefetch.max_in_flight (line 2)"});
  ExpectInvalid("[prefetch]\nmax_in_flight = \"2\"", {"prefetch.max_in_flight (line 2)", "expected an integer"});
  EXPECT_EQ(MustParse("[fetch]\nattempts = 1").fetch_attempts, 1);
  ExpectInvalid("[fetch]\nattempts = 0", {"fetch.attempts (line 2)", "between 1 and 100"});
  ExpectInvalid("[fetch]\nattempts = 101", {"fetch.attempts (line 2)"});
  ExpectInvalid("[fetch]\nattempts = 9223372036854775807", {"fetch.attempts (line 2)"});
  ExpectInvalid("[fetch]\nattempts = 4.0", {"fetch.attempts (line 2)", "expected an integer"});
  EXPECT_EQ(MustParse("[fetch]\nreadahead = 0").readahead_bytes, 0u);
  EXPECT_EQ(MustParse("[fetch]\nreadahead = \"64MiB\"").readahead_bytes, 64u << 20);
  ExpectInvalid("[fetch]\nreadahead = \"65MiB\"", {"fetch.readahead (line 2)", "at most 64 MiB"});
}

TEST(Config, Addresses) {
  for (std::string_view ok : {"127.0.0.1:9863", "localhost:1", "[::1]:65535", "0.0.0.0:80", "metrics.local:9863"})
    EXPECT_EQ(MustParse("[metrics]\naddress = \"" + std::string(ok) + "\"").metrics_address, ok);
  for (std::string_view bad :
       {"9863", ":9863", "host:", "host:0", "host:65536", "::1:9863", "[::1]9863", "h:12a", "a b:1", "http://h:1"})
    ExpectInvalid("[metrics]\naddress = \"" + std::string(bad) + "\"", {"metrics.address (line 2)"});

  std::string longest = "/" + std::string(106, 's');
  EXPECT_EQ(MustParse("[daemon]\naddress = \"" + longest + "\"").address, longest);
  ExpectInvalid("[daemon]\naddress = \"" + longest + "s\"", {"daemon.address (line 2)", "107 bytes"});
}

TEST(Config, Paths) {
  ExpectInvalid("[daemon]\nroot = \"var/lib/ocix\"", {"daemon.root (line 2)", "absolute"});
  ExpectInvalid("[daemon]\nroot = \"\"", {"daemon.root (line 2)", "absolute"});
  ExpectInvalid("[daemon]\naddress = \"\"", {"daemon.address (line 2)"});
  ExpectInvalid("[cache]\ndir = \"cache\"", {"cache.dir (line 2)"});
  ExpectInvalid("[registry]\nhosts_dir = \"./certs.d\"", {"registry.hosts_dir (line 2)"});
  ExpectInvalid("[registry]\ndocker_config = \"~/.docker/config.json\"", {"registry.docker_config (line 2)"});
  ExpectInvalid("[daemon]\nroot = \"/a\\u0000b\"", {"daemon.root (line 2)", "NUL"});
  ExpectInvalid("[daemon]\nroot = [\"/a\"]", {"daemon.root (line 2)", "expected a string"});
  // Empty is allowed (and meaningful) where a default applies.
  Config c = MustParse("[cache]\ndir = \"\"\n[registry]\nhosts_dir = \"\"\ndocker_config = \"\"");
  EXPECT_EQ(c.cache_dir, "");
  EXPECT_EQ(c.hosts_dir, "");
  EXPECT_EQ(c.RegistryOptions().certs_dir, "");
  // The cache follows the root when not set.
  c.root = "/elsewhere";
  EXPECT_EQ(c.CacheDir(), "/elsewhere/cache");
}

TEST(Config, UnknownTablesAndKeys) {
  ExpectInvalid("[daemon]\nadress = \"/x\"", {"unknown key daemon.adress (line 2)"});
  ExpectInvalid("\n\n[deamon]\n", {"unknown table [deamon] (line 3)"});
  ExpectInvalid("log_level = \"info\"", {"unknown key \"log_level\" (line 1)"});
  ExpectInvalid("[daemon.extra]\nx = 1", {"unknown key daemon.extra"});
  ExpectInvalid("[[daemon]]\nroot = \"/x\"", {"daemon (line 1)", "expected a table"});
  ExpectInvalid("daemon = \"/x\"", {"daemon (line 1)", "expected a table"});
  ExpectInvalid("[fetch]\nattempts = 2\nretries = 3", {"unknown key fetch.retries (line 3)"});
  // Inline tables are tables.
  EXPECT_EQ(MustParse("fetch = { attempts = 2 }").fetch_attempts, 2);
}

TEST(Config, MalformedToml) {
  ExpectInvalid("[daemon\nroot = 1", {"line 1"});
  ExpectInvalid("[daemon]\nroot = \"/a\"\nroot = \"/b\"", {"line 3"});
  ExpectInvalid("[daemon]\nroot = /a", {"line 2"});
  ExpectInvalid("\xff\xfe", {"line 1"});
  ExpectInvalid(std::string(1u << 20 | 1, '#'), {"larger than 1 MiB"});
}

TEST(Config, LoadConfigFiles) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / ("ocix-config-test-" + std::to_string(getpid()));
  fs::create_directories(dir);
  {
    std::ofstream(dir / "ok.toml") << "[fetch]\nattempts = 3\n";
    std::ofstream(dir / "bad.toml") << "[fetch]\nattempts = 0\n";
  }
  auto ok = LoadConfig((dir / "ok.toml").string());
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->fetch_attempts, 3);

  auto bad = LoadConfig((dir / "bad.toml").string());
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), core::Code::kInvalidArgument);
  EXPECT_EQ(bad.status().message(),
            (dir / "bad.toml").string() + ": fetch.attempts (line 2): must be between 1 and 100");

  auto missing = LoadConfig((dir / "missing.toml").string());
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), core::Code::kNotFound);
  EXPECT_FALSE(LoadConfig(dir.string()).ok());
  fs::remove_all(dir);
}

}  // namespace
}  // namespace ocix::config

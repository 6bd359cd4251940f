#include "ocix/config/config.h"

#include <toml++/toml.h>
#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <optional>

namespace ocix::config {

namespace {

using std::chrono::milliseconds;

// An admin-written file of a dozen keys; anything this big is a mistake.
constexpr size_t kMaxConfigSize = 1u << 20;
// sockaddr_un.sun_path holds 108 bytes, the terminating NUL included.
constexpr size_t kMaxSocketPath = 107;
constexpr milliseconds kMinTimeout{1};
constexpr milliseconds kMaxTimeout{24 * 3600 * 1000};

// "daemon.root (line 4)": every error names the key and where it is.
std::string Where(std::string_view key, const toml::node& n) {
  return std::string(key) + " (line " + std::to_string(n.source().begin.line) + ")";
}

core::Status Invalid(std::string_view key, const toml::node& n, std::string_view message) {
  return core::InvalidArgument(Where(key, n) + ": " + std::string(message));
}

core::Result<std::string> GetString(std::string_view key, const toml::node& n) {
  const toml::value<std::string>* s = n.as_string();
  if (!s) return Invalid(key, n, "expected a string");
  return s->get();
}

core::Result<int64_t> GetInteger(std::string_view key, const toml::node& n, int64_t min, int64_t max) {
  const toml::value<int64_t>* i = n.as_integer();
  if (!i) return Invalid(key, n, "expected an integer");
  if (i->get() < min || i->get() > max)
    return Invalid(key, n, "must be between " + std::to_string(min) + " and " + std::to_string(max));
  return i->get();
}

// A daemon's working directory means nothing, so paths must be absolute.
core::Result<std::string> GetPath(std::string_view key, const toml::node& n, bool allow_empty) {
  OCIX_ASSIGN_OR_RETURN(std::string path, GetString(key, n));
  if (path.empty() && allow_empty) return path;
  if (path.empty() || path.front() != '/') return Invalid(key, n, "must be an absolute path");
  if (path.find('\0') != std::string::npos) return Invalid(key, n, "must not contain NUL");
  return path;
}

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

// Digits with an optional fraction ("10", "1.5"), consumed from s. The
// fraction keeps at most 9 digits.
struct Decimal {
  uint64_t whole = 0;
  uint64_t frac = 0;
  uint64_t frac_scale = 1;  // 10^(digits of frac)
};

std::optional<Decimal> TakeDecimal(std::string_view& s) {
  Decimal d;
  size_t i = 0;
  for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
    if (d.whole > (UINT64_MAX - 9) / 10) return std::nullopt;
    d.whole = d.whole * 10 + static_cast<uint64_t>(s[i] - '0');
  }
  if (i == 0) return std::nullopt;
  if (i < s.size() && s[i] == '.') {
    size_t start = ++i;
    for (; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i) {
      if (i - start >= 9) return std::nullopt;
      d.frac = d.frac * 10 + static_cast<uint64_t>(s[i] - '0');
      d.frac_scale *= 10;
    }
    if (i == start) return std::nullopt;
  }
  s.remove_prefix(i);
  return d;
}

// d * unit, rounded down; nullopt on overflow.
std::optional<uint64_t> Scale(const Decimal& d, uint64_t unit) {
  uint64_t whole;
  if (__builtin_mul_overflow(d.whole, unit, &whole)) return std::nullopt;
  auto frac = static_cast<uint64_t>(static_cast<unsigned __int128>(d.frac) * unit / d.frac_scale);
  uint64_t total;
  if (__builtin_add_overflow(whole, frac, &total)) return std::nullopt;
  return total;
}

// "10GiB", "500MB", "1.5 GiB", "4096": decimal (kB, MB, GB, TB) and binary
// (KiB, MiB, GiB, TiB) units, case-insensitive; B or nothing for bytes.
// The error says what is wrong; the caller adds the key.
core::Result<uint64_t> ParseByteSize(std::string_view s) {
  static const core::Status kMalformed =
      core::InvalidArgument("expected a size such as \"10GiB\" or \"500MB\", or an integer of bytes");
  auto d = TakeDecimal(s);
  if (!d) return kMalformed;
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  static constexpr std::array<std::pair<std::string_view, uint64_t>, 10> kUnits = {{
      {"", 1},
      {"b", 1},
      {"kb", 1000},
      {"kib", 1ull << 10},
      {"mb", 1000 * 1000},
      {"mib", 1ull << 20},
      {"gb", 1000 * 1000 * 1000},
      {"gib", 1ull << 30},
      {"tb", 1000ull * 1000 * 1000 * 1000},
      {"tib", 1ull << 40},
  }};
  std::string unit = Lower(s);
  for (const auto& [name, scale] : kUnits) {
    if (unit != name) continue;
    if (scale == 1 && d->frac_scale != 1) return core::InvalidArgument("no fractions of a byte");
    auto bytes = Scale(*d, scale);
    if (!bytes) return core::InvalidArgument("too large (at most 16 EiB)");
    return *bytes;
  }
  return kMalformed;
}

// Go-style durations of ms, s, m and h terms: "15s", "500ms", "1m30s",
// "1.5s". Saturates instead of overflowing (the caller range-checks).
std::optional<milliseconds> ParseDuration(std::string_view s) {
  if (s.empty()) return std::nullopt;
  uint64_t total = 0;
  while (!s.empty()) {
    auto d = TakeDecimal(s);
    if (!d) return std::nullopt;
    size_t n = 0;
    while (n < s.size() && ((s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z'))) ++n;
    std::string unit = Lower(s.substr(0, n));
    s.remove_prefix(n);
    uint64_t unit_ms;
    if (unit == "ms") {
      unit_ms = 1;
    } else if (unit == "s") {
      unit_ms = 1000;
    } else if (unit == "m") {
      unit_ms = 60 * 1000;
    } else if (unit == "h") {
      unit_ms = 3600 * 1000;
    } else {
      return std::nullopt;
    }
    auto term = Scale(*d, unit_ms);
    if (!term || __builtin_add_overflow(total, *term, &total)) total = UINT64_MAX;
  }
  return milliseconds(static_cast<int64_t>(std::min<uint64_t>(total, INT64_MAX)));
}

core::Result<milliseconds> GetDuration(std::string_view key, const toml::node& n) {
  milliseconds d;
  if (const toml::value<int64_t>* i = n.as_integer()) {
    d = milliseconds(i->get());
  } else if (const toml::value<std::string>* s = n.as_string()) {
    auto parsed = ParseDuration(s->get());
    if (!parsed) return Invalid(key, n, "expected a duration such as \"15s\", \"500ms\" or \"1m30s\"");
    d = *parsed;
  } else {
    return Invalid(key, n, "expected a duration (a string such as \"15s\", or an integer of milliseconds)");
  }
  if (d < kMinTimeout || d > kMaxTimeout) return Invalid(key, n, "must be between 1ms and 24h");
  return d;
}

core::Result<uint64_t> GetByteSize(std::string_view key, const toml::node& n) {
  if (const toml::value<int64_t>* i = n.as_integer()) {
    if (i->get() < 0) return Invalid(key, n, "must not be negative");
    return static_cast<uint64_t>(i->get());
  }
  if (const toml::value<std::string>* s = n.as_string()) {
    auto parsed = ParseByteSize(s->get());
    if (!parsed.ok()) return Invalid(key, n, parsed.status().message());
    return *parsed;
  }
  return Invalid(key, n, "expected a size (a string such as \"10GiB\", or an integer of bytes)");
}

// "host:port" or "[v6]:port"; the HTTP server is handed it as is.
bool IsHostPort(std::string_view s) {
  size_t colon = s.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view host = s.substr(0, colon), port = s.substr(colon + 1);
  if (host.front() == '[' ? host.back() != ']' || host.size() < 3 : host.find(':') != std::string_view::npos)
    return false;
  if (host.find_first_of(" \t/") != std::string_view::npos) return false;
  if (port.empty() || port.size() > 5) return false;
  uint32_t p = 0;
  for (char c : port) {
    if (c < '0' || c > '9') return false;
    p = p * 10 + static_cast<uint32_t>(c - '0');
  }
  return p >= 1 && p <= 65535;
}

using Apply = core::Status (*)(std::string_view key, const toml::node& n, Config& c);

struct Key {
  std::string_view table;
  std::string_view name;
  Apply apply;
};

// Every key the file may hold; docs/CONFIGURATION.md lists the same.
const std::array<Key, 14> kKeys = {{
    {"daemon", "address",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(c.address, GetPath(key, n, false));
       if (c.address.size() > kMaxSocketPath)
         return Invalid(key, n, "a unix socket path is at most " + std::to_string(kMaxSocketPath) + " bytes");
       return core::Status::Ok();
     }},
    {"daemon", "root",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(c.root, GetPath(key, n, false));
       return core::Status::Ok();
     }},
    {"daemon", "log_level",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(std::string level, GetString(key, n));
       static constexpr std::array<std::string_view, 5> kLevels = {"trace", "debug", "info", "warn", "error"};
       if (std::find(kLevels.begin(), kLevels.end(), level) == kLevels.end())
         return Invalid(key, n, "expected one of trace, debug, info, warn, error");
       c.log_level = std::move(level);
       return core::Status::Ok();
     }},
    {"metrics", "address",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(std::string address, GetString(key, n));
       if (!address.empty() && !IsHostPort(address))
         return Invalid(key, n, "expected \"host:port\" (port 1-65535) or \"\" for no metrics endpoint");
       c.metrics_address = std::move(address);
       return core::Status::Ok();
     }},
    {"cache", "dir",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(c.cache_dir, GetPath(key, n, true));
       return core::Status::Ok();
     }},
    {"cache", "max_size",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(c.cache_max_bytes, GetByteSize(key, n));
       return core::Status::Ok();
     }},
    {"prefetch", "mode",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(std::string mode, GetString(key, n));
       if (mode == "none") {
         c.prefetch = PrefetchMode::kNone;
       } else if (mode == "list") {
         c.prefetch = PrefetchMode::kList;
       } else if (mode == "all") {
         c.prefetch = PrefetchMode::kAll;
       } else {
         return Invalid(key, n, "expected one of none, list, all");
       }
       return core::Status::Ok();
     }},
    {"prefetch", "max_in_flight",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(int64_t v, GetInteger(key, n, 1, 64));
       c.prefetch_max_in_flight = static_cast<int>(v);
       return core::Status::Ok();
     }},
    {"fetch", "attempts",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(int64_t v, GetInteger(key, n, 1, 100));
       c.fetch_attempts = static_cast<int>(v);
       return core::Status::Ok();
     }},
    {"fetch", "timeout",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(c.fetch_timeout, GetDuration(key, n));
       return core::Status::Ok();
     }},
    {"fetch", "connect_timeout",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(c.connect_timeout, GetDuration(key, n));
       return core::Status::Ok();
     }},
    {"fetch", "readahead",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(uint64_t v, GetByteSize(key, n));
       if (v > (64u << 20)) return Invalid(key, n, "at most 64 MiB");
       c.readahead_bytes = v;
       return core::Status::Ok();
     }},
    {"registry", "hosts_dir",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(c.hosts_dir, GetPath(key, n, true));
       return core::Status::Ok();
     }},
    {"registry", "docker_config",
     [](std::string_view key, const toml::node& n, Config& c) -> core::Status {
       OCIX_ASSIGN_OR_RETURN(c.docker_config, GetPath(key, n, true));
       return core::Status::Ok();
     }},
}};

core::Result<Config> FromTable(const toml::table& root) {
  Config c;
  for (auto&& [table_key, table_node] : root) {
    std::string_view table_name = table_key.str();
    bool known = std::any_of(kKeys.begin(), kKeys.end(), [&](const Key& k) { return k.table == table_name; });
    if (!known) {
      return core::InvalidArgument(std::string(table_node.is_table() ? "unknown table [" : "unknown key \"") +
                                   std::string(table_name) + (table_node.is_table() ? "]" : "\"") + " (line " +
                                   std::to_string(table_key.source().begin.line) + ")");
    }
    const toml::table* table = table_node.as_table();
    if (!table) return Invalid(table_name, table_node, "expected a table");
    for (auto&& [key, node] : *table) {
      // A named copy: clang before 16 cannot capture structured bindings.
      std::string_view key_name = key.str();
      std::string full = std::string(table_name) + "." + std::string(key_name);
      auto k = std::find_if(kKeys.begin(), kKeys.end(),
                            [&](const Key& x) { return x.table == table_name && x.name == key_name; });
      if (k == kKeys.end())
        return core::InvalidArgument("unknown key " + full + " (line " + std::to_string(key.source().begin.line) + ")");
      OCIX_RETURN_IF_ERROR(k->apply(full, node, c));
    }
  }
  return c;
}

}  // namespace

core::RegistryOptions Config::RegistryOptions() const {
  core::RegistryOptions o;
  o.certs_dir = hosts_dir;
  o.docker_config = docker_config;
  o.max_attempts = fetch_attempts;
  o.low_speed_timeout = fetch_timeout;
  o.connect_timeout = connect_timeout;
  // Chunk frames of one request have small tar header frames (or cached
  // chunks) between them: fetching a gap costs less than a round trip.
  o.range_coalesce_gap = 64u << 10;
  return o;
}

std::string Config::CacheDir() const {
  if (!cache_dir.empty()) return cache_dir;
  return (std::filesystem::path(root) / "cache").string();
}

core::Result<Config> ParseConfig(std::string_view toml_text) {
  if (toml_text.size() > kMaxConfigSize) return core::InvalidArgument("configuration larger than 1 MiB");
  // Debian's toml++ is built with exceptions: parse errors arrive as throws.
  try {
    toml::table root = toml::parse(toml_text);
    return FromTable(root);
  } catch (const toml::parse_error& e) {
    const auto& pos = e.source().begin;
    return core::InvalidArgument("line " + std::to_string(pos.line) + ", column " + std::to_string(pos.column) + ": " +
                                 std::string(e.description()));
  } catch (const std::exception& e) {
    return core::Internal(std::string("configuration: ") + e.what());
  }
}

core::Result<Config> LoadConfig(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return core::NotFound(path + ": no such file");
  if (std::filesystem::is_directory(path, ec)) return core::InvalidArgument(path + ": is a directory");
  std::ifstream in(path, std::ios::binary);
  if (!in) return core::ErrnoError("open " + path, errno);
  std::string text;
  char buf[8192];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigSize) return core::InvalidArgument(path + ": larger than 1 MiB");
  }
  if (in.bad()) return core::IoError("read " + path);
  auto config = ParseConfig(text);
  if (!config.ok()) return config.status().WithContext(path);
  return config;
}

}  // namespace ocix::config

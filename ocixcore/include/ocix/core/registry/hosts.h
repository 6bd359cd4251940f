// Which endpoints to try for a registry host: containerd's certs.d layout.
//
//   CERTS_DIR/<host[:port]>/hosts.toml   (else CERTS_DIR/_default/hosts.toml)
//
//   server = "https://registry.example.com"      # the upstream, tried last
//   [host."https://mirror.example.com"]          # mirrors, tried in file order
//     capabilities = ["pull", "resolve"]         # default: pull, resolve, push
//     skip_verify = false
//     ca = "/etc/certs/mirror.pem"               # string or array
//     client = [["/etc/certs/c.cert", "/etc/certs/c.key"]]  # or "c.pem", or [cert, key]
//     override_path = false                      # true: the URL path replaces "/v2"
//     [host."https://mirror.example.com".header]
//       x-custom = "value"                       # string or array of strings
//
// The top level may carry the same keys for `server`. Without a hosts.toml
// the only endpoint is https://host ("https://registry-1.docker.io" for
// docker.io), or http:// for localhost, 127.0.0.1 and ::1 (with any port).
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "ocix/core/status.h"

namespace ocix::core {

inline constexpr std::string_view kCapabilityPull = "pull";
inline constexpr std::string_view kCapabilityResolve = "resolve";
inline constexpr std::string_view kCapabilityPush = "push";

struct RegistryHost {
  std::string scheme;                     // "https" or "http"
  std::string host;                       // host[:port]
  std::string path_prefix = "/v2";        // API root path, no trailing '/'
  std::vector<std::string> capabilities;  // pull, resolve, push
  bool skip_verify = false;
  std::vector<std::string> ca_files;           // PEM files trusted in addition to the system's
  std::string client_cert, client_key;         // key empty: the cert file holds both
  std::map<std::string, std::string> headers;  // multiple values joined with ", "
  bool override_path = false;

  bool Has(std::string_view capability) const;
  // scheme://host + path_prefix
  std::string BaseUrl() const;
};

// Parses one hosts.toml for `registry_host` (as in a Reference). Returns the
// endpoints in the order to try them: mirrors first, then the server.
// InvalidArgument for malformed TOML, unknown capabilities or URLs that are
// not http(s). Relative ca/client paths are kept as written.
Result<std::vector<RegistryHost>> ParseHostsToml(std::string_view toml_text, std::string_view registry_host);

// Reads certs_dir's hosts.toml for registry_host (or _default), or returns the
// default endpoint. A missing or empty certs_dir means defaults.
Result<std::vector<RegistryHost>> HostsFor(std::string_view registry_host, const std::string& certs_dir);

// The endpoint used when no hosts.toml configures registry_host.
RegistryHost DefaultHost(std::string_view registry_host);

}  // namespace ocix::core

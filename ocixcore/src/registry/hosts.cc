#include "ocix/core/registry/hosts.h"

#include <toml++/toml.h>
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>

namespace ocix::core {

namespace {

// hosts.toml is a small admin-written file; refuse anything absurd.
constexpr size_t kMaxHostsTomlSize = 1u << 20;

bool IsLocalhost(std::string_view host) {
  std::string_view name = host;
  if (name.starts_with("[")) {
    name = name.substr(1, name.find(']') == std::string_view::npos ? 0 : name.find(']') - 1);
  } else if (size_t colon = name.rfind(':'); colon != std::string_view::npos && name.find(':') == colon) {
    name = name.substr(0, colon);
  }
  return name == "localhost" || name == "127.0.0.1" || name == "::1";
}

const std::vector<std::string>& AllCapabilities() {
  static const std::vector<std::string> kAll = {std::string(kCapabilityPull), std::string(kCapabilityResolve),
                                                std::string(kCapabilityPush)};
  return kAll;
}

// "scheme://host[:port][/path]" (scheme defaults to https) into h.
Status ParseEndpointUrl(std::string_view url, bool override_path, RegistryHost& h) {
  std::string_view rest = url;
  h.scheme = "https";
  if (size_t sep = rest.find("://"); sep != std::string_view::npos) {
    h.scheme = std::string(rest.substr(0, sep));
    std::transform(h.scheme.begin(), h.scheme.end(), h.scheme.begin(), [](unsigned char c) { return std::tolower(c); });
    rest = rest.substr(sep + 3);
  }
  if (h.scheme != "https" && h.scheme != "http")
    return InvalidArgument("host \"" + std::string(url) + "\": scheme must be http or https");
  size_t slash = rest.find('/');
  h.host = std::string(rest.substr(0, slash));
  if (h.host.empty() || h.host.find_first_of("@?# \t") != std::string::npos)
    return InvalidArgument("host \"" + std::string(url) + "\": invalid host");
  std::string path = slash == std::string_view::npos ? std::string() : std::string(rest.substr(slash));
  if (path.find_first_of("?# \t") != std::string::npos)
    return InvalidArgument("host \"" + std::string(url) + "\": invalid path");
  while (!path.empty() && path.back() == '/') path.pop_back();
  h.override_path = override_path;
  if (override_path) {
    h.path_prefix = path;
  } else if (path.empty()) {
    h.path_prefix = "/v2";
  } else {
    h.path_prefix = path.ends_with("/v2") ? path : path + "/v2";
  }
  return Status::Ok();
}

Result<std::vector<std::string>> StringOrArray(const toml::node& n, std::string_view what) {
  std::vector<std::string> out;
  if (auto s = n.value<std::string>()) {
    out.push_back(*s);
    return out;
  }
  const toml::array* arr = n.as_array();
  if (!arr) return InvalidArgument(std::string(what) + ": expected a string or an array of strings");
  for (const toml::node& e : *arr) {
    auto s = e.value<std::string>();
    if (!s) return InvalidArgument(std::string(what) + ": expected strings");
    out.push_back(*s);
  }
  return out;
}

// Applies the per-host keys of `t` (top level for the server, or one
// [host."URL"] table) to h. The URL is parsed by the caller after
// override_path is known.
Status ApplyHostKeys(const toml::table& t, std::string_view where, RegistryHost& h) {
  h.capabilities = AllCapabilities();
  if (const toml::node* caps = t.get("capabilities")) {
    OCIX_ASSIGN_OR_RETURN(auto list, StringOrArray(*caps, std::string(where) + ".capabilities"));
    h.capabilities.clear();
    for (auto& c : list) {
      if (c != kCapabilityPull && c != kCapabilityResolve && c != kCapabilityPush)
        return InvalidArgument(std::string(where) + ": unknown capability \"" + c + "\"");
      h.capabilities.push_back(std::move(c));
    }
  }
  if (const toml::node* sv = t.get("skip_verify")) {
    auto b = sv->value<bool>();
    if (!b) return InvalidArgument(std::string(where) + ".skip_verify: expected a boolean");
    h.skip_verify = *b;
  }
  if (const toml::node* ca = t.get("ca")) {
    OCIX_ASSIGN_OR_RETURN(h.ca_files, StringOrArray(*ca, std::string(where) + ".ca"));
  }
  if (const toml::node* client = t.get("client")) {
    // "pem", ["cert", "key"] or [["cert", "key"], ...]: the first pair is used.
    std::string what = std::string(where) + ".client";
    if (auto s = client->value<std::string>()) {
      h.client_cert = *s;
    } else if (const toml::array* arr = client->as_array(); arr && !arr->empty()) {
      const toml::node& first = *arr->get(0);
      const toml::array* pair = first.is_array() ? first.as_array() : arr;
      if (pair->empty() || pair->size() > 2) return InvalidArgument(what + ": expected [cert, key]");
      auto cert = pair->get(0)->value<std::string>();
      if (!cert) return InvalidArgument(what + ": expected strings");
      h.client_cert = *cert;
      if (pair->size() == 2) {
        auto key = pair->get(1)->value<std::string>();
        if (!key) return InvalidArgument(what + ": expected strings");
        h.client_key = *key;
      }
    } else {
      return InvalidArgument(what + ": expected a string or an array");
    }
  }
  if (const toml::node* hdr = t.get("header")) {
    const toml::table* ht = hdr->as_table();
    if (!ht) return InvalidArgument(std::string(where) + ".header: expected a table");
    for (auto&& [k, v] : *ht) {
      std::string name(k.str());
      if (name.empty() || name.find_first_of(":\r\n \t") != std::string::npos)
        return InvalidArgument(std::string(where) + ".header: invalid header name");
      OCIX_ASSIGN_OR_RETURN(auto values, StringOrArray(v, std::string(where) + ".header." + name));
      std::string joined;
      for (const auto& value : values) {
        if (value.find_first_of("\r\n") != std::string::npos)
          return InvalidArgument(std::string(where) + ".header." + name + ": line break in value");
        if (!joined.empty()) joined += ", ";
        joined += value;
      }
      h.headers[name] = joined;
    }
  }
  return Status::Ok();
}

Result<bool> OverridePath(const toml::table& t, std::string_view where) {
  const toml::node* op = t.get("override_path");
  if (!op) return false;
  auto b = op->value<bool>();
  if (!b) return InvalidArgument(std::string(where) + ".override_path: expected a boolean");
  return *b;
}

Result<std::vector<RegistryHost>> HostsFromTable(const toml::table& root, std::string_view registry_host) {
  std::vector<RegistryHost> hosts;
  if (const toml::node* host_node = root.get("host")) {
    const toml::table* host_table = host_node->as_table();
    if (!host_table) return InvalidArgument("hosts.toml: \"host\" must be a table");
    // toml++ tables are sorted by key; containerd tries mirrors in file order.
    std::vector<std::pair<std::string, const toml::table*>> entries;
    std::vector<toml::source_position> positions;
    for (auto&& [k, v] : *host_table) {
      const toml::table* t = v.as_table();
      if (!t) return InvalidArgument("hosts.toml: host.\"" + std::string(k.str()) + "\" must be a table");
      entries.emplace_back(std::string(k.str()), t);
    }
    std::stable_sort(entries.begin(), entries.end(),
                     [](const auto& a, const auto& b) { return a.second->source().begin < b.second->source().begin; });
    for (const auto& [url, t] : entries) {
      std::string where = "host.\"" + url + "\"";
      RegistryHost h;
      OCIX_RETURN_IF_ERROR(ApplyHostKeys(*t, where, h));
      OCIX_ASSIGN_OR_RETURN(bool override_path, OverridePath(*t, where));
      OCIX_RETURN_IF_ERROR(ParseEndpointUrl(url, override_path, h));
      hosts.push_back(std::move(h));
    }
  }
  RegistryHost server = DefaultHost(registry_host);
  OCIX_RETURN_IF_ERROR(ApplyHostKeys(root, "server", server));
  if (const toml::node* s = root.get("server")) {
    auto url = s->value<std::string>();
    if (!url) return InvalidArgument("hosts.toml: server must be a string");
    OCIX_ASSIGN_OR_RETURN(bool override_path, OverridePath(root, "server"));
    OCIX_RETURN_IF_ERROR(ParseEndpointUrl(*url, override_path, server));
  }
  hosts.push_back(std::move(server));
  return hosts;
}

}  // namespace

bool RegistryHost::Has(std::string_view capability) const {
  return std::find(capabilities.begin(), capabilities.end(), capability) != capabilities.end();
}

std::string RegistryHost::BaseUrl() const { return scheme + "://" + host + path_prefix; }

RegistryHost DefaultHost(std::string_view registry_host) {
  RegistryHost h;
  h.capabilities = AllCapabilities();
  if (registry_host == "docker.io") {
    h.scheme = "https";
    h.host = "registry-1.docker.io";
  } else {
    h.scheme = IsLocalhost(registry_host) ? "http" : "https";
    h.host = std::string(registry_host);
  }
  return h;
}

Result<std::vector<RegistryHost>> ParseHostsToml(std::string_view toml_text, std::string_view registry_host) {
  if (toml_text.size() > kMaxHostsTomlSize) return InvalidArgument("hosts.toml: larger than 1 MiB");
  // Debian's toml++ is built with exceptions: parse errors arrive as throws.
  try {
    toml::table root = toml::parse(toml_text);
    return HostsFromTable(root, registry_host);
  } catch (const toml::parse_error& e) {
    const auto& pos = e.source().begin;
    return InvalidArgument("hosts.toml:" + std::to_string(pos.line) + ":" + std::to_string(pos.column) + ": " +
                           std::string(e.description()));
  } catch (const std::exception& e) {
    return Internal(std::string("hosts.toml: ") + e.what());
  }
}

Result<std::vector<RegistryHost>> HostsFor(std::string_view registry_host, const std::string& certs_dir) {
  if (!certs_dir.empty()) {
    namespace fs = std::filesystem;
    for (const std::string& dir : {std::string(registry_host), std::string("_default")}) {
      fs::path file = fs::path(certs_dir) / dir / "hosts.toml";
      std::error_code ec;
      if (!fs::is_regular_file(file, ec)) continue;
      std::ifstream in(file, std::ios::binary);
      if (!in) return ErrnoError("open " + file.string(), errno);
      std::string text;
      char buf[8192];
      while (in.read(buf, sizeof buf) || in.gcount() > 0) {
        text.append(buf, static_cast<size_t>(in.gcount()));
        if (text.size() > kMaxHostsTomlSize) return InvalidArgument(file.string() + ": larger than 1 MiB");
      }
      auto hosts = ParseHostsToml(text, registry_host);
      if (!hosts.ok()) return hosts.status().WithContext(file.string());
      return hosts;
    }
  }
  return std::vector<RegistryHost>{DefaultHost(registry_host)};
}

}  // namespace ocix::core

#include "ocix/core/registry/reference.h"

#include "ocix/core/oci_layout.h"

namespace ocix::core {

namespace {

// Limits from docker/distribution's reference grammar.
constexpr size_t kMaxNameLength = 255;
constexpr size_t kMaxTagLength = 128;

bool IsLowerAlnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool IsAlnum(char c) { return IsLowerAlnum(c) || (c >= 'A' && c <= 'Z'); }

// path-component: [a-z0-9]+ ( ( [._] | __ | [-]+ ) [a-z0-9]+ )*
bool ValidPathComponent(std::string_view s) {
  if (s.empty() || !IsLowerAlnum(s.front()) || !IsLowerAlnum(s.back())) return false;
  size_t i = 0;
  while (i < s.size()) {
    if (IsLowerAlnum(s[i])) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < s.size() && !IsLowerAlnum(s[j])) ++j;
    std::string_view sep = s.substr(i, j - i);
    bool ok = sep == "." || sep == "_" || sep == "__" || sep.find_first_not_of('-') == std::string_view::npos;
    if (!ok) return false;
    i = j;
  }
  return true;
}

// domain-component: [a-zA-Z0-9] | [a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]
bool ValidDomainComponent(std::string_view s) {
  if (s.empty() || !IsAlnum(s.front()) || !IsAlnum(s.back())) return false;
  for (char c : s)
    if (!IsAlnum(c) && c != '-') return false;
  return true;
}

bool ValidPort(std::string_view p) {
  if (p.empty() || p.size() > 5) return false;
  for (char c : p)
    if (c < '0' || c > '9') return false;
  return true;
}

// host[:port] or [ipv6][:port]
bool ValidDomain(std::string_view d) {
  if (d.empty()) return false;
  if (d.front() == '[') {
    size_t close = d.find(']');
    if (close == std::string_view::npos || close < 3) return false;
    for (char c : d.substr(1, close - 1))
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':')) return false;
    std::string_view rest = d.substr(close + 1);
    return rest.empty() || (rest.front() == ':' && ValidPort(rest.substr(1)));
  }
  size_t colon = d.find(':');
  std::string_view name = d.substr(0, colon);
  if (colon != std::string_view::npos && !ValidPort(d.substr(colon + 1))) return false;
  size_t start = 0;
  while (true) {
    size_t dot = name.find('.', start);
    if (!ValidDomainComponent(name.substr(start, dot == std::string_view::npos ? dot : dot - start))) return false;
    if (dot == std::string_view::npos) return true;
    start = dot + 1;
  }
}

bool ValidTag(std::string_view t) {
  if (t.empty() || t.size() > kMaxTagLength) return false;
  auto word = [](char c) { return IsAlnum(c) || c == '_'; };
  if (!word(t.front())) return false;
  for (char c : t)
    if (!word(c) && c != '.' && c != '-') return false;
  return true;
}

}  // namespace

bool IsValidSha256Digest(std::string_view d) { return IsSha256Digest(d); }

Result<Reference> Reference::Parse(std::string_view s) {
  const std::string quoted = "reference \"" + std::string(s.substr(0, 300)) + "\"";
  if (s.empty()) return InvalidArgument("empty reference");
  Reference r;
  std::string_view rest = s;
  if (size_t at = rest.find('@'); at != std::string_view::npos) {
    std::string_view digest = rest.substr(at + 1);
    if (digest.find(':') == std::string_view::npos) return InvalidArgument(quoted + ": malformed digest");
    if (digest.substr(0, 7) != "sha256:") return InvalidArgument(quoted + ": unsupported digest algorithm");
    if (!IsValidSha256Digest(digest)) return InvalidArgument(quoted + ": malformed sha256 digest");
    r.digest = std::string(digest);
    rest = rest.substr(0, at);
  }
  // A ':' after the last '/' starts the tag ("host:5000/repo" has none).
  size_t slash = rest.rfind('/');
  size_t colon = rest.rfind(':');
  if (colon != std::string_view::npos && (slash == std::string_view::npos || colon > slash)) {
    std::string_view tag = rest.substr(colon + 1);
    if (!ValidTag(tag)) return InvalidArgument(quoted + ": invalid tag");
    r.tag = std::string(tag);
    rest = rest.substr(0, colon);
  }
  // The first component is a registry host if it looks like one (docker's rule).
  std::string_view name = rest;
  size_t first_slash = rest.find('/');
  if (first_slash != std::string_view::npos) {
    std::string_view first = rest.substr(0, first_slash);
    if (first.find_first_of(".:[") != std::string_view::npos || first == "localhost") {
      if (!ValidDomain(first)) return InvalidArgument(quoted + ": invalid registry host");
      r.host = std::string(first);
      name = rest.substr(first_slash + 1);
    }
  }
  if (r.host.empty() || r.host == "index.docker.io") r.host = "docker.io";
  if (name.empty()) return InvalidArgument(quoted + ": empty repository");
  size_t start = 0;
  while (true) {
    size_t next = name.find('/', start);
    std::string_view comp = name.substr(start, next == std::string_view::npos ? next : next - start);
    if (!ValidPathComponent(comp)) return InvalidArgument(quoted + ": invalid repository name component");
    if (next == std::string_view::npos) break;
    start = next + 1;
  }
  r.repository = std::string(name);
  if (r.host == "docker.io" && r.repository.find('/') == std::string::npos) r.repository = "library/" + r.repository;
  if (r.host.size() + 1 + r.repository.size() > kMaxNameLength) return InvalidArgument(quoted + ": name too long");
  if (r.tag.empty() && r.digest.empty()) r.tag = "latest";
  return r;
}

std::string Reference::Locator() const { return host + "/" + repository; }

std::string Reference::ToString() const {
  std::string s = Locator();
  if (!tag.empty()) s += ":" + tag;
  if (!digest.empty()) s += "@" + digest;
  return s;
}

}  // namespace ocix::core

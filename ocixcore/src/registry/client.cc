#include "ocix/core/registry/client.h"

#include "ocix/core/oci_json.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "http.h"
#include "ocix/core/registry/auth.h"
#include "ocix/core/registry/hosts.h"
#include "ocix/core/sha256.h"

namespace ocix::core {

namespace {

using nlohmann::json;
using registry_internal::HttpRequest;
using registry_internal::HttpResponse;
using registry_internal::UrlEscape;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kMediaIndex = "application/vnd.oci.image.index.v1+json";
constexpr std::string_view kMediaManifest = "application/vnd.oci.image.manifest.v1+json";
constexpr std::string_view kMediaDockerList = "application/vnd.docker.distribution.manifest.list.v2+json";
constexpr std::string_view kMediaDockerManifest = "application/vnd.docker.distribution.manifest.v2+json";
constexpr const char* kAcceptManifests =
    "Accept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, "
    "application/vnd.docker.distribution.manifest.list.v2+json, "
    "application/vnd.docker.distribution.manifest.v2+json";
// Manifests and token responses are small JSON documents.
constexpr size_t kMaxManifestSize = 4u << 20;
constexpr size_t kMaxTokenResponse = 1u << 20;
constexpr size_t kMaxDockerConfig = 4u << 20;
// Default token lifetime when the realm does not say (distribution's token spec).
constexpr int64_t kDefaultTokenSeconds = 60;
// An index nested in an index is allowed, but not without bound.
constexpr int kMaxIndexDepth = 4;

bool IsIndexType(std::string_view mt) { return mt == kMediaIndex || mt == kMediaDockerList; }
bool IsManifestType(std::string_view mt) { return mt == kMediaManifest || mt == kMediaDockerManifest; }

// "https://h/v2/x?_state=..." -> "https://h/v2/x": queries are long and say nothing useful.
std::string UrlForMessage(const std::string& url) { return url.substr(0, url.find('?')); }

std::string AppendQuery(const std::string& url, std::string_view query) {
  return url + (url.find('?') == std::string::npos ? "?" : "&") + std::string(query);
}

// The registry's error JSON ({"errors":[{"code","message"}]}) as "CODE: message; ...".
std::string RegistryErrors(const HttpResponse& r) {
  json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  std::string out;
  if (j.is_object() && j.contains("errors") && j["errors"].is_array()) {
    for (const auto& e : j["errors"]) {
      if (!e.is_object()) continue;
      std::string code = e.contains("code") && e["code"].is_string() ? e["code"].get<std::string>() : "";
      std::string msg = e.contains("message") && e["message"].is_string() ? e["message"].get<std::string>() : "";
      if (!out.empty()) out += "; ";
      out += code + (msg.empty() ? "" : ": " + msg);
    }
  }
  if (out.size() > 300) out = out.substr(0, 300) + "...";
  return out;
}

// Maps a final non-success response to a Status; `what` names the object.
Status StatusFromResponse(const HttpResponse& r, const std::string& what, const std::string& url) {
  std::string detail = RegistryErrors(r);
  std::string suffix = " (HTTP " + std::to_string(r.status) + " from " + UrlForMessage(url) +
                       (detail.empty() ? ")" : ": " + detail + ")");
  switch (r.status) {
    case 401:
    case 403: return {Code::kPermissionDenied, "unauthorized: " + what + suffix};
    case 404: return NotFound(what + " not found" + suffix);
    case 400:
    case 416: return InvalidArgument(what + suffix);
    case 405: return Unimplemented(what + ": operation not supported by the registry" + suffix);
    case 429: return Unavailable(what + ": too many requests" + suffix);
    default: break;
  }
  if (r.status >= 500) return Unavailable(what + suffix);
  return FailedPrecondition(what + ": unexpected response" + suffix);
}

// Closes a file descriptor; unlinks a temp path unless released.
class TempFile {
 public:
  TempFile() = default;
  ~TempFile() {
    if (fd_ >= 0) close(fd_);
    if (!path_.empty()) unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;

  Status Create(const std::string& target) {
    std::filesystem::path p(target);
    std::string tmpl = (p.has_parent_path() ? p.parent_path().string() + "/" : std::string()) + "." +
                       p.filename().string() + ".ocix-tmp-XXXXXX";
    fd_ = mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd_ < 0) return ErrnoError("create temp file for " + target, errno);
    path_ = tmpl;
    return Status::Ok();
  }
  int fd() const { return fd_; }
  Status CommitTo(const std::string& target) {
    if (fsync(fd_) != 0) return ErrnoError("fsync " + path_, errno);
    if (close(fd_) != 0) {
      fd_ = -1;
      return ErrnoError("close " + path_, errno);
    }
    fd_ = -1;
    if (rename(path_.c_str(), target.c_str()) != 0) return ErrnoError("rename to " + target, errno);
    path_.clear();
    return Status::Ok();
  }

 private:
  int fd_ = -1;
  std::string path_;
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status WriteAll(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return ErrnoError("write", errno);
    data.remove_prefix(static_cast<size_t>(n));
  }
  return Status::Ok();
}

// "bytes START-END/TOTAL" -> {START, END}
std::optional<std::pair<uint64_t, uint64_t>> ParseContentRange(std::string_view v) {
  if (!v.starts_with("bytes ")) return std::nullopt;
  v.remove_prefix(6);
  size_t dash = v.find('-'), slash = v.find('/');
  if (dash == std::string_view::npos || slash == std::string_view::npos || slash < dash) return std::nullopt;
  auto num = [](std::string_view s) -> std::optional<uint64_t> {
    if (s.empty() || s.size() > 19) return std::nullopt;
    uint64_t n = 0;
    for (char c : s) {
      if (c < '0' || c > '9') return std::nullopt;
      n = n * 10 + static_cast<uint64_t>(c - '0');
    }
    return n;
  };
  auto a = num(v.substr(0, dash)), b = num(v.substr(dash + 1, slash - dash - 1));
  if (!a || !b || *b < *a) return std::nullopt;
  return std::make_pair(*a, *b);
}

bool TryNextEndpoint(const Status& s) {
  return s.code() == Code::kUnavailable || s.code() == Code::kNotFound || s.code() == Code::kPermissionDenied ||
         s.code() == Code::kCorruption;
}

std::string PullScope(const std::string& repo) { return "repository:" + repo + ":pull"; }
std::string PushScope(const std::string& repo) { return "repository:" + repo + ":pull,push"; }

}  // namespace

class RegistryClient::Impl {
 public:
  explicit Impl(RegistryOptions o)
      : options_(std::move(o)),
        http_(
            registry_internal::HttpOptions{options_.connect_timeout, options_.low_speed_timeout, options_.user_agent}) {
    options_.max_attempts = std::max(1, options_.max_attempts);
    options_.push_chunk_size = std::max<uint64_t>(1, options_.push_chunk_size);
  }

  // One registry endpoint plus the token scopes its requests need.
  struct Target {
    const RegistryHost* host;
    std::vector<std::string> scopes;
  };

  Result<std::vector<RegistryHost>> Endpoints(const std::string& registry, std::string_view capability) {
    auto it = hosts_.find(registry);
    if (it == hosts_.end()) {
      OCIX_ASSIGN_OR_RETURN(auto list, HostsFor(registry, options_.certs_dir));
      it = hosts_.emplace(registry, std::move(list)).first;
    }
    std::vector<RegistryHost> out;
    for (const auto& h : it->second)
      if (h.Has(capability)) out.push_back(h);
    if (out.empty())
      return FailedPrecondition("no endpoint for " + registry + " has the " + std::string(capability) + " capability");
    return out;
  }

  // Runs fn on each endpoint with the capability until one succeeds or fails
  // in a way another endpoint cannot fix.
  template <typename T>
  Result<T> OnEndpoints(const std::string& registry, std::string_view capability,
                        const std::function<Result<T>(const RegistryHost&)>& fn) {
    OCIX_ASSIGN_OR_RETURN(auto endpoints, Endpoints(registry, capability));
    Status last;
    for (const auto& h : endpoints) {
      Result<T> r = fn(h);
      if (r.ok() || !TryNextEndpoint(r.status())) return r;
      last = r.status();
    }
    return last;
  }

  void Backoff(int attempt) {
    auto delay = options_.initial_backoff * (1LL << std::min(attempt - 1, 20));
    std::this_thread::sleep_for(std::min<std::chrono::milliseconds>(delay, options_.max_backoff));
  }

  Result<std::optional<Credentials>> CredentialsFor(const std::string& host) {
    if (!docker_config_) {
      std::string path = options_.docker_config;
      if (path.empty()) {
        if (const char* d = std::getenv("DOCKER_CONFIG"); d && *d) {
          path = std::string(d) + "/config.json";
        } else if (const char* home = std::getenv("HOME"); home && *home) {
          path = std::string(home) + "/.docker/config.json";
        }
      }
      docker_config_ = std::string();
      std::ifstream in(path, std::ios::binary);
      if (!path.empty() && in) {
        std::string text((std::istreambuf_iterator<char>(in)), {});
        if (text.size() > kMaxDockerConfig) return InvalidArgument("docker config " + path + ": too large");
        docker_config_ = std::move(text);
      }
    }
    if (docker_config_->empty()) return std::optional<Credentials>();
    return CredentialsFromDockerConfig(*docker_config_, host);
  }

  std::string TokenKey(const Target& t) const {
    std::string key = t.host->host;
    for (const auto& s : t.scopes) key += " " + s;
    return key;
  }

  // Adds what we already know to authenticate with: a cached token, or Basic.
  Status AddAuth(const Target& t, HttpRequest& req) {
    if (auto it = tokens_.find(TokenKey(t)); it != tokens_.end()) {
      if (Clock::now() < it->second.expiry) {
        req.headers.push_back("Authorization: Bearer " + it->second.token);
        return Status::Ok();
      }
      tokens_.erase(it);
    }
    if (basic_hosts_.count(t.host->host)) {
      OCIX_ASSIGN_OR_RETURN(auto creds, CredentialsFor(t.host->host));
      if (creds) {
        req.basic_user = creds->username;
        req.basic_password = creds->password;
      }
    }
    return Status::Ok();
  }

  // Sends req to t's endpoint: answers one 401 challenge, retries transport
  // failures, 5xx and 429 up to `attempts` times. Returns the final response
  // (any status), or Unavailable when every attempt failed to transport.
  // A response whose sink aborted or body overflowed comes back as is.
  Result<HttpResponse> Send(const Target& t, HttpRequest req, int attempts, const std::function<void()>& reset = {}) {
    req.tls = t.host;
    for (const auto& [k, v] : t.host->headers) req.headers.push_back(k + ": " + v);
    const std::vector<std::string> base_headers = req.headers;
    bool challenged = false;
    for (int attempt = 1;;) {
      req.headers = base_headers;
      req.basic_user.clear();
      req.basic_password.clear();
      OCIX_RETURN_IF_ERROR(AddAuth(t, req));
      if (reset) reset();
      OCIX_ASSIGN_OR_RETURN(HttpResponse r, http_.Perform(req));
      Account(r);
      std::string cause;
      if (!r.transport_ok()) {
        if (!r.retryable) {
          if (r.sink_aborted || r.body_too_large) return r;
          return Unavailable(req.method + " " + UrlForMessage(req.url) + ": " + r.curl_error);
        }
        cause = r.curl_error;
      } else if (r.status == 401 && !challenged) {
        challenged = true;
        OCIX_RETURN_IF_ERROR(Authenticate(t, r));
        continue;
      } else if (r.status >= 500 || r.status == 429) {
        std::string detail = RegistryErrors(r);
        cause = "HTTP " + std::to_string(r.status) + (detail.empty() ? "" : ": " + detail);
      } else {
        return r;
      }
      if (attempt >= attempts) {
        return Unavailable(req.method + " " + UrlForMessage(req.url) + ": " + cause + " (" + std::to_string(attempt) +
                           (attempt == 1 ? " attempt)" : " attempts)"));
      }
      Backoff(attempt);
      ++attempt;
      ++stats_.retries;
    }
  }

  void Account(const HttpResponse& r) {
    ++stats_.requests;
    stats_.bytes_downloaded += r.body_bytes;
    stats_.bytes_uploaded += r.bytes_sent;
  }

  // Answers a 401: remembers Basic for the host, or fetches a Bearer token.
  Status Authenticate(const Target& t, const HttpResponse& r) {
    const std::string& host = t.host->host;
    std::string header;
    auto [begin, end] = r.headers.equal_range("www-authenticate");
    for (auto it = begin; it != end; ++it) header += (header.empty() ? "" : ", ") + it->second;
    if (header.empty()) return {Code::kPermissionDenied, "unauthorized: " + host + " answered 401 without a challenge"};
    OCIX_ASSIGN_OR_RETURN(auto challenges, ParseWwwAuthenticate(header));
    const AuthChallenge* bearer = nullptr;
    const AuthChallenge* basic = nullptr;
    for (const auto& c : challenges) {
      if (c.scheme == "bearer" && !bearer) bearer = &c;
      if (c.scheme == "basic" && !basic) basic = &c;
    }
    OCIX_ASSIGN_OR_RETURN(auto creds, CredentialsFor(host));
    if (bearer) return FetchToken(t, *bearer, creds);
    if (basic) {
      if (!creds || creds->username.empty())
        return {Code::kPermissionDenied,
                "unauthorized: " + host + " requires Basic credentials and none are configured"};
      basic_hosts_.insert(host);
      return Status::Ok();
    }
    return Unimplemented("unauthorized: " + host + " offers no supported auth scheme (Basic, Bearer)");
  }

  Status FetchToken(const Target& t, const AuthChallenge& c, const std::optional<Credentials>& creds) {
    auto realm_it = c.params.find("realm");
    if (realm_it == c.params.end() ||
        !(realm_it->second.starts_with("https://") || realm_it->second.starts_with("http://")))
      return Corruption("Bearer challenge from " + t.host->host + " without an http(s) realm");
    const std::string& realm = realm_it->second;
    std::string service = c.params.count("service") ? c.params.at("service") : std::string();
    std::vector<std::string> scopes = t.scopes;
    if (auto s = c.params.find("scope"); s != c.params.end()) {
      size_t start = 0;
      while (start < s->second.size()) {
        size_t sp = s->second.find(' ', start);
        std::string one = s->second.substr(start, sp == std::string::npos ? sp : sp - start);
        if (!one.empty() && std::find(scopes.begin(), scopes.end(), one) == scopes.end()) scopes.push_back(one);
        if (sp == std::string::npos) break;
        start = sp + 1;
      }
    }
    HttpRequest req;
    req.max_body = kMaxTokenResponse;
    if (creds && !creds->identity_token.empty()) {
      // OAuth2 refresh-token grant (docker's identitytoken).
      std::string joined;
      for (const auto& s : scopes) joined += (joined.empty() ? "" : " ") + s;
      form_ = "grant_type=refresh_token&client_id=ocix&service=" + UrlEscape(service) + "&scope=" + UrlEscape(joined) +
              "&refresh_token=" + UrlEscape(creds->identity_token);
      req.method = "POST";
      req.url = realm;
      req.body = form_;
      req.headers.push_back("Content-Type: application/x-www-form-urlencoded");
    } else {
      std::string query = "service=" + UrlEscape(service);
      for (const auto& s : scopes) query += "&scope=" + UrlEscape(s);
      req.url = AppendQuery(realm, query);
      if (creds && !creds->username.empty()) {
        req.basic_user = creds->username;
        req.basic_password = creds->password;
      }
    }
    // The realm's TLS settings are the endpoint's only when it is the same host.
    std::string realm_host = realm.substr(realm.find("://") + 3);
    realm_host = realm_host.substr(0, realm_host.find_first_of("/?"));
    if (realm_host == t.host->host) req.tls = t.host;

    HttpResponse r;
    for (int attempt = 1;; ++attempt) {
      OCIX_ASSIGN_OR_RETURN(r, http_.Perform(req));
      Account(r);
      ++stats_.token_requests;
      bool retry = r.transport_ok() ? (r.status >= 500 || r.status == 429) : r.retryable;
      if (!retry || attempt >= options_.max_attempts) break;
      Backoff(attempt);
      ++stats_.retries;
    }
    form_.clear();  // it held the refresh token
    if (!r.transport_ok()) return Unavailable("token request to " + UrlForMessage(realm) + ": " + r.curl_error);
    if (r.status != 200) return StatusFromResponse(r, "token for " + t.host->host, realm);
    OCIX_ASSIGN_OR_RETURN(json j, ParseJsonObject(r.body, "token response from " + UrlForMessage(realm)));
    std::string token = JsonString(j, "token");
    if (token.empty()) token = JsonString(j, "access_token");
    if (token.empty() || token.find_first_of("\r\n") != std::string::npos)
      return Corruption("token response from " + UrlForMessage(realm) + " has no usable token");
    int64_t seconds = kDefaultTokenSeconds;
    if (auto e = j.find("expires_in"); e != j.end() && e->is_number_integer() && e->get<int64_t>() > 0)
      seconds = std::min<int64_t>(e->get<int64_t>(), 24 * 3600);
    // Renew a little early so a token does not expire in flight.
    auto margin = std::chrono::seconds(std::min<int64_t>(10, seconds / 2));
    tokens_[TokenKey(t)] = {std::move(token), Clock::now() + std::chrono::seconds(seconds) - margin};
    return Status::Ok();
  }

  std::string BlobUrl(const RegistryHost& h, const Reference& repo, std::string_view digest) const {
    return h.BaseUrl() + "/" + repo.repository + "/blobs/" + std::string(digest);
  }

  // ---- pull ----

  Result<std::pair<Descriptor, std::string>> GetManifestFrom(const RegistryHost& h, const Reference& ref) {
    Target t{&h, {PullScope(ref.repository)}};
    HttpRequest req;
    req.url = h.BaseUrl() + "/" + ref.repository + "/manifests/" + ref.Object();
    req.headers.push_back(kAcceptManifests);
    req.max_body = kMaxManifestSize;
    OCIX_ASSIGN_OR_RETURN(HttpResponse r, Send(t, req, options_.max_attempts));
    std::string what = "manifest " + ref.ToString();
    if (r.body_too_large) return Corruption(what + ": larger than 4 MiB");
    if (r.status != 200) return StatusFromResponse(r, what, req.url);
    Descriptor d;
    d.digest = Sha256::OciDigest(r.body);
    d.size = static_cast<int64_t>(r.body.size());
    if (!ref.digest.empty() && d.digest != ref.digest)
      return Corruption(what + ": content has digest " + d.digest + " from " + h.host);
    if (std::string dcd = r.Header("docker-content-digest"); dcd.starts_with("sha256:") && dcd != d.digest)
      return Corruption(what + ": Docker-Content-Digest " + dcd + " does not match content " + d.digest);
    std::string ct = r.Header("content-type");
    ct = ct.substr(0, ct.find(';'));
    while (!ct.empty() && ct.back() == ' ') ct.pop_back();
    if (IsIndexType(ct) || IsManifestType(ct)) {
      d.media_type = ct;
    } else {
      // Some servers send application/json: fall back to the body's mediaType.
      OCIX_ASSIGN_OR_RETURN(json j, ParseJsonObject(r.body, what));
      d.media_type = JsonString(j, "mediaType");
      if (d.media_type.empty()) d.media_type = j.contains("manifests") ? kMediaIndex : kMediaManifest;
    }
    return std::make_pair(std::move(d), std::move(r.body));
  }

  Result<std::pair<Descriptor, std::string>> GetManifest(const Reference& ref) {
    std::string_view cap = ref.digest.empty() ? kCapabilityResolve : kCapabilityPull;
    return OnEndpoints<std::pair<Descriptor, std::string>>(
        ref.host, cap, [&](const RegistryHost& h) { return GetManifestFrom(h, ref); });
  }

  Result<ResolvedImage> ResolveImage(const Reference& ref, const Platform& platform) {
    ResolvedImage out;
    OCIX_ASSIGN_OR_RETURN(auto top, GetManifest(ref));
    Descriptor desc = std::move(top.first);
    std::string body = std::move(top.second);
    for (int depth = 0; IsIndexType(desc.media_type); ++depth) {
      if (depth >= kMaxIndexDepth) return Corruption("index " + desc.digest + ": nested too deeply");
      std::string what = "index " + desc.digest;
      OCIX_ASSIGN_OR_RETURN(json j, ParseJsonObject(body, what));
      auto manifests = j.find("manifests");
      if (manifests == j.end() || !manifests->is_array()) return Corruption(what + ": no manifests array");
      std::optional<Descriptor> chosen;
      for (const auto& m : *manifests) {
        OCIX_ASSIGN_OR_RETURN(Descriptor child, DescriptorFromJson(m, what));
        if (child.platform && !child.platform->Satisfies(platform)) continue;
        chosen = std::move(child);
        break;
      }
      if (!chosen) return NotFound(ref.ToString() + ": no image for " + platform.ToString() + " in " + what);
      if (!out.index) {
        out.index = desc;
        out.index_body = body;
      }
      Reference child_ref = ref;
      child_ref.tag.clear();
      child_ref.digest = chosen->digest;
      OCIX_ASSIGN_OR_RETURN(auto child, GetManifest(child_ref));
      if (child.first.size != chosen->size)
        return Corruption("manifest " + chosen->digest + ": size " + std::to_string(child.first.size) +
                          " differs from the index's " + std::to_string(chosen->size));
      if (!chosen->media_type.empty()) child.first.media_type = chosen->media_type;
      child.first.platform = chosen->platform;
      child.first.annotations = chosen->annotations;
      desc = std::move(child.first);
      body = std::move(child.second);
    }
    if (!IsManifestType(desc.media_type))
      return InvalidArgument(ref.ToString() + ": unsupported manifest media type \"" + desc.media_type + "\"");
    std::string what = "manifest " + desc.digest;
    OCIX_ASSIGN_OR_RETURN(json j, ParseJsonObject(body, what));
    out.image.digest = desc.digest;
    auto config = j.find("config");
    if (config == j.end()) return Corruption(what + ": no config");
    OCIX_ASSIGN_OR_RETURN(out.image.config, DescriptorFromJson(*config, what + " config"));
    auto layers = j.find("layers");
    if (layers == j.end() || !layers->is_array()) return Corruption(what + ": no layers array");
    for (const auto& l : *layers) {
      OCIX_ASSIGN_OR_RETURN(Descriptor layer, DescriptorFromJson(l, what + " layer"));
      out.image.layers.push_back(std::move(layer));
    }
    out.manifest = std::move(desc);
    out.manifest_body = std::move(body);
    return out;
  }

  Result<bool> BlobExists(const Reference& repo, std::string_view digest) {
    if (!IsValidSha256Digest(digest)) return InvalidArgument("invalid digest \"" + std::string(digest) + "\"");
    return BlobExistsWith(repo, digest, kCapabilityPull, {PullScope(repo.repository)});
  }

  Result<bool> BlobExistsWith(const Reference& repo, std::string_view digest, std::string_view cap,
                              const std::vector<std::string>& scopes) {
    OCIX_ASSIGN_OR_RETURN(auto endpoints, Endpoints(repo.host, cap));
    Status last;
    for (const auto& h : endpoints) {
      Result<bool> r = BlobExistsAt(h, repo, digest, scopes);
      if (r.ok() && *r) return true;
      if (!r.ok() && !TryNextEndpoint(r.status())) return r;
      last = r.ok() ? Status() : r.status();
    }
    if (!last.ok()) return last;
    return false;
  }

  Result<bool> BlobExistsAt(const RegistryHost& h, const Reference& repo, std::string_view digest,
                            const std::vector<std::string>& scopes) {
    Target t{&h, scopes};
    HttpRequest req;
    req.method = "HEAD";
    req.url = BlobUrl(h, repo, digest);
    req.follow_redirects = true;
    OCIX_ASSIGN_OR_RETURN(HttpResponse r, Send(t, req, options_.max_attempts));
    if (r.status == 200) return true;
    if (r.status == 404) return false;
    return StatusFromResponse(r, "blob " + std::string(digest), req.url);
  }

  Result<std::string> GetBlob(const Reference& repo, const Descriptor& d, size_t max_size) {
    if (!IsValidSha256Digest(d.digest)) return InvalidArgument("invalid digest \"" + d.digest + "\"");
    if (d.size < 0 || static_cast<uint64_t>(d.size) > max_size)
      return Corruption("blob " + d.digest + ": size " + std::to_string(d.size) + " exceeds the limit of " +
                        std::to_string(max_size));
    return OnEndpoints<std::string>(repo.host, kCapabilityPull, [&](const RegistryHost& h) -> Result<std::string> {
      Target t{&h, {PullScope(repo.repository)}};
      HttpRequest req;
      req.url = BlobUrl(h, repo, d.digest);
      req.follow_redirects = true;
      req.max_body = static_cast<size_t>(d.size);
      OCIX_ASSIGN_OR_RETURN(HttpResponse r, Send(t, req, options_.max_attempts));
      std::string what = "blob " + d.digest;
      if (r.body_too_large) return Corruption(what + ": larger than its descriptor's " + std::to_string(d.size));
      if (r.status != 200) return StatusFromResponse(r, what, req.url);
      if (r.body.size() != static_cast<size_t>(d.size))
        return Corruption(what + ": got " + std::to_string(r.body.size()) + " bytes, descriptor says " +
                          std::to_string(d.size));
      if (std::string got = Sha256::OciDigest(r.body); got != d.digest)
        return Corruption(what + ": content from " + h.host + " has digest " + got);
      return std::move(r.body);
    });
  }

  Status DownloadBlob(const Reference& repo, const Descriptor& d, const std::string& path,
                      const std::function<void(uint64_t, uint64_t)>& progress) {
    if (!IsValidSha256Digest(d.digest)) return InvalidArgument("invalid digest \"" + d.digest + "\"");
    if (d.size < 0) return InvalidArgument("blob " + d.digest + ": negative size");
    const uint64_t size = static_cast<uint64_t>(d.size);
    const std::string what = "blob " + d.digest;
    TempFile tmp;
    OCIX_RETURN_IF_ERROR(tmp.Create(path));
    auto hash = std::make_unique<Sha256>();
    uint64_t written = 0;
    bool complete = false;
    Status last;
    OCIX_ASSIGN_OR_RETURN(auto endpoints, Endpoints(repo.host, kCapabilityPull));
    for (const auto& h : endpoints) {
      Target t{&h, {PullScope(repo.repository)}};
      int failures = 0;  // consecutive attempts that made no progress
      // Bounded even when every attempt moves a few bytes.
      for (int round = 0; round < options_.max_attempts * 16; ++round) {
        if (size > 0 && written == size) {
          complete = true;
          break;
        }
        HttpRequest req;
        req.url = BlobUrl(h, repo, d.digest);
        req.follow_redirects = true;
        const uint64_t resume_from = written;
        if (resume_from > 0) req.headers.push_back("Range: bytes=" + std::to_string(resume_from) + "-");
        bool started = false;
        Status sink_error;
        req.sink = [&](const HttpResponse& resp, std::string_view data) {
          if (!started) {
            started = true;
            if (resume_from > 0 && resp.status == 206) {
              auto cr = ParseContentRange(resp.Header("content-range"));
              if (!cr || cr->first != resume_from) {
                sink_error = Corruption(what + ": resumed response starts at the wrong offset");
                return false;
              }
            } else if (resume_from > 0) {  // the server ignored Range: start over
              if (ftruncate(tmp.fd(), 0) != 0 || lseek(tmp.fd(), 0, SEEK_SET) != 0) {
                sink_error = ErrnoError("truncate temp file", errno);
                return false;
              }
              hash = std::make_unique<Sha256>();
              written = 0;
            }
          }
          if (data.size() > size - written) {
            sink_error = Corruption(what + ": larger than its descriptor's " + std::to_string(size) + " bytes");
            return false;
          }
          if (Status s = WriteAll(tmp.fd(), data); !s.ok()) {
            sink_error = s.WithContext("write " + path);
            return false;
          }
          hash->Update(data);
          written += data.size();
          if (progress) progress(written, size);
          return true;
        };
        Result<HttpResponse> r = Send(t, std::move(req), 1);
        if (!sink_error.ok()) return sink_error;
        if (r.ok() && r->transport_ok() && (r->status == 200 || r->status == 206)) {
          complete = true;
          break;
        }
        if (r.ok() && r->transport_ok()) {
          last = StatusFromResponse(*r, what, BlobUrl(h, repo, d.digest));
          break;  // an HTTP error: another endpoint may do better
        }
        last = r.ok() ? Unavailable(what + ": " + r->curl_error) : r.status();
        if (last.code() != Code::kUnavailable) break;
        failures = written > resume_from ? 0 : failures + 1;
        if (failures >= options_.max_attempts) break;
        Backoff(std::max(1, failures));
        ++stats_.retries;
      }
      if (complete) break;
      if (!TryNextEndpoint(last)) return last;
    }
    if (!complete && last.code() == Code::kUnavailable)
      return Unavailable(what + ": download gave up: " + last.message());
    if (!complete) return last.ok() ? Unavailable(what + ": download did not complete") : last;
    if (written != size)
      return Corruption(what + ": got " + std::to_string(written) + " bytes, descriptor says " + std::to_string(size));
    if (std::string got = hash->FinishOciDigest(); got != d.digest)
      return Corruption(what + ": downloaded content has digest " + got);
    return tmp.CommitTo(path);
  }

  Result<std::vector<std::string>> GetRanges(const Reference& repo, std::string_view digest,
                                             std::span<const ByteRange> ranges) {
    if (!IsValidSha256Digest(digest)) return InvalidArgument("invalid digest \"" + std::string(digest) + "\"");
    OCIX_ASSIGN_OR_RETURN(auto runs, CoalesceRanges(ranges, options_.range_coalesce_gap));
    std::vector<std::string> out(ranges.size());
    const std::string what = "blob " + std::string(digest);
    for (const auto& run : runs) {
      OCIX_ASSIGN_OR_RETURN(std::string data,
                            OnEndpoints<std::string>(repo.host, kCapabilityPull, [&](const RegistryHost& h) {
                              return GetRun(h, repo, digest, run);
                            }));
      for (size_t i : run.members) out[i] = data.substr(ranges[i].offset - run.offset, ranges[i].length);
    }
    return out;
  }

  // One coalesced run: a single Range request, checked against Content-Range.
  Result<std::string> GetRun(const RegistryHost& h, const Reference& repo, std::string_view digest,
                             const CoalescedRange& run) {
    const std::string what = "blob " + std::string(digest);
    const uint64_t last_byte = run.offset + run.length - 1;
    Target t{&h, {PullScope(repo.repository)}};
    HttpRequest req;
    req.url = BlobUrl(h, repo, digest);
    req.follow_redirects = true;
    req.headers.push_back("Range: bytes=" + std::to_string(run.offset) + "-" + std::to_string(last_byte));
    req.max_body = static_cast<size_t>(std::max<uint64_t>(run.length, options_.max_whole_body_for_ranges));
    OCIX_ASSIGN_OR_RETURN(HttpResponse r, Send(t, req, options_.max_attempts));
    if (r.body_too_large && r.status == 200)
      return Unimplemented(what + ": the registry ignores Range requests and the blob is too large to read whole");
    if (r.body_too_large) return Corruption(what + ": range response larger than requested");
    if (r.status == 206) {
      auto cr = ParseContentRange(r.Header("content-range"));
      if (!cr || cr->first != run.offset) return Corruption(what + ": 206 without a matching Content-Range");
      if (cr->second < last_byte)
        return InvalidArgument(what + ": range " + std::to_string(run.offset) + "-" + std::to_string(last_byte) +
                               " extends past the blob's end");
      if (cr->second != last_byte || r.body.size() != run.length)
        return Corruption(what + ": range response does not match the request");
      return std::move(r.body);
    }
    if (r.status == 200) {
      // Server ignored Range: acceptable for a small blob (max_body capped it).
      if (r.body.size() < run.offset + run.length) return InvalidArgument(what + ": range extends past the blob's end");
      return r.body.substr(run.offset, run.length);
    }
    return StatusFromResponse(r, what + " range", req.url);
  }

  // ---- push ----

  Status PushBlob(const Reference& repo, const Descriptor& d, const std::string& path,
                  const std::optional<std::string>& mount_from,
                  const std::function<void(uint64_t, uint64_t)>& progress) {
    if (!IsValidSha256Digest(d.digest)) return InvalidArgument("invalid digest \"" + d.digest + "\"");
    Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return ErrnoError("open " + path, errno);
    struct stat st {};
    if (fstat(fd.get(), &st) != 0) return ErrnoError("stat " + path, errno);
    if (st.st_size != d.size)
      return InvalidArgument(path + " has " + std::to_string(st.st_size) + " bytes, descriptor says " +
                             std::to_string(d.size));
    if (mount_from && mount_from->empty()) return InvalidArgument("empty mount source repository");
    std::vector<std::string> scopes = {PushScope(repo.repository)};
    if (mount_from) scopes.push_back(PullScope(*mount_from));
    return OnEndpoints<bool>(repo.host, kCapabilityPush,
                             [&](const RegistryHost& h) -> Result<bool> {
                               Target t{&h, scopes};
                               OCIX_ASSIGN_OR_RETURN(bool exists, BlobExistsAt(h, repo, d.digest, scopes));
                               if (exists) {
                                 if (progress) progress(static_cast<uint64_t>(d.size), static_cast<uint64_t>(d.size));
                                 return true;
                               }
                               Status s;
                               for (int attempt = 1;; ++attempt) {
                                 s = UploadOnce(t, repo, d, fd.get(), mount_from, progress);
                                 if (s.ok() || s.code() != Code::kUnavailable || attempt >= options_.max_attempts)
                                   break;
                                 Backoff(attempt);
                                 ++stats_.retries;
                               }
                               if (!s.ok()) return s;
                               return true;
                             })
        .status();
  }

  Result<std::string> UploadLocation(const Target& t, const HttpResponse& r, const std::string& what) {
    std::string loc = r.Header("location");
    if (loc.starts_with("http://") || loc.starts_with("https://")) return loc;
    if (loc.starts_with("/")) return t.host->scheme + "://" + t.host->host + loc;
    return Corruption(what + ": upload response without a usable Location");
  }

  Status UploadOnce(const Target& t, const Reference& repo, const Descriptor& d, int fd,
                    const std::optional<std::string>& mount_from,
                    const std::function<void(uint64_t, uint64_t)>& progress) {
    const RegistryHost& h = *t.host;
    const std::string what = "push blob " + d.digest + " to " + repo.Locator();
    const uint64_t size = static_cast<uint64_t>(d.size);
    HttpRequest start;
    start.method = "POST";
    start.url = h.BaseUrl() + "/" + repo.repository + "/blobs/uploads/";
    if (mount_from) start.url += "?mount=" + UrlEscape(d.digest) + "&from=" + UrlEscape(*mount_from);
    OCIX_ASSIGN_OR_RETURN(HttpResponse r, Send(t, start, options_.max_attempts));
    if (r.status == 201 && mount_from) {  // mounted: nothing to upload
      if (progress) progress(size, size);
      return Status::Ok();
    }
    if (r.status != 202) return StatusFromResponse(r, what, start.url);
    OCIX_ASSIGN_OR_RETURN(std::string location, UploadLocation(t, r, what));

    uint64_t offset = 0;
    if (size > options_.push_chunk_threshold) {
      while (offset < size) {
        uint64_t len = std::min(options_.push_chunk_size, size - offset);
        HttpRequest patch;
        patch.method = "PATCH";
        patch.url = location;
        patch.body_fd = fd;
        patch.body_offset = offset;
        patch.body_length = len;
        patch.headers.push_back("Content-Type: application/octet-stream");
        patch.headers.push_back("Content-Range: " + std::to_string(offset) + "-" + std::to_string(offset + len - 1));
        if (progress) patch.upload_progress = [&, offset](uint64_t n) { progress(offset + n, size); };
        // A PATCH is not idempotent: a failure restarts the whole upload.
        OCIX_ASSIGN_OR_RETURN(HttpResponse pr, Send(t, patch, 1));
        if (pr.status != 202) return StatusFromResponse(pr, what, location);
        OCIX_ASSIGN_OR_RETURN(location, UploadLocation(t, pr, what));
        offset += len;
      }
    }
    HttpRequest put;
    put.method = "PUT";
    put.url = AppendQuery(location, "digest=" + UrlEscape(d.digest));
    if (offset < size) {  // monolithic: the whole blob in this PUT
      put.body_fd = fd;
      put.body_offset = 0;
      put.body_length = size;
      put.headers.push_back("Content-Type: application/octet-stream");
      if (progress) put.upload_progress = [&](uint64_t n) { progress(n, size); };
    }
    OCIX_ASSIGN_OR_RETURN(HttpResponse pr, Send(t, put, 1));
    if (pr.status == 400 && RegistryErrors(pr).find("DIGEST_INVALID") != std::string::npos)
      return Corruption(what + ": the registry computed a different digest" + " (HTTP 400 from " +
                        UrlForMessage(location) + ")");
    if (pr.status != 201) return StatusFromResponse(pr, what, location);
    if (size == 0 && progress) progress(0, 0);
    return Status::Ok();
  }

  Status PushManifest(const Reference& ref, std::string_view media_type, std::string_view body) {
    if (media_type.empty() || media_type.find_first_of("\r\n") != std::string_view::npos)
      return InvalidArgument("invalid manifest media type");
    if (!ref.digest.empty() && Sha256::OciDigest(body) != ref.digest)
      return InvalidArgument("push manifest " + ref.ToString() + ": body does not match the reference's digest");
    if (body.size() > kMaxManifestSize) return InvalidArgument("push manifest " + ref.ToString() + ": over 4 MiB");
    return OnEndpoints<bool>(ref.host, kCapabilityPush,
                             [&](const RegistryHost& h) -> Result<bool> {
                               Target t{&h, {PushScope(ref.repository)}};
                               HttpRequest req;
                               req.method = "PUT";
                               req.url = h.BaseUrl() + "/" + ref.repository + "/manifests/" +
                                         (ref.tag.empty() ? ref.digest : ref.tag);
                               req.body = body;
                               req.headers.push_back("Content-Type: " + std::string(media_type));
                               // PUT of the same manifest is idempotent: plain retries are safe.
                               OCIX_ASSIGN_OR_RETURN(HttpResponse r, Send(t, req, options_.max_attempts));
                               if (r.status != 201)
                                 return StatusFromResponse(r, "push manifest " + ref.ToString(), req.url);
                               return true;
                             })
        .status();
  }

  RegistryStats stats() const { return stats_; }

 private:
  struct CachedToken {
    std::string token;
    Clock::time_point expiry;
  };

  RegistryOptions options_;
  registry_internal::HttpTransport http_;
  RegistryStats stats_;
  std::map<std::string, std::vector<RegistryHost>> hosts_;  // by registry host
  std::map<std::string, CachedToken> tokens_;               // by TokenKey
  std::set<std::string> basic_hosts_;                       // endpoints that asked for Basic
  std::optional<std::string> docker_config_;                // loaded on first need
  std::string form_;                                        // token request body; must outlive the request
};

RegistryClient::RegistryClient(RegistryOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}
RegistryClient::~RegistryClient() = default;

Result<std::pair<Descriptor, std::string>> RegistryClient::GetManifest(const Reference& ref) {
  return impl_->GetManifest(ref);
}
Result<ResolvedImage> RegistryClient::ResolveImage(const Reference& ref, const Platform& platform) {
  return impl_->ResolveImage(ref, platform);
}
Result<bool> RegistryClient::BlobExists(const Reference& repo, std::string_view digest) {
  return impl_->BlobExists(repo, digest);
}
Result<std::string> RegistryClient::GetBlob(const Reference& repo, const Descriptor& d, size_t max_size) {
  return impl_->GetBlob(repo, d, max_size);
}
Status RegistryClient::DownloadBlob(const Reference& repo, const Descriptor& d, const std::string& path,
                                    const std::function<void(uint64_t, uint64_t)>& progress) {
  return impl_->DownloadBlob(repo, d, path, progress);
}
Result<std::vector<std::string>> RegistryClient::GetRanges(const Reference& repo, std::string_view digest,
                                                           std::span<const ByteRange> ranges) {
  return impl_->GetRanges(repo, digest, ranges);
}
Status RegistryClient::PushBlob(const Reference& repo, const Descriptor& d, const std::string& path,
                                const std::optional<std::string>& mount_from_repository,
                                const std::function<void(uint64_t, uint64_t)>& progress) {
  return impl_->PushBlob(repo, d, path, mount_from_repository, progress);
}
Status RegistryClient::PushManifest(const Reference& ref, std::string_view media_type, std::string_view body) {
  return impl_->PushManifest(ref, media_type, body);
}
RegistryStats RegistryClient::stats() const { return impl_->stats(); }

}  // namespace ocix::core

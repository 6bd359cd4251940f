// Internal: one HTTP exchange over a reused libcurl easy handle. No retries,
// no registry auth: client.cc layers those on top.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocix/core/registry/hosts.h"
#include "ocix/core/status.h"

namespace ocix::core::registry_internal {

struct HttpResponse;

struct HttpRequest {
  std::string method = "GET";  // GET, HEAD, POST, PUT, PATCH
  std::string url;
  std::vector<std::string> headers;   // "Name: value"
  const RegistryHost* tls = nullptr;  // TLS settings (CA, skip_verify, client cert); null: system defaults
  bool follow_redirects = false;
  // Basic credentials, sent only to the original host (not across redirects).
  std::string basic_user, basic_password;
  // Request body: memory, or a region of an open file.
  std::optional<std::string_view> body;
  int body_fd = -1;
  uint64_t body_offset = 0, body_length = 0;
  // 2xx body bytes go to sink when set (returning false aborts the
  // transfer); otherwise into HttpResponse::body, at most max_body bytes.
  std::function<bool(const HttpResponse&, std::string_view)> sink;
  size_t max_body = 4u << 20;
  // Called as request body bytes go out (bytes of this request so far).
  std::function<void(uint64_t)> upload_progress;
};

struct HttpResponse {
  // Transport failure when curl_code != 0 (the status may still be set if
  // headers arrived before the failure).
  int curl_code = 0;
  std::string curl_error;
  bool retryable = false;  // connection errors, timeouts, truncated bodies
  long status = 0;
  std::multimap<std::string, std::string> headers;  // lowercased names, final response only
  std::string body;                                 // 2xx body without sink, or the start of an error body
  bool body_too_large = false;                      // 2xx body exceeded max_body
  bool sink_aborted = false;
  uint64_t body_bytes = 0;  // 2xx body bytes received
  uint64_t bytes_sent = 0;

  // First value of a header (name lowercase), or "".
  std::string Header(std::string_view name) const;
  bool transport_ok() const { return curl_code == 0; }
};

struct HttpOptions {
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds low_speed_timeout{15000};
  std::string user_agent;
};

class HttpTransport {
 public:
  explicit HttpTransport(HttpOptions options);
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // Errors only for local problems (unreadable CA file, curl setup);
  // network and HTTP failures are described in the response.
  Result<HttpResponse> Perform(const HttpRequest& request);

 private:
  struct CurlDeleter {
    void operator()(void* curl) const;
  };
  HttpOptions options_;
  std::unique_ptr<void, CurlDeleter> curl_;
};

// Percent-encodes everything but RFC 3986 unreserved characters.
std::string UrlEscape(std::string_view s);

}  // namespace ocix::core::registry_internal

#include "http.h"

#include <curl/curl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <iterator>
#include <mutex>

namespace ocix::core::registry_internal {

namespace {

// Error bodies are only for messages; keep their start.
constexpr size_t kMaxErrorBody = 64u << 10;
constexpr long kMaxRedirects = 5;

struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using Slist = std::unique_ptr<curl_slist, SlistDeleter>;

struct Exchange {
  const HttpRequest* req;
  HttpResponse* resp;
  uint64_t read_pos = 0;  // request body bytes handed to curl
};

size_t OnHeader(char* data, size_t size, size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  std::string_view line(data, size * n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.starts_with("HTTP/")) {
    // A new response (after a redirect or 100 Continue): forget the last one's headers.
    x->resp->headers.clear();
    size_t sp = line.find(' ');
    x->resp->status = sp == std::string_view::npos ? 0 : std::atol(std::string(line.substr(sp + 1, 3)).c_str());
    return size * n;
  }
  size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * n;
  std::string name(line.substr(0, colon));
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
  x->resp->headers.emplace(std::move(name), std::string(value));
  return size * n;
}

size_t OnWrite(char* data, size_t size, size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  size_t len = size * n;
  HttpResponse& r = *x->resp;
  if (r.status < 200 || r.status >= 300) {
    r.body.append(data, std::min(len, kMaxErrorBody - std::min(kMaxErrorBody, r.body.size())));
    return len;
  }
  r.body_bytes += len;
  if (x->req->sink) {
    if (!x->req->sink(r, std::string_view(data, len))) {
      r.sink_aborted = true;
      return 0;
    }
    return len;
  }
  if (r.body.size() + len > x->req->max_body) {
    r.body_too_large = true;
    return 0;
  }
  r.body.append(data, len);
  return len;
}

size_t OnRead(char* buf, size_t size, size_t n, void* user) {
  auto* x = static_cast<Exchange*>(user);
  const HttpRequest& req = *x->req;
  uint64_t total = req.body ? req.body->size() : req.body_length;
  size_t want = static_cast<size_t>(std::min<uint64_t>(size * n, total - x->read_pos));
  if (want == 0) return 0;
  size_t got = 0;
  if (req.body) {
    std::copy_n(req.body->data() + x->read_pos, want, buf);
    got = want;
  } else {
    ssize_t rc;
    do {
      rc = pread(req.body_fd, buf, want, static_cast<off_t>(req.body_offset + x->read_pos));
    } while (rc < 0 && errno == EINTR);
    if (rc <= 0) return CURL_READFUNC_ABORT;  // the file shrank or failed under us
    got = static_cast<size_t>(rc);
  }
  x->read_pos += got;
  x->resp->bytes_sent += got;
  if (req.upload_progress) req.upload_progress(x->read_pos);
  return got;
}

int OnSeek(void* user, curl_off_t offset, int origin) {
  auto* x = static_cast<Exchange*>(user);
  if (origin != SEEK_SET || offset < 0) return CURL_SEEKFUNC_CANTSEEK;
  x->read_pos = static_cast<uint64_t>(offset);
  return CURL_SEEKFUNC_OK;
}

bool Retryable(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_PARTIAL_FILE:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_SSL_CONNECT_ERROR: return true;
    default: return false;
  }
}

Result<std::string> ReadSmallFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return InvalidArgument("cannot read CA file " + path);
  std::string data((std::istreambuf_iterator<char>(in)), {});
  return data;
}

}  // namespace

std::string HttpResponse::Header(std::string_view name) const {
  auto it = headers.find(std::string(name));
  return it == headers.end() ? std::string() : it->second;
}

void HttpTransport::CurlDeleter::operator()(void* curl) const { curl_easy_cleanup(curl); }

HttpTransport::HttpTransport(HttpOptions options) : options_(std::move(options)) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  curl_.reset(curl_easy_init());
}

HttpTransport::~HttpTransport() = default;

Result<HttpResponse> HttpTransport::Perform(const HttpRequest& req) {
  CURL* c = curl_.get();
  if (!c) return Internal("curl_easy_init failed");
  // reset keeps the connection, DNS and TLS session caches: connections are reused.
  curl_easy_reset(c);
  HttpResponse resp;
  Exchange x{&req, &resp};
  char errbuf[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_URL, req.url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(options_.connect_timeout.count()));
  // A transfer below 1 byte/s for this long is stalled.
  long stall_s = std::max<long>(1, static_cast<long>((options_.low_speed_timeout.count() + 999) / 1000));
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, stall_s);
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  if (!options_.user_agent.empty()) curl_easy_setopt(c, CURLOPT_USERAGENT, options_.user_agent.c_str());
  if (req.follow_redirects) {
    // curl drops Authorization on a redirect to another host (no CURLOPT_UNRESTRICTED_AUTH).
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, kMaxRedirects);
  }
  curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, &OnHeader);
  curl_easy_setopt(c, CURLOPT_HEADERDATA, &x);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &OnWrite);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &x);

  Slist headers;
  auto add_header = [&headers](const char* h) {
    curl_slist* l = curl_slist_append(headers.get(), h);
    if (l) {
      (void)headers.release();
      headers.reset(l);
    }
    return l != nullptr;
  };
  for (const auto& h : req.headers)
    if (!add_header(h.c_str())) return Internal("curl_slist_append failed");
  // No 100-continue round trip: registries answer uploads directly.
  if (!add_header("Expect:")) return Internal("curl_slist_append failed");
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers.get());

  bool has_body = req.body.has_value() || req.body_fd >= 0;
  curl_off_t body_size = static_cast<curl_off_t>(req.body ? req.body->size() : req.body_length);
  if (has_body) {
    curl_easy_setopt(c, CURLOPT_READFUNCTION, &OnRead);
    curl_easy_setopt(c, CURLOPT_READDATA, &x);
    curl_easy_setopt(c, CURLOPT_SEEKFUNCTION, &OnSeek);
    curl_easy_setopt(c, CURLOPT_SEEKDATA, &x);
  }
  if (req.method == "HEAD") {
    curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
  } else if (req.method == "POST") {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, has_body ? body_size : curl_off_t{0});
    if (!has_body) curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
  } else if (req.method == "PUT" || req.method == "PATCH") {
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    curl_easy_setopt(c, CURLOPT_INFILESIZE_LARGE, has_body ? body_size : curl_off_t{0});
    if (!has_body) {
      curl_easy_setopt(c, CURLOPT_READFUNCTION, &OnRead);
      curl_easy_setopt(c, CURLOPT_READDATA, &x);
    }
    if (req.method == "PATCH") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PATCH");
  } else if (req.method != "GET") {
    return Internal("unsupported HTTP method " + req.method);
  }

  if (const RegistryHost* h = req.tls) {
    if (h->skip_verify) {
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    std::string ca_bundle;  // CURL_BLOB_COPY: curl keeps its own copy
    if (!h->ca_files.empty()) {
      for (const auto& f : h->ca_files) {
        OCIX_ASSIGN_OR_RETURN(std::string pem, ReadSmallFile(f));
        ca_bundle += pem;
        ca_bundle += '\n';
      }
      curl_blob blob{ca_bundle.data(), ca_bundle.size(), CURL_BLOB_COPY};
      curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &blob);
    }
    if (!h->client_cert.empty()) curl_easy_setopt(c, CURLOPT_SSLCERT, h->client_cert.c_str());
    if (!h->client_key.empty()) curl_easy_setopt(c, CURLOPT_SSLKEY, h->client_key.c_str());
  }
  if (!req.basic_user.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC));
    curl_easy_setopt(c, CURLOPT_USERNAME, req.basic_user.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, req.basic_password.c_str());
  }

  CURLcode rc = curl_easy_perform(c);
  // Nothing below may outlive this call's locals: drop the pointers curl holds.
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  if (rc != CURLE_OK) {
    resp.curl_code = static_cast<int>(rc);
    resp.curl_error = errbuf[0] ? std::string(errbuf) : std::string(curl_easy_strerror(rc));
    resp.retryable = Retryable(rc) && !resp.sink_aborted && !resp.body_too_large;
  }
  long code = 0;
  if (curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code != 0) resp.status = code;
  return resp;
}

std::string UrlEscape(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char ch : s) {
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' ||
        ch == '_' || ch == '~') {
      out += static_cast<char>(ch);
    } else {
      out += '%';
      out += kHex[ch >> 4];
      out += kHex[ch & 15];
    }
  }
  return out;
}

}  // namespace ocix::core::registry_internal

// RegistryClient: the OCI distribution API over libcurl.
//
// Endpoints come from HostsFor (mirrors first, then the server); each
// operation tries the endpoints with the capability it needs (resolve for a
// manifest by tag, pull for content by digest, push) and moves on when one
// fails. Each HTTP request is retried with exponential backoff on connection
// errors, timeouts, 5xx, 429 and truncated bodies, at most max_attempts times.
// On 401 the client answers the WWW-Authenticate challenge (Basic, or a Bearer
// token from the realm, cached per host and scope until it expires) and
// retries once. Credentials and tokens never appear in errors.
//
// Errors: PermissionDenied ("unauthorized: ...") when still 401/403 after
// authenticating; NotFound naming the reference or digest; Corruption when
// content fails its digest or the registry sends malformed data;
// Unavailable with the last cause when retries are exhausted; InvalidArgument
// for bad arguments or configuration.
//
// Thread-compatible: one client per thread (it owns one curl handle, whose
// connection and DNS caches it reuses across requests). Not copyable.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ocix/core/oci_layout.h"
#include "ocix/core/ranges.h"
#include "ocix/core/registry/reference.h"
#include "ocix/core/status.h"

namespace ocix::core {

struct RegistryOptions {
  std::string certs_dir = "/etc/containerd/certs.d";
  // Path of a docker config.json; empty: $DOCKER_CONFIG/config.json, else
  // $HOME/.docker/config.json, if present.
  std::string docker_config;
  int max_attempts = 4;  // per request, >= 1
  std::chrono::milliseconds initial_backoff{100}, max_backoff{2000};
  std::chrono::milliseconds connect_timeout{5000};
  // A transfer that moves no byte for this long is aborted (and retried).
  std::chrono::milliseconds low_speed_timeout{15000};
  std::string user_agent = "ocix/0.1";
  // PushBlob: blobs up to this size go in one PUT, larger ones in PATCH chunks.
  uint64_t push_chunk_threshold = 32u << 20;
  uint64_t push_chunk_size = 16u << 20;
  // GetRanges: ranges at most this far apart share a request.
  uint64_t range_coalesce_gap = 0;
  // GetRanges accepts a 200 (server ignored Range) only for blobs this small.
  uint64_t max_whole_body_for_ranges = 4u << 20;
};

struct RegistryStats {
  uint64_t requests = 0;          // HTTP requests sent, token requests included
  uint64_t retries = 0;           // requests repeated after a retryable failure
  uint64_t token_requests = 0;    // requests to a Bearer realm
  uint64_t bytes_downloaded = 0;  // response body bytes of successful responses
  uint64_t bytes_uploaded = 0;    // request body bytes sent
};

struct ResolvedImage {
  Descriptor manifest;              // the platform's image manifest
  std::string manifest_body;        // its exact bytes (digest-verified)
  ImageManifest image;              // config and layers parsed from it
  std::optional<Descriptor> index;  // set when the reference named an index or list
  std::string index_body;
};

class RegistryClient {
 public:
  explicit RegistryClient(RegistryOptions options);
  ~RegistryClient();
  RegistryClient(const RegistryClient&) = delete;
  RegistryClient& operator=(const RegistryClient&) = delete;

  // GETs a manifest (OCI index/manifest, Docker list/manifest v2) by the
  // reference's digest if it has one (verified), else by tag. The descriptor's
  // media type comes from Content-Type (or the body's mediaType), its digest
  // is the SHA-256 of the body. Bodies are capped at 4 MiB.
  Result<std::pair<Descriptor, std::string>> GetManifest(const Reference& ref);

  // Resolves ref to the image manifest for `platform`, descending through an
  // index (NotFound if no entry matches).
  Result<ResolvedImage> ResolveImage(const Reference& ref, const Platform& platform);

  // HEAD of a blob in repo's repository (repo's tag/digest are ignored).
  Result<bool> BlobExists(const Reference& repo, std::string_view digest);

  // A small blob into memory: Corruption if it exceeds max_size or d's size,
  // or fails its digest.
  Result<std::string> GetBlob(const Reference& repo, const Descriptor& d, size_t max_size);

  // Streams a blob to `path` through a temp file in the same directory,
  // renamed into place only after size and digest match d. After a dropped
  // connection it resumes with a Range request. progress(bytes_so_far, total).
  Status DownloadBlob(const Reference& repo, const Descriptor& d, const std::string& path,
                      const std::function<void(uint64_t, uint64_t)>& progress = {});

  // Reads ranges of one blob; returns one buffer per range, in request order.
  // Overlapping or adjacent ranges share one request (CoalesceRanges). Each
  // response must be a 206 whose Content-Range matches; a 200 with the whole
  // blob is sliced only if at most max_whole_body_for_ranges. InvalidArgument
  // for ranges past the blob's end. Range contents are not digest-verified
  // (the caller checks them against its own hashes).
  Result<std::vector<std::string>> GetRanges(const Reference& repo, std::string_view digest,
                                             std::span<const ByteRange> ranges);

  // Uploads the file at `path` as blob d unless the repository has it: first
  // a cross-repository mount when mount_from_repository is given (same
  // registry), else one PUT for blobs up to push_chunk_threshold or PATCH
  // chunks of push_chunk_size then PUT. The registry verifies the digest; we
  // check the file's size first. A failed upload restarts from the beginning.
  Status PushBlob(const Reference& repo, const Descriptor& d, const std::string& path,
                  const std::optional<std::string>& mount_from_repository = {},
                  const std::function<void(uint64_t, uint64_t)>& progress = {});

  // PUTs a manifest under ref's tag (or its digest, which must match body).
  Status PushManifest(const Reference& ref, std::string_view media_type, std::string_view body);

  RegistryStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ocix::core

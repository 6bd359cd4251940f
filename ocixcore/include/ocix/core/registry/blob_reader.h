// A BlobReader over one blob of a registry repository, for the chunk store.
#pragma once

#include <memory>
#include <string>

#include "ocix/core/registry/client.h"
#include "ocix/core/registry/reference.h"
#include "ocix/core/store/blob_reader.h"

namespace ocix::core {

// Concurrent requests one registry blob reader makes at most.
inline constexpr int kMaxRegistryBlobReaderClients = 4;

// Reads ranges of blob `digest` ("sha256:<hex>") in repo's repository (repo's
// tag and digest are ignored) with RegistryClient::GetRanges, which merges
// adjacent ranges into one request and retries per `options`.
//
// Thread-safe, unlike RegistryClient: each call borrows a client from a small
// pool (at most kMaxRegistryBlobReaderClients at once; further callers wait
// for one), so concurrent readers of one blob reuse connections and tokens
// without sharing a curl handle. An invalid digest is reported by ReadRanges
// (InvalidArgument). Errors are GetRanges's; range contents are unverified.
std::unique_ptr<BlobReader> MakeRegistryBlobReader(RegistryOptions options, Reference repo, std::string digest);

}  // namespace ocix::core

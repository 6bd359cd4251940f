// Encoding and decoding of OCIX manifests (docs/FORMAT.md).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "ocix/core/manifest.h"
#include "ocix/core/status.h"

namespace ocix::core {

// Canonical CBOR of m in m.version's encoding. Validates m first, so an
// invalid model is never written. Version 0 cannot carry whiteouts, opaque
// directories, xattrs, sparse maps or chunk lists: those fail with
// InvalidArgument rather than being dropped silently.
Result<std::string> EncodeManifest(const Manifest& m);

// Decodes an untrusted manifest of either version: canonical CBOR, schema,
// then every rule of ValidateManifest. Errors are Corruption and name the
// offending path. Decoding then encoding gives the input bytes back, except
// that version 0 times with a zone offset come back in UTC.
Result<Manifest> DecodeManifest(std::span<const uint8_t> data);

}  // namespace ocix::core

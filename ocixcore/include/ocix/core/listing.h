// Human- and machine-readable views of a manifest (`ocix inspect`).
#pragma once

#include <string>

#include "ocix/core/manifest.h"

namespace ocix::core {

// mtree-like: one line per path with keyword=value pairs; names escaped
// as mtree does (octal \ooo for blanks, backslash, '=' and non-printables).
std::string FormatListing(const Manifest& m);
// JSON, schema in docs/FORMAT.md ("ocix inspect --json").
std::string FormatJson(const Manifest& m);

}  // namespace ocix::core

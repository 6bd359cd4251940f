// RFC 3339 timestamps as version 0 manifests carry them (Go's RFC3339Nano).
#pragma once

#include <string>
#include <string_view>

#include "ocix/core/manifest.h"
#include "ocix/core/status.h"

namespace ocix::core {

// UTC, fraction with trailing zeros trimmed and none at whole seconds:
// "2021-03-04T05:06:07.5Z". Independent of the process time zone.
// Fails outside years 0000-9999, which RFC 3339 cannot write.
Result<std::string> FormatRfc3339(Timestamp t);
// Accepts "Z" or a "+hh:mm"/"-hh:mm" offset (the seed tool wrote local time)
// and 0-9 fraction digits; returns the instant in UTC.
Result<Timestamp> ParseRfc3339(std::string_view s);

}  // namespace ocix::core

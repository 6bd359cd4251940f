#pragma once

#include <string_view>

namespace ocix::core {

// True when s is well-formed UTF-8 (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF). CBOR text strings must be.
bool IsValidUtf8(std::string_view s);

}  // namespace ocix::core

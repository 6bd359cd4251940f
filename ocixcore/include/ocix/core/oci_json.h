// OCI JSON (index, manifest, descriptors) as every ocixcore part reads and
// writes it: one parser, in nlohmann-json's non-throwing form.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "ocix/core/oci_layout.h"
#include "ocix/core/status.h"

namespace ocix::core {

// Parses untrusted text that must be one JSON object (Corruption otherwise,
// naming `what`).
Result<nlohmann::json> ParseJsonObject(std::string_view text, std::string_view what);
// j[key] when it is a string, else "".
std::string JsonString(const nlohmann::json& j, const char* key);
// An OCI descriptor: digest must be "sha256:<64 lowercase hex>", size a
// non-negative integer; platform and string annotations when present.
Result<Descriptor> DescriptorFromJson(const nlohmann::json& j, std::string_view what);
nlohmann::json DescriptorToJson(const Descriptor& d);

}  // namespace ocix::core

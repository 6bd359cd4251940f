// Opens the images the CLI names: "oci:DIR:TAG" (or "DIR:TAG" where DIR
// exists) is an OCI layout; anything else is a registry reference. This is
// where the converter (ocix_convert) meets the registry client (ocix_registry);
// neither knows the other.
#pragma once

#include <memory>
#include <string>

#include "ocix/core/convert.h"
#include "ocix/core/registry/client.h"

namespace ocix::cli {

struct ImageRef {
  bool is_layout = false;
  core::LayoutRef layout;
  core::Reference registry;
};

core::Result<ImageRef> ParseImageRef(const std::string& s);

// REQUIRES: client outlives the returned source/sink.
core::Result<std::unique_ptr<core::ImageSource>> OpenSource(const ImageRef& ref, core::RegistryClient& client);
core::Result<std::unique_ptr<core::ImageSink>> OpenSink(const ImageRef& ref, core::RegistryClient& client,
                                                        const ImageRef* source);

}  // namespace ocix::cli

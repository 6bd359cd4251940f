// Docker-style image references: [host[:port]/]repository[:tag][@sha256:hex].
//
// Parsing normalises as containerd (docker/reference) does: a reference
// without a registry host names Docker Hub ("docker.io"), a single-component
// Docker Hub repository gets the "library/" prefix, "index.docker.io" becomes
// "docker.io", and a reference with neither tag nor digest gets tag "latest".
#pragma once

#include <string>
#include <string_view>

#include "ocix/core/status.h"

namespace ocix::core {

struct Reference {
  std::string host;        // "docker.io", "127.0.0.1:5000", "[::1]:5000"
  std::string repository;  // "library/alpine"
  std::string tag;         // may be empty when digest is set
  std::string digest;      // "sha256:<64 hex>" or empty

  // InvalidArgument naming the offending part when the grammar is violated
  // (uppercase repository, bad tag, unsupported digest algorithm, ...).
  static Result<Reference> Parse(std::string_view s);

  // host/repository[:tag][@digest]
  std::string ToString() const;
  // host/repository
  std::string Locator() const;
  // What the registry API calls the object: the digest if set, else the tag.
  std::string Object() const { return digest.empty() ? tag : digest; }
};

// "sha256:" followed by 64 lowercase hex digits: the only algorithm we verify.
bool IsValidSha256Digest(std::string_view digest);

}  // namespace ocix::core

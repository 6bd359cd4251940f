// Registry authentication inputs: WWW-Authenticate challenges (RFC 7235) and
// credentials from a docker config.json. Pure functions, no I/O.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ocix/core/status.h"

namespace ocix::core {

struct AuthChallenge {
  std::string scheme;                         // lowercased: "basic", "bearer"
  std::map<std::string, std::string> params;  // lowercased names; unquoted values; a token68 is under ""
};

// Parses one or more challenges: `Bearer realm="https://a/token",service="r",
// scope="repository:x:pull", Basic realm="r"`. Quoted strings may contain
// commas and backslash escapes. Corruption for malformed input (unterminated
// quote, parameter without a scheme, over 16 KiB).
Result<std::vector<AuthChallenge>> ParseWwwAuthenticate(std::string_view header);

struct Credentials {
  std::string username, password;
  std::string identity_token;  // OAuth2 refresh token ("identitytoken")
};

// Looks `host` up in a docker config.json's "auths": keys may be bare hosts or
// URLs ("https://host/v1/"); docker.io also matches "https://index.docker.io/v1/",
// "index.docker.io" and "registry-1.docker.io". An entry has "auth"
// (base64 "user:password") and/or "username"/"password"/"identitytoken".
// nullopt when no entry matches (credential helpers are not supported).
// InvalidArgument for malformed JSON or base64; messages never include secrets.
Result<std::optional<Credentials>> CredentialsFromDockerConfig(std::string_view json_text, std::string_view host);

}  // namespace ocix::core

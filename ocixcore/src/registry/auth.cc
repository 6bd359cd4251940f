#include "ocix/core/registry/auth.h"

#include <algorithm>
#include <nlohmann/json.hpp>

namespace ocix::core {

namespace {

constexpr size_t kMaxChallengeHeader = 16u << 10;

bool IsTchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
bool IsToken68Char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("-._~+/").find(c) != std::string_view::npos;
}
bool IsSpace(char c) { return c == ' ' || c == '\t'; }

std::string Lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return std::tolower(c); });
  return out;
}

class ChallengeParser {
 public:
  explicit ChallengeParser(std::string_view s) : s_(s) {}

  Result<std::vector<AuthChallenge>> Parse() {
    std::vector<AuthChallenge> out;
    SkipSpacesAndCommas();
    while (pos_ < s_.size()) {
      std::string_view scheme = Token();
      if (scheme.empty()) return Corruption("WWW-Authenticate: expected an auth scheme at offset " + Pos());
      AuthChallenge c;
      c.scheme = Lower(scheme);
      SkipSpaces();
      OCIX_RETURN_IF_ERROR(ParseParams(c));
      out.push_back(std::move(c));
      SkipSpacesAndCommas();
    }
    return out;
  }

 private:
  // After a scheme: a token68, or comma-separated name=value pairs, until the
  // next challenge (a token not followed by '=') or the end.
  Status ParseParams(AuthChallenge& c) {
    bool first = true;
    while (pos_ < s_.size()) {
      size_t save = pos_;
      if (s_[pos_] == ',') {
        if (first) return Status::Ok();  // scheme without parameters, next challenge
        SkipSpacesAndCommas();
        if (pos_ >= s_.size()) return Status::Ok();
        save = pos_;
      }
      std::string_view name = Token();
      if (name.empty()) {
        if (first) {
          // token68 may start with characters a tchar token does not include
          pos_ = save;
          return Token68(c);
        }
        return Corruption("WWW-Authenticate: expected a parameter at offset " + Pos());
      }
      SkipSpaces();
      if (pos_ >= s_.size() || s_[pos_] != '=') {
        if (first) {  // a token68 ("Basic dXNlcg"), or junk Token68 rejects
          pos_ = save;
          return Token68(c);
        }
        pos_ = save;  // the start of the next challenge
        return Status::Ok();
      }
      // name '=' ...; token68 may end in '=' padding, so tell them apart by what follows.
      size_t eq = pos_;
      while (pos_ < s_.size() && s_[pos_] == '=') ++pos_;
      if (pos_ - eq > 1 || (first && AtEndOfItem())) {
        if (!first) return Corruption("WWW-Authenticate: malformed parameter at offset " + Pos());
        pos_ = save;
        return Token68(c);
      }
      SkipSpaces();
      std::string value;
      if (pos_ < s_.size() && s_[pos_] == '"') {
        OCIX_ASSIGN_OR_RETURN(value, QuotedString());
      } else {
        value = std::string(Token());
      }
      c.params.emplace(Lower(name), std::move(value));  // the first of duplicates wins
      first = false;
      SkipSpaces();
      if (pos_ < s_.size() && s_[pos_] != ',') return Corruption("WWW-Authenticate: expected ',' at offset " + Pos());
    }
    return Status::Ok();
  }

  Status Token68(AuthChallenge& c) {
    size_t start = pos_;
    while (pos_ < s_.size() && IsToken68Char(s_[pos_])) ++pos_;
    if (pos_ == start) return Corruption("WWW-Authenticate: unexpected character at offset " + Pos());
    while (pos_ < s_.size() && s_[pos_] == '=') ++pos_;
    c.params.emplace("", std::string(s_.substr(start, pos_ - start)));
    SkipSpaces();
    if (!AtEndOfItem()) return Corruption("WWW-Authenticate: junk after token68 at offset " + Pos());
    return Status::Ok();
  }

  Result<std::string> QuotedString() {
    ++pos_;  // opening quote
    std::string out;
    while (pos_ < s_.size()) {
      char ch = s_[pos_++];
      if (ch == '"') return out;
      if (ch == '\\') {
        if (pos_ >= s_.size()) break;
        ch = s_[pos_++];
      }
      out += ch;
    }
    return Corruption("WWW-Authenticate: unterminated quoted string");
  }

  std::string_view Token() {
    size_t start = pos_;
    while (pos_ < s_.size() && IsTchar(s_[pos_])) ++pos_;
    return s_.substr(start, pos_ - start);
  }
  bool AtEndOfItem() {
    size_t p = pos_;
    while (p < s_.size() && IsSpace(s_[p])) ++p;
    return p >= s_.size() || s_[p] == ',';
  }
  void SkipSpaces() {
    while (pos_ < s_.size() && IsSpace(s_[pos_])) ++pos_;
  }
  void SkipSpacesAndCommas() {
    while (pos_ < s_.size() && (IsSpace(s_[pos_]) || s_[pos_] == ',')) ++pos_;
  }
  std::string Pos() const { return std::to_string(pos_); }

  std::string_view s_;
  size_t pos_ = 0;
};

// Standard base64 (padding optional); nullopt when malformed.
std::optional<std::string> DecodeBase64(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return std::nullopt;
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// "https://host/v1/" -> "host"
std::string_view KeyHost(std::string_view key) {
  if (size_t sep = key.find("://"); sep != std::string_view::npos) key = key.substr(sep + 3);
  return key.substr(0, key.find('/'));
}

bool IsDockerHub(std::string_view host) {
  return host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io";
}

}  // namespace

Result<std::vector<AuthChallenge>> ParseWwwAuthenticate(std::string_view header) {
  if (header.size() > kMaxChallengeHeader) return Corruption("WWW-Authenticate: longer than 16 KiB");
  return ChallengeParser(header).Parse();
}

Result<std::optional<Credentials>> CredentialsFromDockerConfig(std::string_view json_text, std::string_view host) {
  using nlohmann::json;
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("docker config: not a JSON object");
  auto auths = j.find("auths");
  if (auths == j.end()) return std::optional<Credentials>();
  if (!auths->is_object()) return InvalidArgument("docker config: \"auths\" is not an object");
  const json* entry = nullptr;
  for (const auto& [key, value] : auths->items()) {
    std::string_view kh = KeyHost(key);
    if (kh == host || (IsDockerHub(host) && IsDockerHub(kh))) {
      entry = &value;
      if (kh == host) break;  // an exact match beats an alias
    }
  }
  if (!entry) return std::optional<Credentials>();
  if (!entry->is_object())
    return InvalidArgument("docker config: auth entry for " + std::string(host) + " is not an object");
  auto field = [&](const char* name) {
    auto it = entry->find(name);
    return it != entry->end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  Credentials c;
  if (std::string auth = field("auth"); !auth.empty()) {
    auto decoded = DecodeBase64(auth);
    size_t colon = decoded ? decoded->find(':') : std::string::npos;
    if (colon == std::string::npos)
      return InvalidArgument("docker config: malformed \"auth\" for " + std::string(host));
    c.username = decoded->substr(0, colon);
    c.password = decoded->substr(colon + 1);
  }
  if (c.username.empty()) {
    c.username = field("username");
    c.password = field("password");
  }
  c.identity_token = field("identitytoken");
  if (c.username.empty() && c.password.empty() && c.identity_token.empty()) return std::optional<Credentials>();
  return std::optional<Credentials>(std::move(c));
}

}  // namespace ocix::core

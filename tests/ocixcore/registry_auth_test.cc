#include <gtest/gtest.h>

#include "ocix/core/registry/auth.h"

namespace ocix::core {
namespace {

TEST(RegistryAuth, BearerChallenge) {
  auto c = ParseWwwAuthenticate(
      R"(Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull,push")");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->size(), 1u);
  EXPECT_EQ((*c)[0].scheme, "bearer");
  EXPECT_EQ((*c)[0].params.at("realm"), "https://auth.docker.io/token");
  EXPECT_EQ((*c)[0].params.at("service"), "registry.docker.io");
  // A comma inside a quoted string does not split parameters.
  EXPECT_EQ((*c)[0].params.at("scope"), "repository:library/alpine:pull,push");
}

TEST(RegistryAuth, SeveralChallengesEscapesAndTokens) {
  auto c = ParseWwwAuthenticate(
      R"(Basic realm="a \"quoted\" realm", charset=UTF-8 ,  Bearer realm="https://t/x?y=1", error=invalid_token, Negotiate)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_EQ(c->size(), 3u);
  EXPECT_EQ((*c)[0].scheme, "basic");
  EXPECT_EQ((*c)[0].params.at("realm"), "a \"quoted\" realm");
  EXPECT_EQ((*c)[0].params.at("charset"), "UTF-8");
  EXPECT_EQ((*c)[1].scheme, "bearer");
  EXPECT_EQ((*c)[1].params.at("realm"), "https://t/x?y=1");
  EXPECT_EQ((*c)[1].params.at("error"), "invalid_token");
  EXPECT_EQ((*c)[2].scheme, "negotiate");
  EXPECT_TRUE((*c)[2].params.empty());
}

TEST(RegistryAuth, CaseAndToken68) {
  auto c = ParseWwwAuthenticate("BASIC REALM=\"r\"");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ((*c)[0].scheme, "basic");
  EXPECT_EQ((*c)[0].params.at("realm"), "r");

  auto t = ParseWwwAuthenticate("Negotiate dGVzdA==, Basic realm=x");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0].params.at(""), "dGVzdA==");
  EXPECT_EQ((*t)[1].params.at("realm"), "x");

  auto empty = ParseWwwAuthenticate("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

TEST(RegistryAuth, MalformedChallenges) {
  for (std::string bad :
       {std::string(R"(Bearer realm="unterminated)"), std::string(R"(="x")"), std::string(R"(Bearer realm="a" junk)"),
        std::string("Bearer realm=\"x\\"), std::string("Bearer @@@"), std::string(20000, 'a')}) {
    auto r = ParseWwwAuthenticate(bad);
    ASSERT_FALSE(r.ok()) << "accepted: " << bad.substr(0, 60);
    EXPECT_EQ(r.status().code(), Code::kCorruption);
  }
}

TEST(RegistryAuth, DockerConfigAuthField) {
  // base64("user:pa:ss") — a password may contain ':'.
  const char* config = R"({"auths": {
      "127.0.0.1:5000": {"auth": "dXNlcjpwYTpzcw=="},
      "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="},
      "https://ghcr.io": {"username": "gh", "password": "tok"},
      "quay.io": {"identitytoken": "refresh-me"},
      "broken.example": {"auth": "***"}
  }})";
  auto local = CredentialsFromDockerConfig(config, "127.0.0.1:5000");
  ASSERT_TRUE(local.ok());
  ASSERT_TRUE(local->has_value());
  EXPECT_EQ((*local)->username, "user");
  EXPECT_EQ((*local)->password, "pa:ss");

  for (const char* hub : {"docker.io", "registry-1.docker.io", "index.docker.io"}) {
    auto h = CredentialsFromDockerConfig(config, hub);
    ASSERT_TRUE(h.ok());
    ASSERT_TRUE(h->has_value()) << hub;
    EXPECT_EQ((*h)->username, "hub");
    EXPECT_EQ((*h)->password, "secret");
  }

  auto gh = CredentialsFromDockerConfig(config, "ghcr.io");
  ASSERT_TRUE(gh.ok() && gh->has_value());
  EXPECT_EQ((*gh)->username, "gh");
  EXPECT_EQ((*gh)->password, "tok");

  auto quay = CredentialsFromDockerConfig(config, "quay.io");
  ASSERT_TRUE(quay.ok() && quay->has_value());
  EXPECT_EQ((*quay)->identity_token, "refresh-me");

  auto none = CredentialsFromDockerConfig(config, "other.example");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());

  auto broken = CredentialsFromDockerConfig(config, "broken.example");
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(broken.status().message().find("***"), std::string::npos);  // no secret material in messages
}

TEST(RegistryAuth, DockerConfigEdgeCases) {
  auto no_auths = CredentialsFromDockerConfig(R"({"credsStore": "desktop"})", "docker.io");
  ASSERT_TRUE(no_auths.ok());
  EXPECT_FALSE(no_auths->has_value());
  EXPECT_FALSE(CredentialsFromDockerConfig("not json", "x").ok());
  EXPECT_FALSE(CredentialsFromDockerConfig("[]", "x").ok());
  EXPECT_FALSE(CredentialsFromDockerConfig(R"({"auths": []})", "x").ok());
  // An exact host key beats a Docker Hub alias.
  auto exact = CredentialsFromDockerConfig(
      R"({"auths": {"index.docker.io": {"username": "alias", "password": "a"},
                    "docker.io": {"username": "exact", "password": "e"}}})",
      "docker.io");
  ASSERT_TRUE(exact.ok() && exact->has_value());
  EXPECT_EQ((*exact)->username, "exact");
}

}  // namespace
}  // namespace ocix::core

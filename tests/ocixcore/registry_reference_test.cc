#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ocix/core/registry/reference.h"

namespace ocix::core {
namespace {

const std::string kDigest = "sha256:" + std::string(64, 'a');

TEST(RegistryReference, NormalisesDockerHub) {
  auto r = Reference::Parse("alpine");
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->host, "docker.io");
  EXPECT_EQ(r->repository, "library/alpine");
  EXPECT_EQ(r->tag, "latest");
  EXPECT_EQ(r->digest, "");
  EXPECT_EQ(r->ToString(), "docker.io/library/alpine:latest");
  EXPECT_EQ(r->Locator(), "docker.io/library/alpine");

  auto u = Reference::Parse("user/app:1.0");
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->host, "docker.io");
  EXPECT_EQ(u->repository, "user/app");
  EXPECT_EQ(u->tag, "1.0");

  auto idx = Reference::Parse("index.docker.io/busybox");
  ASSERT_TRUE(idx.ok());
  EXPECT_EQ(idx->host, "docker.io");
  EXPECT_EQ(idx->repository, "library/busybox");
}

TEST(RegistryReference, HostsPortsTagsDigests) {
  auto r = Reference::Parse("127.0.0.1:5000/a/b/c:v1@" + kDigest);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->host, "127.0.0.1:5000");
  EXPECT_EQ(r->repository, "a/b/c");
  EXPECT_EQ(r->tag, "v1");
  EXPECT_EQ(r->digest, kDigest);
  EXPECT_EQ(r->Object(), kDigest);
  EXPECT_EQ(r->ToString(), "127.0.0.1:5000/a/b/c:v1@" + kDigest);

  // A digest without a tag does not get "latest".
  auto d = Reference::Parse("localhost/x@" + kDigest);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->host, "localhost");
  EXPECT_EQ(d->tag, "");
  EXPECT_EQ(d->Object(), kDigest);

  // A port is not a tag.
  auto p = Reference::Parse("registry.example.com:443/team/img");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->host, "registry.example.com:443");
  EXPECT_EQ(p->tag, "latest");

  auto v6 = Reference::Parse("[::1]:5000/img:t");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(v6->host, "[::1]:5000");

  // Separators inside components: '.', '_', '__', runs of '-'.
  EXPECT_TRUE(Reference::Parse("ex.com/a.b_c__d---e/f:T_a.g-1").ok());
  // A first component without '.', ':' or "localhost" is a path, not a host.
  auto path = Reference::Parse("team/sub/img");
  ASSERT_TRUE(path.ok());
  EXPECT_EQ(path->host, "docker.io");
  EXPECT_EQ(path->repository, "team/sub/img");
}

TEST(RegistryReference, RejectsBadGrammar) {
  for (const std::string& bad : std::vector<std::string>{"",
                                                         "UPPER/case",
                                                         "ex.com/Repo",
                                                         "ex.com/",
                                                         "ex.com//x",
                                                         "a/-b",
                                                         "a/b-",
                                                         "a/b..c",
                                                         "a/b___c",
                                                         "img:",
                                                         "img:-tag",
                                                         "img:" + std::string(129, 'a'),
                                                         "img@sha256:abc",
                                                         "img@sha512:" + std::string(128, 'a'),
                                                         "img@" + std::string(64, 'a'),
                                                         "img@sha256:" + std::string(64, 'A'),
                                                         "ex-.com/img",
                                                         "ex.com:port/img",
                                                         "ex.com:/img",
                                                         "[zz]:1/img",
                                                         "a b/c",
                                                         "a/b:c:d",
                                                         "ex.com/" + std::string(260, 'a')}) {
    auto r = Reference::Parse(bad);
    EXPECT_FALSE(r.ok()) << "accepted \"" << bad << "\"";
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << bad;
    }
  }
}

TEST(RegistryReference, DigestValidation) {
  EXPECT_TRUE(IsValidSha256Digest(kDigest));
  EXPECT_FALSE(IsValidSha256Digest("sha256:" + std::string(63, 'a')));
  EXPECT_FALSE(IsValidSha256Digest("sha256:" + std::string(64, 'g')));
  EXPECT_FALSE(IsValidSha256Digest("md5:" + std::string(64, 'a')));
}

}  // namespace
}  // namespace ocix::core

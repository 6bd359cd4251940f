#include "ocix/core/sha256.h"

#include <openssl/evp.h>

#include <cstdio>
#include <cstdlib>

#include "ocix/core/blake3.h"

namespace ocix::core {

struct Sha256::Ctx {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md{EVP_MD_CTX_new(), &EVP_MD_CTX_free};
};

Sha256::Sha256() : ctx_(std::make_unique<Ctx>()) {
  if (!ctx_->md || EVP_DigestInit_ex(ctx_->md.get(), EVP_sha256(), nullptr) != 1) {
    std::fputs("ocix: OpenSSL SHA-256 unavailable\n", stderr);
    std::abort();
  }
}
Sha256::~Sha256() = default;

void Sha256::Update(std::span<const uint8_t> data) { EVP_DigestUpdate(ctx_->md.get(), data.data(), data.size()); }
void Sha256::Update(std::string_view data) { EVP_DigestUpdate(ctx_->md.get(), data.data(), data.size()); }

std::string Sha256::FinishOciDigest() {
  uint8_t out[32];
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md.get(), out, &len);
  return "sha256:" + HexEncode({out, len});
}

std::string Sha256::OciDigest(std::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.FinishOciDigest();
}

}  // namespace ocix::core

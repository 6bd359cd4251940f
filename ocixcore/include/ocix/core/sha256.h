// SHA-256, the digest OCI uses for blobs (OpenSSL EVP underneath).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>

namespace ocix::core {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void Update(std::span<const uint8_t> data);
  void Update(std::string_view data);
  // "sha256:<64 hex>", the OCI digest form.
  std::string FinishOciDigest();

  static std::string OciDigest(std::string_view data);

 private:
  struct Ctx;
  std::unique_ptr<Ctx> ctx_;
};

}  // namespace ocix::core

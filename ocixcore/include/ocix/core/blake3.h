// BLAKE3-256 digests: the content address of every file and chunk.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <blake3.h>

namespace ocix::core {

inline constexpr size_t kDigestSize = 32;

struct Digest {
  std::array<uint8_t, kDigestSize> bytes{};

  std::string Hex() const;
  // Parses exactly 64 lowercase or uppercase hex digits.
  static std::optional<Digest> FromHex(std::string_view hex);
  auto operator<=>(const Digest&) const = default;
};

// Incremental hasher. Cheap to construct; not thread-safe.
class Blake3 {
 public:
  Blake3() { blake3_hasher_init(&h_); }
  void Update(std::span<const uint8_t> data) { blake3_hasher_update(&h_, data.data(), data.size()); }
  void Update(std::string_view data) { blake3_hasher_update(&h_, data.data(), data.size()); }
  // Feeds n zero bytes (the holes of a sparse file) without a buffer of size n.
  void UpdateZeros(uint64_t n);
  Digest Finish() const;

  static Digest Hash(std::span<const uint8_t> data);
  static Digest Hash(std::string_view data);

 private:
  blake3_hasher h_;
};

std::string HexEncode(std::span<const uint8_t> data);

}  // namespace ocix::core

#include "ocix/core/blake3.h"

#include <algorithm>

namespace ocix::core {

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string HexEncode(std::span<const uint8_t> data) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(data.size() * 2);
  for (uint8_t b : data) {
    out.push_back(kDigits[b >> 4]);
    out.push_back(kDigits[b & 0xf]);
  }
  return out;
}

std::string Digest::Hex() const { return HexEncode(bytes); }

std::optional<Digest> Digest::FromHex(std::string_view hex) {
  if (hex.size() != kDigestSize * 2) return std::nullopt;
  Digest d;
  for (size_t i = 0; i < kDigestSize; ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    d.bytes[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return d;
}

void Blake3::UpdateZeros(uint64_t n) {
  static constexpr uint8_t kZeros[64 * 1024] = {};
  while (n > 0) {
    size_t step = static_cast<size_t>(std::min<uint64_t>(n, sizeof(kZeros)));
    blake3_hasher_update(&h_, kZeros, step);
    n -= step;
  }
}

Digest Blake3::Finish() const {
  Digest d;
  blake3_hasher_finalize(&h_, d.bytes.data(), d.bytes.size());
  return d;
}

Digest Blake3::Hash(std::span<const uint8_t> data) {
  Blake3 h;
  h.Update(data);
  return h.Finish();
}

Digest Blake3::Hash(std::string_view data) {
  Blake3 h;
  h.Update(data);
  return h.Finish();
}

}  // namespace ocix::core

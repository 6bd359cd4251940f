#include "ocix/core/blake3.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <span>
#include <sstream>
#include <string>
#include <vector>

namespace ocix::core {
namespace {

struct Vector {
  size_t length;
  std::string hash;  // first 32 bytes of the official output, hex
};

// tests/data/blake3_vectors.txt: "LENGTH HEX" lines, '#' comments.
std::vector<Vector> LoadVectors() {
  std::ifstream in("data/blake3_vectors.txt");
  std::vector<Vector> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ls(line);
    Vector v;
    ls >> v.length >> v.hash;
    if (ls) out.push_back(v);
  }
  return out;
}

std::vector<uint8_t> Input(size_t n) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i % 251);
  return b;
}

TEST(Blake3Test, VectorFileIsComplete) {
  std::vector<Vector> vs = LoadVectors();
  ASSERT_EQ(vs.size(), 21u) << "run the tests from tests/ (data/blake3_vectors.txt)";
  for (const Vector& v : vs) EXPECT_EQ(v.hash.size(), 64u) << v.length;
}

TEST(Blake3Test, OfficialVectorsOneShot) {
  std::vector<Vector> vs = LoadVectors();
  ASSERT_FALSE(vs.empty());
  for (const Vector& v : vs) {
    std::vector<uint8_t> in = Input(v.length);
    EXPECT_EQ(Blake3::Hash(in).Hex(), v.hash) << "length " << v.length;
    std::string s(in.begin(), in.end());
    EXPECT_EQ(Blake3::Hash(std::string_view(s)).Hex(), v.hash) << "length " << v.length << " (string_view)";
  }
}

TEST(Blake3Test, OfficialVectorsIncrementalOddPieces) {
  static constexpr size_t kPieces[] = {1, 3, 7, 63, 64, 65, 127, 1023, 1024, 1025, 4099};
  std::vector<Vector> vs = LoadVectors();
  ASSERT_FALSE(vs.empty());
  for (size_t start = 0; start < std::size(kPieces); ++start) {
    for (const Vector& v : vs) {
      std::vector<uint8_t> in = Input(v.length);
      Blake3 h;
      size_t pos = 0;
      for (size_t k = start; pos < in.size(); ++k) {
        size_t n = std::min(kPieces[k % std::size(kPieces)], in.size() - pos);
        h.Update(std::span<const uint8_t>(in.data() + pos, n));
        pos += n;
      }
      EXPECT_EQ(h.Finish().Hex(), v.hash) << "length " << v.length << " pieces from " << start;
    }
  }
}

TEST(Blake3Test, EmptyUpdatesChangeNothing) {
  std::vector<uint8_t> in = Input(1025);
  Blake3 h;
  h.Update(std::span<const uint8_t>());
  h.Update(std::span<const uint8_t>(in.data(), 500));
  h.Update(std::string_view());
  h.UpdateZeros(0);
  h.Update(std::span<const uint8_t>(in.data() + 500, 525));
  EXPECT_EQ(h.Finish(), Blake3::Hash(in));
}

TEST(Blake3Test, FinishDoesNotConsumeTheHasher) {
  std::vector<uint8_t> in = Input(2049);
  Blake3 h;
  h.Update(std::span<const uint8_t>(in.data(), 1000));
  Digest mid = h.Finish();
  EXPECT_EQ(mid, Blake3::Hash(std::span<const uint8_t>(in.data(), 1000)));
  EXPECT_EQ(h.Finish(), mid);
  h.Update(std::span<const uint8_t>(in.data() + 1000, in.size() - 1000));
  EXPECT_EQ(h.Finish(), Blake3::Hash(in));
}

TEST(Blake3Test, UpdateZerosEqualsHashingAZeroBuffer) {
  // Around the 1 KiB chunk size and the 64 KiB internal buffer of UpdateZeros.
  for (uint64_t n : {0u, 1u, 1023u, 1024u, 1025u, 65535u, 65536u, 65537u, 3u * 65536u + 17u}) {
    std::vector<uint8_t> zeros(n, 0);
    Blake3 h;
    h.UpdateZeros(n);
    EXPECT_EQ(h.Finish(), Blake3::Hash(zeros)) << n;
  }
}

TEST(Blake3Test, UpdateZerosMixesWithData) {
  // data, hole, data, hole: as a sparse file is hashed.
  std::vector<uint8_t> full(200'000, 0);
  for (size_t i = 4096; i < 4196; ++i) full[i] = static_cast<uint8_t>(i);
  for (size_t i = 70'000; i < 75'000; ++i) full[i] = static_cast<uint8_t>(i * 7);
  Blake3 h;
  h.UpdateZeros(4096);
  h.Update(std::span<const uint8_t>(full.data() + 4096, 100));
  h.UpdateZeros(70'000 - 4196);
  h.Update(std::span<const uint8_t>(full.data() + 70'000, 5000));
  h.UpdateZeros(200'000 - 75'000);
  EXPECT_EQ(h.Finish(), Blake3::Hash(full));
}

TEST(Blake3Test, HexEncode) {
  const uint8_t b[] = {0x00, 0x01, 0x0a, 0x7f, 0x80, 0xfe, 0xff};
  EXPECT_EQ(HexEncode(b), "00010a7f80feff");
  EXPECT_EQ(HexEncode({}), "");
}

TEST(Blake3Test, DigestHexRoundTrip) {
  Digest d;
  for (size_t i = 0; i < kDigestSize; ++i) d.bytes[i] = static_cast<uint8_t>(i * 37 + 5);
  std::string hex = d.Hex();
  ASSERT_EQ(hex.size(), 64u);
  auto back = Digest::FromHex(hex);
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(*back, d);

  const std::string empty = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
  auto e = Digest::FromHex(empty);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->bytes[0], 0xaf);
  EXPECT_EQ(e->bytes[31], 0x62);
  EXPECT_EQ(*e, Blake3::Hash(std::string_view()));
}

TEST(Blake3Test, FromHexAcceptsUppercase) {
  auto d = Digest::FromHex("AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(*d, Blake3::Hash(std::string_view()));
  EXPECT_EQ(d->Hex(), "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262");
}

TEST(Blake3Test, FromHexRejectsBadInput) {
  const std::string good(64, 'a');
  ASSERT_TRUE(Digest::FromHex(good).has_value());
  EXPECT_FALSE(Digest::FromHex("").has_value());
  EXPECT_FALSE(Digest::FromHex(std::string(63, 'a')).has_value());
  EXPECT_FALSE(Digest::FromHex(std::string(65, 'a')).has_value());
  EXPECT_FALSE(Digest::FromHex(std::string(128, 'a')).has_value());
  for (char bad : {'g', 'G', 'x', ' ', '-', '\0', '/', ':', '@', '`', '\xff'}) {
    std::string s = good;
    s[17] = bad;
    EXPECT_FALSE(Digest::FromHex(s).has_value()) << "char " << int(static_cast<unsigned char>(bad));
    s = good;
    s[63] = bad;
    EXPECT_FALSE(Digest::FromHex(s).has_value()) << "last char " << int(static_cast<unsigned char>(bad));
  }
  EXPECT_FALSE(Digest::FromHex("0x" + std::string(62, 'a')).has_value());
  EXPECT_FALSE(Digest::FromHex(" " + std::string(63, 'a')).has_value());
}

TEST(Blake3Test, DigestOrdering) {
  Digest a, b;
  b.bytes[31] = 1;
  EXPECT_LT(a, b);
  b.bytes[31] = 0;
  EXPECT_EQ(a, b);
  a.bytes[0] = 1;
  b.bytes[31] = 0xff;
  EXPECT_GT(a, b);
}

}  // namespace
}  // namespace ocix::core

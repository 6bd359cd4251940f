#include "ocix/core/cbor.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "ocix/core/limits.h"
#include "ocix/core/status.h"

namespace ocix::core {
namespace {

namespace c = cbor;

std::string ToHex(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : s) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

// Hex with optional spaces -> bytes.
std::vector<uint8_t> Bytes(std::string_view hex) {
  std::vector<uint8_t> out;
  int hi = -1;
  for (char ch : hex) {
    if (ch == ' ') continue;
    int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    EXPECT_GE(v, 0) << "bad hex in test: " << hex;
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  EXPECT_EQ(hi, -1) << "odd hex in test: " << hex;
  return out;
}

std::string Compact(std::string_view hex) {
  std::string out;
  for (char ch : hex)
    if (ch != ' ') out += ch;
  return out;
}

std::string Ser(const c::Item& item) { return ToHex(c::Serialize(item.get())); }

std::string Repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

Status Validate(std::string_view hex) { return c::ValidateCanonical(Bytes(hex)); }

// ---- writer -------------------------------------------------------------------

TEST(CborWriterTest, UintShortestHeadAtEveryBoundary) {
  const std::pair<uint64_t, const char*> cases[] = {
      {0, "00"},
      {1, "01"},
      {10, "0a"},
      {23, "17"},
      {24, "1818"},
      {25, "1819"},
      {255, "18ff"},
      {256, "190100"},
      {1000, "1903e8"},
      {65535, "19ffff"},
      {65536, "1a00010000"},
      {4294967295u, "1affffffff"},
      {4294967296u, "1b0000000100000000"},
      {std::numeric_limits<uint64_t>::max(), "1bffffffffffffffff"},
  };
  for (const auto& [v, hex] : cases) {
    EXPECT_EQ(Ser(c::Uint(v)), hex) << v;
    EXPECT_TRUE(c::ValidateCanonical(Bytes(hex)).ok()) << hex;
  }
}

TEST(CborWriterTest, IntShortestHeadIncludingNegatives) {
  const std::pair<int64_t, const char*> cases[] = {
      {0, "00"},
      {23, "17"},
      {24, "1818"},
      {65536, "1a00010000"},
      {int64_t{1} << 32, "1b0000000100000000"},
      {std::numeric_limits<int64_t>::max(), "1b7fffffffffffffff"},
      // Major type 1 holds -1 - v.
      {-1, "20"},
      {-10, "29"},
      {-24, "37"},
      {-25, "3818"},
      {-256, "38ff"},
      {-257, "390100"},
      {-65536, "39ffff"},
      {-65537, "3a00010000"},
      {-4294967296, "3affffffff"},
      {-4294967297, "3b0000000100000000"},
      {std::numeric_limits<int64_t>::min(), "3b7fffffffffffffff"},
  };
  for (const auto& [v, hex] : cases) {
    EXPECT_EQ(Ser(c::Int(v)), hex) << v;
    EXPECT_TRUE(c::ValidateCanonical(Bytes(hex)).ok()) << hex;
  }
}

TEST(CborWriterTest, StringsAndLengthHeads) {
  EXPECT_EQ(Ser(c::Text("")), "60");
  EXPECT_EQ(Ser(c::Text("a")), "6161");
  EXPECT_EQ(Ser(c::Text("IETF")), "6449455446");
  EXPECT_EQ(Ser(c::Text("\xc3\xbc")), "62c3bc");  // U+00FC
  EXPECT_EQ(Ser(c::Text(std::string(23, 'a'))), "77" + Repeat("61", 23));
  EXPECT_EQ(Ser(c::Text(std::string(24, 'a'))), "7818" + Repeat("61", 24));
  EXPECT_EQ(Ser(c::Text(std::string(255, 'a'))), "78ff" + Repeat("61", 255));
  EXPECT_EQ(Ser(c::Text(std::string(256, 'a'))), "790100" + Repeat("61", 256));
  const uint8_t b[] = {1, 2, 3, 4};
  EXPECT_EQ(Ser(c::Bytes(b)), "4401020304");
  EXPECT_EQ(Ser(c::Bytes({})), "40");
  std::vector<uint8_t> b32(32, 0xab);
  EXPECT_EQ(Ser(c::Bytes(b32)), "5820" + Repeat("ab", 32));
}

TEST(CborWriterTest, BoolsArraysAndTags) {
  EXPECT_EQ(Ser(c::Bool(false)), "f4");
  EXPECT_EQ(Ser(c::Bool(true)), "f5");
  EXPECT_EQ(Ser(c::Array({})), "80");
  {
    std::vector<c::Item> inner;
    inner.push_back(c::Uint(2));
    inner.push_back(c::Uint(3));
    std::vector<c::Item> outer;
    outer.push_back(c::Uint(1));
    outer.push_back(c::Array(std::move(inner)));
    EXPECT_EQ(Ser(c::Array(std::move(outer))), "8201820203");
  }
  {
    std::vector<c::Item> items;
    for (int i = 0; i < 24; ++i) items.push_back(c::Uint(0));
    EXPECT_EQ(Ser(c::Array(std::move(items))), "9818" + Repeat("00", 24));
  }
  EXPECT_EQ(Ser(c::Tag(0, c::Uint(1))), "c001");
  EXPECT_EQ(Ser(c::Tag(23, c::Uint(1))), "d701");
  EXPECT_EQ(Ser(c::Tag(24, c::Uint(1))), "d81801");
  // "ocix" = 0x6f636978 = 1868786040.
  EXPECT_EQ(kOcixTag, 0x6f636978u);
  EXPECT_EQ(Ser(c::Tag(kOcixTag, c::Map({}))), "da6f636978a0");
  // The seed tool's wrapping: tag 6 around tag "ocix".
  EXPECT_EQ(Ser(c::Tag(6, c::Tag(kOcixTag, c::Uint(0)))), "c6da6f63697800");
  EXPECT_EQ(Ser(c::Tag(kOcixTag, c::Tag(6, c::Bool(true)))), "da6f636978c6f5");
}

TEST(CborWriterTest, MapKeysSortedShorterFirstThenBytewise) {
  std::vector<std::pair<std::string, c::Item>> kv;
  kv.emplace_back("b", c::Uint(1));
  kv.emplace_back("aa", c::Uint(2));
  kv.emplace_back("a", c::Uint(3));
  kv.emplace_back("B", c::Uint(4));
  kv.emplace_back("", c::Uint(5));
  // "" < "B" < "a" < "b" (one byte: bytewise) < "aa" (longer) — "b" sorts
  // before "aa" although it is after it in plain lexicographic order.
  EXPECT_EQ(Ser(c::Map(std::move(kv))), Compact("a5"
                                                " 60 05"
                                                " 6142 04"
                                                " 6161 03"
                                                " 6162 01"
                                                " 626161 02"));
}

TEST(CborWriterTest, MapOfManifestLikeKeys) {
  std::vector<std::pair<std::string, c::Item>> kv;
  kv.emplace_back("version", c::Uint(1));
  kv.emplace_back("files", c::Map({}));
  kv.emplace_back("layer", c::Bool(true));
  EXPECT_EQ(Ser(c::Map(std::move(kv))),
            Compact("a3"
                    " 6566696c6573 a0"         // "files": {}
                    " 656c61796572 f5"         // "layer": true
                    " 6776657273696f6e 01"));  // "version": 1
}

TEST(CborWriterTest, WriterOutputIsCanonical) {
  std::vector<std::pair<std::string, c::Item>> inner;
  inner.emplace_back("zz", c::Int(-1000));
  inner.emplace_back("y", c::Text("\xe2\x82\xac"));
  std::vector<c::Item> arr;
  arr.push_back(c::Uint(uint64_t{1} << 40));
  arr.push_back(c::Map(std::move(inner)));
  arr.push_back(c::Bool(false));
  c::Item root = c::Tag(kOcixTag, c::Array(std::move(arr)));
  std::string bytes = c::Serialize(root.get());
  EXPECT_TRUE(c::ValidateCanonical({reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()}).ok());
}

// ---- validator: accepted -------------------------------------------------------

TEST(CborValidateTest, AcceptsWellFormedCanonicalItems) {
  for (const char* hex : {
           "00",
           "17",
           "1818",
           "1b0000000100000000",
           "20",
           "3818",
           "3b7fffffffffffffff",
           "40",
           "4401020304",
           "60",
           "6449455446",
           "62c3bc",
           "64f09f9880",  // U+1F600
           "80",
           "83010203",
           "a0",
           "a26161016162 02",
           "a2 6162 01 626161 02",  // "b" before "aa"
           "f4",
           "f5",
           "c001",
           "da6f636978a0",
           "c6da6f636978a0",
           "a1 01 02",          // integer keys are well-formed
           "a2 01 00 6161 00",  // key 0x01 (1 byte) before "a" (2 bytes)
       }) {
    Status s = Validate(hex);
    EXPECT_TRUE(s.ok()) << hex << ": " << s.ToString();
  }
}

TEST(CborValidateTest, LoadReturnsTheItem) {
  auto r = c::Load(Bytes("a2 6161 01 6162 82 f5 20"));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  auto pairs = c::GetMap(r->get(), "root");
  ASSERT_TRUE(pairs.ok());
  ASSERT_EQ(pairs->size(), 2u);
  EXPECT_EQ(*c::KeyText((*pairs)[0]), "a");
  EXPECT_EQ(*c::GetUint((*pairs)[0].value, "a"), 1u);
  EXPECT_EQ(*c::KeyText((*pairs)[1]), "b");
  auto arr = c::GetArray((*pairs)[1].value, "b");
  ASSERT_TRUE(arr.ok());
  ASSERT_EQ(arr->size(), 2u);
  EXPECT_EQ(*c::GetBool((*arr)[0], "b0"), true);
  EXPECT_EQ(*c::GetInt((*arr)[1], "b1"), -1);
}

// ---- validator: rejected -------------------------------------------------------

void ExpectRejected(std::string_view hex, std::string_view why) {
  Status s = Validate(hex);
  EXPECT_FALSE(s.ok()) << why << ": " << hex;
  EXPECT_EQ(s.code(), Code::kCorruption) << why << ": " << hex << " " << s.ToString();
  auto r = c::Load(Bytes(hex));
  EXPECT_FALSE(r.ok()) << why << " (Load): " << hex;
}

TEST(CborValidateTest, RejectsNonShortestHeads) {
  ExpectRejected("1800", "0 in one extra byte");
  ExpectRejected("1817", "23 in one extra byte");
  ExpectRejected("1900ff", "255 in two bytes");
  ExpectRejected("190000", "0 in two bytes");
  ExpectRejected("1a0000ffff", "65535 in four bytes");
  ExpectRejected("1b00000000ffffffff", "2^32-1 in eight bytes");
  ExpectRejected("3817", "-24 in one extra byte");
  ExpectRejected("3900ff", "-256 in two bytes");
  ExpectRejected("580161", "byte string length 1 in one extra byte");
  ExpectRejected("780161", "text length 1 in one extra byte");
  ExpectRejected("9800", "array length 0 in one extra byte");
  ExpectRejected("b800", "map length 0 in one extra byte");
  ExpectRejected("d80600", "tag 6 in one extra byte");
  ExpectRejected("d9000600", "tag 6 in two bytes");
}

TEST(CborValidateTest, RejectsReservedAdditionalInfo) {
  ExpectRejected("1c", "ai 28");
  ExpectRejected("1d", "ai 29");
  ExpectRejected("1e", "ai 30");
  ExpectRejected("3c", "negative ai 28");
}

TEST(CborValidateTest, RejectsIndefiniteLengths) {
  ExpectRejected("5f4101ff", "indefinite byte string");
  ExpectRejected("7f6161ff", "indefinite text string");
  ExpectRejected("9f01ff", "indefinite array");
  ExpectRejected("bf616101ff", "indefinite map");
  ExpectRejected("9fff", "empty indefinite array");
  ExpectRejected("ff", "lone break");
  ExpectRejected("1f", "indefinite unsigned");
}

TEST(CborValidateTest, RejectsUnsortedAndDuplicateKeys) {
  ExpectRejected("a2 6162 01 6161 02", "\"b\" before \"a\"");
  ExpectRejected("a2 626161 01 6162 02", "\"aa\" before \"b\" (longer first)");
  ExpectRejected("a2 6161 01 6161 02", "duplicate \"a\"");
  ExpectRejected("a3 6161 01 6162 02 6161 03", "duplicate \"a\", not adjacent");
  ExpectRejected("a1 6161 a2 6178 01 6178 02", "duplicate key in a nested map");
  ExpectRejected("a2 6161 00 01 00", "text key before a shorter integer key");
}

TEST(CborValidateTest, RejectsFloatsNullUndefinedAndSimpleValues) {
  ExpectRejected("f93c00", "half float 1.0");
  ExpectRejected("fa3f800000", "single float 1.0");
  ExpectRejected("fb3ff0000000000000", "double float 1.0");
  ExpectRejected("f6", "null");
  ExpectRejected("f7", "undefined");
  ExpectRejected("f0", "simple value 16");
  ExpectRejected("f820", "simple value 32");
}

// Regression test for a fixed bug (ocixcore/src/cbor.cc, Validator::Item, major type 7): the check for
// floats and extended simple values reads d_[pos_ - 1], which after Head()
// is the last byte of the argument, not the initial byte. So "f8 14"/"f8 15"
// (false/true in the non-canonical two-byte form) and floats whose payload
// ends in 0x14/0x15 and whose value is 20/21 pass as canonical.
TEST(CborValidateTest, RegressionRejectsExtendedFormsOfTrueFalse) {
  ExpectRejected("f814", "false in the two-byte form");
  ExpectRejected("f815", "true in the two-byte form");
  ExpectRejected("f90014", "half float with bits 0x0014");
  ExpectRejected("fa00000015", "single float with bits 0x00000015");
  ExpectRejected("fb0000000000000014", "double float with bits 0x14");
  ExpectRejected("a1 6161 f6", "null as a map value");
  ExpectRejected("82 01 f93c00", "float in an array");
}

TEST(CborValidateTest, RejectsTruncatedInput) {
  ExpectRejected("", "empty input");
  ExpectRejected("18", "missing one-byte argument");
  ExpectRejected("19 01", "short two-byte argument");
  ExpectRejected("1b 0000000000", "short eight-byte argument");
  ExpectRejected("62 61", "text shorter than its length");
  ExpectRejected("44 0102", "bytes shorter than their length");
  ExpectRejected("82 01", "array missing an item");
  ExpectRejected("a1 6161", "map missing a value");
  ExpectRejected("a2 6161 01", "map missing a pair");
  ExpectRejected("da 6f63", "truncated tag head");
  ExpectRejected("da6f636978", "tag without content");
  ExpectRejected("c6", "tag 6 without content");
}

TEST(CborValidateTest, RejectsTrailingBytes) {
  ExpectRejected("0000", "two items");
  ExpectRejected("a0 00", "map then a byte");
  ExpectRejected("da6f636978a0 ff", "manifest-like item then break");
  ExpectRejected("6161 61", "text then a stray byte");
}

TEST(CborValidateTest, RejectsInvalidUtf8Text) {
  ExpectRejected("61 ff", "0xff");
  ExpectRejected("61 80", "lone continuation byte");
  ExpectRejected("62 c080", "overlong NUL");
  ExpectRejected("62 c1bf", "overlong 0x7f");
  ExpectRejected("63 e08080", "overlong three-byte");
  ExpectRejected("63 eda080", "UTF-16 surrogate D800");
  ExpectRejected("64 f4908080", "above U+10FFFF");
  ExpectRejected("62 e282", "truncated sequence");
  ExpectRejected("a1 61ff 00", "invalid UTF-8 map key");
  // Byte strings may hold anything.
  EXPECT_TRUE(Validate("42 ff80").ok());
}

std::string NestedArrays(size_t levels) {
  // levels arrays, each holding the next; the innermost is empty.
  return Repeat("81", levels - 1) + "80";
}

TEST(CborValidateTest, BoundsNestingDepth) {
  ASSERT_EQ(kMaxCborDepth, 16u);
  Status ok = Validate(NestedArrays(kMaxCborDepth));
  EXPECT_TRUE(ok.ok()) << ok.ToString();
  ExpectRejected(NestedArrays(kMaxCborDepth + 2), "arrays nested beyond kMaxCborDepth");
  ExpectRejected(NestedArrays(100000), "arrays nested very deep (must not overflow the stack)");
  ExpectRejected(Repeat("a1 6161", kMaxCborDepth + 2) + "00", "maps nested beyond kMaxCborDepth");
  ExpectRejected(Repeat("c1", 100000) + "00", "tags nested very deep");
  EXPECT_TRUE(Validate(Repeat("c1", 3) + "00").ok());
}

TEST(CborValidateTest, RejectsLengthsLargerThanTheInput) {
  ExpectRejected("5b ffffffffffffffff 00", "byte string of 2^64-1 bytes");
  ExpectRejected("5b 0000000100000000 00", "byte string of 2^32 bytes");
  ExpectRejected("7b ffffffffffffffff 61", "text of 2^64-1 bytes");
  ExpectRejected("9b ffffffffffffffff 00", "array of 2^64-1 items");
  ExpectRejected("bb ffffffffffffffff 6161 00", "map of 2^64-1 pairs");
  ExpectRejected("9a 00010000 00 00", "array of 65536 items in 2 bytes");
  ExpectRejected("ba 00010000 6161 00", "map of 65536 pairs");
  ExpectRejected("59 0100 00", "byte string of 256 bytes, 1 present");
}

// ---- typed accessors -----------------------------------------------------------

TEST(CborAccessorTest, TypeErrorsNameWhatWasRead) {
  auto item = c::Load(Bytes("6161"));
  ASSERT_TRUE(item.ok());
  auto u = c::GetUint(item->get(), "the size");
  ASSERT_FALSE(u.ok());
  EXPECT_EQ(u.status().code(), Code::kCorruption);
  EXPECT_NE(u.status().message().find("the size"), std::string::npos) << u.status().message();
  EXPECT_FALSE(c::GetBytes(item->get(), "x").ok());
  EXPECT_FALSE(c::GetArray(item->get(), "x").ok());
  EXPECT_FALSE(c::GetMap(item->get(), "x").ok());
  EXPECT_FALSE(c::GetBool(item->get(), "x").ok());
  EXPECT_FALSE(c::GetInt(item->get(), "x").ok());
  EXPECT_EQ(*c::GetText(item->get(), "x"), "a");
}

TEST(CborAccessorTest, GetIntRange) {
  auto max = c::Load(Bytes("1b7fffffffffffffff"));
  ASSERT_TRUE(max.ok());
  EXPECT_EQ(*c::GetInt(max->get(), "v"), std::numeric_limits<int64_t>::max());
  auto too_big = c::Load(Bytes("1b8000000000000000"));
  ASSERT_TRUE(too_big.ok());
  EXPECT_FALSE(c::GetInt(too_big->get(), "v").ok());
  EXPECT_EQ(*c::GetUint(too_big->get(), "v"), uint64_t{1} << 63);
  auto min = c::Load(Bytes("3b7fffffffffffffff"));
  ASSERT_TRUE(min.ok());
  EXPECT_EQ(*c::GetInt(min->get(), "v"), std::numeric_limits<int64_t>::min());
  auto too_small = c::Load(Bytes("3b8000000000000000"));
  ASSERT_TRUE(too_small.ok());
  EXPECT_FALSE(c::GetInt(too_small->get(), "v").ok());
  EXPECT_FALSE(c::GetUint(min->get(), "v").ok()) << "negative is not a uint";
}

TEST(CborAccessorTest, BytesKeepEmbeddedZeros) {
  auto item = c::Load(Bytes("43 00ff00"));
  ASSERT_TRUE(item.ok());
  EXPECT_EQ(*c::GetBytes(item->get(), "b"), std::string("\0\xff\0", 3));
}

}  // namespace
}  // namespace ocix::core

// The OCIX layer's TOC and footer: encodings, and the validation of
// untrusted TOCs, footers and descriptor annotations.
#include "ocix/core/ocix_layer.h"

#include <gtest/gtest.h>
#include <zstd.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ocix/core/blake3.h"
#include "ocix/core/cbor.h"
#include "ocix/core/codec.h"
#include "ocix/core/manifest.h"
#include "ocix/core/status.h"

namespace ocix::core {
namespace {

namespace c = cbor;

constexpr uint64_t kChunk = 4096;
constexpr uint64_t kTocOffset = 1'000'000;  // where the TOC frame would start

std::span<const uint8_t> Bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

Digest D(uint8_t fill) {
  Digest d;
  d.bytes.fill(fill);
  return d;
}

Entry Dir(std::string path) {
  Entry e;
  e.path = std::move(path);
  e.type = FileType::kDirectory;
  e.mode = 0755;
  return e;
}

Entry Reg(std::string path, uint64_t size, Digest d) {
  Entry e;
  e.path = std::move(path);
  e.type = FileType::kRegular;
  e.mode = 0644;
  e.size = size;
  e.digest = d;
  return e;
}

// A layer manifest with: /a (10 bytes, digest 0x11..), /b (3 chunks + 1
// byte, digest 0x22..), /d (dir), /e (empty), /w (whiteout). Entries in
// canonical order: shorter paths first.
Manifest LayerManifest() {
  Manifest m;
  m.version = 1;
  m.layer = true;
  m.entries.push_back(Dir("/"));
  m.entries.push_back(Reg("/a", 10, D(0x11)));
  m.entries.push_back(Reg("/b", 3 * kChunk + 1, D(0x22)));
  m.entries.push_back(Dir("/d"));
  m.entries.push_back(Reg("/e", 0, Blake3::Hash(std::string_view())));
  Entry w;
  w.path = "/w";
  w.type = FileType::kWhiteout;
  m.entries.push_back(w);
  return m;
}

std::string ManifestBytes(const Manifest& m) {
  auto b = EncodeManifest(m);
  EXPECT_TRUE(b.ok()) << b.status().ToString();
  return b.ok() ? *b : std::string();
}

// ---- a TOC written by hand, field by field (docs/FORMAT.md) -------------------

struct RawChunk {
  uint64_t offset = 0, size = 0;
  std::optional<Digest> b3;
};
struct RawTable {
  Digest digest;
  uint64_t size = 0;
  std::vector<RawChunk> chunks;
};
struct RawToc {
  uint64_t chunk = kChunk;
  uint64_t version = 1;
  std::string manifest;
  std::vector<RawTable> files;
  std::optional<std::vector<std::string>> prefetch;
  std::string extra_key;  // added with value 0 when non-empty
  bool omit_files = false;
};

// The valid raw TOC for LayerManifest(): /a in one frame, /b in four.
RawToc GoodRaw() {
  RawToc t;
  t.manifest = ManifestBytes(LayerManifest());
  // Sorted by digest: 0x11.. before 0x22...
  t.files.push_back({D(0x11), 10, {{100, 20, std::nullopt}}});
  t.files.push_back(
      {D(0x22), 3 * kChunk + 1, {{200, 50, D(0x31)}, {250, 50, D(0x32)}, {300, 50, D(0x33)}, {400, 9, D(0x34)}}});
  t.prefetch = std::vector<std::string>{"/b"};
  return t;
}

std::string PlainCbor(const RawToc& r) {
  std::vector<c::Item> files;
  for (const RawTable& t : r.files) {
    std::vector<c::Item> chunks;
    for (const RawChunk& ch : t.chunks) {
      std::vector<c::Item> loc;
      loc.push_back(c::Uint(ch.offset));
      loc.push_back(c::Uint(ch.size));
      if (ch.b3) loc.push_back(c::Bytes(ch.b3->bytes));
      chunks.push_back(c::Array(std::move(loc)));
    }
    std::vector<c::Item> f;
    f.push_back(c::Bytes(t.digest.bytes));
    f.push_back(c::Uint(t.size));
    f.push_back(c::Array(std::move(chunks)));
    files.push_back(c::Array(std::move(f)));
  }
  std::vector<std::pair<std::string, c::Item>> top;
  top.emplace_back("chunk", c::Uint(r.chunk));
  if (!r.omit_files) top.emplace_back("files", c::Array(std::move(files)));
  top.emplace_back("version", c::Uint(r.version));
  top.emplace_back("manifest", c::Bytes(Bytes(r.manifest)));
  if (r.prefetch) {
    std::vector<c::Item> p;
    for (const std::string& s : *r.prefetch) p.push_back(c::Text(s));
    top.emplace_back("prefetch", c::Array(std::move(p)));
  }
  if (!r.extra_key.empty()) top.emplace_back(r.extra_key, c::Uint(0));
  c::Item root = c::Map(std::move(top));
  return c::Serialize(root.get());
}

std::string Zstd(const std::string& plain) {
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

std::string Unzstd(const std::string& frame) {
  unsigned long long size = ZSTD_getFrameContentSize(frame.data(), frame.size());
  EXPECT_NE(size, ZSTD_CONTENTSIZE_ERROR);
  EXPECT_NE(size, ZSTD_CONTENTSIZE_UNKNOWN);
  std::string out(size, '\0');
  size_t n = ZSTD_decompress(out.data(), out.size(), frame.data(), frame.size());
  EXPECT_FALSE(ZSTD_isError(n));
  EXPECT_EQ(n, size);
  return out;
}

Result<Toc> DecodeRaw(const RawToc& r, uint64_t toc_offset = kTocOffset) {
  const std::string payload = Zstd(PlainCbor(r));
  return DecodeToc(Bytes(payload), toc_offset);
}

// Expects a Corruption whose message contains `needle`.
void ExpectCorrupt(const Result<Toc>& t, const std::string& needle) {
  ASSERT_FALSE(t.ok()) << "accepted; expected an error containing \"" << needle << "\"";
  EXPECT_EQ(t.status().code(), Code::kCorruption) << t.status().ToString();
  EXPECT_NE(t.status().message().find(needle), std::string::npos) << t.status().ToString();
}

// ---- DecodeToc of valid input, EncodeToc --------------------------------------

TEST(TocDecodeTest, HandWrittenTocDecodes) {
  auto t = DecodeRaw(GoodRaw());
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->chunk_size, kChunk);
  EXPECT_EQ(t->manifest, LayerManifest());
  EXPECT_EQ(t->manifest_bytes, ManifestBytes(LayerManifest()));
  ASSERT_EQ(t->contents.size(), 2u);
  EXPECT_EQ(t->contents[0].digest, D(0x11));
  EXPECT_EQ(t->contents[0].size, 10u);
  ASSERT_EQ(t->contents[0].chunks.size(), 1u);
  EXPECT_EQ(t->contents[0].chunks[0], (ChunkLocation{100, 20, D(0x11)}))
      << "a one-chunk content's chunk digest is the content digest";
  ASSERT_EQ(t->contents[1].chunks.size(), 4u);
  EXPECT_EQ(t->contents[1].chunks[0], (ChunkLocation{200, 50, D(0x31)}));
  EXPECT_EQ(t->contents[1].chunks[3], (ChunkLocation{400, 9, D(0x34)}));
  EXPECT_EQ(t->prefetch, std::vector<std::string>{"/b"});
  ASSERT_NE(t->Find(D(0x22)), nullptr);
  EXPECT_EQ(t->Find(D(0x22))->size, 3 * kChunk + 1);
  EXPECT_EQ(t->Find(D(0x33)), nullptr);
}

TEST(TocDecodeTest, PrefetchIsOptional) {
  RawToc r = GoodRaw();
  r.prefetch.reset();
  auto t = DecodeRaw(r);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_TRUE(t->prefetch.empty());
}

TEST(TocDecodeTest, FrameMayEndExactlyAtTocOffset) {
  RawToc r = GoodRaw();
  r.files[1].chunks[3] = {kTocOffset - 9, 9, D(0x34)};
  EXPECT_TRUE(DecodeRaw(r).ok());
  // Adjacent frames (one ends where the next starts) do not overlap.
  r = GoodRaw();
  r.files[0].chunks[0] = {180, 20, std::nullopt};  // ends at 200, where /b starts
  EXPECT_TRUE(DecodeRaw(r).ok());
}

TEST(TocDecodeTest, ChunkRange) {
  Toc t;
  t.chunk_size = kChunk;
  EXPECT_EQ(t.ChunkRange(3 * kChunk + 5, 0), (std::pair<uint64_t, uint64_t>{0, kChunk}));
  EXPECT_EQ(t.ChunkRange(3 * kChunk + 5, 2), (std::pair<uint64_t, uint64_t>{2 * kChunk, kChunk}));
  EXPECT_EQ(t.ChunkRange(3 * kChunk + 5, 3), (std::pair<uint64_t, uint64_t>{3 * kChunk, 5}));
  EXPECT_EQ(t.ChunkRange(kChunk, 0), (std::pair<uint64_t, uint64_t>{0, kChunk}));
}

Toc GoodToc() {
  Toc t;
  t.chunk_size = kChunk;
  t.manifest = LayerManifest();
  t.manifest_bytes = ManifestBytes(t.manifest);
  t.contents.push_back({D(0x11), 10, {{100, 20, D(0x11)}}});
  t.contents.push_back(
      {D(0x22), 3 * kChunk + 1, {{200, 50, D(0x31)}, {250, 50, D(0x32)}, {300, 50, D(0x33)}, {400, 9, D(0x34)}}});
  t.prefetch = {"/b"};
  return t;
}

void ExpectSameToc(const Toc& a, const Toc& b) {
  EXPECT_EQ(a.chunk_size, b.chunk_size);
  EXPECT_EQ(a.manifest, b.manifest);
  EXPECT_EQ(a.manifest_bytes, b.manifest_bytes);
  EXPECT_EQ(a.contents, b.contents);
  EXPECT_EQ(a.prefetch, b.prefetch);
}

TEST(TocEncodeTest, RoundTrip) {
  const Toc toc = GoodToc();
  auto payload = EncodeToc(toc);
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  auto back = DecodeToc(Bytes(*payload), kTocOffset);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameToc(*back, toc);
}

TEST(TocEncodeTest, RoundTripWithoutPrefetchOrContents) {
  Toc toc;
  toc.chunk_size = 1u << 20;
  toc.manifest.version = 1;
  toc.manifest.layer = true;
  toc.manifest.entries.push_back(Dir("/"));
  toc.manifest_bytes = ManifestBytes(toc.manifest);
  auto payload = EncodeToc(toc);
  ASSERT_TRUE(payload.ok()) << payload.status().ToString();
  auto back = DecodeToc(Bytes(*payload), 0);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameToc(*back, toc);
}

TEST(TocEncodeTest, EncodingIsTheDocumentedCbor) {
  // The payload is one zstd frame with its content size, holding exactly the
  // canonical CBOR written by hand above (one-chunk entries without b3).
  auto payload = EncodeToc(GoodToc());
  ASSERT_TRUE(payload.ok());
  EXPECT_EQ(ZSTD_findFrameCompressedSize(payload->data(), payload->size()), payload->size());
  EXPECT_EQ(Unzstd(*payload), PlainCbor(GoodRaw()));
}

TEST(TocEncodeTest, EmptyPrefetchIsOmitted) {
  Toc toc = GoodToc();
  toc.prefetch.clear();
  auto payload = EncodeToc(toc);
  ASSERT_TRUE(payload.ok());
  RawToc r = GoodRaw();
  r.prefetch.reset();
  EXPECT_EQ(Unzstd(*payload), PlainCbor(r));
}

// ---- DecodeToc rejects ------------------------------------------------------------

TEST(TocDecodeTest, RejectsBadZstd) {
  const std::string garbage = "this is not zstd at all";
  ExpectCorrupt(DecodeToc(Bytes(garbage), kTocOffset), "zstd");
  ExpectCorrupt(DecodeToc({}, kTocOffset), "zstd");
  // A frame whose content is damaged.
  std::string payload = Zstd(PlainCbor(GoodRaw()));
  payload.resize(payload.size() - 3);
  EXPECT_FALSE(DecodeToc(Bytes(payload), kTocOffset).ok());
  // A streamed frame without a content size.
  const std::string plain = PlainCbor(GoodRaw());
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  std::string streamed(ZSTD_compressBound(plain.size()) + 64, '\0');
  ZSTD_inBuffer in{plain.data(), plain.size(), 0};
  ZSTD_outBuffer out{streamed.data(), streamed.size(), 0};
  // Input first, then the end: the size is not known when the frame starts.
  ASSERT_FALSE(ZSTD_isError(ZSTD_compressStream2(cctx.get(), &out, &in, ZSTD_e_continue)));
  ZSTD_inBuffer none{nullptr, 0, 0};
  ASSERT_EQ(ZSTD_compressStream2(cctx.get(), &out, &none, ZSTD_e_end), 0u);
  streamed.resize(out.pos);
  ASSERT_EQ(ZSTD_getFrameContentSize(streamed.data(), streamed.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  ExpectCorrupt(DecodeToc(Bytes(streamed), kTocOffset), "content size");
}

TEST(TocDecodeTest, RejectsNonCborOrNonMap) {
  EXPECT_EQ(DecodeToc(Bytes(Zstd("\xff\xff")), kTocOffset).status().code(), Code::kCorruption);
  c::Item arr = c::Array({});
  EXPECT_EQ(DecodeToc(Bytes(Zstd(c::Serialize(arr.get()))), kTocOffset).status().code(), Code::kCorruption);
  // Trailing bytes after the map.
  EXPECT_EQ(DecodeToc(Bytes(Zstd(PlainCbor(GoodRaw()) + '\0')), kTocOffset).status().code(), Code::kCorruption);
}

TEST(TocDecodeTest, RejectsUnknownKey) {
  RawToc r = GoodRaw();
  r.extra_key = "extra";
  ExpectCorrupt(DecodeRaw(r), "unknown key \"extra\"");
}

TEST(TocDecodeTest, RejectsMissingRequiredKey) {
  RawToc r = GoodRaw();
  r.omit_files = true;
  ExpectCorrupt(DecodeRaw(r), "required");
}

TEST(TocDecodeTest, RejectsWrongVersion) {
  for (uint64_t v : {0u, 2u}) {
    RawToc r = GoodRaw();
    r.version = v;
    ExpectCorrupt(DecodeRaw(r), "version");
  }
}

TEST(TocDecodeTest, RejectsChunkSizeNotPowerOfTwoInRange) {
  for (uint64_t cs : {uint64_t{6000}, uint64_t{4097}, uint64_t{2048}, uint64_t{128} << 20, uint64_t{0}}) {
    RawToc r = GoodRaw();
    r.chunk = cs;
    ExpectCorrupt(DecodeRaw(r), "chunk size");
  }
}

TEST(TocDecodeTest, RejectsUnsortedOrDuplicateDigests) {
  RawToc r = GoodRaw();
  std::swap(r.files[0], r.files[1]);
  ExpectCorrupt(DecodeRaw(r), "unsorted or duplicated");
  r = GoodRaw();
  r.files.push_back(r.files[1]);
  r.files[2].chunks = {{500, 50, D(0x31)}, {550, 50, D(0x32)}, {600, 50, D(0x33)}, {700, 9, D(0x34)}};
  ExpectCorrupt(DecodeRaw(r), "unsorted or duplicated");
}

TEST(TocDecodeTest, RejectsWrongChunkCount) {
  RawToc r = GoodRaw();
  r.files[1].chunks.pop_back();  // 3 chunks for 3*4096+1 bytes
  ExpectCorrupt(DecodeRaw(r), "wrong number of chunks");
  r = GoodRaw();
  r.files[1].chunks.push_back({500, 9, D(0x35)});  // 5 chunks
  ExpectCorrupt(DecodeRaw(r), "wrong number of chunks");
  r = GoodRaw();
  r.files[0].chunks.clear();  // 0 chunks for 10 bytes
  ExpectCorrupt(DecodeRaw(r), "wrong number of chunks");
}

TEST(TocDecodeTest, RejectsZeroSizedContent) {
  RawToc r = GoodRaw();
  r.files.insert(r.files.begin(), RawTable{D(0x01), 0, {}});
  ExpectCorrupt(DecodeRaw(r), "bad size");
}

TEST(TocDecodeTest, RejectsChunkFieldCounts) {
  RawToc r = GoodRaw();
  r.files[0].chunks[0].b3 = D(0x11);  // one chunk with 3 fields
  ExpectCorrupt(DecodeRaw(r), "TOC chunk is");
  r = GoodRaw();
  r.files[1].chunks[2].b3.reset();  // multi-chunk with 2 fields
  ExpectCorrupt(DecodeRaw(r), "TOC chunk is");
}

TEST(TocDecodeTest, RejectsOverlappingFrames) {
  RawToc r = GoodRaw();
  r.files[0].chunks[0] = {190, 20, std::nullopt};  // [190,210) overlaps /b's [200,250)
  ExpectCorrupt(DecodeRaw(r), "overlap");
  r = GoodRaw();
  r.files[1].chunks[1] = {200, 50, D(0x32)};  // two chunks in the same frame
  ExpectCorrupt(DecodeRaw(r), "overlap");
  r = GoodRaw();
  r.files[0].chunks[0] = {210, 5, std::nullopt};  // inside another frame
  ExpectCorrupt(DecodeRaw(r), "overlap");
}

TEST(TocDecodeTest, RejectsFramePastTocOffset) {
  RawToc r = GoodRaw();
  r.files[1].chunks[3] = {kTocOffset - 8, 9, D(0x34)};
  ExpectCorrupt(DecodeRaw(r), "outside");
  r.files[1].chunks[3] = {kTocOffset + 1, 9, D(0x34)};
  ExpectCorrupt(DecodeRaw(r), "outside");
  r.files[1].chunks[3] = {UINT64_MAX - 2, 9, D(0x34)};  // offset + size wraps
  ExpectCorrupt(DecodeRaw(r), "outside");
  // The same TOC is fine when the TOC lies further on.
  r = GoodRaw();
  EXPECT_FALSE(DecodeRaw(r, 300).ok());
  EXPECT_TRUE(DecodeRaw(r, 409).ok());
}

TEST(TocDecodeTest, RejectsZeroOrHugeFrameSize) {
  RawToc r = GoodRaw();
  r.files[0].chunks[0].size = 0;
  ExpectCorrupt(DecodeRaw(r), "outside");
  r = GoodRaw();
  r.files[0].chunks[0].size = 2 * kChunk + 1000;  // more than any frame of a 4 KiB chunk
  ExpectCorrupt(DecodeRaw(r), "outside");
}

TEST(TocDecodeTest, RejectsBadDigestLength) {
  // A 31-byte content digest, written with the raw CBOR helpers.
  std::vector<c::Item> f;
  f.push_back(c::Bytes(std::vector<uint8_t>(31, 0x11)));
  f.push_back(c::Uint(10));
  std::vector<c::Item> loc;
  loc.push_back(c::Uint(100));
  loc.push_back(c::Uint(20));
  std::vector<c::Item> chunks;
  chunks.push_back(c::Array(std::move(loc)));
  f.push_back(c::Array(std::move(chunks)));
  std::vector<c::Item> files;
  files.push_back(c::Array(std::move(f)));
  std::vector<std::pair<std::string, c::Item>> top;
  top.emplace_back("chunk", c::Uint(kChunk));
  top.emplace_back("files", c::Array(std::move(files)));
  top.emplace_back("version", c::Uint(1));
  const std::string mb = ManifestBytes(LayerManifest());
  top.emplace_back("manifest", c::Bytes(Bytes(mb)));
  c::Item root = c::Map(std::move(top));
  auto t = DecodeToc(Bytes(Zstd(c::Serialize(root.get()))), kTocOffset);
  ExpectCorrupt(t, "32 bytes");
}

TEST(TocDecodeTest, RejectsRegularFileWithoutTable) {
  RawToc r = GoodRaw();
  r.files.erase(r.files.begin());  // /a has no table
  ExpectCorrupt(DecodeRaw(r), "no chunk table for \"/a\"");
}

TEST(TocDecodeTest, RejectsTableSizeDifferingFromManifest) {
  RawToc r = GoodRaw();
  r.files[0].size = 11;  // still one chunk
  ExpectCorrupt(DecodeRaw(r), "differs from \"/a\"");
}

TEST(TocDecodeTest, RejectsPrefetchOfNonRegularFile) {
  for (const char* p : {"/d", "/w", "/missing", "/", "relative"}) {
    RawToc r = GoodRaw();
    r.prefetch = std::vector<std::string>{"/a", p};
    ExpectCorrupt(DecodeRaw(r), "prefetch path");
  }
  // An empty regular file is a regular file.
  RawToc r = GoodRaw();
  r.prefetch = std::vector<std::string>{"/e"};
  EXPECT_TRUE(DecodeRaw(r).ok());
}

TEST(TocDecodeTest, RejectsManifestThatIsNotALayerManifest) {
  Manifest flat = LayerManifest();
  flat.layer = false;
  flat.entries.erase(flat.entries.end() - 1);  // no whiteouts outside layer manifests
  RawToc r = GoodRaw();
  r.manifest = ManifestBytes(flat);
  ASSERT_FALSE(r.manifest.empty());
  ExpectCorrupt(DecodeRaw(r), "not a version 1 layer manifest");

  Manifest v0 = flat;
  v0.version = 0;
  r.manifest = ManifestBytes(v0);
  ASSERT_FALSE(r.manifest.empty());
  ExpectCorrupt(DecodeRaw(r), "not a version 1 layer manifest");
}

TEST(TocDecodeTest, RejectsBrokenManifest) {
  RawToc r = GoodRaw();
  r.manifest = "not cbor";
  ExpectCorrupt(DecodeRaw(r), "TOC manifest");
}

// The fuzz seeds are TOCs of layers written by `ocix convert` (run from tests/).
TEST(TocDecodeTest, FuzzSeedsDecodeAndRoundTrip) {
  int seeds = 0;
  for (const char* name : {"seed-l1-4k.toc", "seed-l1-64k-prefetch.toc", "seed-l2-4k.toc", "seed-l2-64k.toc"}) {
    std::ifstream in(std::string("fuzz/corpus/toc_decode/") + name, std::ios::binary);
    if (!in) continue;
    ++seeds;
    const std::string payload((std::istreambuf_iterator<char>(in)), {});
    auto t = DecodeToc(Bytes(payload), kTocOffset);
    ASSERT_TRUE(t.ok()) << name << ": " << t.status().ToString();
    auto again = EncodeToc(*t);
    ASSERT_TRUE(again.ok());
    auto back = DecodeToc(Bytes(*again), kTocOffset);
    ASSERT_TRUE(back.ok());
    ExpectSameToc(*back, *t);
  }
  ASSERT_EQ(seeds, 4) << "run from tests/ (fuzz/corpus/toc_decode)";
}

// ---- footer -----------------------------------------------------------------------

Footer SampleFooter() {
  Footer f;
  f.toc_offset = 0x0102030405;
  f.toc_size = 0x0a0b0c;
  for (size_t i = 0; i < 32; ++i) f.toc_sha256[i] = static_cast<uint8_t>(0xa0 + i);
  return f;
}

TEST(FooterTest, EncodingLayout) {
  const std::string b = EncodeFooter(SampleFooter());
  ASSERT_EQ(b.size(), 64u);
  // Skippable frame 0x184D2A5F, payload size 56, little endian.
  EXPECT_EQ(b.substr(0, 8), std::string("\x5f\x2a\x4d\x18\x38\x00\x00\x00", 8));
  EXPECT_EQ(b.substr(8, 8), "OCIXTOC1");
  EXPECT_EQ(b.substr(16, 8), std::string("\x05\x04\x03\x02\x01\x00\x00\x00", 8));
  EXPECT_EQ(b.substr(24, 8), std::string("\x0c\x0b\x0a\x00\x00\x00\x00\x00", 8));
  for (size_t i = 0; i < 32; ++i) EXPECT_EQ(static_cast<uint8_t>(b[32 + i]), 0xa0 + i);
  // zstd itself sees a skippable frame of 64 bytes.
  EXPECT_EQ(ZSTD_findFrameCompressedSize(b.data(), b.size()), 64u);
}

TEST(FooterTest, RoundTrip) {
  const Footer f = SampleFooter();
  const std::string b = EncodeFooter(f);
  const uint64_t blob = f.toc_offset + f.toc_size + 64;
  auto back = DecodeFooter(Bytes(b), blob);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->toc_offset, f.toc_offset);
  EXPECT_EQ(back->toc_size, f.toc_size);
  EXPECT_EQ(back->toc_sha256, f.toc_sha256);
  std::string hex = "sha256:";
  for (size_t i = 0; i < 32; ++i) {
    static const char kHex[] = "0123456789abcdef";
    hex += kHex[(0xa0 + i) >> 4];
    hex += kHex[(0xa0 + i) & 15];
  }
  EXPECT_EQ(back->TocDigest(), hex);
}

TEST(FooterTest, RejectsBadMagic) {
  const Footer f = SampleFooter();
  const uint64_t blob = f.toc_offset + f.toc_size + 64;
  for (size_t pos : {0u, 3u, 4u, 8u, 15u}) {
    std::string b = EncodeFooter(f);
    b[pos] ^= 0x01;
    auto r = DecodeFooter(Bytes(b), blob);
    ASSERT_FALSE(r.ok()) << pos;
    EXPECT_EQ(r.status().code(), Code::kNotFound) << pos << ": " << r.status().ToString();
  }
}

TEST(FooterTest, RejectsOffsetOutOfRange) {
  Footer f = SampleFooter();
  const uint64_t blob = f.toc_offset + f.toc_size + 64;
  EXPECT_EQ(DecodeFooter(Bytes(EncodeFooter(f)), blob - 1).status().code(), Code::kCorruption);
  f.toc_offset = blob;
  EXPECT_EQ(DecodeFooter(Bytes(EncodeFooter(f)), blob).status().code(), Code::kCorruption);
  f.toc_offset = 7;  // no room for the TOC frame's header
  f.toc_size = 1;
  EXPECT_EQ(DecodeFooter(Bytes(EncodeFooter(f)), 1000).status().code(), Code::kCorruption);
  f.toc_offset = 8;
  EXPECT_TRUE(DecodeFooter(Bytes(EncodeFooter(f)), 1000).ok());
  f.toc_offset = 100;
  f.toc_size = UINT64_MAX - 50;  // offset + size wraps
  EXPECT_EQ(DecodeFooter(Bytes(EncodeFooter(f)), 1000).status().code(), Code::kCorruption);
  f.toc_offset = 8;
  f.toc_size = kMaxTocBytes + 1;
  EXPECT_EQ(DecodeFooter(Bytes(EncodeFooter(f)), kMaxTocBytes + 1000).status().code(), Code::kCorruption);
}

TEST(FooterTest, RejectsTooSmall) {
  const std::string b = EncodeFooter(SampleFooter());
  EXPECT_EQ(DecodeFooter(Bytes(b).subspan(1), 1000).status().code(), Code::kCorruption);
  EXPECT_EQ(DecodeFooter({}, 0).status().code(), Code::kCorruption);
  EXPECT_EQ(DecodeFooter(Bytes(b), 63).status().code(), Code::kCorruption);
}

// ---- FooterFromAnnotations ----------------------------------------------------

const std::string kHex64 = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

std::map<std::string, std::string> Annotations() {
  return {{std::string(kAnnotationTocDigest), "sha256:" + kHex64},
          {std::string(kAnnotationTocOffset), "12345"},
          {std::string(kAnnotationTocSize), "678"},
          {"org.example.other", "x"}};
}

TEST(FooterFromAnnotationsTest, Complete) {
  auto f = FooterFromAnnotations(Annotations());
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ((*f)->toc_offset, 12345u);
  EXPECT_EQ((*f)->toc_size, 678u);
  EXPECT_EQ((*f)->TocDigest(), "sha256:" + kHex64);
  EXPECT_EQ((*f)->toc_sha256[0], 0x00);
  EXPECT_EQ((*f)->toc_sha256[1], 0x11);
  EXPECT_EQ((*f)->toc_sha256[31], 0xff);
}

TEST(FooterFromAnnotationsTest, AbsentIsNotAnError) {
  auto f = FooterFromAnnotations({{"org.example.other", "x"}});
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->has_value());
  // The manifest digest alone does not locate a TOC.
  f = FooterFromAnnotations({{std::string(kAnnotationManifestDigest), "sha256:" + kHex64}});
  ASSERT_TRUE(f.ok());
  EXPECT_FALSE(f->has_value());
}

TEST(FooterFromAnnotationsTest, PartialIsAnError) {
  for (std::string_view key : {kAnnotationTocDigest, kAnnotationTocOffset, kAnnotationTocSize}) {
    auto a = Annotations();
    a.erase(std::string(key));
    auto f = FooterFromAnnotations(a);
    ASSERT_FALSE(f.ok()) << key;
    EXPECT_EQ(f.status().code(), Code::kCorruption);
  }
}

TEST(FooterFromAnnotationsTest, NonDecimalNumbers) {
  for (const char* bad : {"", "0x10", "-1", "+1", " 1", "1 ", "1.0", "1e3", "abc", "18446744073709551616"}) {
    for (std::string_view key : {kAnnotationTocOffset, kAnnotationTocSize}) {
      auto a = Annotations();
      a[std::string(key)] = bad;
      auto f = FooterFromAnnotations(a);
      ASSERT_FALSE(f.ok()) << key << "=\"" << bad << "\"";
      EXPECT_EQ(f.status().code(), Code::kCorruption);
    }
  }
}

TEST(FooterFromAnnotationsTest, BadDigest) {
  for (const std::string& bad :
       {std::string(""), "sha256:" + kHex64.substr(1), "sha256:" + kHex64 + "0", "sha512:" + kHex64, kHex64,
        "sha256:" + kHex64.substr(1) + "g", "SHA256:" + kHex64, "sha256: " + kHex64.substr(1)}) {
    auto a = Annotations();
    a[std::string(kAnnotationTocDigest)] = bad;
    auto f = FooterFromAnnotations(a);
    ASSERT_FALSE(f.ok()) << bad;
    EXPECT_EQ(f.status().code(), Code::kCorruption);
  }
}

TEST(FooterFromAnnotationsTest, TocTooLarge) {
  auto a = Annotations();
  a[std::string(kAnnotationTocSize)] = std::to_string(kMaxTocBytes + 1);
  EXPECT_EQ(FooterFromAnnotations(a).status().code(), Code::kCorruption);
  a[std::string(kAnnotationTocSize)] = std::to_string(kMaxTocBytes);
  EXPECT_TRUE(FooterFromAnnotations(a).ok());
}

}  // namespace
}  // namespace ocix::core

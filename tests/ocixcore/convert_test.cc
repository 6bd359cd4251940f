// ConvertLayer, VerifyOcixLayer, ConvertImage and VerifyImage on small layers
// written with libarchive's writer. Expectations come from the source
// members themselves (their bytes, read back with libarchive, hashed here),
// never from the converter's own output.
#include "ocix/core/convert.h"

#include <archive.h>
#include <archive_entry.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <zstd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ocix/core/blake3.h"
#include "ocix/core/layer_builder.h"
#include "ocix/core/manifest.h"
#include "ocix/core/ocix_layer.h"
#include "ocix/core/sha256.h"
#include "ocix/core/status.h"

namespace ocix::core {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

constexpr uint64_t kChunk = 4096;

// ---- files and directories ------------------------------------------------------

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ocix-convert-test-XXXXXX").string();
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string Path(const std::string& rel) const { return (dir_ / rel).string(); }
  std::string dir() const { return dir_.string(); }

 private:
  fs::path dir_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

void WriteFile(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  EXPECT_TRUE(out.good()) << path;
}

std::span<const uint8_t> Bytes(std::string_view s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

uint64_t LE(std::string_view s, size_t pos, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = v << 8 | static_cast<uint8_t>(s[pos + static_cast<size_t>(i)]);
  return v;
}

// Every zstd frame of `data` decompressed and concatenated (skippable frames
// contribute nothing), as any stock decoder sees the blob.
std::string ZstdDecompressAll(std::string_view data) {
  std::unique_ptr<ZSTD_DCtx, decltype(&ZSTD_freeDCtx)> d(ZSTD_createDCtx(), &ZSTD_freeDCtx);
  std::string out;
  std::string buf(ZSTD_DStreamOutSize(), '\0');
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  while (in.pos < in.size) {
    ZSTD_outBuffer o{buf.data(), buf.size(), 0};
    size_t r = ZSTD_decompressStream(d.get(), &o, &in);
    if (ZSTD_isError(r)) {
      ADD_FAILURE() << "zstd: " << ZSTD_getErrorName(r);
      return out;
    }
    out.append(buf.data(), o.pos);
  }
  return out;
}

std::string ZstdCompress(std::string_view plain) {
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

la_ssize_t AppendToString(archive*, void* self, const void* buf, size_t n) {
  static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

// gzip of arbitrary bytes through libarchive's raw format.
std::string Gzip(std::string_view plain) {
  std::string out;
  archive* a = archive_write_new();
  EXPECT_EQ(archive_write_set_format_raw(a), ARCHIVE_OK);
  EXPECT_EQ(archive_write_add_filter_gzip(a), ARCHIVE_OK);
  EXPECT_EQ(archive_write_open2(a, &out, nullptr, &AppendToString, nullptr, nullptr), ARCHIVE_OK);
  archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, "data");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, static_cast<la_int64_t>(plain.size()));
  EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
  EXPECT_EQ(archive_write_data(a, plain.data(), plain.size()), static_cast<la_ssize_t>(plain.size()));
  archive_entry_free(e);
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

// ---- source layers ----------------------------------------------------------------

struct Member {
  std::string name;
  unsigned type = AE_IFREG;
  unsigned perm = 0644;
  int64_t uid = 0, gid = 0;
  std::string uname, gname;
  int64_t mtime = 1600000000;
  long mtime_nsec = 0;
  std::string content;  // regular files: full logical content (holes as zeros)
  std::string symlink, hardlink;
  unsigned rdev_major = 0, rdev_minor = 0;
  std::vector<std::pair<int64_t, int64_t>> sparse;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

// A plain pax tar of the members.
std::string Tar(const std::vector<Member>& members) {
  std::string out;
  archive* a = archive_write_new();
  EXPECT_EQ(archive_write_set_format_pax(a), ARCHIVE_OK);
  EXPECT_EQ(archive_write_open2(a, &out, nullptr, &AppendToString, nullptr, nullptr), ARCHIVE_OK);
  for (const Member& m : members) {
    archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, m.name.c_str());
    archive_entry_set_filetype(ae, m.type);
    archive_entry_set_perm(ae, m.perm);
    archive_entry_set_uid(ae, m.uid);
    archive_entry_set_gid(ae, m.gid);
    if (!m.uname.empty()) archive_entry_set_uname(ae, m.uname.c_str());
    if (!m.gname.empty()) archive_entry_set_gname(ae, m.gname.c_str());
    archive_entry_set_mtime(ae, m.mtime, m.mtime_nsec);
    if (!m.symlink.empty()) archive_entry_set_symlink(ae, m.symlink.c_str());
    if (m.type == AE_IFCHR || m.type == AE_IFBLK) {
      archive_entry_set_rdevmajor(ae, m.rdev_major);
      archive_entry_set_rdevminor(ae, m.rdev_minor);
    }
    for (const auto& [k, v] : m.xattrs) archive_entry_xattr_add_entry(ae, k.c_str(), v.data(), v.size());
    const bool data = m.type == AE_IFREG && m.hardlink.empty();
    if (!m.hardlink.empty()) archive_entry_set_hardlink(ae, m.hardlink.c_str());
    archive_entry_set_size(ae, data ? static_cast<la_int64_t>(m.content.size()) : 0);
    for (const auto& [off, len] : m.sparse) archive_entry_sparse_add_entry(ae, off, len);
    EXPECT_EQ(archive_write_header(a, ae), ARCHIVE_OK) << m.name << ": " << archive_error_string(a);
    if (data && !m.content.empty()) {
      EXPECT_EQ(archive_write_data(a, m.content.data(), m.content.size()), static_cast<la_ssize_t>(m.content.size()))
          << m.name;
    }
    archive_entry_free(ae);
  }
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK) << archive_error_string(a);
  archive_write_free(a);
  return out;
}

// Incompressible, distinct per seed.
std::string Pseudo(size_t n, uint32_t seed) {
  std::string s(n, '\0');
  uint64_t x = 0x9E3779B97F4A7C15ull * (seed + 1);
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s[i] = static_cast<char>(x >> 24);
  }
  return s;
}

Member F(std::string name, std::string content, unsigned perm = 0644) {
  Member m;
  m.name = std::move(name);
  m.content = std::move(content);
  m.perm = perm;
  return m;
}
Member D(std::string name, unsigned perm = 0755) {
  Member m;
  m.name = std::move(name);
  m.type = AE_IFDIR;
  m.perm = perm;
  return m;
}

const std::string kLongName = "d/" + std::string(150, 'L');

// Every kind of member, regular files around the chunk size; a sparse file
// when `sparse`.
std::vector<Member> Members(bool sparse = true) {
  std::vector<Member> v;
  Member d = D("d/", 0750);
  d.uid = 1000;
  d.gid = 1001;
  d.uname = "alice";
  d.gname = "staff";
  d.mtime_nsec = 123456789;
  v.push_back(d);
  v.push_back(F("d/empty", ""));
  v.push_back(F("d/one", "x", 0600));
  v.push_back(F("d/cm1", Pseudo(kChunk - 1, 1)));
  v.push_back(F("d/c", Pseudo(kChunk, 2)));
  v.push_back(F("d/cp1", Pseudo(kChunk + 1, 3)));
  Member big = F("d/big", Pseudo(3 * kChunk + 5, 4), 04755);
  big.uid = 7;
  big.gid = 8;
  big.mtime = 1234567890;
  big.mtime_nsec = 987654321;
  v.push_back(big);
  Member sym;
  sym.name = "d/sym";
  sym.type = AE_IFLNK;
  sym.perm = 0777;
  sym.symlink = "big";
  v.push_back(sym);
  Member hard;
  hard.name = "d/hard";
  hard.hardlink = "d/big";
  hard.perm = 04755;
  v.push_back(hard);
  Member fifo;
  fifo.name = "d/fifo";
  fifo.type = AE_IFIFO;
  v.push_back(fifo);
  Member chr;
  chr.name = "d/null";
  chr.type = AE_IFCHR;
  chr.perm = 0666;
  chr.rdev_major = 1;
  chr.rdev_minor = 3;
  v.push_back(chr);
  Member x = F("d/xattr", "has xattrs");
  x.xattrs = {{"user.a", "1"}, {"security.capability", std::string("\x01\x00\x00\x02\x00\x30\x00\x00", 8)}};
  v.push_back(x);
  // Sparse: a hole, data, a hole, data up to the end (5 chunks + 10 bytes).
  Member sp = F("d/sparse", std::string(5 * kChunk + 10, '\0'));
  sp.sparse = {{100, 50}, {3 * kChunk, kChunk + 10 + kChunk}};
  for (const auto& [off, len] : sp.sparse)
    for (int64_t i = 0; i < len; ++i)
      sp.content[static_cast<size_t>(off + i)] = static_cast<char>('A' + (off + i) % 26);
  if (sparse) v.push_back(sp);
  v.push_back(F("d/dup", Pseudo(kChunk + 1, 3)));  // same content as d/cp1
  v.push_back(F(kLongName, "long"));
  v.push_back(F(".wh.gone", ""));
  v.push_back(F("d/.wh.old", ""));
  v.push_back(D("o/"));
  v.push_back(F("o/.wh..wh..opq", ""));
  v.push_back(F("o/f", "in an opaque dir"));
  return v;
}

// A tar member as libarchive reads it back.
struct Got {
  std::string name;
  unsigned type = 0;
  unsigned perm = 0;
  int64_t uid = 0, gid = 0;
  std::string uname, gname;
  int64_t mtime = 0;
  long mtime_nsec = 0;
  std::string symlink, hardlink;
  unsigned rdev_major = 0, rdev_minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::string content;
  int sparse_regions = 0;
};

std::vector<Got> ReadMembers(std::string_view blob) {
  std::vector<Got> out;
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_tar(a);
  EXPECT_EQ(archive_read_open_memory(a, blob.data(), blob.size()), ARCHIVE_OK) << archive_error_string(a);
  archive_entry* ae;
  int r;
  while ((r = archive_read_next_header(a, &ae)) == ARCHIVE_OK) {
    Got g;
    g.name = archive_entry_pathname(ae);
    g.type = archive_entry_filetype(ae);
    g.perm = archive_entry_perm(ae);
    g.uid = archive_entry_uid(ae);
    g.gid = archive_entry_gid(ae);
    g.uname = archive_entry_uname(ae) ? archive_entry_uname(ae) : "";
    g.gname = archive_entry_gname(ae) ? archive_entry_gname(ae) : "";
    g.mtime = archive_entry_mtime(ae);
    g.mtime_nsec = archive_entry_mtime_nsec(ae);
    g.symlink = archive_entry_symlink(ae) ? archive_entry_symlink(ae) : "";
    g.hardlink = archive_entry_hardlink(ae) ? archive_entry_hardlink(ae) : "";
    if (g.type == AE_IFCHR || g.type == AE_IFBLK) {
      g.rdev_major = archive_entry_rdevmajor(ae);
      g.rdev_minor = archive_entry_rdevminor(ae);
    }
    archive_entry_xattr_reset(ae);
    const char* xn;
    const void* xv;
    size_t xs;
    while (archive_entry_xattr_next(ae, &xn, &xv, &xs) == ARCHIVE_OK)
      g.xattrs.emplace_back(xn, std::string(static_cast<const char*>(xv), xs));
    std::sort(g.xattrs.begin(), g.xattrs.end());
    g.xattrs.erase(std::unique(g.xattrs.begin(), g.xattrs.end()), g.xattrs.end());
    g.sparse_regions = archive_entry_sparse_reset(ae);
    // archive_read_data gives the logical content, holes as zeros.
    char buf[8192];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0) g.content.append(buf, static_cast<size_t>(n));
    EXPECT_EQ(n, 0) << g.name << ": " << archive_error_string(a);
    out.push_back(std::move(g));
  }
  EXPECT_EQ(r, ARCHIVE_EOF) << archive_error_string(a);
  archive_read_free(a);
  return out;
}

void ExpectSameMember(const Got& got, const Got& want) {
  SCOPED_TRACE(want.name);
  EXPECT_EQ(got.name, want.name);
  EXPECT_EQ(got.type, want.type);
  EXPECT_EQ(got.perm, want.perm);
  EXPECT_EQ(got.uid, want.uid);
  EXPECT_EQ(got.gid, want.gid);
  EXPECT_EQ(got.uname, want.uname);
  EXPECT_EQ(got.gname, want.gname);
  EXPECT_EQ(got.mtime, want.mtime);
  EXPECT_EQ(got.mtime_nsec, want.mtime_nsec);
  EXPECT_EQ(got.symlink, want.symlink);
  EXPECT_EQ(got.hardlink, want.hardlink);
  EXPECT_EQ(got.rdev_major, want.rdev_major);
  EXPECT_EQ(got.rdev_minor, want.rdev_minor);
  EXPECT_EQ(got.xattrs, want.xattrs);
  EXPECT_TRUE(got.content == want.content)
      << "content differs (" << got.content.size() << " vs " << want.content.size() << " bytes)";
}

// ---- converting -------------------------------------------------------------------

struct Converted {
  std::string src_path, out_path;
  std::string src, blob;  // file bytes
  ConvertedLayer layer;
  Toc toc;
};

ConvertOptions Options() {
  ConvertOptions o;
  o.chunk_size = kChunk;
  return o;
}

// Writes `src` to dir/name, converts it to dir/name.ocix.
Converted Convert(const TempDir& dir, const std::string& name, const std::string& src,
                  const ConvertOptions& o = Options()) {
  Converted c;
  c.src_path = dir.Path(name);
  c.out_path = dir.Path(name + ".ocix");
  c.src = src;
  WriteFile(c.src_path, src);
  auto r = ConvertLayer(c.src_path, Sha256::OciDigest(src), c.out_path, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return c;
  c.layer = *r;
  c.blob = ReadFile(c.out_path);
  auto toc = ReadTocFromFile(c.out_path);
  EXPECT_TRUE(toc.ok()) << toc.status().ToString();
  if (toc.ok()) c.toc = std::move(*toc);
  return c;
}

Result<Manifest> LayerManifestOf(const std::string& path) {
  LayerBuilder b(LayerBuilder::Mode::kLayer);
  OCIX_RETURN_IF_ERROR(b.ApplyLayerFile(path, ""));
  return b.Finish(1);
}

uint64_t Chunks(uint64_t size) { return (size + kChunk - 1) / kChunk; }

// The start offsets and sizes of the zstd frames before `end`.
std::map<uint64_t, uint64_t> FramesBefore(std::string_view blob, uint64_t end) {
  std::map<uint64_t, uint64_t> frames;
  uint64_t pos = 0;
  while (pos < end) {
    size_t n = ZSTD_findFrameCompressedSize(blob.data() + pos, end - pos);
    if (ZSTD_isError(n) || n == 0) {
      ADD_FAILURE() << "no zstd frame at " << pos << ": " << ZSTD_getErrorName(n);
      break;
    }
    EXPECT_NE(LE(blob, pos, 4) & 0xFFFFFFF0u, 0x184D2A50u) << "skippable frame at " << pos;
    frames[pos] = n;
    pos += n;
  }
  EXPECT_EQ(pos, end);
  return frames;
}

// (a) every member survives with its metadata and content.
TEST(ConvertLayerTest, MembersSurviveConversion) {
  TempDir dir;
  const std::vector<Member> spec = Members();
  Converted c = Convert(dir, "l.tar", Tar(spec));
  ASSERT_FALSE(c.blob.empty());
  const std::vector<Got> src = ReadMembers(c.src);
  const std::vector<Got> out = ReadMembers(c.blob);
  // The source is what was meant to be written.
  ASSERT_EQ(src.size(), spec.size());
  for (size_t i = 0; i < spec.size(); ++i) {
    EXPECT_EQ(src[i].name, spec[i].name);
    if (spec[i].hardlink.empty()) {
      EXPECT_TRUE(src[i].content == spec[i].content) << spec[i].name;
    }
  }
  const auto sparse_src = std::find_if(src.begin(), src.end(), [](const Got& g) { return g.name == "d/sparse"; });
  ASSERT_NE(sparse_src, src.end());
  EXPECT_EQ(sparse_src->sparse_regions, 2) << "the source is really sparse";
  EXPECT_EQ(src[0].mtime_nsec, 123456789);

  ASSERT_EQ(out.size(), src.size());
  for (size_t i = 0; i < src.size(); ++i) {
    ExpectSameMember(out[i], src[i]);
    if (out[i].name == "d/sparse") {
      EXPECT_EQ(out[i].sparse_regions, 0) << "written densely";
    }
  }
}

TEST(ConvertLayerTest, CompressedSourcesGiveTheSameMembers) {
  TempDir dir;
  const std::string tar = Tar(Members());
  Converted gz = Convert(dir, "l.tar.gz", Gzip(tar));
  Converted zs = Convert(dir, "l.tar.zst", ZstdCompress(tar));
  const std::vector<Got> src = ReadMembers(tar);
  for (const Converted* c : {&gz, &zs}) {
    const std::vector<Got> out = ReadMembers(c->blob);
    ASSERT_EQ(out.size(), src.size());
    for (size_t i = 0; i < src.size(); ++i) ExpectSameMember(out[i], src[i]);
  }
}

// (b) the TOC's manifest describes the output and the source alike.
TEST(ConvertLayerTest, ManifestMatchesTocOutputAndSource) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/false)));
  auto from_out = LayerManifestOf(c.out_path);
  ASSERT_TRUE(from_out.ok()) << from_out.status().ToString();
  auto from_src = LayerManifestOf(c.src_path);
  ASSERT_TRUE(from_src.ok()) << from_src.status().ToString();
  EXPECT_TRUE(*from_out == c.toc.manifest);
  EXPECT_TRUE(*from_src == c.toc.manifest);
  EXPECT_TRUE(c.toc.manifest.layer);
  EXPECT_EQ(c.toc.manifest.version, 1u);
  EXPECT_EQ(c.layer.entries, c.toc.manifest.entries.size());
  EXPECT_EQ(c.layer.manifest_bytes, c.toc.manifest_bytes.size());

  const Manifest& m = c.toc.manifest;
  const Entry* gone = m.Find("/gone");
  ASSERT_NE(gone, nullptr);
  EXPECT_EQ(gone->type, FileType::kWhiteout);
  const Entry* old = m.Find("/d/old");
  ASSERT_NE(old, nullptr);
  EXPECT_EQ(old->type, FileType::kWhiteout);
  const Entry* o = m.Find("/o");
  ASSERT_NE(o, nullptr);
  EXPECT_EQ(o->type, FileType::kDirectory);
  EXPECT_TRUE(o->opaque);
  EXPECT_EQ(m.Find("/o/.wh..wh..opq"), nullptr);
  EXPECT_EQ(m.Find("/.wh.gone"), nullptr);
  const Entry* hard = m.Find("/d/hard");
  ASSERT_NE(hard, nullptr);
  EXPECT_EQ(hard->type, FileType::kHardlink);
  EXPECT_EQ(hard->target, "/d/big");
  const Entry* big = m.Find("/d/big");
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(big->size, 3 * kChunk + 5);
  EXPECT_EQ(big->digest, Blake3::Hash(Pseudo(3 * kChunk + 5, 4)));
  EXPECT_EQ(big->mode, 04755u);
  EXPECT_EQ(big->mtime, (Timestamp{1234567890, 987654321}));
  const Entry* x = m.Find("/d/xattr");
  ASSERT_NE(x, nullptr);
  EXPECT_EQ(x->xattrs,
            (std::vector<Xattr>{{"user.a", "1"},
                                {"security.capability", std::string("\x01\x00\x00\x02\x00\x30\x00\x00", 8)}}));
}

// The converted layer stores a sparse source file densely (holes as zeros)
// while the TOC's manifest keeps the source's hole map (docs/FORMAT.md, "OCIX
// layers"); VerifyOcixLayer checks the holes read as zeros.
TEST(ConvertLayerTest, SparseSourceIsDenseInTarAndKeepsHoleMapInToc) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/true)));
  ASSERT_FALSE(c.blob.empty());
  auto from_out = LayerManifestOf(c.out_path);
  ASSERT_TRUE(from_out.ok()) << from_out.status().ToString();
  const Entry* in_toc = c.toc.manifest.Find("/d/sparse");
  const Entry* in_tar = from_out->Find("/d/sparse");
  ASSERT_NE(in_toc, nullptr);
  ASSERT_NE(in_tar, nullptr);
  EXPECT_EQ(in_toc->digest, in_tar->digest);
  EXPECT_TRUE(in_toc->data.has_value()) << "the TOC lost the hole map";
  EXPECT_FALSE(in_tar->data.has_value()) << "the tar should store the file densely";
  Manifest toc_dense = c.toc.manifest;
  for (Entry& e : toc_dense.entries) e.data.reset();
  EXPECT_TRUE(*from_out == toc_dense);
  auto v = VerifyOcixLayer(c.out_path, c.layer.descriptor);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
}

// (c) chunk frames hold exactly the chunks, checked against the source bytes.
TEST(ConvertLayerTest, ChunkFramesHoldExactlyTheChunks) {
  TempDir dir;
  const std::vector<Member> spec = Members();
  Converted c = Convert(dir, "l.tar", Tar(spec));
  ASSERT_FALSE(c.blob.empty());
  EXPECT_EQ(c.toc.chunk_size, kChunk);
  const uint64_t toc_frame = std::stoull(c.layer.descriptor.annotations.at(std::string(kAnnotationTocOffset))) - 8;
  const std::map<uint64_t, uint64_t> frames = FramesBefore(c.blob, toc_frame);

  std::set<Digest> contents;
  std::set<uint64_t> chunk_frames;
  for (const Member& mem : spec) {
    if (mem.type != AE_IFREG || !mem.hardlink.empty() || mem.content.empty()) continue;
    SCOPED_TRACE(mem.name);
    const Digest d = Blake3::Hash(mem.content);
    contents.insert(d);
    const ContentTable* t = c.toc.Find(d);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->size, mem.content.size());
    ASSERT_EQ(t->chunks.size(), Chunks(mem.content.size()));
    for (size_t i = 0; i < t->chunks.size(); ++i) {
      const ChunkLocation& loc = t->chunks[i];
      const std::string want = mem.content.substr(i * kChunk, kChunk);
      auto f = frames.find(loc.blob_offset);
      ASSERT_NE(f, frames.end()) << "chunk " << i << " does not start a frame";
      EXPECT_EQ(f->second, loc.frame_size) << "chunk " << i << " is not exactly one frame";
      const std::string frame = c.blob.substr(loc.blob_offset, loc.frame_size);
      EXPECT_EQ(ZSTD_getFrameContentSize(frame.data(), frame.size()), want.size());
      std::string plain(want.size(), '\0');
      size_t n = ZSTD_decompress(plain.data(), plain.size(), frame.data(), frame.size());
      ASSERT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
      EXPECT_EQ(n, want.size());
      EXPECT_TRUE(plain == want) << "chunk " << i;
      EXPECT_EQ(loc.digest, Blake3::Hash(want)) << "chunk " << i;
      chunk_frames.insert(loc.blob_offset);
    }
  }
  // One table per distinct content (d/dup shares d/cp1's), nothing else.
  EXPECT_EQ(c.toc.contents.size(), contents.size());
  EXPECT_EQ(c.layer.files, contents.size());
  // 4095, 4096, 4097, 3*4096+5, sparse 5*4096+10 and the small ones: frames
  // for the shared content only once in the table, but the tar has both.
  const size_t chunk_count = 1 + 1 + 1 + 2 + 4 + 1 + 6 + 1 + 1;  // one cm1 c cp1 big xattr sparse long of
  EXPECT_EQ(chunk_frames.size(), chunk_count);
  EXPECT_GT(frames.size(), chunk_count) << "headers live in frames of their own";
}

TEST(ConvertLayerTest, DefaultChunkSizeKeepsSmallFilesInOneChunk) {
  TempDir dir;
  ConvertOptions o;  // 1 MiB chunks
  const std::string content = Pseudo(3 * kChunk + 5, 9);
  Converted c = Convert(dir, "l.tar", Tar({F("f", content)}), o);
  EXPECT_EQ(c.toc.chunk_size, kDefaultChunkSize);
  const ContentTable* t = c.toc.Find(Blake3::Hash(content));
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->chunks.size(), 1u);
  EXPECT_EQ(t->chunks[0].digest, Blake3::Hash(content));
}

// (d) descriptor, annotations, footer and diff_id.
TEST(ConvertLayerTest, DescriptorAnnotationsFooterAndDiffId) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members()));
  ASSERT_GT(c.blob.size(), 64u);
  const Descriptor& d = c.layer.descriptor;
  EXPECT_EQ(d.media_type, "application/vnd.oci.image.layer.v1.tar+zstd");
  EXPECT_EQ(d.size, static_cast<int64_t>(c.blob.size()));
  Sha256 h;
  h.Update(c.blob);
  EXPECT_EQ(d.digest, h.FinishOciDigest());

  // The footer, parsed by hand.
  const std::string_view footer = std::string_view(c.blob).substr(c.blob.size() - 64);
  EXPECT_EQ(LE(footer, 0, 4), 0x184D2A5Fu);
  EXPECT_EQ(LE(footer, 4, 4), 56u);
  EXPECT_EQ(footer.substr(8, 8), "OCIXTOC1");
  const uint64_t toc_offset = LE(footer, 16, 8), toc_size = LE(footer, 24, 8);
  EXPECT_EQ(toc_offset + toc_size + 64, c.blob.size()) << "TOC then footer end the blob";
  // The TOC frame's header just before its payload.
  ASSERT_GE(toc_offset, 8u);
  EXPECT_EQ(LE(c.blob, toc_offset - 8, 4), 0x184D2A5Eu);
  EXPECT_EQ(LE(c.blob, toc_offset - 4, 4), toc_size);
  const std::string payload = c.blob.substr(toc_offset, toc_size);
  const std::string toc_digest = Sha256::OciDigest(payload);
  EXPECT_EQ(HexEncode(Bytes(footer.substr(32, 32))), toc_digest.substr(7));

  ASSERT_EQ(d.annotations.size(), 4u);
  EXPECT_EQ(d.annotations.at("containerd.io/snapshot/ocix/toc.digest"), toc_digest);
  EXPECT_EQ(d.annotations.at("containerd.io/snapshot/ocix/toc.offset"), std::to_string(toc_offset));
  EXPECT_EQ(d.annotations.at("containerd.io/snapshot/ocix/toc.size"), std::to_string(toc_size));
  auto toc = DecodeToc(Bytes(payload), toc_offset - 8);
  ASSERT_TRUE(toc.ok()) << toc.status().ToString();
  EXPECT_EQ(d.annotations.at("containerd.io/snapshot/ocix/manifest.digest"), Sha256::OciDigest(toc->manifest_bytes));
  EXPECT_EQ(c.layer.toc_bytes, toc_size);

  // diff_id: sha256 of the tar any zstd decoder sees, which is a tar
  // ending in the end-of-archive marker.
  const std::string tar = ZstdDecompressAll(c.blob);
  EXPECT_EQ(c.layer.diff_id, Sha256::OciDigest(tar));
  EXPECT_EQ(c.layer.tar_bytes, tar.size());
  ASSERT_GE(tar.size(), 1024u);
  EXPECT_EQ(tar.size() % 512, 0u);
  EXPECT_EQ(tar.substr(tar.size() - 1024), std::string(1024, '\0'));
  // Decoding the zstd stream up to the TOC gives the same tar.
  EXPECT_TRUE(ZstdDecompressAll(std::string_view(c.blob).substr(0, toc_offset - 8)) == tar);
}

// (e) determinism.
TEST(ConvertLayerTest, DeterministicAcrossRunsAndSourceCompression) {
  TempDir dir;
  const std::string tar = Tar(Members());
  Converted a = Convert(dir, "a.tar", tar);
  Converted b = Convert(dir, "b.tar", tar);
  Converted gz = Convert(dir, "c.tar.gz", Gzip(tar));
  Converted zs = Convert(dir, "d.tar.zst", ZstdCompress(tar));
  ASSERT_FALSE(a.blob.empty());
  EXPECT_TRUE(a.blob == b.blob);
  EXPECT_TRUE(a.blob == gz.blob);
  EXPECT_TRUE(a.blob == zs.blob);
  EXPECT_EQ(a.layer.descriptor.digest, gz.layer.descriptor.digest);
  EXPECT_EQ(a.layer.descriptor.annotations, gz.layer.descriptor.annotations);
  EXPECT_EQ(a.layer.diff_id, gz.layer.diff_id);
}

// (f) prefetch.
TEST(ConvertLayerTest, PrefetchFilesComeFirstInLayerOrder) {
  TempDir dir;
  const std::vector<Member> spec = Members(/*sparse=*/false);
  ConvertOptions o = Options();
  // Asked in another order; a directory, a missing path, a hardlink and a
  // whiteout are ignored.
  o.prefetch = {"/d/big", "/d", "/missing", "/d/hard", "/o/f", "/d/cp1", "/gone", "/d/big"};
  Converted c = Convert(dir, "l.tar", Tar(spec), o);
  ASSERT_FALSE(c.blob.empty());
  EXPECT_EQ(c.toc.prefetch, (std::vector<std::string>{"/d/cp1", "/d/big", "/o/f"}));

  const std::vector<Got> src = ReadMembers(c.src);
  const std::vector<Got> out = ReadMembers(c.blob);
  ASSERT_GE(out.size(), 3u);
  std::map<std::string, const Got*> by_name;
  for (const Got& g : src) by_name[g.name] = &g;
  ExpectSameMember(out[0], *by_name["d/cp1"]);
  ExpectSameMember(out[1], *by_name["d/big"]);
  ExpectSameMember(out[2], *by_name["o/f"]);
  // Every source member is in the output (exact order: below).
  std::set<std::string> names;
  for (const Got& g : out) names.insert(g.name);
  for (const Got& g : src) EXPECT_TRUE(names.count(g.name)) << g.name;

  // Their chunk frames are the first frames with file content.
  uint64_t last_prefetched = 0, first_other = UINT64_MAX;
  for (const ContentTable& t : c.toc.contents) {
    const bool pre = t.digest == Blake3::Hash(Pseudo(kChunk + 1, 3)) ||
                     t.digest == Blake3::Hash(Pseudo(3 * kChunk + 5, 4)) ||
                     t.digest == Blake3::Hash(std::string_view("in an opaque dir"));
    for (const ChunkLocation& l : t.chunks) {
      if (pre)
        last_prefetched = std::max(last_prefetched, l.blob_offset);
      else
        first_other = std::min(first_other, l.blob_offset);
    }
  }
  EXPECT_LT(last_prefetched, first_other);

  // Same tree as without prefetching, and it verifies.
  auto from_src = LayerManifestOf(c.src_path);
  ASSERT_TRUE(from_src.ok());
  EXPECT_TRUE(*from_src == c.toc.manifest);
  auto from_out = LayerManifestOf(c.out_path);
  ASSERT_TRUE(from_out.ok()) << from_out.status().ToString();
  EXPECT_TRUE(*from_out == c.toc.manifest);
  auto v = VerifyOcixLayer(c.out_path, c.layer.descriptor);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
}

// Prefetched members go first and are not written again after.
TEST(ConvertLayerTest, RegressionPrefetchedMembersAreWrittenTwice) {
  TempDir dir;
  ConvertOptions o = Options();
  o.prefetch = {"/d/big", "/o/f", "/d/cp1"};
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/false)), o);
  ASSERT_FALSE(c.blob.empty());
  const std::vector<Got> src = ReadMembers(c.src);
  const std::vector<Got> out = ReadMembers(c.blob);
  std::vector<const Got*> want;
  const std::set<std::string> first = {"d/cp1", "d/big", "o/f"};
  for (const Got& g : src)
    if (first.count(g.name)) want.push_back(&g);
  for (const Got& g : src)
    if (!first.count(g.name)) want.push_back(&g);
  std::string got_names, want_names;
  for (const Got& g : out) got_names += g.name + " ";
  for (const Got* g : want) want_names += g->name + " ";
  EXPECT_EQ(got_names, want_names);
  ASSERT_EQ(out.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) ExpectSameMember(out[i], *want[i]);
}

TEST(ConvertLayerTest, PrefetchOfNothingPresentIsNoPrefetch) {
  TempDir dir;
  ConvertOptions o = Options();
  o.prefetch = {"/missing", "/d"};
  Converted c = Convert(dir, "l.tar", Tar(Members()), o);
  EXPECT_TRUE(c.toc.prefetch.empty());
  Converted plain = Convert(dir, "m.tar", Tar(Members()));
  EXPECT_TRUE(c.blob == plain.blob);
}

// Regression test for a fixed bug: a layer may name one path twice and the
// later member wins (LayerBuilder's rule, and what unpackers do). The
// prefetch pass took only the first member of such a path and the second
// pass skipped them all, so the converted layer kept the overwritten version.
// Now every member of a prefetched path goes in the first pass, in order.
TEST(ConvertLayerTest, RegressionPrefetchOfRepeatedPathKeepsFirstVersion) {
  TempDir dir;
  const std::vector<Member> spec = {D("d/"), F("d/f", "old version"), F("d/g", "other"), F("d/f", "new version")};
  ConvertOptions o = Options();
  o.prefetch = {"/d/f"};
  Converted c = Convert(dir, "l.tar", Tar(spec), o);
  auto from_src = LayerManifestOf(c.src_path);
  ASSERT_TRUE(from_src.ok());
  const Entry* want = from_src->Find("/d/f");
  ASSERT_NE(want, nullptr);
  ASSERT_EQ(want->digest, Blake3::Hash(std::string_view("new version")));
  const Entry* got = c.toc.manifest.Find("/d/f");
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->digest, want->digest) << "converted layer has the first (overwritten) /d/f";
  // What a runtime unpacks: the last member named d/f.
  std::string last;
  for (const Got& g : ReadMembers(c.blob))
    if (g.name == "d/f") last = g.content;
  EXPECT_EQ(last, "new version");
}

// (g) verification.
TEST(VerifyOcixLayerTest, PassesOnGoodLayer) {
  TempDir dir;
  const std::vector<Member> spec = Members(/*sparse=*/false);
  Converted c = Convert(dir, "l.tar", Tar(spec));
  auto v = VerifyOcixLayer(c.out_path, c.layer.descriptor);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->files, c.toc.contents.size());
  EXPECT_EQ(v->entries, c.toc.manifest.entries.size());
  uint64_t chunks = 0, bytes = 0;
  for (const ContentTable& t : c.toc.contents) {
    chunks += t.chunks.size();
    bytes += t.size;
  }
  EXPECT_EQ(v->chunks, chunks);
  EXPECT_EQ(v->content_bytes, bytes);
  // Without annotations the footer is used.
  Descriptor bare = c.layer.descriptor;
  bare.annotations.clear();
  auto v2 = VerifyOcixLayer(c.out_path, bare);
  EXPECT_TRUE(v2.ok()) << v2.status().ToString();
}

void Flip(const std::string& path, uint64_t offset) {
  std::string b = ReadFile(path);
  ASSERT_LT(offset, b.size());
  b[offset] = static_cast<char>(b[offset] ^ 0x5a);
  WriteFile(path, b);
}

void ExpectVerifyFails(const Converted& c, const Descriptor& d, const std::string& needle) {
  auto v = VerifyOcixLayer(c.out_path, d);
  ASSERT_FALSE(v.ok()) << "verified; expected \"" << needle << "\"";
  EXPECT_EQ(v.status().code(), Code::kCorruption) << v.status().ToString();
  EXPECT_NE(v.status().message().find(needle), std::string::npos) << v.status().ToString();
}

TEST(VerifyOcixLayerTest, FailsOnFlippedChunkByte) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/false)));
  const ContentTable* t = c.toc.Find(Blake3::Hash(Pseudo(3 * kChunk + 5, 4)));
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->chunks.size(), 4u);
  const ChunkLocation& l = t->chunks[1];
  Flip(c.out_path, l.blob_offset + l.frame_size / 2);
  ExpectVerifyFails(c, c.layer.descriptor, "\"/d/big\"");
}

TEST(VerifyOcixLayerTest, FailsOnFlippedLastChunkByte) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/false)));
  const ContentTable* t = c.toc.Find(Blake3::Hash(Pseudo(kChunk - 1, 1)));
  ASSERT_NE(t, nullptr);
  const ChunkLocation& l = t->chunks.back();
  Flip(c.out_path, l.blob_offset + l.frame_size - 1);
  ExpectVerifyFails(c, c.layer.descriptor, "\"/d/cm1\"");
}

TEST(VerifyOcixLayerTest, FailsOnFlippedTocByte) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/false)));
  const uint64_t off = std::stoull(c.layer.descriptor.annotations.at(std::string(kAnnotationTocOffset)));
  Flip(c.out_path, off + 5);
  ExpectVerifyFails(c, c.layer.descriptor, "TOC");
}

TEST(VerifyOcixLayerTest, FailsOnFlippedHeaderByte) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/false)));
  // The first frame holds the first headers (no file content starts at 0).
  for (const ContentTable& t : c.toc.contents)
    for (const ChunkLocation& l : t.chunks) ASSERT_NE(l.blob_offset, 0u);
  const size_t first = ZSTD_findFrameCompressedSize(c.blob.data(), c.blob.size());
  ASSERT_FALSE(ZSTD_isError(first));
  Flip(c.out_path, first / 2);
  ExpectVerifyFails(c, c.layer.descriptor, "tar stream");
}

TEST(VerifyOcixLayerTest, FailsOnTruncatedBlob) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/false)));
  fs::resize_file(c.out_path, c.blob.size() - 10);
  ExpectVerifyFails(c, c.layer.descriptor, "bytes");  // size differs from the descriptor
  Descriptor d = c.layer.descriptor;
  d.size -= 10;
  EXPECT_FALSE(VerifyOcixLayer(c.out_path, d).ok());
  // Cut before the TOC: no footer at all.
  const uint64_t off = std::stoull(c.layer.descriptor.annotations.at(std::string(kAnnotationTocOffset)));
  fs::resize_file(c.out_path, off - 8);
  d.size = static_cast<int64_t>(off - 8);
  EXPECT_FALSE(VerifyOcixLayer(c.out_path, d).ok());
  fs::resize_file(c.out_path, 10);
  d.size = 10;
  EXPECT_FALSE(VerifyOcixLayer(c.out_path, d).ok());
}

// VerifyOcixLayer reports every failure as Corruption (convert.h). A blob cut
// before its TOC, whose descriptor (size, OCIX annotations) says it is an
// OCIX layer, comes back as NotFound from DecodeFooter ("not an OCIX layer").
TEST(VerifyOcixLayerTest, RegressionBlobWithoutFooterIsNotCorruption) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/false)));
  const uint64_t off = std::stoull(c.layer.descriptor.annotations.at(std::string(kAnnotationTocOffset)));
  fs::resize_file(c.out_path, off - 8);
  Descriptor d = c.layer.descriptor;
  d.size = static_cast<int64_t>(off - 8);
  auto v = VerifyOcixLayer(c.out_path, d);
  ASSERT_FALSE(v.ok());
  EXPECT_EQ(v.status().code(), Code::kCorruption) << v.status().ToString();
}

TEST(VerifyOcixLayerTest, FailsOnWrongDescriptor) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar(Members(/*sparse=*/false)));
  Descriptor d = c.layer.descriptor;
  d.digest = Sha256::OciDigest("something else");
  ExpectVerifyFails(c, d, "tar stream");  // the blob digest is checked as the tar streams
  d = c.layer.descriptor;
  d.annotations[std::string(kAnnotationTocOffset)] =
      std::to_string(std::stoull(d.annotations.at(std::string(kAnnotationTocOffset))) + 1);
  ExpectVerifyFails(c, d, "footer and annotations");
  d = c.layer.descriptor;
  d.annotations[std::string(kAnnotationManifestDigest)] = Sha256::OciDigest("x");
  ExpectVerifyFails(c, d, "manifest digest");
  d = c.layer.descriptor;
  d.annotations.erase(std::string(kAnnotationTocSize));
  EXPECT_FALSE(VerifyOcixLayer(c.out_path, d).ok());
}

TEST(VerifyOcixLayerTest, RejectsPlainTarLayer) {
  TempDir dir;
  const std::string tar = Tar(Members(/*sparse=*/false));
  WriteFile(dir.Path("l.tar"), tar);
  Descriptor d;
  d.media_type = "application/vnd.oci.image.layer.v1.tar";
  d.digest = Sha256::OciDigest(tar);
  d.size = static_cast<int64_t>(tar.size());
  EXPECT_FALSE(VerifyOcixLayer(dir.Path("l.tar"), d).ok());
}

// (h) errors in the source. ConvertLayer runs in a child process here: it
// crashed on every error path (the LayerWriter's hashers and buffers are
// destroyed before its tar writer, whose archive_write_free() then flushes the
// end-of-archive marker through LayerWriter::Write into them).

// True when the conversion fails with `code` and a message containing
// `needle`; says why not on stderr.
bool ConvertFailsWith(const std::string& src, std::string_view digest, const std::string& out, const ConvertOptions& o,
                      Code code, const std::string& needle) {
  auto r = ConvertLayer(src, digest, out, o);
  if (r.ok()) {
    std::fprintf(stderr, "conversion of %s succeeded\n", src.c_str());
    return false;
  }
  if (r.status().code() != code || r.status().message().find(needle) == std::string::npos) {
    std::fprintf(stderr, "unexpected error: %s\n", r.status().ToString().c_str());
    return false;
  }
  return true;
}

TEST(ConvertLayerDeathTest, RegressionSourceDigestMismatchFailsWithoutCrash) {
  TempDir dir;
  const std::string tar = Tar(Members(/*sparse=*/false));
  WriteFile(dir.Path("l.tar"), tar);
  const std::string wrong = Sha256::OciDigest("not this");
  EXPECT_EXIT(std::_Exit(ConvertFailsWith(dir.Path("l.tar"), wrong, dir.Path("out"), Options(), Code::kCorruption,
                                          "does not match")
                             ? 0
                             : 1),
              ::testing::ExitedWithCode(0), "");
  // With prefetch (two passes over the source) as well.
  ConvertOptions o = Options();
  o.prefetch = {"/d/big"};
  EXPECT_EXIT(
      std::_Exit(
          ConvertFailsWith(dir.Path("l.tar"), wrong, dir.Path("out"), o, Code::kCorruption, "does not match") ? 0 : 1),
      ::testing::ExitedWithCode(0), "");
  // The right digest converts.
  EXPECT_TRUE(ConvertLayer(dir.Path("l.tar"), Sha256::OciDigest(tar), dir.Path("out"), Options()).ok());
}

TEST(ConvertLayerDeathTest, RegressionMissingOrBadSourceFailsWithoutCrash) {
  TempDir dir;
  EXPECT_EXIT(
      std::_Exit(ConvertFailsWith(dir.Path("nope"), "", dir.Path("out"), Options(), Code::kNotFound, "nope") ? 0 : 1),
      ::testing::ExitedWithCode(0), "");
  WriteFile(dir.Path("junk"), std::string(3000, 'j'));
  EXPECT_EXIT(
      std::_Exit(ConvertFailsWith(dir.Path("junk"), "", dir.Path("out"), Options(), Code::kCorruption, "") ? 0 : 1),
      ::testing::ExitedWithCode(0), "");
  // A tar with a ".." member.
  WriteFile(dir.Path("dotdot"), Tar({F("../x", "escape")}));
  EXPECT_EXIT(
      std::_Exit(ConvertFailsWith(dir.Path("dotdot"), "", dir.Path("out"), Options(), Code::kCorruption, "..") ? 0 : 1),
      ::testing::ExitedWithCode(0), "");
}

TEST(ConvertLayerTest, LayerWithoutContent) {
  TempDir dir;
  Converted c = Convert(dir, "l.tar", Tar({D("a/"), F("a/.wh.b", ""), F("a/e", "")}));
  EXPECT_TRUE(c.toc.contents.empty());
  EXPECT_EQ(c.layer.files, 0u);
  ASSERT_NE(c.toc.manifest.Find("/a/b"), nullptr);
  EXPECT_EQ(c.toc.manifest.Find("/a/b")->type, FileType::kWhiteout);
  auto v = VerifyOcixLayer(c.out_path, c.layer.descriptor);
  EXPECT_TRUE(v.ok()) << v.status().ToString();
}

// ---- ConvertImage -----------------------------------------------------------------

constexpr char kIndexType[] = "application/vnd.oci.image.index.v1+json";
constexpr char kManifestType[] = "application/vnd.oci.image.manifest.v1+json";
constexpr char kConfigType[] = "application/vnd.oci.image.config.v1+json";
constexpr char kRefName[] = "org.opencontainers.image.ref.name";

json DescJson(const std::string& media_type, const std::string& body) {
  return {{"mediaType", media_type}, {"digest", Sha256::OciDigest(body)}, {"size", body.size()}};
}

// A hand-made OCI layout.
class Layout {
 public:
  explicit Layout(std::string dir) : dir_(std::move(dir)) {
    fs::create_directories(dir_ + "/blobs/sha256");
    WriteFile(dir_ + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  }
  const std::string& dir() const { return dir_; }

  json Blob(const std::string& media_type, const std::string& body) {
    WriteFile(BlobPath(Sha256::OciDigest(body)), body);
    return DescJson(media_type, body);
  }
  std::string BlobPath(const std::string& digest) const { return dir_ + "/blobs/sha256/" + digest.substr(7); }
  std::string ReadBlob(const std::string& digest) const { return ReadFile(BlobPath(digest)); }

  // An image manifest of the given layers (media type, bytes, diff_id).
  json Image(const std::vector<std::pair<std::string, std::string>>& layers, const std::string& arch = "amd64") {
    json config = Config(arch);
    json layer_descs = json::array();
    for (const auto& [mt, body] : layers) {
      layer_descs.push_back(Blob(mt, body));
      std::string plain = mt.find("gzip") != std::string::npos ? Gunzip(body) : body;
      config["rootfs"]["diff_ids"].push_back(Sha256::OciDigest(plain));
    }
    json m = {{"schemaVersion", 2},
              {"mediaType", kManifestType},
              {"config", Blob(kConfigType, config.dump())},
              {"layers", layer_descs},
              {"annotations", {{"org.example.m", "kept"}}}};
    return Blob(kManifestType, m.dump());
  }

  static json Config(const std::string& arch) {
    return {{"architecture", arch},
            {"os", "linux"},
            {"created", "2020-01-01T00:00:00Z"},
            {"config", {{"Env", {"PATH=/bin", "A=1"}}, {"Cmd", {"/bin/sh"}}, {"Labels", {{"l", "v"}}}}},
            {"history", {{{"created_by", "step 1"}}, {{"created_by", "step 2"}}}},
            {"rootfs", {{"type", "layers"}, {"diff_ids", json::array()}}}};
  }

  void Tag(json desc, const std::string& tag) {
    desc["annotations"][kRefName] = tag;
    json index = {{"schemaVersion", 2}, {"manifests", json::array({desc})}};
    if (fs::exists(dir_ + "/index.json")) {
      index = json::parse(ReadFile(dir_ + "/index.json"));
      index["manifests"].push_back(desc);
    }
    WriteFile(dir_ + "/index.json", index.dump());
  }

  // The descriptor index.json gives the tag.
  json Tagged(const std::string& tag) const {
    json index = json::parse(ReadFile(dir_ + "/index.json"));
    json found;
    int n = 0;
    for (const json& m : index["manifests"])
      if (m.contains("annotations") && m["annotations"].value(kRefName, "") == tag) {
        found = m;
        ++n;
      }
    EXPECT_EQ(n, 1) << "tag " << tag;
    return found;
  }

  // A JSON blob, digest-checked here.
  json JsonBlob(const json& desc) const {
    const std::string body = ReadBlob(desc["digest"]);
    EXPECT_EQ(Sha256::OciDigest(body), desc["digest"].get<std::string>());
    EXPECT_EQ(body.size(), desc["size"].get<size_t>());
    return json::parse(body);
  }

  static std::string Gunzip(const std::string& gz) {
    archive* a = archive_read_new();
    archive_read_support_filter_all(a);
    archive_read_support_format_raw(a);
    EXPECT_EQ(archive_read_open_memory(a, gz.data(), gz.size()), ARCHIVE_OK);
    archive_entry* e;
    std::string out;
    if (archive_read_next_header(a, &e) == ARCHIVE_OK) {
      char buf[8192];
      la_ssize_t n;
      while ((n = archive_read_data(a, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
    }
    archive_read_free(a);
    return out;
  }

 private:
  std::string dir_;
};

struct ImageDirs {
  TempDir root;
  std::string src = root.Path("src"), dst = root.Path("dst"), tmp = root.Path("tmp");
  ImageDirs() { fs::create_directories(tmp); }
};

ConvertImageOptions ImageOptions(const ImageDirs& dirs) {
  ConvertImageOptions o;
  o.layer.chunk_size = kChunk;
  o.tmp_dir = dirs.tmp;
  return o;
}

Result<ConvertImageResult> ConvertLayouts(const std::string& src, const std::string& src_tag, const std::string& dst,
                                          const std::string& dst_tag, const ConvertImageOptions& o) {
  OCIX_ASSIGN_OR_RETURN(auto source, OpenLayoutSource({src, src_tag}));
  OCIX_ASSIGN_OR_RETURN(auto sink, OpenLayoutSink({dst, dst_tag}));
  return ConvertImage(*source, *sink, o);
}

Status VerifyLayout(const std::string& dir, const std::string& tag, const std::string& tmp, int* layers = nullptr) {
  OCIX_ASSIGN_OR_RETURN(auto source, OpenLayoutSource({dir, tag}));
  return VerifyImage(*source, tmp, [&](const Descriptor&, const VerifyReport&) {
    if (layers) ++*layers;
  });
}

json WithoutRootfs(json config) {
  config.erase("rootfs");
  return config;
}

// Checks one converted image manifest against its source, by hand.
void ExpectConvertedManifest(const Layout& src, const json& src_desc, const Layout& dst, const json& dst_desc) {
  const json sm = src.JsonBlob(src_desc);
  const json dm = dst.JsonBlob(dst_desc);
  EXPECT_EQ(dm["mediaType"], kManifestType);
  EXPECT_EQ(dm["annotations"], sm["annotations"]);
  ASSERT_EQ(dm["layers"].size(), sm["layers"].size());
  const json dcfg = dst.JsonBlob(dm["config"]);
  const json scfg = src.JsonBlob(sm["config"]);
  EXPECT_EQ(WithoutRootfs(dcfg), WithoutRootfs(scfg)) << "other config fields are kept";
  EXPECT_EQ(dcfg["rootfs"]["type"], "layers");
  ASSERT_EQ(dcfg["rootfs"]["diff_ids"].size(), dm["layers"].size());
  for (size_t i = 0; i < dm["layers"].size(); ++i) {
    SCOPED_TRACE("layer " + std::to_string(i));
    const json& l = dm["layers"][i];
    EXPECT_EQ(l["mediaType"], "application/vnd.oci.image.layer.v1.tar+zstd");
    for (const char* k : {"containerd.io/snapshot/ocix/toc.digest", "containerd.io/snapshot/ocix/toc.offset",
                          "containerd.io/snapshot/ocix/toc.size", "containerd.io/snapshot/ocix/manifest.digest"})
      EXPECT_TRUE(l.contains("annotations") && l["annotations"].contains(k)) << k;
    const std::string blob = dst.ReadBlob(l["digest"]);
    EXPECT_EQ(Sha256::OciDigest(blob), l["digest"].get<std::string>());
    EXPECT_EQ(blob.size(), l["size"].get<size_t>());
    const std::string tar = ZstdDecompressAll(blob);
    EXPECT_EQ(dcfg["rootfs"]["diff_ids"][i].get<std::string>(), Sha256::OciDigest(tar));
    // Same members as the source layer.
    const std::string src_blob = src.ReadBlob(sm["layers"][i]["digest"]);
    const std::vector<Got> want = ReadMembers(src_blob);
    const std::vector<Got> got = ReadMembers(blob);
    ASSERT_EQ(got.size(), want.size());
    for (size_t j = 0; j < want.size(); ++j) ExpectSameMember(got[j], want[j]);
  }
}

const std::string kLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip";
const std::string kLayerTar = "application/vnd.oci.image.layer.v1.tar";

TEST(ConvertImageTest, LayoutToLayout) {
  ImageDirs dirs;
  Layout src(dirs.src);
  const std::string l1 = Gzip(Tar(Members(/*sparse=*/false)));
  const std::string l2 = Tar({D("d/"), F("d/.wh.big", ""), F("d/new", Pseudo(2 * kChunk, 11))});
  src.Tag(src.Image({{kLayerGzip, l1}, {kLayerTar, l2}}), "v1");
  const std::string src_index = ReadFile(dirs.src + "/index.json");

  std::vector<std::string> done;
  auto r = ConvertLayouts(dirs.src, "v1", dirs.dst, "ocix", ImageOptions(dirs));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->layers.size(), 2u);
  EXPECT_EQ(r->root.media_type, kManifestType);

  Layout dst(dirs.dst);
  const json tagged = dst.Tagged("ocix");
  EXPECT_EQ(tagged["digest"].get<std::string>(), r->root.digest);
  EXPECT_EQ(tagged["mediaType"], kManifestType);
  ExpectConvertedManifest(src, src.Tagged("v1"), dst, tagged);
  const json dm = dst.JsonBlob(tagged);
  const json dcfg = dst.JsonBlob(dm["config"]);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(dm["layers"][i]["digest"].get<std::string>(), r->layers[i].descriptor.digest);
    EXPECT_EQ(dm["layers"][i]["size"].get<int64_t>(), r->layers[i].descriptor.size);
    const auto annotations = dm["layers"][i]["annotations"].get<std::map<std::string, std::string>>();
    EXPECT_EQ(annotations, r->layers[i].descriptor.annotations);
    EXPECT_EQ(dcfg["rootfs"]["diff_ids"][i].get<std::string>(), r->layers[i].diff_id);
  }
  // The source is untouched.
  EXPECT_EQ(ReadFile(dirs.src + "/index.json"), src_index);
  EXPECT_EQ(src.ReadBlob(Sha256::OciDigest(l1)), l1);
  EXPECT_EQ(src.ReadBlob(Sha256::OciDigest(l2)), l2);
  // Nothing is left in the temporary directory.
  EXPECT_TRUE(fs::is_empty(dirs.tmp));

  int layers = 0;
  Status v = VerifyLayout(dirs.dst, "ocix", dirs.tmp, &layers);
  EXPECT_TRUE(v.ok()) << v.ToString();
  EXPECT_EQ(layers, 2);
  // The unconverted source does not verify as OCIX.
  EXPECT_FALSE(VerifyLayout(dirs.src, "v1", dirs.tmp).ok());
}

TEST(ConvertImageTest, AlreadyConvertedLayersAreKept) {
  ImageDirs dirs;
  Layout src(dirs.src);
  src.Tag(src.Image({{kLayerTar, Tar(Members(/*sparse=*/false))}}), "v1");
  ASSERT_TRUE(ConvertLayouts(dirs.src, "v1", dirs.dst, "ocix", ImageOptions(dirs)).ok());
  Layout dst(dirs.dst);
  const json first = dst.JsonBlob(dst.Tagged("ocix"));

  const std::string again_dir = dirs.root.Path("again");
  auto r = ConvertLayouts(dirs.dst, "ocix", again_dir, "twice", ImageOptions(dirs));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->layers.empty()) << "nothing was converted";
  Layout again(again_dir);
  const json second = again.JsonBlob(again.Tagged("twice"));
  EXPECT_EQ(second["layers"], first["layers"]);
  EXPECT_EQ(again.JsonBlob(second["config"]), dst.JsonBlob(first["config"]));
  Status v = VerifyLayout(again_dir, "twice", dirs.tmp);
  EXPECT_TRUE(v.ok()) << v.ToString();
  // The first conversion's layout still has its blobs.
  v = VerifyLayout(dirs.dst, "ocix", dirs.tmp);
  EXPECT_TRUE(v.ok()) << v.ToString();
  EXPECT_TRUE(fs::is_empty(dirs.tmp));
}

TEST(ConvertImageTest, AlreadyConvertedInPlace) {
  ImageDirs dirs;
  Layout src(dirs.src);
  src.Tag(src.Image({{kLayerTar, Tar(Members(/*sparse=*/false))}}), "v1");
  ASSERT_TRUE(ConvertLayouts(dirs.src, "v1", dirs.dst, "ocix", ImageOptions(dirs)).ok());
  auto r = ConvertLayouts(dirs.dst, "ocix", dirs.dst, "again", ImageOptions(dirs));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  Status v = VerifyLayout(dirs.dst, "ocix", dirs.tmp);
  EXPECT_TRUE(v.ok()) << v.ToString();
  v = VerifyLayout(dirs.dst, "again", dirs.tmp);
  EXPECT_TRUE(v.ok()) << v.ToString();
}

// Layouts inside the temporary directory: their blobs are not temporary.
TEST(ConvertImageTest, LayoutBlobsUnderTmpDirSurvive) {
  ImageDirs dirs;
  Layout src(dirs.src);
  const std::string layer = Tar(Members(/*sparse=*/false));
  src.Tag(src.Image({{kLayerTar, layer}}), "v1");
  ConvertImageOptions o = ImageOptions(dirs);
  o.tmp_dir = dirs.root.dir();  // a prefix of both layouts' paths
  auto r = ConvertLayouts(dirs.src, "v1", dirs.dst, "ocix", o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(fs::exists(src.BlobPath(Sha256::OciDigest(layer)))) << "source layer blob deleted";
  Status v = VerifyLayout(dirs.dst, "ocix", dirs.root.dir());
  EXPECT_TRUE(v.ok()) << v.ToString();
  EXPECT_TRUE(fs::exists(Layout(dirs.dst).BlobPath(r->layers.at(0).descriptor.digest))) << "OCIX blob deleted";
  v = VerifyLayout(dirs.dst, "ocix", dirs.root.dir());
  EXPECT_TRUE(v.ok()) << v.ToString();
}

TEST(ConvertImageTest, IndexWithTwoPlatforms) {
  ImageDirs dirs;
  Layout src(dirs.src);
  json amd = src.Image({{kLayerTar, Tar({F("amd", "amd64 file")})}}, "amd64");
  json arm = src.Image({{kLayerGzip, Gzip(Tar({F("arm", Pseudo(kChunk + 3, 21))}))}}, "arm64");
  amd["platform"] = {{"os", "linux"}, {"architecture", "amd64"}};
  arm["platform"] = {{"os", "linux"}, {"architecture", "arm64"}, {"variant", "v8"}};
  json index = {{"schemaVersion", 2},
                {"mediaType", kIndexType},
                {"manifests", {amd, arm}},
                {"annotations", {{"org.example.i", "kept"}}}};
  src.Tag(src.Blob(kIndexType, index.dump()), "multi");

  // All platforms.
  auto r = ConvertLayouts(dirs.src, "multi", dirs.dst, "all", ImageOptions(dirs));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->layers.size(), 2u);
  EXPECT_EQ(r->root.media_type, kIndexType);
  Layout dst(dirs.dst);
  const json tagged = dst.Tagged("all");
  EXPECT_EQ(tagged["mediaType"], kIndexType);
  const json di = dst.JsonBlob(tagged);
  EXPECT_EQ(di["annotations"], index["annotations"]);
  ASSERT_EQ(di["manifests"].size(), 2u);
  EXPECT_EQ(di["manifests"][0]["platform"], amd["platform"]);
  EXPECT_EQ(di["manifests"][1]["platform"], arm["platform"]);
  ExpectConvertedManifest(src, amd, dst, di["manifests"][0]);
  ExpectConvertedManifest(src, arm, dst, di["manifests"][1]);
  int layers = 0;
  Status v = VerifyLayout(dirs.dst, "all", dirs.tmp, &layers);
  EXPECT_TRUE(v.ok()) << v.ToString();
  EXPECT_EQ(layers, 2);

  // One platform.
  ConvertImageOptions o = ImageOptions(dirs);
  o.platform = Platform{"linux", "arm64", ""};
  r = ConvertLayouts(dirs.src, "multi", dirs.dst, "arm", o);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const json ai = dst.JsonBlob(dst.Tagged("arm"));
  ASSERT_EQ(ai["manifests"].size(), 1u);
  EXPECT_EQ(ai["manifests"][0]["platform"], arm["platform"]);
  ExpectConvertedManifest(src, arm, dst, ai["manifests"][0]);
  v = VerifyLayout(dirs.dst, "arm", dirs.tmp);
  EXPECT_TRUE(v.ok()) << v.ToString();
  // The other tag is still there.
  EXPECT_EQ(dst.Tagged("all")["digest"], tagged["digest"]);

  // No platform matches.
  o.platform = Platform{"linux", "s390x", ""};
  r = ConvertLayouts(dirs.src, "multi", dirs.dst, "none", o);
  EXPECT_FALSE(r.ok());
}

// Crashes for the reason given above ConvertLayerDeathTest.
TEST(ConvertImageDeathTest, RegressionCorruptSourceLayerFailsWithoutCrash) {
  ImageDirs dirs;
  Layout src(dirs.src);
  const std::string layer = Tar(Members(/*sparse=*/false));
  src.Tag(src.Image({{kLayerTar, layer}}), "v1");
  std::string bad = layer;
  bad[600] = static_cast<char>(bad[600] ^ 1);  // same size, other digest
  WriteFile(src.BlobPath(Sha256::OciDigest(layer)), bad);
  auto check = [&] {
    auto r = ConvertLayouts(dirs.src, "v1", dirs.dst, "ocix", ImageOptions(dirs));
    if (r.ok() || r.status().code() != Code::kCorruption) {
      std::fprintf(stderr, "want Corruption, got %s\n", r.status().ToString().c_str());
      return false;
    }
    return fs::is_empty(dirs.tmp);
  };
  EXPECT_EXIT(std::_Exit(check() ? 0 : 1), ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace ocix::core

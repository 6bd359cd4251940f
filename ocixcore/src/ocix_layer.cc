#include "ocix/core/ocix_layer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "ocix/core/cbor.h"
#include "ocix/core/codec.h"
#include "ocix/core/limits.h"
#include "ocix/core/listing.h"
#include "ocix/core/sha256.h"
#include "ocix/core/unique_fd.h"

namespace ocix::core {

namespace c = cbor;

namespace {

// A decompressed TOC is manifest plus tables: bounded by twice the largest
// manifest.
constexpr uint64_t kMaxTocPlainBytes = 2 * uint64_t{kMaxManifestBytes};

uint64_t ChunkCount(uint64_t size, uint64_t chunk_size) { return size / chunk_size + (size % chunk_size != 0); }

void PutLE(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
}

uint64_t GetLE(std::span<const uint8_t> in, size_t pos, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = v << 8 | in[pos + static_cast<size_t>(i)];
  return v;
}

Result<Digest> DigestOf(const cbor_item_t* item, std::string_view what) {
  OCIX_ASSIGN_OR_RETURN(std::string b, c::GetBytes(item, what));
  if (b.size() != kDigestSize) return Corruption(std::string(what) + ": digest is not 32 bytes");
  Digest d;
  std::memcpy(d.bytes.data(), b.data(), kDigestSize);
  return d;
}

}  // namespace

const ContentTable* Toc::Find(const Digest& d) const {
  auto it = std::lower_bound(contents.begin(), contents.end(), d,
                             [](const ContentTable& t, const Digest& x) { return t.digest < x; });
  return it != contents.end() && it->digest == d ? &*it : nullptr;
}

std::pair<uint64_t, uint64_t> Toc::ChunkRange(uint64_t size, size_t i) const {
  const uint64_t off = i * chunk_size;
  return {off, std::min(chunk_size, size - off)};
}

Result<std::string> EncodeToc(const Toc& toc) {
  std::vector<c::Item> files;
  for (const ContentTable& t : toc.contents) {
    std::vector<c::Item> chunks;
    for (const ChunkLocation& ch : t.chunks) {
      std::vector<c::Item> loc;
      loc.push_back(c::Uint(ch.blob_offset));
      loc.push_back(c::Uint(ch.frame_size));
      // A one-chunk content's chunk hash is the content hash: not repeated.
      if (t.chunks.size() > 1) loc.push_back(c::Bytes(ch.digest.bytes));
      chunks.push_back(c::Array(std::move(loc)));
    }
    std::vector<c::Item> f;
    f.push_back(c::Bytes(t.digest.bytes));
    f.push_back(c::Uint(t.size));
    f.push_back(c::Array(std::move(chunks)));
    files.push_back(c::Array(std::move(f)));
  }
  std::vector<std::pair<std::string, c::Item>> top;
  top.emplace_back("chunk", c::Uint(toc.chunk_size));
  top.emplace_back("files", c::Array(std::move(files)));
  top.emplace_back("version", c::Uint(1));
  top.emplace_back("manifest",
                   c::Bytes({reinterpret_cast<const uint8_t*>(toc.manifest_bytes.data()), toc.manifest_bytes.size()}));
  if (!toc.prefetch.empty()) {
    std::vector<c::Item> p;
    for (const std::string& path : toc.prefetch) p.push_back(c::Text(path));
    top.emplace_back("prefetch", c::Array(std::move(p)));
  }
  c::Item root = c::Map(std::move(top));
  std::string plain = c::Serialize(root.get());
  std::string out(ZSTD_compressBound(plain.size()), '\0');
  // Level 19: the TOC is fetched before anything else, so its size matters
  // more than the time to compress it once.
  size_t n = ZSTD_compress(out.data(), out.size(), plain.data(), plain.size(), 19);
  if (ZSTD_isError(n)) return Internal(std::string("compress TOC: ") + ZSTD_getErrorName(n));
  out.resize(n);
  return out;
}

Result<Toc> DecodeToc(std::span<const uint8_t> payload, uint64_t toc_offset) {
  if (payload.size() > kMaxTocBytes) return Corruption("TOC larger than 256 MiB");
  const unsigned long long plain_size = ZSTD_getFrameContentSize(payload.data(), payload.size());
  if (plain_size == ZSTD_CONTENTSIZE_ERROR || plain_size == ZSTD_CONTENTSIZE_UNKNOWN)
    return Corruption("TOC is not a zstd frame with a content size");
  if (plain_size > kMaxTocPlainBytes) return Corruption("TOC decompresses to more than 512 MiB");
  std::string plain(plain_size, '\0');
  size_t n = ZSTD_decompress(plain.data(), plain.size(), payload.data(), payload.size());
  if (ZSTD_isError(n) || n != plain_size) return Corruption("TOC does not decompress");
  OCIX_ASSIGN_OR_RETURN(c::Item root, c::Load({reinterpret_cast<const uint8_t*>(plain.data()), plain.size()}));
  OCIX_ASSIGN_OR_RETURN(auto pairs, c::GetMap(root.get(), "TOC"));
  const cbor_item_t *chunk = nullptr, *files = nullptr, *version = nullptr, *manifest = nullptr, *prefetch = nullptr;
  for (const cbor_pair& p : pairs) {
    OCIX_ASSIGN_OR_RETURN(std::string_view key, c::KeyText(p));
    if (key == "chunk")
      chunk = p.value;
    else if (key == "files")
      files = p.value;
    else if (key == "version")
      version = p.value;
    else if (key == "manifest")
      manifest = p.value;
    else if (key == "prefetch")
      prefetch = p.value;
    else
      return Corruption("TOC: unknown key \"" + std::string(key.substr(0, 64)) + "\"");
  }
  if (!chunk || !files || !version || !manifest)
    return Corruption("TOC: chunk, files, version and manifest are required");
  OCIX_ASSIGN_OR_RETURN(uint64_t v, c::GetUint(version, "TOC version"));
  if (v != 1) return Corruption("TOC: unsupported version " + std::to_string(v));
  Toc toc;
  OCIX_ASSIGN_OR_RETURN(toc.chunk_size, c::GetUint(chunk, "TOC chunk size"));
  if (toc.chunk_size < kMinChunkSize || toc.chunk_size > kMaxChunkSize || (toc.chunk_size & (toc.chunk_size - 1)))
    return Corruption("TOC: chunk size is not a power of two in [4 KiB, 64 MiB]");
  OCIX_ASSIGN_OR_RETURN(toc.manifest_bytes, c::GetBytes(manifest, "TOC manifest"));
  auto m = DecodeManifest({reinterpret_cast<const uint8_t*>(toc.manifest_bytes.data()), toc.manifest_bytes.size()});
  if (!m.ok()) return m.status().WithContext("TOC manifest");
  toc.manifest = std::move(*m);
  if (toc.manifest.version != 1 || !toc.manifest.layer)
    return Corruption("TOC manifest is not a version 1 layer manifest");

  // The frames of all chunks, to check they are inside the tar part and
  // disjoint: a crafted TOC must not make two chunks share bytes.
  std::vector<std::pair<uint64_t, uint64_t>> frames;
  const uint64_t max_frame = ZSTD_compressBound(toc.chunk_size) + 64;
  OCIX_ASSIGN_OR_RETURN(auto tables, c::GetArray(files, "TOC files"));
  for (const cbor_item_t* t : tables) {
    OCIX_ASSIGN_OR_RETURN(auto f, c::GetArray(t, "TOC file"));
    if (f.size() != 3) return Corruption("TOC file is [b3, size, chunks]");
    ContentTable ct;
    OCIX_ASSIGN_OR_RETURN(ct.digest, DigestOf(f[0], "TOC file digest"));
    OCIX_ASSIGN_OR_RETURN(ct.size, c::GetUint(f[1], "TOC file size"));
    if (ct.size == 0 || ct.size > kMaxFileSize) return Corruption("TOC: file " + ct.digest.Hex() + " has a bad size");
    if (!toc.contents.empty() && !(toc.contents.back().digest < ct.digest))
      return Corruption("TOC: files unsorted or duplicated at " + ct.digest.Hex());
    OCIX_ASSIGN_OR_RETURN(auto chunks, c::GetArray(f[2], "TOC chunks"));
    if (chunks.size() != ChunkCount(ct.size, toc.chunk_size))
      return Corruption("TOC: file " + ct.digest.Hex() + " has the wrong number of chunks");
    for (const cbor_item_t* ch : chunks) {
      OCIX_ASSIGN_OR_RETURN(auto loc, c::GetArray(ch, "TOC chunk"));
      if (loc.size() != (chunks.size() > 1 ? 3u : 2u))
        return Corruption("TOC chunk is [offset, size] (one chunk) or [offset, size, b3]");
      ChunkLocation cl;
      OCIX_ASSIGN_OR_RETURN(cl.blob_offset, c::GetUint(loc[0], "chunk offset"));
      OCIX_ASSIGN_OR_RETURN(cl.frame_size, c::GetUint(loc[1], "chunk frame size"));
      if (chunks.size() > 1) {
        OCIX_ASSIGN_OR_RETURN(cl.digest, DigestOf(loc[2], "chunk digest"));
      } else {
        cl.digest = ct.digest;
      }
      if (cl.frame_size == 0 || cl.frame_size > max_frame || cl.blob_offset > toc_offset ||
          cl.frame_size > toc_offset - cl.blob_offset)
        return Corruption("TOC: a chunk frame of " + ct.digest.Hex() + " lies outside the layer's tar part");
      frames.emplace_back(cl.blob_offset, cl.frame_size);
      ct.chunks.push_back(cl);
    }
    toc.contents.push_back(std::move(ct));
  }
  std::sort(frames.begin(), frames.end());
  for (size_t i = 1; i < frames.size(); ++i) {
    if (frames[i - 1].first + frames[i - 1].second > frames[i].first) return Corruption("TOC: chunk frames overlap");
  }
  for (const Entry& e : toc.manifest.entries) {
    if (e.type != FileType::kRegular || e.size == 0) continue;
    const ContentTable* t = toc.Find(e.digest);
    if (t == nullptr) return Corruption("TOC: no chunk table for \"" + e.path + "\"");
    if (t->size != e.size) return Corruption("TOC: chunk table size differs from \"" + e.path + "\"");
  }
  if (prefetch) {
    OCIX_ASSIGN_OR_RETURN(auto ps, c::GetArray(prefetch, "TOC prefetch"));
    for (const cbor_item_t* p : ps) {
      OCIX_ASSIGN_OR_RETURN(std::string path, c::GetText(p, "prefetch path"));
      const Entry* e = toc.manifest.Find(path);
      if (e == nullptr || e->type != FileType::kRegular)
        return Corruption("TOC: prefetch path \"" + path.substr(0, 512) + "\" is not a regular file");
      toc.prefetch.push_back(std::move(path));
    }
  }
  return toc;
}

std::string Footer::TocDigest() const { return "sha256:" + HexEncode(toc_sha256); }

std::string EncodeFooter(const Footer& f) {
  std::string out;
  PutLE(out, kFooterFrameMagic, 4);
  PutLE(out, kFooterSize - 8, 4);
  out += kFooterMagic;
  PutLE(out, f.toc_offset, 8);
  PutLE(out, f.toc_size, 8);
  out.append(reinterpret_cast<const char*>(f.toc_sha256.data()), f.toc_sha256.size());
  return out;
}

Result<Footer> DecodeFooter(std::span<const uint8_t> b, uint64_t blob_size) {
  if (b.size() != kFooterSize || blob_size < kFooterSize) return Corruption("layer too small for an OCIX footer");
  if (GetLE(b, 0, 4) != kFooterFrameMagic || GetLE(b, 4, 4) != kFooterSize - 8 ||
      std::memcmp(b.data() + 8, kFooterMagic.data(), kFooterMagic.size()) != 0)
    return NotFound("no OCIX footer (not an OCIX layer)");
  Footer f;
  f.toc_offset = GetLE(b, 16, 8);
  f.toc_size = GetLE(b, 24, 8);
  std::memcpy(f.toc_sha256.data(), b.data() + 32, 32);
  const uint64_t limit = blob_size - kFooterSize;
  if (f.toc_offset < 8 || f.toc_offset > limit || f.toc_size > limit - f.toc_offset || f.toc_size > kMaxTocBytes)
    return Corruption("OCIX footer points outside the layer");
  return f;
}

Result<std::optional<Footer>> FooterFromAnnotations(const std::map<std::string, std::string>& a) {
  auto digest = a.find(std::string(kAnnotationTocDigest));
  auto offset = a.find(std::string(kAnnotationTocOffset));
  auto size = a.find(std::string(kAnnotationTocSize));
  if (digest == a.end() && offset == a.end() && size == a.end()) return std::optional<Footer>();
  if (digest == a.end() || offset == a.end() || size == a.end())
    return Corruption("OCIX annotations incomplete: toc.digest, toc.offset and toc.size go together");
  Footer f;
  auto number = [](const std::string& s, uint64_t& v) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    return ec == std::errc() && p == s.data() + s.size() && !s.empty();
  };
  if (!number(offset->second, f.toc_offset) || !number(size->second, f.toc_size))
    return Corruption("OCIX annotations: toc.offset and toc.size must be decimal numbers");
  const std::string& d = digest->second;
  auto hex = d.size() == 7 + 64 && d.compare(0, 7, "sha256:") == 0 ? Digest::FromHex(d.substr(7)) : std::nullopt;
  if (!hex) return Corruption("OCIX annotations: toc.digest is not sha256:<64 hex>");
  std::memcpy(f.toc_sha256.data(), hex->bytes.data(), 32);
  if (f.toc_size > kMaxTocBytes) return Corruption("OCIX annotations: TOC larger than 256 MiB");
  return std::optional<Footer>(f);
}

Result<Toc> ReadTocFromFile(const std::string& path) {
  UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file.valid()) return ErrnoError("open " + path, errno);
  const int fd = file.get();
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError("stat " + path, errno);
  const auto size = static_cast<uint64_t>(st.st_size);
  auto read_at = [&](uint64_t off, uint64_t len) -> Result<std::string> {
    std::string out(len, '\0');
    if (::pread(fd, out.data(), len, static_cast<off_t>(off)) != static_cast<ssize_t>(len))
      return Corruption(path + ": short read at " + std::to_string(off));
    return out;
  };
  if (size < kFooterSize) return Corruption(path + ": too small for an OCIX layer");
  OCIX_ASSIGN_OR_RETURN(std::string tail, read_at(size - kFooterSize, kFooterSize));
  OCIX_ASSIGN_OR_RETURN(Footer f, DecodeFooter({reinterpret_cast<const uint8_t*>(tail.data()), tail.size()}, size));
  OCIX_ASSIGN_OR_RETURN(std::string payload, read_at(f.toc_offset, f.toc_size));
  if (Sha256::OciDigest(payload) != f.TocDigest()) return Corruption(path + ": TOC digest mismatch");
  return DecodeToc({reinterpret_cast<const uint8_t*>(payload.data()), payload.size()}, f.toc_offset - 8);
}

std::string FormatTocJson(const Toc& toc) {
  using nlohmann::json;
  json contents = json::array();
  for (const ContentTable& t : toc.contents) {
    json chunks = json::array();
    for (const ChunkLocation& c : t.chunks) chunks.push_back({c.blob_offset, c.frame_size, c.digest.Hex()});
    contents.push_back({{"b3", t.digest.Hex()}, {"size", t.size}, {"chunks", chunks}});
  }
  json j = {{"chunk_size", toc.chunk_size},
            {"prefetch", toc.prefetch},
            {"contents", contents},
            {"manifest", json::parse(FormatJson(toc.manifest))}};
  return j.dump(1) + "\n";
}

}  // namespace ocix::core

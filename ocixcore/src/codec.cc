#include "ocix/core/codec.h"

#include <sys/stat.h>

#include <string_view>
#include <utility>
#include <vector>

#include "ocix/core/cbor.h"
#include "ocix/core/limits.h"
#include "ocix/core/rfc3339.h"

namespace ocix::core {

namespace c = cbor;

namespace {

using KV = std::vector<std::pair<std::string, c::Item>>;

c::Item DigestItem(const Digest& d) { return c::Bytes(d.bytes); }

// ---- version 1 --------------------------------------------------------------

uint32_t TypeBits(FileType t) {
  switch (t) {
    case FileType::kRegular: return S_IFREG;
    case FileType::kDirectory: return S_IFDIR;
    case FileType::kSymlink: return S_IFLNK;
    case FileType::kCharDevice: return S_IFCHR;
    case FileType::kBlockDevice: return S_IFBLK;
    case FileType::kFifo: return S_IFIFO;
    case FileType::kHardlink:
    case FileType::kWhiteout: break;
  }
  return 0;
}

c::Item EncodeV1Entry(const Entry& e) {
  KV kv;
  if (e.type == FileType::kHardlink) {
    kv.emplace_back("link", c::Text(e.target));
    return c::Map(std::move(kv));
  }
  if (e.type == FileType::kWhiteout) {
    kv.emplace_back("whiteout", c::Bool(true));
    return c::Map(std::move(kv));
  }
  kv.emplace_back("mode", c::Uint(TypeBits(e.type) | e.mode));
  kv.emplace_back("uid", c::Uint(e.uid));
  kv.emplace_back("gid", c::Uint(e.gid));
  if (!e.user.empty()) kv.emplace_back("user", c::Text(e.user));
  if (!e.group.empty()) kv.emplace_back("group", c::Text(e.group));
  {
    std::vector<c::Item> t;
    t.push_back(c::Int(e.mtime.sec));
    t.push_back(c::Uint(e.mtime.nsec));
    kv.emplace_back("mtime", c::Array(std::move(t)));
  }
  if (!e.xattrs.empty()) {
    KV xs;
    for (const Xattr& x : e.xattrs)
      xs.emplace_back(x.name, c::Bytes({reinterpret_cast<const uint8_t*>(x.value.data()), x.value.size()}));
    kv.emplace_back("xattrs", c::Map(std::move(xs)));
  }
  switch (e.type) {
    case FileType::kRegular: {
      kv.emplace_back("size", c::Uint(e.size));
      kv.emplace_back("b3", DigestItem(e.digest));
      if (e.data) {
        std::vector<c::Item> xs;
        for (const Extent& x : *e.data) {
          std::vector<c::Item> pair;
          pair.push_back(c::Uint(x.offset));
          pair.push_back(c::Uint(x.length));
          xs.push_back(c::Array(std::move(pair)));
        }
        kv.emplace_back("data", c::Array(std::move(xs)));
      }
      if (e.chunks) {
        std::vector<c::Item> ds;
        for (const Digest& d : e.chunks->digests) ds.push_back(DigestItem(d));
        std::vector<c::Item> ch;
        ch.push_back(c::Uint(e.chunks->chunk_size));
        ch.push_back(c::Array(std::move(ds)));
        kv.emplace_back("chunks", c::Array(std::move(ch)));
      }
      break;
    }
    case FileType::kDirectory:
      if (e.opaque) kv.emplace_back("opaque", c::Bool(true));
      break;
    case FileType::kSymlink: kv.emplace_back("target", c::Text(e.target)); break;
    case FileType::kCharDevice:
    case FileType::kBlockDevice: {
      std::vector<c::Item> r;
      r.push_back(c::Uint(e.rdev_major));
      r.push_back(c::Uint(e.rdev_minor));
      kv.emplace_back("rdev", c::Array(std::move(r)));
      break;
    }
    default: break;
  }
  return c::Map(std::move(kv));
}

// ---- version 0 --------------------------------------------------------------

std::string_view V0TypeName(FileType t) {
  switch (t) {
    case FileType::kRegular: return "regularfile";
    case FileType::kDirectory: return "directory";
    case FileType::kSymlink: return "symlink";
    case FileType::kHardlink: return "link";
    case FileType::kCharDevice: return "character";
    case FileType::kBlockDevice: return "block";
    case FileType::kFifo: return "fifo";
    case FileType::kWhiteout: break;
  }
  return {};
}

c::Item V0Mode(uint32_t mode) {
  std::vector<c::Item> m;
  for (int shift : {6, 3, 0}) {
    std::vector<c::Item> rwx;
    rwx.push_back(c::Bool(mode >> shift & 4));
    rwx.push_back(c::Bool(mode >> shift & 2));
    rwx.push_back(c::Bool(mode >> shift & 1));
    m.push_back(c::Array(std::move(rwx)));
  }
  m.push_back(c::Bool(mode & S_ISUID));
  m.push_back(c::Bool(mode & S_ISGID));
  m.push_back(c::Bool(mode & S_ISVTX));
  return c::Array(std::move(m));
}

Result<c::Item> EncodeV0Entry(const Entry& e) {
  auto unsupported = [&](std::string_view what) {
    return InvalidArgument("path \"" + e.path + "\": format version 0 cannot carry " + std::string(what));
  };
  if (e.type == FileType::kWhiteout) return unsupported("whiteouts");
  if (e.opaque) return unsupported("opaque directories");
  if (!e.xattrs.empty()) return unsupported("extended attributes");
  if (e.data) return unsupported("sparse files");
  if (e.chunks) return unsupported("chunk lists");
  KV kv;
  kv.emplace_back("type", c::Text(V0TypeName(e.type)));
  if (e.type == FileType::kHardlink) {
    std::vector<c::Item> l;
    l.push_back(c::Text(e.target));
    kv.emplace_back("link", c::Array(std::move(l)));
    return c::Map(std::move(kv));
  }
  kv.emplace_back("mode", V0Mode(e.mode));
  if (e.uid != 0) kv.emplace_back("uid", c::Uint(e.uid));
  if (e.gid != 0) kv.emplace_back("gid", c::Uint(e.gid));
  if (!e.user.empty()) kv.emplace_back("username", c::Text(e.user));
  if (!e.group.empty()) kv.emplace_back("groupname", c::Text(e.group));
  auto add_time = [&](const char* key, const Timestamp& t) -> Status {
    OCIX_ASSIGN_OR_RETURN(std::string s, FormatRfc3339(t));
    kv.emplace_back(key, c::Text(s));
    return Status::Ok();
  };
  OCIX_RETURN_IF_ERROR(add_time("mtime", e.mtime).WithContext(e.path));
  if (e.atime) OCIX_RETURN_IF_ERROR(add_time("atime", *e.atime).WithContext(e.path));
  if (e.ctime) OCIX_RETURN_IF_ERROR(add_time("ctime", *e.ctime).WithContext(e.path));
  if (e.btime) OCIX_RETURN_IF_ERROR(add_time("btime", *e.btime).WithContext(e.path));
  std::vector<c::Item> payload;
  switch (e.type) {
    case FileType::kRegular:
      payload.push_back(c::Uint(e.size));
      payload.push_back(DigestItem(e.digest));
      break;
    case FileType::kSymlink: payload.push_back(c::Text(e.target)); break;
    case FileType::kCharDevice:
    case FileType::kBlockDevice:
      payload.push_back(c::Uint(e.rdev_major));
      payload.push_back(c::Uint(e.rdev_minor));
      break;
    default: break;
  }
  kv.emplace_back(std::string(V0TypeName(e.type)), c::Array(std::move(payload)));
  return c::Map(std::move(kv));
}

}  // namespace

Result<std::string> EncodeManifest(const Manifest& m) {
  if (m.version == kFormatVersion0) {
    // Say what version 0 lacks before the general rules call it corrupt.
    for (const Entry& e : m.entries) {
      if (e.type == FileType::kWhiteout || e.opaque)
        return InvalidArgument("path \"" + e.path +
                               "\": format version 0 cannot carry whiteouts or opaque directories");
    }
  }
  OCIX_RETURN_IF_ERROR(ValidateManifest(m).WithContext("encode manifest"));
  KV files;
  files.reserve(m.entries.size());
  for (const Entry& e : m.entries) {
    if (m.version == kFormatVersion0) {
      OCIX_ASSIGN_OR_RETURN(c::Item item, EncodeV0Entry(e));
      files.emplace_back(e.path, std::move(item));
    } else {
      files.emplace_back(e.path, EncodeV1Entry(e));
    }
  }
  KV top;
  top.emplace_back("files", c::Map(std::move(files)));
  top.emplace_back("version", c::Uint(m.version));
  if (m.layer) top.emplace_back("layer", c::Bool(true));
  c::Item root = c::Tag(kOcixTag, c::Map(std::move(top)));
  if (m.version == kFormatVersion0) root = c::Tag(kSeedOuterTag, std::move(root));
  return c::Serialize(root.get());
}

// ---- decoding -----------------------------------------------------------------

namespace {

Status EntryError(std::string_view path, std::string_view what) {
  return Corruption("path \"" + std::string(path.substr(0, 512)) + "\": " + std::string(what));
}

// A map's pairs by key, for schema checks: every key must be known.
class Fields {
 public:
  static Result<Fields> Of(const cbor_item_t* item, std::string_view what,
                           std::initializer_list<std::string_view> known) {
    OCIX_ASSIGN_OR_RETURN(auto pairs, c::GetMap(item, what));
    Fields f;
    for (const cbor_pair& p : pairs) {
      OCIX_ASSIGN_OR_RETURN(std::string_view key, c::KeyText(p));
      bool ok = false;
      for (std::string_view k : known) ok = ok || k == key;
      if (!ok) return Corruption(std::string(what) + ": unknown key \"" + std::string(key.substr(0, 64)) + "\"");
      f.fields_.emplace_back(key, p.value);
    }
    return f;
  }
  const cbor_item_t* Get(std::string_view key) const {
    for (const auto& [k, v] : fields_)
      if (k == key) return v;
    return nullptr;
  }
  size_t size() const { return fields_.size(); }

 private:
  std::vector<std::pair<std::string_view, const cbor_item_t*>> fields_;
};

Result<Digest> GetDigest(const cbor_item_t* item, std::string_view what) {
  OCIX_ASSIGN_OR_RETURN(std::string b, c::GetBytes(item, what));
  if (b.size() != kDigestSize) return Corruption(std::string(what) + ": BLAKE3-256 digest is not 32 bytes");
  Digest d;
  std::copy(b.begin(), b.end(), d.bytes.begin());
  return d;
}

Result<uint32_t> GetU32(const cbor_item_t* item, std::string_view what, uint64_t max) {
  OCIX_ASSIGN_OR_RETURN(uint64_t v, c::GetUint(item, what));
  if (v > max) return Corruption(std::string(what) + ": out of range");
  return static_cast<uint32_t>(v);
}

Status DecodeV1Entry(const cbor_item_t* item, Entry& e) {
  OCIX_ASSIGN_OR_RETURN(Fields f, Fields::Of(item, "entry",
                                             {"b3", "gid", "uid", "data", "link", "mode", "rdev", "size", "user",
                                              "group", "mtime", "chunks", "opaque", "target", "xattrs", "whiteout"}));
  if (const cbor_item_t* link = f.Get("link")) {
    if (f.size() != 1) return Corruption("a hardlink entry carries only \"link\"");
    e.type = FileType::kHardlink;
    OCIX_ASSIGN_OR_RETURN(e.target, c::GetText(link, "link"));
    return Status::Ok();
  }
  if (const cbor_item_t* wh = f.Get("whiteout")) {
    if (f.size() != 1) return Corruption("a whiteout entry carries only \"whiteout\"");
    OCIX_ASSIGN_OR_RETURN(bool b, c::GetBool(wh, "whiteout"));
    if (!b) return Corruption("whiteout must be true");
    e.type = FileType::kWhiteout;
    return Status::Ok();
  }
  const cbor_item_t *mode = f.Get("mode"), *uid = f.Get("uid"), *gid = f.Get("gid"), *mtime = f.Get("mtime");
  if (!mode || !uid || !gid || !mtime) return Corruption("mode, uid, gid and mtime are required");
  OCIX_ASSIGN_OR_RETURN(uint64_t full_mode, c::GetUint(mode, "mode"));
  if (full_mode > 0xFFFF) return Corruption("mode out of range");
  e.mode = static_cast<uint32_t>(full_mode & 07777);
  switch (full_mode & S_IFMT) {
    case S_IFREG: e.type = FileType::kRegular; break;
    case S_IFDIR: e.type = FileType::kDirectory; break;
    case S_IFLNK: e.type = FileType::kSymlink; break;
    case S_IFCHR: e.type = FileType::kCharDevice; break;
    case S_IFBLK: e.type = FileType::kBlockDevice; break;
    case S_IFIFO: e.type = FileType::kFifo; break;
    default: return Corruption("mode has no supported file type");
  }
  OCIX_ASSIGN_OR_RETURN(e.uid, GetU32(uid, "uid", kMaxId));
  OCIX_ASSIGN_OR_RETURN(e.gid, GetU32(gid, "gid", kMaxId));
  if (const cbor_item_t* u = f.Get("user")) {
    OCIX_ASSIGN_OR_RETURN(e.user, c::GetText(u, "user"));
    if (e.user.empty()) return Corruption("empty user name (omit it)");
  }
  if (const cbor_item_t* g = f.Get("group")) {
    OCIX_ASSIGN_OR_RETURN(e.group, c::GetText(g, "group"));
    if (e.group.empty()) return Corruption("empty group name (omit it)");
  }
  OCIX_ASSIGN_OR_RETURN(auto t, c::GetArray(mtime, "mtime"));
  if (t.size() != 2) return Corruption("mtime is [seconds, nanoseconds]");
  OCIX_ASSIGN_OR_RETURN(e.mtime.sec, c::GetInt(t[0], "mtime seconds"));
  OCIX_ASSIGN_OR_RETURN(e.mtime.nsec, GetU32(t[1], "mtime nanoseconds", 999'999'999));
  if (const cbor_item_t* xs = f.Get("xattrs")) {
    OCIX_ASSIGN_OR_RETURN(auto pairs, c::GetMap(xs, "xattrs"));
    if (pairs.empty()) return Corruption("empty xattrs map (omit it)");
    if (pairs.size() > kMaxXattrsPerFile) return Corruption("too many xattrs");
    for (const cbor_pair& p : pairs) {
      Xattr x;
      OCIX_ASSIGN_OR_RETURN(std::string_view name, c::KeyText(p));
      x.name = name;
      OCIX_ASSIGN_OR_RETURN(x.value, c::GetBytes(p.value, "xattr value"));
      e.xattrs.push_back(std::move(x));
    }
  }
  const bool reg = e.type == FileType::kRegular;
  const bool dev = e.type == FileType::kCharDevice || e.type == FileType::kBlockDevice;
  auto only_for = [&](const char* key, bool allowed) -> Status {
    if (f.Get(key) && !allowed) return Corruption(std::string("\"") + key + "\" on the wrong file type");
    return Status::Ok();
  };
  OCIX_RETURN_IF_ERROR(only_for("size", reg));
  OCIX_RETURN_IF_ERROR(only_for("b3", reg));
  OCIX_RETURN_IF_ERROR(only_for("data", reg));
  OCIX_RETURN_IF_ERROR(only_for("chunks", reg));
  OCIX_RETURN_IF_ERROR(only_for("rdev", dev));
  OCIX_RETURN_IF_ERROR(only_for("target", e.type == FileType::kSymlink));
  OCIX_RETURN_IF_ERROR(only_for("opaque", e.type == FileType::kDirectory));
  if (reg) {
    if (!f.Get("size") || !f.Get("b3")) return Corruption("a regular file needs size and b3");
    OCIX_ASSIGN_OR_RETURN(e.size, c::GetUint(f.Get("size"), "size"));
    OCIX_ASSIGN_OR_RETURN(e.digest, GetDigest(f.Get("b3"), "b3"));
    if (const cbor_item_t* data = f.Get("data")) {
      OCIX_ASSIGN_OR_RETURN(auto xs, c::GetArray(data, "data"));
      if (xs.size() > kMaxExtentsPerFile) return Corruption("too many sparse data regions");
      e.data.emplace();
      for (const cbor_item_t* x : xs) {
        OCIX_ASSIGN_OR_RETURN(auto pair, c::GetArray(x, "data region"));
        if (pair.size() != 2) return Corruption("a data region is [offset, length]");
        Extent ext;
        OCIX_ASSIGN_OR_RETURN(ext.offset, c::GetUint(pair[0], "data offset"));
        OCIX_ASSIGN_OR_RETURN(ext.length, c::GetUint(pair[1], "data length"));
        e.data->push_back(ext);
      }
    }
    if (const cbor_item_t* chunks = f.Get("chunks")) {
      OCIX_ASSIGN_OR_RETURN(auto ch, c::GetArray(chunks, "chunks"));
      if (ch.size() != 2) return Corruption("chunks is [chunk size, [digests]]");
      ChunkList cl;
      OCIX_ASSIGN_OR_RETURN(cl.chunk_size, c::GetUint(ch[0], "chunk size"));
      OCIX_ASSIGN_OR_RETURN(auto ds, c::GetArray(ch[1], "chunk digests"));
      for (const cbor_item_t* d : ds) {
        OCIX_ASSIGN_OR_RETURN(Digest dg, GetDigest(d, "chunk digest"));
        cl.digests.push_back(dg);
      }
      e.chunks = std::move(cl);
    }
  } else if (dev) {
    if (!f.Get("rdev")) return Corruption("a device needs rdev");
    OCIX_ASSIGN_OR_RETURN(auto r, c::GetArray(f.Get("rdev"), "rdev"));
    if (r.size() != 2) return Corruption("rdev is [major, minor]");
    OCIX_ASSIGN_OR_RETURN(e.rdev_major, GetU32(r[0], "rdev major", kMaxDeviceNumber));
    OCIX_ASSIGN_OR_RETURN(e.rdev_minor, GetU32(r[1], "rdev minor", kMaxDeviceNumber));
  } else if (e.type == FileType::kSymlink) {
    if (!f.Get("target")) return Corruption("a symlink needs target");
    OCIX_ASSIGN_OR_RETURN(e.target, c::GetText(f.Get("target"), "target"));
  } else if (const cbor_item_t* op = f.Get("opaque")) {
    OCIX_ASSIGN_OR_RETURN(bool b, c::GetBool(op, "opaque"));
    if (!b) return Corruption("opaque must be true (omit it otherwise)");
    e.opaque = true;
  }
  return Status::Ok();
}

Result<Timestamp> GetTime(const cbor_item_t* item, std::string_view what) {
  OCIX_ASSIGN_OR_RETURN(std::string s, c::GetText(item, what));
  auto t = ParseRfc3339(s);
  if (!t.ok()) return t.status().WithContext(what);
  return t;
}

Status DecodeV0Entry(const cbor_item_t* item, Entry& e) {
  OCIX_ASSIGN_OR_RETURN(
      Fields f, Fields::Of(item, "entry",
                           {"gid", "uid", "fifo", "link", "mode", "type", "atime", "block", "btime", "ctime", "mtime",
                            "symlink", "username", "character", "directory", "groupname", "regularfile"}));
  if (!f.Get("type")) return Corruption("entry without type");
  OCIX_ASSIGN_OR_RETURN(std::string type, c::GetText(f.Get("type"), "type"));
  static constexpr std::pair<std::string_view, FileType> kTypes[] = {{"regularfile", FileType::kRegular},
                                                                     {"directory", FileType::kDirectory},
                                                                     {"symlink", FileType::kSymlink},
                                                                     {"link", FileType::kHardlink},
                                                                     {"character", FileType::kCharDevice},
                                                                     {"block", FileType::kBlockDevice},
                                                                     {"fifo", FileType::kFifo}};
  bool found = false;
  for (const auto& [name, t] : kTypes) {
    if (name == type) {
      e.type = t;
      found = true;
    }
  }
  if (!found) return Corruption("unknown type \"" + type.substr(0, 64) + "\"");
  // Exactly one payload key, the one the type names.
  for (const auto& [name, t] : kTypes) {
    if (f.Get(name) && name != type) return Corruption("payload \"" + std::string(name) + "\" on a " + type);
  }
  const cbor_item_t* payload_item = f.Get(type);
  if (!payload_item) return Corruption("type " + type + " without its payload");
  OCIX_ASSIGN_OR_RETURN(auto payload, c::GetArray(payload_item, type));
  if (e.type == FileType::kHardlink) {
    if (f.size() != 2) return Corruption("a link entry carries only type and link");
    if (payload.size() != 1) return Corruption("link is [target]");
    OCIX_ASSIGN_OR_RETURN(e.target, c::GetText(payload[0], "link target"));
    return Status::Ok();
  }
  if (!f.Get("mode")) return Corruption("entry without mode");
  OCIX_ASSIGN_OR_RETURN(auto mode, c::GetArray(f.Get("mode"), "mode"));
  if (mode.size() != 6) return Corruption("mode is [user, group, other, setuid, setgid, sticky]");
  uint32_t bits = 0;
  for (int i = 0; i < 3; ++i) {
    OCIX_ASSIGN_OR_RETURN(auto rwx, c::GetArray(mode[i], "mode rwx"));
    if (rwx.size() != 3) return Corruption("mode rwx is [read, write, execute]");
    for (int j = 0; j < 3; ++j) {
      OCIX_ASSIGN_OR_RETURN(bool b, c::GetBool(rwx[j], "mode bit"));
      if (b) bits |= 1u << ((2 - i) * 3 + (2 - j));
    }
  }
  static constexpr uint32_t kSpecial[] = {S_ISUID, S_ISGID, S_ISVTX};
  for (int i = 0; i < 3; ++i) {
    OCIX_ASSIGN_OR_RETURN(bool b, c::GetBool(mode[3 + i], "mode bit"));
    if (b) bits |= kSpecial[i];
  }
  e.mode = bits;
  if (const cbor_item_t* u = f.Get("uid")) {
    OCIX_ASSIGN_OR_RETURN(e.uid, GetU32(u, "uid", kMaxId));
    if (e.uid == 0) return Corruption("uid 0 is written by omission in version 0");
  }
  if (const cbor_item_t* g = f.Get("gid")) {
    OCIX_ASSIGN_OR_RETURN(e.gid, GetU32(g, "gid", kMaxId));
    if (e.gid == 0) return Corruption("gid 0 is written by omission in version 0");
  }
  if (const cbor_item_t* u = f.Get("username")) {
    OCIX_ASSIGN_OR_RETURN(e.user, c::GetText(u, "username"));
    if (e.user.empty()) return Corruption("empty username (omit it)");
  }
  if (const cbor_item_t* g = f.Get("groupname")) {
    OCIX_ASSIGN_OR_RETURN(e.group, c::GetText(g, "groupname"));
    if (e.group.empty()) return Corruption("empty groupname (omit it)");
  }
  if (!f.Get("mtime")) return Corruption("entry without mtime");
  OCIX_ASSIGN_OR_RETURN(e.mtime, GetTime(f.Get("mtime"), "mtime"));
  if (const cbor_item_t* t = f.Get("atime")) {
    OCIX_ASSIGN_OR_RETURN(e.atime, GetTime(t, "atime"));
  }
  if (const cbor_item_t* t = f.Get("ctime")) {
    OCIX_ASSIGN_OR_RETURN(e.ctime, GetTime(t, "ctime"));
  }
  if (const cbor_item_t* t = f.Get("btime")) {
    OCIX_ASSIGN_OR_RETURN(e.btime, GetTime(t, "btime"));
  }
  switch (e.type) {
    case FileType::kRegular: {
      if (payload.size() != 2) return Corruption("regularfile is [size, b3-256]");
      OCIX_ASSIGN_OR_RETURN(e.size, c::GetUint(payload[0], "size"));
      OCIX_ASSIGN_OR_RETURN(e.digest, GetDigest(payload[1], "b3-256"));
      break;
    }
    case FileType::kSymlink: {
      if (payload.size() != 1) return Corruption("symlink is [target]");
      OCIX_ASSIGN_OR_RETURN(e.target, c::GetText(payload[0], "symlink target"));
      break;
    }
    case FileType::kCharDevice:
    case FileType::kBlockDevice: {
      if (payload.size() != 2) return Corruption(type + " is [major, minor]");
      OCIX_ASSIGN_OR_RETURN(e.rdev_major, GetU32(payload[0], "major", kMaxDeviceNumber));
      OCIX_ASSIGN_OR_RETURN(e.rdev_minor, GetU32(payload[1], "minor", kMaxDeviceNumber));
      break;
    }
    default:
      if (!payload.empty()) return Corruption(type + " payload must be empty");
      break;
  }
  return Status::Ok();
}

// Unwraps tag `tag`, returning a new reference to the tagged item.
Result<c::Item> Untag(const cbor_item_t* item, uint64_t tag) {
  if (!cbor_isa_tag(item) || cbor_tag_value(item) != tag) return Corruption("expected CBOR tag " + std::to_string(tag));
  return c::Item(cbor_tag_item(item));
}

}  // namespace

Result<Manifest> DecodeManifest(std::span<const uint8_t> data) {
  if (data.size() > kMaxManifestBytes) return Corruption("manifest larger than 256 MiB");
  // v0 (seed tool): tag 6 around tag "ocix"; v1: tag "ocix" alone. Tag 6
  // has the one-byte head 0xC6; it is peeled here because libcbor 0.8
  // cannot decode a tag directly inside a tag.
  const bool seed_wrapped = !data.empty() && data[0] == 0xC6;
  OCIX_ASSIGN_OR_RETURN(c::Item root, c::Load(seed_wrapped ? data.subspan(1) : data));
  OCIX_ASSIGN_OR_RETURN(c::Item body, Untag(root.get(), kOcixTag));
  OCIX_ASSIGN_OR_RETURN(Fields top, Fields::Of(body.get(), "manifest", {"files", "layer", "version"}));
  if (!top.Get("version") || !top.Get("files")) return Corruption("manifest needs version and files");
  Manifest m;
  OCIX_ASSIGN_OR_RETURN(m.version, c::GetUint(top.Get("version"), "version"));
  if (m.version != kFormatVersion0 && m.version != kFormatVersion1)
    return Corruption("unsupported manifest version " + std::to_string(m.version));
  if (seed_wrapped != (m.version == kFormatVersion0))
    return Corruption("version " + std::to_string(m.version) + " has the wrong tag wrapping");
  if (const cbor_item_t* layer = top.Get("layer")) {
    if (m.version == kFormatVersion0) return Corruption("version 0 has no layer flag");
    OCIX_ASSIGN_OR_RETURN(m.layer, c::GetBool(layer, "layer"));
    if (!m.layer) return Corruption("layer must be true (omit it otherwise)");
  }
  OCIX_ASSIGN_OR_RETURN(auto files, c::GetMap(top.Get("files"), "files"));
  if (files.size() > kMaxEntries) return Corruption("too many entries");
  m.entries.resize(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    Entry& e = m.entries[i];
    OCIX_ASSIGN_OR_RETURN(std::string_view path, c::KeyText(files[i]));
    e.path = path;
    OCIX_RETURN_IF_ERROR(ValidatePath(e.path));
    Status s = m.version == kFormatVersion0 ? DecodeV0Entry(files[i].value, e) : DecodeV1Entry(files[i].value, e);
    if (!s.ok()) return EntryError(e.path, s.message());
  }
  OCIX_RETURN_IF_ERROR(ValidateManifest(m));
  return m;
}

}  // namespace ocix::core

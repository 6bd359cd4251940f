// LayerFs and ImageMount through the real kernel: small layers are written
// with libarchive's writer, converted with ConvertLayer (4 KiB chunks, so
// files span several chunks), mounted, and looked at with ordinary syscalls
// (lstat, readdir, read/pread, readlink, getxattr, statfs). Expectations come
// from the source members, never from the TOC the converter wrote, except
// where a test is about chunks (which chunk frames were fetched).
//
// Needs root and /dev/fuse; every test skips (with the reason) without them.
#include "ocix/fuse/layer_fs.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ocix/core/convert.h"
#include "ocix/core/manifest.h"
#include "ocix/core/ocix_layer.h"
#include "ocix/core/sha256.h"
#include "ocix/core/status.h"
#include "ocix/core/store/blob_reader.h"
#include "ocix/core/store/chunk_store.h"
#include "ocix/fuse/image_mount.h"

namespace ocix::fuse {
namespace {

namespace fs = std::filesystem;
using core::BlobReader;
using core::ByteRange;
using core::ChunkStore;
using core::Result;

constexpr uint64_t kChunk = 4096;

// ---- environment -------------------------------------------------------------------

// Why FUSE mounts cannot be made here, or "" when they can.
std::string FuseUnavailableReason() {
  if (geteuid() != 0) return "needs root (mounting FUSE and overlayfs)";
  if (access("/dev/fuse", R_OK | W_OK) != 0) return "/dev/fuse is missing or not accessible";
  return "";
}

#define SKIP_WITHOUT_FUSE()                                                                                      \
  do {                                                                                                           \
    if (std::string why_ = FuseUnavailableReason(); !why_.empty()) GTEST_SKIP() << "FUSE unavailable: " << why_; \
  } while (0)

bool OverlayAvailable() {
  std::ifstream in("/proc/filesystems");
  std::string line;
  while (std::getline(in, line))
    if (line.find("overlay") != std::string::npos) return true;
  return false;
}

bool IsMounted(const std::string& path) {
  std::ifstream in("/proc/self/mounts");
  std::string dev, mp, rest;
  while (in >> dev >> mp && std::getline(in, rest))
    if (mp == path) return true;
  return false;
}

// The fallback when Unmount() did not (or could not) run: detach lazily.
void ForceUnmount(const std::string& path) {
  for (int i = 0; i < 4 && IsMounted(path); ++i) umount2(path.c_str(), MNT_DETACH);
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ocix-fuse-test-XXXXXX").string();
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
  // A fresh (empty) directory dir/rel.
  std::string MakeDir(const std::string& rel) const {
    std::error_code ec;
    fs::create_directories(dir_ / rel, ec);
    EXPECT_FALSE(ec) << ec.message();
    return Path(rel);
  }

 private:
  fs::path dir_;
};

void WriteFile(const std::string& path, std::string_view data) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  EXPECT_TRUE(out.good()) << path;
}

// Owns a file descriptor of the test (closed before the mount goes away,
// since an open file keeps a lazily unmounted FUSE connection alive).
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

// ---- source layers -----------------------------------------------------------------

struct Member {
  std::string name;
  unsigned type = AE_IFREG;
  unsigned perm = 0644;
  int64_t uid = 0, gid = 0;
  int64_t mtime = 1600000000;
  long mtime_nsec = 0;
  std::string content;
  std::string symlink, hardlink;
  unsigned rdev_major = 0, rdev_minor = 0;
  std::vector<std::pair<int64_t, int64_t>> sparse;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

la_ssize_t AppendToString(archive*, void* self, const void* buf, size_t n) {
  static_cast<std::string*>(self)->append(static_cast<const char*>(buf), n);
  return static_cast<la_ssize_t>(n);
}

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
Member L(std::string name, std::string target) {
  Member m;
  m.name = std::move(name);
  m.hardlink = std::move(target);
  return m;
}

// A converted layer: the OCIX blob on disk and its TOC.
struct Layer {
  std::string path;
  core::ConvertedLayer converted;
  core::Toc toc;
};

// ---- blob readers ------------------------------------------------------------------

enum class Fault { kNone, kCorrupt, kFail };

// What a TestReader was asked for; shared with the test after the reader
// has been handed to a LayerFs.
struct ReaderLog {
  std::mutex mu;
  int calls = 0;
  std::vector<ByteRange> ranges;

  int Calls() {
    std::lock_guard lock(mu);
    return calls;
  }
  std::vector<ByteRange> Ranges() {
    std::lock_guard lock(mu);
    return ranges;
  }
};

// Delegates to a file reader, counting calls and ranges; corrupts (flips a
// byte in the middle of every buffer) or fails every call when told to.
class TestReader : public BlobReader {
 public:
  TestReader(std::unique_ptr<BlobReader> inner, std::shared_ptr<ReaderLog> log, Fault fault)
      : inner_(std::move(inner)), log_(std::move(log)), fault_(fault) {}

  Result<std::vector<std::string>> ReadRanges(std::span<const ByteRange> ranges) override {
    {
      std::lock_guard lock(log_->mu);
      ++log_->calls;
      log_->ranges.insert(log_->ranges.end(), ranges.begin(), ranges.end());
    }
    if (fault_ == Fault::kFail) return core::Unavailable("injected failure");
    auto r = inner_->ReadRanges(ranges);
    if (r.ok() && fault_ == Fault::kCorrupt)
      for (std::string& b : *r)
        if (!b.empty()) b[b.size() / 2] = static_cast<char>(b[b.size() / 2] ^ 0x5a);
    return r;
  }
  std::string Describe() const override { return "test " + inner_->Describe(); }

 private:
  std::unique_ptr<BlobReader> inner_;
  std::shared_ptr<ReaderLog> log_;
  Fault fault_;
};

// ---- reading through the mount -------------------------------------------------------

struct ReadResult {
  int err = 0;  // errno of the failing call, 0 on success
  std::string data;
};

ReadResult ReadWhole(const std::string& path) {
  ReadResult r;
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.ok()) return {errno, ""};
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0) return {errno, r.data};
    if (n == 0) return r;
    r.data.append(buf, static_cast<size_t>(n));
  }
}

// pread of [off, off+len) on an open fd, looping over short reads until EOF.
ReadResult PRead(int fd, uint64_t off, size_t len) {
  ReadResult r;
  // Aligned, in case the fd is O_DIRECT.
  std::unique_ptr<char, decltype(&std::free)> buf(
      static_cast<char*>(std::aligned_alloc(4096, len / 4096 * 4096 + 4096)), &std::free);
  size_t got = 0;
  while (got < len) {
    ssize_t n = pread(fd, buf.get() + got, len - got, static_cast<off_t>(off + got));
    if (n < 0) return {errno, std::string(buf.get(), got)};
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  r.data.assign(buf.get(), got);
  return r;
}

std::set<std::string> List(const std::string& dir) {
  std::set<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.insert(e.path().filename().string());
  EXPECT_FALSE(ec) << dir << ": " << ec.message();
  return names;
}

// name -> d_type, with opendir/readdir ("." and ".." included).
std::map<std::string, unsigned char> ReadDirTypes(const std::string& dir) {
  std::map<std::string, unsigned char> out;
  DIR* d = opendir(dir.c_str());
  EXPECT_NE(d, nullptr) << dir << ": " << std::strerror(errno);
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) out[e->d_name] = e->d_type;
  closedir(d);
  return out;
}

struct stat Lstat(const std::string& path) {
  struct stat st;
  std::memset(&st, 0, sizeof st);
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << path << ": " << std::strerror(errno);
  return st;
}

int LstatErrno(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0 ? 0 : errno;
}

// getxattr's value, or "<errno N>".
std::string GetXattr(const std::string& path, const std::string& name) {
  char buf[1024];
  ssize_t n = lgetxattr(path.c_str(), name.c_str(), buf, sizeof buf);
  if (n < 0) return "<errno " + std::to_string(errno) + ">";
  return std::string(buf, static_cast<size_t>(n));
}

std::set<std::string> ListXattrs(const std::string& path) {
  char buf[4096];
  ssize_t n = llistxattr(path.c_str(), buf, sizeof buf);
  EXPECT_GE(n, 0) << path << ": " << std::strerror(errno);
  std::set<std::string> out;
  for (ssize_t i = 0; i < n;) {
    std::string name(buf + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    out.insert(name);
  }
  return out;
}

// ---- mounts ----------------------------------------------------------------------------

// A mounted LayerFs; unmounts (Unmount(), then a lazy umount as fallback) when
// it goes away, whatever the test's outcome.
struct MountedLayer {
  std::unique_ptr<LayerFs> fs;
  std::string mountpoint;
  ~MountedLayer() { Release(); }
  void Release() {
    if (fs) fs->Unmount();
    if (!mountpoint.empty()) ForceUnmount(mountpoint);
  }
};

// Same for an ImageMount (the stack, then each layer directory).
struct ImageGuard {
  std::unique_ptr<ImageMount> image;
  std::string mountpoint;
  std::vector<std::string> layer_dirs;
  ~ImageGuard() {
    if (image) image->Unmount();
    if (!mountpoint.empty()) ForceUnmount(mountpoint);
    for (const std::string& d : layer_dirs) ForceUnmount(d);
  }
};

class LayerFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    SKIP_WITHOUT_FUSE();
    ChunkStore::Options o;
    o.root = dir_.Path("store");
    auto s = ChunkStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(*s);
  }

  // Writes the members as a tar and converts it (4 KiB chunks).
  Layer Convert(const std::vector<Member>& members, std::vector<std::string> prefetch = {}) {
    const std::string name = "layer" + std::to_string(++layers_);
    const std::string src = Tar(members);
    Layer l;
    WriteFile(dir_.Path(name + ".tar"), src);
    l.path = dir_.Path(name + ".ocix");
    core::ConvertOptions o;
    o.chunk_size = kChunk;
    o.prefetch = std::move(prefetch);
    auto r = core::ConvertLayer(dir_.Path(name + ".tar"), core::Sha256::OciDigest(src), l.path, o);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return l;
    l.converted = *r;
    auto toc = core::ReadTocFromFile(l.path);
    EXPECT_TRUE(toc.ok()) << toc.status().ToString();
    if (toc.ok()) l.toc = std::move(*toc);
    return l;
  }

  std::unique_ptr<BlobReader> FileReader(const Layer& l) {
    auto r = core::OpenFileBlobReader(l.path);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? std::move(*r) : nullptr;
  }
  std::unique_ptr<BlobReader> Reader(const Layer& l, std::shared_ptr<ReaderLog> log, Fault fault = Fault::kNone) {
    return std::make_unique<TestReader>(FileReader(l), std::move(log), fault);
  }

  // Creates a LayerFs for the layer and mounts it on a fresh directory;
  // null (with a failure recorded) when that fails.
  LayerFs* Mount(const Layer& l, std::unique_ptr<BlobReader> blob, LayerFsOptions o = {}) {
    auto fs = LayerFs::Create(l.toc, *store_, std::move(blob), std::move(o));
    EXPECT_TRUE(fs.ok()) << fs.status().ToString();
    if (!fs.ok()) return nullptr;
    MountedLayer& m = mounts_.emplace_back();
    m.mountpoint = dir_.MakeDir("mnt" + std::to_string(mounts_.size()));
    m.fs = std::move(*fs);
    core::Status s = m.fs->Mount(m.mountpoint);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return nullptr;
    mp_ = m.mountpoint;
    return m.fs.get();
  }

  // Path under the most recent mount.
  std::string P(const std::string& rel) const { return mp_ + "/" + rel; }

  // The chunks of the regular file at `path` (absolute, as in the TOC).
  const core::ContentTable* Content(const Layer& l, const std::string& path) {
    const core::Entry* e = l.toc.manifest.Find(path);
    EXPECT_NE(e, nullptr) << path;
    if (e == nullptr) return nullptr;
    const core::ContentTable* t = l.toc.Find(e->digest);
    EXPECT_NE(t, nullptr) << path;
    return t;
  }

  TempDir dir_;
  std::unique_ptr<ChunkStore> store_;
  std::deque<MountedLayer> mounts_;  // after store_: unmounted before it goes
  std::string mp_;
  int layers_ = 0;
};

// ---- metadata ----------------------------------------------------------------------------

TEST_F(LayerFsTest, MetadataOfEveryType) {
  std::vector<Member> v;
  Member d = D("d/", 0750);
  d.uid = 1000;
  d.gid = 1001;
  d.mtime_nsec = 123456789;
  v.push_back(d);
  v.push_back(D("d/sub1/"));
  v.push_back(D("d/sub2/", 0700));
  Member f = F("d/f", "hello", 0640);
  f.uid = 7;
  f.gid = 8;
  f.mtime = 1234567890;
  f.mtime_nsec = 987654321;
  v.push_back(f);
  v.push_back(F("d/big", Pseudo(3 * kChunk + 5, 1), 04755));
  v.push_back(L("d/hard", "d/big"));
  v.push_back(L("d/sub1/hard2", "d/big"));
  // The primary (with the data in the tar) is canonically after its link.
  v.push_back(F("d/sub2/a-long-primary-name", "shared", 0600));
  v.push_back(L("d/h", "d/sub2/a-long-primary-name"));
  Member sym;
  sym.name = "d/sym";
  sym.type = AE_IFLNK;
  sym.perm = 0777;
  sym.symlink = "big";
  v.push_back(sym);
  Member abs = sym;
  abs.name = "d/abs";
  abs.symlink = "/etc/passwd";
  v.push_back(abs);
  Member fifo;
  fifo.name = "d/fifo";
  fifo.type = AE_IFIFO;
  fifo.perm = 0620;
  v.push_back(fifo);
  Member chr;
  chr.name = "d/null";
  chr.type = AE_IFCHR;
  chr.perm = 0666;
  chr.rdev_major = 1;
  chr.rdev_minor = 3;
  v.push_back(chr);
  Member blk;
  blk.name = "d/sda1";
  blk.type = AE_IFBLK;
  blk.perm = 0660;
  blk.gid = 6;
  blk.rdev_major = 8;
  blk.rdev_minor = 1;
  v.push_back(blk);
  Member top = F("top", "t");
  top.mtime = 0;
  top.mtime_nsec = 1;
  v.push_back(top);
  const Layer l = Convert(v);
  ASSERT_NE(Mount(l, FileReader(l)), nullptr);

  struct stat st = Lstat(P("d"));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(st.st_uid, 1000u);
  EXPECT_EQ(st.st_gid, 1001u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1600000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(st.st_nlink, 4u) << "2 + subdirectories sub1 and sub2";
  EXPECT_EQ(Lstat(P("d/sub1")).st_nlink, 2u);
  EXPECT_EQ(Lstat(P("d/sub2")).st_mode & 07777, 0700u);
  struct stat root = Lstat(mp_);
  EXPECT_TRUE(S_ISDIR(root.st_mode));
  EXPECT_EQ(root.st_nlink, 3u) << "2 + d";

  st = Lstat(P("d/f"));
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_uid, 7u);
  EXPECT_EQ(st.st_gid, 8u);
  EXPECT_EQ(st.st_size, 5);
  EXPECT_EQ(st.st_mtim.tv_sec, 1234567890);
  EXPECT_EQ(st.st_mtim.tv_nsec, 987654321);
  EXPECT_EQ(st.st_nlink, 1u);
  st = Lstat(P("top"));
  EXPECT_EQ(st.st_mtim.tv_sec, 0);
  EXPECT_EQ(st.st_mtim.tv_nsec, 1);

  // Three names of one file: one inode, nlink 3, same attributes and bytes.
  struct stat big = Lstat(P("d/big"));
  EXPECT_EQ(big.st_mode & 07777, 04755u);
  EXPECT_EQ(big.st_size, static_cast<off_t>(3 * kChunk + 5));
  EXPECT_EQ(big.st_nlink, 3u);
  for (const char* name : {"d/hard", "d/sub1/hard2"}) {
    SCOPED_TRACE(name);
    struct stat h = Lstat(P(name));
    EXPECT_EQ(h.st_ino, big.st_ino);
    EXPECT_EQ(h.st_nlink, 3u);
    EXPECT_EQ(h.st_mode, big.st_mode);
    EXPECT_EQ(h.st_size, big.st_size);
    EXPECT_TRUE(ReadWhole(P(name)).data == Pseudo(3 * kChunk + 5, 1));
  }
  struct stat prim = Lstat(P("d/sub2/a-long-primary-name"));
  struct stat h = Lstat(P("d/h"));
  EXPECT_EQ(prim.st_ino, h.st_ino);
  EXPECT_EQ(h.st_nlink, 2u);
  EXPECT_EQ(h.st_mode & 07777, 0600u);
  EXPECT_EQ(ReadWhole(P("d/h")).data, "shared");
  EXPECT_NE(Lstat(P("d/f")).st_ino, big.st_ino);

  st = Lstat(P("d/sym"));
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(st.st_size, 3);
  char target[256];
  ssize_t n = readlink(P("d/sym").c_str(), target, sizeof target);
  ASSERT_GE(n, 0) << std::strerror(errno);
  EXPECT_EQ(std::string(target, static_cast<size_t>(n)), "big");
  n = readlink(P("d/abs").c_str(), target, sizeof target);
  ASSERT_GE(n, 0) << std::strerror(errno);
  EXPECT_EQ(std::string(target, static_cast<size_t>(n)), "/etc/passwd");
  EXPECT_EQ(Lstat(P("d/abs")).st_size, 11);
  // Following the relative link reaches the file (inside the mount).
  struct stat via;
  ASSERT_EQ(stat(P("d/sym").c_str(), &via), 0);
  EXPECT_EQ(via.st_ino, big.st_ino);
  // readlink of a non-link.
  EXPECT_EQ(readlink(P("d/f").c_str(), target, sizeof target), -1);
  EXPECT_EQ(errno, EINVAL);

  st = Lstat(P("d/fifo"));
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0620u);
  st = Lstat(P("d/null"));
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  EXPECT_EQ(major(st.st_rdev), 1u);
  EXPECT_EQ(minor(st.st_rdev), 3u);
  st = Lstat(P("d/sda1"));
  EXPECT_TRUE(S_ISBLK(st.st_mode));
  EXPECT_EQ(st.st_gid, 6u);
  EXPECT_EQ(major(st.st_rdev), 8u);
  EXPECT_EQ(minor(st.st_rdev), 1u);

  EXPECT_EQ(LstatErrno(P("d/missing")), ENOENT);
  EXPECT_EQ(LstatErrno(P("d/f/below")), ENOTDIR);

  // readdir: every name once, with its type.
  auto types = ReadDirTypes(P("d"));
  const std::map<std::string, unsigned char> want = {
      {".", DT_DIR},     {"..", DT_DIR},   {"sub1", DT_DIR}, {"sub2", DT_DIR}, {"f", DT_REG},
      {"big", DT_REG},   {"hard", DT_REG}, {"h", DT_REG},    {"sym", DT_LNK},  {"abs", DT_LNK},
      {"fifo", DT_FIFO}, {"null", DT_CHR}, {"sda1", DT_BLK},
  };
  EXPECT_EQ(types, want);
  EXPECT_EQ(List(mp_), (std::set<std::string>{"d", "top"}));
  EXPECT_EQ(List(P("d/sub1")), (std::set<std::string>{"hard2"}));
}

TEST_F(LayerFsTest, ReaddirOfALargeDirectoryPages) {
  // Far more than one readdir buffer (4 KiB) of names.
  std::vector<Member> v;
  v.push_back(D("many/"));
  std::set<std::string> want;
  for (int i = 0; i < 300; ++i) {
    std::string name = "entry-" + std::to_string(i) + "-" + std::string(40 + i % 50, 'n');
    want.insert(name);
    v.push_back(F("many/" + name, std::to_string(i)));
  }
  const Layer l = Convert(v);
  ASSERT_NE(Mount(l, FileReader(l)), nullptr);
  EXPECT_EQ(List(P("many")), want);
  auto types = ReadDirTypes(P("many"));
  EXPECT_EQ(types.size(), want.size() + 2);
  // Second listing (from the kernel's readdir cache) is the same.
  EXPECT_EQ(List(P("many")), want);
  EXPECT_EQ(ReadWhole(P("many/" + *want.begin())).data.empty(), false);
}

// ---- layer semantics: whiteouts, opaque directories, xattrs ------------------------------

TEST_F(LayerFsTest, WhiteoutsOpaqueDirsAndXattrs) {
  // A v2 file capability: cap_net_bind_service permitted and effective.
  const std::string cap("\x01\x00\x00\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", 20);
  std::vector<Member> v;
  Member x = F("x", "has xattrs");
  x.xattrs = {{"user.a", "1"}, {"user.long", std::string(300, 'v')}, {"security.capability", cap}};
  v.push_back(x);
  v.push_back(F(".wh.gone", ""));
  v.push_back(D("d/"));
  v.push_back(F("d/.wh..wh..opq", ""));
  v.push_back(F("d/f", "in an opaque dir"));
  v.push_back(F("d/.wh.old", ""));
  v.push_back(D("plain/"));
  v.push_back(F("plain/g", "g"));
  const Layer l = Convert(v);
  ASSERT_NE(Mount(l, FileReader(l)), nullptr);

  // Whiteouts: character devices 0:0 under the name they delete.
  for (const char* w : {"gone", "d/old"}) {
    SCOPED_TRACE(w);
    struct stat st = Lstat(P(w));
    EXPECT_TRUE(S_ISCHR(st.st_mode));
    EXPECT_EQ(st.st_rdev, makedev(0, 0));
  }
  EXPECT_EQ(LstatErrno(P(".wh.gone")), ENOENT);
  EXPECT_EQ(List(mp_), (std::set<std::string>{"x", "gone", "d", "plain"}));
  auto types = ReadDirTypes(P("d"));
  EXPECT_EQ(types["old"], DT_CHR);
  EXPECT_EQ(types.count(".wh..wh..opq"), 0u);
  EXPECT_EQ(List(P("d")), (std::set<std::string>{"f", "old"}));

  // The opaque marker as overlayfs reads it.
  EXPECT_EQ(GetXattr(P("d"), "trusted.overlay.opaque"), "y");
  EXPECT_EQ(ListXattrs(P("d")).count("trusted.overlay.opaque"), 1u);
  EXPECT_EQ(GetXattr(P("plain"), "trusted.overlay.opaque"), "<errno " + std::to_string(ENODATA) + ">");
  EXPECT_TRUE(ListXattrs(P("plain")).empty());

  EXPECT_EQ(GetXattr(P("x"), "user.a"), "1");
  EXPECT_EQ(GetXattr(P("x"), "user.long"), std::string(300, 'v'));
  EXPECT_EQ(GetXattr(P("x"), "security.capability"), cap);
  EXPECT_EQ(GetXattr(P("x"), "user.missing"), "<errno " + std::to_string(ENODATA) + ">");
  EXPECT_EQ(ListXattrs(P("x")), (std::set<std::string>{"user.a", "user.long", "security.capability"}));
  // Size queries and a buffer too small.
  EXPECT_EQ(lgetxattr(P("x").c_str(), "user.long", nullptr, 0), 300);
  char small[4];
  EXPECT_EQ(lgetxattr(P("x").c_str(), "user.long", small, sizeof small), -1);
  EXPECT_EQ(errno, ERANGE);
  const ssize_t list_size = llistxattr(P("x").c_str(), nullptr, 0);
  EXPECT_EQ(list_size, static_cast<ssize_t>(sizeof "user.a" + sizeof "user.long" + sizeof "security.capability"));
  EXPECT_EQ(llistxattr(P("x").c_str(), small, sizeof small), -1);
  EXPECT_EQ(errno, ERANGE);
}

// ---- reads -------------------------------------------------------------------------------

TEST_F(LayerFsTest, ReadsWholeFilesAroundTheChunkSize) {
  const std::vector<size_t> sizes = {0, 1, kChunk - 1, kChunk, kChunk + 1, 3 * kChunk + 5, 40 * kChunk + 17};
  std::vector<Member> v;
  for (size_t i = 0; i < sizes.size(); ++i)
    v.push_back(F("f" + std::to_string(sizes[i]), Pseudo(sizes[i], static_cast<uint32_t>(i))));
  // Compressible content and a sparse file (holes read as zeros).
  v.push_back(F("zeros", std::string(5 * kChunk + 3, '\0')));
  Member sp = F("sparse", std::string(5 * kChunk + 10, '\0'));
  sp.sparse = {{100, 50}, {3 * kChunk, kChunk + 10 + kChunk}};
  for (const auto& [off, len] : sp.sparse)
    for (int64_t i = 0; i < len; ++i)
      sp.content[static_cast<size_t>(off + i)] = static_cast<char>('A' + (off + i) % 26);
  v.push_back(sp);
  const Layer l = Convert(v);
  LayerFs* fs = Mount(l, FileReader(l));
  ASSERT_NE(fs, nullptr);

  for (const Member& m : v) {
    SCOPED_TRACE(m.name);
    EXPECT_EQ(Lstat(P(m.name)).st_size, static_cast<off_t>(m.content.size()));
    ReadResult r = ReadWhole(P(m.name));
    EXPECT_EQ(r.err, 0) << std::strerror(r.err);
    EXPECT_EQ(r.data.size(), m.content.size());
    EXPECT_TRUE(r.data == m.content) << "content differs";
  }
  EXPECT_EQ(fs->stats().read_errors.load(), 0u);
  EXPECT_GT(fs->stats().op(FuseOp::kRead), 0u);
  EXPECT_GT(fs->stats().op(FuseOp::kLookup), 0u);
}

TEST_F(LayerFsTest, PreadAtArbitraryOffsetsAndPastEof) {
  const std::string content = Pseudo(9 * kChunk + 123, 42);
  const Layer l = Convert({F("f", content), F("small", "abc")});
  ASSERT_NE(Mount(l, FileReader(l)), nullptr);

  for (int direct = 0; direct < 2; ++direct) {
    SCOPED_TRACE(direct ? "O_DIRECT" : "buffered");
    Fd fd(open(P("f").c_str(), O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0)));
    ASSERT_TRUE(fd.ok()) << std::strerror(errno);
    // Deterministic offsets and lengths, many crossing chunk boundaries.
    uint64_t x = 12345 + static_cast<uint64_t>(direct);
    std::vector<std::pair<uint64_t, size_t>> cases = {{0, 1},
                                                      {kChunk - 1, 2},
                                                      {kChunk - 10, 3 * kChunk},
                                                      {2 * kChunk, kChunk},
                                                      {5, 9 * kChunk},
                                                      {8 * kChunk + 100, 5000},
                                                      {content.size() - 1, 1},
                                                      {content.size() - 7, 100},
                                                      {0, content.size()}};
    for (int i = 0; i < 40; ++i) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      uint64_t off = (x >> 20) % content.size();
      size_t len = static_cast<size_t>((x >> 40) % (3 * kChunk)) + 1;
      cases.emplace_back(off, len);
    }
    for (const auto& [off, len] : cases) {
      SCOPED_TRACE("off " + std::to_string(off) + " len " + std::to_string(len));
      ReadResult r = PRead(fd.get(), off, len);
      ASSERT_EQ(r.err, 0) << std::strerror(r.err);
      EXPECT_TRUE(r.data == content.substr(off, len)) << "got " << r.data.size() << " bytes";
    }
    // At and past EOF: 0 bytes.
    char b[16];
    EXPECT_EQ(pread(fd.get(), b, sizeof b, static_cast<off_t>(content.size())), 0);
    EXPECT_EQ(pread(fd.get(), b, sizeof b, static_cast<off_t>(content.size() + 5 * kChunk)), 0);
  }
  Fd small(open(P("small").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(small.ok());
  char b[16];
  EXPECT_EQ(pread(small.get(), b, sizeof b, 1), 2);
  EXPECT_EQ(std::string(b, 2), "bc");
  EXPECT_EQ(pread(small.get(), b, sizeof b, 3), 0);
  EXPECT_EQ(pread(small.get(), b, sizeof b, 100), 0);
}

// Only the chunks a read needs are fetched; the same range again is served
// from the store (no new ReadRanges call), also by another mount of it.
TEST_F(LayerFsTest, FetchesOnlyTheChunksReadAndCachesThem) {
  const std::string content = Pseudo(8 * kChunk + 7, 9);
  const Layer l = Convert({F("f", content)});
  const core::ContentTable* t = Content(l, "/f");
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->chunks.size(), 9u);
  auto log = std::make_shared<ReaderLog>();
  LayerFsOptions no_readahead;
  no_readahead.readahead_max_bytes = 0;
  ASSERT_NE(Mount(l, Reader(l, log), no_readahead), nullptr);
  EXPECT_EQ(log->Calls(), 0) << "nothing is fetched before it is read";

  auto frames = [&](std::vector<size_t> idx) {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (size_t i : idx) out.emplace_back(t->chunks[i].blob_offset, t->chunks[i].frame_size);
    return out;
  };
  auto requested = [&] {
    std::vector<std::pair<uint64_t, uint64_t>> out;
    for (const ByteRange& r : log->Ranges()) out.emplace_back(r.offset, r.length);
    std::sort(out.begin(), out.end());
    return out;
  };
  auto stored = [&] {
    std::vector<size_t> out;
    for (size_t i = 0; i < t->chunks.size(); ++i)
      if (store_->Has(t->chunks[i].digest)) out.push_back(i);
    return out;
  };

  // O_DIRECT: no readahead, so the kernel asks for exactly what is read.
  Fd fd(open(P("f").c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
  ASSERT_TRUE(fd.ok()) << std::strerror(errno);
  ReadResult r = PRead(fd.get(), kChunk + 10, 100);  // inside chunk 1
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(r.data, content.substr(kChunk + 10, 100));
  EXPECT_EQ(log->Calls(), 1);
  EXPECT_EQ(requested(), frames({1}));
  EXPECT_EQ(stored(), (std::vector<size_t>{1}));

  r = PRead(fd.get(), 4 * kChunk - 100, 300);  // chunks 3 and 4, one request
  ASSERT_EQ(r.err, 0);
  EXPECT_EQ(r.data, content.substr(4 * kChunk - 100, 300));
  EXPECT_EQ(log->Calls(), 2);
  EXPECT_EQ(requested(), frames({1, 3, 4}));
  EXPECT_EQ(stored(), (std::vector<size_t>{1, 3, 4}));

  // Again: no new call (the chunks are in the store).
  const int calls = log->Calls();
  EXPECT_EQ(PRead(fd.get(), kChunk + 10, 100).data, content.substr(kChunk + 10, 100));
  EXPECT_EQ(PRead(fd.get(), 4 * kChunk - 100, 300).data, content.substr(4 * kChunk - 100, 300));
  EXPECT_EQ(PRead(fd.get(), kChunk, kChunk).data, content.substr(kChunk, kChunk));
  EXPECT_EQ(log->Calls(), calls);
  const auto before = store_->stats();

  // The last chunk (7 bytes) alone.
  EXPECT_EQ(PRead(fd.get(), 8 * kChunk + 3, 100).data, content.substr(8 * kChunk + 3));
  EXPECT_EQ(requested(), frames({1, 3, 4, 8}));
  EXPECT_GT(store_->stats().fetched_chunks, before.fetched_chunks);

  // A second LayerFs on the same store, with its own reader: cache hits.
  auto log2 = std::make_shared<ReaderLog>();
  ASSERT_NE(Mount(l, Reader(l, log2)), nullptr);
  Fd fd2(open(P("f").c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
  ASSERT_TRUE(fd2.ok()) << std::strerror(errno);
  EXPECT_EQ(PRead(fd2.get(), kChunk + 10, 100).data, content.substr(kChunk + 10, 100));
  EXPECT_EQ(PRead(fd2.get(), 3 * kChunk, 2 * kChunk).data, content.substr(3 * kChunk, 2 * kChunk));
  EXPECT_EQ(log2->Calls(), 0);
  EXPECT_GE(store_->stats().hits, 2u);
}

// Read-ahead in blob order: two misses close together start it (the frames
// that follow come in the same request); the window doubles while most of
// the last read-ahead gets read and halves to nothing when it does not, so
// scattered reads fetch only what they read. Served bytes count each chunk
// once; read-ahead bytes are counted apart.
TEST_F(LayerFsTest, ReadAheadGrowsWhenItIsReadAndStopsWhenItIsNot) {
  auto name = [](int i) { return (i < 10 ? "f0" : "f") + std::to_string(i); };
  std::vector<Member> members;
  for (int i = 0; i < 40; ++i) members.push_back(F(name(i), Pseudo(3000, 100 + i)));  // one incompressible frame each
  const Layer l = Convert(members);
  auto frame = [&](int i) {
    const core::ContentTable* t = Content(l, "/" + name(i));
    return t == nullptr ? core::ChunkLocation{} : t->chunks[0];
  };
  for (int i = 1; i < 40; ++i) ASSERT_GT(frame(i).blob_offset, frame(i - 1).blob_offset) << "path order";
  auto log = std::make_shared<ReaderLog>();
  LayerFsOptions o;
  o.readahead_min_bytes = 8 << 10;
  o.readahead_max_bytes = 16 << 10;
  LayerFs* fs = Mount(l, Reader(l, log), o);
  ASSERT_NE(fs, nullptr);
  std::set<int> read_files;
  auto read = [&](int i) {
    read_files.insert(i);
    return ReadWhole(P(name(i))).data == Pseudo(3000, 100 + i);
  };
  auto stored = [&](int i) { return store_->Has(frame(i).digest); };
  // Files whose frames lie within `window` bytes after file i's frame ends.
  auto within = [&](int i, uint64_t window) {
    int n = 0;
    const uint64_t end = frame(i).blob_offset + frame(i).frame_size;
    for (int j = i + 1; j < 40 && frame(j).blob_offset + frame(j).frame_size <= end + window; ++j) ++n;
    return n;
  };
  auto ahead_total = [&] { return static_cast<int>(fs->stats().readahead_chunks.load()); };
  // Read-ahead arrives on its own thread, after the read returns.
  auto wait_ahead = [&](int n) {
    for (int i = 0; i < 1000 && ahead_total() < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return ahead_total();
  };

  ASSERT_TRUE(read(0));  // first miss: no history, no read-ahead
  EXPECT_EQ(log->Calls(), 1);
  EXPECT_FALSE(stored(1));
  EXPECT_EQ(ahead_total(), 0);

  ASSERT_TRUE(read(1));  // close to the last miss: 8 KiB more, in a request of its own
  const int ahead = within(1, 8 << 10);
  ASSERT_GE(ahead, 2);
  EXPECT_EQ(wait_ahead(ahead), ahead);
  EXPECT_EQ(log->Calls(), 3);
  for (int j = 2; j <= 1 + ahead; ++j) EXPECT_TRUE(stored(j)) << j;
  EXPECT_FALSE(stored(2 + ahead)) << "the window is 8 KiB";
  for (int j = 2; j <= 1 + ahead; ++j) ASSERT_TRUE(read(j));  // all of it read, no fetch
  EXPECT_EQ(log->Calls(), 3);

  // It was read: the window doubles to 16 KiB (the cap).
  const int next = 2 + ahead;
  ASSERT_TRUE(read(next));
  const int ahead2 = within(next, 16 << 10);
  ASSERT_GT(ahead2, ahead);
  EXPECT_EQ(wait_ahead(ahead + ahead2), ahead + ahead2);
  EXPECT_EQ(log->Calls(), 5);
  EXPECT_TRUE(stored(next + ahead2));
  EXPECT_FALSE(stored(next + ahead2 + 1)) << "capped at 16 KiB";

  // None of that was read: the next miss gets half the window (8 KiB).
  ASSERT_TRUE(read(30));
  const int ahead3 = within(30, 8 << 10);
  EXPECT_EQ(wait_ahead(ahead + ahead2 + ahead3), ahead + ahead2 + ahead3);
  EXPECT_EQ(log->Calls(), 7);
  EXPECT_TRUE(stored(30 + ahead3));
  EXPECT_FALSE(stored(31 + ahead3));
  EXPECT_FALSE(stored(29));

  // Not read either: below the minimum, read-ahead stops.
  ASSERT_TRUE(read(20));
  EXPECT_EQ(log->Calls(), 8);
  EXPECT_FALSE(stored(21));
  EXPECT_EQ(ahead_total(), ahead + ahead2 + ahead3);
  EXPECT_GT(fs->stats().readahead_frame_bytes.load(), 0u);

  // Served: the chunks reads were answered from, each once however often read.
  ASSERT_TRUE(read(0));
  ASSERT_TRUE(read(30));
  EXPECT_EQ(fs->stats().served_chunks.load(), read_files.size());
  uint64_t served = 0;
  for (int i : read_files) served += frame(i).frame_size;
  EXPECT_EQ(fs->stats().served_frame_bytes.load(), served);
}

// A file whose third read misses (read in three places, as an executable
// being run is) gets the rest of it fetched in the background, in batches of
// the read-ahead window; two misses (a library's header and data) fetch only
// what they read.
TEST_F(LayerFsTest, ReadAheadFillsAFileThatMissesThrice) {
  const std::string content = Pseudo(10 * kChunk, 31);
  const Layer l = Convert({F("big", content), F("small", Pseudo(100, 32))});
  const core::ContentTable* t = Content(l, "/big");
  ASSERT_NE(t, nullptr);
  ASSERT_EQ(t->chunks.size(), 10u);
  auto log = std::make_shared<ReaderLog>();
  LayerFsOptions o;
  o.readahead_min_bytes = 8 << 10;
  o.readahead_max_bytes = 16 << 10;
  LayerFs* fs = Mount(l, Reader(l, log), o);
  ASSERT_NE(fs, nullptr);
  auto stored = [&] {
    size_t n = 0;
    for (const auto& c : t->chunks) n += store_->Has(c.digest) ? 1 : 0;
    return n;
  };
  Fd fd(open(P("big").c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
  ASSERT_TRUE(fd.ok()) << std::strerror(errno);
  ASSERT_EQ(PRead(fd.get(), 0, kChunk).data, content.substr(0, kChunk));
  EXPECT_EQ(stored(), 1u) << "one miss: only what is read";
  EXPECT_EQ(log->Calls(), 1);

  ASSERT_EQ(PRead(fd.get(), 9 * kChunk, kChunk).data, content.substr(9 * kChunk, kChunk));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_EQ(stored(), 2u) << "two misses: only what is read";
  EXPECT_EQ(log->Calls(), 2);

  ASSERT_EQ(PRead(fd.get(), 5 * kChunk, kChunk).data, content.substr(5 * kChunk, kChunk));
  for (int i = 0; i < 1000 && stored() < 10; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(stored(), 10u) << "the rest of the file follows";
  EXPECT_EQ(fs->stats().readahead_chunks.load(), 7u);
  // 7 chunks of about 4 KiB in batches of at most 16 KiB: 2 requests or more.
  EXPECT_GE(log->Calls(), 3 + 2);
  uint64_t frames = 0;
  for (size_t i : {1, 2, 3, 4, 6, 7, 8}) frames += t->chunks[i].frame_size;
  EXPECT_EQ(fs->stats().readahead_frame_bytes.load(), frames);
  EXPECT_EQ(fs->stats().served_chunks.load(), 3u) << "read-ahead is not counted as served";

  const int calls = log->Calls();
  EXPECT_TRUE(ReadWhole(P("big")).data == content);
  EXPECT_EQ(log->Calls(), calls);
  EXPECT_EQ(fs->stats().served_chunks.load(), 10u);
}

// File fill stops at eight windows: a large file read in places (a
// database, an archive) is not fetched whole.
TEST_F(LayerFsTest, ReadAheadDoesNotFillAFileLargerThanEightWindows) {
  const std::string content = Pseudo(10 * kChunk, 33);
  const Layer l = Convert({F("big", content)});
  const core::ContentTable* t = Content(l, "/big");
  ASSERT_NE(t, nullptr);
  auto log = std::make_shared<ReaderLog>();
  LayerFsOptions o;
  o.readahead_min_bytes = 2 << 10;
  o.readahead_max_bytes = 2 << 10;  // the other 7 chunks' frames exceed 8 x 2 KiB
  ASSERT_NE(Mount(l, Reader(l, log), o), nullptr);
  Fd fd(open(P("big").c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
  ASSERT_TRUE(fd.ok()) << std::strerror(errno);
  for (uint64_t c : {0, 9, 5}) ASSERT_EQ(PRead(fd.get(), c * kChunk, kChunk).data, content.substr(c * kChunk, kChunk));
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  size_t stored = 0;
  for (const auto& c : t->chunks) stored += store_->Has(c.digest) ? 1 : 0;
  EXPECT_EQ(stored, 3u);
  EXPECT_EQ(log->Calls(), 3);
}

// Many threads reading the same chunks at once: each frame is fetched once.
TEST_F(LayerFsTest, ConcurrentReadsFetchEachChunkOnce) {
  const std::string content = Pseudo(6 * kChunk, 77);
  const Layer l = Convert({F("f", content)});
  auto log = std::make_shared<ReaderLog>();
  ASSERT_NE(Mount(l, Reader(l, log)), nullptr);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  const std::string path = P("f");
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&, i] {
      Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
      if (!fd.ok()) {
        ++bad;
        return;
      }
      for (int round = 0; round < 3; ++round) {
        const uint64_t off = static_cast<uint64_t>((i + round) % 3) * kChunk + 17;
        if (PRead(fd.get(), off, 3 * kChunk).data != content.substr(off, 3 * kChunk)) ++bad;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
  std::vector<std::pair<uint64_t, uint64_t>> got;
  for (const ByteRange& r : log->Ranges()) got.emplace_back(r.offset, r.length);
  std::sort(got.begin(), got.end());
  EXPECT_EQ(std::adjacent_find(got.begin(), got.end()), got.end()) << "a frame was fetched twice";
  EXPECT_LE(got.size(), 6u);
}

// A frame that fails verification is EIO and never stored; so is a failing
// reader; a good reader on the same store works afterwards.
TEST_F(LayerFsTest, CorruptOrFailingBlobIsEioAndNothingIsStored) {
  const std::string content = Pseudo(3 * kChunk + 5, 5);
  const Layer l = Convert({F("f", content), F("one", "x")});
  const core::ContentTable* t = Content(l, "/f");
  ASSERT_NE(t, nullptr);
  auto none_stored = [&] {
    for (const auto& c : t->chunks)
      if (store_->Has(c.digest)) return false;
    return true;
  };

  for (Fault fault : {Fault::kCorrupt, Fault::kFail}) {
    SCOPED_TRACE(fault == Fault::kCorrupt ? "corrupt" : "fail");
    auto log = std::make_shared<ReaderLog>();
    LayerFs* fs = Mount(l, Reader(l, log, fault));
    ASSERT_NE(fs, nullptr);
    ReadResult r = ReadWhole(P("f"));
    EXPECT_EQ(r.err, EIO) << "read " << r.data.size() << " bytes";
    {
      Fd fd(open(P("f").c_str(), O_RDONLY | O_CLOEXEC | O_DIRECT));
      ASSERT_TRUE(fd.ok());
      EXPECT_EQ(PRead(fd.get(), kChunk - 1, 2).err, EIO);
      EXPECT_EQ(PRead(fd.get(), 0, 10).err, EIO);
    }
    EXPECT_EQ(ReadWhole(P("one")).err, EIO);
    EXPECT_GT(log->Calls(), 0);
    EXPECT_TRUE(none_stored());
    EXPECT_GT(fs->stats().read_errors.load(), 0u);
    // Metadata does not need the blob.
    EXPECT_EQ(Lstat(P("f")).st_size, static_cast<off_t>(content.size()));
    mounts_.back().Release();
  }
  EXPECT_GT(store_->stats().corrupt_chunks, 0u);
  EXPECT_GT(store_->stats().fetch_errors, 0u);

  ASSERT_NE(Mount(l, FileReader(l)), nullptr);
  ReadResult r = ReadWhole(P("f"));
  EXPECT_EQ(r.err, 0);
  EXPECT_TRUE(r.data == content);
  EXPECT_EQ(ReadWhole(P("one")).data, "x");
  for (const auto& c : t->chunks) EXPECT_TRUE(store_->Has(c.digest));
}

// ---- read-only ---------------------------------------------------------------------------

TEST_F(LayerFsTest, WritesFailWithErofs) {
  const Layer l = Convert({D("d/"), F("d/f", "data"), F("g", "")});
  ASSERT_NE(Mount(l, FileReader(l)), nullptr);
  auto open_errno = [](const std::string& path, int flags) {
    int fd = open(path.c_str(), flags | O_CLOEXEC, 0644);
    if (fd >= 0) {
      close(fd);
      return 0;
    }
    return errno;
  };
  EXPECT_EQ(open_errno(P("d/f"), O_WRONLY), EROFS);
  EXPECT_EQ(open_errno(P("d/f"), O_RDWR), EROFS);
  EXPECT_EQ(open_errno(P("d/f"), O_RDONLY | O_TRUNC), EROFS);
  EXPECT_EQ(open_errno(P("d/new"), O_WRONLY | O_CREAT), EROFS);
  int fd = creat(P("d/new2").c_str(), 0644);
  if (fd >= 0) close(fd);
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(mkdir(P("d/sub").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(unlink(P("d/f").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(rmdir(P("d").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(rename(P("g").c_str(), P("h").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(symlink("x", P("s").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(chmod(P("g").c_str(), 0600), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(lsetxattr(P("g").c_str(), "user.x", "1", 1, 0), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(truncate(P("d/f").c_str(), 0), -1);
  EXPECT_EQ(errno, EROFS);
  // Nothing changed.
  EXPECT_EQ(ReadWhole(P("d/f")).data, "data");
  EXPECT_EQ(List(P("d")), (std::set<std::string>{"f"}));
  struct statvfs sv;
  ASSERT_EQ(statvfs(mp_.c_str(), &sv), 0);
  EXPECT_TRUE(sv.f_flag & ST_RDONLY);
}

// ---- implied directories -----------------------------------------------------------------

TEST_F(LayerFsTest, ImpliedDirectoriesAreSynthesized) {
  const Layer l = Convert({F("a/b/f", "deep"), F("a/c/g", "g"), F("top", "t")});
  ASSERT_NE(Mount(l, FileReader(l)), nullptr);
  EXPECT_EQ(List(mp_), (std::set<std::string>{"a", "top"}));
  EXPECT_EQ(List(P("a")), (std::set<std::string>{"b", "c"}));
  EXPECT_EQ(List(P("a/b")), (std::set<std::string>{"f"}));
  EXPECT_EQ(ReadWhole(P("a/b/f")).data, "deep");
  for (const char* d : {"a", "a/b", "a/c"}) {
    SCOPED_TRACE(d);
    struct stat st = Lstat(P(d));
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_gid, 0u);
    EXPECT_EQ(st.st_mtim.tv_sec, 0);
    EXPECT_EQ(st.st_mtim.tv_nsec, 0);
  }
  EXPECT_EQ(Lstat(P("a")).st_nlink, 4u);
  EXPECT_EQ(Lstat(P("a/b")).st_nlink, 2u);
  EXPECT_EQ(Lstat(mp_).st_nlink, 3u);
  auto types = ReadDirTypes(P("a"));
  EXPECT_EQ(types["b"], DT_DIR);
  EXPECT_EQ(types[".."], DT_DIR);
  // ".." of an implied directory is its parent.
  struct stat dotdot = Lstat(P("a/b/.."));
  EXPECT_EQ(dotdot.st_ino, Lstat(P("a")).st_ino);
}

TEST_F(LayerFsTest, ImpliedDirectoriesTakeLowerAttributes) {
  const Layer l = Convert({F("a/b/f", "deep")});
  // What a lower layer says about /a (an opaque directory there: the flag is
  // not inherited); it knows nothing of /a/b.
  core::Entry lower_a;
  lower_a.path = "/a";
  lower_a.type = core::FileType::kDirectory;
  lower_a.mode = 0710;
  lower_a.uid = 33;
  lower_a.gid = 44;
  lower_a.mtime = {1500000000, 42};
  lower_a.opaque = true;
  lower_a.xattrs = {{"user.from", "lower"}};
  core::Entry lower_file;  // not a directory: ignored
  lower_file.path = "/a/b";
  lower_file.type = core::FileType::kRegular;
  lower_file.mode = 0600;
  std::vector<std::string> asked;
  std::mutex mu;
  LayerFsOptions o;
  o.lower_dir = [&](std::string_view path) -> const core::Entry* {
    std::lock_guard lock(mu);
    asked.emplace_back(path);
    if (path == "/a") return &lower_a;
    if (path == "/a/b") return &lower_file;
    return nullptr;
  };
  ASSERT_NE(Mount(l, FileReader(l), o), nullptr);
  struct stat st = Lstat(P("a"));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0710u);
  EXPECT_EQ(st.st_uid, 33u);
  EXPECT_EQ(st.st_gid, 44u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 42);
  EXPECT_EQ(GetXattr(P("a"), "user.from"), "lower");
  EXPECT_EQ(GetXattr(P("a"), "trusted.overlay.opaque"), "<errno " + std::to_string(ENODATA) + ">");
  st = Lstat(P("a/b"));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(List(P("a")), (std::set<std::string>{"b"}));
  EXPECT_EQ(ReadWhole(P("a/b/f")).data, "deep");
  std::lock_guard lock(mu);
  EXPECT_NE(std::find(asked.begin(), asked.end(), "/a"), asked.end());
  EXPECT_NE(std::find(asked.begin(), asked.end(), "/a/b"), asked.end());
}

// ---- prefetch ----------------------------------------------------------------------------

TEST_F(LayerFsTest, PrefetchAllFetchesEveryChunk) {
  const Layer l = Convert({F("a", Pseudo(3 * kChunk + 1, 1)), F("b", Pseudo(kChunk, 2)), F("c", "c"), F("e", ""),
                           D("d/"), F("d/f", Pseudo(5 * kChunk, 3)), F("d/same", Pseudo(kChunk, 2))},
                          {"/d/f"});
  size_t chunks = 0;
  for (const auto& t : l.toc.contents) chunks += t.chunks.size();
  ASSERT_EQ(chunks, 4u + 1 + 1 + 5);
  auto log = std::make_shared<ReaderLog>();
  LayerFs* fs = Mount(l, Reader(l, log));
  ASSERT_NE(fs, nullptr);
  fs->RunPrefetch(Prefetch::kAll, 2 * kChunk);
  EXPECT_TRUE(fs->stats().prefetch_done.load());
  EXPECT_EQ(fs->stats().prefetched_chunks.load(), chunks);
  EXPECT_EQ(fs->stats().prefetch_errors.load(), 0u);
  for (const auto& t : l.toc.contents)
    for (const auto& c : t.chunks) EXPECT_TRUE(store_->Has(c.digest));
  EXPECT_GT(log->Calls(), 1) << "batches of about 2 chunks";
  // Reads now need no fetch.
  const int calls = log->Calls();
  EXPECT_TRUE(ReadWhole(P("d/f")).data == Pseudo(5 * kChunk, 3));
  EXPECT_TRUE(ReadWhole(P("a")).data == Pseudo(3 * kChunk + 1, 1));
  EXPECT_EQ(log->Calls(), calls);
  // Nothing left: a second run fetches nothing.
  fs->RunPrefetch(Prefetch::kAll);
  EXPECT_EQ(log->Calls(), calls);
}

TEST_F(LayerFsTest, PrefetchListFetchesOnlyTheListedFiles) {
  const Layer l =
      Convert({F("a", Pseudo(3 * kChunk + 1, 1)), D("d/"), F("d/f", Pseudo(2 * kChunk, 3)), F("g", Pseudo(10, 4))},
              {"/d/f", "/g"});
  EXPECT_EQ(l.toc.prefetch, (std::vector<std::string>{"/d/f", "/g"}));
  auto log = std::make_shared<ReaderLog>();
  LayerFs* fs = Mount(l, Reader(l, log));
  ASSERT_NE(fs, nullptr);
  fs->RunPrefetch(Prefetch::kList);
  EXPECT_TRUE(fs->stats().prefetch_done.load());
  EXPECT_EQ(fs->stats().prefetched_chunks.load(), 3u);
  for (const char* p : {"/d/f", "/g"})
    for (const auto& c : Content(l, p)->chunks) EXPECT_TRUE(store_->Has(c.digest)) << p;
  for (const auto& c : Content(l, "/a")->chunks) EXPECT_FALSE(store_->Has(c.digest));

  // kNone does nothing but say it is done.
  auto log2 = std::make_shared<ReaderLog>();
  LayerFs* fs2 = Mount(l, Reader(l, log2));
  ASSERT_NE(fs2, nullptr);
  fs2->RunPrefetch(Prefetch::kNone);
  EXPECT_TRUE(fs2->stats().prefetch_done.load());
  EXPECT_EQ(log2->Calls(), 0);
}

// ---- statfs, lifecycle ---------------------------------------------------------------------

// A layer without extended attributes answers the first getxattr with
// ENOSYS, so the kernel asks that mount no more (overlayfs would ask every
// lower file it looks up for trusted.overlay.metacopy).
TEST_F(LayerFsTest, LayerWithoutXattrsStopsGetxattrRequests) {
  const Layer l = Convert({F("a", "a"), F("b", "b"), D("d/"), F("d/c", "c")});
  LayerFs* fs = Mount(l, FileReader(l));
  ASSERT_NE(fs, nullptr);
  const std::string unsupported = "<errno " + std::to_string(EOPNOTSUPP) + ">";
  EXPECT_EQ(GetXattr(P("a"), "trusted.overlay.metacopy"), unsupported);
  EXPECT_EQ(GetXattr(P("b"), "security.capability"), unsupported);
  EXPECT_EQ(GetXattr(P("d"), "trusted.overlay.opaque"), unsupported);
  EXPECT_EQ(fs->stats().op(FuseOp::kGetxattr), 1u) << "the kernel stops asking after ENOSYS";
  EXPECT_TRUE(ListXattrs(P("d/c")).empty());
  EXPECT_EQ(ReadWhole(P("d/c")).data, "c");
}

TEST_F(LayerFsTest, FilesAndDirectoriesOpenWithoutRoundTrips) {
  const Layer l = Convert({D("d/"), F("d/a", "aa"), F("d/b", "bb"), D("e/"), F("e/c", "cc")});
  LayerFs* fs = Mount(l, FileReader(l));
  ASSERT_NE(fs, nullptr);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ReadWhole(P("d/a")).data, "aa");
    EXPECT_EQ(ReadWhole(P("d/b")).data, "bb");
    EXPECT_EQ(ReadWhole(P("e/c")).data, "cc");
    for (const char* d : {"", "d", "e"}) {
      std::error_code ec;
      size_t n = 0;
      for (auto it = fs::directory_iterator(P(d), ec); !ec && it != fs::directory_iterator(); ++it) ++n;
      EXPECT_FALSE(ec) << d;
      EXPECT_GT(n, 0u) << d;
    }
  }
  // The first of each is answered ENOSYS; the kernel then opens without asking.
  EXPECT_EQ(fs->stats().op(FuseOp::kOpen), 1u);
  EXPECT_EQ(fs->stats().op(FuseOp::kOpendir), 1u);
  // Still read-only, and directories are still directories.
  EXPECT_EQ(::open(P("d/a").c_str(), O_WRONLY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(::open(P("d").c_str(), O_WRONLY | O_CLOEXEC), -1);
  EXPECT_EQ(errno, EISDIR);
}

TEST_F(LayerFsTest, MissingNamesAreCachedAsNegativeEntries) {
  const Layer l = Convert({D("d/"), F("d/c", "c")});
  LayerFs* fs = Mount(l, FileReader(l));
  ASSERT_NE(fs, nullptr);
  EXPECT_EQ(LstatErrno(P("d/missing.so")), ENOENT);
  const uint64_t lookups = fs->stats().op(FuseOp::kLookup);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(LstatErrno(P("d/missing.so")), ENOENT);
  EXPECT_EQ(fs->stats().op(FuseOp::kLookup), lookups) << "the kernel asked again for a name that does not exist";
  EXPECT_EQ(ReadWhole(P("d/c")).data, "c");
}

TEST_F(LayerFsTest, Statfs) {
  std::vector<Member> v = {D("d/"), F("d/f", Pseudo(2 * kChunk, 1)), F("g", "g"), F("a/b/c", "implied")};
  const Layer l = Convert(v);
  LayerFs* fs = Mount(l, FileReader(l));
  ASSERT_NE(fs, nullptr);
  // "/", d, d/f, g, a, a/b, a/b/c.
  EXPECT_EQ(fs->inode_count(), 7u);
  struct statvfs sv;
  ASSERT_EQ(statvfs(mp_.c_str(), &sv), 0) << std::strerror(errno);
  EXPECT_GE(sv.f_files, fs->inode_count());
  EXPECT_EQ(sv.f_namemax, 255u);
  EXPECT_GT(sv.f_bsize, 0u);
  EXPECT_EQ(sv.f_bfree, 0u);
  EXPECT_GE(sv.f_blocks * sv.f_frsize, 2 * kChunk);
  // Also from a subdirectory.
  struct statvfs sub;
  ASSERT_EQ(statvfs(P("d").c_str(), &sub), 0);
  EXPECT_EQ(sub.f_files, sv.f_files);
  EXPECT_EQ(fs->manifest().Find("/d/f")->size, 2 * kChunk);
}

TEST_F(LayerFsTest, UnmountedFromOutsideEndsTheSession) {
  const Layer l = Convert({F("f", "x")});
  LayerFs* fs = Mount(l, FileReader(l));
  ASSERT_NE(fs, nullptr);
  EXPECT_EQ(ReadWhole(P("f")).data, "x");
  EXPECT_TRUE(IsMounted(mp_));
  ASSERT_EQ(umount2(mp_.c_str(), MNT_DETACH), 0) << std::strerror(errno);
  fs->Wait();  // returns: the kernel ended the connection
  fs->Unmount();
  fs->Unmount();  // twice is fine
  EXPECT_FALSE(IsMounted(mp_));
}

TEST_F(LayerFsTest, MountingTwiceFails) {
  const Layer l = Convert({F("f", "x")});
  LayerFs* fs = Mount(l, FileReader(l));
  ASSERT_NE(fs, nullptr);
  EXPECT_FALSE(fs->Mount(dir_.MakeDir("other")).ok()) << "already mounted";
  EXPECT_FALSE(IsMounted(dir_.Path("other")));
  EXPECT_EQ(ReadWhole(P("f")).data, "x");
}

// Regression test for a fixed bug: Unmount() then Mount() again (the header
// allows it) served the tree again, but Unmount() had set stop_prefetch_ and
// Mount() never cleared it, so a prefetch after a remount fetched nothing.
TEST_F(LayerFsTest, RegressionPrefetchAfterRemountWorks) {
  const Layer l = Convert({F("f", Pseudo(3 * kChunk, 1))});
  auto log = std::make_shared<ReaderLog>();
  LayerFs* fs = Mount(l, Reader(l, log));
  ASSERT_NE(fs, nullptr);
  mounts_.back().Release();
  EXPECT_FALSE(IsMounted(mp_));
  ASSERT_TRUE(fs->Mount(mp_).ok());
  EXPECT_TRUE(IsMounted(mp_));
  EXPECT_EQ(Lstat(P("f")).st_size, static_cast<off_t>(3 * kChunk));
  fs->RunPrefetch(Prefetch::kAll);
  EXPECT_EQ(fs->stats().prefetched_chunks.load(), 3u);
  for (const auto& c : Content(l, "/f")->chunks) EXPECT_TRUE(store_->Has(c.digest));
  EXPECT_TRUE(ReadWhole(P("f")).data == Pseudo(3 * kChunk, 1));
}

// ---- ImageMount ------------------------------------------------------------------------------

class ImageMountTest : public LayerFsTest {
 protected:
  // Mounts the layers (bottom first) as one image at a fresh directory.
  ImageMount* MountImage(const std::vector<const Layer*>& layers) {
    std::vector<MountLayer> ml;
    for (const Layer* l : layers) ml.push_back(MountLayer{l->converted.descriptor, FileReader(*l)});
    ImageGuard& g = images_.emplace_back();
    const std::string n = std::to_string(images_.size());
    g.mountpoint = dir_.MakeDir("image" + n);
    const std::string work = dir_.Path("work" + n);
    for (size_t i = 0; i < layers.size(); ++i) g.layer_dirs.push_back(work + "/layers/" + std::to_string(i));
    auto m = ImageMount::Create(std::move(ml), *store_, work, g.mountpoint);
    EXPECT_TRUE(m.ok()) << m.status().ToString();
    if (!m.ok()) return nullptr;
    g.image = std::move(*m);
    mp_ = g.mountpoint;
    return g.image.get();
  }

  std::deque<ImageGuard> images_;  // unmounted first
};

TEST_F(ImageMountTest, TwoLayersStackWithWhiteoutsAndOpaqueDirs) {
  if (!OverlayAvailable()) GTEST_SKIP() << "overlayfs is not available";
  const Layer lower = Convert({F("a", "old a"), F("b", "b"), D("d/"), F("d/x", "x"), F("keep", Pseudo(kChunk + 3, 8))});
  Member new_a = F("a", "new a", 0600);
  new_a.mtime = 1700000000;
  const Layer upper = Convert({new_a, F(".wh.b", ""), D("d/"), F("d/.wh..wh..opq", ""), F("d/y", "y")});
  ImageMount* m = MountImage({&lower, &upper});
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(m->layers().size(), 2u);
  ASSERT_EQ(m->layer_dirs().size(), 2u);

  EXPECT_EQ(List(mp_), (std::set<std::string>{"a", "d", "keep"}));
  EXPECT_EQ(ReadWhole(P("a")).data, "new a");
  struct stat st = Lstat(P("a"));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1700000000);
  EXPECT_EQ(LstatErrno(P("b")), ENOENT);
  EXPECT_EQ(List(P("d")), (std::set<std::string>{"y"}));
  EXPECT_EQ(ReadWhole(P("d/y")).data, "y");
  EXPECT_EQ(LstatErrno(P("d/x")), ENOENT);
  EXPECT_TRUE(ReadWhole(P("keep")).data == Pseudo(kChunk + 3, 8));
  // The stack is read-only.
  EXPECT_EQ(mkdir(P("new").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);

  // Each layer on its own shows the raw layer.
  const std::string l0 = m->layer_dirs()[0], l1 = m->layer_dirs()[1];
  EXPECT_EQ(ReadWhole(l0 + "/a").data, "old a");
  EXPECT_EQ(ReadWhole(l0 + "/d/x").data, "x");
  struct stat wh = Lstat(l1 + "/b");
  EXPECT_TRUE(S_ISCHR(wh.st_mode));
  EXPECT_EQ(wh.st_rdev, makedev(0, 0));
  EXPECT_EQ(GetXattr(l1 + "/d", "trusted.overlay.opaque"), "y");

  m->Unmount();
  EXPECT_FALSE(IsMounted(mp_));
  EXPECT_FALSE(IsMounted(l0));
  EXPECT_FALSE(IsMounted(l1));
  m->Unmount();  // twice is fine
}

TEST_F(ImageMountTest, OneLayerIsBindMountedReadOnly) {
  const Layer only = Convert({D("d/"), F("d/f", Pseudo(2 * kChunk + 1, 3))});
  ImageMount* m = MountImage({&only});
  ASSERT_NE(m, nullptr);
  EXPECT_TRUE(ReadWhole(P("d/f")).data == Pseudo(2 * kChunk + 1, 3));
  EXPECT_EQ(mkdir(P("new").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  m->StartPrefetch(Prefetch::kAll);
  m->Unmount();  // joins the prefetcher
  EXPECT_FALSE(IsMounted(mp_));
}

TEST_F(ImageMountTest, ImpliedDirectoryTakesAttributesFromTheLayerBelow) {
  if (!OverlayAvailable()) GTEST_SKIP() << "overlayfs is not available";
  Member a = D("a/", 0711);
  a.uid = 5;
  a.mtime = 1500000000;
  const Layer lower = Convert({a, F("a/old", "o")});
  const Layer upper = Convert({F("a/new", "n")});  // "a/" implied
  ASSERT_EQ(upper.toc.manifest.Find("/a"), nullptr) << "the converter listed the implied directory";
  ImageMount* m = MountImage({&lower, &upper});
  ASSERT_NE(m, nullptr);
  struct stat st = Lstat(P("a"));
  EXPECT_EQ(st.st_mode & 07777, 0711u);
  EXPECT_EQ(st.st_uid, 5u);
  EXPECT_EQ(st.st_mtim.tv_sec, 1500000000);
  EXPECT_EQ(List(P("a")), (std::set<std::string>{"old", "new"}));
}

// Regression test for a fixed bug: an implied directory whose ancestor a
// middle layer deletes (whiteout) or makes opaque hides the bottom layer's
// directory of that path, so the top layer's directory must get the default
// attributes (0755, root, time 0), as an unpacker applying the layers in
// order would create it. lower_dir looked only at the exact path in each
// lower layer and copied the hidden directory's attributes.
TEST_F(ImageMountTest, RegressionImpliedDirectoryIgnoresAttributesHiddenByAMiddleLayer) {
  if (!OverlayAvailable()) GTEST_SKIP() << "overlayfs is not available";
  Member b = D("a/b/", 0700);
  b.uid = 7;
  b.mtime = 1500000000;
  const Layer bottom = Convert({D("a/"), b, F("a/b/old", "old")});
  const Layer whiteout = Convert({F(".wh.a", "")});
  const Layer opaque = Convert({D("a/"), F("a/.wh..wh..opq", ""), F("a/c", "c")});
  const Layer top = Convert({F("a/b/f", "f")});  // "a/" and "a/b/" implied

  for (const Layer* middle : {&whiteout, &opaque}) {
    SCOPED_TRACE(middle == &whiteout ? "whiteout of /a" : "opaque /a");
    ImageMount* m = MountImage({&bottom, middle, &top});
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(List(P("a/b")), (std::set<std::string>{"f"})) << "the bottom layer's a/b/old is hidden";
    struct stat st = Lstat(P("a/b"));
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    EXPECT_EQ(st.st_uid, 0u);
    EXPECT_EQ(st.st_mtim.tv_sec, 0);
    m->Unmount();
  }
}

TEST_F(ImageMountTest, FailureLeavesNothingMounted) {
  const Layer good = Convert({F("f", "x")});
  core::Descriptor bad = good.converted.descriptor;
  bad.annotations[std::string(core::kAnnotationTocDigest)] = "sha256:" + std::string(64, '0');
  std::vector<MountLayer> ml;
  ml.push_back(MountLayer{good.converted.descriptor, FileReader(good)});
  ml.push_back(MountLayer{bad, FileReader(good)});
  ImageGuard& g = images_.emplace_back();
  g.mountpoint = dir_.MakeDir("image-bad");
  const std::string work = dir_.Path("work-bad");
  g.layer_dirs = {work + "/layers/0", work + "/layers/1"};
  auto m = ImageMount::Create(std::move(ml), *store_, work, g.mountpoint);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), core::Code::kCorruption) << m.status().ToString();
  for (const std::string& d : g.layer_dirs) EXPECT_FALSE(IsMounted(d)) << d;
  EXPECT_FALSE(IsMounted(g.mountpoint));
  EXPECT_EQ(ImageMount::Create({}, *store_, work, g.mountpoint).status().code(), core::Code::kInvalidArgument);
}

}  // namespace
}  // namespace ocix::fuse

namespace ocix::fuse {
namespace {

// A mount still in use (an open file; in production, an overlay of a running
// container) stays alive after the lazy unmount; Unmount must still end the
// session (by aborting the connection through fusectl) instead of hanging.
TEST_F(LayerFsTest, UnmountWhileBusyEnds) {
  const Layer l = Convert({F("busy", Pseudo(3 * kChunk, 7))});
  LayerFs* fs = Mount(l, FileReader(l));
  ASSERT_NE(fs, nullptr);
  // systemd mounts fusectl at boot; where nothing did, do it as it would.
  if (std::filesystem::is_empty("/sys/fs/fuse/connections"))
    ::mount("fusectl", "/sys/fs/fuse/connections", "fusectl", 0, nullptr);
  if (std::filesystem::is_empty("/sys/fs/fuse/connections")) GTEST_SKIP() << "fusectl is not mounted";
  const int fd = ::open(P("busy").c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  auto start = std::chrono::steady_clock::now();
  fs->Unmount();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  char b = 0;
  EXPECT_LT(::pread(fd, &b, 1, 0), 0);  // the connection is gone: an error, not a hang
  ::close(fd);
}

}  // namespace
}  // namespace ocix::fuse

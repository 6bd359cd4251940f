#include "ocix/core/codec.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <utility>
#include <vector>

#include "ocix/core/blake3.h"
#include "ocix/core/cbor.h"
#include "ocix/core/limits.h"
#include "ocix/core/manifest.h"
#include "ocix/core/status.h"

namespace ocix::core {
namespace {

namespace c = cbor;

// ---- helpers -------------------------------------------------------------------

std::string ToHex(std::string_view s) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char b : s) {
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

// Hex with spaces and line breaks allowed -> bytes.
std::vector<uint8_t> Unhex(std::string_view hex) {
  std::vector<uint8_t> out;
  int hi = -1;
  for (char ch : hex) {
    if (ch == ' ' || ch == '\n') continue;
    int v = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    EXPECT_GE(v, 0) << "bad hex in test";
    if (hi < 0) {
      hi = v;
    } else {
      out.push_back(static_cast<uint8_t>(hi << 4 | v));
      hi = -1;
    }
  }
  EXPECT_EQ(hi, -1) << "odd hex in test";
  return out;
}

std::string Compact(std::string_view hex) {
  std::string out;
  for (char ch : hex)
    if (ch != ' ' && ch != '\n') out += ch;
  return out;
}

std::vector<uint8_t> AsBytes(const std::string& s) { return {s.begin(), s.end()}; }

std::string Repeat(std::string_view s, size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) out += s;
  return out;
}

// BLAKE3 of empty input (official vector, length 0).
constexpr char kEmptyB3Hex[] = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
Digest EmptyB3() { return *Digest::FromHex(kEmptyB3Hex); }
Digest Filled(uint8_t b) {
  Digest d;
  d.bytes.fill(b);
  return d;
}

Entry Dir(std::string path, uint32_t mode = 0755) {
  Entry e;
  e.path = std::move(path);
  e.type = FileType::kDirectory;
  e.mode = mode;
  return e;
}
Entry File(std::string path, uint64_t size, Digest d, uint32_t mode = 0644) {
  Entry e;
  e.path = std::move(path);
  e.type = FileType::kRegular;
  e.mode = mode;
  e.size = size;
  e.digest = d;
  return e;
}
Entry EmptyFile(std::string path, uint32_t mode = 0644) { return File(std::move(path), 0, EmptyB3(), mode); }
Entry Hardlink(std::string path, std::string target) {
  Entry e;
  e.path = std::move(path);
  e.type = FileType::kHardlink;
  e.target = std::move(target);
  return e;
}
Entry Symlink(std::string path, std::string target) {
  Entry e;
  e.path = std::move(path);
  e.type = FileType::kSymlink;
  e.mode = 0777;
  e.target = std::move(target);
  return e;
}
Entry Device(std::string path, FileType t, uint32_t major, uint32_t minor, uint32_t mode = 0666) {
  Entry e;
  e.path = std::move(path);
  e.type = t;
  e.mode = mode;
  e.rdev_major = major;
  e.rdev_minor = minor;
  return e;
}
Entry Fifo(std::string path, uint32_t mode = 0600) {
  Entry e;
  e.path = std::move(path);
  e.type = FileType::kFifo;
  e.mode = mode;
  return e;
}
Entry Whiteout(std::string path) {
  Entry e;
  e.path = std::move(path);
  e.type = FileType::kWhiteout;
  return e;
}

void SortCanonical(Manifest& m) {
  std::sort(m.entries.begin(), m.entries.end(),
            [](const Entry& a, const Entry& b) { return CanonicalLess(a.path, b.path); });
}

std::string EncodeHex(const Manifest& m) {
  auto r = EncodeManifest(m);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? ToHex(*r) : "<error: " + r.status().ToString() + ">";
}

// Checks the golden bytes both ways: encode(m) == golden, decode(golden) == m.
void ExpectGolden(const Manifest& m, std::string_view golden_hex) {
  const std::string want = Compact(golden_hex);
  EXPECT_EQ(EncodeHex(m), want);
  std::vector<uint8_t> bytes = Unhex(golden_hex);
  auto d = DecodeManifest(bytes);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(*d == m);
}

void ExpectRoundTrip(const Manifest& m) {
  auto bytes = EncodeManifest(m);
  ASSERT_TRUE(bytes.ok()) << bytes.status().ToString();
  auto d = DecodeManifest(AsBytes(*bytes));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_TRUE(*d == m);
  ASSERT_EQ(d->entries.size(), m.entries.size());
  for (size_t i = 0; i < m.entries.size(); ++i) EXPECT_TRUE(d->entries[i] == m.entries[i]) << m.entries[i].path;
  auto again = EncodeManifest(*d);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(ToHex(*again), ToHex(*bytes));
}

// ---- golden vectors (hand-written from docs: CBOR heads, sorted keys) -------

// Text strings used below:
//   "files" 6566696c6573  "version" 6776657273696f6e  "layer" 656c61796572
//   "gid" 63676964  "uid" 63756964  "mode" 646d6f6465  "mtime" 656d74696d65
//   "size" 6473697a65  "b3" 626233  "rdev" 6472646576  "xattrs" 66786174747273
//   "link" 646c696e6b  "user" 6475736572  "group" 6567726f7570
//   "target" 66746172676574  "opaque" 666f7061717565  "whiteout" 6877686974656f7574
//   "data" 6464617461  "chunks" 666368756e6b73
// Entry keys sort by length, then bytewise: b3 < gid < uid < data < mode <
// rdev < size < user < group < mtime < chunks < opaque < target < xattrs.

TEST(CodecGoldenTest, V1Empty) {
  Manifest m;
  m.version = 1;
  ExpectGolden(m,
               "da6f636978"            // tag 1868786040 ("ocix")
               " a2"                   // map(2)
               " 6566696c6573 a0"      // "files": {}
               " 6776657273696f6e 01"  // "version": 1
  );
}

TEST(CodecGoldenTest, V0Empty) {
  Manifest m;
  m.version = 0;
  ExpectGolden(m,
               "c6"                    // tag 6 (the seed tool's outer tag)
               " da6f636978"           // tag "ocix"
               " a2 6566696c6573 a0"   // {"files": {},
               " 6776657273696f6e 00"  //  "version": 0}
  );
}

TEST(CodecGoldenTest, V1DirAndEmptyFile) {
  Manifest m;
  m.version = 1;
  m.entries.push_back(Dir("/", 0755));
  Entry f = EmptyFile("/a", 0644);
  f.mtime = {1, 2};
  m.entries.push_back(f);
  ExpectGolden(m,
               "da6f636978 a2"
               " 6566696c6573 a2"  // "files": map(2)
               // "/": {gid 0, uid 0, mode 040755 (0x41ed), mtime [0, 0]}
               "  612f a4 63676964 00 63756964 00 646d6f6465 1941ed 656d74696d65 820000"
               // "/a": {b3, gid, uid, mode 0100644 (0x81a4), size 0, mtime [1, 2]}
               "  622f61 a6"
               "   626233 5820 af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
               "   63676964 00 63756964 00 646d6f6465 1981a4 6473697a65 00 656d74696d65 820102"
               " 6776657273696f6e 01");
}

TEST(CodecGoldenTest, V1DeviceFileHardlinkSymlinkFifo) {
  Manifest m;
  m.version = 1;
  Entry cdev = Device("/c", FileType::kCharDevice, 1, 3, 0666);
  cdev.xattrs.push_back({"user.x", std::string("\x01", 1)});
  m.entries.push_back(cdev);
  m.entries.push_back(EmptyFile("/f"));
  m.entries.push_back(Hardlink("/h", "/f"));
  Entry l = Symlink("/l", "a");
  l.uid = l.gid = 1000;
  l.user = "u";
  l.group = "g";
  l.mtime = {-1, 999'999'999};
  m.entries.push_back(l);
  m.entries.push_back(Fifo("/p", 0600));
  ExpectGolden(m,
               "da6f636978 a2 6566696c6573 a5"
               // "/c": char device 020666 = 0x21b6, rdev [1, 3], xattrs {"user.x": h'01'}
               " 622f63 a6 63676964 00 63756964 00 646d6f6465 1921b6 6472646576 820103"
               "  656d74696d65 820000 66786174747273 a1 66757365722e78 4101"
               // "/f": empty regular file
               " 622f66 a6 626233 5820 af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
               "  63676964 00 63756964 00 646d6f6465 1981a4 6473697a65 00 656d74696d65 820000"
               // "/h": {"link": "/f"} and nothing else
               " 622f68 a1 646c696e6b 622f66"
               // "/l": symlink 0120777 = 0xa1ff, uid/gid 1000 (0x03e8), user "u",
               //       group "g", mtime [-1 (0x20), 999999999 (0x3b9ac9ff)], target "a"
               " 622f6c a7 63676964 1903e8 63756964 1903e8 646d6f6465 19a1ff 6475736572 6175"
               "  6567726f7570 6167 656d74696d65 82 20 1a3b9ac9ff 66746172676574 6161"
               // "/p": fifo 010600 = 0x1180
               " 622f70 a4 63676964 00 63756964 00 646d6f6465 191180 656d74696d65 820000"
               " 6776657273696f6e 01");
}

TEST(CodecGoldenTest, V1SparseFileWithChunks) {
  Manifest m;
  m.version = 1;
  Entry s = File("/s", 8192, Filled(0x11));
  s.data = std::vector<Extent>{{4096, 100}};
  s.chunks = ChunkList{4096, {Filled(0x22), Filled(0x33)}};
  m.entries.push_back(s);
  ExpectGolden(m,
               "da6f636978 a2 6566696c6573 a1"
               " 622f73 a8"
               "  626233 5820" +
                   Repeat("11", 32) +
                   "  63676964 00 63756964 00"
                   "  6464617461 81 82 191000 1864"  // "data": [[4096, 100]]
                   "  646d6f6465 1981a4"
                   "  6473697a65 192000"  // "size": 8192
                   "  656d74696d65 820000"
                   "  666368756e6b73 82 191000 82"  // "chunks": [4096, [d1, d2]]
                   "   5820" +
                   Repeat("22", 32) + " 5820" + Repeat("33", 32) + " 6776657273696f6e 01");
}

TEST(CodecGoldenTest, V1LayerWithOpaqueDirAndWhiteout) {
  Manifest m;
  m.version = 1;
  m.layer = true;
  Entry d = Dir("/d");
  d.opaque = true;
  m.entries.push_back(d);
  m.entries.push_back(Whiteout("/w"));
  ExpectGolden(m,
               "da6f636978 a3"
               " 6566696c6573 a2"
               "  622f64 a5 63676964 00 63756964 00 646d6f6465 1941ed 656d74696d65 820000"
               "   666f7061717565 f5"               // "opaque": true
               "  622f77 a1 6877686974656f7574 f5"  // {"whiteout": true}
               " 656c61796572 f5"                   // "layer": true ("files" < "layer")
               " 6776657273696f6e 01");
}

// Version 0 strings: "type" 6474797065 "directory" 696469726563746f7279
// "regularfile" 6b726567756c617266696c65 "username" 68757365726e616d65
// "groupname" 6967726f75706e616d65 "character" 69636861726163746572
// "symlink" 6773796d6c696e6b "fifo" 646669666f "atime" 656174696d65
// "1970-01-01T00:00:0" = 313937302d30312d30315430303a30303a30
// mode [[r,w,x],[r,w,x],[r,w,x],setuid,setgid,sticky], true f5, false f4.
TEST(CodecGoldenTest, V0SeedFormat) {
  Manifest m;
  m.version = 0;
  m.entries.push_back(Dir("/", 0755));
  Entry a = EmptyFile("/a", 04644);
  a.uid = 1000;
  a.user = "u";
  a.mtime = {1, 500'000'000};
  m.entries.push_back(a);
  m.entries.push_back(Hardlink("/b", "/a"));
  Entry cdev = Device("/c", FileType::kCharDevice, 1, 3, 0620);
  cdev.gid = 5;
  cdev.group = "tty";
  cdev.atime = Timestamp{2, 0};
  m.entries.push_back(cdev);
  m.entries.push_back(Fifo("/p", 01777));
  m.entries.push_back(Symlink("/s", "a"));
  const std::string t0 = "74 313937302d30312d30315430303a30303a30305a";  // "1970-01-01T00:00:00Z"
  ExpectGolden(
      m,
      "c6 da6f636978 a2 6566696c6573 a6"
      // "/": {mode 0755, type "directory", mtime, directory: []}
      " 612f a4 646d6f6465 86 83f5f5f5 83f5f4f5 83f5f4f5 f4f4f4"
      "  6474797065 696469726563746f7279"
      "  656d74696d65 " +
          t0 +
          "  696469726563746f7279 80"
          // "/a": {uid 1000, mode 04644, type, mtime "...:01.5Z", username "u",
          //        regularfile: [0, b3]}
          " 622f61 a6 63756964 1903e8"
          "  646d6f6465 86 83f5f5f4 83f5f4f4 83f5f4f4 f5f4f4"
          "  6474797065 6b726567756c617266696c65"
          "  656d74696d65 76 313937302d30312d30315430303a30303a30312e355a"
          "  68757365726e616d65 6175"
          "  6b726567756c617266696c65 82 00 5820 af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
          // "/b": {link: ["/a"], type: "link"} only
          " 622f62 a2 646c696e6b 81 622f61 6474797065 646c696e6b"
          // "/c": {gid 5, mode 0620, type "character", atime, mtime,
          //        character: [1, 3], groupname "tty"}
          " 622f63 a7 63676964 05"
          "  646d6f6465 86 83f5f5f4 83f4f5f4 83f4f4f4 f4f4f4"
          "  6474797065 69636861726163746572"
          "  656174696d65 74 313937302d30312d30315430303a30303a30325a"
          "  656d74696d65 " +
          t0 +
          "  69636861726163746572 820103"
          "  6967726f75706e616d65 63747479"
          // "/p": {fifo: [], mode 01777, type "fifo", mtime}
          " 622f70 a4 646669666f 80"
          "  646d6f6465 86 83f5f5f5 83f5f5f5 83f5f5f5 f4f4f5"
          "  6474797065 646669666f"
          "  656d74696d65 " +
          t0 +
          // "/s": {mode 0777, type "symlink", mtime, symlink: ["a"]}
          " 622f73 a4 646d6f6465 86 83f5f5f5 83f5f5f5 83f5f5f5 f4f4f4"
          "  6474797065 6773796d6c696e6b"
          "  656d74696d65 " +
          t0 +
          "  6773796d6c696e6b 81 6161"
          " 6776657273696f6e 00");
}

// ---- round trips ---------------------------------------------------------------

Manifest RichV1() {
  Manifest m;
  m.version = 1;
  m.entries.push_back(Dir("/"));
  m.entries.push_back(Dir("/bin"));
  m.entries.push_back(File("/bin/su", 3, Blake3::Hash(std::string_view("abc")), 04755));
  m.entries.push_back(File("/bin/wall", 5, Blake3::Hash(std::string_view("hello")), 02755));
  m.entries.push_back(Dir("/tmp", 01777));
  m.entries.push_back(Dir("/dev"));
  m.entries.push_back(Device("/dev/null", FileType::kCharDevice, 1, 3));
  Entry sda = Device("/dev/sda", FileType::kBlockDevice, 8, 0, 0660);
  sda.gid = 6;
  sda.group = "disk";
  m.entries.push_back(sda);
  m.entries.push_back(Device("/dev/big", FileType::kBlockDevice, kMaxDeviceNumber, kMaxDeviceNumber));
  m.entries.push_back(Fifo("/dev/initctl", 0600));
  Entry home = Dir("/home/u", 0700);
  home.uid = home.gid = 1000;
  home.user = "user";
  home.group = "users";
  home.mtime = {-86400LL * 365 * 30, 123'456'789};
  m.entries.push_back(Dir("/home"));
  m.entries.push_back(home);
  Entry sparse = File("/home/u/sparse", uint64_t{1} << 20, Filled(0x5a));
  sparse.data = std::vector<Extent>{{0, 10}, {4096, 4096}, {uint64_t{1} << 19, 1}};
  sparse.chunks = ChunkList{65536, std::vector<Digest>(16, Filled(0x42))};
  sparse.mtime = {1'700'000'000, 1};
  m.entries.push_back(sparse);
  Entry holes = File("/home/u/allholes", 12345, Filled(0x01));
  holes.data = std::vector<Extent>{};
  m.entries.push_back(holes);
  Entry x = File("/home/u/x", 2, Blake3::Hash(std::string_view("hi")), 0640);
  x.xattrs = {{"user.a", std::string("\0\x01\xff", 3)},
              {"user.bb", ""},
              {"security.selinux", "system_u:object_r:user_home_t:s0"}};
  m.entries.push_back(x);
  m.entries.push_back(Symlink("/home/u/link", "../../bin/su"));
  m.entries.push_back(Hardlink("/home/u/hard", "/bin/su"));
  m.entries.push_back(Hardlink("/home/u/hard2", "/bin/su"));
  Entry old = EmptyFile("/old");
  old.mtime = {std::numeric_limits<int64_t>::min(), 0};
  m.entries.push_back(old);
  Entry huge = File("/huge", kMaxFileSize, Filled(0x77));
  huge.uid = huge.gid = static_cast<uint32_t>(kMaxId);
  m.entries.push_back(huge);
  SortCanonical(m);
  return m;
}

TEST(CodecRoundTripTest, RichV1) {
  Manifest m = RichV1();
  ASSERT_TRUE(ValidateManifest(m).ok()) << ValidateManifest(m).ToString();
  ExpectRoundTrip(m);
}

TEST(CodecRoundTripTest, RichV0) {
  Manifest m;
  m.version = 0;
  m.entries.push_back(Dir("/"));
  m.entries.push_back(Dir("/bin"));
  Entry su = File("/bin/su", 3, Blake3::Hash(std::string_view("abc")), 04755);
  su.atime = Timestamp{1'600'000'000, 5};
  su.ctime = Timestamp{1'600'000'001, 0};
  su.btime = Timestamp{-1, 999'999'999};
  m.entries.push_back(su);
  m.entries.push_back(File("/bin/wall", 5, Blake3::Hash(std::string_view("hello")), 02755));
  m.entries.push_back(Hardlink("/bin/sudo", "/bin/su"));
  m.entries.push_back(Dir("/tmp", 01777));
  m.entries.push_back(Dir("/dev"));
  m.entries.push_back(Device("/dev/null", FileType::kCharDevice, 1, 3));
  Entry sda = Device("/dev/sda", FileType::kBlockDevice, 8, 0, 0660);
  sda.gid = 6;
  sda.group = "disk";
  m.entries.push_back(sda);
  m.entries.push_back(Fifo("/dev/initctl", 0600));
  Entry home = Dir("/home", 0700);
  home.uid = 1000;
  home.gid = 1000;
  home.user = "user";
  home.group = "users";
  home.mtime = {-86400LL * 365 * 30, 123'456'789};
  m.entries.push_back(home);
  m.entries.push_back(Symlink("/home/link", "../bin/su"));
  Entry all = EmptyFile("/all", 07777);
  all.mtime = {253402300799, 999'999'999};  // 9999-12-31T23:59:59.999999999Z
  m.entries.push_back(all);
  Entry zero = EmptyFile("/year0", 0);
  zero.mtime = {-62167219200, 0};  // 0000-01-01T00:00:00Z
  m.entries.push_back(zero);
  SortCanonical(m);
  ASSERT_TRUE(ValidateManifest(m).ok()) << ValidateManifest(m).ToString();
  ExpectRoundTrip(m);
}

TEST(CodecRoundTripTest, V1Layer) {
  Manifest m;
  m.version = 1;
  m.layer = true;
  m.entries.push_back(Whiteout("/etc/old"));
  Entry var = Dir("/var");
  var.opaque = true;
  m.entries.push_back(var);
  m.entries.push_back(EmptyFile("/var/new"));
  m.entries.push_back(EmptyFile("/usr/lib/x"));  // parents from lower layers
  m.entries.push_back(Whiteout("/usr/lib/gone"));
  SortCanonical(m);
  ExpectRoundTrip(m);
}

TEST(CodecRoundTripTest, EveryModeBitV0AndV1) {
  for (uint64_t version : {0u, 1u}) {
    for (uint32_t bit = 0; bit < 12; ++bit) {
      Manifest m;
      m.version = version;
      m.entries.push_back(EmptyFile("/f", 1u << bit));
      ExpectRoundTrip(m);
      auto d = DecodeManifest(AsBytes(*EncodeManifest(m)));
      ASSERT_TRUE(d.ok());
      EXPECT_EQ(d->entries[0].mode, 1u << bit) << "version " << version;
    }
  }
}

TEST(CodecRoundTripTest, DecodeEncodeGivesInputBytesBack) {
  // Inputs not produced by our encoder: built with the CBOR writer directly.
  std::vector<std::pair<std::string, c::Item>> entry;
  entry.emplace_back("mode", c::Uint(S_IFDIR | 0700));
  entry.emplace_back("uid", c::Uint(4));
  entry.emplace_back("gid", c::Uint(5));
  std::vector<c::Item> t;
  t.push_back(c::Int(-5));
  t.push_back(c::Uint(7));
  entry.emplace_back("mtime", c::Array(std::move(t)));
  std::vector<std::pair<std::string, c::Item>> files;
  files.emplace_back("/x", c::Map(std::move(entry)));
  std::vector<std::pair<std::string, c::Item>> top;
  top.emplace_back("files", c::Map(std::move(files)));
  top.emplace_back("version", c::Uint(1));
  c::Item root = c::Tag(kOcixTag, c::Map(std::move(top)));
  std::string bytes = c::Serialize(root.get());
  auto d = DecodeManifest(AsBytes(bytes));
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->entries.size(), 1u);
  EXPECT_EQ(d->entries[0].type, FileType::kDirectory);
  EXPECT_EQ(d->entries[0].mode, 0700u);
  EXPECT_EQ(d->entries[0].uid, 4u);
  EXPECT_EQ(d->entries[0].gid, 5u);
  EXPECT_EQ(d->entries[0].mtime, (Timestamp{-5, 7}));
  auto e = EncodeManifest(*d);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(ToHex(*e), ToHex(bytes));
}

TEST(ManifestTest, FindUsesCanonicalOrder) {
  Manifest m = RichV1();
  for (const Entry& e : m.entries) {
    const Entry* f = m.Find(e.path);
    ASSERT_NE(f, nullptr) << e.path;
    EXPECT_EQ(f->path, e.path);
  }
  EXPECT_EQ(m.Find("/nope"), nullptr);
  EXPECT_EQ(m.Find(""), nullptr);
  EXPECT_EQ(m.Find("/home/u/zzzzzzzzzzzzzzzzzzzzzzz"), nullptr);
}

TEST(ManifestTest, ParentPath) {
  EXPECT_EQ(ParentPath("/"), "");
  EXPECT_EQ(ParentPath("/a"), "/");
  EXPECT_EQ(ParentPath("/a/b"), "/a");
  EXPECT_EQ(ParentPath("/a/bc/d"), "/a/bc");
}

TEST(ManifestTest, ValidatePath) {
  for (const char* ok : {"/", "/a", "/a/b", "/.a", "/..a", "/a..", "/a b", "/\xc3\xbc"}) {
    EXPECT_TRUE(ValidatePath(ok).ok()) << ok;
  }
  EXPECT_TRUE(ValidatePath("/" + std::string(255, 'n')).ok());
  std::string long_ok;
  while (long_ok.size() + 101 <= kMaxPathBytes) long_ok += "/" + std::string(100, 'p');
  EXPECT_TRUE(ValidatePath(long_ok).ok());
  for (std::string bad :
       {std::string(""), std::string("a"), std::string("a/b"), std::string("//"), std::string("/a//b"),
        std::string("/a/"), std::string("/."), std::string("/.."), std::string("/a/."), std::string("/a/../b"),
        std::string("/a\0b", 4), std::string("/\xff"), std::string("/a\xc0\x80"), std::string("/\xed\xa0\x80"),
        "/" + std::string(256, 'n'), "/" + std::string(kMaxPathBytes, 'p')}) {
    Status s = ValidatePath(bad);
    EXPECT_FALSE(s.ok()) << ToHex(bad);
    EXPECT_EQ(s.code(), Code::kCorruption) << ToHex(bad);
  }
}

// ---- should-fail corpus --------------------------------------------------------

using KV = std::vector<std::pair<std::string, c::Item>>;

template <typename... T>
c::Item A(T... items) {
  std::vector<c::Item> v;
  (v.push_back(std::move(items)), ...);
  return c::Array(std::move(v));
}
c::Item U(uint64_t v) { return c::Uint(v); }
c::Item Txt(std::string_view s) { return c::Text(s); }
c::Item Bin(const std::string& s) { return c::Bytes({reinterpret_cast<const uint8_t*>(s.data()), s.size()}); }
c::Item B3(const Digest& d) { return c::Bytes(d.bytes); }

KV With(KV kv, std::string key, c::Item v) {
  kv.erase(std::remove_if(kv.begin(), kv.end(), [&](const auto& p) { return p.first == key; }), kv.end());
  kv.emplace_back(std::move(key), std::move(v));
  return kv;
}
KV Without(KV kv, std::string_view key) {
  kv.erase(std::remove_if(kv.begin(), kv.end(), [&](const auto& p) { return p.first == key; }), kv.end());
  return kv;
}
c::Item Mp(KV kv) { return c::Map(std::move(kv)); }

KV V1Common(uint32_t full_mode) {
  KV kv;
  kv.emplace_back("mode", U(full_mode));
  kv.emplace_back("uid", U(0));
  kv.emplace_back("gid", U(0));
  kv.emplace_back("mtime", A(c::Int(0), U(0)));
  return kv;
}
KV V1Dir() { return V1Common(S_IFDIR | 0755); }
KV V1File(uint64_t size, const Digest& d) {
  KV kv = V1Common(S_IFREG | 0644);
  kv.emplace_back("size", U(size));
  kv.emplace_back("b3", B3(d));
  return kv;
}
KV V1Empty() { return V1File(0, EmptyB3()); }
KV V1Link(std::string_view target) {
  KV kv;
  kv.emplace_back("link", Txt(target));
  return kv;
}

// Tagged v1 document around `files`, with optional extra top-level pairs.
std::vector<uint8_t> V1Doc(KV files, bool layer = false, KV extra_top = {}) {
  KV top;
  top.emplace_back("files", Mp(std::move(files)));
  top.emplace_back("version", U(1));
  if (layer) top.emplace_back("layer", c::Bool(true));
  for (auto& kv : extra_top) top = With(std::move(top), kv.first, std::move(kv.second));
  c::Item root = c::Tag(kOcixTag, Mp(std::move(top)));
  return AsBytes(c::Serialize(root.get()));
}

KV Files() { return {}; }
KV Add(KV files, std::string path, KV entry) {
  files.emplace_back(std::move(path), Mp(std::move(entry)));
  return files;
}

c::Item V0Mode(uint32_t perm) {
  auto b = [&](uint32_t bit) { return c::Bool((perm & bit) != 0); };
  return A(A(b(0400), b(0200), b(0100)), A(b(040), b(020), b(010)), A(b(04), b(02), b(01)), b(04000), b(02000),
           b(01000));
}
KV V0Common(std::string_view type, uint32_t perm) {
  KV kv;
  kv.emplace_back("type", Txt(type));
  kv.emplace_back("mode", V0Mode(perm));
  kv.emplace_back("mtime", Txt("1970-01-01T00:00:00Z"));
  return kv;
}
KV V0Dir() { return With(V0Common("directory", 0755), "directory", A()); }
KV V0Empty() { return With(V0Common("regularfile", 0644), "regularfile", A(U(0), B3(EmptyB3()))); }

c::Item V0Body(KV files, uint64_t version = 0) {
  KV top;
  top.emplace_back("files", Mp(std::move(files)));
  top.emplace_back("version", U(version));
  return Mp(std::move(top));
}
std::vector<uint8_t> V0Doc(KV files) {
  c::Item root = c::Tag(kSeedOuterTag, c::Tag(kOcixTag, V0Body(std::move(files))));
  return AsBytes(c::Serialize(root.get()));
}

// Decoding must fail as Corruption; when `path` is given the message names it.
void ExpectCorrupt(const std::vector<uint8_t>& bytes, std::string_view path, std::string_view why) {
  auto r = DecodeManifest(bytes);
  ASSERT_FALSE(r.ok()) << why;
  EXPECT_EQ(r.status().code(), Code::kCorruption) << why << ": " << r.status().ToString();
  if (!path.empty()) {
    EXPECT_NE(r.status().message().find("\"" + std::string(path) + "\""), std::string::npos)
        << why << ": message does not name " << path << ": " << r.status().message();
  }
}

TEST(CodecCorpusTest, BuildersMakeValidDocuments) {
  // The controls: the unmodified builders decode, so each failure below is
  // caused by its one change.
  auto v1 = DecodeManifest(V1Doc(Add(Add(Add(Files(), "/", V1Dir()), "/a", V1Empty()), "/b", V1Link("/a"))));
  ASSERT_TRUE(v1.ok()) << v1.status().ToString();
  EXPECT_EQ(v1->entries.size(), 3u);
  EXPECT_EQ(v1->entries[2].type, FileType::kHardlink);
  auto v0 = DecodeManifest(V0Doc(Add(Add(Files(), "/", V0Dir()), "/a", V0Empty())));
  ASSERT_TRUE(v0.ok()) << v0.status().ToString();
  EXPECT_EQ(v0->version, 0u);
  EXPECT_EQ(v0->entries.size(), 2u);
  KV wh;
  wh.emplace_back("whiteout", c::Bool(true));
  auto layer = DecodeManifest(V1Doc(Add(Files(), "/w", std::move(wh)), /*layer=*/true));
  ASSERT_TRUE(layer.ok()) << layer.status().ToString();
}

TEST(CodecCorpusTest, BadPathNames) {
  const std::pair<std::string, std::string> cases[] = {
      {"/..", "/.."},
      {"/.", "/."},
      {"/x/..", "/x/.."},
      {"/x/.", "/x/."},
      {"//", "//"},
      {"/x//y", "/x//y"},
      {"/x/", "/x/"},
      {"x", "x"},
      {"x/y", "x/y"},
      {"", ""},
      {std::string("/a\0b", 4), "/a\\x00b"},
  };
  for (const auto& [name, shown] : cases) {
    ExpectCorrupt(V1Doc(Add(Add(Files(), "/x", V1Dir()), name, V1Dir())), shown.empty() ? "" : shown,
                  "name " + ToHex(name));
  }
  ExpectCorrupt(V1Doc(Add(Files(), "/" + std::string(256, 'n'), V1Dir())), "", "component of 256 bytes");
  std::string long_path;
  while (long_path.size() <= kMaxPathBytes) long_path += "/" + std::string(200, 'p');
  ExpectCorrupt(V1Doc(Add(Files(), long_path, V1Dir())), "", "path over 4096 bytes");
  // v0 names go through the same check.
  ExpectCorrupt(V0Doc(Add(Add(Files(), "/", V0Dir()), "/a/../b", V0Dir())), "/a/../b", "v0 name with ..");
}

TEST(CodecCorpusTest, InvalidUtf8Names) {
  EXPECT_EQ(ValidatePath("/\xff").code(), Code::kCorruption);
  EXPECT_EQ(ValidatePath("/a\xc0\xaf").code(), Code::kCorruption);  // overlong '/'
  // In a document the CBOR layer already refuses the text key.
  static constexpr char kName[] = "/abc";
  std::vector<uint8_t> doc = V1Doc(Add(Files(), kName, V1Dir()));
  auto it = std::search(doc.begin(), doc.end(), kName, kName + 4);
  ASSERT_NE(it, doc.end());
  it[2] = 0xff;
  ExpectCorrupt(doc, "", "name with byte 0xff");
}

TEST(CodecCorpusTest, BadHardlinks) {
  ExpectCorrupt(V1Doc(Add(Files(), "/a", V1Link("/a"))), "/a", "hardlink to itself");
  ExpectCorrupt(V1Doc(Add(Files(), "/b", V1Link("/a"))), "/b", "hardlink to a missing file");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/d", V1Dir()), "/e", V1Link("/d"))), "/e", "hardlink to a directory");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/a", V1Link("/b")), "/b", V1Empty())), "/a",
                "hardlink to a name that sorts after it");
  // "/aa" < "/b" bytewise, but canonically "/b" (shorter) comes first.
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/aa", V1Empty()), "/b", V1Link("/aa"))), "/b",
                "hardlink to a longer name that is canonically later");
  EXPECT_TRUE(DecodeManifest(V1Doc(Add(Add(Files(), "/aa", V1Link("/b")), "/b", V1Empty()))).ok())
      << "a longer name may link to a shorter one";
  ExpectCorrupt(V1Doc(Add(Add(Add(Files(), "/a", V1Empty()), "/b", V1Link("/a")), "/c", V1Link("/b"))), "/c",
                "hardlink to a hardlink");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/a", V1Empty()), "/b", With(V1Link("/a"), "mode", U(S_IFREG | 0644)))), "/b",
                "hardlink entry with extra keys");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/a", V1Empty()), "/b", With(V1Link("/a"), "whiteout", c::Bool(true))),
                      /*layer=*/true),
                "/b", "hardlink entry with a whiteout key");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/a", With(V1Common(S_IFLNK | 0777), "target", Txt("x"))), "/b", V1Link("/a"))),
                "/b", "hardlink to a symlink");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/a", V1Empty()), "/b", With(KV{}, "link", U(1)))), "/b",
                "link target not text");
  // v0
  KV v0link = V0Common("link", 0);
  v0link = Without(Without(std::move(v0link), "mode"), "mtime");
  ExpectCorrupt(V0Doc(Add(Add(Files(), "/", V0Dir()), "/b", With(std::move(v0link), "link", A(Txt("/b"))))), "/b",
                "v0 hardlink to itself");
  ExpectCorrupt(V0Doc(Add(Add(Add(Files(), "/", V0Dir()), "/a", V0Empty()), "/b",
                          With(V0Common("link", 0644), "link", A(Txt("/a"))))),
                "/b", "v0 link with mode and mtime");
}

TEST(CodecCorpusTest, SizesThatLie) {
  ExpectCorrupt(V1Doc(Add(Files(), "/f", V1File(0, Filled(0)))), "/f", "empty file whose b3 is not BLAKE3(\"\")");
  ExpectCorrupt(V0Doc(Add(Add(Files(), "/", V0Dir()), "/f",
                          With(V0Common("regularfile", 0644), "regularfile", A(U(0), B3(Filled(0)))))),
                "/f", "v0 empty file whose b3 is not BLAKE3(\"\")");
  auto sparse = [](uint64_t size, std::vector<std::pair<uint64_t, uint64_t>> xs) {
    std::vector<c::Item> items;
    for (auto [o, l] : xs) items.push_back(A(U(o), U(l)));
    return With(V1File(size, Filled(9)), "data", c::Array(std::move(items)));
  };
  ExpectCorrupt(V1Doc(Add(Files(), "/s", sparse(100, {{90, 20}}))), "/s", "extent beyond size");
  ExpectCorrupt(V1Doc(Add(Files(), "/s", sparse(100, {{200, 1}}))), "/s", "extent starting beyond size");
  ExpectCorrupt(V1Doc(Add(Files(), "/s", sparse(100, {{1, UINT64_MAX}}))), "/s", "extent length overflowing");
  ExpectCorrupt(V1Doc(Add(Files(), "/s", sparse(100, {{0, 10}, {5, 10}}))), "/s", "overlapping extents");
  ExpectCorrupt(V1Doc(Add(Files(), "/s", sparse(100, {{0, 10}, {10, 5}}))), "/s", "touching extents");
  ExpectCorrupt(V1Doc(Add(Files(), "/s", sparse(100, {{50, 10}, {0, 10}}))), "/s", "unsorted extents");
  ExpectCorrupt(V1Doc(Add(Files(), "/s", sparse(100, {{10, 0}}))), "/s", "empty extent");
  ExpectCorrupt(V1Doc(Add(Files(), "/s", sparse(100, {{0, 100}}))), "/s", "sparse map without holes");
  ExpectCorrupt(V1Doc(Add(Files(), "/s", With(V1Empty(), "data", A()))), "/s", "sparse map on an empty file");
  auto chunked = [](uint64_t size, uint64_t chunk, size_t n) {
    std::vector<c::Item> ds;
    for (size_t i = 0; i < n; ++i) ds.push_back(B3(Filled(static_cast<uint8_t>(i))));
    return With(V1File(size, Filled(9)), "chunks", A(U(chunk), c::Array(std::move(ds))));
  };
  {
    // The control: 10000 bytes in 4096-byte chunks is 3 chunks.
    auto ok = DecodeManifest(V1Doc(Add(Files(), "/c", chunked(10000, 4096, 3))));
    ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  }
  ExpectCorrupt(V1Doc(Add(Files(), "/c", chunked(10000, 4096, 2))), "/c", "too few chunks");
  ExpectCorrupt(V1Doc(Add(Files(), "/c", chunked(10000, 4096, 4))), "/c", "too many chunks");
  ExpectCorrupt(V1Doc(Add(Files(), "/c", chunked(8192, 4096, 3))), "/c", "one chunk too many at a boundary");
  ExpectCorrupt(V1Doc(Add(Files(), "/c", chunked(10000, 5000, 2))), "/c", "chunk size not a power of two");
  ExpectCorrupt(V1Doc(Add(Files(), "/c", chunked(10000, 2048, 5))), "/c", "chunk size below 4 KiB");
  ExpectCorrupt(V1Doc(Add(Files(), "/c", chunked(10000, uint64_t{128} << 20, 1))), "/c", "chunk size above 64 MiB");
  ExpectCorrupt(V1Doc(Add(Files(), "/c", chunked(10000, 0, 0))), "/c", "chunk size 0");
  ExpectCorrupt(V1Doc(Add(Files(), "/f", V1File(kMaxFileSize + 1, Filled(9)))), "/f", "size beyond off_t");
}

TEST(CodecCorpusTest, UnknownKeys) {
  ExpectCorrupt(V1Doc(Add(Files(), "/d", With(V1Dir(), "color", U(1)))), "/d", "unknown entry key");
  ExpectCorrupt(V1Doc(Add(Files(), "/d", With(V1Dir(), "type", Txt("directory")))), "/d", "v0 key in v1");
  ExpectCorrupt(V1Doc(Add(Files(), "/d", V1Dir()), false, With(KV{}, "extra", U(1))), "", "unknown top-level key");
  ExpectCorrupt(V0Doc(Add(Add(Files(), "/", V0Dir()), "/a", With(V0Empty(), "b3", B3(EmptyB3())))), "/a",
                "v1 key in v0");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "xattrs", Mp(With(KV{}, "user.a", Bin("x")))))), "/",
                "xattrs in v0");
  ExpectCorrupt(V1Doc(Add(Files(), "/d", With(V1Dir(), "atime", A(c::Int(0), U(0))))), "/d", "atime in v1");
}

TEST(CodecCorpusTest, MissingRequiredKeys) {
  for (const char* key : {"mode", "uid", "gid", "mtime"}) {
    ExpectCorrupt(V1Doc(Add(Files(), "/d", Without(V1Dir(), key))), "/d", std::string("dir without ") + key);
  }
  ExpectCorrupt(V1Doc(Add(Files(), "/f", Without(V1Empty(), "b3"))), "/f", "file without b3");
  ExpectCorrupt(V1Doc(Add(Files(), "/f", Without(V1Empty(), "size"))), "/f", "file without size");
  ExpectCorrupt(V1Doc(Add(Files(), "/l", V1Common(S_IFLNK | 0777))), "/l", "symlink without target");
  ExpectCorrupt(V1Doc(Add(Files(), "/l", With(V1Common(S_IFLNK | 0777), "target", Txt("")))), "/l",
                "symlink with an empty target");
  ExpectCorrupt(V1Doc(Add(Files(), "/c", V1Common(S_IFCHR | 0666))), "/c", "device without rdev");
  ExpectCorrupt(V1Doc(Add(Files(), "/f", V1Common(0))), "/f", "entry with no type bits, nothing else");
  ExpectCorrupt(V1Doc(Add(Files(), "/e", KV{})), "/e", "empty entry map");
  {
    KV top;
    top.emplace_back("version", U(1));
    c::Item root = c::Tag(kOcixTag, Mp(std::move(top)));
    ExpectCorrupt(AsBytes(c::Serialize(root.get())), "", "manifest without files");
  }
  {
    KV top;
    top.emplace_back("files", Mp({}));
    c::Item root = c::Tag(kOcixTag, Mp(std::move(top)));
    ExpectCorrupt(AsBytes(c::Serialize(root.get())), "", "manifest without version");
  }
  for (const char* key : {"type", "mode", "mtime", "directory"}) {
    ExpectCorrupt(V0Doc(Add(Files(), "/", Without(V0Dir(), key))), "/", std::string("v0 dir without ") + key);
  }
  ExpectCorrupt(V0Doc(Add(Add(Files(), "/", V0Dir()), "/a", Without(V0Empty(), "regularfile"))), "/a",
                "v0 file without payload");
}

TEST(CodecCorpusTest, WrongTags) {
  const std::vector<uint8_t> v1_empty = Unhex("da6f636978 a2 6566696c6573 a0 6776657273696f6e 01");
  const std::vector<uint8_t> v0_empty = Unhex("c6 da6f636978 a2 6566696c6573 a0 6776657273696f6e 00");
  ASSERT_TRUE(DecodeManifest(v1_empty).ok());
  ASSERT_TRUE(DecodeManifest(v0_empty).ok());
  ExpectCorrupt(Unhex("a2 6566696c6573 a0 6776657273696f6e 01"), "", "v1 without a tag");
  ExpectCorrupt(Unhex("a2 6566696c6573 a0 6776657273696f6e 00"), "", "v0 without any tag");
  ExpectCorrupt(Unhex("c6 da6f636978 a2 6566696c6573 a0 6776657273696f6e 01"), "", "tag 6 around v1");
  ExpectCorrupt(Unhex("da6f636978 a2 6566696c6573 a0 6776657273696f6e 00"), "", "v0 without tag 6");
  ExpectCorrupt(Unhex("c6 a2 6566696c6573 a0 6776657273696f6e 00"), "", "v0 with tag 6 only");
  ExpectCorrupt(Unhex("d9d9f7 a2 6566696c6573 a0 6776657273696f6e 01"), "", "self-describe tag 55799");
  ExpectCorrupt(Unhex("da6f636979 a2 6566696c6573 a0 6776657273696f6e 01"), "", "tag ocix + 1");
  ExpectCorrupt(Unhex("c7 da6f636978 a2 6566696c6573 a0 6776657273696f6e 00"), "", "tag 7 around v0");
  ExpectCorrupt(Unhex("c6 c6 da6f636978 a2 6566696c6573 a0 6776657273696f6e 00"), "", "tag 6 twice");
  ExpectCorrupt(Unhex("d806 da6f636978 a2 6566696c6573 a0 6776657273696f6e 00"), "", "tag 6 not shortest");
  ExpectCorrupt(Unhex("da6f636978 da6f636978 a2 6566696c6573 a0 6776657273696f6e 01"), "", "tag ocix twice");
  ExpectCorrupt(Unhex("da6f636978 80"), "", "tag around an array");
  ExpectCorrupt(Unhex("da6f636978 a0"), "", "tag around an empty map");
  ExpectCorrupt({}, "", "empty input");
  ExpectCorrupt(Unhex("c6"), "", "tag 6 alone");
  ExpectCorrupt(Unhex("da6f636978 a2 6566696c6573 a0 6776657273696f6e 01 00"), "", "trailing byte");
}

TEST(CodecCorpusTest, NonCanonicalTrueIsRejected) {
  const std::vector<uint8_t> doc =
      Unhex("da6f636978 a3 6566696c6573 a0 656c61796572 f815 6776657273696f6e 01");  // "layer": f8 15
  ExpectCorrupt(doc, "", "layer: true in the two-byte form");
}

// Regression test for a fixed bug (ocixcore/src/cbor.cc, Validator::Item, major type 7; see cbor_test.cc
// RegressionRejectsExtendedFormsOfTrueFalse): a half or single float whose bits
// end in 0x14/0x15 passes ValidateCanonical; libcbor then loads a float, and
// GetBool's cbor_is_bool() calls cbor_ctrl_value(), whose assertion
// (Debian's libcbor keeps asserts) aborts the process. Untrusted manifests
// can crash the decoder. Run in a child so the crash fails only this test.
TEST(CodecCorpusDeathTest, RegressionFloatWhereBoolExpectedMustNotCrash) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (const char* hex : {
           "da6f636978 a3 6566696c6573 a0 656c61796572 f90015 6776657273696f6e 01",      // "layer": half float
           "da6f636978 a3 6566696c6573 a0 656c61796572 fa00000015 6776657273696f6e 01",  // "layer": single float
       }) {
    const std::vector<uint8_t> doc = Unhex(hex);
    EXPECT_EXIT(
        {
          auto r = DecodeManifest(doc);
          std::exit(!r.ok() && r.status().code() == Code::kCorruption ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "")
        << hex;
  }
}

TEST(CodecCorpusTest, VersionsAndLayerFlag) {
  auto doc = [](uint64_t version, int layer /* -1 absent */) {
    KV top;
    top.emplace_back("files", Mp({}));
    top.emplace_back("version", U(version));
    if (layer >= 0) top.emplace_back("layer", c::Bool(layer == 1));
    c::Item root = c::Tag(kOcixTag, Mp(std::move(top)));
    if (version == 0) root = c::Tag(kSeedOuterTag, std::move(root));
    return AsBytes(c::Serialize(root.get()));
  };
  ASSERT_TRUE(DecodeManifest(doc(1, 1)).ok());
  ExpectCorrupt(doc(2, -1), "", "version 2");
  ExpectCorrupt(doc(1u << 31, -1), "", "version 2^31");
  ExpectCorrupt(doc(1, 0), "", "layer: false");
  ExpectCorrupt(doc(0, 1), "", "v0 layer");
  {
    KV top;
    top.emplace_back("files", Mp({}));
    top.emplace_back("version", Txt("1"));
    c::Item root = c::Tag(kOcixTag, Mp(std::move(top)));
    ExpectCorrupt(AsBytes(c::Serialize(root.get())), "", "version as text");
  }
  {
    KV top;
    top.emplace_back("files", A());
    top.emplace_back("version", U(1));
    c::Item root = c::Tag(kOcixTag, Mp(std::move(top)));
    ExpectCorrupt(AsBytes(c::Serialize(root.get())), "", "files as an array");
  }
}

TEST(CodecCorpusTest, LayerOnlyFeaturesInFlattenedManifest) {
  KV wh;
  wh.emplace_back("whiteout", c::Bool(true));
  ExpectCorrupt(V1Doc(Add(Files(), "/w", std::move(wh))), "/w", "whiteout in a flattened manifest");
  ExpectCorrupt(V1Doc(Add(Files(), "/d", With(V1Dir(), "opaque", c::Bool(true)))), "/d",
                "opaque dir in a flattened manifest");
  // Malformed layer features, in a layer.
  KV wh_false;
  wh_false.emplace_back("whiteout", c::Bool(false));
  ExpectCorrupt(V1Doc(Add(Files(), "/w", std::move(wh_false)), true), "/w", "whiteout: false");
  ExpectCorrupt(V1Doc(Add(Files(), "/w", With(V1Dir(), "whiteout", c::Bool(true))), true), "/w",
                "whiteout with other keys");
  KV wh_root;
  wh_root.emplace_back("whiteout", c::Bool(true));
  ExpectCorrupt(V1Doc(Add(Files(), "/", std::move(wh_root)), true), "/", "whiteout of the root");
  ExpectCorrupt(V1Doc(Add(Files(), "/d", With(V1Dir(), "opaque", c::Bool(false))), true), "/d", "opaque: false");
  ExpectCorrupt(V1Doc(Add(Files(), "/f", With(V1Empty(), "opaque", c::Bool(true))), true), "/f", "opaque file");
}

TEST(CodecCorpusTest, BadParents) {
  ExpectCorrupt(V1Doc(Add(Files(), "/a/b", V1Dir())), "/a/b", "parent missing");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/a", V1Dir()), "/a/b/c", V1Empty())), "/a/b/c", "grandparent only");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/a", V1Empty()), "/a/b", V1Empty())), "/a/b", "parent is a file");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/a", With(V1Common(S_IFLNK | 0777), "target", Txt("x"))), "/a/b", V1Empty())),
                "/a/b", "parent is a symlink");
  ExpectCorrupt(V1Doc(Add(Add(Files(), "/a", V1Empty()), "/a/b", V1Empty()), true), "/a/b",
                "parent is a file, in a layer");
  ExpectCorrupt(V0Doc(Add(Add(Files(), "/", V0Dir()), "/a/b", V0Dir())), "/a/b", "v0 parent missing");
  ExpectCorrupt(V1Doc(Add(Files(), "/", V1Empty())), "/", "root is a file");
  // A layer may rely on the layers below for parents.
  EXPECT_TRUE(DecodeManifest(V1Doc(Add(Files(), "/a/b", V1Dir()), true)).ok());
}

TEST(CodecCorpusTest, V0SpecificRules) {
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "uid", U(0)))), "/", "uid 0 written explicitly");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "gid", U(0)))), "/", "gid 0 written explicitly");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "username", Txt("")))), "/", "empty username");
  ExpectCorrupt(V0Doc(Add(Files(), "/", V0Common("socket", 0755))), "/", "unknown type");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "fifo", A()))), "/", "two payload keys");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Common("directory", 0755), "regularfile", A()))), "/",
                "payload of another type");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "directory", A(U(1))))), "/", "non-empty dir payload");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "mode", A(c::Bool(true))))), "/", "short mode");
  ExpectCorrupt(
      V0Doc(Add(Files(), "/", With(V0Dir(), "mode", A(A(), A(), A(), c::Bool(false), c::Bool(false), c::Bool(false))))),
      "/", "empty rwx arrays");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "mtime", Txt("yesterday")))), "/", "bad time text");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "mtime", U(0)))), "/", "time as integer");
  ExpectCorrupt(V0Doc(Add(Files(), "/", With(V0Dir(), "atime", Txt("1970-01-01T00:00:00")))), "/",
                "atime without zone");
  ExpectCorrupt(
      V0Doc(Add(Add(Files(), "/", V0Dir()), "/a", With(V0Common("regularfile", 0644), "regularfile", A(U(0))))), "/a",
      "regularfile payload without b3");
  ExpectCorrupt(V0Doc(Add(Add(Files(), "/", V0Dir()), "/c", With(V0Common("character", 0644), "character", A(U(1))))),
                "/c", "character payload without minor");
}

TEST(CodecCorpusTest, V1FieldRules) {
  ExpectCorrupt(V1Doc(Add(Files(), "/x", V1Common(0170000 | 0644))), "/x", "mode with all type bits set");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", V1Common(S_IFSOCK | 0644))), "/x", "socket");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "mode", U(0x10000 | S_IFDIR | 0755)))), "/x",
                "mode beyond 16 bits");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Empty(), "b3", Bin(std::string(33, 'x'))))), "/x", "33-byte digest");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Empty(), "b3", Bin(std::string(31, 'x'))))), "/x", "31-byte digest");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Empty(), "b3", Txt(kEmptyB3Hex)))), "/x", "digest as hex text");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "mtime", A(c::Int(0), U(1'000'000'000))))), "/x",
                "mtime nsec 1e9");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "mtime", A(c::Int(0), U(UINT64_MAX))))), "/x",
                "mtime nsec 2^64-1");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "mtime", A(c::Int(0))))), "/x", "mtime without nsec");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "mtime", A(c::Int(0), U(0), U(0))))), "/x",
                "mtime with three items");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "mtime", A(c::Int(0), c::Int(-1))))), "/x", "negative nsec");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "uid", U(0xFFFFFFFFu)))), "/x", "uid (uid_t)-1");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "gid", c::Int(-1)))), "/x", "negative gid");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "user", Txt("")))), "/x", "empty user");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "group", Txt("")))), "/x", "empty group");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "user", Txt(std::string(kMaxOwnerNameBytes + 1, 'u'))))), "/x",
                "user name too long");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "size", U(0)))), "/x", "size on a directory");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "target", Txt("y")))), "/x", "target on a directory");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Empty(), "rdev", A(U(1), U(3))))), "/x", "rdev on a file");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Common(S_IFCHR | 0644), "rdev", A(U(1))))), "/x", "short rdev");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Common(S_IFCHR | 0644), "rdev", A(U(1), U(1ull << 32))))), "/x",
                "minor beyond 32 bits");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "xattrs", Mp({})))), "/x", "empty xattrs map");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "xattrs", Mp(With(KV{}, "user.a", Txt("v")))))), "/x",
                "xattr value as text");
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "xattrs", Mp(With(KV{}, "", Bin("v")))))), "/x",
                "empty xattr name");
  ExpectCorrupt(
      V1Doc(Add(Files(), "/x",
                With(V1Dir(), "xattrs", Mp(With(KV{}, "user.big", Bin(std::string(kMaxXattrValueBytes + 1, 'v'))))))),
      "/x", "xattr value over 64 KiB");
  {
    KV many;
    for (size_t i = 0; i <= kMaxXattrsPerFile; ++i) many.emplace_back("user." + std::to_string(i), Bin("v"));
    ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "xattrs", Mp(std::move(many))))), "/x", "129 xattrs");
  }
  ExpectCorrupt(V1Doc(Add(Files(), "/x", With(V1Dir(), "mode", Txt("0755")))), "/x", "mode as text");
  {
    KV files;
    files.emplace_back("/x", U(1));
    ExpectCorrupt(V1Doc(std::move(files)), "/x", "entry that is not a map");
  }
}

TEST(CodecTest, V0TimeWithZoneOffsetDecodesToUtc) {
  // 2021-01-01T00:00:00Z is 1609459200 (calendar.timegm).
  std::vector<uint8_t> doc = V0Doc(Add(Files(), "/", With(V0Dir(), "mtime", Txt("2021-01-01T09:00:00.25+09:00"))));
  auto m = DecodeManifest(doc);
  ASSERT_TRUE(m.ok()) << m.status().ToString();
  ASSERT_EQ(m->entries.size(), 1u);
  EXPECT_EQ(m->entries[0].mtime, (Timestamp{1609459200, 250'000'000}));
  // Re-encoding writes UTC, so the bytes differ from the input but decode the same.
  auto again = EncodeManifest(*m);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(ToHex(*again), ToHex({reinterpret_cast<const char*>(doc.data()), doc.size()}));
  EXPECT_NE(again->find("2021-01-01T00:00:00.25Z"), std::string::npos);
  EXPECT_EQ(again->find("+09:00"), std::string::npos);
  auto back = DecodeManifest(AsBytes(*again));
  ASSERT_TRUE(back.ok());
  EXPECT_TRUE(*back == *m);
}

TEST(CodecTest, EncodeV0RejectsWhatV0CannotCarry) {
  auto expect_invalid = [](Manifest m, std::string_view why) {
    auto r = EncodeManifest(m);
    ASSERT_FALSE(r.ok()) << why;
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << why << ": " << r.status().ToString();
    EXPECT_NE(r.status().message().find("/f"), std::string::npos) << why << ": " << r.status().message();
  };
  Manifest base;
  base.version = 0;
  base.entries.push_back(File("/f", 100, Filled(1)));
  ASSERT_TRUE(EncodeManifest(base).ok());
  {
    Manifest m = base;
    m.entries[0].xattrs = {{"user.a", "b"}};
    ASSERT_TRUE(ValidateManifest(m).ok());
    expect_invalid(m, "xattrs");
  }
  {
    Manifest m = base;
    m.entries[0].data = std::vector<Extent>{{0, 10}};
    ASSERT_TRUE(ValidateManifest(m).ok());
    expect_invalid(m, "sparse map");
  }
  {
    Manifest m = base;
    m.entries[0].chunks = ChunkList{4096, {Filled(2)}};
    ASSERT_TRUE(ValidateManifest(m).ok());
    expect_invalid(m, "chunk list");
  }
}

// Regression test for a fixed bug (ocixcore/src/codec.cc EncodeManifest): codec.h promises that version 0
// whiteouts and opaque directories "fail with InvalidArgument", but
// EncodeManifest runs ValidateManifest first, which rejects them as
// Corruption ("whiteout in a flattened manifest" / "version 0 cannot
// describe a layer") before EncodeV0Entry can say InvalidArgument.
TEST(CodecTest, RegressionEncodeV0WhiteoutAndOpaqueAreInvalidArgument) {
  {
    Manifest m;
    m.version = 0;
    m.entries.push_back(Whiteout("/f"));
    auto r = EncodeManifest(m);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
  }
  {
    Manifest m;
    m.version = 0;
    Entry d = Dir("/f");
    d.opaque = true;
    m.entries.push_back(d);
    auto r = EncodeManifest(m);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument) << r.status().ToString();
  }
}

TEST(CodecTest, EncodeRejectsInvalidModels) {
  Manifest unsorted;
  unsorted.entries.push_back(EmptyFile("/b"));
  unsorted.entries.push_back(EmptyFile("/a"));
  EXPECT_FALSE(EncodeManifest(unsorted).ok());
  Manifest dup;
  dup.entries.push_back(EmptyFile("/a"));
  dup.entries.push_back(EmptyFile("/a"));
  EXPECT_FALSE(EncodeManifest(dup).ok());
  Manifest v2;
  v2.version = 2;
  EXPECT_FALSE(EncodeManifest(v2).ok());
  Manifest bad_mode;
  bad_mode.entries.push_back(EmptyFile("/a", 010000));
  EXPECT_FALSE(EncodeManifest(bad_mode).ok());
  Manifest unsorted_xattrs;
  Entry f = EmptyFile("/a");
  f.xattrs = {{"user.bb", "1"}, {"user.a", "2"}};
  unsorted_xattrs.entries.push_back(f);
  EXPECT_FALSE(EncodeManifest(unsorted_xattrs).ok());
  Manifest v0_far_future;
  v0_far_future.version = 0;
  Entry g = EmptyFile("/a");
  g.mtime = {253402300800, 0};  // year 10000: RFC 3339 cannot write it
  v0_far_future.entries.push_back(g);
  auto r = EncodeManifest(v0_far_future);
  EXPECT_FALSE(r.ok());
  // ...but version 1 can.
  v0_far_future.version = 1;
  EXPECT_TRUE(EncodeManifest(v0_far_future).ok());
}

// ---- data files (also the fuzz seeds) -------------------------------------------

std::vector<std::filesystem::path> FilesIn(const std::filesystem::path& dir, std::string_view ext) {
  std::vector<std::filesystem::path> out;
  for (const auto& de : std::filesystem::directory_iterator(dir))
    if (de.is_regular_file() && de.path().extension() == ext) out.push_back(de.path());
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<uint8_t> ReadAll(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

TEST(CodecDataFilesTest, GoodManifestsDecodeAndReencodeExactly) {
  auto files = FilesIn("data/good", ".ocix");
  ASSERT_GE(files.size(), 5u) << "run from tests/ (data/good)";
  for (const auto& p : files) {
    std::vector<uint8_t> bytes = ReadAll(p);
    auto m = DecodeManifest(bytes);
    ASSERT_TRUE(m.ok()) << p << ": " << m.status().ToString();
    auto again = EncodeManifest(*m);
    ASSERT_TRUE(again.ok()) << p << ": " << again.status().ToString();
    EXPECT_EQ(ToHex(*again), ToHex({reinterpret_cast<const char*>(bytes.data()), bytes.size()})) << p;
  }
}

TEST(CodecDataFilesTest, BadManifestsAreCorruption) {
  auto files = FilesIn("data/bad", ".cbor");
  ASSERT_GE(files.size(), 10u) << "run from tests/ (data/bad)";
  for (const auto& p : files) {
    auto m = DecodeManifest(ReadAll(p));
    EXPECT_FALSE(m.ok()) << p;
    if (!m.ok()) {
      EXPECT_EQ(m.status().code(), Code::kCorruption) << p << ": " << m.status().ToString();
    }
  }
}

}  // namespace
}  // namespace ocix::core

// ChunkStore against an in-memory BlobReader that serves a blob of zstd
// frames built here and injects faults (errors, short replies, delays), plus
// the file and registry BlobReaders.
#include "ocix/core/store/chunk_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <latch>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "ocix/core/blake3.h"
#include "ocix/core/limits.h"
#include "ocix/core/registry/blob_reader.h"
#include "ocix/core/store/blob_reader.h"

namespace ocix::core {
namespace {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "ocix-store-test-XXXXXX").string();
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

std::string ReadFile(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}
void WriteFile(const std::string& p, std::string_view data) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
}

// Half random, half repetitive: compresses, but not to nothing.
std::string Content(size_t size, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = i % 2 ? static_cast<char>(rng()) : static_cast<char>('a' + i % 7);
  return s;
}

std::string Compress(std::string_view data, bool declare_size = true) {
  std::unique_ptr<ZSTD_CCtx, decltype(&ZSTD_freeCCtx)> cctx(ZSTD_createCCtx(), &ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, declare_size ? 1 : 0);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  size_t n = ZSTD_compress2(cctx.get(), out.data(), out.size(), data.data(), data.size());
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

// A blob like an OCIX layer's tar part: filler bytes, then chunk frames with
// more filler between every second pair (so some frames are adjacent).
struct TestBlob {
  std::string data;
  std::vector<std::string> contents;
  std::vector<ChunkRef> refs;
};

TestBlob MakeBlob(const std::vector<size_t>& sizes, unsigned seed = 1) {
  TestBlob b;
  b.data = "header!";
  for (size_t i = 0; i < sizes.size(); ++i) {
    if (i % 2 == 0 && i > 0) b.data += "filler";
    std::string c = Content(sizes[i], seed * 100 + static_cast<unsigned>(i));
    std::string f = Compress(c);
    b.refs.push_back({Blake3::Hash(c), c.size(), b.data.size(), f.size()});
    b.data += f;
    b.contents.push_back(std::move(c));
  }
  return b;
}

// Serves `data`, recording every call; faults are set by the test.
class FakeBlob : public BlobReader {
 public:
  explicit FakeBlob(std::string data) : data_(std::move(data)) {}

  Result<std::vector<std::string>> ReadRanges(std::span<const ByteRange> ranges) override {
    {
      std::lock_guard lock(mu_);
      calls_.emplace_back(ranges.begin(), ranges.end());
    }
    if (delay.count() > 0) std::this_thread::sleep_for(delay);
    if (failures_left > 0) {
      --failures_left;
      return Unavailable("injected failure");
    }
    std::vector<std::string> out;
    for (const ByteRange& r : ranges) {
      if (r.offset + r.length > data_.size()) return InvalidArgument("past the end");
      out.push_back(data_.substr(r.offset, r.length));
      if (truncate && !out.back().empty()) out.back().pop_back();
    }
    return out;
  }
  std::string Describe() const override { return "fake blob"; }

  size_t calls() const {
    std::lock_guard lock(mu_);
    return calls_.size();
  }
  std::vector<ByteRange> call(size_t i) const {
    std::lock_guard lock(mu_);
    return calls_.at(i);
  }

  std::chrono::milliseconds delay{0};
  std::atomic<int> failures_left{0};  // calls that fail with Unavailable
  bool truncate = false;              // every buffer one byte short

 private:
  const std::string data_;
  mutable std::mutex mu_;
  std::vector<std::vector<ByteRange>> calls_;
};

std::unique_ptr<ChunkStore> OpenStore(const std::string& root, int attempts = 1) {
  auto s = ChunkStore::Open({root, attempts, ""});
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

// Names in root/chunks/*/ (entries and temp files alike).
std::vector<std::string> FilesUnder(const std::string& root) {
  std::vector<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(fs::path(root) / "chunks"))
    if (e.is_regular_file()) names.push_back(e.path().filename().string());
  return names;
}

TEST(ChunkStore, MissThenHit) {
  TempDir dir;
  TestBlob b = MakeBlob({5000, 100, 3000});
  FakeBlob blob(b.data);
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);

  Status s = store->Ensure(blob, b.refs);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_EQ(blob.calls(), 1u);
  for (size_t i = 0; i < b.refs.size(); ++i) {
    EXPECT_TRUE(store->Has(b.refs[i].digest));
    EXPECT_EQ(ReadFile(store->PathOf(b.refs[i].digest)), b.contents[i]);
  }
  EXPECT_EQ(store->PathOf(b.refs[0].digest),
            dir.dir() + "/chunks/" + b.refs[0].digest.Hex().substr(0, 2) + "/" + b.refs[0].digest.Hex());
  StoreStats st = store->stats();
  EXPECT_EQ(st.misses, 3u);
  EXPECT_EQ(st.hits, 0u);
  EXPECT_EQ(st.entries, 3u);
  EXPECT_EQ(st.bytes, 8100u);
  EXPECT_EQ(st.fetched_chunks, 3u);
  EXPECT_EQ(st.fetched_bytes, b.refs[0].frame_size + b.refs[1].frame_size + b.refs[2].frame_size);
  EXPECT_EQ(st.fetch_requests, 1u);

  ASSERT_TRUE(store->Ensure(blob, b.refs).ok());
  EXPECT_EQ(blob.calls(), 1u);  // all hits: no fetch
  st = store->stats();
  EXPECT_EQ(st.hits, 3u);
  EXPECT_EQ(st.misses, 3u);
  EXPECT_EQ(st.entries, 3u);
}

TEST(ChunkStore, AllMissingRangesGoInOneCallInBlobOrder) {
  TempDir dir;
  TestBlob b = MakeBlob({1000, 2000, 3000, 4000, 500});
  FakeBlob blob(b.data);
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Ensure(blob, std::span(b.refs).subspan(2, 1)).ok());  // chunk 2 present

  // Asked in reverse order, with a duplicate: one call, missing frames only, sorted by offset.
  std::vector<ChunkRef> want(b.refs.rbegin(), b.refs.rend());
  want.push_back(b.refs[0]);
  ASSERT_TRUE(store->Ensure(blob, want).ok());
  ASSERT_EQ(blob.calls(), 2u);
  std::vector<ByteRange> got = blob.call(1);
  ASSERT_EQ(got.size(), 4u);
  const size_t expected[] = {0, 1, 3, 4};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(got[i].offset, b.refs[expected[i]].blob_offset);
    EXPECT_EQ(got[i].length, b.refs[expected[i]].frame_size);
  }
  // Frames 0 and 1 are adjacent in the blob, so a coalescing reader makes one request of them.
  EXPECT_EQ(got[0].offset + got[0].length, got[1].offset);
  StoreStats st = store->stats();
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(st.misses, 5u);
  EXPECT_EQ(st.entries, 5u);
}

TEST(ChunkStore, CorruptFrameIsNeverStoredAndGoodReaderRecovers) {
  TempDir dir;
  TestBlob b = MakeBlob({4000, 4000, 4000});
  std::string bad = b.data;
  bad[b.refs[1].blob_offset + b.refs[1].frame_size / 2] ^= 0x5a;
  FakeBlob corrupt(bad);
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);

  Status s = store->Ensure(corrupt, b.refs);
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find(b.refs[1].digest.Hex()), std::string::npos) << s.message();
  EXPECT_FALSE(store->Has(b.refs[1].digest));
  EXPECT_TRUE(store->Has(b.refs[0].digest));  // the good frames of the call are kept
  EXPECT_TRUE(store->Has(b.refs[2].digest));
  EXPECT_EQ(FilesUnder(dir.dir()).size(), 2u);  // no temp file left behind
  StoreStats st = store->stats();
  EXPECT_EQ(st.corrupt_chunks, 1u);
  EXPECT_EQ(st.entries, 2u);
  EXPECT_EQ(st.fetch_errors, 0u);

  FakeBlob good(b.data);
  ASSERT_TRUE(store->Ensure(good, b.refs).ok());
  ASSERT_EQ(good.calls(), 1u);
  EXPECT_EQ(good.call(0).size(), 1u);  // only the missing one
  EXPECT_EQ(ReadFile(store->PathOf(b.refs[1].digest)), b.contents[1]);
  EXPECT_EQ(store->stats().corrupt_chunks, 1u);
}

// Each case: a range that the store must refuse to store, and why.
TEST(ChunkStore, FramesThatLieAreCorruption) {
  TempDir dir;
  const std::string c = Content(3000, 7), other = Content(3000, 8);
  const std::string framed = Compress(c), sizeless = Compress(c, false);
  const std::string skippable = std::string(
      "\x50\x2a\x4d\x18\x04\x00\x00\x00"
      "abcd",
      12);
  std::string garbage(200, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 37 + 11);
  const Digest d = Blake3::Hash(c);
  struct Case {
    std::string name, blob;
    ChunkRef ref;
    std::string why;
  };
  const std::vector<Case> cases = {
      {"declared size differs", framed, {d, c.size() + 1, 0, framed.size()}, "frame holds"},
      {"no declared size, longer", sizeless, {d, c.size() - 1, 0, sizeless.size()}, "zstd:"},
      {"no declared size, shorter", sizeless, {d, c.size() + 1, 0, sizeless.size()}, "decompresses to"},
      {"two frames in one range", framed + Compress(other), {d, c.size(), 0, framed.size() + 40}, "more than one"},
      {"frame cut short", framed, {d, c.size(), 0, framed.size() - 5}, "bad zstd frame"},
      {"other content", Compress(other), {d, c.size(), 0, Compress(other).size()}, "hashes to"},
      {"garbage", garbage, {d, c.size(), 0, garbage.size()}, "not a zstd frame"},
      {"skippable frame", skippable, {Blake3::Hash(""), 0, 0, skippable.size()}, "not a zstd frame"},
  };
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  uint64_t corrupt = 0;
  for (const Case& k : cases) {
    SCOPED_TRACE(k.name);
    // "two frames": the range covers the first frame and part of the next.
    FakeBlob blob(k.blob);
    Status s = store->Ensure(blob, std::span(&k.ref, 1));
    EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
    EXPECT_NE(s.message().find(k.why), std::string::npos) << s.message();
    EXPECT_NE(s.message().find(k.ref.digest.Hex()), std::string::npos) << s.message();
    EXPECT_FALSE(store->Has(k.ref.digest));
    EXPECT_EQ(store->stats().corrupt_chunks, ++corrupt);
  }
  EXPECT_TRUE(FilesUnder(dir.dir()).empty());

  // The sizeless frame is fine when size and digest match.
  FakeBlob ok(sizeless);
  ChunkRef r{d, c.size(), 0, sizeless.size()};
  ASSERT_TRUE(store->Ensure(ok, std::span(&r, 1)).ok());
  EXPECT_EQ(ReadFile(store->PathOf(d)), c);
}

TEST(ChunkStore, ShortReplyIsCorruption) {
  TempDir dir;
  TestBlob b = MakeBlob({2000, 2000});
  FakeBlob blob(b.data);
  blob.truncate = true;
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  Status s = store->Ensure(blob, b.refs);
  EXPECT_EQ(s.code(), Code::kCorruption) << s.ToString();
  EXPECT_NE(s.message().find("and 1 more"), std::string::npos) << s.message();
  EXPECT_EQ(store->stats().corrupt_chunks, 2u);
  EXPECT_EQ(store->stats().entries, 0u);
  EXPECT_TRUE(FilesUnder(dir.dir()).empty());
}

TEST(ChunkStore, ReaderErrorPropagatesAndStoresNothing) {
  TempDir dir;
  TestBlob b = MakeBlob({2000, 2000});
  FakeBlob blob(b.data);
  blob.failures_left = 1;
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  Status s = store->Ensure(blob, b.refs);
  EXPECT_EQ(s.code(), Code::kUnavailable) << s.ToString();
  EXPECT_NE(s.message().find("injected failure"), std::string::npos);
  EXPECT_NE(s.message().find("fake blob"), std::string::npos);
  StoreStats st = store->stats();
  EXPECT_EQ(st.fetch_requests, 1u);
  EXPECT_EQ(st.fetch_errors, 1u);
  EXPECT_EQ(st.fetched_chunks, 0u);
  EXPECT_EQ(st.entries, 0u);
  EXPECT_TRUE(FilesUnder(dir.dir()).empty());
  // The failure was not cached: the next call fetches.
  ASSERT_TRUE(store->Ensure(blob, b.refs).ok());
  EXPECT_EQ(store->stats().entries, 2u);
}

TEST(ChunkStore, MaxFetchAttemptsRetriesReaderErrors) {
  TempDir dir;
  TestBlob b = MakeBlob({2000});
  FakeBlob blob(b.data);
  blob.failures_left = 2;
  auto store = OpenStore(dir.dir(), 3);
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Ensure(blob, b.refs).ok());
  StoreStats st = store->stats();
  EXPECT_EQ(st.fetch_requests, 3u);
  EXPECT_EQ(st.fetch_errors, 2u);
  EXPECT_EQ(st.entries, 1u);
}

TEST(ChunkStore, ConcurrentCallersShareOneFetch) {
  for (bool fail : {false, true}) {
    SCOPED_TRACE(fail ? "failing fetch" : "good fetch");
    TempDir dir;
    TestBlob b = MakeBlob({20000});
    FakeBlob blob(b.data);
    blob.delay = std::chrono::milliseconds(150);
    blob.failures_left = fail ? 1 : 0;
    auto store = OpenStore(dir.dir());
    ASSERT_TRUE(store);
    constexpr int kThreads = 8;
    std::latch start(kThreads);
    std::vector<Status> results(kThreads);
    std::vector<std::thread> threads;
    for (int i = 0; i < kThreads; ++i) {
      threads.emplace_back([&, i] {
        start.arrive_and_wait();
        results[i] = store->Ensure(blob, b.refs);
      });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(blob.calls(), 1u);
    for (const Status& s : results) EXPECT_EQ(s.code(), fail ? Code::kUnavailable : Code::kOk) << s.ToString();
    StoreStats st = store->stats();
    EXPECT_EQ(st.misses, static_cast<uint64_t>(kThreads));  // the waiters missed too
    EXPECT_EQ(st.fetched_chunks, fail ? 0u : 1u);
    EXPECT_EQ(st.entries, fail ? 0u : 1u);
  }
}

TEST(ChunkStore, ReopenSeesEntriesAndServesHits) {
  TempDir dir;
  TestBlob b = MakeBlob({3000, 1000, 2000});
  {
    FakeBlob blob(b.data);
    auto store = OpenStore(dir.dir());
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Ensure(blob, b.refs).ok());
  }
  FakeBlob failing(b.data);
  failing.failures_left = 100;
  auto store = OpenStore(dir.dir() + "/");  // a trailing slash names the same store
  ASSERT_TRUE(store);
  StoreStats st = store->stats();
  EXPECT_EQ(st.entries, 3u);
  EXPECT_EQ(st.bytes, 6000u);
  ASSERT_TRUE(store->Ensure(failing, b.refs).ok());
  EXPECT_EQ(failing.calls(), 0u);
  EXPECT_EQ(store->stats().hits, 3u);
  EXPECT_EQ(store->PathOf(b.refs[0].digest),
            dir.Path("chunks/" + b.refs[0].digest.Hex().substr(0, 2) + "/" + b.refs[0].digest.Hex()));
}

std::unique_ptr<ChunkStore> OpenInBoot(const std::string& root, const std::string& boot) {
  ChunkStore::Options o;
  o.root = root;
  o.boot_id = boot;
  auto s = ChunkStore::Open(o);
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

// Entries are written without a sync: after a reboot (a crash may have lost
// unsynced data under a final name) each is checked before it is used, kept
// when intact, fetched again when not. Within one boot they are trusted.
TEST(ChunkStore, AfterARebootEntriesAreCheckedBeforeUse) {
  TempDir dir;
  TestBlob b = MakeBlob({3000, 1000, 2000, 500});
  {
    FakeBlob blob(b.data);
    auto store = OpenInBoot(dir.dir(), "boot-1");
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Ensure(blob, b.refs).ok());
  }
  EXPECT_EQ(ReadFile(dir.Path("boot-id")), "boot-1\n");
  {  // A restart in the same boot: everything trusted, nothing moved.
    auto store = OpenInBoot(dir.dir(), "boot-1");
    ASSERT_TRUE(store);
    for (const ChunkRef& r : b.refs) EXPECT_TRUE(store->Has(r.digest));
    EXPECT_FALSE(fs::exists(dir.Path("unverified")));
  }
  // What a power loss can leave: a torn chunk of the right size, one cut
  // short, one intact, one never touched again.
  const std::string hex0 = b.refs[0].digest.Hex(), hex1 = b.refs[1].digest.Hex();
  {
    std::string torn = b.contents[0];
    torn[1500] ^= 1;
    fs::permissions(dir.Path("chunks/" + hex0.substr(0, 2) + "/" + hex0), fs::perms::owner_write,
                    fs::perm_options::add);
    WriteFile(dir.Path("chunks/" + hex0.substr(0, 2) + "/" + hex0), torn);
    fs::resize_file(dir.Path("chunks/" + hex1.substr(0, 2) + "/" + hex1), 10);
  }
  auto store = OpenInBoot(dir.dir(), "boot-2");
  ASSERT_TRUE(store);
  EXPECT_EQ(ReadFile(dir.Path("boot-id")), "boot-2\n");
  for (const ChunkRef& r : b.refs) {
    EXPECT_FALSE(store->Has(r.digest));  // not before its check
    EXPECT_EQ(store->OpenChunk(r.digest, r.size).status().code(), Code::kNotFound);
  }
  EXPECT_EQ(store->stats().entries, 4u);

  FakeBlob blob(b.data);
  const std::vector<ChunkRef> first3(b.refs.begin(), b.refs.begin() + 3);
  ASSERT_TRUE(store->Ensure(blob, first3).ok());
  // Only the damaged two were fetched; the intact one came back unfetched.
  ASSERT_EQ(blob.calls(), 1u);
  ASSERT_EQ(blob.call(0).size(), 2u);
  EXPECT_EQ(blob.call(0)[0].offset, b.refs[0].blob_offset);
  EXPECT_EQ(blob.call(0)[1].offset, b.refs[1].blob_offset);
  StoreStats st = store->stats();
  EXPECT_EQ(st.rechecked, 1u);
  EXPECT_EQ(st.corrupt_chunks, 2u);
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(st.entries, 4u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(ReadFile(store->PathOf(b.refs[i].digest)), b.contents[i]);

  // Another reboot before the last one was used: still checked, not trusted.
  store.reset();
  store = OpenInBoot(dir.dir(), "boot-3");
  ASSERT_TRUE(store);
  EXPECT_FALSE(store->Has(b.refs[3].digest));
  ASSERT_TRUE(store->Ensure(blob, std::span(b.refs).subspan(3)).ok());
  EXPECT_EQ(blob.calls(), 1u);
  EXPECT_EQ(store->stats().rechecked, 1u);
  EXPECT_FALSE(store->Has(b.refs[0].digest));  // boot 2's own entries wait for their check again
  EXPECT_TRUE(store->Has(b.refs[3].digest));

  // Trim sees entries waiting for their check too.
  auto trimmed = store->Trim(0, 0);
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(*trimmed, 4u);
  EXPECT_EQ(store->stats().entries, 0u);
  store.reset();
  // With nothing left to check, the directory goes.
  store = OpenInBoot(dir.dir(), "boot-3");
  EXPECT_FALSE(fs::exists(dir.Path("unverified")));
}

TEST(ChunkStore, OpenRemovesLeftoverTempFilesAndNeverServesThem) {
  TempDir dir;
  TestBlob b = MakeBlob({3000});
  const ChunkRef& r = b.refs[0];
  const std::string hex = r.digest.Hex();
  ASSERT_TRUE(OpenStore(dir.dir()));
  // A crash between write and rename: a half-written temp file next to where the entry goes.
  fs::create_directories(dir.Path("chunks/" + hex.substr(0, 2)));
  fs::create_directories(dir.Path("chunks/00"));
  const std::string temp = dir.Path("chunks/" + hex.substr(0, 2) + "/.tmp-" + hex + "-Ab12Cd");
  WriteFile(temp, b.contents[0].substr(0, 1000));
  const std::string foreign = dir.Path("chunks/00/README");
  WriteFile(foreign, "not a chunk");

  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  EXPECT_FALSE(fs::exists(temp));
  EXPECT_TRUE(fs::exists(foreign));  // not ours to delete, nor to count
  EXPECT_EQ(store->stats().entries, 0u);
  EXPECT_FALSE(store->Has(r.digest));
  EXPECT_EQ(store->OpenChunk(r.digest, r.size).status().code(), Code::kNotFound);

  FakeBlob blob(b.data);
  ASSERT_TRUE(store->Ensure(blob, b.refs).ok());
  EXPECT_EQ(blob.calls(), 1u);
  EXPECT_EQ(ReadFile(store->PathOf(r.digest)), b.contents[0]);
}

// Regression test for a fixed bug: every Open removed every temp file, so a
// second process opening the shared cache (another mount, `ocix cache stats`)
// deleted the writes in flight of the first, whose renames then failed.
// Only temp files of writers that are gone are leftovers now.
TEST(ChunkStore, OpenKeepsTempFilesOfLiveWriters) {
  TempDir dir;
  ASSERT_TRUE(OpenStore(dir.dir()));
  fs::create_directories(dir.Path("chunks/ab"));
  const std::string hex(64, 'a');
  // pid 1 always runs; a pid that cannot exist stands for a crashed writer.
  const std::string live = dir.Path("chunks/ab/.tmp-1-" + hex + "-Ab12Cd");
  const std::string dead = dir.Path("chunks/ab/.tmp-2147483646-" + hex + "-Ef34Gh");
  WriteFile(live, "in flight");
  WriteFile(dead, "left behind");
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  EXPECT_TRUE(fs::exists(live));
  EXPECT_FALSE(fs::exists(dead));
}

TEST(ChunkStore, OpenChunkChecksSizeAndDropsDamagedEntries) {
  TempDir dir;
  TestBlob b = MakeBlob({3000, 2000});
  FakeBlob blob(b.data);
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Ensure(blob, b.refs).ok());

  auto fd = store->OpenChunk(b.refs[0].digest, 3000);
  ASSERT_TRUE(fd.ok()) << fd.status().ToString();
  std::string got(3000, '\0');
  ASSERT_EQ(pread(fd->get(), got.data(), got.size(), 0), 3000);
  EXPECT_EQ(got, b.contents[0]);
  EXPECT_EQ(write(fd->get(), "x", 1), -1);  // read-only

  // A wrong expected size: NotFound, and the file is gone.
  auto wrong = store->OpenChunk(b.refs[0].digest, 2999);
  EXPECT_EQ(wrong.status().code(), Code::kNotFound);
  EXPECT_NE(wrong.status().message().find("expected 2999"), std::string::npos);
  EXPECT_FALSE(store->Has(b.refs[0].digest));
  EXPECT_EQ(store->stats().entries, 1u);
  EXPECT_EQ(store->stats().bytes, 2000u);
  // The fd opened before stays readable (the FUSE side may hold one).
  EXPECT_EQ(pread(fd->get(), got.data(), got.size(), 0), 3000);

  // Disk damage: the file shrank.
  fs::resize_file(store->PathOf(b.refs[1].digest), 100);
  EXPECT_EQ(store->OpenChunk(b.refs[1].digest, 2000).status().code(), Code::kNotFound);
  EXPECT_FALSE(store->Has(b.refs[1].digest));
  EXPECT_EQ(store->stats().entries, 0u);

  // Both come back with the next Ensure.
  ASSERT_TRUE(store->Ensure(blob, b.refs).ok());
  EXPECT_TRUE(store->OpenChunk(b.refs[1].digest, 2000).ok());
  EXPECT_EQ(store->stats().entries, 2u);
}

TEST(ChunkStore, ReadChunkBounds) {
  TempDir dir;
  TestBlob b = MakeBlob({3000});
  const ChunkRef& r = b.refs[0];
  FakeBlob blob(b.data);
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  std::vector<uint8_t> buf(100);
  EXPECT_EQ(store->ReadChunk(r.digest, 3000, 0, buf).code(), Code::kNotFound);
  ASSERT_TRUE(store->Ensure(blob, b.refs).ok());

  ASSERT_TRUE(store->ReadChunk(r.digest, 3000, 1234, buf).ok());
  EXPECT_EQ(std::string(buf.begin(), buf.end()), b.contents[0].substr(1234, 100));
  ASSERT_TRUE(store->ReadChunk(r.digest, 3000, 2900, buf).ok());  // ends exactly at the end
  EXPECT_EQ(std::string(buf.begin(), buf.end()), b.contents[0].substr(2900));
  EXPECT_TRUE(store->ReadChunk(r.digest, 3000, 3000, std::span<uint8_t>()).ok());
  EXPECT_EQ(store->ReadChunk(r.digest, 3000, 2901, buf).code(), Code::kInvalidArgument);
  EXPECT_EQ(store->ReadChunk(r.digest, 3000, 3001, std::span<uint8_t>()).code(), Code::kInvalidArgument);
  EXPECT_EQ(store->ReadChunk(r.digest, 3000, UINT64_MAX, buf).code(), Code::kInvalidArgument);
  EXPECT_TRUE(store->Has(r.digest));  // a bad range is the caller's mistake, not damage
}

TEST(ChunkStore, RefusesImpossibleRefsAndOptions) {
  TempDir dir;
  TestBlob b = MakeBlob({3000});
  FakeBlob blob(b.data);
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  ChunkRef big = b.refs[0];
  big.size = kMaxChunkSize + 1;
  ChunkRef empty_frame = b.refs[0];
  empty_frame.frame_size = 0;
  ChunkRef huge_frame = b.refs[0];
  huge_frame.frame_size = ZSTD_compressBound(3000) + 1;
  ChunkRef wraps = b.refs[0];
  wraps.blob_offset = UINT64_MAX - 10;
  for (const ChunkRef& r : {big, empty_frame, huge_frame, wraps}) {
    std::vector<ChunkRef> both = {b.refs[0], r};
    EXPECT_EQ(store->Ensure(blob, both).code(), Code::kInvalidArgument);
  }
  EXPECT_EQ(blob.calls(), 0u);  // refused before fetching anything
  EXPECT_EQ(ChunkStore::Open({"", 1, ""}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ChunkStore::Open({dir.dir(), 0, ""}).status().code(), Code::kInvalidArgument);
  ASSERT_TRUE(store->Ensure(blob, std::span<const ChunkRef>()).ok());
}

TEST(FileBlobReader, ReadsRangesAndRefusesPastEnd) {
  TempDir dir;
  TestBlob b = MakeBlob({3000, 500, 2000});
  WriteFile(dir.Path("blob"), b.data);
  auto reader = OpenFileBlobReader(dir.Path("blob"));
  ASSERT_TRUE(reader.ok()) << reader.status().ToString();
  EXPECT_NE((*reader)->Describe().find(dir.Path("blob")), std::string::npos);

  const uint64_t n = b.data.size();
  std::vector<ByteRange> ranges = {{10, 20}, {0, 5}, {n - 3, 3}, {n, 0}};
  auto got = (*reader)->ReadRanges(ranges);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->size(), 4u);
  EXPECT_EQ((*got)[0], b.data.substr(10, 20));
  EXPECT_EQ((*got)[1], b.data.substr(0, 5));
  EXPECT_EQ((*got)[2], b.data.substr(n - 3));
  EXPECT_EQ((*got)[3], "");

  for (ByteRange bad : {ByteRange{n - 3, 4}, ByteRange{n + 1, 0}, ByteRange{5, UINT64_MAX}}) {
    std::vector<ByteRange> rs = {{0, 1}, bad};
    EXPECT_EQ((*reader)->ReadRanges(rs).status().code(), Code::kInvalidArgument);
  }
  EXPECT_EQ(OpenFileBlobReader(dir.Path("missing")).status().code(), Code::kNotFound);
  EXPECT_EQ(OpenFileBlobReader(dir.dir()).status().code(), Code::kInvalidArgument);

  // End to end: the store fetches through it.
  auto store = OpenStore(dir.Path("store"));
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Ensure(**reader, b.refs).ok());
  for (size_t i = 0; i < b.refs.size(); ++i) EXPECT_EQ(ReadFile(store->PathOf(b.refs[i].digest)), b.contents[i]);
}

// No network: the digest is checked before any request. Many threads at once
// exercise the client pool (at most kMaxRegistryBlobReaderClients clients).
TEST(RegistryBlobReader, DescribesAndIsSafeToShare) {
  auto repo = Reference::Parse("127.0.0.1:1/library/x:latest");
  ASSERT_TRUE(repo.ok());
  auto reader = MakeRegistryBlobReader(RegistryOptions{}, *repo, "sha256:nothex");
  EXPECT_EQ(reader->Describe(), "registry blob 127.0.0.1:1/library/x@sha256:nothex");
  std::vector<std::thread> threads;
  std::atomic<int> invalid{0};
  for (int i = 0; i < 16; ++i) {
    threads.emplace_back([&] {
      std::vector<ByteRange> r = {{0, 10}};
      if (reader->ReadRanges(r).status().code() == Code::kInvalidArgument) ++invalid;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(invalid.load(), 16);
}

}  // namespace
}  // namespace ocix::core

namespace ocix::core {
namespace {

TEST(ChunkStore, TrimEvictsLeastRecentlyUsedDownToTheLowWaterMark) {
  TempDir dir;
  TestBlob b = MakeBlob({4000, 4000, 4000, 4000});
  FakeBlob blob(b.data);
  auto store = OpenStore(dir.dir());
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->Ensure(blob, b.refs).ok());
  // Ages: chunk 2 used most recently, chunk 0 longest ago.
  const int64_t base = 1'700'000'000;
  const int order[4] = {0, 3, 1, 2};
  for (int rank = 0; rank < 4; ++rank) {
    timespec times[2] = {{base + rank * 10, 0}, {base + rank * 10, 0}};
    ASSERT_EQ(::utimensat(AT_FDCWD, store->PathOf(b.refs[order[rank]].digest).c_str(), times, 0), 0);
  }
  auto none = store->Trim(16000, 8000);
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(*none, 0u);  // at the limit: nothing to do

  auto r = store->Trim(12000, 8000);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(*r, 2u);
  EXPECT_FALSE(store->Has(b.refs[0].digest));
  EXPECT_FALSE(store->Has(b.refs[3].digest));
  EXPECT_TRUE(store->Has(b.refs[1].digest));
  EXPECT_TRUE(store->Has(b.refs[2].digest));
  StoreStats st = store->stats();
  EXPECT_EQ(st.entries, 2u);
  EXPECT_EQ(st.bytes, 8000u);
  EXPECT_EQ(st.evicted, 2u);

  // An evicted chunk is fetched again on demand.
  ASSERT_TRUE(store->Ensure(blob, std::span(b.refs).first(1)).ok());
  EXPECT_EQ(ReadFile(store->PathOf(b.refs[0].digest)), b.contents[0]);
}

}  // namespace
}  // namespace ocix::core

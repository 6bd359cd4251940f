#include "ocix/core/store/chunk_store.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <system_error>
#include <vector>

#include "ocix/core/atomic_file.h"
#include "ocix/core/limits.h"

namespace ocix::core {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kTempPrefix = ".tmp-";

std::string ShardName(unsigned i) {
  static constexpr char kHex[] = "0123456789abcdef";
  return {kHex[(i >> 4) & 0xf], kHex[i & 0xf]};
}

// ".tmp-<pid>-..." of a process that still runs (and is not this one: a
// store opened here has no writes in flight yet). Old or odd names count as
// dead writers.
bool WriterAlive(std::string_view name) {
  std::string_view rest = name.substr(kTempPrefix.size());
  const size_t dash = rest.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash > 10) return false;
  pid_t pid = 0;
  for (char c : rest.substr(0, dash)) {
    if (c < '0' || c > '9') return false;
    pid = pid * 10 + (c - '0');
  }
  if (pid <= 0 || pid == ::getpid()) return false;
  return ::kill(pid, 0) == 0 || errno == EPERM;
}

// A final entry name: 64 lowercase hex digits starting with the shard's two.
bool IsEntryName(std::string_view name, std::string_view shard) {
  if (name.size() != 2 * kDigestSize || name.substr(0, 2) != shard) return false;
  return std::all_of(name.begin(), name.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

Status ValidateRef(const ChunkRef& c) {
  const std::string what = "chunk " + c.digest.Hex();
  if (c.size > kMaxChunkSize)
    return InvalidArgument(what + ": size " + std::to_string(c.size) + " exceeds " + std::to_string(kMaxChunkSize));
  // A frame larger than zstd's worst case for its content cannot be one we wrote;
  // the bound also caps what Ensure allocates per frame.
  if (c.frame_size == 0 || c.frame_size > ZSTD_compressBound(c.size))
    return InvalidArgument(what + ": frame size " + std::to_string(c.frame_size) + " impossible for " +
                           std::to_string(c.size) + " bytes");
  if (c.blob_offset > std::numeric_limits<uint64_t>::max() - c.frame_size)
    return InvalidArgument(what + ": frame ends past 2^64");
  return Status::Ok();
}

std::string ReadFirstLine(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  std::getline(in, line);
  return line;
}

// Moves every entry of from/<xx>/ to to/<xx>/ (temp files stay for the scan).
// One rename of the whole directory when `to` does not exist yet.
Status MoveEntries(const fs::path& from, const fs::path& to) {
  std::error_code ec;
  if (!fs::exists(from, ec) || fs::is_empty(from, ec)) return Status::Ok();
  if (!fs::exists(to, ec)) {
    if (::rename(from.c_str(), to.c_str()) == 0) return Status::Ok();
    // Another process opening after the same reboot got there first: merge.
    if (errno != EEXIST && errno != ENOTEMPTY) return ErrnoError("chunk store: rename " + from.string(), errno);
  }
  for (unsigned i = 0; i < 256; ++i) {
    const std::string shard = ShardName(i);
    std::vector<std::string> names;
    for (fs::directory_iterator it(from / shard, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (IsEntryName(name, shard)) names.push_back(name);
    }
    if (names.empty()) continue;
    const fs::path dst = to / shard;  // `to` exists: the rename above found it
    if (::mkdir(dst.c_str(), 0755) != 0 && errno != EEXIST)
      return ErrnoError("chunk store: mkdir " + dst.string(), errno);
    for (const std::string& n : names) {
      if (::rename((from / shard / n).c_str(), (dst / n).c_str()) != 0 && errno != ENOENT)
        return ErrnoError("chunk store: move " + (from / shard / n).string(), errno);
    }
  }
  return Status::Ok();
}

// Counts the entries of dir/<xx>/ and removes dead writers' temp files.
Status ScanEntries(const fs::path& dir, StoreStats& counted) {
  // Shards are created on first write (removing directories is slow on some
  // file systems, which made every test that drops a store slow), so only the
  // existing ones are scanned.
  for (unsigned i = 0; i < 256; ++i) {
    const std::string shard = ShardName(i);
    const fs::path sdir = dir / shard;
    std::error_code ec;
    if (!fs::is_directory(sdir, ec)) continue;
    // Collect first: removing entries while iterating a directory is unspecified.
    std::vector<fs::path> leftovers;
    for (fs::directory_iterator it(sdir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (name.starts_with(kTempPrefix)) {
        // Another process sharing the cache may be writing this one right
        // now: only a dead writer's temp files are leftovers.
        if (!WriterAlive(name)) leftovers.push_back(it->path());
        continue;
      }
      std::error_code fec;
      if (!IsEntryName(name, shard) || !it->is_regular_file(fec)) continue;  // not ours: leave it alone
      const uintmax_t size = it->file_size(fec);
      if (fec) continue;
      ++counted.entries;
      counted.bytes += size;
    }
    if (ec) return IoError("chunk store: list " + sdir.string() + ": " + ec.message());
    for (const fs::path& p : leftovers) {
      fs::remove(p, ec);
      // Gone already: its writer renamed or removed it meanwhile.
      if (ec && ec != std::errc::no_such_file_or_directory)
        return IoError("chunk store: remove leftover " + p.string() + ": " + ec.message());
    }
  }
  return Status::Ok();
}

// pread until `out` is full or the file ends: the bytes read, -1 on error (errno set).
ssize_t ReadFull(int fd, std::span<uint8_t> out, uint64_t offset) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return -1;
    if (n == 0) break;
    done += static_cast<size_t>(n);
  }
  return static_cast<ssize_t>(done);
}

// The shard directory of an entry path (created with its first entry).
Status MakeShardOf(const std::string& entry_path) {
  const std::string shard = entry_path.substr(0, entry_path.size() - 2 * kDigestSize - 1);
  if (::mkdir(shard.c_str(), 0755) != 0 && errno != EEXIST) return ErrnoError("chunk store: mkdir " + shard, errno);
  return Status::Ok();
}

bool EntryExists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

struct DCtxDeleter {
  void operator()(ZSTD_DCtx* c) const { ZSTD_freeDCtx(c); }
};

// Unlinks a temp file unless it was renamed into place.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  void Committed() { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace

struct ChunkStore::Flight {
  bool done = false;  // GUARDED_BY(mu_)
  Status status;      // GUARDED_BY(mu_); the fetch's result once done
  std::condition_variable cv;
};

struct ChunkStore::Owned {
  ChunkRef ref;
  std::shared_ptr<Flight> flight;
  bool fetch = true;  // false: stored meanwhile by someone else (a hit)
  Status status = Internal("fetch abandoned");
  bool completed = false;
};

ChunkStore::ChunkStore(Options options) : options_(std::move(options)) {}
ChunkStore::~ChunkStore() = default;

Result<std::unique_ptr<ChunkStore>> ChunkStore::Open(Options options) {
  if (options.root.empty()) return InvalidArgument("chunk store: empty root");
  if (options.max_fetch_attempts < 1) return InvalidArgument("chunk store: max_fetch_attempts must be >= 1");
  while (options.root.size() > 1 && options.root.back() == '/') options.root.pop_back();
  const fs::path chunks = fs::path(options.root) / "chunks";
  std::error_code ec;
  fs::create_directories(chunks, ec);
  if (ec) return IoError("chunk store: create " + chunks.string() + ": " + ec.message());

  // Entries written in an earlier boot may have lost unsynced data to a
  // crash: they are checked again before use. Within one boot the page
  // cache holds what was written, whatever happened to the processes.
  // "" when unknown: every Open then rechecks.
  const std::string boot = options.boot_id.empty() ? ReadFirstLine("/proc/sys/kernel/random/boot_id") : options.boot_id;
  const fs::path boot_file = fs::path(options.root) / "boot-id";
  const fs::path unverified = fs::path(options.root) / "unverified";
  if (boot.empty() || ReadFirstLine(boot_file) != boot) {
    OCIX_RETURN_IF_ERROR(MoveEntries(chunks, unverified));
    fs::create_directories(chunks, ec);
    if (ec) return IoError("chunk store: create " + chunks.string() + ": " + ec.message());
    // No sync needed: if this is lost, so is everything written after it.
    if (!boot.empty()) OCIX_RETURN_IF_ERROR(WriteFileAtomic(boot_file.string(), boot + "\n"));
  }

  StoreStats counted;
  OCIX_RETURN_IF_ERROR(ScanEntries(chunks, counted));
  StoreStats old;
  OCIX_RETURN_IF_ERROR(ScanEntries(unverified, old));
  counted.entries += old.entries;
  counted.bytes += old.bytes;
  std::unique_ptr<ChunkStore> store(new ChunkStore(std::move(options)));
  store->stats_ = counted;  // not shared yet
  store->has_unverified_ = old.entries > 0;
  if (old.entries == 0) fs::remove_all(unverified, ec);  // all checked (or never any): one lookup less per miss
  return store;
}

Result<uint64_t> ChunkStore::Trim(uint64_t max_bytes, uint64_t low_water_bytes) {
  {
    std::lock_guard lock(mu_);
    if (stats_.bytes <= max_bytes) return uint64_t{0};
  }
  struct Candidate {
    int64_t used_ns;
    uint64_t size;
    fs::path path;
  };
  std::vector<Candidate> all;
  uint64_t total = 0;
  for (unsigned i = 0; i < 2 * 256; ++i) {  // chunks/00..ff, then unverified/00..ff
    const std::string shard = ShardName(i % 256);
    const fs::path dir = fs::path(options_.root) / (i < 256 ? "chunks" : "unverified") / shard;
    std::error_code ec;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
      const std::string name = it->path().filename().string();
      if (!IsEntryName(name, shard)) continue;
      struct stat st {};
      if (::lstat(it->path().c_str(), &st) != 0 || !S_ISREG(st.st_mode)) continue;
      auto ns = [](const timespec& t) { return static_cast<int64_t>(t.tv_sec) * 1'000'000'000 + t.tv_nsec; };
      all.push_back({std::max(ns(st.st_atim), ns(st.st_mtim)), static_cast<uint64_t>(st.st_size), it->path()});
      total += static_cast<uint64_t>(st.st_size);
    }
  }
  std::sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) { return a.used_ns < b.used_ns; });
  uint64_t removed = 0, removed_bytes = 0;
  for (const Candidate& c : all) {
    if (total - removed_bytes <= low_water_bytes) break;
    if (::unlink(c.path.c_str()) != 0) {
      if (errno == ENOENT) continue;
      return ErrnoError("chunk store: evict " + c.path.string(), errno);
    }
    ++removed;
    removed_bytes += c.size;
  }
  std::lock_guard lock(mu_);
  stats_.entries -= std::min(stats_.entries, removed);
  stats_.bytes -= std::min(stats_.bytes, removed_bytes);
  stats_.evicted += removed;
  return removed;
}

std::string ChunkStore::PathOf(const Digest& d) const {
  const std::string hex = d.Hex();
  return options_.root + "/chunks/" + hex.substr(0, 2) + "/" + hex;
}

void ChunkStore::Uncount(uint64_t bytes) {
  stats_.entries -= std::min<uint64_t>(stats_.entries, 1);
  stats_.bytes -= std::min<uint64_t>(stats_.bytes, bytes);
}

std::string ChunkStore::UnverifiedPathOf(const Digest& d) const {
  const std::string hex = d.Hex();
  return options_.root + "/unverified/" + hex.substr(0, 2) + "/" + hex;
}

bool ChunkStore::Recheck(const ChunkRef& ref) {
  if (!has_unverified_) return false;
  const std::string path = UnverifiedPathOf(ref.digest);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  struct stat st {};
  bool intact = ::fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == ref.size;
  if (intact) {
    std::vector<uint8_t> data(ref.size);
    intact = ReadFull(fd.get(), data, 0) == static_cast<ssize_t>(data.size()) &&
             Blake3::Hash(std::span<const uint8_t>(data)) == ref.digest;
  }
  if (intact) {
    const std::string final_path = PathOf(ref.digest);
    bool moved = ::rename(path.c_str(), final_path.c_str()) == 0;
    if (!moved && errno == ENOENT && MakeShardOf(final_path).ok())  // the shard's first entry
      moved = ::rename(path.c_str(), final_path.c_str()) == 0;
    // Not moved (gone meanwhile, or the disk fails): not stored, so fetched.
    if (!moved) return false;
    std::lock_guard lock(mu_);
    ++stats_.rechecked;
    return true;
  }
  if (::unlink(path.c_str()) == 0) {
    std::lock_guard lock(mu_);
    ++stats_.corrupt_chunks;
    Uncount(static_cast<uint64_t>(st.st_size));
  }
  return false;
}

bool ChunkStore::Has(const Digest& d) const { return EntryExists(PathOf(d)); }

StoreStats ChunkStore::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

Status ChunkStore::Ensure(BlobReader& blob, std::span<const ChunkRef> chunks) {
  for (const ChunkRef& c : chunks) OCIX_RETURN_IF_ERROR(ValidateRef(c));

  // Per unique digest, in input order: either a flight we own or one we wait for.
  std::set<Digest> seen;
  std::vector<Owned> owned;
  std::vector<std::shared_ptr<Flight>> waits;
  uint64_t hits = 0, misses = 0;
  // Completes our flights even on an unexpected exit, so waiters never hang.
  struct Completer {
    ChunkStore* store;
    std::vector<Owned>* owned;
    ~Completer() { store->CompleteFlights(*owned); }
  } completer{this, &owned};

  for (const ChunkRef& c : chunks) {
    if (!seen.insert(c.digest).second) continue;
    const std::string path = PathOf(c.digest);
    if (EntryExists(path)) {  // fast path, no lock
      ++hits;
      continue;
    }
    std::shared_ptr<Flight> flight;
    {
      std::lock_guard lock(mu_);
      auto it = in_flight_.find(c.digest);
      if (it != in_flight_.end()) {
        waits.push_back(it->second);
      } else {
        flight = std::make_shared<Flight>();
        in_flight_.emplace(c.digest, flight);
      }
    }
    if (!flight) {
      ++misses;
      continue;
    }
    // A fetch may have finished between our check and our flight: check again
    // now that no one else can start one.
    const bool stored_meanwhile = EntryExists(path) || Recheck(c);
    if (stored_meanwhile) {
      ++hits;
    } else {
      ++misses;
    }
    owned.push_back(Owned{c, std::move(flight), !stored_meanwhile, Status::Ok(), false});
  }
  {
    std::lock_guard lock(mu_);
    stats_.hits += hits;
    stats_.misses += misses;
  }

  FetchOwned(blob, owned);
  // Publish ours before waiting for others', so no two callers wait on each other.
  CompleteFlights(owned);

  Status first;
  size_t failed = 0;
  for (const Owned& o : owned) {
    if (o.status.ok()) continue;
    if (failed++ == 0) first = o.status;
  }
  for (const auto& f : waits) {
    std::unique_lock lock(mu_);
    f->cv.wait(lock, [&] { return f->done; });
    if (f->status.ok()) continue;
    if (failed++ == 0) first = f->status;
  }
  if (failed > 1)
    return {first.code(), first.message() + " (and " + std::to_string(failed - 1) + " more chunks failed)"};
  return first;
}

void ChunkStore::FetchOwned(BlobReader& blob, std::span<Owned> owned) {
  std::vector<Owned*> todo;
  for (Owned& o : owned) {
    if (o.fetch) todo.push_back(&o);
  }
  // Blob order lets the reader coalesce adjacent frames into one request.
  std::sort(todo.begin(), todo.end(),
            [](const Owned* a, const Owned* b) { return a->ref.blob_offset < b->ref.blob_offset; });
  size_t begin = 0;
  while (begin < todo.size()) {
    size_t end = begin + 1;
    uint64_t bytes = todo[begin]->ref.frame_size;
    while (end < todo.size() && bytes + todo[end]->ref.frame_size <= kMaxFetchBatchBytes)
      bytes += todo[end++]->ref.frame_size;
    FetchBatch(blob, std::span<Owned* const>(todo).subspan(begin, end - begin));
    begin = end;
  }
}

void ChunkStore::FetchBatch(BlobReader& blob, std::span<Owned* const> batch) {
  std::vector<ByteRange> ranges;
  ranges.reserve(batch.size());
  for (const Owned* o : batch) ranges.push_back({o->ref.blob_offset, o->ref.frame_size});

  Result<std::vector<std::string>> frames = Internal("not fetched");
  for (int attempt = 0; attempt < options_.max_fetch_attempts; ++attempt) {
    frames = blob.ReadRanges(ranges);
    // A reader that breaks its contract is a failed fetch, not corrupt data.
    if (frames.ok() && frames->size() != ranges.size())
      frames = Internal("returned " + std::to_string(frames->size()) + " buffers for " + std::to_string(ranges.size()) +
                        " ranges");
    std::lock_guard lock(mu_);
    ++stats_.fetch_requests;
    if (!frames.ok()) ++stats_.fetch_errors;
    if (frames.ok()) break;
  }
  if (!frames.ok()) {
    const Status s = frames.status().WithContext("fetch " + std::to_string(batch.size()) + " chunks (first " +
                                                 batch.front()->ref.digest.Hex() + ") from " + blob.Describe());
    for (Owned* o : batch) o->status = s;
    return;
  }
  for (size_t i = 0; i < batch.size(); ++i) {
    std::string frame = std::move((*frames)[i]);  // freed after this chunk
    {
      std::lock_guard lock(mu_);
      ++stats_.fetched_chunks;
      stats_.fetched_bytes += frame.size();
    }
    batch[i]->status = VerifyAndStore(batch[i]->ref, frame).WithContext("from " + blob.Describe());
    // Readers waiting on this chunk need not wait for the rest of the batch.
    CompleteFlights(std::span<Owned>(batch[i], 1));
  }
}

Status ChunkStore::VerifyAndStore(const ChunkRef& ref, std::string_view frame) {
  const std::string what = "chunk " + ref.digest.Hex();
  auto corrupt = [&](const std::string& why) {
    std::lock_guard lock(mu_);
    ++stats_.corrupt_chunks;
    return Corruption(what + ": " + why);
  };
  if (frame.size() != ref.frame_size)
    return corrupt("got " + std::to_string(frame.size()) + " bytes of a " + std::to_string(ref.frame_size) +
                   "-byte frame");
  // Exactly one regular zstd frame: a skippable frame decompresses to nothing,
  // and ZSTD_decompress would happily decode several concatenated frames.
  if (frame.size() < 4 || (static_cast<uint32_t>(static_cast<uint8_t>(frame[0])) |
                           static_cast<uint32_t>(static_cast<uint8_t>(frame[1])) << 8 |
                           static_cast<uint32_t>(static_cast<uint8_t>(frame[2])) << 16 |
                           static_cast<uint32_t>(static_cast<uint8_t>(frame[3])) << 24) != ZSTD_MAGICNUMBER)
    return corrupt("not a zstd frame");
  const size_t frame_len = ZSTD_findFrameCompressedSize(frame.data(), frame.size());
  if (ZSTD_isError(frame_len)) return corrupt(std::string("bad zstd frame: ") + ZSTD_getErrorName(frame_len));
  if (frame_len != frame.size())
    return corrupt("the zstd frame is " + std::to_string(frame_len) + " of the " + std::to_string(frame.size()) +
                   " bytes (more than one frame)");
  const unsigned long long declared = ZSTD_getFrameContentSize(frame.data(), frame.size());
  if (declared == ZSTD_CONTENTSIZE_ERROR) return corrupt("bad zstd frame header");
  // Refuse before allocating or decoding when the header already disagrees.
  if (declared != ZSTD_CONTENTSIZE_UNKNOWN && declared != ref.size)
    return corrupt("frame holds " + std::to_string(declared) + " bytes, expected " + std::to_string(ref.size));

  std::unique_ptr<ZSTD_DCtx, DCtxDeleter> dctx(ZSTD_createDCtx());
  if (!dctx) return Internal("zstd: out of memory");
  std::vector<uint8_t> data(ref.size);
  // Capacity is exactly size: a frame that decodes to more fails here.
  const size_t n = ZSTD_decompressDCtx(dctx.get(), data.data(), data.size(), frame.data(), frame.size());
  if (ZSTD_isError(n)) return corrupt(std::string("zstd: ") + ZSTD_getErrorName(n));
  if (n != ref.size)
    return corrupt("frame decompresses to " + std::to_string(n) + " bytes, expected " + std::to_string(ref.size));
  const Digest actual = Blake3::Hash(std::span<const uint8_t>(data));
  if (actual != ref.digest) return corrupt("content hashes to " + actual.Hex());
  return WriteEntry(ref, data);
}

Status ChunkStore::WriteEntry(const ChunkRef& ref, std::span<const uint8_t> data) {
  const std::string final_path = PathOf(ref.digest);
  // The writer's pid is in the name so Open in another process can tell a
  // write in progress from a crashed one's leftover.
  std::string tmp = final_path.substr(0, final_path.size() - 2 * kDigestSize) + std::string(kTempPrefix) +
                    std::to_string(::getpid()) + "-" + ref.digest.Hex() + "-XXXXXX";
  const std::string template_path = tmp;
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd.valid() && errno == ENOENT) {  // the shard's first entry
    OCIX_RETURN_IF_ERROR(MakeShardOf(final_path));
    tmp = template_path;  // mkostemp may have modified the XXXXXX
    fd.Reset(::mkostemp(tmp.data(), O_CLOEXEC));
  }
  if (!fd.valid()) return ErrnoError("chunk store: create temp file " + tmp, errno);
  TempFile guard(tmp);
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(fd.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return ErrnoError("chunk store: write " + tmp, errno);
    done += static_cast<size_t>(n);
  }
  // Read-only, like the content it holds.
  if (::fchmod(fd.get(), 0444) != 0) return ErrnoError("chunk store: chmod " + tmp, errno);
  // No fdatasync: see "Crash safety" in the header.
  if (::close(fd.Release()) != 0) return ErrnoError("chunk store: close " + tmp, errno);
  if (::rename(tmp.c_str(), final_path.c_str()) != 0) return ErrnoError("chunk store: rename to " + final_path, errno);
  guard.Committed();
  std::lock_guard lock(mu_);
  ++stats_.entries;
  stats_.bytes += data.size();
  return Status::Ok();
}

void ChunkStore::CompleteFlights(std::span<Owned> owned) {
  std::lock_guard lock(mu_);
  for (Owned& o : owned) {
    if (o.completed) continue;
    o.completed = true;
    o.flight->status = o.status;
    o.flight->done = true;
    in_flight_.erase(o.ref.digest);
    o.flight->cv.notify_all();
  }
}

Result<UniqueFd> ChunkStore::OpenChunk(const Digest& d, uint64_t expected_size) {
  const std::string path = PathOf(d);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid() && errno == ENOENT) return NotFound("chunk " + d.Hex() + " is not stored");
  if (!fd.valid()) return ErrnoError("chunk store: open " + path, errno);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return ErrnoError("chunk store: stat " + path, errno);
  if (S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == expected_size) return fd;

  // Damaged: drop it so the next Ensure fetches it again. Only if the name
  // still points at the file we checked — a concurrent Ensure may have just
  // renamed a good entry over it.
  struct stat now {};
  if (::stat(path.c_str(), &now) == 0 && now.st_dev == st.st_dev && now.st_ino == st.st_ino &&
      ::unlink(path.c_str()) == 0) {
    std::lock_guard lock(mu_);
    Uncount(static_cast<uint64_t>(st.st_size));
  }
  return NotFound("chunk " + d.Hex() + ": stored file has " + std::to_string(st.st_size) + " bytes, expected " +
                  std::to_string(expected_size) + "; removed");
}

Status ChunkStore::ReadChunk(const Digest& d, uint64_t chunk_size, uint64_t offset, std::span<uint8_t> out) {
  if (offset > chunk_size || out.size() > chunk_size - offset)
    return InvalidArgument("chunk " + d.Hex() + ": read [" + std::to_string(offset) + ", +" +
                           std::to_string(out.size()) + ") outside its " + std::to_string(chunk_size) + " bytes");
  OCIX_ASSIGN_OR_RETURN(UniqueFd fd, OpenChunk(d, chunk_size));
  const ssize_t n = ReadFull(fd.get(), out, offset);
  if (n < 0) return ErrnoError("chunk store: read " + PathOf(d), errno);
  if (static_cast<size_t>(n) < out.size()) return IoError("chunk store: " + PathOf(d) + " is shorter than its size");
  return Status::Ok();
}

}  // namespace ocix::core

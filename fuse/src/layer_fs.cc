#define FUSE_USE_VERSION 314
#include "ocix/fuse/layer_fs.h"

#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <limits>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace ocix::fuse {

using core::Entry;
using core::FileType;

namespace {

constexpr const char kOpaqueXattr[] = "trusted.overlay.opaque";

struct Node {
  const Entry* entry = nullptr;  // metadata; for hardlinked names, the primary
  fuse_ino_t parent = FUSE_ROOT_ID;
  std::vector<std::pair<std::string_view, fuse_ino_t>> children;  // sorted by name
  uint32_t nlink = 1;
  const core::ContentTable* content = nullptr;  // regular files with content
};

}  // namespace

std::string_view FuseOpName(FuseOp op) {
  switch (op) {
    case FuseOp::kLookup: return "lookup";
    case FuseOp::kGetattr: return "getattr";
    case FuseOp::kReadlink: return "readlink";
    case FuseOp::kOpen: return "open";
    case FuseOp::kRead: return "read";
    case FuseOp::kOpendir: return "opendir";
    case FuseOp::kReaddir: return "readdir";
    case FuseOp::kReaddirplus: return "readdirplus";
    case FuseOp::kGetxattr: return "getxattr";
    case FuseOp::kListxattr: return "listxattr";
    case FuseOp::kStatfs: return "statfs";
  }
  return "unknown";
}

struct LayerFs::Impl {
  core::Toc toc;
  core::ChunkStore* store = nullptr;
  std::unique_ptr<core::BlobReader> blob;
  LayerFsOptions opts;
  LayerFsStats* stats = nullptr;
  std::vector<Node> nodes;        // ino - 1
  std::deque<Entry> synthesized;  // directories a layer leaves implied
  uint64_t total_bytes = 0;
  bool has_xattrs = false;  // any entry with an extended attribute or the opaque marker
  // The kernel takes ENOSYS from open/opendir as "open everything without
  // asking" (page cache and readdir cache kept, as our replies would ask):
  // two round trips (open and release) less per file and directory opened.
  std::atomic<bool> no_open{false}, no_opendir{false};

  // Every frame of the blob once, in blob order; for each content table, the
  // position of each of its chunks there; whether a read was served from it.
  std::vector<core::ChunkRef> frames;
  std::vector<std::vector<uint32_t>> frame_of;  // parallel to toc.contents
  std::unique_ptr<std::atomic<bool>[]> served;

  // Read-ahead state: the blob span the last missing read fetched.
  std::mutex ra_mu;
  bool ra_valid = false;          // GUARDED_BY(ra_mu)
  uint64_t ra_lo = 0;             // GUARDED_BY(ra_mu)
  uint64_t ra_hi = 0;             // GUARDED_BY(ra_mu)
  uint64_t ra_window = 0;         // GUARDED_BY(ra_mu)
  std::vector<uint32_t> ra_last;  // GUARDED_BY(ra_mu): frames the last read-ahead fetched

  // Read-ahead is fetched on a thread of its own, in parallel with the read
  // that asked for it, so that read waits only for its own chunks.
  std::mutex ra_q_mu;
  std::condition_variable ra_q_cv;
  struct Batch {
    std::vector<core::ChunkRef> refs;
    bool fill = false;  // the rest of one file: never dropped as stale
  };
  std::deque<Batch> ra_queue;  // GUARDED_BY(ra_q_mu)
  // Per content table: how many reads of it missed the cache (saturating).
  std::unique_ptr<std::atomic<uint8_t>[]> file_misses;
  bool ra_stop = false;  // GUARDED_BY(ra_q_mu)
  std::thread ra_thread;

  Node* Get(fuse_ino_t ino) { return ino >= 1 && ino <= nodes.size() ? &nodes[ino - 1] : nullptr; }

  core::Status Build();
  void IndexFrames();
  void Attr(fuse_ino_t ino, struct stat& st) const;
  // Both called only for a read that misses: [lo, hi) spans its missing frames.
  std::vector<core::ChunkRef> ReadAhead(uint64_t lo, uint64_t hi);
  std::vector<Batch> FileFill(size_t table, size_t first, std::span<const core::ChunkRef> refs);
  core::Status Fetch(size_t table, size_t first, std::span<const core::ChunkRef> refs);
  void Enqueue(std::vector<Batch> batches);
  void StartReadAhead();
  void StopReadAhead();
  void ReadAheadLoop();
  int Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off);
  void Count(FuseOp op) { ++stats->ops[static_cast<size_t>(op)]; }
};

namespace {

mode_t TypeBits(FileType t) {
  switch (t) {
    case FileType::kRegular:
    case FileType::kHardlink: return S_IFREG;
    case FileType::kDirectory: return S_IFDIR;
    case FileType::kSymlink: return S_IFLNK;
    case FileType::kCharDevice:
    case FileType::kWhiteout: return S_IFCHR;  // overlayfs' whiteout: char 0:0
    case FileType::kBlockDevice: return S_IFBLK;
    case FileType::kFifo: return S_IFIFO;
  }
  return S_IFREG;
}

std::string_view BaseName(std::string_view path) { return path == "/" ? path : path.substr(path.rfind('/') + 1); }

}  // namespace

core::Status LayerFs::Impl::Build() {
  std::unordered_map<std::string_view, fuse_ino_t> ino_of;
  auto add = [&](const Entry* e) {
    Node n;
    n.entry = e;
    nodes.push_back(std::move(n));
    ino_of[e->path] = nodes.size();
    return static_cast<fuse_ino_t>(nodes.size());
  };
  auto synth_dir = [&](std::string path) {
    Entry d;
    const Entry* below = opts.lower_dir ? opts.lower_dir(path) : nullptr;
    if (below != nullptr && below->type == FileType::kDirectory) {
      d = *below;
      d.opaque = false;
    } else {
      d.type = FileType::kDirectory;
      d.mode = 0755;
    }
    d.path = std::move(path);
    synthesized.push_back(std::move(d));
    return &synthesized.back();
  };
  // Root first, so it is FUSE_ROOT_ID.
  const Entry* root = toc.manifest.Find("/");
  add(root != nullptr ? root : synth_dir("/"));
  // Directories a layer does not list (they come from lower layers) are
  // synthesized so the tree is complete.
  std::function<fuse_ino_t(std::string_view)> ensure_dir = [&](std::string_view path) -> fuse_ino_t {
    if (auto it = ino_of.find(path); it != ino_of.end()) return it->second;
    const Entry* d = synth_dir(std::string(path));
    fuse_ino_t parent = ensure_dir(core::ParentPath(d->path));
    fuse_ino_t ino = add(d);
    nodes[ino - 1].parent = parent;
    nodes[parent - 1].children.emplace_back(BaseName(d->path), ino);
    return ino;
  };
  for (const Entry& e : toc.manifest.entries) {
    if (e.path == "/") continue;
    fuse_ino_t parent = ensure_dir(core::ParentPath(e.path));
    if (nodes[parent - 1].entry->type != FileType::kDirectory)
      return core::Corruption("\"" + e.path + "\": parent is not a directory");
    fuse_ino_t ino;
    if (e.type == FileType::kHardlink) {
      auto it = ino_of.find(e.target);
      if (it == ino_of.end()) return core::Corruption("\"" + e.path + "\": hardlink target missing");
      ino = it->second;
      ++nodes[ino - 1].nlink;
    } else {
      ino = add(&e);
      nodes[ino - 1].parent = parent;
      if (e.type == FileType::kRegular && e.size > 0) {
        nodes[ino - 1].content = toc.Find(e.digest);
        if (nodes[ino - 1].content == nullptr) return core::Corruption("\"" + e.path + "\": no chunk table");
        total_bytes += e.size;
      }
    }
    nodes[parent - 1].children.emplace_back(BaseName(e.path), ino);
  }
  for (Node& n : nodes) {
    std::sort(n.children.begin(), n.children.end());
    if (n.entry->type == FileType::kDirectory) {
      n.nlink = 2;
      for (const auto& [name, ino] : n.children)
        if (nodes[ino - 1].entry->type == FileType::kDirectory) ++n.nlink;
    }
  }
  for (const Node& n : nodes) has_xattrs = has_xattrs || n.entry->opaque || !n.entry->xattrs.empty();
  IndexFrames();
  return core::Status::Ok();
}

void LayerFs::Impl::IndexFrames() {
  for (const core::ContentTable& t : toc.contents)
    for (size_t i = 0; i < t.chunks.size(); ++i) {
      const core::ChunkLocation& c = t.chunks[i];
      frames.push_back(core::ChunkRef{c.digest, toc.ChunkRange(t.size, i).second, c.blob_offset, c.frame_size});
    }
  // Equal chunks share one frame (DecodeToc checked that frames do not overlap).
  std::sort(frames.begin(), frames.end(), [](const auto& a, const auto& b) { return a.blob_offset < b.blob_offset; });
  frames.erase(std::unique(frames.begin(), frames.end(),
                           [](const auto& a, const auto& b) { return a.blob_offset == b.blob_offset; }),
               frames.end());
  frame_of.resize(toc.contents.size());
  for (size_t t = 0; t < toc.contents.size(); ++t)
    for (const core::ChunkLocation& c : toc.contents[t].chunks) {
      auto it = std::lower_bound(frames.begin(), frames.end(), c.blob_offset,
                                 [](const core::ChunkRef& f, uint64_t off) { return f.blob_offset < off; });
      frame_of[t].push_back(static_cast<uint32_t>(it - frames.begin()));
    }
  served = std::make_unique<std::atomic<bool>[]>(frames.size());
  file_misses = std::make_unique<std::atomic<uint8_t>[]>(toc.contents.size());
}

void LayerFs::Impl::Attr(fuse_ino_t ino, struct stat& st) const {
  const Node& n = nodes[ino - 1];
  const Entry& e = *n.entry;
  std::memset(&st, 0, sizeof st);
  st.st_ino = ino;
  st.st_mode = TypeBits(e.type) | (e.type == FileType::kWhiteout ? 0 : e.mode);
  st.st_nlink = n.nlink;
  st.st_uid = e.uid;
  st.st_gid = e.gid;
  st.st_size = e.type == FileType::kRegular   ? static_cast<off_t>(e.size)
               : e.type == FileType::kSymlink ? static_cast<off_t>(e.target.size())
                                              : 0;
  if (e.type == FileType::kCharDevice || e.type == FileType::kBlockDevice)
    st.st_rdev = makedev(e.rdev_major, e.rdev_minor);
  st.st_mtim.tv_sec = e.mtime.sec;
  st.st_mtim.tv_nsec = e.mtime.nsec;
  st.st_atim = st.st_mtim;
  st.st_ctim = st.st_mtim;
  st.st_blksize = 4096;
  uint64_t allocated = e.type == FileType::kRegular ? e.size : 0;
  if (e.data) {
    allocated = 0;
    for (const core::Extent& x : *e.data) allocated += x.length;
  }
  st.st_blocks = static_cast<blkcnt_t>((allocated + 511) / 512);
}

std::vector<core::ChunkRef> LayerFs::Impl::ReadAhead(uint64_t lo, uint64_t hi) {
  std::lock_guard lock(ra_mu);
  if (!ra_last.empty()) {
    // The window follows how much of the last read-ahead was read since:
    // most of it, double; little of it, halve (to nothing below the minimum).
    size_t used = 0;
    for (uint32_t f : ra_last) used += served[f].load() ? 1 : 0;
    if (2 * used >= ra_last.size()) {
      ra_window = std::min(2 * ra_window, opts.readahead_max_bytes);
    } else if (4 * used < ra_last.size()) {
      ra_window /= 2;
      if (ra_window < opts.readahead_min_bytes) ra_window = 0;
    }
  } else if (ra_window == 0 && ra_valid) {
    // Two misses close together (either side, within the minimum window)
    // start read-ahead.
    const uint64_t reach = opts.readahead_min_bytes;
    if (lo + reach >= ra_lo && lo <= ra_hi + reach) ra_window = opts.readahead_min_bytes;
  }
  ra_last.clear();
  std::vector<core::ChunkRef> extra;
  uint64_t end = hi;
  auto it = std::lower_bound(frames.begin(), frames.end(), hi,
                             [](const core::ChunkRef& f, uint64_t off) { return f.blob_offset < off; });
  // Whole frames that end inside the window: a frame larger than the window
  // is not read ahead (the rest of a large file comes by file fill).
  for (; ra_window > 0 && it != frames.end() && it->blob_offset + it->frame_size <= hi + ra_window; ++it) {
    if (store->Has(it->digest)) continue;
    extra.push_back(*it);
    ra_last.push_back(static_cast<uint32_t>(it - frames.begin()));
    end = it->blob_offset + it->frame_size;
  }
  ra_valid = true;
  ra_lo = lo;
  ra_hi = end;
  return extra;
}

std::vector<LayerFs::Impl::Batch> LayerFs::Impl::FileFill(size_t table, size_t first,
                                                          std::span<const core::ChunkRef> refs) {
  const core::ContentTable& t = toc.contents[table];
  if (t.chunks.size() < 4) return {};
  // The third read of a file that misses: a file read in three places (an
  // executable being run, a file read on) is read all over, so the rest of
  // it follows in the background, in batches of the window. Two is not
  // enough: loading any shared library reads its header and its data.
  if (file_misses[table].fetch_add(1) != 2) {
    if (file_misses[table].load() > 3) file_misses[table] = 3;  // no wrap-around
    return {};
  }
  std::vector<Batch> out;
  uint64_t bytes = 0, total = 0;
  // From the chunk after this read on, then the file's beginning; never the
  // read's own chunks (the read fetches those itself).
  const size_t last = first + refs.size() - 1;
  for (size_t k = 1; k + refs.size() <= t.chunks.size(); ++k) {
    const size_t i = (last + k) % t.chunks.size();
    const core::ChunkLocation& c = t.chunks[i];
    if (store->Has(c.digest)) continue;
    // A large file read in places (a database, an archive) is not fetched
    // whole: at most eight windows of it.
    total += c.frame_size;
    if (total > 8 * opts.readahead_max_bytes) return {};
    if (out.empty() || bytes + c.frame_size > opts.readahead_max_bytes) {
      out.push_back(Batch{{}, true});
      bytes = 0;
    }
    out.back().refs.push_back(core::ChunkRef{c.digest, toc.ChunkRange(t.size, i).second, c.blob_offset, c.frame_size});
    bytes += c.frame_size;
  }
  return out;
}

void LayerFs::Impl::Enqueue(std::vector<Batch> batches) {
  if (batches.empty()) return;
  std::lock_guard lock(ra_q_mu);
  if (ra_stop || !ra_thread.joinable()) return;
  for (Batch& b : batches) {
    if (!b.fill) {
      // Older read-ahead than the last few is stale: the reader has moved on.
      size_t ahead = 0;
      for (const Batch& q : ra_queue) ahead += q.fill ? 0 : 1;
      for (auto it = ra_queue.begin(); ahead >= 4 && it != ra_queue.end();) {
        if (it->fill) {
          ++it;
        } else {
          it = ra_queue.erase(it);
          --ahead;
        }
      }
    }
    ra_queue.push_back(std::move(b));
  }
  ra_q_cv.notify_one();
}

core::Status LayerFs::Impl::Fetch(size_t table, size_t first, std::span<const core::ChunkRef> refs) {
  if (opts.readahead_max_bytes == 0) return store->Ensure(*blob, refs);
  uint64_t lo = std::numeric_limits<uint64_t>::max(), hi = 0;
  for (const core::ChunkRef& r : refs) {
    if (store->Has(r.digest)) continue;
    lo = std::min(lo, r.blob_offset);
    hi = std::max(hi, r.blob_offset + r.frame_size);
  }
  if (hi == 0) return store->Ensure(*blob, refs);  // all cached: nothing to read ahead
  std::vector<Batch> later = FileFill(table, first, refs);
  std::vector<core::ChunkRef> extra = ReadAhead(lo, hi);
  if (!extra.empty()) later.insert(later.begin(), Batch{std::move(extra), false});
  Enqueue(std::move(later));
  return store->Ensure(*blob, refs);
}

void LayerFs::Impl::StartReadAhead() {
  std::lock_guard lock(ra_q_mu);
  ra_stop = false;
  if (opts.readahead_max_bytes > 0 && !ra_thread.joinable()) ra_thread = std::thread([this] { ReadAheadLoop(); });
}

void LayerFs::Impl::StopReadAhead() {
  {
    std::lock_guard lock(ra_q_mu);
    ra_stop = true;
    ra_queue.clear();
  }
  ra_q_cv.notify_all();
  if (ra_thread.joinable()) ra_thread.join();  // after at most the batch in progress
}

void LayerFs::Impl::ReadAheadLoop() {
  for (;;) {
    std::vector<core::ChunkRef> batch;
    {
      std::unique_lock lock(ra_q_mu);
      ra_q_cv.wait(lock, [&] { return ra_stop || !ra_queue.empty(); });
      if (ra_stop) return;
      batch = std::move(ra_queue.front().refs);
      ra_queue.pop_front();
    }
    // A failure costs the read-ahead (and the reads waiting on its chunks
    // then fail as they would have on their own); nothing may end the thread.
    try {
      if (store->Ensure(*blob, batch).ok()) {
        stats->readahead_chunks += batch.size();
        for (const core::ChunkRef& r : batch) stats->readahead_frame_bytes += r.frame_size;
      }
    } catch (...) {
    }
  }
}

int LayerFs::Impl::Read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off) {
  const Node& n = nodes[ino - 1];
  const uint64_t file_size = n.entry->size;
  if (n.content == nullptr || static_cast<uint64_t>(off) >= file_size || size == 0)
    return fuse_reply_buf(req, nullptr, 0);
  const uint64_t start = static_cast<uint64_t>(off);
  const uint64_t end = std::min<uint64_t>(file_size, start + size);
  const uint64_t cs = toc.chunk_size;
  const size_t first = start / cs, last = (end - 1) / cs;
  const std::vector<uint32_t>& index = frame_of[static_cast<size_t>(n.content - toc.contents.data())];
  std::vector<core::ChunkRef> refs;
  for (size_t i = first; i <= last; ++i) {
    const core::ChunkLocation& c = n.content->chunks[i];
    refs.push_back(core::ChunkRef{c.digest, toc.ChunkRange(file_size, i).second, c.blob_offset, c.frame_size});
  }
  core::Status s;
  {
    // Prefetch yields while on-demand reads are in progress.
    struct Active {
      std::atomic<int>& n;
      explicit Active(std::atomic<int>& c) : n(c) { ++n; }
      ~Active() { --n; }
    } active(stats->active_reads);
    s = Fetch(static_cast<size_t>(n.content - toc.contents.data()), first, refs);
  }
  if (!s.ok()) {
    ++stats->read_errors;
    return fuse_reply_err(req, EIO);
  }
  // Every chunk goes by splice straight from its cache file when the kernel
  // allows it (libfuse copies otherwise).
  const size_t count = last - first + 1;
  std::vector<core::UniqueFd> fds;
  fds.reserve(count);
  for (size_t i = first; i <= last; ++i) {
    auto fd = store->OpenChunk(refs[i - first].digest, refs[i - first].size);
    if (!fd.ok()) {
      ++stats->read_errors;
      return fuse_reply_err(req, EIO);
    }
    // The first read of a chunk asks the kernel to read all of it ahead:
    // the next reads of a sequential reader then find it in the page cache.
    if (std::max(start, i * cs) == i * cs) ::posix_fadvise(fd->get(), 0, 0, POSIX_FADV_WILLNEED);
    fds.push_back(std::move(*fd));
  }
  Count(FuseOp::kRead);
  stats->read_bytes += end - start;
  for (size_t i = first; i <= last; ++i) {
    const uint32_t f = index[i];
    if (!served[f].exchange(true)) {
      ++stats->served_chunks;
      stats->served_frame_bytes += frames[f].frame_size;
    }
  }
  // fuse_bufvec ends in a one-element array: room for `count` buffers.
  std::vector<std::byte> storage(sizeof(fuse_bufvec) + (count - 1) * sizeof(fuse_buf));
  auto* vec = new (storage.data()) fuse_bufvec{};
  vec->count = count;
  uint64_t pos = start;
  for (size_t k = 0; k < count; ++k) {
    const uint64_t chunk_start = (first + k) * cs;
    const uint64_t chunk_end = std::min(chunk_start + cs, end);
    fuse_buf& b = vec->buf[k];
    b = fuse_buf{};
    b.size = chunk_end - pos;
    b.flags = static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
    b.fd = fds[k].get();
    b.pos = static_cast<off_t>(pos - chunk_start);
    pos = chunk_end;
  }
  return fuse_reply_data(req, vec, FUSE_BUF_SPLICE_MOVE);
}

namespace {

LayerFs::Impl& Self(fuse_req_t req) { return *static_cast<LayerFs::Impl*>(fuse_req_userdata(req)); }

// No exception may cross into libfuse: a handler that throws (bad_alloc)
// answers ENOMEM instead.
template <typename F>
void Guard(fuse_req_t req, F&& f) {
  try {
    f();
  } catch (...) {
    fuse_reply_err(req, ENOMEM);
  }
}

void FillEntry(LayerFs::Impl& fs, fuse_ino_t ino, fuse_entry_param& e) {
  std::memset(&e, 0, sizeof e);
  e.ino = ino;
  e.generation = 1;
  e.attr_timeout = fs.opts.attr_timeout_s;
  e.entry_timeout = fs.opts.entry_timeout_s;
  fs.Attr(ino, e.attr);
}

void OpInit(void* userdata, struct fuse_conn_info* conn) {
  auto* fs = static_cast<LayerFs::Impl*>(userdata);
  fs->no_open = (conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0;
  fs->no_opendir = (conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0;
  // Replies from cache files go by splice when the kernel allows it.
  if (conn->capable & FUSE_CAP_SPLICE_WRITE) conn->want |= FUSE_CAP_SPLICE_WRITE;
  if (conn->capable & FUSE_CAP_SPLICE_MOVE) conn->want |= FUSE_CAP_SPLICE_MOVE;
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name) {
  Guard(req, [&] {
    Self(req).Count(FuseOp::kLookup);
    LayerFs::Impl& fs = Self(req);
    Node* p = fs.Get(parent);
    if (p == nullptr) return void(fuse_reply_err(req, ENOENT));
    if (p->entry->type != FileType::kDirectory) return void(fuse_reply_err(req, ENOTDIR));
    std::string_view n(name);
    auto it = std::lower_bound(p->children.begin(), p->children.end(), n,
                               [](const auto& c, std::string_view x) { return c.first < x; });
    if (it == p->children.end() || it->first != n) {
      // A negative entry the kernel may cache (the tree never changes):
      // Python's module search alone stats thousands of names that do not exist.
      fuse_entry_param none;
      std::memset(&none, 0, sizeof none);
      none.entry_timeout = fs.opts.entry_timeout_s;
      return void(fuse_reply_entry(req, &none));
    }
    fuse_entry_param e;
    FillEntry(fs, it->second, e);
    fuse_reply_entry(req, &e);
  });
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info*) {
  Guard(req, [&] {
    Self(req).Count(FuseOp::kGetattr);
    LayerFs::Impl& fs = Self(req);
    if (fs.Get(ino) == nullptr) return void(fuse_reply_err(req, ENOENT));
    struct stat st;
    fs.Attr(ino, st);
    fuse_reply_attr(req, &st, fs.opts.attr_timeout_s);
  });
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  Guard(req, [&] {
    Self(req).Count(FuseOp::kReadlink);
    Node* n = Self(req).Get(ino);
    if (n == nullptr) return void(fuse_reply_err(req, ENOENT));
    if (n->entry->type != FileType::kSymlink) return void(fuse_reply_err(req, EINVAL));
    fuse_reply_readlink(req, n->entry->target.c_str());
  });
}

void OpOpen(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Guard(req, [&] {
    Self(req).Count(FuseOp::kOpen);
    // The mount is read-only and the kernel knows directories: nothing to check.
    if (Self(req).no_open) return void(fuse_reply_err(req, ENOSYS));
    Node* n = Self(req).Get(ino);
    if (n == nullptr) return void(fuse_reply_err(req, ENOENT));
    if ((fi->flags & O_ACCMODE) != O_RDONLY) return void(fuse_reply_err(req, EROFS));
    if (n->entry->type == FileType::kDirectory) return void(fuse_reply_err(req, EISDIR));
    fi->keep_cache = 1;  // contents never change
    fuse_reply_open(req, fi);
  });
}

void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info*) {
  Guard(req, [&] {
    LayerFs::Impl& fs = Self(req);
    if (fs.Get(ino) == nullptr) return void(fuse_reply_err(req, ENOENT));
    fs.Read(req, ino, size, off);
  });
}

void OpOpendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info* fi) {
  Guard(req, [&] {
    Self(req).Count(FuseOp::kOpendir);
    if (Self(req).no_opendir) return void(fuse_reply_err(req, ENOSYS));
    Node* n = Self(req).Get(ino);
    if (n == nullptr) return void(fuse_reply_err(req, ENOENT));
    if (n->entry->type != FileType::kDirectory) return void(fuse_reply_err(req, ENOTDIR));
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    fuse_reply_open(req, fi);
  });
}

void ReadDir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus) {
  Guard(req, [&] {
    LayerFs::Impl& fs = Self(req);
    fs.Count(plus ? FuseOp::kReaddirplus : FuseOp::kReaddir);
    Node* n = fs.Get(ino);
    if (n == nullptr) return void(fuse_reply_err(req, ENOENT));
    std::vector<char> buf(size);
    size_t used = 0;
    // Offsets: 0 ".", 1 "..", 2+i the i-th child.
    const size_t total = n->children.size() + 2;
    for (size_t i = static_cast<size_t>(off); i < total; ++i) {
      std::string name = i == 0 ? "." : i == 1 ? ".." : std::string(n->children[i - 2].first);
      fuse_ino_t child = i == 0 ? ino : i == 1 ? n->parent : n->children[i - 2].second;
      size_t len;
      if (plus) {
        fuse_entry_param e;
        FillEntry(fs, child, e);
        if (i < 2) e.ino = 0, e.attr.st_ino = child;  // no lookup count for . and ..
        len = fuse_add_direntry_plus(req, buf.data() + used, size - used, name.c_str(), &e, static_cast<off_t>(i + 1));
      } else {
        struct stat st;
        fs.Attr(child, st);
        len = fuse_add_direntry(req, buf.data() + used, size - used, name.c_str(), &st, static_cast<off_t>(i + 1));
      }
      if (len > size - used) break;
      used += len;
    }
    fuse_reply_buf(req, buf.data(), used);
  });
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info*) {
  ReadDir(req, ino, size, off, false);
}
void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info*) {
  ReadDir(req, ino, size, off, true);
}

// Extended attributes of a node, including overlayfs' opaque marker.
std::vector<std::pair<std::string, std::string>> XattrsOf(const Node& n) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const core::Xattr& x : n.entry->xattrs) out.emplace_back(x.name, x.value);
  if (n.entry->opaque) out.emplace_back(kOpaqueXattr, "y");
  return out;
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name, size_t size) {
  Guard(req, [&] {
    LayerFs::Impl& fs = Self(req);
    fs.Count(FuseOp::kGetxattr);
    // A layer without any: ENOSYS makes the kernel stop asking this mount
    // (EOPNOTSUPP from then on). overlayfs asks every lower file it looks up
    // for trusted.overlay.metacopy, a round trip each otherwise.
    if (!fs.has_xattrs) return void(fuse_reply_err(req, ENOSYS));
    Node* n = fs.Get(ino);
    if (n == nullptr) return void(fuse_reply_err(req, ENOENT));
    for (const auto& [k, v] : XattrsOf(*n)) {
      if (k != name) continue;
      if (size == 0) return void(fuse_reply_xattr(req, v.size()));
      if (size < v.size()) return void(fuse_reply_err(req, ERANGE));
      return void(fuse_reply_buf(req, v.data(), v.size()));
    }
    fuse_reply_err(req, ENODATA);
  });
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  Guard(req, [&] {
    Self(req).Count(FuseOp::kListxattr);
    Node* n = Self(req).Get(ino);
    if (n == nullptr) return void(fuse_reply_err(req, ENOENT));
    std::string names;
    for (const auto& [k, v] : XattrsOf(*n)) {
      names += k;
      names.push_back('\0');
    }
    if (size == 0) return void(fuse_reply_xattr(req, names.size()));
    if (size < names.size()) return void(fuse_reply_err(req, ERANGE));
    fuse_reply_buf(req, names.data(), names.size());
  });
}

void OpStatfs(fuse_req_t req, fuse_ino_t) {
  Guard(req, [&] {
    Self(req).Count(FuseOp::kStatfs);
    LayerFs::Impl& fs = Self(req);
    struct statvfs s;
    std::memset(&s, 0, sizeof s);
    s.f_bsize = 4096;
    s.f_frsize = 4096;
    s.f_blocks = (fs.total_bytes + 4095) / 4096;
    s.f_files = fs.nodes.size();
    s.f_namemax = 255;
    fuse_reply_statfs(req, &s);
  });
}

const struct fuse_lowlevel_ops kOps = [] {
  struct fuse_lowlevel_ops o;
  std::memset(&o, 0, sizeof o);
  o.init = OpInit;
  o.lookup = OpLookup;
  o.getattr = OpGetattr;
  o.readlink = OpReadlink;
  o.open = OpOpen;
  o.read = OpRead;
  o.opendir = OpOpendir;
  o.readdir = OpReaddir;
  o.readdirplus = OpReaddirplus;
  o.getxattr = OpGetxattr;
  o.listxattr = OpListxattr;
  o.statfs = OpStatfs;
  return o;
}();

}  // namespace

core::Result<std::unique_ptr<LayerFs>> LayerFs::Create(core::Toc toc, core::ChunkStore& store,
                                                       std::unique_ptr<core::BlobReader> blob, LayerFsOptions options) {
  std::unique_ptr<LayerFs> fs(new LayerFs());
  fs->impl_ = std::make_unique<Impl>();
  Impl& impl = *fs->impl_;
  impl.toc = std::move(toc);
  impl.store = &store;
  impl.blob = std::move(blob);
  impl.opts = std::move(options);
  impl.opts.readahead_min_bytes = std::min(impl.opts.readahead_min_bytes, impl.opts.readahead_max_bytes);
  impl.stats = &fs->stats_;
  OCIX_RETURN_IF_ERROR(impl.Build().WithContext("layer tree"));
  return fs;
}

size_t LayerFs::inode_count() const { return impl_->nodes.size(); }
const core::Manifest& LayerFs::manifest() const { return impl_->toc.manifest; }

core::Status LayerFs::Mount(const std::string& mountpoint) {
  if (session_ != nullptr) return core::FailedPrecondition("already mounted");
  const std::string opts = "ro,default_permissions,allow_other,fsname=" + impl_->opts.fsname + ",subtype=ocix";
  std::vector<std::string> argv_s = {"ocix", "-o", opts};
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  struct fuse_args args = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  session_ = fuse_session_new(&args, &kOps, sizeof kOps, impl_.get());
  // libfuse may have copied the arguments into memory of its own.
  fuse_opt_free_args(&args);
  if (session_ == nullptr) return core::Internal("fuse_session_new failed");
  if (fuse_session_mount(session_, mountpoint.c_str()) != 0) {
    fuse_session_destroy(session_);
    session_ = nullptr;
    return core::IoError("FUSE mount at " + mountpoint + " failed");
  }
  mountpoint_ = mountpoint;
  stop_prefetch_ = false;  // a remount may prefetch again
  loop_ = std::thread([this] {
    struct fuse_loop_config* cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, impl_->opts.max_threads);
    fuse_session_loop_mt(session_, cfg);
    fuse_loop_cfg_destroy(cfg);
  });
  impl_->StartReadAhead();
  return core::Status::Ok();
}

void LayerFs::RunPrefetch(Prefetch what, uint64_t batch_bytes, std::counting_semaphore<>* slots) {
  struct Done {
    std::atomic<bool>& flag;
    ~Done() { flag = true; }
  } done{stats_.prefetch_done};
  if (what == Prefetch::kNone) return;
  const core::Toc& toc = impl_->toc;
  // The prefetch list's contents first, then (kAll) everything in blob order.
  std::vector<const core::ContentTable*> order;
  std::unordered_map<const core::ContentTable*, bool> queued;
  for (const std::string& path : toc.prefetch) {
    const Entry* e = toc.manifest.Find(path);
    const core::ContentTable* t = e != nullptr ? toc.Find(e->digest) : nullptr;
    if (t != nullptr && !queued[t]) {
      queued[t] = true;
      order.push_back(t);
    }
  }
  if (what == Prefetch::kAll) {
    std::vector<const core::ContentTable*> rest;
    for (const core::ContentTable& t : toc.contents)
      if (!queued[&t]) rest.push_back(&t);
    std::sort(rest.begin(), rest.end(),
              [](const auto* a, const auto* b) { return a->chunks[0].blob_offset < b->chunks[0].blob_offset; });
    order.insert(order.end(), rest.begin(), rest.end());
  }
  std::vector<core::ChunkRef> batch;
  uint64_t batch_size = 0;
  auto flush = [&] {
    if (batch.empty()) return;
    // Behind on-demand reads: wait while any is in progress.
    while (stats_.active_reads.load() > 0 && !stop_prefetch_) std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (stop_prefetch_) return;
    // Waits for a slot, but not past Unmount (which joins this thread).
    if (slots) {
      while (!slots->try_acquire_for(std::chrono::milliseconds(50)))
        if (stop_prefetch_) return;
    }
    core::Status s = impl_->store->Ensure(*impl_->blob, batch);
    if (slots) slots->release();
    if (s.ok()) {
      stats_.prefetched_chunks += batch.size();
    } else {
      ++stats_.prefetch_errors;
      std::fprintf(stderr, "ocix: prefetch batch of %zu chunks: %s\n", batch.size(), s.ToString().c_str());
    }
    batch.clear();
    batch_size = 0;
  };
  for (const core::ContentTable* t : order) {
    for (size_t i = 0; i < t->chunks.size() && !stop_prefetch_; ++i) {
      const core::ChunkLocation& c = t->chunks[i];
      if (impl_->store->Has(c.digest)) continue;
      batch.push_back(core::ChunkRef{c.digest, toc.ChunkRange(t->size, i).second, c.blob_offset, c.frame_size});
      batch_size += c.frame_size;
      if (batch_size >= batch_bytes) flush();
    }
    if (stop_prefetch_) return;
  }
  flush();
}

void LayerFs::Wait() {
  if (loop_.joinable()) loop_.join();
}

void LayerFs::Unmount() {
  stop_prefetch_ = true;
  if (session_ == nullptr) return;
  // The connection's number, for aborting it below.
  struct stat st {};
  const bool have_dev = ::stat(mountpoint_.c_str(), &st) == 0;
  fuse_session_exit(session_);
  fuse_session_unmount(session_);  // the kernel ends the connection; the loop returns
  // ...unless something still uses the mount (an overlay of a running
  // container keeps a detached mount alive): then the loop would wait for
  // requests forever. Aborting the connection (fusectl, where mounted) ends
  // it; the users see errors, as they would once this process exits.
  if (have_dev) {
    const std::string abort_path = "/sys/fs/fuse/connections/" + std::to_string(minor(st.st_dev)) + "/abort";
    int fd = ::open(abort_path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      [[maybe_unused]] ssize_t n = ::write(fd, "1", 1);
      ::close(fd);
    }
  }
  Wait();
  impl_->StopReadAhead();
  fuse_session_destroy(session_);
  session_ = nullptr;
}

LayerFs::~LayerFs() { Unmount(); }

}  // namespace ocix::fuse

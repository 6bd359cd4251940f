#include "pull.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "containerd/services/content/v1/content.grpc.pb.h"
#include "containerd/services/diff/v1/diff.grpc.pb.h"
#include "containerd/services/images/v1/images.grpc.pb.h"
#include "containerd/services/leases/v1/leases.grpc.pb.h"
#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "ocix/core/containerd_labels.h"
#include "ocix/core/sha256.h"

namespace ocix::cli {

using namespace ocix::core;  // NOLINT(google-build-using-namespace): CLI glue only
namespace contentapi = containerd::services::content::v1;
namespace diffapi = containerd::services::diff::v1;
namespace imagesapi = containerd::services::images::v1;
namespace leasesapi = containerd::services::leases::v1;
namespace snapshotsapi = containerd::services::snapshots::v1;

namespace {

constexpr std::string_view kGcExpireLabel = "containerd.io/gc.expire";
constexpr std::string_view kUncompressedLabel = "containerd.io/uncompressed";
// Like containerd's own pull (Client.WithLease): long enough for any pull;
// the lease is deleted at the end, the expiry only matters after a crash.
constexpr auto kLeaseExpiry = std::chrono::hours(24);
constexpr size_t kWriteChunk = 1u << 20;  // per content Write message (gRPC's default limit is 4 MiB)
constexpr size_t kMaxConfigBytes = 64u << 20;

bool StartsWith(std::string_view s, std::string_view prefix) { return s.substr(0, prefix.size()) == prefix; }

bool IsManifestMediaType(std::string_view mt) {
  return mt == "application/vnd.oci.image.manifest.v1+json" ||
         mt == "application/vnd.docker.distribution.manifest.v2+json";
}
bool IsIndexMediaType(std::string_view mt) {
  return mt == "application/vnd.oci.image.index.v1+json" ||
         mt == "application/vnd.docker.distribution.manifest.list.v2+json";
}
// images.IsKnownConfig
bool IsKnownConfig(std::string_view mt) {
  return mt == "application/vnd.docker.container.image.v1+json" || mt == "application/vnd.oci.image.config.v1+json" ||
         mt == "application/vnd.containerd.container.criu.checkpoint.criu.tar" ||
         mt == "application/vnd.containerd.container.checkpoint.config.v1+proto";
}

std::string ShortDigest(std::string_view d) { return std::string(d.substr(0, std::min<size_t>(d.size(), 19))); }

std::string Megabytes(uint64_t n) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MB", static_cast<double>(n) / 1e6);
  return buf;
}

// containerd's errdefs travel as gRPC codes; map them back to ours.
Status FromGrpc(const grpc::Status& s, std::string_view what) {
  std::string m = std::string(what) + ": " + s.error_message();
  switch (s.error_code()) {
    case grpc::StatusCode::OK: return Status::Ok();
    case grpc::StatusCode::NOT_FOUND: return NotFound(m);
    case grpc::StatusCode::ALREADY_EXISTS: return AlreadyExists(m);
    case grpc::StatusCode::FAILED_PRECONDITION: return FailedPrecondition(m);
    case grpc::StatusCode::INVALID_ARGUMENT: return InvalidArgument(m);
    case grpc::StatusCode::UNAVAILABLE: return Unavailable(m);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Unavailable(std::string(what) + ": containerd did not answer in time");
    case grpc::StatusCode::UNIMPLEMENTED: return Unimplemented(m);
    case grpc::StatusCode::PERMISSION_DENIED: return {Code::kPermissionDenied, m};
    case grpc::StatusCode::CANCELLED: return {Code::kCanceled, m};
    default: return Internal(m);
  }
}

// A time-based random part like containerd's uniquePart(), so concurrent
// pulls never share an extraction key.
std::string UniquePart() {
  static std::random_device rd;
  const auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count() %
      1000000000;
  uint32_t r = rd();
  static constexpr char kB64Url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out = std::to_string(ns) + "-";
  for (int i = 3; i >= 0; --i) out += kB64Url[(r >> (6 * i)) & 63];  // 24 bits, as base64 of 3 bytes
  return out;
}

// Unlinks a temp file when the layer is done with it, on every path.
class TempFile {
 public:
  explicit TempFile(std::string path) : path_(std::move(path)) {}
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Reads the next bytes of a blob into buf; 0 at the end.
using ReadFn = std::function<Result<size_t>(char* buf, size_t n)>;

enum class LayerOutcome { kPresent, kRemote, kApplied };

class Puller {
 public:
  Puller(const PullOptions& o, const PullEvents& ev, Reference ref)
      : o_(o), ev_(ev), ref_(std::move(ref)), registry_(o.registry) {}

  Status Connect();
  Status CreateLease();
  Status DeleteLease();
  int Run();

 private:
  // Every call carries the namespace and, once created, the lease.
  void Setup(grpc::ClientContext* c, std::chrono::milliseconds timeout) const {
    c->set_deadline(std::chrono::system_clock::now() + timeout);
    c->AddMetadata("containerd-namespace", o_.ns);
    if (!lease_.empty()) c->AddMetadata("containerd-lease", lease_);
  }
  // Transfers get the base timeout plus time for the bytes at a slow rate.
  std::chrono::milliseconds TransferTimeout(int64_t bytes, int64_t bytes_per_second) const {
    return o_.timeout + std::chrono::milliseconds(std::max<int64_t>(bytes, 0) / bytes_per_second * 1000);
  }

  Status LeaseResource(const std::string& id, const std::string& type);
  Result<std::optional<std::map<std::string, std::string>>> ContentLabels(const std::string& digest);
  Status UpdateContentLabels(const std::string& digest, const std::map<std::string, std::string>& labels);
  Status WriteContent(const Descriptor& d, const ReadFn& read, const std::map<std::string, std::string>& labels);
  // Puts a blob into the content store with labels (merged into an
  // existing blob's), leased; write is called only when it is missing.
  Status PutContent(const Descriptor& d, std::map<std::string, std::string> labels,
                    const std::function<Status(const std::map<std::string, std::string>&)>& write);
  Status PutSmallBlob(const Descriptor& d, const std::string& body, std::map<std::string, std::string> labels);
  Status PutLayerBlob(const Descriptor& d);

  Result<bool> SnapshotExists(const std::string& key);
  Status RemoveSnapshot(const std::string& key);
  Result<LayerOutcome> UnpackLayer(size_t i, const std::string& parent, const std::string& chain_id,
                                   const std::string& diff_id);
  Status ApplyAndCommit(size_t i, const std::string& key, const std::string& chain_id, const std::string& diff_id,
                        const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts,
                        const std::map<std::string, std::string>& labels);
  Status CreateImage(const Descriptor& target);

  const PullOptions& o_;
  const PullEvents& ev_;
  Reference ref_;
  RegistryClient registry_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<contentapi::Content::Stub> content_;
  std::unique_ptr<imagesapi::Images::Stub> images_;
  std::unique_ptr<leasesapi::Leases::Stub> leases_;
  std::unique_ptr<diffapi::Diff::Stub> diff_;
  std::unique_ptr<snapshotsapi::Snapshots::Stub> snapshots_;
  std::string lease_;
  std::string image_ref_;  // normalized, for the snapshotter
  std::string manifest_digest_;
  std::vector<Descriptor> layers_;
};

Status Puller::Connect() {
  std::string path = o_.address;
  if (StartsWith(path, "unix://")) path = path.substr(7);
  // Fail fast and clearly before gRPC's reconnect loop would hide the cause.
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    return ErrnoError("containerd socket " + path + " (is containerd running? see -a/--address)", errno);
  if (!S_ISSOCK(st.st_mode)) return InvalidArgument("containerd address " + path + " is not a socket");
  if (::access(path.c_str(), R_OK | W_OK) != 0)
    return ErrnoError("containerd socket " + path + " (ocix pull usually needs root)", errno);
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH, 16 << 20);
  const std::string target = path[0] == '/' ? "unix://" + path : "unix:" + path;
  channel_ = grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
  const auto connect_timeout = std::min(o_.timeout, std::chrono::milliseconds(10000));
  if (!channel_->WaitForConnected(std::chrono::system_clock::now() + connect_timeout)) {
    char secs[32];
    std::snprintf(secs, sizeof secs, "%.1f", static_cast<double>(connect_timeout.count()) / 1000);
    return Unavailable("cannot connect to containerd at " + path + " within " + secs + " s");
  }
  content_ = contentapi::Content::NewStub(channel_);
  images_ = imagesapi::Images::NewStub(channel_);
  leases_ = leasesapi::Leases::NewStub(channel_);
  diff_ = diffapi::Diff::NewStub(channel_);
  snapshots_ = snapshotsapi::Snapshots::NewStub(channel_);
  return Status::Ok();
}

Status Puller::CreateLease() {
  leasesapi::CreateRequest req;
  req.set_id("ocix-pull-" + UniquePart());
  (*req.mutable_labels())[std::string(kGcExpireLabel)] = Rfc3339Utc(std::chrono::system_clock::now() + kLeaseExpiry);
  leasesapi::CreateResponse resp;
  grpc::ClientContext c;
  Setup(&c, o_.timeout);
  OCIX_RETURN_IF_ERROR(FromGrpc(leases_->Create(&c, req, &resp), "containerd: create lease"));
  lease_ = resp.lease().id();
  return Status::Ok();
}

Status Puller::DeleteLease() {
  if (lease_.empty()) return Status::Ok();
  leasesapi::DeleteRequest req;
  req.set_id(lease_);
  lease_.clear();  // the delete itself runs outside the lease
  google::protobuf::Empty resp;
  grpc::ClientContext c;
  Setup(&c, o_.timeout);
  return FromGrpc(leases_->Delete(&c, req, &resp), "containerd: delete lease " + req.id());
}

Status Puller::LeaseResource(const std::string& id, const std::string& type) {
  leasesapi::AddResourceRequest req;
  req.set_id(lease_);
  req.mutable_resource()->set_id(id);
  req.mutable_resource()->set_type(type);
  google::protobuf::Empty resp;
  grpc::ClientContext c;
  Setup(&c, o_.timeout);
  return FromGrpc(leases_->AddResource(&c, req, &resp), "containerd: lease " + type + " " + id);
}

Result<std::optional<std::map<std::string, std::string>>> Puller::ContentLabels(const std::string& digest) {
  contentapi::InfoRequest req;
  req.set_digest(digest);
  contentapi::InfoResponse resp;
  grpc::ClientContext c;
  Setup(&c, o_.timeout);
  grpc::Status s = content_->Info(&c, req, &resp);
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return std::optional<std::map<std::string, std::string>>();
  OCIX_RETURN_IF_ERROR(FromGrpc(s, "containerd: content info " + digest));
  return std::optional<std::map<std::string, std::string>>(
      std::map<std::string, std::string>(resp.info().labels().begin(), resp.info().labels().end()));
}

Status Puller::UpdateContentLabels(const std::string& digest, const std::map<std::string, std::string>& labels) {
  if (labels.empty()) return Status::Ok();
  contentapi::UpdateRequest req;
  req.mutable_info()->set_digest(digest);
  for (const auto& [k, v] : labels) {
    (*req.mutable_info()->mutable_labels())[k] = v;
    req.mutable_update_mask()->add_paths("labels." + k);  // only these labels; others stay
  }
  contentapi::UpdateResponse resp;
  grpc::ClientContext c;
  Setup(&c, o_.timeout);
  return FromGrpc(content_->Update(&c, req, &resp), "containerd: label content " + digest);
}

// One write session (see containerd's content/proxy remoteWriter): STAT
// names the ingest ref with the expected size and digest, WRITEs from offset
// 0 (which also discards a stale partial ingest), COMMIT verifies and labels.
Status Puller::WriteContent(const Descriptor& d, const ReadFn& read, const std::map<std::string, std::string>& labels) {
  const std::string what = "containerd: write content " + d.digest;
  grpc::ClientContext c;
  Setup(&c, TransferTimeout(d.size, 1 << 20));
  auto stream = content_->Write(&c);
  // An early return cancels the session (containerd drops the ingest lock).
  struct CancelUnlessDone {
    grpc::ClientContext& c;
    bool done = false;
    ~CancelUnlessDone() {
      if (!done) c.TryCancel();
    }
  } cancel{c};
  bool half_closed = false;
  auto finish = [&](std::string_view step) {
    cancel.done = true;
    if (!half_closed) stream->WritesDone();
    contentapi::WriteContentResponse ignored;
    while (stream->Read(&ignored)) {
    }
    grpc::Status s = stream->Finish();
    if (s.ok()) return Internal(what + ": stream ended at " + std::string(step));
    return FromGrpc(s, what);
  };
  contentapi::WriteContentRequest req;
  contentapi::WriteContentResponse resp;
  req.set_action(contentapi::STAT);
  req.set_ref(ContentRefKey(d));
  req.set_total(d.size);
  req.set_expected(d.digest);
  if (!stream->Write(req) || !stream->Read(&resp)) return finish("stat");
  std::string buf(kWriteChunk, '\0');
  int64_t offset = 0;
  // Progress for layers only; configs and manifests are small.
  const bool show = IsLayerMediaType(d.media_type);
  if (show && ev_.begin_step) ev_.begin_step("store " + ShortDigest(d.digest), static_cast<uint64_t>(d.size));
  for (;;) {
    OCIX_ASSIGN_OR_RETURN(size_t n, read(buf.data(), buf.size()));
    if (n == 0) break;
    req.Clear();
    req.set_action(contentapi::WRITE);
    req.set_offset(offset);
    req.set_data(buf.data(), n);
    if (!stream->Write(req) || !stream->Read(&resp)) return finish("write");
    if (resp.offset() != offset + static_cast<int64_t>(n))
      return Internal(what + ": containerd is at offset " + std::to_string(resp.offset()) + ", expected " +
                      std::to_string(offset + static_cast<int64_t>(n)));
    offset += static_cast<int64_t>(n);
    if (offset > d.size) return Corruption(what + ": more than the descriptor's " + std::to_string(d.size) + " bytes");
    if (show && ev_.progress) ev_.progress(static_cast<uint64_t>(offset), static_cast<uint64_t>(d.size));
  }
  if (ev_.end_step) ev_.end_step();
  req.Clear();
  req.set_action(contentapi::COMMIT);
  req.set_offset(offset);
  req.set_total(d.size);
  req.set_expected(d.digest);
  for (const auto& [k, v] : labels) (*req.mutable_labels())[k] = v;
  // The commit is the last message: half-close with it.
  half_closed = true;
  if (!stream->Write(req, grpc::WriteOptions().set_last_message())) return finish("commit");
  if (!stream->Read(&resp)) return finish("commit");
  cancel.done = true;
  // containerd sends the commit's response twice (once more from a deferred
  // "pump through the last message"); Finish waits until all are read.
  contentapi::WriteContentResponse extra;
  while (stream->Read(&extra)) {
  }
  OCIX_RETURN_IF_ERROR(FromGrpc(stream->Finish(), what));
  if (resp.digest() != d.digest || resp.offset() != d.size)
    return Corruption(what + ": containerd committed " + resp.digest() + " of " + std::to_string(resp.offset()) +
                      " bytes");
  return Status::Ok();
}

Status Puller::PutContent(const Descriptor& d, std::map<std::string, std::string> labels,
                          const std::function<Status(const std::map<std::string, std::string>&)>& write) {
  // Lease first: content that exists now but nothing references could
  // otherwise be collected before the image record points at it.
  OCIX_RETURN_IF_ERROR(LeaseResource(d.digest, "content"));
  for (int attempt = 0;; ++attempt) {
    OCIX_ASSIGN_OR_RETURN(auto existing, ContentLabels(d.digest));
    // docker.AppendDistributionSourceLabel: remember where the blob came
    // from (skipped when the list outgrows a label, as containerd does).
    const std::string dist_key = DistributionSourceKey(ref_);
    std::string prior;
    if (existing) {
      if (auto it = existing->find(dist_key); it != existing->end()) prior = it->second;
    }
    std::string dist = AppendDistributionSource(prior, ref_.repository);
    if (dist_key.size() + dist.size() <= kMaxLabelBytes) labels[dist_key] = dist;
    if (existing) return UpdateContentLabels(d.digest, labels);
    Status s = write(labels);
    if (ev_.end_step) ev_.end_step();
    if (s.code() == Code::kAlreadyExists) continue;  // written meanwhile: label it
    // Another client (ctr, CRI) may be writing the same ingest ref:
    // containerd says Unavailable ("ref ... locked"); wait for it a little,
    // as containerd's own clients do.
    if (s.code() != Code::kUnavailable || s.message().find("locked") == std::string::npos || attempt >= 10) return s;
    std::this_thread::sleep_for(std::chrono::milliseconds(100 << std::min(attempt, 4)));
  }
}

Status Puller::PutSmallBlob(const Descriptor& d, const std::string& body, std::map<std::string, std::string> labels) {
  return PutContent(d, std::move(labels), [&](const std::map<std::string, std::string>& l) {
    size_t pos = 0;
    ReadFn read = [&](char* buf, size_t n) -> Result<size_t> {
      n = std::min(n, body.size() - pos);
      std::copy_n(body.data() + pos, n, buf);
      pos += n;
      return n;
    };
    return WriteContent(d, read, l);
  });
}

Status Puller::PutLayerBlob(const Descriptor& d) {
  std::optional<TempFile> tmp;  // downloaded once, even if the write is retried
  return PutContent(d, {}, [&](const std::map<std::string, std::string>& l) -> Status {
    if (!tmp) {
      std::string dir = o_.tmp_dir;
      if (dir.empty()) {
        const char* t = std::getenv("TMPDIR");
        dir = t && *t ? t : "/var/tmp";
      }
      tmp.emplace(dir + "/ocix-pull." + std::to_string(getpid()) + "." + d.digest.substr(7, 16));
      if (ev_.begin_step) ev_.begin_step("fetch " + ShortDigest(d.digest), static_cast<uint64_t>(d.size));
      Status s = registry_.DownloadBlob(ref_, d, tmp->path(), [&](uint64_t done, uint64_t total) {
        if (ev_.progress) ev_.progress(done, total);
      });
      if (ev_.end_step) ev_.end_step();
      if (!s.ok()) {
        tmp.reset();
        return s.WithContext("fetch layer " + d.digest);
      }
    }
    Fd fd(::open(tmp->path().c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return ErrnoError("open " + tmp->path(), errno);
    ReadFn read = [&](char* buf, size_t n) -> Result<size_t> {
      for (;;) {
        ssize_t r = ::read(fd.get(), buf, n);
        if (r >= 0) return static_cast<size_t>(r);
        if (errno != EINTR) return ErrnoError("read " + tmp->path(), errno);
      }
    };
    return WriteContent(d, read, l);
  });
}

Result<bool> Puller::SnapshotExists(const std::string& key) {
  snapshotsapi::StatSnapshotRequest req;
  req.set_snapshotter(o_.snapshotter);
  req.set_key(key);
  snapshotsapi::StatSnapshotResponse resp;
  grpc::ClientContext c;
  Setup(&c, o_.timeout);
  grpc::Status s = snapshots_->Stat(&c, req, &resp);
  if (s.error_code() == grpc::StatusCode::NOT_FOUND) return false;
  Status st = FromGrpc(s, "containerd: stat snapshot " + key);
  if (!st.ok() && st.message().find("snapshotter not loaded") != std::string::npos)
    return InvalidArgument(
        "containerd has no snapshotter named \"" + o_.snapshotter +
        "\" (--snapshotter; ocix needs a proxy_plugins entry in containerd's config): " + st.message());
  OCIX_RETURN_IF_ERROR(st);
  return true;
}

Status Puller::RemoveSnapshot(const std::string& key) {
  snapshotsapi::RemoveSnapshotRequest req;
  req.set_snapshotter(o_.snapshotter);
  req.set_key(key);
  google::protobuf::Empty resp;
  grpc::ClientContext c;
  Setup(&c, o_.timeout);
  return FromGrpc(snapshots_->Remove(&c, req, &resp), "containerd: remove snapshot " + key);
}

// containerd's unpacker, one layer: Stat the chain ID; Prepare an
// extraction key with the labels; ALREADY_EXISTS means the snapshotter
// prepared the layer itself (a remote snapshot), mounts mean apply it here.
Result<LayerOutcome> Puller::UnpackLayer(size_t i, const std::string& parent, const std::string& chain_id,
                                         const std::string& diff_id) {
  OCIX_ASSIGN_OR_RETURN(bool exists, SnapshotExists(chain_id));
  if (exists) {
    // Keep it for this pull even if nothing referenced it until now.
    OCIX_RETURN_IF_ERROR(LeaseResource(chain_id, "snapshots/" + o_.snapshotter));
    return LayerOutcome::kPresent;
  }
  const std::map<std::string, std::string> labels = SnapshotLabels(image_ref_, manifest_digest_, layers_, i, chain_id);
  for (const auto& [k, v] : labels)
    if (k.size() + v.size() > kMaxLabelBytes)
      return InvalidArgument("layer " + layers_[i].digest + ": label " + k + " exceeds containerd's 4096-byte limit");
  for (int attempt = 1; attempt <= 3; ++attempt) {
    snapshotsapi::PrepareSnapshotRequest req;
    req.set_snapshotter(o_.snapshotter);
    req.set_key("extract-" + UniquePart() + " " + chain_id);
    req.set_parent(parent);
    for (const auto& [k, v] : labels) (*req.mutable_labels())[k] = v;
    snapshotsapi::PrepareSnapshotResponse resp;
    grpc::ClientContext c;
    Setup(&c, o_.timeout);
    grpc::Status s = snapshots_->Prepare(&c, req, &resp);
    if (s.ok()) {
      Status applied = ApplyAndCommit(i, req.key(), chain_id, diff_id, resp.mounts(), labels);
      if (!applied.ok()) return applied;
      return LayerOutcome::kApplied;
    }
    if (s.error_code() != grpc::StatusCode::ALREADY_EXISTS)
      return FromGrpc(s, "containerd: prepare snapshot " + req.key());
    // containerd has recorded the snapshotter's committed snapshot under the
    // chain ID (and leased it); make sure before trusting it.
    OCIX_ASSIGN_OR_RETURN(bool found, SnapshotExists(chain_id));
    if (found) return LayerOutcome::kRemote;
  }
  return Internal("containerd: prepare snapshot " + chain_id + ": already exists, yet no snapshot has that chain ID");
}

Status Puller::ApplyAndCommit(size_t i, const std::string& key, const std::string& chain_id, const std::string& diff_id,
                              const google::protobuf::RepeatedPtrField<containerd::types::Mount>& mounts,
                              const std::map<std::string, std::string>& labels) {
  const Descriptor& d = layers_[i];
  // Abort the extraction snapshot unless the commit happens.
  auto abort = [&](Status s) {
    Status r = RemoveSnapshot(key);
    if (!r.ok()) std::fprintf(stderr, "ocix: warning: %s\n", r.ToString().c_str());
    return s;
  };
  Status s = PutLayerBlob(d);
  if (!s.ok()) return abort(s);
  diffapi::ApplyRequest req;
  req.mutable_diff()->set_media_type(d.media_type);
  req.mutable_diff()->set_digest(d.digest);
  req.mutable_diff()->set_size(d.size);
  *req.mutable_mounts() = mounts;
  diffapi::ApplyResponse resp;
  {
    grpc::ClientContext c;
    Setup(&c, TransferTimeout(d.size, 256 << 10));
    grpc::Status gs = diff_->Apply(&c, req, &resp);
    if (!gs.ok()) return abort(FromGrpc(gs, "containerd: apply layer " + d.digest));
  }
  if (resp.applied().digest() != diff_id)
    return abort(Corruption("layer " + d.digest + ": applied content has diff ID " + resp.applied().digest() +
                            ", the config says " + diff_id));
  snapshotsapi::CommitSnapshotRequest creq;
  creq.set_snapshotter(o_.snapshotter);
  creq.set_name(chain_id);
  creq.set_key(key);
  for (const auto& [k, v] : labels) (*creq.mutable_labels())[k] = v;
  google::protobuf::Empty cresp;
  grpc::ClientContext c;
  Setup(&c, o_.timeout);
  grpc::Status gs = snapshots_->Commit(&c, creq, &cresp);
  if (gs.error_code() == grpc::StatusCode::ALREADY_EXISTS) return abort(Status::Ok());  // someone else committed it
  if (!gs.ok()) return abort(FromGrpc(gs, "containerd: commit snapshot " + chain_id));
  // As containerd's unpacker: record the verified uncompressed digest.
  return UpdateContentLabels(d.digest, {{std::string(kUncompressedLabel), diff_id}});
}

Status Puller::CreateImage(const Descriptor& target) {
  imagesapi::Image img;
  img.set_name(o_.ref);
  img.mutable_target()->set_media_type(target.media_type);
  img.mutable_target()->set_digest(target.digest);
  img.mutable_target()->set_size(target.size);
  for (int attempt = 0; attempt < 3; ++attempt) {
    imagesapi::CreateImageRequest req;
    *req.mutable_image() = img;
    imagesapi::CreateImageResponse resp;
    grpc::ClientContext c;
    Setup(&c, o_.timeout);
    grpc::Status s = images_->Create(&c, req, &resp);
    if (s.error_code() != grpc::StatusCode::ALREADY_EXISTS) return FromGrpc(s, "containerd: create image " + o_.ref);
    imagesapi::UpdateImageRequest ureq;
    *ureq.mutable_image() = img;
    ureq.mutable_update_mask()->add_paths("target");  // keep the record's labels
    imagesapi::UpdateImageResponse uresp;
    grpc::ClientContext uc;
    Setup(&uc, o_.timeout);
    s = images_->Update(&uc, ureq, &uresp);
    if (s.error_code() == grpc::StatusCode::NOT_FOUND) continue;  // deleted meanwhile: create again
    return FromGrpc(s, "containerd: update image " + o_.ref);
  }
  return Unavailable("containerd: image " + o_.ref + " keeps being created and deleted by another client");
}

int Puller::Run() {
  auto fail = [](const Status& s) {
    std::fprintf(stderr, "ocix: %s\n", s.ToString().c_str());
    return 1;
  };
  const auto start = std::chrono::steady_clock::now();
  Platform platform = Platform::Host();
  if (!o_.platform.empty()) {
    auto p = Platform::Parse(o_.platform);
    if (!p.ok()) return fail(p.status());
    platform = *p;
  }
  image_ref_ = ref_.ToString();
  // containerd first: a wrong socket fails fast, before any registry traffic.
  Status s = Connect();
  if (!s.ok()) return fail(s);

  auto resolved = registry_.ResolveImage(ref_, platform);
  if (!resolved.ok()) return fail(resolved.status().WithContext("resolve " + o_.ref));
  const ImageManifest& im = resolved->image;
  manifest_digest_ = resolved->manifest.digest;
  layers_ = im.layers;
  for (const Descriptor& l : layers_)
    if (!IsLayerMediaType(l.media_type))
      return fail(InvalidArgument("layer " + l.digest + ": \"" + l.media_type + "\" is not a container image layer"));
  if (im.config.size < 0 || static_cast<uint64_t>(im.config.size) > kMaxConfigBytes)
    return fail(Corruption("config " + im.config.digest + " is larger than 64 MiB"));
  auto config = registry_.GetBlob(ref_, im.config, kMaxConfigBytes);
  if (!config.ok()) return fail(config.status().WithContext("fetch config"));
  auto diff_ids = ParseDiffIds(*config);
  if (!diff_ids.ok()) return fail(diff_ids.status().WithContext("config " + im.config.digest));
  if (diff_ids->size() != layers_.size())
    return fail(Corruption("config " + im.config.digest + " lists " + std::to_string(diff_ids->size()) +
                           " diff IDs for " + std::to_string(layers_.size()) + " layers"));
  const std::vector<std::string> chain = ChainIds(*diff_ids);

  // The image record points at the index only when the index names the
  // manifest directly (a nested index is not stored: point at the manifest).
  std::optional<std::vector<Descriptor>> index_children;
  if (resolved->index) {
    auto j = nlohmann::json::parse(resolved->index_body, nullptr, false);
    std::vector<Descriptor> children;
    bool direct = false;
    if (j.is_object() && j.contains("manifests") && j["manifests"].is_array()) {
      for (const auto& m : j["manifests"]) {
        if (!m.is_object() || !m.contains("digest") || !m["digest"].is_string()) continue;
        Descriptor c;
        c.digest = m["digest"].get<std::string>();
        if (m.contains("mediaType") && m["mediaType"].is_string()) c.media_type = m["mediaType"].get<std::string>();
        direct = direct || c.digest == manifest_digest_;
        children.push_back(std::move(c));
      }
    }
    if (direct) index_children = std::move(children);
  }

  s = CreateLease();
  if (!s.ok()) return fail(s);
  // Delete the lease on every path: what it protected is referenced by the
  // image record by then, or is garbage.
  struct LeaseGuard {
    Puller* p;
    ~LeaseGuard() {
      Status d = p->DeleteLease();
      if (!d.ok()) std::fprintf(stderr, "ocix: warning: %s (it expires by itself)\n", d.ToString().c_str());
    }
  } lease_guard{this};

  // Children before parents, as containerd's fetch handlers finish them.
  std::vector<Descriptor> manifest_children{im.config};
  manifest_children.insert(manifest_children.end(), layers_.begin(), layers_.end());
  s = PutSmallBlob(im.config, *config, {});
  if (!s.ok()) return fail(s);
  Descriptor manifest_desc = resolved->manifest;
  s = PutSmallBlob(manifest_desc, resolved->manifest_body, ChildGcLabels(manifest_children));
  if (!s.ok()) return fail(s);
  Descriptor target = manifest_desc;
  if (index_children) {
    target = *resolved->index;
    s = PutSmallBlob(target, resolved->index_body, ChildGcLabels(*index_children));
    if (!s.ok()) return fail(s);
  }

  int remote = 0, applied = 0, present = 0;
  for (size_t i = 0; i < layers_.size(); ++i) {
    auto outcome = UnpackLayer(i, i == 0 ? "" : chain[i - 1], chain[i], (*diff_ids)[i]);
    if (!outcome.ok()) return fail(outcome.status().WithContext("layer " + std::to_string(i + 1)));
    const char* word = "present";
    if (*outcome == LayerOutcome::kRemote) {
      word = "remote";
      ++remote;
    } else if (*outcome == LayerOutcome::kApplied) {
      word = "applied";
      ++applied;
    } else {
      ++present;
    }
    if (ev_.end_step) ev_.end_step();
    std::printf("layer %zu/%zu %s %s\n", i + 1, layers_.size(), layers_[i].digest.c_str(), word);
    std::fflush(stdout);
  }

  // The config keeps the top snapshot (and so the chain) from the collector.
  if (!chain.empty()) {
    s = UpdateContentLabels(im.config.digest, {{"containerd.io/gc.ref.snapshot." + o_.snapshotter, chain.back()}});
    if (!s.ok()) return fail(s);
  }
  s = CreateImage(target);
  if (!s.ok()) return fail(s);

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("pulled %s (%s): %zu layers: %d remote, %d applied, %d present; %s downloaded in %.2f s\n",
              o_.ref.c_str(), target.digest.c_str(), layers_.size(), remote, applied, present,
              Megabytes(registry_.stats().bytes_downloaded).c_str(), secs);
  return 0;
}

}  // namespace

std::string ChainId(std::string_view parent, std::string_view diff_id) {
  if (parent.empty()) return std::string(diff_id);
  std::string in;
  in.reserve(parent.size() + 1 + diff_id.size());
  in.append(parent).append(" ").append(diff_id);
  return Sha256::OciDigest(in);
}

std::vector<std::string> ChainIds(const std::vector<std::string>& diff_ids) {
  std::vector<std::string> out;
  out.reserve(diff_ids.size());
  for (const std::string& d : diff_ids) out.push_back(ChainId(out.empty() ? "" : out.back(), d));
  return out;
}

Result<std::vector<std::string>> ParseDiffIds(std::string_view config_json) {
  auto j = nlohmann::json::parse(config_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Corruption("not a JSON object");
  auto rootfs = j.find("rootfs");
  if (rootfs == j.end() || !rootfs->is_object()) return Corruption("no rootfs");
  auto ids = rootfs->find("diff_ids");
  if (ids == rootfs->end() || !ids->is_array()) return Corruption("no rootfs.diff_ids array");
  std::vector<std::string> out;
  for (const auto& d : *ids) {
    if (!d.is_string() || !IsValidSha256Digest(d.get<std::string>()))
      return Corruption("rootfs.diff_ids: " + d.dump() + " is not a sha256 digest");
    out.push_back(d.get<std::string>());
  }
  return out;
}

bool IsLayerMediaType(std::string_view mt) {
  if (StartsWith(mt, "application/vnd.oci.image.layer.")) return true;
  // Docker's, with any "+suffix" stripped first.
  std::string_view base = mt.substr(0, mt.find('+'));
  return base == "application/vnd.docker.image.rootfs.diff.tar" ||
         base == "application/vnd.docker.image.rootfs.diff.tar.gzip" ||
         base == "application/vnd.docker.image.rootfs.foreign.diff.tar" ||
         base == "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
}

std::map<std::string, std::string> ChildGcLabels(const std::vector<Descriptor>& children) {
  std::map<std::string, std::string> out;
  std::map<std::string, unsigned> next;  // per key: how many children used it
  for (const Descriptor& c : children) {
    std::string key;
    if (IsKnownConfig(c.media_type))
      key = "containerd.io/gc.ref.content.config";
    else if (IsManifestMediaType(c.media_type))
      key = "containerd.io/gc.ref.content.m.";
    else if (IsLayerMediaType(c.media_type))
      key = "containerd.io/gc.ref.content.l.";
    else
      key = "containerd.io/gc.ref.content.";
    unsigned idx = next[key]++;
    if (idx > 0 || key.back() == '.') key += std::to_string(idx);
    out[key] = c.digest;
  }
  return out;
}

std::string ImageLayersLabel(const std::vector<Descriptor>& layers, size_t from) {
  std::string out;
  for (size_t i = from; i < layers.size(); ++i) {
    if (!IsLayerMediaType(layers[i].media_type)) continue;
    std::string item = (out.empty() ? "" : ",") + layers[i].digest;
    if (core::kLabelCriImageLayers.size() + out.size() + item.size() > kMaxLabelBytes) break;
    out += item;
  }
  return out;
}

std::map<std::string, std::string> SnapshotLabels(const std::string& image_ref, const std::string& manifest_digest,
                                                  const std::vector<Descriptor>& layers, size_t i,
                                                  const std::string& chain_id) {
  std::map<std::string, std::string> out;
  // snapshots.FilterInheritedLabels: what the layer's annotations say for
  // snapshotters (OCIX layers carry containerd.io/snapshot/ocix/*).
  for (const auto& [k, v] : layers[i].annotations) {
    if (k != core::kLabelTargetRef && !StartsWith(k, core::kLabelInheritedPrefix)) continue;
    if (k.size() + v.size() > kMaxLabelBytes) {
      std::fprintf(stderr, "ocix: warning: layer %s: annotation %s is too long for a label; not passed on\n",
                   layers[i].digest.c_str(), k.c_str());
      continue;
    }
    out[k] = v;
  }
  out[std::string(core::kLabelCriImageRef)] = image_ref;
  out[std::string(core::kLabelCriLayerDigest)] = layers[i].digest;
  out[std::string(core::kLabelCriImageLayers)] = ImageLayersLabel(layers, i);
  out[std::string(core::kLabelCriManifestDigest)] = manifest_digest;
  out[std::string(core::kLabelTargetRef)] = chain_id;
  return out;
}

std::string DistributionSourceKey(const Reference& ref) {
  // url.Hostname(): no port, no IPv6 brackets.
  std::string host = ref.host;
  if (!host.empty() && host[0] == '[') {
    host = host.substr(1, host.find(']') - 1);
  } else if (size_t colon = host.rfind(':'); colon != std::string::npos) {
    host.resize(colon);
  }
  return "containerd.io/distribution.source." + host;
}

std::string AppendDistributionSource(std::string_view existing, std::string_view repo) {
  std::vector<std::string> repos;
  size_t pos = 0;
  while (!existing.empty() && pos <= existing.size()) {
    size_t comma = existing.find(',', pos);
    if (comma == std::string_view::npos) comma = existing.size();
    if (comma > pos) repos.emplace_back(existing.substr(pos, comma - pos));
    pos = comma + 1;
  }
  repos.emplace_back(repo);
  std::sort(repos.begin(), repos.end());
  repos.erase(std::unique(repos.begin(), repos.end()), repos.end());
  std::string out;
  for (const std::string& r : repos) out += (out.empty() ? "" : ",") + r;
  return out;
}

std::string ContentRefKey(const Descriptor& d) {
  std::string key = d.digest;
  if (auto name = d.annotations.find("org.opencontainers.image.ref.name"); name != d.annotations.end())
    key = name->second + "@" + d.digest;
  if (IsManifestMediaType(d.media_type)) return "manifest-" + key;
  if (IsIndexMediaType(d.media_type)) return "index-" + key;
  if (IsLayerMediaType(d.media_type)) return "layer-" + key;
  if (IsKnownConfig(d.media_type)) return "config-" + key;
  return "unknown-" + key;
}

std::string Rfc3339Utc(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

int RunPull(const PullOptions& options, const PullEvents& events) {
  if (StartsWith(options.ref, "oci:")) {
    std::fprintf(stderr, "ocix: pull takes a registry reference (host/repo:tag), not an OCI layout\n");
    return 1;
  }
  auto ref = Reference::Parse(options.ref);
  if (!ref.ok()) {
    std::fprintf(stderr, "ocix: %s\n", ref.status().ToString().c_str());
    return 1;
  }
  Puller puller(options, events, std::move(*ref));
  return puller.Run();
}

}  // namespace ocix::cli

#include "ocix/snapshotter/service.h"

#include <spdlog/spdlog.h>

namespace ocix::snapshotter {
namespace {

namespace api = containerd::services::snapshots::v1;

Labels FromProto(const google::protobuf::Map<std::string, std::string>& m) { return Labels(m.begin(), m.end()); }

void ToProto(const std::vector<MountSpec>& mounts, google::protobuf::RepeatedPtrField<containerd::types::Mount>* out) {
  for (const MountSpec& m : mounts) {
    containerd::types::Mount* pm = out->Add();
    pm->set_type(m.type);
    pm->set_source(m.source);
    for (const std::string& o : m.options) pm->add_options(o);
  }
}

void SetTime(int64_t ns, google::protobuf::Timestamp* t) {
  int64_t sec = ns / 1'000'000'000, nanos = ns % 1'000'000'000;
  if (nanos < 0) {
    nanos += 1'000'000'000;
    --sec;
  }
  t->set_seconds(sec);
  t->set_nanos(static_cast<int32_t>(nanos));
}

void ToProto(const Info& info, api::Info* out) {
  out->set_name(info.name);
  out->set_parent(info.parent);
  out->set_kind(static_cast<api::Kind>(static_cast<int>(info.kind)));
  SetTime(info.created_ns, out->mutable_created_at());
  SetTime(info.updated_ns, out->mutable_updated_at());
  for (const auto& [k, v] : info.labels) (*out->mutable_labels())[k] = v;
}

// Logs failures a client would not expect (not the NotFound/AlreadyExists
// answers that are part of normal operation) and converts.
grpc::Status Reply(std::string_view op, const std::string& key, const core::Status& s) {
  if (!s.ok()) {
    switch (s.code()) {
      case core::Code::kNotFound:
      case core::Code::kAlreadyExists:
      case core::Code::kFailedPrecondition: spdlog::debug("{} {}: {}", op, key, s.ToString()); break;
      default: spdlog::warn("{} {}: {}", op, key, s.ToString());
    }
  }
  return ToGrpcStatus(s);
}

}  // namespace

grpc::Status ToGrpcStatus(const core::Status& s) {
  using core::Code;
  grpc::StatusCode c = grpc::StatusCode::UNKNOWN;
  switch (s.code()) {
    case Code::kOk: return grpc::Status::OK;
    case Code::kNotFound: c = grpc::StatusCode::NOT_FOUND; break;
    case Code::kAlreadyExists: c = grpc::StatusCode::ALREADY_EXISTS; break;
    case Code::kFailedPrecondition: c = grpc::StatusCode::FAILED_PRECONDITION; break;
    case Code::kInvalidArgument: c = grpc::StatusCode::INVALID_ARGUMENT; break;
    case Code::kUnavailable: c = grpc::StatusCode::UNAVAILABLE; break;
    case Code::kCanceled: c = grpc::StatusCode::CANCELLED; break;
    case Code::kUnimplemented: c = grpc::StatusCode::UNIMPLEMENTED; break;
    case Code::kPermissionDenied: c = grpc::StatusCode::PERMISSION_DENIED; break;
    case Code::kCorruption: c = grpc::StatusCode::DATA_LOSS; break;
    case Code::kInternal:
    case Code::kIoError: c = grpc::StatusCode::INTERNAL; break;
  }
  return grpc::Status(c, s.message());
}

grpc::Status SnapshotsService::Prepare(grpc::ServerContext*, const api::PrepareSnapshotRequest* req,
                                       api::PrepareSnapshotResponse* resp) {
  spdlog::debug("prepare {} parent={}", req->key(), req->parent());
  auto r = sn_.Prepare(req->key(), req->parent(), FromProto(req->labels()));
  if (!r.ok()) return Reply("prepare", req->key(), r.status());
  ToProto(*r, resp->mutable_mounts());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::View(grpc::ServerContext*, const api::ViewSnapshotRequest* req,
                                    api::ViewSnapshotResponse* resp) {
  spdlog::debug("view {} parent={}", req->key(), req->parent());
  auto r = sn_.View(req->key(), req->parent(), FromProto(req->labels()));
  if (!r.ok()) return Reply("view", req->key(), r.status());
  ToProto(*r, resp->mutable_mounts());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Mounts(grpc::ServerContext*, const api::MountsRequest* req, api::MountsResponse* resp) {
  auto r = sn_.Mounts(req->key());
  if (!r.ok()) return Reply("mounts", req->key(), r.status());
  ToProto(*r, resp->mutable_mounts());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Commit(grpc::ServerContext*, const api::CommitSnapshotRequest* req,
                                      google::protobuf::Empty*) {
  spdlog::debug("commit {} as {}", req->key(), req->name());
  return Reply("commit", req->key(), sn_.Commit(req->name(), req->key(), FromProto(req->labels())));
}

grpc::Status SnapshotsService::Remove(grpc::ServerContext*, const api::RemoveSnapshotRequest* req,
                                      google::protobuf::Empty*) {
  spdlog::debug("remove {}", req->key());
  return Reply("remove", req->key(), sn_.Remove(req->key()));
}

grpc::Status SnapshotsService::Stat(grpc::ServerContext*, const api::StatSnapshotRequest* req,
                                    api::StatSnapshotResponse* resp) {
  auto r = sn_.Stat(req->key());
  if (!r.ok()) return Reply("stat", req->key(), r.status());
  ToProto(*r, resp->mutable_info());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Update(grpc::ServerContext*, const api::UpdateSnapshotRequest* req,
                                      api::UpdateSnapshotResponse* resp) {
  Info info;
  info.name = req->info().name();
  info.labels = FromProto(req->info().labels());
  std::vector<std::string> paths(req->update_mask().paths().begin(), req->update_mask().paths().end());
  auto r = sn_.Update(info, paths);
  if (!r.ok()) return Reply("update", info.name, r.status());
  ToProto(*r, resp->mutable_info());
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::List(grpc::ServerContext* ctx, const api::ListSnapshotsRequest* req,
                                    grpc::ServerWriter<api::ListSnapshotsResponse>* writer) {
  std::vector<std::string> filters(req->filters().begin(), req->filters().end());
  auto filter = Filter::Parse(filters);
  if (!filter.ok()) return Reply("list", "", filter.status());
  // Sent in batches, as containerd's own service does, to bound message size.
  constexpr int kBatch = 100;
  api::ListSnapshotsResponse batch;
  bool broken = false;
  core::Status s = sn_.Walk(*filter, [&](const Info& info) {
    if (broken || ctx->IsCancelled()) return;
    ToProto(info, batch.add_info());
    if (batch.info_size() >= kBatch) {
      broken = !writer->Write(batch);
      batch.Clear();
    }
  });
  if (!s.ok()) return Reply("list", "", s);
  if (broken || ctx->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  if (batch.info_size() > 0 && !writer->Write(batch))
    return grpc::Status(grpc::StatusCode::CANCELLED, "client went away");
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Usage(grpc::ServerContext*, const api::UsageRequest* req, api::UsageResponse* resp) {
  auto r = sn_.GetUsage(req->key());
  if (!r.ok()) return Reply("usage", req->key(), r.status());
  resp->set_size(r->size);
  resp->set_inodes(r->inodes);
  return grpc::Status::OK;
}

grpc::Status SnapshotsService::Cleanup(grpc::ServerContext*, const api::CleanupRequest*, google::protobuf::Empty*) {
  return Reply("cleanup", "", sn_.Cleanup());
}

}  // namespace ocix::snapshotter

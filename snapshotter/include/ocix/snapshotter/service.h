// containerd.services.snapshots.v1.Snapshots over gRPC: a thin mapping of
// Snapshotter, with containerd's error codes (errdefs) on the wire.
#pragma once

#include <grpcpp/grpcpp.h>

#include "containerd/services/snapshots/v1/snapshots.grpc.pb.h"
#include "ocix/core/status.h"
#include "ocix/snapshotter/snapshotter.h"

namespace ocix::snapshotter {

// Our codes as gRPC codes, which containerd's errdefs.FromGRPC turns back
// into ErrNotFound, ErrAlreadyExists, ErrFailedPrecondition, ...
grpc::Status ToGrpcStatus(const core::Status& s);

class SnapshotsService final : public containerd::services::snapshots::v1::Snapshots::Service {
 public:
  explicit SnapshotsService(Snapshotter& snapshotter) : sn_(snapshotter) {}

  grpc::Status Prepare(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::PrepareSnapshotRequest* req,
                       containerd::services::snapshots::v1::PrepareSnapshotResponse* resp) override;
  grpc::Status View(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::ViewSnapshotRequest* req,
                    containerd::services::snapshots::v1::ViewSnapshotResponse* resp) override;
  grpc::Status Mounts(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::MountsRequest* req,
                      containerd::services::snapshots::v1::MountsResponse* resp) override;
  grpc::Status Commit(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::CommitSnapshotRequest* req,
                      google::protobuf::Empty* resp) override;
  grpc::Status Remove(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::RemoveSnapshotRequest* req,
                      google::protobuf::Empty* resp) override;
  grpc::Status Stat(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::StatSnapshotRequest* req,
                    containerd::services::snapshots::v1::StatSnapshotResponse* resp) override;
  grpc::Status Update(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::UpdateSnapshotRequest* req,
                      containerd::services::snapshots::v1::UpdateSnapshotResponse* resp) override;
  grpc::Status List(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::ListSnapshotsRequest* req,
                    grpc::ServerWriter<containerd::services::snapshots::v1::ListSnapshotsResponse>* writer) override;
  grpc::Status Usage(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::UsageRequest* req,
                     containerd::services::snapshots::v1::UsageResponse* resp) override;
  grpc::Status Cleanup(grpc::ServerContext* ctx, const containerd::services::snapshots::v1::CleanupRequest* req,
                       google::protobuf::Empty* resp) override;

 private:
  Snapshotter& sn_;
};

}  // namespace ocix::snapshotter

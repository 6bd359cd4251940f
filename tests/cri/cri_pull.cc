// cri_pull SOCKET IMAGE: pulls IMAGE through containerd's CRI ImageService
// (as the kubelet does) and prints the image ref CRI returns, then the
// image's size from ImageStatus. Test tooling for the CRI path.
#include <grpcpp/grpcpp.h>

#include <chrono>
#include <cstdio>

#include "cri_api.grpc.pb.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s CONTAINERD_SOCKET IMAGE\n", argv[0]);
    return 2;
  }
  auto channel = grpc::CreateChannel(std::string("unix://") + argv[1], grpc::InsecureChannelCredentials());
  auto stub = runtime::v1::ImageService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::minutes(10));
  runtime::v1::PullImageRequest req;
  req.mutable_image()->set_image(argv[2]);
  runtime::v1::PullImageResponse resp;
  grpc::Status s = stub->PullImage(&ctx, req, &resp);
  if (!s.ok()) {
    std::fprintf(stderr, "cri_pull: PullImage %s: %s (code %d)\n", argv[2], s.error_message().c_str(),
                 static_cast<int>(s.error_code()));
    return 1;
  }
  std::printf("image_ref %s\n", resp.image_ref().c_str());
  grpc::ClientContext sctx;
  sctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  runtime::v1::ImageStatusRequest sreq;
  sreq.mutable_image()->set_image(argv[2]);
  runtime::v1::ImageStatusResponse sresp;
  s = stub->ImageStatus(&sctx, sreq, &sresp);
  if (!s.ok()) {
    std::fprintf(stderr, "cri_pull: ImageStatus: %s\n", s.error_message().c_str());
    return 1;
  }
  std::printf("image_size %llu\n", static_cast<unsigned long long>(sresp.image().size()));
  return 0;
}

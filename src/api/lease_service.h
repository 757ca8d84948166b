// etcd's Lease service. Grant and Revoke go through the mutation path;
// KeepAlive moves the deadline in this member's lessor only (as etcd's
// leader does), so it never touches the log.
#pragma once

#include "api/api_context.h"
#include "api/parsed_request.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace cairn::api {

// LeaseKeepAlive is registered with raw requests so that one that does not
// parse ends the stream with INTERNAL, as etcd does (a typed gRPC C++ stream
// only sees a failed read, like the client's end of the stream).
class LeaseService final : public ParsesRequests<etcdserverpb::Lease::CallbackService> {
 public:
  explicit LeaseService(const ApiContext* ctx);

  grpc::ServerUnaryReactor* LeaseGrant(grpc::CallbackServerContext* context,
                                       const etcdserverpb::LeaseGrantRequest* request,
                                       etcdserverpb::LeaseGrantResponse* response) override;
  grpc::ServerUnaryReactor* LeaseRevoke(grpc::CallbackServerContext* context,
                                        const etcdserverpb::LeaseRevokeRequest* request,
                                        etcdserverpb::LeaseRevokeResponse* response) override;
  grpc::ServerUnaryReactor* LeaseTimeToLive(grpc::CallbackServerContext* context,
                                            const etcdserverpb::LeaseTimeToLiveRequest* request,
                                            etcdserverpb::LeaseTimeToLiveResponse* response) override;
  grpc::ServerUnaryReactor* LeaseLeases(grpc::CallbackServerContext* context,
                                        const etcdserverpb::LeaseLeasesRequest* request,
                                        etcdserverpb::LeaseLeasesResponse* response) override;

 private:
  const ApiContext* ctx_;
};

}  // namespace cairn::api

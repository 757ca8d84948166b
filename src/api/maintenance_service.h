// etcd's Maintenance, Cluster and Auth services for one member.
#pragma once

#include "api/api_context.h"
#include "api/parsed_request.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace cairn::api {

class MaintenanceService final
    : public ParsesRequests<etcdserverpb::Maintenance::CallbackService> {
 public:
  explicit MaintenanceService(const ApiContext* ctx);
  grpc::ServerUnaryReactor* Alarm(grpc::CallbackServerContext* context,
                                  const etcdserverpb::AlarmRequest* request,
                                  etcdserverpb::AlarmResponse* response) override;
  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* context,
                                   const etcdserverpb::StatusRequest* request,
                                   etcdserverpb::StatusResponse* response) override;
  grpc::ServerUnaryReactor* Defragment(grpc::CallbackServerContext* context,
                                       const etcdserverpb::DefragmentRequest* request,
                                       etcdserverpb::DefragmentResponse* response) override;
  grpc::ServerUnaryReactor* Hash(grpc::CallbackServerContext* context,
                                 const etcdserverpb::HashRequest* request,
                                 etcdserverpb::HashResponse* response) override;
  grpc::ServerUnaryReactor* HashKV(grpc::CallbackServerContext* context,
                                   const etcdserverpb::HashKVRequest* request,
                                   etcdserverpb::HashKVResponse* response) override;
  grpc::ServerWriteReactor<etcdserverpb::SnapshotResponse>* Snapshot(
      grpc::CallbackServerContext* context, const etcdserverpb::SnapshotRequest* request) override;

 private:
  const ApiContext* ctx_;
};

class ClusterService final : public ParsesRequests<etcdserverpb::Cluster::CallbackService> {
 public:
  explicit ClusterService(const ApiContext* ctx);
  grpc::ServerUnaryReactor* MemberList(grpc::CallbackServerContext* context,
                                       const etcdserverpb::MemberListRequest* request,
                                       etcdserverpb::MemberListResponse* response) override;

 private:
  const ApiContext* ctx_;
};

class AuthService final : public ParsesRequests<etcdserverpb::Auth::CallbackService> {
 public:
  explicit AuthService(const ApiContext* ctx);
  grpc::ServerUnaryReactor* Authenticate(grpc::CallbackServerContext* context,
                                         const etcdserverpb::AuthenticateRequest* request,
                                         etcdserverpb::AuthenticateResponse* response) override;
  grpc::ServerUnaryReactor* AuthStatus(grpc::CallbackServerContext* context,
                                       const etcdserverpb::AuthStatusRequest* request,
                                       etcdserverpb::AuthStatusResponse* response) override;
  grpc::ServerUnaryReactor* AuthDisable(grpc::CallbackServerContext* context,
                                        const etcdserverpb::AuthDisableRequest* request,
                                        etcdserverpb::AuthDisableResponse* response) override;

 private:
  const ApiContext* ctx_;
};

}  // namespace cairn::api

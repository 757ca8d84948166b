// etcd's KV service. Reads run on the calling gRPC thread from a consistent
// snapshot of the applied state (on one member every acknowledged write is
// applied, so serializable and linearizable reads coincide); writes go
// through the node's mutation path and are answered from the apply thread.
#pragma once

#include "api/api_context.h"
#include "api/parsed_request.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace cairn::api {

class KvService final : public ParsesRequests<etcdserverpb::KV::CallbackService> {
 public:
  explicit KvService(const ApiContext* ctx);

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const etcdserverpb::RangeRequest* request,
                                  etcdserverpb::RangeResponse* response) override;
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context,
                                const etcdserverpb::PutRequest* request,
                                etcdserverpb::PutResponse* response) override;
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const etcdserverpb::DeleteRangeRequest* request,
                                        etcdserverpb::DeleteRangeResponse* response) override;
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* context,
                                const etcdserverpb::TxnRequest* request,
                                etcdserverpb::TxnResponse* response) override;
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context,
                                    const etcdserverpb::CompactionRequest* request,
                                    etcdserverpb::CompactionResponse* response) override;

 private:
  const ApiContext* ctx_;
};

}  // namespace cairn::api

// etcd's KV service. Reads run on the calling gRPC thread from a consistent
// snapshot of the applied state (on one member every acknowledged write is
// applied, so serializable and linearizable reads coincide); writes go
// through the node's mutation path and are answered from the apply thread.
#pragma once

#include "api/api_context.h"
#include "api/parsed_request.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace cairn::api {

// Every method on gRPC's callback API. (Put, DeleteRange and Txn were on the
// async API for a while, answered through a queue the apply thread drained:
// its accept thread, blocked on a server completion queue, became one of
// gRPC's pollers and took ranges 20-28% of their throughput; see
// docs/benchmarks.md, "Writes back on the callback API".)
class KvService final : public ParsesRequests<etcdserverpb::KV::Service> {
 public:
  explicit KvService(const ApiContext* ctx);

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const etcdserverpb::RangeRequest* request,
                                  etcdserverpb::RangeResponse* response);
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context, const etcdserverpb::PutRequest* request,
                                etcdserverpb::PutResponse* response);
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const etcdserverpb::DeleteRangeRequest* request,
                                        etcdserverpb::DeleteRangeResponse* response);
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* context, const etcdserverpb::TxnRequest* request,
                                etcdserverpb::TxnResponse* response);
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context,
                                    const etcdserverpb::CompactionRequest* request,
                                    etcdserverpb::CompactionResponse* response);

 private:
  const ApiContext* ctx_;
};

}  // namespace cairn::api

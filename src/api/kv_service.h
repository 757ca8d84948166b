// etcd's KV service. Reads run on the calling gRPC thread from a consistent
// snapshot of the applied state (on one member every acknowledged write is
// applied, so serializable and linearizable reads coincide); writes go
// through the node's mutation path and are answered from the apply thread.
#pragma once

#include "api/api_context.h"
#include "api/async_unary.h"
#include "api/parsed_request.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace cairn::api {

// Put, DeleteRange and Txn on gRPC's async API (AsyncUnary), the rest on
// the callback API (the constructor registers them).
using KvServiceBase = etcdserverpb::KV::WithAsyncMethod_Put<etcdserverpb::KV::WithAsyncMethod_DeleteRange<
    etcdserverpb::KV::WithAsyncMethod_Txn<etcdserverpb::KV::Service>>>;

class KvService final : public ParsesRequests<KvServiceBase> {
 public:
  template <class Response>
  using Call = UnaryCall<KvService, Response>;

  explicit KvService(const ApiContext* ctx);

  // One call of each async method, for AsyncUnary to ask for more.
  std::vector<std::unique_ptr<AsyncCall>> AsyncMethods();

  // The async methods: each parses and checks its call as the callback
  // methods are (ParsesRequests), then answers it once, from whatever thread
  // has the answer (a write: the apply thread, once applied).
  void ServePut(Call<etcdserverpb::PutResponse>* call);
  void ServeDeleteRange(Call<etcdserverpb::DeleteRangeResponse>* call);
  void ServeTxn(Call<etcdserverpb::TxnResponse>* call);

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const etcdserverpb::RangeRequest* request,
                                  etcdserverpb::RangeResponse* response);
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context,
                                    const etcdserverpb::CompactionRequest* request,
                                    etcdserverpb::CompactionResponse* response);

 private:
  const ApiContext* ctx_;
  int put_ = 0, delete_range_ = 0, txn_ = 0;  // the async methods' indexes
  // What a txn nested too deep to parse is answered (see the constructor).
  std::optional<grpc::Status> txn_too_deep_;
};

}  // namespace cairn::api

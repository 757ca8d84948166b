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

// Put, DeleteRange and Txn on gRPC's async API (AsyncUnary) when the member
// is one of several, else on the callback API as the rest (the constructor
// registers them). The async API's accept thread, blocked on a server
// completion queue, is one of gRPC's pollers: it takes a single member's
// ranges 20-28% of their throughput, while on three members its cheaper
// answers gave puts +13% and ranges nothing measurable (docs/benchmarks.md,
// "Writes on the callback API on one member").
using KvServiceBase = etcdserverpb::KV::WithAsyncMethod_Put<etcdserverpb::KV::WithAsyncMethod_DeleteRange<
    etcdserverpb::KV::WithAsyncMethod_Txn<etcdserverpb::KV::Service>>>;

class KvService final : public ParsesRequests<KvServiceBase> {
 public:
  template <class Response>
  using Call = UnaryCall<KvService, Response>;

  // `async_writes`: Put, DeleteRange and Txn on the async API.
  KvService(const ApiContext* ctx, bool async_writes);

  // One call of each async method, for AsyncUnary to ask for more (none
  // without async_writes).
  std::vector<std::unique_ptr<AsyncCall>> AsyncMethods();

  // The async methods: each parses and checks its call as the callback
  // methods are (ParsesRequests), then answers it once, from whatever thread
  // has the answer (a write: the apply thread, once applied).
  void ServePut(Call<etcdserverpb::PutResponse>* call);
  void ServeDeleteRange(Call<etcdserverpb::DeleteRangeResponse>* call);
  void ServeTxn(Call<etcdserverpb::TxnResponse>* call);

  // The same methods on the callback API (without async_writes).
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* context, const etcdserverpb::PutRequest* request,
                                etcdserverpb::PutResponse* response);
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const etcdserverpb::DeleteRangeRequest* request,
                                        etcdserverpb::DeleteRangeResponse* response);
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* context, const etcdserverpb::TxnRequest* request,
                                etcdserverpb::TxnResponse* response);

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const etcdserverpb::RangeRequest* request,
                                  etcdserverpb::RangeResponse* response);
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context,
                                    const etcdserverpb::CompactionRequest* request,
                                    etcdserverpb::CompactionResponse* response);

 private:
  // A read-only txn, served locally (both Txn paths), into *response.
  Status ReadTxn(const apply::AuthInfo& who, const etcdserverpb::TxnRequest& request,
                 etcdserverpb::TxnResponse* response) const;

  const ApiContext* ctx_;
  const bool async_writes_;
  int put_ = 0, delete_range_ = 0, txn_ = 0;  // the async methods' indexes
  // What a txn nested too deep to parse is answered (see the constructor).
  std::optional<grpc::Status> txn_too_deep_;
};

}  // namespace cairn::api

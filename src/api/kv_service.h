// etcd's KV service. Reads run on the calling gRPC thread from a consistent
// snapshot of the applied state (on one member every acknowledged write is
// applied, so serializable and linearizable reads coincide); writes go
// through the node's mutation path and are answered from the apply thread.
#pragma once

#include "api/api_context.h"
#include "api/parsed_request.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace cairn::api {

// One KV.Put call on gRPC's async API (Put is served so, not on the callback
// API: see AsyncPuts). Answered once, by Finish, from whatever thread has the
// answer; gRPC returns it as the tag of its answer's completion.
struct PutCall {
  grpc::ServerContext context;
  ParsedRequest request;
  etcdserverpb::PutResponse response;
  grpc::ServerAsyncResponseWriter<etcdserverpb::PutResponse> writer{&context};

  // Answers `response` if `s` is OK, else `s`.
  void Finish(const grpc::Status& s);
};

// Every method on the callback API but Put (the constructor registers them;
// the generated base marks Put async and leaves the rest to be registered).
using KvServiceBase = etcdserverpb::KV::WithAsyncMethod_Put<etcdserverpb::KV::Service>;

class KvService final : public ParsesRequests<KvServiceBase> {
 public:
  explicit KvService(const ApiContext* ctx);

  // Asks gRPC for the next Put: it arrives as tag `call` on `arrivals`, and
  // its answer's completion comes to `answers`.
  void RequestPutCall(PutCall* call, grpc::CompletionQueue* answers, grpc::ServerCompletionQueue* arrivals);
  // Serves a Put that arrived: parses and checks it as the callback methods
  // are (ParsesRequests), proposes it, and finishes it once applied (from the
  // apply thread) or refused.
  void ServePut(PutCall* call);

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* context,
                                  const etcdserverpb::RangeRequest* request,
                                  etcdserverpb::RangeResponse* response);
  grpc::ServerUnaryReactor* DeleteRange(grpc::CallbackServerContext* context,
                                        const etcdserverpb::DeleteRangeRequest* request,
                                        etcdserverpb::DeleteRangeResponse* response);
  grpc::ServerUnaryReactor* Txn(grpc::CallbackServerContext* context,
                                const etcdserverpb::TxnRequest* request,
                                etcdserverpb::TxnResponse* response);
  grpc::ServerUnaryReactor* Compact(grpc::CallbackServerContext* context,
                                    const etcdserverpb::CompactionRequest* request,
                                    etcdserverpb::CompactionResponse* response);

 private:
  const ApiContext* ctx_;
};

}  // namespace cairn::api

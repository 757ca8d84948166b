#include "api/kv_service.h"

#include "apply/kv_ops.h"
#include "common/proto_parse.h"

namespace cairn::api {

KvService::KvService(const ApiContext* ctx, bool async_writes)
    : ParsesRequests("etcdserverpb.KV", RequestRecursionLimit(ctx->limits.max_txn_ops)),
      ctx_(ctx),
      async_writes_(async_writes) {
  ParseRequest("Range", &KvService::Range);
  // A txn too deep to parse is too deep for etcd's own check, which would
  // refuse it, unless the limit was capped below what --max-txn-ops allows.
  const int limit = RequestRecursionLimit(ctx->limits.max_txn_ops);
  const bool capped = limit < 2 * ctx->limits.max_txn_ops + 8;
  if (!capped) txn_too_deep_ = ToGrpc(errors::TooManyOps());
  if (async_writes_) {
    put_ = ServeAsync("Put");
    delete_range_ = ServeAsync("DeleteRange");
    txn_ = ServeAsync("Txn");
  } else {
    ParseRequest("Put", &KvService::Put);
    ParseRequest("DeleteRange", &KvService::DeleteRange);
    ParseRequest("Txn", &KvService::Txn, txn_too_deep_);
  }
  ParseRequest("Compact", &KvService::Compact);
  SetLeaderCheck([ctx] { return ctx->node->leader_id() != 0; });
  SetLearnerCheck([ctx] { return ctx->IsLearner(); }, [](const google::protobuf::Message& m) {
    const auto* range = dynamic_cast<const etcdserverpb::RangeRequest*>(&m);
    return range != nullptr && range->serializable();
  });
  ParseRemainingRequests();
}

std::vector<std::unique_ptr<AsyncCall>> KvService::AsyncMethods() {
  std::vector<std::unique_ptr<AsyncCall>> methods;
  if (!async_writes_) return methods;
  methods.push_back(std::make_unique<Call<etcdserverpb::PutResponse>>(this, put_, &KvService::ServePut));
  methods.push_back(
      std::make_unique<Call<etcdserverpb::DeleteRangeResponse>>(this, delete_range_, &KvService::ServeDeleteRange));
  methods.push_back(std::make_unique<Call<etcdserverpb::TxnResponse>>(this, txn_, &KvService::ServeTxn));
  return methods;
}

namespace {
// The answer of an async call: its Finish.
template <class Call>
auto FinishOf(Call* call) {
  return [call](const grpc::Status& s) { call->Finish(s); };
}
}  // namespace

grpc::ServerUnaryReactor* KvService::Range(grpc::CallbackServerContext* context,
                                           const etcdserverpb::RangeRequest* request,
                                           etcdserverpb::RangeResponse* response) {
  ctx_->metrics->mvcc().range_total->Increment();
  Status s = apply::CheckRangeRequest(*request);
  if (!s.ok()) return FinishNow(context, s);
  auto who = ctx_->AuthInfoOf(*context);
  if (!who.ok()) return FinishNow(context, who.status());
  return ReadAndFinish(ctx_, context, !request->serializable(), [this, request, response, who = *who] {
    // etcd's doSerialize: checked before the read, and the read is refused
    // if the auth store changed meanwhile.
    if (Status denied = ctx_->auth()->IsRangePermitted(who, request->key(), request->range_end()); !denied.ok()) {
      return denied;
    }
    auto view = ctx_->node->kv()->Read();
    auto r = apply::Range(*view, *request);
    if (!r.ok()) return r.status();
    if (who.revision != 0 && who.revision != ctx_->auth()->revision()) return errors::AuthOldRevision();
    *response = std::move(*r);
    ctx_->FillHeader(response->mutable_header());
    return Status::Ok();
  });
}

namespace {
// etcd: a read-only txn is served locally only if every range in it is.
bool TxnSerializable(const etcdserverpb::TxnRequest& r) {
  auto all = [](const auto& ops) {
    for (const auto& op : ops) {
      if (op.has_request_range() && !op.request_range().serializable()) return false;
      if (op.has_request_txn() && !TxnSerializable(op.request_txn())) return false;
    }
    return true;
  };
  return all(r.success()) && all(r.failure());
}
// etcd's checkTxnAuth for a read-only txn: every compare and range, nested too.
Status CheckReadTxn(const apply::AuthStore& auth, const apply::AuthInfo& who, const etcdserverpb::TxnRequest& r) {
  for (const auto& c : r.compare()) {
    if (Status s = auth.IsRangePermitted(who, c.key(), c.range_end()); !s.ok()) return s;
  }
  for (const auto* ops : {&r.success(), &r.failure()}) {
    for (const auto& op : *ops) {
      Status s;
      if (op.has_request_range()) s = auth.IsRangePermitted(who, op.request_range().key(), op.request_range().range_end());
      if (op.has_request_txn()) s = CheckReadTxn(auth, who, op.request_txn());
      if (!s.ok()) return s;
    }
  }
  return Status::Ok();
}
}  // namespace

void KvService::ServePut(Call<etcdserverpb::PutResponse>* call) {
  const auto* request = ParseAsync<etcdserverpb::PutRequest>(call);
  if (request == nullptr) return;
  ctx_->metrics->mvcc().put_total->Increment();
  if (Status s = apply::CheckPutRequest(*request); !s.ok()) return call->Finish(ToGrpc(s));
  cairnpb::InternalRequest req;
  *req.mutable_put() = *request;
  ProposeAndAnswer(ctx_, call->context, std::move(req), true, &call->response,
                   [](const cairnpb::InternalResponse& r) { return r.put(); }, FinishOf(call));
}

void KvService::ServeDeleteRange(Call<etcdserverpb::DeleteRangeResponse>* call) {
  const auto* request = ParseAsync<etcdserverpb::DeleteRangeRequest>(call);
  if (request == nullptr) return;
  ctx_->metrics->mvcc().delete_total->Increment();
  if (Status s = apply::CheckDeleteRequest(*request); !s.ok()) return call->Finish(ToGrpc(s));
  cairnpb::InternalRequest req;
  *req.mutable_delete_range() = *request;
  ProposeAndAnswer(ctx_, call->context, std::move(req), false, &call->response,
                   [](const cairnpb::InternalResponse& r) { return r.delete_range(); }, FinishOf(call));
}

Status KvService::ReadTxn(const apply::AuthInfo& who, const etcdserverpb::TxnRequest& request,
                          etcdserverpb::TxnResponse* response) const {
  if (Status denied = CheckReadTxn(*ctx_->auth(), who, request); !denied.ok()) return denied;
  auto view = ctx_->node->kv()->Read();
  auto r = apply::Txn(*view, nullptr, *ctx_->node->lessor(), request);
  if (!r.ok()) return r.status();
  *response = std::move(*r);
  ctx_->FillHeader(response->mutable_header());
  return Status::Ok();
}

void KvService::ServeTxn(Call<etcdserverpb::TxnResponse>* call) {
  const auto* request = ParseAsync<etcdserverpb::TxnRequest>(call, txn_too_deep_);
  if (request == nullptr) return;
  ctx_->metrics->mvcc().txn_total->Increment();
  if (Status s = apply::CheckTxnRequest(*request, ctx_->limits.max_txn_ops); !s.ok()) return call->Finish(ToGrpc(s));
  if (apply::IsTxnReadOnly(*request)) {
    auto who = ctx_->AuthInfoOf(call->context);
    if (!who.ok()) return call->Finish(ToGrpc(who.status()));
    auto read = [this, request, call, who = *who] { return ReadTxn(who, *request, &call->response); };
    return ReadThenAnswer(ctx_, !TxnSerializable(*request), std::move(read), FinishOf(call));
  }
  cairnpb::InternalRequest req;
  *req.mutable_txn() = *request;
  ProposeAndAnswer(ctx_, call->context, std::move(req), true, &call->response,
                   [](const cairnpb::InternalResponse& r) { return r.txn(); }, FinishOf(call));
}

grpc::ServerUnaryReactor* KvService::Put(grpc::CallbackServerContext* context,
                                         const etcdserverpb::PutRequest* request,
                                         etcdserverpb::PutResponse* response) {
  ctx_->metrics->mvcc().put_total->Increment();
  if (Status s = apply::CheckPutRequest(*request); !s.ok()) return FinishNow(context, s);
  cairnpb::InternalRequest req;
  *req.mutable_put() = *request;
  return ProposeUnary(ctx_, context, std::move(req), true, response,
                      [](const cairnpb::InternalResponse& r) { return r.put(); });
}

grpc::ServerUnaryReactor* KvService::DeleteRange(grpc::CallbackServerContext* context,
                                                 const etcdserverpb::DeleteRangeRequest* request,
                                                 etcdserverpb::DeleteRangeResponse* response) {
  ctx_->metrics->mvcc().delete_total->Increment();
  if (Status s = apply::CheckDeleteRequest(*request); !s.ok()) return FinishNow(context, s);
  cairnpb::InternalRequest req;
  *req.mutable_delete_range() = *request;
  return ProposeUnary(ctx_, context, std::move(req), false, response,
                      [](const cairnpb::InternalResponse& r) { return r.delete_range(); });
}

grpc::ServerUnaryReactor* KvService::Txn(grpc::CallbackServerContext* context,
                                         const etcdserverpb::TxnRequest* request,
                                         etcdserverpb::TxnResponse* response) {
  ctx_->metrics->mvcc().txn_total->Increment();
  if (Status s = apply::CheckTxnRequest(*request, ctx_->limits.max_txn_ops); !s.ok()) return FinishNow(context, s);
  if (apply::IsTxnReadOnly(*request)) {
    auto who = ctx_->AuthInfoOf(*context);
    if (!who.ok()) return FinishNow(context, who.status());
    return ReadAndFinish(ctx_, context, !TxnSerializable(*request),
                         [this, request, response, who = *who] { return ReadTxn(who, *request, response); });
  }
  cairnpb::InternalRequest req;
  *req.mutable_txn() = *request;
  return ProposeUnary(ctx_, context, std::move(req), true, response,
                      [](const cairnpb::InternalResponse& r) { return r.txn(); });
}

grpc::ServerUnaryReactor* KvService::Compact(grpc::CallbackServerContext* context,
                                             const etcdserverpb::CompactionRequest* request,
                                             etcdserverpb::CompactionResponse* response) {
  // etcd 3.5.28+: compaction is root's once auth is on.
  if (Status denied = ctx_->RequireRoot(*context); !denied.ok()) return FinishNow(context, denied);
  cairnpb::InternalRequest req;
  *req.mutable_compaction() = *request;
  return ProposeUnary(ctx_, context, std::move(req), false, response,
                      [](const cairnpb::InternalResponse& r) { return r.compaction(); });
}

}  // namespace cairn::api

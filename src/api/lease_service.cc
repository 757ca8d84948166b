#include "api/lease_service.h"

#include <deque>
#include <mutex>

#include "mvcc/kv_store.h"

namespace cairn::api {

using etcdserverpb::LeaseKeepAliveRequest;
using etcdserverpb::LeaseKeepAliveResponse;

namespace {

// One keep-alive stream: answers each request in order, one write in flight,
// at most kMaxQueued answers waiting; reading pauses while the queue is full.
// A request that does not parse ends the stream, after the answers before it,
// with etcd's INTERNAL status.
// The keys attached to a lease now.
std::vector<std::string> KeysOf(const ApiContext* ctx, int64_t id) {
  auto view = ctx->node->kv()->Read();
  std::string lower, upper;
  storage::PutFixed64BE(&lower, static_cast<uint64_t>(id));
  storage::PutFixed64BE(&upper, static_cast<uint64_t>(id) + 1);
  auto it = ctx->node->engine()->NewIterator(storage::Column::kLeaseKey, view->snapshot(), lower, upper);
  std::vector<std::string> keys;
  for (it->SeekToFirst(); it->Valid(); it->Next()) keys.emplace_back(it->key().substr(8));
  return keys;
}

// etcd 3.5's lease checks once auth is on: a user is needed; unless root,
// `permitted` must hold for every key of the leases.
template <typename Permitted>
Status CheckLeaseKeys(const ApiContext* ctx, const grpc::ServerContextBase& context,
                      const std::vector<int64_t>& leases, Permitted permitted) {
  if (!ctx->auth()->enabled()) return Status::Ok();
  auto who = ctx->AuthInfoOf(context);
  if (!who.ok()) return who.status();
  if (who->user.empty()) return errors::UserEmpty();
  if (ctx->auth()->IsAdminPermitted(*who).ok()) return Status::Ok();
  for (int64_t id : leases) {
    for (const auto& key : KeysOf(ctx, id)) {
      if (Status s = permitted(*who, key); !s.ok()) return s;
    }
  }
  if (who->revision != ctx->auth()->revision()) return errors::AuthOldRevision();
  return Status::Ok();
}

class KeepAliveReactor final
    : public grpc::ServerBidiReactor<grpc::ByteBuffer, LeaseKeepAliveResponse> {
 public:
  KeepAliveReactor(const ApiContext* ctx, grpc::CallbackServerContext* context) : ctx_(ctx), context_(context) {
    StartRead(&bytes_);
  }

  void OnReadDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok) {
      read_closed_ = true;
      MaybeFinishLocked();
      return;
    }
    LeaseKeepAliveRequest request;
    const bool parsed = grpc::SerializationTraits<LeaseKeepAliveRequest>::Deserialize(
                            &bytes_, &request).ok();
    if (!parsed) {
      read_closed_ = true;
      // Protobuf C++ gives no reason, unlike grpc-go's decoder.
      status_ = StreamUnmarshalError("proto: cannot parse invalid wire-format data as " +
                                     LeaseKeepAliveRequest::descriptor()->full_name());
      MaybeFinishLocked();
      return;
    }
    // etcd's checkLeaseRenew: WRITE on every key of the lease (unless root).
    const Status allowed = CheckLeaseKeys(ctx_, *context_, {request.id()},
                                          [this](const apply::AuthInfo& who, const std::string& key) {
                                            return ctx_->auth()->IsPutPermitted(who, key);
                                          });
    if (!allowed.ok()) {
      read_closed_ = true;
      status_ = ToGrpc(allowed);
      MaybeFinishLocked();
      return;
    }
    LeaseKeepAliveResponse resp;
    resp.set_id(request.id());
    auto ttl = ctx_->node->RenewLease(request.id());
    if (ttl.ok()) ctx_->metrics->lease().renewed_total->Increment();
    resp.set_ttl(ttl.ok() ? *ttl : 0);
    ctx_->FillHeader(resp.mutable_header());
    queue_.push_back(std::move(resp));
    if (!writing_) StartNextWriteLocked();
    if (queue_.size() < kMaxQueued) {
      StartRead(&bytes_);
    } else {
      read_paused_ = true;
    }
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) {
      failed_ = true;
      MaybeFinishLocked();
      return;
    }
    StartNextWriteLocked();
    if (read_paused_ && queue_.size() < kMaxQueued) {
      read_paused_ = false;
      StartRead(&bytes_);
    }
    MaybeFinishLocked();
  }

  void OnDone() override { delete this; }

 private:
  static constexpr size_t kMaxQueued = 64;

  void StartNextWriteLocked() {
    if (queue_.empty() || failed_) return;
    current_ = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    StartWrite(&current_);
  }

  void MaybeFinishLocked() {
    if (finished_ || writing_) return;
    if ((read_closed_ && queue_.empty()) || failed_) {
      finished_ = true;
      Finish(status_);
    }
  }

  const ApiContext* ctx_;
  grpc::CallbackServerContext* const context_;  // gRPC's, valid until OnDone
  std::mutex mu_;
  grpc::ByteBuffer bytes_;  // owned by the read in flight
  grpc::Status status_ = grpc::Status::OK;  // what the stream ends with
  LeaseKeepAliveResponse current_;
  std::deque<LeaseKeepAliveResponse> queue_;
  bool writing_ = false;
  bool read_paused_ = false;
  bool read_closed_ = false;
  bool failed_ = false;
  bool finished_ = false;
};

}  // namespace

grpc::ServerUnaryReactor* LeaseService::LeaseGrant(grpc::CallbackServerContext* context,
                                                   const etcdserverpb::LeaseGrantRequest* request,
                                                   etcdserverpb::LeaseGrantResponse* response) {
  // etcd 3.5.28+: granting and revoking need a user once auth is on.
  if (Status s = ctx_->RequireUser(*context); !s.ok()) return FinishNow(context, s);
  cairnpb::InternalRequest req;
  *req.mutable_lease_grant() = *request;
  // The id is chosen before the log so every replica applies the same one.
  if (req.lease_grant().id() == 0) req.mutable_lease_grant()->set_id(ctx_->node->NextLeaseId());
  return ProposeUnary(ctx_, context, std::move(req), true, response,
                      [this](const cairnpb::InternalResponse& r) {
                        ctx_->metrics->lease().granted_total->Increment();
                        return r.lease_grant();
                      });
}

grpc::ServerUnaryReactor* LeaseService::LeaseRevoke(grpc::CallbackServerContext* context,
                                                    const etcdserverpb::LeaseRevokeRequest* request,
                                                    etcdserverpb::LeaseRevokeResponse* response) {
  if (Status s = ctx_->RequireUser(*context); !s.ok()) return FinishNow(context, s);
  cairnpb::InternalRequest req;
  *req.mutable_lease_revoke() = *request;
  return ProposeUnary(ctx_, context, std::move(req), false, response,
                      [this](const cairnpb::InternalResponse& r) {
                        ctx_->metrics->lease().revoked_total->Increment();
                        return r.lease_revoke();
                      });
}

LeaseService::LeaseService(const ApiContext* ctx)
    : ParsesRequests("etcdserverpb.Lease", /*recursion_limit=*/100), ctx_(ctx) {
  ParseRequest("LeaseGrant", &LeaseService::LeaseGrant);
  ParseRequest("LeaseRevoke", &LeaseService::LeaseRevoke);
  ParseRequest("LeaseTimeToLive", &LeaseService::LeaseTimeToLive);
  ParseRequest("LeaseLeases", &LeaseService::LeaseLeases);
  MarkMethodCallback(
      MethodIndex("LeaseKeepAlive"),
      new grpc::internal::CallbackBidiHandler<grpc::ByteBuffer, LeaseKeepAliveResponse>(
          [ctx](grpc::CallbackServerContext* context) -> grpc::ServerBidiReactor<grpc::ByteBuffer,
                                                                                      LeaseKeepAliveResponse>* {
            if (ctx->IsLearner()) {
              return new RefusedBidiReactor<grpc::ByteBuffer, LeaseKeepAliveResponse>(NotSupportedForLearner());
            }
            return new KeepAliveReactor(ctx, context);
          }));
  SetLeaderCheck([ctx] { return ctx->node->leader_id() != 0; });
  SetLearnerCheck([ctx] { return ctx->IsLearner(); });
  ParseRemainingRequests();
}

grpc::ServerUnaryReactor* LeaseService::LeaseTimeToLive(
    grpc::CallbackServerContext* context, const etcdserverpb::LeaseTimeToLiveRequest* request,
    etcdserverpb::LeaseTimeToLiveResponse* response) {
  // etcd 3.5: a user once auth is on; with keys, READ on each (unless root).
  if (ctx_->auth()->enabled()) {
    auto who = ctx_->AuthInfoOf(*context);
    if (!who.ok()) return FinishNow(context, who.status());
    if (who->user.empty()) return FinishNow(context, errors::UserEmpty());
  }
  if (request->keys()) {
    Status allowed = CheckLeaseKeys(ctx_, *context, {request->id()},
                                    [this](const apply::AuthInfo& who, const std::string& key) {
                                      return ctx_->auth()->IsRangePermitted(who, key, "");
                                    });
    if (!allowed.ok()) return FinishNow(context, allowed);
  }
  response->set_id(request->id());
  auto info = ctx_->node->lessor()->Get(request->id());
  if (!info.ok()) {
    response->set_ttl(-1);  // etcd answers an unknown lease with TTL -1, no error
  } else {
    response->set_ttl(info->remaining_ms / 1000);
    response->set_grantedttl(info->granted_ttl_seconds);
    if (request->keys()) {
      for (auto& key : KeysOf(ctx_, request->id())) response->add_keys(std::move(key));
    }
  }
  ctx_->FillHeader(response->mutable_header());
  return FinishNow(context, Status::Ok());
}

grpc::ServerUnaryReactor* LeaseService::LeaseLeases(grpc::CallbackServerContext* context,
                                                    const etcdserverpb::LeaseLeasesRequest* request,
                                                    etcdserverpb::LeaseLeasesResponse* response) {
  const std::vector<int64_t> ids = ctx_->node->lessor()->List();
  // etcd 3.5: READ on every key of every lease, unless root.
  Status allowed = CheckLeaseKeys(ctx_, *context, ids, [this](const apply::AuthInfo& who, const std::string& key) {
    return ctx_->auth()->IsRangePermitted(who, key, "");
  });
  if (!allowed.ok()) return FinishNow(context, allowed);
  for (int64_t id : ids) response->add_leases()->set_id(id);
  ctx_->FillHeader(response->mutable_header());
  return FinishNow(context, Status::Ok());
}

}  // namespace cairn::api

#include "api/local_client.h"

#include <cstdio>

#include "apply/kv_ops.h"

namespace cairn::api {

std::string SessionKey(const std::string& prefix, int64_t lease) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%llx", static_cast<unsigned long long>(lease));
  return prefix + buf;
}

etcdserverpb::RangeRequest CreateOrderedRange(const std::string& prefix, bool newest) {
  etcdserverpb::RangeRequest r;
  r.set_key(prefix);
  r.set_range_end(PrefixRangeEnd(prefix));
  r.set_sort_target(etcdserverpb::RangeRequest::CREATE);
  r.set_sort_order(newest ? etcdserverpb::RangeRequest::DESCEND : etcdserverpb::RangeRequest::ASCEND);
  r.set_limit(1);
  return r;
}

void LocalClient::Txn(const apply::AuthInfo& who, etcdserverpb::TxnRequest req,
                      Done<etcdserverpb::TxnResponse> done) const {
  Status s = apply::CheckTxnRequest(req, ctx_->limits.max_txn_ops);
  if (!s.ok()) {
    done(s, {});
    return;
  }
  cairnpb::InternalRequest internal;
  *internal.mutable_txn() = std::move(req);
  internal.set_auth_user(who.user);
  internal.set_auth_revision(who.revision);
  const ApiContext* ctx = ctx_;
  ProposeChecked(*ctx_, std::move(internal), /*needs_space=*/true,
                 [ctx, done = std::move(done)](const Status& s, const cairnpb::InternalResponse& r) {
                   if (!s.ok()) {
                     done(s, {});
                     return;
                   }
                   etcdserverpb::TxnResponse resp = r.txn();
                   ctx->FillHeader(resp.mutable_header());
                   done(s, std::move(resp));
                 });
}

void LocalClient::Delete(const apply::AuthInfo& who, std::string key,
                         Done<etcdserverpb::DeleteRangeResponse> done) const {
  cairnpb::InternalRequest internal;
  internal.set_auth_user(who.user);
  internal.set_auth_revision(who.revision);
  internal.mutable_delete_range()->set_key(std::move(key));
  Status s = apply::CheckDeleteRequest(internal.delete_range());
  if (!s.ok()) {
    done(s, {});
    return;
  }
  const ApiContext* ctx = ctx_;
  ProposeChecked(*ctx_, std::move(internal), /*needs_space=*/false,
                 [ctx, done = std::move(done)](const Status& s, const cairnpb::InternalResponse& r) {
                   if (!s.ok()) {
                     done(s, {});
                     return;
                   }
                   etcdserverpb::DeleteRangeResponse resp = r.delete_range();
                   ctx->FillHeader(resp.mutable_header());
                   done(s, std::move(resp));
                 });
}

void LocalClient::GrantLease(const apply::AuthInfo& who, int64_t ttl, Done<int64_t> done) const {
  cairnpb::InternalRequest internal;
  internal.set_auth_user(who.user);
  internal.set_auth_revision(who.revision);
  internal.mutable_lease_grant()->set_ttl(ttl);
  internal.mutable_lease_grant()->set_id(ctx_->node->NextLeaseId());
  ProposeChecked(*ctx_, std::move(internal), /*needs_space=*/true,
                 [done = std::move(done)](const Status& s, const cairnpb::InternalResponse& r) {
                   done(s, s.ok() ? r.lease_grant().id() : 0);
                 });
}

Result<etcdserverpb::RangeResponse> LocalClient::Range(const apply::AuthInfo& who,
                                                      const etcdserverpb::RangeRequest& req) const {
  Status s = apply::CheckRangeRequest(req);
  if (!s.ok()) return s;
  if (Status denied = ctx_->auth()->IsRangePermitted(who, req.key(), req.range_end()); !denied.ok()) return denied;
  auto view = ctx_->node->kv()->Read();
  auto r = apply::Range(*view, req);
  if (!r.ok()) return r.status();
  ctx_->FillHeader(r->mutable_header());
  return r;
}

void LocalClient::LinearizableRange(const apply::AuthInfo& who, etcdserverpb::RangeRequest req,
                                    Done<etcdserverpb::RangeResponse> done) const {
  ctx_->node->LinearizableRead([this, who, req = std::move(req), done = std::move(done)](const Status& s) {
    if (!s.ok()) {
      done(s, {});
      return;
    }
    auto r = Range(who, req);
    if (!r.ok()) {
      done(r.status(), {});
      return;
    }
    done(Status::Ok(), std::move(*r));
  });
}

std::shared_ptr<DeleteWait> LocalClient::WaitDeletes(const apply::AuthInfo& who, std::string prefix,
                                                     int64_t max_create_rev,
                                                     std::function<void(const Status&)> done) const {
  auto wait = std::make_shared<DeleteWait>(this, who, std::move(prefix), max_create_rev, std::move(done));
  wait->Start();
  return wait;
}

DeleteWait::DeleteWait(const LocalClient* client, apply::AuthInfo who, std::string prefix, int64_t max_create_rev,
                       std::function<void(const Status&)> done)
    : client_(client), who_(std::move(who)), prefix_(std::move(prefix)), max_create_rev_(max_create_rev),
      done_(std::move(done)) {}

void DeleteWait::Start() {
  std::weak_ptr<DeleteWait> weak = weak_from_this();
  // Subscribed before the first check, so a delete between the two is heard.
  const uint64_t id = client_->events()->Subscribe(
      prefix_, PrefixRangeEnd(prefix_), /*deletes_only=*/true,
      [weak](int64_t, const std::vector<const mvccpb::Event*>&) {
        if (auto self = weak.lock()) self->Check();
      });
  if (id == 0) {
    Finish(errors::TooManyRequests());
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) {
      client_->events()->Unsubscribe(id);
      return;
    }
    sub_ = id;
  }
  Check();
}

void DeleteWait::Check() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
  }
  etcdserverpb::RangeRequest r = CreateOrderedRange(prefix_, /*newest=*/true);
  r.set_max_create_revision(max_create_rev_);
  r.set_keys_only(true);
  auto resp = client_->Range(who_, r);
  if (!resp.ok()) {
    Finish(resp.status());
  } else if (resp->kvs().empty()) {
    Finish(Status::Ok());
  }
}

void DeleteWait::Finish(const Status& s) {
  uint64_t sub;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (finished_) return;
    finished_ = true;
    sub = sub_;
    sub_ = 0;
  }
  if (sub != 0) client_->events()->Unsubscribe(sub);
  done_(s);
  done_ = nullptr;
}

}  // namespace cairn::api

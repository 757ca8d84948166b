#include "api/lock_service.h"

#include "api/waiting_call.h"

namespace cairn::api {

namespace {

// One Lock call: acquire, wait, answer (etcd's Mutex.Lock).
class LockOp : public std::enable_shared_from_this<LockOp> {
 public:
  LockOp(const LocalClient* client, apply::AuthInfo who, std::shared_ptr<WaitingCall> call, std::string name,
         v3lockpb::LockResponse* response)
      : client_(client), who_(std::move(who)), call_(std::move(call)), prefix_(std::move(name) + "/"),
        response_(response) {}

  void Start(int64_t lease) {
    if (lease != 0) {
      Acquire(lease);
      return;
    }
    auto self = shared_from_this();
    client_->GrantLease(who_, kSessionTTLSeconds, [self](const Status& s, int64_t id) {
      if (!s.ok()) {
        self->call_->Finish(AsClientError(s));
        return;
      }
      self->Acquire(id);
    });
  }

 private:
  void Acquire(int64_t lease) {
    key_ = SessionKey(prefix_, lease);
    // If(create(key) = 0) Then(put key with the lease, get the oldest key)
    // Else(get key, get the oldest key): one round trip when uncontended,
    // and the same lease may take the lock it holds again.
    etcdserverpb::TxnRequest txn;
    auto* cmp = txn.add_compare();
    cmp->set_key(key_);
    cmp->set_target(etcdserverpb::Compare::CREATE);
    cmp->set_result(etcdserverpb::Compare::EQUAL);
    cmp->set_create_revision(0);
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(key_);
    put->set_lease(lease);
    *txn.add_success()->mutable_request_range() = CreateOrderedRange(prefix_, /*newest=*/false);
    txn.add_failure()->mutable_request_range()->set_key(key_);
    *txn.add_failure()->mutable_request_range() = CreateOrderedRange(prefix_, /*newest=*/false);
    auto self = shared_from_this();
    client_->Txn(who_, std::move(txn), [self](const Status& s, etcdserverpb::TxnResponse resp) {
      if (!s.ok()) {
        self->call_->Finish(AsClientError(s));
        return;
      }
      self->Acquired(std::move(resp));
    });
  }

  void Acquired(etcdserverpb::TxnResponse resp) {
    int64_t my_rev = resp.header().revision();
    if (!resp.succeeded()) {
      const auto& mine = resp.responses(0).response_range().kvs();
      // The key was there when the compare ran; it cannot be gone within
      // the same revision.
      if (!mine.empty()) my_rev = mine[0].create_revision();
    }
    const auto& owner = resp.responses(1).response_range().kvs();
    if (owner.empty() || owner[0].create_revision() == my_rev) {
      Answer(resp.header());
      return;
    }
    auto self = shared_from_this();
    wait_ = client_->WaitDeletes(who_, prefix_, my_rev - 1, [self](const Status& s) { self->Waited(s); });
    call_->OnCancel([self] {
      if (auto w = self->wait_) w->Cancel(Cancelled());
    });
  }

  void Waited(const Status& s) {
    if (!s.ok()) {
      // etcd releases the key when the wait fails (Mutex.Lock's Unlock).
      auto self = shared_from_this();
      client_->Delete(who_, key_, [self, s](const Status&, etcdserverpb::DeleteRangeResponse) { self->call_->Finish(AsClientError(s)); });
      return;
    }
    // The session may have expired meanwhile: the key must still be there.
    etcdserverpb::RangeRequest get;
    get.set_key(key_);
    auto r = client_->Range(who_, get);
    if (!r.ok()) {
      call_->Finish(AsClientError(r.status()));
    } else if (r->kvs().empty()) {
      call_->Finish(Status(Code::kUnknown, "mutex: session is expired"));
    } else {
      Answer(r->header());
    }
  }

  void Answer(const etcdserverpb::ResponseHeader& header) {
    call_->Finish(Status::Ok(), [&] {
      *response_->mutable_header() = header;
      response_->set_key(key_);
    });
  }

  const LocalClient* const client_;
  const apply::AuthInfo who_;  // the caller
  const std::shared_ptr<WaitingCall> call_;
  const std::string prefix_;
  v3lockpb::LockResponse* const response_;  // gRPC's, valid until the answer
  std::string key_;
  std::shared_ptr<DeleteWait> wait_;  // set once, before OnCancel can see it
};

}  // namespace

LockService::LockService(const LocalClient* client)
    : ParsesRequests("v3lockpb.Lock", /*recursion_limit=*/100), client_(client) {
  ParseRequest("Lock", &LockService::Lock);
  ParseRequest("Unlock", &LockService::Unlock);
  const ApiContext* ctx = client->ctx();
  SetLeaderCheck([ctx] { return ctx->node->leader_id() != 0; });
  ParseRemainingRequests();
}

grpc::ServerUnaryReactor* LockService::Lock(grpc::CallbackServerContext* context,
                                            const v3lockpb::LockRequest* request,
                                            v3lockpb::LockResponse* response) {
  auto who = client_->ctx()->AuthInfoOf(*context);
  if (!who.ok()) return FinishNow(context, who.status());
  auto call = WaitingCall::Create();
  auto op = std::make_shared<LockOp>(client_, *who, call, request->name(), response);
  op->Start(request->lease());
  return call->reactor();
}

grpc::ServerUnaryReactor* LockService::Unlock(grpc::CallbackServerContext* context,
                                              const v3lockpb::UnlockRequest* request,
                                              v3lockpb::UnlockResponse* response) {
  auto who = client_->ctx()->AuthInfoOf(*context);
  if (!who.ok()) return FinishNow(context, who.status());
  auto* reactor = context->DefaultReactor();
  client_->Delete(*who, request->key(), [reactor, response](const Status& s, etcdserverpb::DeleteRangeResponse resp) {
    if (s.ok()) *response->mutable_header() = resp.header();
    reactor->Finish(ToGrpc(AsClientError(s)));
  });
  return reactor;
}

}  // namespace cairn::api

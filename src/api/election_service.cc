#include "api/election_service.h"

#include <deque>
#include <optional>

#include "api/lock_service.h"
#include "api/waiting_call.h"

namespace cairn::api {

using v3electionpb::LeaderResponse;

namespace {

Status MissingLeaderKey() { return Status(Code::kUnknown, "\"leader\" field must be provided"); }
Status NotLeader() { return Status(Code::kUnknown, "election: not leader"); }
Status NoLeader() { return Status(Code::kUnknown, "election: no leader"); }

// If(create(key) = rev) Then(op): acts on the key only while it is still the
// one the candidate was elected with.
etcdserverpb::TxnRequest IfCreatedAt(const std::string& key, int64_t rev) {
  etcdserverpb::TxnRequest txn;
  auto* cmp = txn.add_compare();
  cmp->set_key(key);
  cmp->set_target(etcdserverpb::Compare::CREATE);
  cmp->set_result(etcdserverpb::Compare::EQUAL);
  cmp->set_create_revision(rev);
  return txn;
}

using HeaderDone = std::function<void(const Status&, const etcdserverpb::ResponseHeader&)>;

void ProclaimAt(const LocalClient* client, const apply::AuthInfo& who, const std::string& key, int64_t rev,
                int64_t lease, const std::string& value, HeaderDone done) {
  etcdserverpb::TxnRequest txn = IfCreatedAt(key, rev);
  auto* put = txn.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
  put->set_lease(lease);
  client->Txn(who, std::move(txn), [done = std::move(done)](const Status& s, etcdserverpb::TxnResponse resp) {
    done(s.ok() && !resp.succeeded() ? NotLeader() : s, resp.header());
  });
}

void ResignAt(const LocalClient* client, const apply::AuthInfo& who, const std::string& key, int64_t rev,
              HeaderDone done) {
  etcdserverpb::TxnRequest txn = IfCreatedAt(key, rev);
  txn.add_success()->mutable_request_delete_range()->set_key(key);
  client->Txn(who, std::move(txn), [done = std::move(done)](const Status& s, etcdserverpb::TxnResponse resp) {
    done(s, resp.header());
  });
}

// One Campaign call (etcd's Election.Campaign).
class CampaignOp : public std::enable_shared_from_this<CampaignOp> {
 public:
  CampaignOp(const LocalClient* client, apply::AuthInfo who, std::shared_ptr<WaitingCall> call,
             const v3electionpb::CampaignRequest& req, v3electionpb::CampaignResponse* response)
      : client_(client), who_(std::move(who)), call_(std::move(call)), name_(req.name()), prefix_(req.name() + "/"), value_(req.value()),
        response_(response) {}

  void Start(int64_t lease) {
    if (lease != 0) {
      Put(lease);
      return;
    }
    auto self = shared_from_this();
    client_->GrantLease(who_, kSessionTTLSeconds, [self](const Status& s, int64_t id) {
      if (!s.ok()) {
        self->call_->Finish(AsClientError(s));
        return;
      }
      self->Put(id);
    });
  }

 private:
  void Put(int64_t lease) {
    lease_ = lease;
    key_ = SessionKey(prefix_, lease);
    etcdserverpb::TxnRequest txn = IfCreatedAt(key_, 0);
    auto* put = txn.add_success()->mutable_request_put();
    put->set_key(key_);
    put->set_value(value_);
    put->set_lease(lease);
    txn.add_failure()->mutable_request_range()->set_key(key_);
    auto self = shared_from_this();
    client_->Txn(who_, std::move(txn), [self](const Status& s, etcdserverpb::TxnResponse resp) {
      if (!s.ok()) {
        self->call_->Finish(AsClientError(s));
        return;
      }
      self->Placed(std::move(resp));
    });
  }

  void Placed(etcdserverpb::TxnResponse resp) {
    header_ = resp.header();
    rev_ = resp.header().revision();
    if (!resp.succeeded() && !resp.responses(0).response_range().kvs().empty()) {
      // Campaigning again with the same lease: keep the place in line and
      // proclaim the new value.
      const mvccpb::KeyValue& kv = resp.responses(0).response_range().kvs(0);
      rev_ = kv.create_revision();
      if (kv.value() != value_) {
        auto self = shared_from_this();
        ProclaimAt(client_, who_, key_, rev_, lease_, value_, [self](const Status& s, const etcdserverpb::ResponseHeader&) {
          if (!s.ok()) {
            ResignAt(self->client_, self->who_, self->key_, self->rev_,
                     [self, s](const Status&, const etcdserverpb::ResponseHeader&) { self->call_->Finish(AsClientError(s)); });
            return;
          }
          self->Wait();
        });
        return;
      }
    }
    Wait();
  }

  void Wait() {
    auto self = shared_from_this();
    wait_ = client_->WaitDeletes(who_, prefix_, rev_ - 1, [self](const Status& s) { self->Waited(s); });
    call_->OnCancel([self] {
      if (auto w = self->wait_) w->Cancel(Cancelled());
    });
  }

  void Waited(const Status& s) {
    if (!s.ok()) {
      if (!call_->cancelled()) {
        call_->Finish(AsClientError(s));
        return;
      }
      // The client gave up: leave the line, as etcd's Campaign does.
      auto self = shared_from_this();
      ResignAt(client_, who_, key_, rev_, [self, s](const Status&, const etcdserverpb::ResponseHeader&) {
        self->call_->Finish(AsClientError(s));
      });
      return;
    }
    call_->Finish(Status::Ok(), [&] {
      *response_->mutable_header() = header_;
      auto* leader = response_->mutable_leader();
      leader->set_name(name_);
      leader->set_key(key_);
      leader->set_rev(rev_);
      leader->set_lease(lease_);
    });
  }

  const LocalClient* const client_;
  const apply::AuthInfo who_;  // the caller
  const std::shared_ptr<WaitingCall> call_;
  const std::string name_, prefix_, value_;
  v3electionpb::CampaignResponse* const response_;
  int64_t lease_ = 0, rev_ = 0;
  std::string key_;
  etcdserverpb::ResponseHeader header_;
  std::shared_ptr<DeleteWait> wait_;
};

// One Observe stream (etcd's Election.Observe): the leader's key when the
// stream starts (or the first candidate's, once there is one), then every
// change of its value, then the next leader when it goes. At most one write
// in flight; StartWrite and Finish run without the lock.
class Observer : public std::enable_shared_from_this<Observer> {
 public:
  class Reactor final : public grpc::ServerWriteReactor<LeaderResponse> {
   public:
    explicit Reactor(std::shared_ptr<Observer> o) : o_(std::move(o)) {}
    void OnWriteDone(bool ok) override { o_->WriteDone(ok); }
    void OnCancel() override { o_->End(grpc::Status::CANCELLED); }
    void OnDone() override {
      o_->End(grpc::Status::CANCELLED);
      delete this;
    }

   private:
    std::shared_ptr<Observer> o_;
  };

  Observer(const LocalClient* client, apply::AuthInfo who, std::string name)
      : client_(client), who_(std::move(who)), prefix_(std::move(name) + "/") {}

  Reactor* Start() {
    auto* reactor = new Reactor(shared_from_this());
    reactor_ = reactor;
    std::weak_ptr<Observer> weak = weak_from_this();
    const uint64_t id = client_->events()->Subscribe(
        prefix_, PrefixRangeEnd(prefix_), /*deletes_only=*/false,
        [weak](int64_t, const std::vector<const mvccpb::Event*>& events) {
          if (auto self = weak.lock()) self->OnEvents(events);
        });
    if (id == 0) {
      End(ToGrpc(errors::TooManyRequests()));
      return reactor;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      sub_ = id;
    }
    // The first leader after a ReadIndex round, as etcd's linearizable Get.
    client_->ctx()->node->LinearizableRead([weak](const Status& s) {
      auto self = weak.lock();
      if (!self) return;
      if (!s.ok()) {
        self->End(ToGrpc(AsClientError(s)));
        return;
      }
      self->Evaluate();
    });
    return reactor;
  }

  void End(const grpc::Status& status) {
    uint64_t sub;
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ended_) return;
      ended_ = true;
      end_status_ = status;
      sub = sub_;
      sub_ = 0;
      finish = !writing_;
    }
    if (sub != 0) client_->events()->Unsubscribe(sub);
    if (finish) reactor_->Finish(status);
  }

 private:
  void OnEvents(const std::vector<const mvccpb::Event*>& events) {
    bool evaluate = false, write = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!initialized_ || ended_) return;  // the first Evaluate reads past these
      for (const mvccpb::Event* ev : events) {
        if (leader_ && ev->kv().key() == leader_->key()) {
          if (ev->type() == mvccpb::Event::DELETE) {
            leader_.reset();
            evaluate = true;
          } else if (ev->kv().mod_revision() > leader_->mod_revision()) {
            leader_ = ev->kv();
            LeaderResponse r;
            r.mutable_header()->set_revision(ev->kv().mod_revision());
            client_->ctx()->FillHeader(r.mutable_header());
            *r.mutable_kv() = ev->kv();
            write = QueueLocked(std::move(r)) || write;
          }
        } else if (!leader_ && ev->type() == mvccpb::Event::PUT) {
          evaluate = true;
        }
      }
    }
    if (write) reactor_->StartWrite(&current_);
    if (evaluate) Evaluate();
  }

  // Reads who leads now and sends it if that is news.
  void Evaluate() {
    bool write = false;
    Status failed;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (ended_) return;
      initialized_ = true;
      auto r = client_->Range(who_, CreateOrderedRange(prefix_, /*newest=*/false));
      if (!r.ok()) {
        failed = r.status();
      } else if (r->kvs().empty()) {
        leader_.reset();
      } else {
        const mvccpb::KeyValue& kv = r->kvs(0);
        if (!leader_ || leader_->key() != kv.key() || leader_->mod_revision() < kv.mod_revision()) {
          leader_ = kv;
          LeaderResponse out;
          *out.mutable_header() = r->header();
          *out.mutable_kv() = kv;
          write = QueueLocked(std::move(out));
        }
      }
    }
    if (!failed.ok()) End(ToGrpc(AsClientError(failed)));
    if (write) reactor_->StartWrite(&current_);
  }

  // Queues `r`; true if the caller must start the write of current_ (after
  // releasing the lock: a reaction may run on the calling thread).
  bool QueueLocked(LeaderResponse r) {
    if (ended_) return false;
    if (pending_.size() >= ElectionService::kMaxObservePending) {
      // Unsubscribing under the lock is safe: KeyEvents calls back without
      // its own lock held. Finished when the write in flight completes.
      ended_ = true;
      end_status_ = ToGrpc(errors::TooManyRequests());
      if (sub_ != 0) client_->events()->Unsubscribe(sub_);
      sub_ = 0;
      return false;
    }
    pending_.push_back(std::move(r));
    if (writing_) return false;
    writing_ = true;
    current_ = std::move(pending_.front());
    pending_.pop_front();
    return true;
  }

  void WriteDone(bool ok) {
    bool finish = false, write = false;
    grpc::Status status;
    {
      std::lock_guard<std::mutex> lock(mu_);
      writing_ = false;
      if (!ok && !ended_) {
        ended_ = true;
        end_status_ = grpc::Status::CANCELLED;
      }
      if (ended_) {
        finish = true;
        status = end_status_;
      } else if (!pending_.empty()) {
        current_ = std::move(pending_.front());
        pending_.pop_front();
        write = writing_ = true;
      }
    }
    if (finish) {
      uint64_t sub;
      {
        std::lock_guard<std::mutex> lock(mu_);
        sub = sub_;
        sub_ = 0;
      }
      if (sub != 0) client_->events()->Unsubscribe(sub);
      reactor_->Finish(status);
    }
    if (write) reactor_->StartWrite(&current_);
  }

  const LocalClient* const client_;
  const apply::AuthInfo who_;  // the caller
  const std::string prefix_;
  Reactor* reactor_ = nullptr;  // valid until OnDone, which comes after Finish
  std::mutex mu_;
  // GUARDED_BY(mu_):
  uint64_t sub_ = 0;
  bool initialized_ = false;
  bool writing_ = false;
  bool ended_ = false;
  grpc::Status end_status_;
  std::optional<mvccpb::KeyValue> leader_;  // what was sent last
  std::deque<LeaderResponse> pending_;
  LeaderResponse current_;  // the write in flight
};

}  // namespace

ElectionService::ElectionService(const LocalClient* client)
    : ParsesRequests("v3electionpb.Election", /*recursion_limit=*/100), client_(client) {
  ParseRequest("Campaign", &ElectionService::Campaign);
  ParseRequest("Proclaim", &ElectionService::Proclaim);
  ParseRequest("Leader", &ElectionService::Leader);
  ParseRequest("Observe", &ElectionService::Observe);
  ParseRequest("Resign", &ElectionService::Resign);
  const ApiContext* ctx = client->ctx();
  SetLeaderCheck([ctx] { return ctx->node->leader_id() != 0; });
  ParseRemainingRequests();
}

grpc::ServerUnaryReactor* ElectionService::Campaign(grpc::CallbackServerContext* context,
                                                    const v3electionpb::CampaignRequest* request,
                                                    v3electionpb::CampaignResponse* response) {
  auto who = client_->ctx()->AuthInfoOf(*context);
  if (!who.ok()) return FinishNow(context, who.status());
  auto call = WaitingCall::Create();
  auto op = std::make_shared<CampaignOp>(client_, *who, call, *request, response);
  op->Start(request->lease());
  return call->reactor();
}

grpc::ServerUnaryReactor* ElectionService::Proclaim(grpc::CallbackServerContext* context,
                                                    const v3electionpb::ProclaimRequest* request,
                                                    v3electionpb::ProclaimResponse* response) {
  if (!request->has_leader()) return FinishNow(context, MissingLeaderKey());
  auto who = client_->ctx()->AuthInfoOf(*context);
  if (!who.ok()) return FinishNow(context, who.status());
  auto* reactor = context->DefaultReactor();
  const auto& l = request->leader();
  ProclaimAt(client_, *who, l.key(), l.rev(), l.lease(), request->value(),
             [reactor, response](const Status& s, const etcdserverpb::ResponseHeader& header) {
               if (s.ok()) *response->mutable_header() = header;
               reactor->Finish(ToGrpc(AsClientError(s)));
             });
  return reactor;
}

grpc::ServerUnaryReactor* ElectionService::Resign(grpc::CallbackServerContext* context,
                                                  const v3electionpb::ResignRequest* request,
                                                  v3electionpb::ResignResponse* response) {
  if (!request->has_leader()) return FinishNow(context, MissingLeaderKey());
  auto who = client_->ctx()->AuthInfoOf(*context);
  if (!who.ok()) return FinishNow(context, who.status());
  auto* reactor = context->DefaultReactor();
  ResignAt(client_, *who, request->leader().key(), request->leader().rev(),
           [reactor, response](const Status& s, const etcdserverpb::ResponseHeader& header) {
             if (s.ok()) *response->mutable_header() = header;
             reactor->Finish(ToGrpc(AsClientError(s)));
           });
  return reactor;
}

grpc::ServerUnaryReactor* ElectionService::Leader(grpc::CallbackServerContext* context,
                                                  const v3electionpb::LeaderRequest* request,
                                                  v3electionpb::LeaderResponse* response) {
  auto who = client_->ctx()->AuthInfoOf(*context);
  if (!who.ok()) return FinishNow(context, who.status());
  auto* reactor = context->DefaultReactor();
  client_->LinearizableRange(*who, CreateOrderedRange(request->name() + "/", /*newest=*/false),
                             [reactor, response](const Status& s, etcdserverpb::RangeResponse r) {
                               if (s.ok() && r.kvs().empty()) {
                                 reactor->Finish(ToGrpc(NoLeader()));
                                 return;
                               }
                               if (s.ok()) {
                                 *response->mutable_header() = r.header();
                                 *response->mutable_kv() = r.kvs(0);
                               }
                               reactor->Finish(ToGrpc(AsClientError(s)));
                             });
  return reactor;
}

grpc::ServerWriteReactor<LeaderResponse>* ElectionService::Observe(grpc::CallbackServerContext* context,
                                                                   const v3electionpb::LeaderRequest* request) {
  auto who = client_->ctx()->AuthInfoOf(*context);
  if (!who.ok()) return new RefusedWriteReactor<LeaderResponse>(ToGrpc(who.status()));
  auto observer = std::make_shared<Observer>(client_, *who, request->name());
  return observer->Start();
}

}  // namespace cairn::api

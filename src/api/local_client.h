// LocalClient: what etcd's lock and election services get from v3client —
// KV and lease calls made by the server itself, on this member — in the
// asynchronous shape a callback service needs; and DeleteWait, etcd's
// concurrency.waitDeletes: wait until the keys created before one's own key
// in a prefix are gone.
//
// Writes go through the same checks and Raft path as a client's (size,
// quota, NOSPACE); their `done` runs on the apply thread (or at once when
// refused). Reads of this member's applied state run on the caller's thread.
//
// Thread-safety: thread-safe; the ApiContext and KeyEvents must outlive it.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "api/api_context.h"
#include "api/key_events.h"
#include "etcdserverpb/rpc.pb.h"

namespace cairn::api {

class DeleteWait;

class LocalClient {
 public:
  LocalClient(const ApiContext* ctx, KeyEvents* events) : ctx_(ctx), events_(events) {}

  template <class R>
  using Done = std::function<void(const Status&, R)>;

  // Every call acts as `who` (the lock or election caller): its writes carry
  // who for the checks at apply, its reads need READ, as when etcd's lock
  // and election servers call the KV API with the caller's token.
  void Txn(const apply::AuthInfo& who, etcdserverpb::TxnRequest req, Done<etcdserverpb::TxnResponse> done) const;
  void Delete(const apply::AuthInfo& who, std::string key, Done<etcdserverpb::DeleteRangeResponse> done) const;
  // A lease of `ttl` seconds with an id chosen here.
  void GrantLease(const apply::AuthInfo& who, int64_t ttl, Done<int64_t> done) const;
  // This member's applied state, header filled.
  Result<etcdserverpb::RangeResponse> Range(const apply::AuthInfo& who, const etcdserverpb::RangeRequest& req) const;
  // Range after a ReadIndex round: reflects every write acknowledged before.
  void LinearizableRange(const apply::AuthInfo& who, etcdserverpb::RangeRequest req,
                         Done<etcdserverpb::RangeResponse> done) const;

  // Calls `done` once no key of `prefix` has a create revision at or below
  // `max_create_rev` (OK), or with the error that stopped the wait. Cancel
  // the returned wait to give up (done then runs with the given status).
  std::shared_ptr<DeleteWait> WaitDeletes(const apply::AuthInfo& who, std::string prefix, int64_t max_create_rev,
                                          std::function<void(const Status&)> done) const;

  const ApiContext* ctx() const { return ctx_; }
  KeyEvents* events() const { return events_; }

 private:
  const ApiContext* const ctx_;
  KeyEvents* const events_;
};

class DeleteWait : public std::enable_shared_from_this<DeleteWait> {
 public:
  DeleteWait(const LocalClient* client, apply::AuthInfo who, std::string prefix, int64_t max_create_rev,
             std::function<void(const Status&)> done);
  void Start();
  void Cancel(const Status& s) { Finish(s); }

 private:
  void Check();
  void Finish(const Status& s);

  const LocalClient* const client_;
  const apply::AuthInfo who_;
  const std::string prefix_;
  const int64_t max_create_rev_;
  std::function<void(const Status&)> done_;  // run once, outside mu_
  std::mutex mu_;
  bool finished_ = false;  // GUARDED_BY(mu_)
  uint64_t sub_ = 0;       // GUARDED_BY(mu_)
};

// How an error of a LocalClient call reaches the lock and election
// services' callers: etcd's services call through an in-process client,
// whose errors lose their gRPC code on the way back, so etcd answers them
// as UNKNOWN with the same message ("etcdserver: requested lease not
// found"). A cancelled call stays CANCELLED.
inline Status AsClientError(const Status& s) {
  if (s.ok() || s.code() == Code::kCanceled || s.code() == Code::kUnknown) return s;
  return Status(Code::kUnknown, s.message());
}

// etcd's lock and session key for `lease` under `prefix` ("name/"): the
// lease id in lowercase hex, as fmt's %x.
std::string SessionKey(const std::string& prefix, int64_t lease);

// A Range of `prefix` sorted by create revision, one key: the oldest
// (ascending) or the newest (descending), etcd's WithFirstCreate and
// WithLastCreate.
etcdserverpb::RangeRequest CreateOrderedRange(const std::string& prefix, bool newest);

}  // namespace cairn::api

// etcd's v3lock service (server/etcdserver/api/v3lock), on this member:
// Lock puts the caller's key `name/<lease hex>` with its lease and returns
// once every key of `name/` created before it is gone (etcd's
// concurrency.Mutex); the key's create revision is the fencing token.
// Unlock deletes the key. A lock waiting when its client goes away deletes
// its key, as etcd's Mutex.Lock does when the wait fails.
//
// Thread-safety: thread-safe.
#pragma once

#include "api/local_client.h"
#include "api/parsed_request.h"
#include "v3lockpb/v3lock.grpc.pb.h"

namespace cairn::api {

// The TTL of the lease etcd's session grants when a Lock or Campaign comes
// without one (concurrency.NewSession's default); nobody keeps it alive.
constexpr int64_t kSessionTTLSeconds = 60;

class LockService final : public ParsesRequests<v3lockpb::Lock::CallbackService> {
 public:
  explicit LockService(const LocalClient* client);

  grpc::ServerUnaryReactor* Lock(grpc::CallbackServerContext* context, const v3lockpb::LockRequest* request,
                                 v3lockpb::LockResponse* response) override;
  grpc::ServerUnaryReactor* Unlock(grpc::CallbackServerContext* context, const v3lockpb::UnlockRequest* request,
                                   v3lockpb::UnlockResponse* response) override;

 private:
  const LocalClient* const client_;
};

}  // namespace cairn::api

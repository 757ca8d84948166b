// grpc.health.v1.Health, as etcd answers it (grpc-go's health server, with
// the overall service "" SERVING): Check("") is SERVING, any other name is
// NOT_FOUND "unknown service"; Watch sends the status (SERVICE_UNKNOWN for
// other names) and then every change until the client goes. Shutdown sends
// NOT_SERVING to every watcher and ends their streams, so the gRPC server's
// shutdown need not wait for them.
//
// Thread safety: thread-safe.
#pragma once

#include <mutex>
#include <set>

#include "grpc/health/v1/health.grpc.pb.h"

namespace cairn::api {

class HealthService final : public grpc::health::v1::Health::CallbackService {
 public:
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* context,
                                  const grpc::health::v1::HealthCheckRequest* request,
                                  grpc::health::v1::HealthCheckResponse* response) override;
  grpc::ServerWriteReactor<grpc::health::v1::HealthCheckResponse>* Watch(
      grpc::CallbackServerContext* context, const grpc::health::v1::HealthCheckRequest* request) override;

  void Shutdown();

 private:
  class Watcher;
  std::mutex mu_;
  bool shut_down_ = false;      // GUARDED_BY(mu_)
  std::set<Watcher*> watchers_;  // GUARDED_BY(mu_)
};

}  // namespace cairn::api

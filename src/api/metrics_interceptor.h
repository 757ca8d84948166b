// Counts every gRPC call as go-grpc-prometheus does for etcd:
// grpc_server_started_total, _handled_total{grpc_code}, _msg_received_total,
// _msg_sent_total, plus etcd_network_client_grpc_{received,sent}_bytes_total;
// and how many calls are in flight (for a stop that waits for them).
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <atomic>

#include "common/metrics.h"

namespace cairn::api {

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  // `in_flight`: calls begun and not yet done (the factory's owner keeps it).
  MetricsInterceptorFactory(Metrics* metrics, std::atomic<int64_t>* in_flight)
      : metrics_(metrics), in_flight_(in_flight) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics* metrics_;
  std::atomic<int64_t>* in_flight_;
};

}  // namespace cairn::api

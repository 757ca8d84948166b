// Counts every gRPC call as go-grpc-prometheus does for etcd:
// grpc_server_started_total, _handled_total{grpc_code}, _msg_received_total,
// _msg_sent_total, plus etcd_network_client_grpc_{received,sent}_bytes_total.
#pragma once

#include <grpcpp/support/server_interceptor.h>

#include "common/metrics.h"

namespace cairn::api {

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override;

 private:
  Metrics* metrics_;
};

}  // namespace cairn::api

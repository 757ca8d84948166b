#include "api/metrics_interceptor.h"

#include <string>

#include "api/parsed_request.h"

namespace cairn::api {

namespace {
using grpc::experimental::InterceptionHookPoints;

class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(Metrics* metrics, std::atomic<int64_t>* in_flight, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics), in_flight_(in_flight) {
    in_flight_->fetch_add(1, std::memory_order_relaxed);
    std::string full = info->method() ? info->method() : "";
    // "/etcdserverpb.KV/Range" -> service "etcdserverpb.KV", method "Range"
    size_t slash = full.find('/', 1);
    std::string service = slash == std::string::npos ? full : full.substr(1, slash - 1);
    std::string method = slash == std::string::npos ? "" : full.substr(slash + 1);
    switch (info->type()) {
      case grpc::experimental::ServerRpcInfo::Type::UNARY: type_ = kGrpcUnary; break;
      case grpc::experimental::ServerRpcInfo::Type::CLIENT_STREAMING: type_ = kGrpcClientStream; break;
      case grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING: type_ = kGrpcServerStream; break;
      default: type_ = kGrpcBidiStream; break;
    }
    unary_ = info->type() == grpc::experimental::ServerRpcInfo::Type::UNARY;
    // No call receives a protobuf message: calls without a client stream
    // receive a ParsedRequest (api/parsed_request.h), client streams (Watch,
    // LeaseKeepAlive) and unknown methods raw grpc::ByteBuffers.
    parsed_ = unary_ || info->type() == grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING;
    method_ = &metrics_->GrpcMethod(service, method, type_);
    method_->started->Increment();
  }

  ~MetricsInterceptor() override { in_flight_->fetch_sub(1, std::memory_order_relaxed); }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      method_->msg_received->Increment();
      if (const void* msg = methods->GetRecvMessage(); msg != nullptr) {
        const size_t bytes = parsed_ ? static_cast<const ParsedRequest*>(msg)->wire_bytes()
                                     : static_cast<const grpc::ByteBuffer*>(msg)->Length();
        metrics_->network().client_grpc_received_bytes_total->Increment(static_cast<double>(bytes));
      }
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_MESSAGE)) {
      sent_++;
      // Serialized here rather than later by gRPC: the same work, done once,
      // and its size is known without walking the message.
      if (const grpc::ByteBuffer* bytes = methods->GetSerializedSendMessage(); bytes != nullptr) {
        metrics_->network().client_grpc_sent_bytes_total->Increment(
            static_cast<double>(bytes->Length()));
      }
      if (!unary_) method_->msg_sent->Increment();
    }
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      grpc::Status status = methods->GetSendStatus();
      Metrics::Handled(*method_, static_cast<int>(status.error_code())).Increment();
      if (unary_ && status.ok()) method_->msg_sent->Increment();
    }
    methods->Proceed();
  }

 private:
  Metrics* metrics_;
  std::atomic<int64_t>* in_flight_;
  GrpcMethodMetrics* method_ = nullptr;
  std::string_view type_;
  bool unary_ = false;
  bool parsed_ = false;
  int sent_ = 0;
};
}  // namespace

grpc::experimental::Interceptor* MetricsInterceptorFactory::CreateServerInterceptor(
    grpc::experimental::ServerRpcInfo* info) {
  return new MetricsInterceptor(metrics_, in_flight_, info);
}

}  // namespace cairn::api

#include "api/async_unary.h"

#include "common/thread_name.h"

namespace cairn::api {

AsyncUnary::AsyncUnary(std::vector<std::unique_ptr<AsyncCall>> methods,
                       std::unique_ptr<grpc::ServerCompletionQueue> arrivals)
    : methods_(std::move(methods)), arrivals_(std::move(arrivals)) {}

AsyncUnary::~AsyncUnary() { Stop(); }

void AsyncUnary::Start() {
  started_ = true;
  for (const auto& m : methods_) {
    for (int i = 0; i < kRequestsAhead; i++) m->RequestAnother(&answers_, arrivals_.get());
  }
  acceptor_ = std::thread([this] { Accept(); });
}

void AsyncUnary::Accept() {
  SetThreadName("grpc-kv-accept");
  void* tag;
  bool ok;
  while (arrivals_->Next(&tag, &ok)) {
    auto* call = static_cast<AsyncCall*>(tag);
    if (!ok) {  // the server is shutting down: the request ended unmatched
      delete call;
      continue;
    }
    call->RequestAnother(&answers_, arrivals_.get());
    call->Serve();
  }
}

void AsyncUnary::Collect() {
  void* tag;
  bool ok;
  while (answers_.AsyncNext(&tag, &ok, gpr_time_0(GPR_CLOCK_MONOTONIC)) == grpc::CompletionQueue::GOT_EVENT) {
    delete static_cast<AsyncCall*>(tag);
  }
}

void AsyncUnary::Stop() {
  if (!started_) return;
  started_ = false;
  // Every call asked for ends (unmatched) once the server is shut down;
  // the accept thread frees them and then sees the queue end.
  arrivals_->Shutdown();
  acceptor_.join();
  answers_.Shutdown();
  void* tag;
  bool ok;
  while (answers_.Next(&tag, &ok)) delete static_cast<AsyncCall*>(tag);
}

}  // namespace cairn::api

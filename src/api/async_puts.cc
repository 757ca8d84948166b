#include "api/async_puts.h"

#include "common/thread_name.h"

namespace cairn::api {

AsyncPuts::AsyncPuts(KvService* kv, std::unique_ptr<grpc::ServerCompletionQueue> arrivals)
    : kv_(kv), arrivals_(std::move(arrivals)) {}

AsyncPuts::~AsyncPuts() { Stop(); }

void AsyncPuts::Start() {
  started_ = true;
  for (int i = 0; i < kRequestsAhead; i++) kv_->RequestPutCall(new PutCall(), &answers_, arrivals_.get());
  acceptor_ = std::thread([this] { Accept(); });
}

void AsyncPuts::Accept() {
  SetThreadName("grpc-put-accept");
  void* tag;
  bool ok;
  while (arrivals_->Next(&tag, &ok)) {
    auto* call = static_cast<PutCall*>(tag);
    if (!ok) {  // the server is shutting down: the request ended unmatched
      delete call;
      continue;
    }
    kv_->RequestPutCall(new PutCall(), &answers_, arrivals_.get());
    kv_->ServePut(call);
  }
}

void AsyncPuts::Collect() {
  void* tag;
  bool ok;
  while (answers_.AsyncNext(&tag, &ok, gpr_time_0(GPR_CLOCK_MONOTONIC)) == grpc::CompletionQueue::GOT_EVENT) {
    delete static_cast<PutCall*>(tag);
  }
}

void AsyncPuts::Stop() {
  if (!started_) return;
  started_ = false;
  // Every call asked for ends (unmatched) once the server is shut down;
  // the accept thread frees them and then sees the queue end.
  arrivals_->Shutdown();
  acceptor_.join();
  answers_.Shutdown();
  void* tag;
  bool ok;
  while (answers_.Next(&tag, &ok)) delete static_cast<PutCall*>(tag);
}

}  // namespace cairn::api

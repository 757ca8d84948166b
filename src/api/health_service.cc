#include "api/health_service.h"

#include <vector>

namespace cairn::api {

using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// One Watch stream: the current status, then NOT_SERVING at shutdown. At
// most one write is in flight; Finish and StartWrite are called without the
// lock (a reaction may run on the calling thread). The reactor deletes
// itself when done.
class HealthService::Watcher final : public grpc::ServerWriteReactor<HealthCheckResponse> {
 public:
  Watcher(HealthService* owner, bool known) : owner_(owner) {
    bool shut;
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      shut = owner_->shut_down_;
      if (!shut) owner_->watchers_.insert(this);
      finish_after_write_ = shut;
    }
    status_.set_status(shut    ? HealthCheckResponse::NOT_SERVING
                       : known ? HealthCheckResponse::SERVING
                               : HealthCheckResponse::SERVICE_UNKNOWN);
    StartWrite(&status_);
  }

  // Under owner_->mu_: whether the caller must WriteNotServing() (a write in
  // flight sends it when it completes).
  bool MarkShutdownLocked() {
    shutting_down_ = true;
    if (writing_ || done_) return false;
    writing_ = true;
    finish_after_write_ = true;
    return true;
  }

  void WriteNotServing() {
    status_.set_status(HealthCheckResponse::NOT_SERVING);
    StartWrite(&status_);
  }

  void OnWriteDone(bool ok) override {
    bool finish = false, write = false;
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      writing_ = false;
      if (!ok || finish_after_write_ || cancelled_) {
        finish = done_ = true;
      } else if (shutting_down_) {
        write = writing_ = finish_after_write_ = true;
      }
    }
    if (finish) Finish(grpc::Status::OK);
    if (write) WriteNotServing();
  }

  void OnCancel() override {
    bool finish = false;
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      cancelled_ = true;
      if (!writing_ && !done_) finish = done_ = true;
    }
    if (finish) Finish(grpc::Status::CANCELLED);
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> lock(owner_->mu_);
      owner_->watchers_.erase(this);
    }
    delete this;
  }

 private:
  HealthService* const owner_;
  HealthCheckResponse status_;
  // GUARDED_BY(owner_->mu_):
  bool writing_ = true;  // the first write starts at once
  bool finish_after_write_ = false;
  bool shutting_down_ = false;
  bool cancelled_ = false;
  bool done_ = false;  // Finish called
};

grpc::ServerUnaryReactor* HealthService::Check(grpc::CallbackServerContext* context,
                                               const HealthCheckRequest* request,
                                               HealthCheckResponse* response) {
  auto* reactor = context->DefaultReactor();
  if (!request->service().empty()) {
    reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown service"));
    return reactor;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    response->set_status(shut_down_ ? HealthCheckResponse::NOT_SERVING : HealthCheckResponse::SERVING);
  }
  reactor->Finish(grpc::Status::OK);
  return reactor;
}

grpc::ServerWriteReactor<HealthCheckResponse>* HealthService::Watch(grpc::CallbackServerContext*,
                                                                    const HealthCheckRequest* request) {
  return new Watcher(this, request->service().empty());
}

void HealthService::Shutdown() {
  std::vector<Watcher*> to_write;
  {
    std::lock_guard<std::mutex> lock(mu_);
    shut_down_ = true;
    for (Watcher* w : watchers_) {
      if (w->MarkShutdownLocked()) to_write.push_back(w);
    }
  }
  // (Each stays alive: its write is marked in flight, so nothing finishes it.)
  for (Watcher* w : to_write) w->WriteNotServing();
}

}  // namespace cairn::api

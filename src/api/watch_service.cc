#include "api/watch_service.h"

#include <memory>
#include <mutex>

#include "api/parsed_request.h"
#include "common/check.h"

namespace cairn::api {

using etcdserverpb::WatchRequest;

namespace {
// etcd's rpctypes.ErrGRPCWatchCanceled and ErrGRPCStopped.
grpc::Status WatchCanceled() {
  return grpc::Status(grpc::StatusCode::CANCELLED, "etcdserver: watch canceled");
}
grpc::Status ServerStopped() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: server stopped");
}
}  // namespace

// Lives from Watch() until OnDone. gRPC runs its reactions on its own threads
// (possibly concurrently); the hub calls OnStreamReady from the apply thread,
// the server's watch threads, or from inside our own Create/Cancel calls.
// mu_ orders the write side; requests are handed to the stream without it,
// because the stream may call OnStreamReady synchronously.
class WatchReactor final : public grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  WatchReactor(WatchService* service, watch::WatchHub* hub, grpc::CallbackServerContext* context)
      : service_(service), context_(context) {
    stream_ = hub->NewStream([this] { OnStreamReady(); });
    StartRead(&request_);
  }

  // Ends the stream from the server side (WatchService::Stop).
  void Stop() {
    std::lock_guard<std::mutex> lock(mu_);
    finish_wanted_ = true;
    finish_status_ = ServerStopped();
    FinishLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // half-closed (keep sending, as etcd) or cancelled (OnCancel follows)
    WatchRequest request;
    const bool parsed =
        grpc::SerializationTraits<WatchRequest>::Deserialize(&request_, &request).ok();
    if (parsed) Handle(request);
    std::lock_guard<std::mutex> lock(mu_);
    if (!parsed) {
      // What etcd (grpc-go) answers to bytes that are not the message, less
      // the Go decoder's own reason ("... unexpected EOF").
      finish_wanted_ = true;
      finish_status_ = grpc::Status(grpc::StatusCode::INTERNAL, "grpc: failed to unmarshal the received message");
      FinishLocked();
      return;
    }
    if (finish_wanted_) return;
    if (stream_->CanAcceptRequest()) {
      StartRead(&request_);
    } else {
      read_paused_ = true;  // resumed by OnWriteDone once responses drained
    }
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    if (!ok) finish_wanted_ = true;  // the client is gone
    if (finish_wanted_) {
      FinishLocked();
      return;
    }
    MaybeWriteLocked();
    if (read_paused_ && stream_->CanAcceptRequest()) {
      read_paused_ = false;
      StartRead(&request_);
    }
  }

  void OnCancel() override {
    std::lock_guard<std::mutex> lock(mu_);
    finish_wanted_ = true;
    FinishLocked();
  }

  void OnDone() override {
    // After Close() returns no OnStreamReady runs or will run.
    stream_->Close();
    service_->Unregister(this);
    delete this;
  }

 private:
  void Handle(const WatchRequest& request) {
    switch (request.request_union_case()) {
      case WatchRequest::kCreateRequest: {
        std::string refused;
        if (service_->auth_check_) refused = service_->auth_check_(*context_, request.create_request());
        if (refused.empty()) {
          stream_->Create(request.create_request());
        } else {
          stream_->Refuse(request.create_request(), refused);
        }
        break;
      }
      case WatchRequest::kCancelRequest:
        stream_->Cancel(request.cancel_request().watch_id());
        break;
      case WatchRequest::kProgressRequest:
        stream_->RequestProgress();
        break;
      default:
        break;  // etcd ignores requests it does not know rather than failing the stream
    }
  }

  void OnStreamReady() {
    std::lock_guard<std::mutex> lock(mu_);
    MaybeWriteLocked();
  }

  // One write in flight at a time: the next is pulled when it completes.
  void MaybeWriteLocked() {
    if (writing_ || finish_wanted_) return;
    if (!stream_->NextEncoded(&encoded_)) return;  // the stream calls OnStreamReady on the next push
    grpc::Slice slice(encoded_.data(), encoded_.size());
    response_ = grpc::ByteBuffer(&slice, 1);
    writing_ = true;
    // With more responses queued, let gRPC coalesce them into fewer frames
    // and syscalls; the last write of a run goes without the hint and
    // flushes. Only this reactor takes from the queue, so "more" stays true
    // until the next Next().
    grpc::WriteOptions options;
    if (stream_->HasMore()) options.set_buffer_hint();
    StartWrite(&response_, options);
  }

  // Finish may not overlap a write; OnWriteDone calls this again.
  void FinishLocked() {
    if (finished_ || writing_) return;
    finished_ = true;
    Finish(finish_status_);
  }

  WatchService* const service_;
  grpc::CallbackServerContext* const context_;  // gRPC's, valid until OnDone
  std::shared_ptr<watch::WatchStream> stream_;
  grpc::ByteBuffer request_;  // owned by the read in flight

  std::mutex mu_;
  std::string encoded_;            // GUARDED_BY(mu_); reused: keeps its capacity
  grpc::ByteBuffer response_;      // GUARDED_BY(mu_); owned by the write in flight
  bool writing_ = false;       // GUARDED_BY(mu_)
  bool read_paused_ = false;   // GUARDED_BY(mu_)
  bool finish_wanted_ = false; // GUARDED_BY(mu_)
  bool finished_ = false;      // GUARDED_BY(mu_)
  grpc::Status finish_status_ = WatchCanceled();  // GUARDED_BY(mu_)
};

WatchService::WatchService(watch::WatchHub* hub) : hub_(hub) {}

WatchService::~WatchService() {
  std::lock_guard<std::mutex> lock(mu_);
  CHECK(reactors_.empty()) << reactors_.size() << " watch streams outlive their service";
}

grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* WatchService::Watch(
    grpc::CallbackServerContext* context) {
  if (is_learner_ && is_learner_()) {
    return new RefusedBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>(NotSupportedForLearner());
  }
  auto* reactor = new WatchReactor(this, hub_, context);
  std::lock_guard<std::mutex> lock(mu_);
  reactors_.insert(reactor);
  if (stopped_) reactor->Stop();
  return reactor;
}

void WatchService::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  for (WatchReactor* r : reactors_) r->Stop();
}

size_t WatchService::OpenStreams() const {
  std::lock_guard<std::mutex> lock(mu_);
  return reactors_.size();
}

void WatchService::Unregister(WatchReactor* reactor) {
  std::lock_guard<std::mutex> lock(mu_);
  reactors_.erase(reactor);
}

}  // namespace cairn::api

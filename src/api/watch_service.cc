#include "api/watch_service.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>

#include "api/parsed_request.h"
#include "common/check.h"
#include "common/thread_name.h"

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

  // From the service's pacer thread, every burst interval.
  void OnTick() {
    if (!paced_.load(std::memory_order_acquire)) return;
    std::lock_guard<std::mutex> lock(mu_);
    paced_.store(false, std::memory_order_relaxed);
    tick_ = true;
    MaybeWriteLocked();
    tick_ = false;
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
  //
  // Writes go in bursts: a burst sends the responses queued when it starts
  // (events arriving meanwhile are merged into them by the stream). A stream
  // that falls behind (its last burst carried a response merging several
  // revisions) starts its next burst of event responses no sooner than the
  // service's burst interval after the previous one started, so each watcher
  // gets one response per interval carrying every revision of it. gRPC's
  // cost is per response (several microseconds, whatever it carries), so
  // under load this divides the server's CPU per event; a stream that keeps
  // up sends every response at once, as before.
  void MaybeWriteLocked() {
    if (writing_ || finish_wanted_) return;
    const auto now = std::chrono::steady_clock::now();
    const auto interval = service_->burst_interval_;
    if (burst_left_ == 0 && burst_merged_ && !tick_ && interval.count() > 0 && now < next_burst_ &&
        stream_->FrontIsEvent()) {
      paced_.store(true, std::memory_order_release);  // the next tick starts it
      return;
    }
    watch::WatchStream::NextInfo info;
    if (!stream_->NextEncoded(&encoded_, &info)) {  // the stream calls OnStreamReady on the next push
      burst_left_ = 0;
      return;
    }
    if (burst_left_ == 0) {
      burst_left_ = info.queued;
      burst_merged_ = info.merged;
      next_burst_ = now + interval;
    } else {
      burst_left_ = std::min(burst_left_ - 1, info.queued);
      burst_merged_ = burst_merged_ || info.merged;
    }
    // The slice takes the encoded bytes over rather than copying them (a
    // merged response carries tens of kilobytes); gRPC frees them once sent.
    auto* bytes = new std::string(std::move(encoded_));
    encoded_.clear();
    grpc::Slice slice(bytes->data(), bytes->size(),
                      [](void* p) { delete static_cast<std::string*>(p); }, bytes);
    response_ = grpc::ByteBuffer(&slice, 1);
    writing_ = true;
    // With more responses of this burst queued, let gRPC coalesce them into
    // fewer frames and syscalls; the last write of a burst goes without the
    // hint and flushes.
    //
    // At most kMaxBufferedWrites go buffered in a row: gRPC keeps the slices
    // of buffered messages in an array per HTTP/2 stream that grows to the
    // longest run and never shrinks, and a stream of 100 watchers would
    // otherwise keep room for 100 responses' slices (~10 KiB) forever.
    grpc::WriteOptions options;
    if (burst_left_ > 0 && ++buffered_ < kMaxBufferedWrites) {
      options.set_buffer_hint();
    } else {
      buffered_ = 0;
    }
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
  std::string encoded_;            // GUARDED_BY(mu_); handed to the write's slice
  grpc::ByteBuffer response_;      // GUARDED_BY(mu_); owned by the write in flight
  bool writing_ = false;       // GUARDED_BY(mu_)
  bool read_paused_ = false;   // GUARDED_BY(mu_)
  bool finish_wanted_ = false; // GUARDED_BY(mu_)
  bool finished_ = false;      // GUARDED_BY(mu_)
  // Responses of the current write burst still to send (0: none started).
  size_t burst_left_ = 0;      // GUARDED_BY(mu_)
  bool burst_merged_ = false;  // GUARDED_BY(mu_): a response of the last burst merged revisions
  std::chrono::steady_clock::time_point next_burst_;  // GUARDED_BY(mu_)
  bool tick_ = false;          // GUARDED_BY(mu_): in OnTick
  static constexpr size_t kMaxBufferedWrites = 8;
  size_t buffered_ = 0;        // GUARDED_BY(mu_): buffered writes since the last flush
  std::atomic<bool> paced_{false};  // a burst waits for the next tick
  grpc::Status finish_status_ = WatchCanceled();  // GUARDED_BY(mu_)
};

WatchService::WatchService(watch::WatchHub* hub, std::chrono::milliseconds burst_interval)
    : hub_(hub), burst_interval_(burst_interval) {
  if (burst_interval_.count() > 0) pacer_ = std::thread([this] { RunPacer(); });
}

WatchService::~WatchService() {
  StopPacer();
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    for (WatchReactor* r : reactors_) r->Stop();
  }
  StopPacer();
}

void WatchService::StopPacer() {
  {
    std::lock_guard<std::mutex> lock(pacer_mu_);
    pacer_stop_ = true;
  }
  pacer_cv_.notify_all();
  if (pacer_.joinable()) pacer_.join();
}

void WatchService::RunPacer() {
  SetThreadName("watch-pace");
  std::unique_lock<std::mutex> pacer_lock(pacer_mu_);
  while (!pacer_stop_) {
    pacer_cv_.wait_for(pacer_lock, burst_interval_, [this] { return pacer_stop_; });
    if (pacer_stop_) break;
    pacer_lock.unlock();
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (WatchReactor* r : reactors_) r->OnTick();
    }
    pacer_lock.lock();
  }
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

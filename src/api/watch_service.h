// WatchService: etcd's Watch gRPC service (etcdserver/api/v3rpc/watch.go)
// over the watch hub, with gRPC's callback API.
//
// The method is registered raw (ByteBuffer in and out): the hub hands out
// responses already serialized, their events encoded once for all watchers
// (watch/event_block.h), so no WatchResponse message is built per watcher.
//
// One reactor per client stream owns one watch::WatchStream. It reads
// requests one at a time and hands them to the stream (create, cancel,
// progress); it writes the stream's responses one at a time, pulling the next
// when the previous write completed or when the hub signals (on_ready) that
// an idle stream has something. Reading pauses while the stream's control
// backlog is full, so a client that sends requests but does not read
// responses is slowed down instead of growing a queue.
//
// As etcd, a client that half-closes keeps receiving events; the RPC ends
// when the client cancels it, a write fails, or the server shuts down.
//
// Thread safety: thread-safe; gRPC may call Watch() from any thread. The hub
// must outlive the gRPC server.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

#include "etcdserverpb/rpc.grpc.pb.h"
#include "watch/watch_hub.h"

namespace cairn::api {

class WatchReactor;

class WatchService final
    : public etcdserverpb::Watch::WithRawCallbackMethod_Watch<etcdserverpb::Watch::Service> {
 public:
  // Response headers are filled by the hub's header filler. A stream busy
  // with events starts a burst of event writes at most every
  // `burst_interval` (0: writes every response at once); see WatchReactor.
  explicit WatchService(watch::WatchHub* hub,
                        std::chrono::milliseconds burst_interval = std::chrono::milliseconds(0));

  ~WatchService() override;  // REQUIRES: the gRPC server has shut down

  grpc::ServerBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer>* Watch(
      grpc::CallbackServerContext* context) override;

  // Ends every open watch stream with UNAVAILABLE "etcdserver: server
  // stopped" and refuses new ones. Watch streams never end by themselves, so
  // without this grpc::Server::Shutdown waits for its whole deadline. Call
  // before Shutdown.
  void Stop();

  size_t OpenStreams() const;
  // While `is_learner` says so, new streams end at once with "etcdserver:
  // rpc not supported for learner" (etcd). Set before serving.
  void SetLearnerCheck(std::function<bool()> is_learner) { is_learner_ = std::move(is_learner); }
  // Auth: "" if the stream's caller may watch what the request asks for,
  // else the cancel reason of the refusal (etcd's isWatchPermitted). Set
  // before serving.
  using AuthCheck =
      std::function<std::string(const grpc::ServerContextBase& context, const etcdserverpb::WatchCreateRequest& r)>;
  void SetAuthCheck(AuthCheck check) { auth_check_ = std::move(check); }

 private:
  friend class WatchReactor;
  void Unregister(WatchReactor* reactor);

  void RunPacer();
  void StopPacer();

  watch::WatchHub* const hub_;
  const std::chrono::milliseconds burst_interval_;
  std::function<bool()> is_learner_;
  AuthCheck auth_check_;

  mutable std::mutex mu_;  // taken before a reactor's own lock
  std::set<WatchReactor*> reactors_;  // GUARDED_BY(mu_)
  bool stopped_ = false;              // GUARDED_BY(mu_)

  // The pacer: every burst interval, starts the write bursts streams held
  // back (WatchReactor::OnTick).
  std::mutex pacer_mu_;  // not held while ticking
  std::condition_variable pacer_cv_;
  bool pacer_stop_ = false;  // GUARDED_BY(pacer_mu_)
  std::thread pacer_;
};

}  // namespace cairn::api

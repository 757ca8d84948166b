// AsyncPuts: KV.Put served on gRPC's async API, so that the apply thread,
// which answers every put, wakes no gRPC thread to do it.
//
// With the callback API every answer finished from a thread of cairn's own
// (ServerUnaryReactor::Finish on the apply thread) wakes gRPC's callback
// queue thread for its completion, a waiter on that queue's lock and an
// executor thread: measured on the do-nothing server (cairn-ceiling
// --put-answer thread against cq, docs/benchmarks.md "Who answers a put"),
// ~73 against ~46 us of server CPU per put. Here a put's answer completes on
// `answers`, a queue nobody waits on: the apply thread empties it after each
// batch (Collect), deleting the calls done. New calls arrive on the server's
// queue `arrivals`, taken by one accept thread that serves them as the
// callback methods are served (KvService::ServePut).
//
// Thread-safety: Start and Stop from one thread; Collect from one thread at a
// time, not after Stop began.
#pragma once

#include <atomic>
#include <memory>
#include <thread>

#include <grpcpp/grpcpp.h>

#include "api/kv_service.h"

namespace cairn::api {

class AsyncPuts {
 public:
  // Calls asked for ahead of their arrival (each arrival asks for one more).
  static constexpr int kRequestsAhead = 32;

  // `kv` must outlive this; `arrivals` is the server's queue from
  // grpc::ServerBuilder::AddCompletionQueue.
  AsyncPuts(KvService* kv, std::unique_ptr<grpc::ServerCompletionQueue> arrivals);
  ~AsyncPuts();

  // After the server started: asks for calls and starts the threads.
  void Start();
  // Frees the calls whose answer completed, without waiting.
  void Collect();
  // After grpc::Server::Shutdown returned (no call is in flight then) and
  // once nothing can answer a put any more (the node stopped): shuts the
  // queues down and frees what is left.
  void Stop();

 private:
  void Accept();

  KvService* const kv_;
  std::unique_ptr<grpc::ServerCompletionQueue> arrivals_;
  grpc::CompletionQueue answers_;
  std::thread acceptor_;
  bool started_ = false;
};

}  // namespace cairn::api

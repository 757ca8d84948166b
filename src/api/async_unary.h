// AsyncUnary: the KV write methods (Put, DeleteRange, Txn) served on gRPC's
// async API, so that the apply thread, which answers every write, wakes no
// gRPC thread to do it.
//
// With the callback API every answer finished from a thread of cairn's own
// (ServerUnaryReactor::Finish on the apply thread) wakes gRPC's callback
// queue thread for its completion, a waiter on that queue's lock and an
// executor thread: measured on the do-nothing server (cairn-ceiling
// --put-answer thread against cq, docs/benchmarks.md "Who answers a put"),
// ~73 against ~46 us of server CPU per put. Here an answer completes on
// `answers`, a queue nobody waits on: the apply thread empties it after each
// batch (Collect), deleting the calls done. New calls arrive on the server's
// queue `arrivals`, taken by one accept thread that serves them as the
// callback methods are served (the service's Serve functions).
//
// Thread-safety: Start and Stop from one thread; Collect from one thread at a
// time, not after Stop began. A call's Finish from any thread, once.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <thread>
#include <vector>

#include "api/parsed_request.h"

namespace cairn::api {

// One call of an async method, from its arrival to its answer's completion
// (gRPC hands it back as the tag of both).
class AsyncCall {
 public:
  virtual ~AsyncCall() = default;
  // Asks gRPC for another call of the same method (a new object).
  virtual void RequestAnother(grpc::CompletionQueue* answers, grpc::ServerCompletionQueue* arrivals) const = 0;
  // The call arrived: serve it (it is answered later, by Finish).
  virtual void Serve() = 0;
};

// A unary call of `Service` (a ParsesRequests service) answering `Response`,
// served by `Service::*serve`.
template <class Service, class Response>
class UnaryCall final : public AsyncCall {
 public:
  using ServeFn = void (Service::*)(UnaryCall*);
  UnaryCall(Service* service, int method, ServeFn serve) : service_(service), method_(method), serve_(serve) {}

  void RequestAnother(grpc::CompletionQueue* answers, grpc::ServerCompletionQueue* arrivals) const override {
    auto* next = new UnaryCall(service_, method_, serve_);
    service_->RequestAsyncCall(method_, &next->context, &next->request, &next->writer, answers, arrivals, next);
  }
  void Serve() override { (service_->*serve_)(this); }

  // Answers `response` if `s` is OK, else `s`.
  void Finish(const grpc::Status& s) {
    if (s.ok()) {
      writer.Finish(response, s, this);
    } else {
      writer.FinishWithError(s, this);
    }
  }

  grpc::ServerContext context;
  ParsedRequest request;
  Response response;
  grpc::ServerAsyncResponseWriter<Response> writer{&context};

 private:
  Service* const service_;
  const int method_;
  const ServeFn serve_;
};

class AsyncUnary {
 public:
  // Calls of each method asked for ahead of their arrival (each arrival
  // asks for one more).
  static constexpr int kRequestsAhead = 32;

  // `methods`: one call of each async method, used only to ask for more;
  // `arrivals` is the server's queue from grpc::ServerBuilder::AddCompletionQueue.
  AsyncUnary(std::vector<std::unique_ptr<AsyncCall>> methods, std::unique_ptr<grpc::ServerCompletionQueue> arrivals);
  ~AsyncUnary();

  // After the server started: asks for calls and starts the accept thread.
  void Start();
  // Frees the calls whose answer completed, without waiting.
  void Collect();
  // After grpc::Server::Shutdown returned (no call is in flight then) and
  // once nothing can answer a call any more (the node stopped): shuts the
  // queues down and frees what is left.
  void Stop();

 private:
  void Accept();

  const std::vector<std::unique_ptr<AsyncCall>> methods_;
  std::unique_ptr<grpc::ServerCompletionQueue> arrivals_;
  grpc::CompletionQueue answers_;
  std::thread acceptor_;
  bool started_ = false;
};

}  // namespace cairn::api

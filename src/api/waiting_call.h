// WaitingCall: a unary call that may wait a long time for its answer (a
// Lock behind other holders, a Campaign behind the leader) and must clean up
// if the client goes away first. It owns the call's reactor; the answer is
// given once (Finish), from whatever thread has it, and OnCancel runs the
// clean-up the handler registered.
//
// Thread-safety: thread-safe. Keep a shared_ptr while using it: the reactor
// holds one until gRPC is done with the call.
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <mutex>

#include "api/api_context.h"

namespace cairn::api {

class WaitingCall : public std::enable_shared_from_this<WaitingCall> {
 public:
  static std::shared_ptr<WaitingCall> Create() {
    auto call = std::shared_ptr<WaitingCall>(new WaitingCall());
    call->reactor_ = new Reactor(call);
    return call;
  }

  // What the handler returns to gRPC.
  grpc::ServerUnaryReactor* reactor() const { return reactor_; }

  // Runs `fill` (which writes the response) if `s` is OK, then answers `s`.
  // Only the first Finish answers; false for the others.
  bool Finish(const Status& s, const std::function<void()>& fill = {}) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return false;
      finished_ = true;
      on_cancel_ = nullptr;
    }
    if (s.ok() && fill) fill();
    reactor_->Finish(ToGrpc(s));  // the reactor stays until OnDone
    return true;
  }

  // Runs `f` once if the client cancels before the answer (at once if it
  // already has). `f` should end the wait, which then calls Finish.
  void OnCancel(std::function<void()> f) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) return;
      if (!cancelled_) {
        on_cancel_ = std::move(f);
        return;
      }
    }
    f();
  }

  bool cancelled() const {
    std::lock_guard<std::mutex> lock(mu_);
    return cancelled_;
  }

 private:
  class Reactor final : public grpc::ServerUnaryReactor {
   public:
    explicit Reactor(std::shared_ptr<WaitingCall> call) : call_(std::move(call)) {}
    void OnCancel() override { call_->Cancelled(); }
    void OnDone() override { delete this; }

   private:
    std::shared_ptr<WaitingCall> call_;
  };

  WaitingCall() = default;

  void Cancelled() {
    std::function<void()> f;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      f = std::move(on_cancel_);
      on_cancel_ = nullptr;
    }
    if (f) f();
  }

  Reactor* reactor_ = nullptr;
  mutable std::mutex mu_;
  bool finished_ = false;             // GUARDED_BY(mu_)
  bool cancelled_ = false;            // GUARDED_BY(mu_)
  std::function<void()> on_cancel_;   // GUARDED_BY(mu_)
};

// The status a call ends with when its client went away.
inline Status Cancelled() { return Status(Code::kCanceled, "context canceled"); }

}  // namespace cairn::api

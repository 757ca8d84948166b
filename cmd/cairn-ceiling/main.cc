// cairn-ceiling: the do-nothing server of the benchmarks (docs/benchmarks.md,
// "The ceiling"). It serves etcdserverpb.KV Put and Range from a map in
// memory, on the same stack as cairn's client port — http::ClientListener
// handing HTTP/2 connections to a gRPC C++ callback server, jemalloc — but
// with no log, no fsync, no Raft, no MVCC, no watch, no metrics. What
// cairn-bench gets from it with the same flags is the most any server on this
// stack and this machine can give that client: cairn's figure as a fraction
// of it says how far from the limit cairn is, and the server CPU per op it
// costs is the floor of the RPC layer alone.
//
//   cairn-ceiling --listen 127.0.0.1:23790
//
// Not a store: nothing survives a restart, and Txn, DeleteRange, Compact and
// every other service answer UNIMPLEMENTED.
//
// --put-answer chooses which thread answers a Put, to measure what a store
// that must answer after its commit (on a thread of its own, as cairn's apply
// thread does) pays for that on this stack:
//   inline  the gRPC thread that received it, in the handler (the default);
//   thread  a worker thread, as cairn does: the handler queues the put, the
//           worker applies whatever is queued and finishes each call's
//           callback reactor;
//   cq      a worker thread, the Put method on gRPC's async API: the worker
//           finishes each call with its completion going to a queue only the
//           worker drains (no gRPC thread to wake for it).
#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <deque>
#include <functional>
#include <iostream>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <thread>

#include "api/http/client_listener.h"
#include "etcdserverpb/rpc.grpc.pb.h"

// The allocator cairn runs with, with cairn's settings (cmd/cairn/main.cc).
extern "C" {
// NOLINTNEXTLINE: the name is jemalloc's.
const char* malloc_conf = "background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0";
}

namespace cairn::ceiling {
namespace {

enum class PutAnswer { kInline, kThread, kCq };

// The puts waiting for the worker (--put-answer thread and cq), bounded.
class WorkQueue {
 public:
  static constexpr size_t kMax = 65536;
  bool Push(std::function<void()> f) {
    std::unique_lock<std::mutex> lock(mu_);
    if (closed_ || items_.size() >= kMax) return false;
    items_.push_back(std::move(f));
    if (items_.size() == 1) cv_.notify_one();
    return true;
  }
  // Waits for work; false once closed.
  bool PopAll(std::deque<std::function<void()>>* out) {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) return false;
    out->swap(items_);
    return true;
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> items_;
  bool closed_ = false;
};

class Store {
 public:
  int64_t Put(const etcdserverpb::PutRequest& req) {
    std::unique_lock<std::shared_mutex> lock(mu_);
    const int64_t rev = ++revision_;
    mvccpb::KeyValue& kv = data_[req.key()];
    if (kv.create_revision() == 0) kv.set_create_revision(rev);
    kv.set_key(req.key());
    kv.set_mod_revision(rev);
    kv.set_version(kv.version() + 1);
    kv.set_value(req.value());
    return rev;
  }

  std::shared_mutex mu_;
  std::map<std::string, mvccpb::KeyValue> data_;  // GUARDED_BY(mu_)
  int64_t revision_ = 1;                           // GUARDED_BY(mu_)
};

void Header(etcdserverpb::ResponseHeader* h, int64_t rev) {
  h->set_cluster_id(1);
  h->set_member_id(1);
  h->set_revision(rev);
  h->set_raft_term(1);
}

// Put on the async API when --put-answer cq; the rest on the callback API.
// (Marking a method of CallbackService async keeps its callback handler, so
// the service is built from the plain one, method by method.)
using KvBase = etcdserverpb::KV::WithCallbackMethod_Range<etcdserverpb::KV::WithCallbackMethod_DeleteRange<
    etcdserverpb::KV::WithCallbackMethod_Txn<etcdserverpb::KV::WithCallbackMethod_Compact<
        etcdserverpb::KV::WithAsyncMethod_Put<etcdserverpb::KV::Service>>>>>;

class Kv final : public KvBase {
 public:
  Kv(Store* store, PutAnswer answer, WorkQueue* work) : store_(store), answer_(answer), work_(work) {}

  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const etcdserverpb::PutRequest* req,
                                etcdserverpb::PutResponse* resp) {
    auto* reactor = ctx->DefaultReactor();
    if (answer_ == PutAnswer::kInline) {
      Header(resp->mutable_header(), store_->Put(*req));
      reactor->Finish(grpc::Status::OK);
      return reactor;
    }
    if (!work_->Push([this, req, resp, reactor] {
          Header(resp->mutable_header(), store_->Put(*req));
          reactor->Finish(grpc::Status::OK);
        })) {
      reactor->Finish(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many requests"));
    }
    return reactor;
  }

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx, const etcdserverpb::RangeRequest* req,
                                  etcdserverpb::RangeResponse* resp) override {
    int64_t rev;
    {
      std::shared_lock<std::shared_mutex> lock(store_->mu_);
      rev = store_->revision_;
      const auto& data_ = store_->data_;
      int64_t count = 0;
      if (req->range_end().empty()) {
        auto it = data_.find(req->key());
        if (it != data_.end()) {
          count = 1;
          if (!req->count_only()) *resp->add_kvs() = it->second;
        }
      } else {
        const bool to_end = req->range_end() == std::string(1, '\0');
        for (auto it = data_.lower_bound(req->key()); it != data_.end() && (to_end || it->first < req->range_end());
             ++it) {
          count++;
          if (req->count_only()) continue;
          if (req->limit() > 0 && resp->kvs_size() >= req->limit()) {
            resp->set_more(true);
            continue;
          }
          *resp->add_kvs() = it->second;
        }
      }
      resp->set_count(count);
    }
    Header(resp->mutable_header(), rev);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  Store* const store_;
  const PutAnswer answer_;
  WorkQueue* const work_;
};

// One async Put call of --put-answer cq: requested on the server's queue,
// answered by the worker, its completion on the worker's own queue.
struct AsyncPut {
  grpc::ServerContext ctx;
  etcdserverpb::PutRequest req;
  etcdserverpb::PutResponse resp;
  grpc::ServerAsyncResponseWriter<etcdserverpb::PutResponse> writer{&ctx};
};

// Wraps the callback service so that the generated async Put is the one
// registered when --put-answer cq, the callback Put otherwise.
class CallbackKv final : public etcdserverpb::KV::CallbackService {
 public:
  explicit CallbackKv(Kv* kv) : kv_(kv) {}
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const etcdserverpb::PutRequest* req,
                                etcdserverpb::PutResponse* resp) override {
    return kv_->Put(ctx, req, resp);
  }
  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx, const etcdserverpb::RangeRequest* req,
                                  etcdserverpb::RangeResponse* resp) override {
    return kv_->Range(ctx, req, resp);
  }

 private:
  Kv* const kv_;
};

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

int Main(int argc, char** argv) {
  CLI::App app{"cairn-ceiling: Put and Range from memory on cairn's gRPC stack (a benchmark's ceiling)"};
  std::string listen = "127.0.0.1:23790";
  app.add_option("--listen", listen, "host:port to serve on")->capture_default_str();
  std::string put_answer = "inline";
  app.add_option("--put-answer", put_answer, "which thread answers a Put: inline, thread or cq")
      ->check(CLI::IsMember({"inline", "thread", "cq"}))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const PutAnswer answer = put_answer == "inline" ? PutAnswer::kInline
                           : put_answer == "thread" ? PutAnswer::kThread
                                                    : PutAnswer::kCq;
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "cairn-ceiling: --listen must be host:port\n";
    return 2;
  }
  Store store;
  WorkQueue work;
  Kv kv(&store, answer, &work);
  CallbackKv callback_kv(&kv);
  grpc::ServerBuilder builder;
  if (answer == PutAnswer::kCq) {
    builder.RegisterService(&kv);
  } else {
    builder.RegisterService(&callback_kv);
  }
  std::unique_ptr<grpc::ServerCompletionQueue> accept_cq;
  if (answer == PutAnswer::kCq) accept_cq = builder.AddCompletionQueue();
  builder.SetMaxReceiveMessageSize(2 << 20);
  builder.SetMaxSendMessageSize(INT32_MAX);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::cerr << "cairn-ceiling: cannot start the gRPC server\n";
    return 1;
  }
  http::ClientListener::Options lo;
  lo.host = listen.substr(0, colon);
  lo.port = static_cast<uint16_t>(std::stoi(listen.substr(colon + 1)));
  grpc::Server* raw = server.get();
  lo.on_grpc_connection = [raw](int fd) { grpc::AddInsecureChannelFromFd(raw, fd); };
  http::ClientListener listener(lo);
  Status s = listener.Start();
  if (!s.ok()) {
    std::cerr << "cairn-ceiling: cannot listen on " << listen << ": " << s.message() << "\n";
    return 1;
  }
  // The worker: applies what is queued, then answers it (thread: finishes
  // the callback reactors; cq: finishes the async calls and drains their
  // completions from its own queue without waiting).
  grpc::CompletionQueue answer_cq;
  std::thread worker([&] {
    std::deque<std::function<void()>> batch;
    while (work.PopAll(&batch)) {
      for (auto& f : batch) f();
      batch.clear();
      if (answer != PutAnswer::kCq) continue;
      void* tag;
      bool ok;
      while (answer_cq.AsyncNext(&tag, &ok, gpr_time_0(GPR_CLOCK_MONOTONIC)) == grpc::CompletionQueue::GOT_EVENT) {
        delete static_cast<AsyncPut*>(tag);
      }
    }
  });
  std::thread acceptor;
  auto request_put = [&] {
    auto* call = new AsyncPut();
    kv.RequestPut(&call->ctx, &call->req, &call->writer, &answer_cq, accept_cq.get(), call);
  };
  if (answer == PutAnswer::kCq) {
    request_put();
    acceptor = std::thread([&] {
      void* tag;
      bool ok;
      while (accept_cq->Next(&tag, &ok)) {
        auto* call = static_cast<AsyncPut*>(tag);
        if (!ok) {
          delete call;
          continue;
        }
        request_put();
        if (!work.Push([&store, call] {
              Header(call->resp.mutable_header(), store.Put(call->req));
              call->writer.Finish(call->resp, grpc::Status::OK, call);
            })) {
          call->writer.FinishWithError(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "too many requests"), call);
        }
      }
    });
  }
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::cerr << "cairn-ceiling: serving on " << listen << "\n";
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  listener.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  if (accept_cq) accept_cq->Shutdown();
  if (acceptor.joinable()) acceptor.join();
  work.Close();
  worker.join();
  answer_cq.Shutdown();
  void* tag;
  bool ok;
  while (answer_cq.Next(&tag, &ok)) delete static_cast<AsyncPut*>(tag);
  return 0;
}

}  // namespace
}  // namespace cairn::ceiling

int main(int argc, char** argv) { return cairn::ceiling::Main(argc, argv); }

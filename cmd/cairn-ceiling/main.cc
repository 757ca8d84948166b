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
#include <CLI/CLI.hpp>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <csignal>
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

class Kv final : public etcdserverpb::KV::CallbackService {
 public:
  grpc::ServerUnaryReactor* Put(grpc::CallbackServerContext* ctx, const etcdserverpb::PutRequest* req,
                                etcdserverpb::PutResponse* resp) override {
    int64_t rev;
    {
      std::unique_lock<std::shared_mutex> lock(mu_);
      rev = ++revision_;
      mvccpb::KeyValue& kv = data_[req->key()];
      if (kv.create_revision() == 0) kv.set_create_revision(rev);
      kv.set_key(req->key());
      kv.set_mod_revision(rev);
      kv.set_version(kv.version() + 1);
      kv.set_value(req->value());
    }
    Header(resp->mutable_header(), rev);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerUnaryReactor* Range(grpc::CallbackServerContext* ctx, const etcdserverpb::RangeRequest* req,
                                  etcdserverpb::RangeResponse* resp) override {
    int64_t rev;
    {
      std::shared_lock<std::shared_mutex> lock(mu_);
      rev = revision_;
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
  static void Header(etcdserverpb::ResponseHeader* h, int64_t rev) {
    h->set_cluster_id(1);
    h->set_member_id(1);
    h->set_revision(rev);
    h->set_raft_term(1);
  }

  std::shared_mutex mu_;
  std::map<std::string, mvccpb::KeyValue> data_;  // GUARDED_BY(mu_)
  int64_t revision_ = 1;                           // GUARDED_BY(mu_)
};

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

int Main(int argc, char** argv) {
  CLI::App app{"cairn-ceiling: Put and Range from memory on cairn's gRPC stack (a benchmark's ceiling)"};
  std::string listen = "127.0.0.1:23790";
  app.add_option("--listen", listen, "host:port to serve on")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    std::cerr << "cairn-ceiling: --listen must be host:port\n";
    return 2;
  }
  Kv kv;
  grpc::ServerBuilder builder;
  builder.RegisterService(&kv);
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
  std::signal(SIGPIPE, SIG_IGN);
  std::signal(SIGTERM, OnSignal);
  std::signal(SIGINT, OnSignal);
  std::cerr << "cairn-ceiling: serving on " << listen << "\n";
  while (!g_stop.load()) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  listener.Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::milliseconds(200));
  return 0;
}

}  // namespace
}  // namespace cairn::ceiling

int main(int argc, char** argv) { return cairn::ceiling::Main(argc, argv); }

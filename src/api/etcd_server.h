// EtcdServer: one cairn member as clients see it - the node, the watch hub,
// the gRPC services and the HTTP endpoints on etcd's client URLs, and the
// metrics. Owns everything it starts; Stop() (or the destructor) ends it all.
//
// Thread-safe: Start/Stop from one thread; the rest runs on gRPC's, the
// listeners' and the node's threads.
#pragma once

#include <grpcpp/generic/async_generic_service.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "api/http/tls_context.h"
#include "api/peer_credentials.h"
#include "api/api_context.h"
#include "api/json_gateway.h"
#include "api/key_events.h"
#include "api/local_client.h"
#include "api/server_config.h"
#include "common/metrics.h"
#include "server/node.h"

namespace cairn::http {
class ClientListener;
struct HttpResponse;
}
namespace cairn::watch {
class WatchHub;
}
namespace cairn::peer {
class PeerService;
class PeerStreamReceiver;
class PeerTransport;
}

namespace cairn::api {

class EtcdServer {
 public:
  explicit EtcdServer(ServerConfig config);
  ~EtcdServer();

  Status Start();
  void Stop();
  // Blocks until Stop() is called from another thread or a signal handler.
  void Wait();
  // Makes Wait() return (the caller then calls Stop()); safe from any
  // thread, including the node's own.
  void RequestStop();
  // This member was removed from the cluster: log it once and stop.
  void Removed();

  // Bound ports of the client listeners, in --listen-client-urls order.
  std::vector<uint16_t> client_ports() const;

 private:
  // --cert-file ... or --auto-tls into client_tls_; etcd's start-up errors
  // for https URLs without a certificate.
  Status PrepareClientTls();
  void StartAutoCompaction();
  Status StartPeerServer();
  // Whether this member is one of several (its member table, a joining
  // member's view of the cluster, or --initial-cluster names another): KV's
  // writes go on gRPC's async API then (KvService).
  bool OneOfSeveral() const;
  // --initial-cluster-state existing: the cluster id and member table from
  // a peer of --initial-cluster.
  Result<server::NodeOptions::RemoteCluster> FetchCluster();
  // Tells the transport where every member but this one is.
  void ConnectPeers(const std::vector<cairnpb::Member>& members);
  void SetLearner(bool learner);
  // On a clean stop of the leader: hand leadership to a connected voter.
  void HandOverLeadership();
  http::HttpResponse Health();
  void RegisterHttp(http::ClientListener* listener);

  ServerConfig config_;
  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<peer::PeerTransport> transport_;
  std::unique_ptr<server::Node> node_;
  std::unique_ptr<peer::PeerService> peer_service_;
  std::unique_ptr<grpc::Server> peer_server_;
  // http:// peer URLs: raw peer streams to peer_stream_receiver_, HTTP/2 to
  // peer_server_ (https:// ones are peer_server_'s own TLS ports).
  std::unique_ptr<peer::PeerStreamReceiver> peer_stream_receiver_;
  std::vector<std::unique_ptr<http::ClientListener>> peer_listeners_;
  std::unique_ptr<watch::WatchHub> hub_;
  std::atomic<watch::WatchHub*> hub_ptr_{nullptr};  // read by the apply thread
  ApiContext ctx_;
  KeyEvents key_events_;                       // for the lock and election services
  std::unique_ptr<LocalClient> local_client_;  // the same, after services_
  std::vector<std::unique_ptr<grpc::Service>> services_;
  std::unique_ptr<grpc::CallbackGenericService> unknown_methods_;  // answers what services_ do not
  class WatchService* watch_service_ = nullptr;  // owned by services_
  class HealthService* health_service_ = nullptr;  // owned by services_
  std::atomic<int64_t> calls_in_flight_{0};  // gRPC calls begun and not done
  std::unique_ptr<grpc::Server> grpc_server_;
  std::unique_ptr<class AsyncUnary> async_kv_;  // KV's writes on grpc_server_'s async API
  std::atomic<AsyncUnary*> async_kv_ptr_{nullptr};  // for the apply thread, while it runs
  std::unique_ptr<JsonGateway> gateway_;  // a client of grpc_server_, on the client URLs
  std::mutex listeners_mu_;  // listeners_ grows while calls may look at it
  std::vector<std::unique_ptr<http::ClientListener>> listeners_;  // GUARDED_BY(listeners_mu_) for writes
  // For the https:// client and metrics URLs; null when none is https.
  std::shared_ptr<http::TlsContext> client_tls_;
  PeerCredentials peer_credentials_;  // for https:// peer URLs
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopped_ = false;
  bool stop_requested_ = false;  // GUARDED_BY(stop_mu_)
  std::atomic<bool> removed_{false};
  std::atomic<bool> is_learner_{false};
};

}  // namespace cairn::api

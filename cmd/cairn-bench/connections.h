// ConnectionPool: --conns gRPC channels, each its own TCP connection, spread
// round-robin over the endpoints, with the etcd v3 stubs bound to each.
//
// gRPC shares one subchannel between channels to the same target by default;
// every channel here asks for a private subchannel pool so that --conns 8
// really opens eight connections, as etcd's benchmark does with eight clients.
//
// Thread safety: immutable after Connect(); stubs are safe to use from any
// thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>
#include <vector>

#include "etcdserverpb/rpc.grpc.pb.h"

namespace cairn::bench {

struct Connection {
  std::string target;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Watch::Stub> watch;
  std::unique_ptr<etcdserverpb::Lease::Stub> lease;
};

// "http://127.0.0.1:2379" -> "127.0.0.1:2379" (gRPC target syntax).
std::string EndpointToTarget(const std::string& endpoint);

// Plaintext when `cacert` is empty, else TLS trusting that CA (PEM file), with
// the client certificate and key when given. Sets *error if a file cannot be
// read.
std::shared_ptr<grpc::ChannelCredentials> MakeCredentials(const std::string& cacert, const std::string& cert,
                                                          const std::string& key, std::string* error);

// Signs in as `user` ("name:password") on `endpoint` with Auth/Authenticate;
// returns the token, or "" and sets *error.
std::string Authenticate(const std::string& endpoint, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                         const std::string& user, std::string* error);

class ConnectionPool {
 public:
  // Opens `conns` channels and waits up to `connect_timeout_seconds` for each
  // to be ready. Returns an empty string on success, else what went wrong.
  std::string Connect(const std::vector<std::string>& endpoints, int conns,
                      double connect_timeout_seconds,
                      const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                      const std::string& token = "");

  int size() const { return static_cast<int>(connections_.size()); }
  // Connection for client `client_index` (round-robin).
  Connection& ForClient(int client_index) { return *connections_[client_index % size()]; }

 private:
  std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace cairn::bench

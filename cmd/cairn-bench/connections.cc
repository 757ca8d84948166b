#include "connections.h"

#include <chrono>

namespace cairn::bench {
namespace {

// Large enough for a prefix Range of many keys, still a bound.
constexpr int kMaxReceiveMessageBytes = 256 << 20;

}  // namespace

std::string EndpointToTarget(const std::string& endpoint) {
  for (const char* scheme : {"http://", "https://", "unix://"}) {
    const std::string s(scheme);
    if (endpoint.rfind(s, 0) == 0) {
      if (s == "unix://") return endpoint;
      std::string rest = endpoint.substr(s.size());
      if (!rest.empty() && rest.back() == '/') rest.pop_back();
      return rest;
    }
  }
  return endpoint;
}

std::string ConnectionPool::Connect(const std::vector<std::string>& endpoints, int conns,
                                    double connect_timeout_seconds) {
  connections_.clear();
  for (int i = 0; i < conns; ++i) {
    auto connection = std::make_unique<Connection>();
    connection->target = EndpointToTarget(endpoints[i % endpoints.size()]);
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
    connection->channel = grpc::CreateCustomChannel(
        connection->target, grpc::InsecureChannelCredentials(), args);
    connection->kv = etcdserverpb::KV::NewStub(connection->channel);
    connection->watch = etcdserverpb::Watch::NewStub(connection->channel);
    connection->lease = etcdserverpb::Lease::NewStub(connection->channel);
    connections_.push_back(std::move(connection));
  }
  const auto deadline = std::chrono::system_clock::now() +
                        std::chrono::milliseconds(static_cast<int64_t>(connect_timeout_seconds * 1000));
  for (auto& connection : connections_) {
    if (!connection->channel->WaitForConnected(deadline)) {
      return "cannot connect to " + connection->target;
    }
  }
  return "";
}

}  // namespace cairn::bench

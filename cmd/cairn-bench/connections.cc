#include "connections.h"

#include <chrono>
#include <fstream>
#include <sstream>

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

std::shared_ptr<grpc::ChannelCredentials> MakeCredentials(const std::string& cacert, const std::string& cert,
                                                          const std::string& key, std::string* error) {
  if (cacert.empty()) return grpc::InsecureChannelCredentials();
  auto read = [&](const std::string& path, std::string* out) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream buf;
    buf << in.rdbuf();
    if (!in.good() && !in.eof()) {
      *error = "cannot read " + path;
      return false;
    }
    if (buf.str().empty()) {
      *error = "cannot read " + path + " (missing or empty)";
      return false;
    }
    *out = buf.str();
    return true;
  };
  grpc::SslCredentialsOptions options;
  if (!read(cacert, &options.pem_root_certs)) return nullptr;
  if (!cert.empty() && !read(cert, &options.pem_cert_chain)) return nullptr;
  if (!key.empty() && !read(key, &options.pem_private_key)) return nullptr;
  return grpc::SslCredentials(options);
}

std::string ConnectionPool::Connect(const std::vector<std::string>& endpoints, int conns,
                                    double connect_timeout_seconds,
                                    const std::shared_ptr<grpc::ChannelCredentials>& credentials) {
  connections_.clear();
  for (int i = 0; i < conns; ++i) {
    auto connection = std::make_unique<Connection>();
    connection->target = EndpointToTarget(endpoints[i % endpoints.size()]);
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
    connection->channel = grpc::CreateCustomChannel(
        connection->target, credentials, args);
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

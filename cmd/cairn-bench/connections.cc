#include "connections.h"

#include <chrono>
#include <fstream>
#include <sstream>

namespace cairn::bench {
namespace {

// Large enough for a prefix Range of many keys, still a bound.
constexpr int kMaxReceiveMessageBytes = 256 << 20;

// Adds the auth token to every call of a channel (etcd reads it from the
// "token" metadata key).
class TokenInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit TokenInterceptor(std::string token) : token_(std::move(token)) {}
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(grpc::experimental::InterceptionHookPoints::PRE_SEND_INITIAL_METADATA)) {
      methods->GetSendInitialMetadata()->insert({"token", token_});
    }
    methods->Proceed();
  }

 private:
  const std::string token_;
};

class TokenInterceptorFactory final : public grpc::experimental::ClientInterceptorFactoryInterface {
 public:
  explicit TokenInterceptorFactory(std::string token) : token_(std::move(token)) {}
  grpc::experimental::Interceptor* CreateClientInterceptor(grpc::experimental::ClientRpcInfo*) override {
    return new TokenInterceptor(token_);
  }

 private:
  const std::string token_;
};

}  // namespace

std::string Authenticate(const std::string& endpoint, const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                         const std::string& user, std::string* error) {
  const size_t colon = user.find(':');
  etcdserverpb::AuthenticateRequest request;
  request.set_name(user.substr(0, colon));
  request.set_password(colon == std::string::npos ? "" : user.substr(colon + 1));
  auto stub = etcdserverpb::Auth::NewStub(grpc::CreateChannel(EndpointToTarget(endpoint), credentials));
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  etcdserverpb::AuthenticateResponse response;
  grpc::Status status = stub->Authenticate(&context, request, &response);
  if (!status.ok()) {
    *error = "authenticate as " + request.name() + ": " + status.error_message();
    return "";
  }
  return response.token();
}

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
    if (in) buf << in.rdbuf();
    *out = buf.str();
    if (out->empty()) *error = "cannot read " + path + " (missing or empty)";
    return !out->empty();
  };
  grpc::SslCredentialsOptions options;
  if (!read(cacert, &options.pem_root_certs)) return nullptr;
  if (!cert.empty() && !read(cert, &options.pem_cert_chain)) return nullptr;
  if (!key.empty() && !read(key, &options.pem_private_key)) return nullptr;
  return grpc::SslCredentials(options);
}

std::string ConnectionPool::Connect(const std::vector<std::string>& endpoints, int conns,
                                    double connect_timeout_seconds,
                                    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
                                    const std::string& token) {
  connections_.clear();
  for (int i = 0; i < conns; ++i) {
    auto connection = std::make_unique<Connection>();
    connection->target = EndpointToTarget(endpoints[i % endpoints.size()]);
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(kMaxReceiveMessageBytes);
    if (token.empty()) {
      connection->channel = grpc::CreateCustomChannel(connection->target, credentials, args);
    } else {
      std::vector<std::unique_ptr<grpc::experimental::ClientInterceptorFactoryInterface>> interceptors;
      interceptors.push_back(std::make_unique<TokenInterceptorFactory>(token));
      connection->channel = grpc::experimental::CreateCustomChannelWithInterceptors(
          connection->target, credentials, args, std::move(interceptors));
    }
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

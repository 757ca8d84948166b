// Answers calls of methods no service registered, as grpc-go (and so etcd)
// does: UNIMPLEMENTED "unknown service foo.Bar", or "unknown method Nope for
// service etcdserverpb.KV" when the service exists. Without it gRPC C++
// answers UNIMPLEMENTED with no message.
//
// Thread safety: thread-safe; immutable after construction.
#pragma once

#include <grpcpp/generic/async_generic_service.h>

#include <set>
#include <string>
#include <vector>

namespace cairn::api {

class UnknownMethodService final : public grpc::CallbackGenericService {
 public:
  // `services`: the full names of the registered services ("etcdserverpb.KV").
  explicit UnknownMethodService(std::vector<std::string> services);

  grpc::ServerGenericBidiReactor* CreateReactor(grpc::GenericCallbackServerContext* context) override;

  // grpc-go's status for a call of `path` ("/service/method").
  grpc::Status StatusFor(const std::string& path) const;

 private:
  const std::set<std::string> services_;
};

}  // namespace cairn::api

#include "api/unknown_method_service.h"

namespace cairn::api {

namespace {
class RefusedReactor final : public grpc::ServerGenericBidiReactor {
 public:
  explicit RefusedReactor(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};
}  // namespace

UnknownMethodService::UnknownMethodService(std::vector<std::string> services)
    : services_(services.begin(), services.end()) {}

grpc::ServerGenericBidiReactor* UnknownMethodService::CreateReactor(
    grpc::GenericCallbackServerContext* context) {
  return new RefusedReactor(StatusFor(context->method()));
}

grpc::Status UnknownMethodService::StatusFor(const std::string& path) const {
  // grpc-go's server.handleStream.
  std::string sm = path;
  if (!sm.empty() && sm[0] == '/') sm.erase(0, 1);
  const size_t pos = sm.rfind('/');
  if (pos == std::string::npos) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "malformed method name: \"" + path + "\"");
  }
  const std::string service = sm.substr(0, pos);
  const std::string method = sm.substr(pos + 1);
  if (services_.count(service) > 0) {
    return grpc::Status(grpc::StatusCode::UNIMPLEMENTED,
                        "unknown method " + method + " for service " + service);
  }
  return grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "unknown service " + service);
}

}  // namespace cairn::api

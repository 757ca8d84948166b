// JsonGateway: etcd's HTTP/JSON gateway (grpc-gateway, as etcd 3.5 mounts it
// on the client URL): `POST /v3/kv/range` with a JSON body calls KV.Range and
// answers its response as JSON. Like etcd's, it is a client of the member's
// own gRPC server (an in-process channel here, no socket), so every call
// takes the same path, checks and metrics as a gRPC client's.
//
// JSON is protobuf's mapping as grpc-gateway prints it for etcd: field names
// as in the .proto (`create_revision`, `dbSize`, `ID`), 64-bit integers as
// strings, bytes in base64, enums by name, fields at their default left
// out. Requests may use either name form; unknown fields are ignored; an
// empty body is the empty message. Errors are grpc-gateway's body
// `{"error":msg,"code":grpc code,"message":msg}` with the HTTP status
// grpc-gateway maps the code to. `Authorization` is passed on as the
// `authorization` metadata etcd reads the auth token from.
//
// Unary methods only: the streams (/v3/watch, /v3/lease/keepalive,
// /v3/election/observe, /v3/maintenance/snapshot) need a streaming HTTP
// response, which the client listener does not write yet.
//
// Thread-safety: thread-safe. Calls run on the listener's handler threads
// and wait for the answer; Stop() cancels those still waiting (a Lock can
// wait for ever) and refuses new ones, so the listener can stop.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "api/http/client_listener.h"

namespace google::protobuf {
class MethodDescriptor;
}

namespace cairn::api {

class JsonGateway {
 public:
  explicit JsonGateway(std::shared_ptr<grpc::Channel> channel);

  // Registers every route on `listener` (and a 404 for other /v3/ paths).
  void Register(http::ClientListener* listener);

  void Stop();

  // The HTTP status grpc-gateway answers a gRPC status code with.
  static int HttpStatusFor(grpc::StatusCode code);
  static http::HttpResponse ErrorResponse(grpc::StatusCode code, const std::string& message);

 private:
  http::HttpResponse Call(const google::protobuf::MethodDescriptor* method, const http::HttpRequest& request);

  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  std::mutex mu_;
  bool stopped_ = false;                      // GUARDED_BY(mu_)
  std::set<grpc::ClientContext*> in_flight_;  // GUARDED_BY(mu_)
};

}  // namespace cairn::api

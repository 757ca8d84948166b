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
// The streams (/v3/watch, /v3/lease/keepalive, /v3/election/observe,
// /v3/maintenance/snapshot) take a body of one or more JSON objects, one
// request message each (then the client side of the stream is closed, as
// grpc-gateway does once the body is read), and answer a chunked response,
// one line `{"result":...}` per message; an error after the first line is
// grpc-gateway's `{"error":{"grpc_code",...}}` line. A client that stops
// reading (the listener's bound on unsent bytes) or goes away cancels its
// call. The same paths under /v3beta/ answer too, as on etcd.
//
// Thread-safety: thread-safe. No call holds a listener thread: each is an
// asynchronous gRPC call answered through the listener's ResponseWriter.
// Stop() cancels those in flight (a Lock or a watch waits for ever) and
// refuses new ones; the destructor waits (bounded) for them to finish.
#pragma once

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <condition_variable>
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
  ~JsonGateway();

  // Registers every route on `listener` (and a 404 for other /v3/ paths).
  void Register(http::ClientListener* listener);

  void Stop();

  // The HTTP status grpc-gateway answers a gRPC status code with.
  static int HttpStatusFor(grpc::StatusCode code);
  static http::HttpResponse ErrorResponse(grpc::StatusCode code, const std::string& message);

 private:
  struct Call;
  class StreamCall;

  static void Authorize(const http::HttpRequest& request, grpc::ClientContext* context);
  void Unary(const google::protobuf::MethodDescriptor* method, const http::HttpRequest& request,
             std::shared_ptr<http::ResponseWriter> writer);
  void Stream(const google::protobuf::MethodDescriptor* method, const http::HttpRequest& request,
              std::shared_ptr<http::ResponseWriter> writer);
  // From the stream's OnDone: takes it out of streams_, returns the last reference.
  std::shared_ptr<StreamCall> Done(StreamCall* stream);

  std::shared_ptr<grpc::Channel> channel_;
  grpc::GenericStub stub_;
  std::mutex mu_;
  std::condition_variable done_cv_;              // calls_ or streams_ shrank
  bool stopped_ = false;                         // GUARDED_BY(mu_)
  std::set<std::shared_ptr<Call>> calls_;        // GUARDED_BY(mu_); until gRPC reports each done
  std::set<std::shared_ptr<StreamCall>> streams_;  // GUARDED_BY(mu_); the same
};

}  // namespace cairn::api

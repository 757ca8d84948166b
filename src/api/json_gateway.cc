#include "api/json_gateway.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>

#include <chrono>
#include <sstream>
#include <vector>
#include <nlohmann/json.hpp>

#include "common/check.h"
#include "common/logging.h"

namespace cairn::api {

namespace {

struct Route {
  const char* path;
  const char* service;
  const char* method;
};

// etcd 3.5's google.api.http bindings (all POST), unary methods.
constexpr Route kRoutes[] = {
    {"/v3/kv/range", "etcdserverpb.KV", "Range"},
    {"/v3/kv/put", "etcdserverpb.KV", "Put"},
    {"/v3/kv/deleterange", "etcdserverpb.KV", "DeleteRange"},
    {"/v3/kv/txn", "etcdserverpb.KV", "Txn"},
    {"/v3/kv/compaction", "etcdserverpb.KV", "Compact"},
    {"/v3/lease/grant", "etcdserverpb.Lease", "LeaseGrant"},
    {"/v3/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"},
    {"/v3/kv/lease/revoke", "etcdserverpb.Lease", "LeaseRevoke"},
    {"/v3/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"},
    {"/v3/kv/lease/timetolive", "etcdserverpb.Lease", "LeaseTimeToLive"},
    {"/v3/lease/leases", "etcdserverpb.Lease", "LeaseLeases"},
    {"/v3/kv/lease/leases", "etcdserverpb.Lease", "LeaseLeases"},
    {"/v3/cluster/member/add", "etcdserverpb.Cluster", "MemberAdd"},
    {"/v3/cluster/member/remove", "etcdserverpb.Cluster", "MemberRemove"},
    {"/v3/cluster/member/update", "etcdserverpb.Cluster", "MemberUpdate"},
    {"/v3/cluster/member/list", "etcdserverpb.Cluster", "MemberList"},
    {"/v3/cluster/member/promote", "etcdserverpb.Cluster", "MemberPromote"},
    {"/v3/maintenance/alarm", "etcdserverpb.Maintenance", "Alarm"},
    {"/v3/maintenance/status", "etcdserverpb.Maintenance", "Status"},
    {"/v3/maintenance/defragment", "etcdserverpb.Maintenance", "Defragment"},
    {"/v3/maintenance/hash", "etcdserverpb.Maintenance", "Hash"},
    {"/v3/maintenance/hashkv", "etcdserverpb.Maintenance", "HashKV"},
    {"/v3/maintenance/transfer-leadership", "etcdserverpb.Maintenance", "MoveLeader"},
    {"/v3/maintenance/downgrade", "etcdserverpb.Maintenance", "Downgrade"},
    {"/v3/auth/enable", "etcdserverpb.Auth", "AuthEnable"},
    {"/v3/auth/disable", "etcdserverpb.Auth", "AuthDisable"},
    {"/v3/auth/status", "etcdserverpb.Auth", "AuthStatus"},
    {"/v3/auth/authenticate", "etcdserverpb.Auth", "Authenticate"},
    {"/v3/auth/user/add", "etcdserverpb.Auth", "UserAdd"},
    {"/v3/auth/user/get", "etcdserverpb.Auth", "UserGet"},
    {"/v3/auth/user/list", "etcdserverpb.Auth", "UserList"},
    {"/v3/auth/user/delete", "etcdserverpb.Auth", "UserDelete"},
    {"/v3/auth/user/changepw", "etcdserverpb.Auth", "UserChangePassword"},
    {"/v3/auth/user/grant", "etcdserverpb.Auth", "UserGrantRole"},
    {"/v3/auth/user/revoke", "etcdserverpb.Auth", "UserRevokeRole"},
    {"/v3/auth/role/add", "etcdserverpb.Auth", "RoleAdd"},
    {"/v3/auth/role/get", "etcdserverpb.Auth", "RoleGet"},
    {"/v3/auth/role/list", "etcdserverpb.Auth", "RoleList"},
    {"/v3/auth/role/delete", "etcdserverpb.Auth", "RoleDelete"},
    {"/v3/auth/role/grant", "etcdserverpb.Auth", "RoleGrantPermission"},
    {"/v3/auth/role/revoke", "etcdserverpb.Auth", "RoleRevokePermission"},
    {"/v3/lock/lock", "v3lockpb.Lock", "Lock"},
    {"/v3/lock/unlock", "v3lockpb.Lock", "Unlock"},
    {"/v3/election/campaign", "v3electionpb.Election", "Campaign"},
    {"/v3/election/proclaim", "v3electionpb.Election", "Proclaim"},
    {"/v3/election/leader", "v3electionpb.Election", "Leader"},
    {"/v3/election/resign", "v3electionpb.Election", "Resign"},
};

// The streaming methods: every JSON object of the body is one request
// message (then the client side closes); every response message is one line
// `{"result":...}` of a chunked response, as grpc-gateway streams them.
constexpr Route kStreamRoutes[] = {
    {"/v3/watch", "etcdserverpb.Watch", "Watch"},
    {"/v3/lease/keepalive", "etcdserverpb.Lease", "LeaseKeepAlive"},
    {"/v3/maintenance/snapshot", "etcdserverpb.Maintenance", "Snapshot"},
    {"/v3/election/observe", "v3electionpb.Election", "Observe"},
};

http::HttpResponse JsonResponse(int status, std::string body) {
  http::HttpResponse r;
  r.status = status;
  r.content_type = "application/json";
  r.body = std::move(body);
  return r;
}

std::string FromByteBuffer(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const auto& s : slices) out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  return out;
}

// The Go name golang/protobuf gives an enum: package.Outer_Inner_Enum.
std::string GoEnumName(const google::protobuf::EnumDescriptor* e) {
  std::string name = e->name();
  for (const auto* m = e->containing_type(); m != nullptr; m = m->containing_type()) name = m->name() + "_" + name;
  return e->file()->package() + "." + name;
}

// Drops the members of `j` that are no field of `type` (by proto or JSON
// name), at every depth, as grpc-gateway ignores unknown fields; returns
// the gateway's error for an enum value given by an unknown name (which
// protobuf's ignore_unknown_fields would let through), or "".
std::string DropUnknownFields(nlohmann::json& j, const google::protobuf::Descriptor* type) {
  if (!j.is_object()) return "";
  for (auto it = j.begin(); it != j.end();) {
    const google::protobuf::FieldDescriptor* f = type->FindFieldByName(it.key());
    for (int i = 0; f == nullptr && i < type->field_count(); ++i) {
      if (type->field(i)->json_name() == it.key()) f = type->field(i);
    }
    if (f == nullptr) {
      it = j.erase(it);
      continue;
    }
    std::string error;
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE && !f->is_map()) {
      if (it->is_array()) {
        for (auto& e : *it) {
          if (error.empty()) error = DropUnknownFields(e, f->message_type());
        }
      } else {
        error = DropUnknownFields(*it, f->message_type());
      }
    } else if (f->type() == google::protobuf::FieldDescriptor::TYPE_ENUM) {
      auto check = [&](const nlohmann::json& v) {
        if (v.is_string() && f->enum_type()->FindValueByName(v.get<std::string>()) == nullptr && error.empty()) {
          error = "unknown value " + nlohmann::json(v).dump() + " for enum " + GoEnumName(f->enum_type());
        }
      };
      if (it->is_array()) {
        for (const auto& e : *it) check(e);
      } else {
        check(*it);
      }
    }
    if (!error.empty()) return error;
    ++it;
  }
  return "";
}

// The request message `type` from one JSON value, or the gateway's error.
grpc::Status ParseRequest(nlohmann::json j, google::protobuf::Message* message) {
  if (!j.is_object()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "the request body is not a JSON object");
  std::string error = DropUnknownFields(j, message->GetDescriptor());
  if (!error.empty()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, error);
  auto parsed = google::protobuf::util::JsonStringToMessage(
      j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), message);
  if (!parsed.ok()) return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, std::string(parsed.message()));
  return grpc::Status::OK;
}

grpc::ByteBuffer ToByteBuffer(const google::protobuf::Message& message) {
  const std::string wire = message.SerializeAsString();
  grpc::Slice slice(wire);
  return grpc::ByteBuffer(&slice, 1);
}

// `wire` (a serialized `type`) in grpc-gateway's JSON, or "" if it does not parse.
std::string ToJson(const google::protobuf::Descriptor* type, const grpc::ByteBuffer& wire) {
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<google::protobuf::Message> out(factory->GetPrototype(type)->New());
  if (!out->ParseFromString(FromByteBuffer(wire))) return "";
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(*out, &json, print).ok()) return "";
  return json;
}

// Removes the element holding `item` from `set`; returns it (null if none).
template <typename T>
std::shared_ptr<T> TakeOut(std::set<std::shared_ptr<T>>* set, const T* item) {
  for (auto it = set->begin(); it != set->end(); ++it) {
    if (it->get() == item) {
      std::shared_ptr<T> out = *it;
      set->erase(it);
      return out;
    }
  }
  return nullptr;
}

const char* HttpStatusText(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 429: return "Too Many Requests";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Internal Server Error";
  }
}

}  // namespace

// One call in flight: its context, buffers and the way back to the client.
// Held by the gateway's in-flight set until gRPC reports it done.
struct JsonGateway::Call {
  grpc::ClientContext context;
  std::shared_ptr<http::ResponseWriter> writer;
  const google::protobuf::MethodDescriptor* method = nullptr;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;
};

// A streaming call: writes the body's messages, then closes its side;
// forwards each response message as a line; ends with the stream.
class JsonGateway::StreamCall : public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  StreamCall(JsonGateway* gateway, const google::protobuf::MethodDescriptor* method,
             std::shared_ptr<http::ResponseWriter> writer, std::vector<grpc::ByteBuffer> requests)
      : gateway_(gateway), method_(method), writer_(std::move(writer)), requests_(std::move(requests)) {}

  grpc::ClientContext* context() { return &context_; }

  void Start() {
    StartRead(&in_);
    if (requests_.empty()) {
      StartWritesDone();
    } else {
      StartWrite(&requests_[0]);
    }
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    if (ok && ++next_ < requests_.size()) {
      StartWrite(&requests_[next_]);
    } else if (ok) {
      StartWritesDone();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) return;  // the stream is over; OnDone follows
    const std::string json = ToJson(method_->output_type(), in_);
    if (!began_) {
      http::HttpResponse head;
      head.content_type = "application/json";
      head.headers.emplace_back("Grpc-Metadata-Content-Type", "application/grpc");
      began_ = writer_->Begin(head);
    }
    if (!began_ || json.empty() || !writer_->Write("{\"result\":" + json + "}\n")) {
      // The client is gone or does not read: stop the call.
      context_.TryCancel();
      return;
    }
    StartRead(&in_);
  }

  void OnDone(const grpc::Status& status) override {
    // Keeps this alive to the end of OnDone whoever else lets it go.
    std::shared_ptr<StreamCall> self = gateway_->Done(this);
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      const int http_status = HttpStatusFor(status.error_code());
      if (!began_) {
        writer_->Send(ErrorResponse(status.error_code(), status.error_message()));
      } else {
        // grpc-gateway's error chunk once the response has begun.
        nlohmann::ordered_json e;
        e["grpc_code"] = static_cast<int>(status.error_code());
        e["http_code"] = http_status;
        e["message"] = status.error_message();
        e["http_status"] = HttpStatusText(http_status);
        nlohmann::ordered_json chunk;
        chunk["error"] = e;
        writer_->Write(chunk.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
      }
    } else if (!began_) {
      http::HttpResponse head;
      head.content_type = "application/json";
      writer_->Begin(head);
    }
    writer_->End();
  }

 private:
  JsonGateway* const gateway_;
  const google::protobuf::MethodDescriptor* const method_;
  std::shared_ptr<http::ResponseWriter> writer_;
  std::vector<grpc::ByteBuffer> requests_;
  size_t next_ = 0;
  grpc::ClientContext context_;
  grpc::ByteBuffer in_;
  bool began_ = false;
};

JsonGateway::JsonGateway(std::shared_ptr<grpc::Channel> channel) : channel_(channel), stub_(channel) {}

JsonGateway::~JsonGateway() {
  Stop();
  // Cancelled calls finish quickly; their callbacks use this object.
  std::unique_lock<std::mutex> lock(mu_);
  if (!done_cv_.wait_for(lock, std::chrono::seconds(10), [this] { return calls_.empty() && streams_.empty(); })) {
    CAIRN_LOG(kError) << "json gateway: " << calls_.size() + streams_.size() << " call(s) still in flight at exit";
  }
}

int JsonGateway::HttpStatusFor(grpc::StatusCode code) {
  // grpc-gateway v1's HTTPStatusFromCode.
  switch (code) {
    case grpc::StatusCode::OK: return 200;
    case grpc::StatusCode::CANCELLED: return 408;
    case grpc::StatusCode::UNKNOWN: return 500;
    case grpc::StatusCode::INVALID_ARGUMENT: return 400;
    case grpc::StatusCode::DEADLINE_EXCEEDED: return 504;
    case grpc::StatusCode::NOT_FOUND: return 404;
    case grpc::StatusCode::ALREADY_EXISTS: return 409;
    case grpc::StatusCode::PERMISSION_DENIED: return 403;
    case grpc::StatusCode::UNAUTHENTICATED: return 401;
    case grpc::StatusCode::RESOURCE_EXHAUSTED: return 429;
    case grpc::StatusCode::FAILED_PRECONDITION: return 400;
    case grpc::StatusCode::ABORTED: return 409;
    case grpc::StatusCode::OUT_OF_RANGE: return 400;
    case grpc::StatusCode::UNIMPLEMENTED: return 501;
    case grpc::StatusCode::INTERNAL: return 500;
    case grpc::StatusCode::UNAVAILABLE: return 503;
    case grpc::StatusCode::DATA_LOSS: return 500;
    default: return 500;
  }
}

http::HttpResponse JsonGateway::ErrorResponse(grpc::StatusCode code, const std::string& message) {
  nlohmann::ordered_json body;
  body["error"] = message;
  body["code"] = static_cast<int>(code);
  body["message"] = message;
  // Messages are the server's own text; invalid UTF-8 is replaced, not thrown on.
  return JsonResponse(HttpStatusFor(code), body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
}

void JsonGateway::Register(http::ClientListener* listener) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  auto find = [pool](const Route& route) {
    const auto* service = pool->FindServiceByName(route.service);
    CHECK(service != nullptr) << "no service " << route.service;
    const auto* method = service->FindMethodByName(route.method);
    CHECK(method != nullptr) << "no method " << route.method << " in " << route.service;
    return method;
  };
  // etcd still answers the paths of 3.3's /v3beta/ gateway.
  for (const std::string prefix : {"/v3/", "/v3beta/"}) {
    for (const Route& route : kRoutes) {
      const auto* method = find(route);
      listener->HandleAsync("POST", prefix + (route.path + 4),
                            [this, method](const http::HttpRequest& r, std::shared_ptr<http::ResponseWriter> w) {
                              Unary(method, r, std::move(w));
                            });
    }
    for (const Route& route : kStreamRoutes) {
      const auto* method = find(route);
      listener->HandleAsync("POST", prefix + (route.path + 4),
                            [this, method](const http::HttpRequest& r, std::shared_ptr<http::ResponseWriter> w) {
                              Stream(method, r, std::move(w));
                            });
    }
    // grpc-gateway's answer for a path it has no binding for.
    listener->Handle("POST", prefix, [](const http::HttpRequest&) { return http::TextResponse(404, "Not Found\n"); });
  }
}

void JsonGateway::Stop() {
  // Cancelled outside the lock: gRPC may run a call's callback (which takes
  // it) inline in TryCancel.
  std::vector<std::shared_ptr<Call>> calls;
  std::vector<std::shared_ptr<StreamCall>> streams;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopped_ = true;
    calls.assign(calls_.begin(), calls_.end());
    streams.assign(streams_.begin(), streams_.end());
  }
  for (const auto& call : calls) call->context.TryCancel();
  for (const auto& stream : streams) stream->context()->TryCancel();
}

void JsonGateway::Authorize(const http::HttpRequest& request, grpc::ClientContext* context) {
  std::string auth(request.Header("Authorization"));
  if (!auth.empty()) context->AddMetadata("authorization", auth);
}

void JsonGateway::Unary(const google::protobuf::MethodDescriptor* method, const http::HttpRequest& request,
                        std::shared_ptr<http::ResponseWriter> writer) {
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<google::protobuf::Message> in(factory->GetPrototype(method->input_type())->New());
  if (request.body.find_first_not_of(" \t\r\n") != std::string::npos) {
    nlohmann::json j = nlohmann::json::parse(request.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      writer->Send(ErrorResponse(grpc::StatusCode::INVALID_ARGUMENT, "invalid JSON in the request body"));
      return;
    }
    grpc::Status parsed = ParseRequest(std::move(j), in.get());
    if (!parsed.ok()) {
      writer->Send(ErrorResponse(parsed.error_code(), parsed.error_message()));
      return;
    }
  }
  auto owned = std::make_shared<Call>();
  Call* call = owned.get();
  call->writer = std::move(writer);
  call->method = method;
  call->request = ToByteBuffer(*in);
  Authorize(request, &call->context);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) {
      call->writer->Send(ErrorResponse(grpc::StatusCode::UNAVAILABLE, "etcdserver: server stopped"));
      return;
    }
    calls_.insert(owned);
  }
  // A client that leaves stops a call that may wait for ever (a Lock).
  call->writer->OnClose([weak = std::weak_ptr<Call>(owned)] {
    if (auto c = weak.lock()) c->context.TryCancel();
  });
  stub_.UnaryCall(&call->context, "/" + method->service()->full_name() + "/" + method->name(), grpc::StubOptions(),
                  &call->request, &call->response, [this, call](grpc::Status status) {
                    if (!status.ok()) {
                      call->writer->Send(ErrorResponse(status.error_code(), status.error_message()));
                    } else {
                      std::string json = ToJson(call->method->output_type(), call->response);
                      call->writer->Send(
                          json.empty() ? ErrorResponse(grpc::StatusCode::INTERNAL,
                                                       "cannot print the response of " + call->method->full_name())
                                       : JsonResponse(200, std::move(json)));
                    }
                    std::shared_ptr<Call> last;  // freed outside the lock
                    std::lock_guard<std::mutex> lock(mu_);
                    last = TakeOut(&calls_, call);
                    done_cv_.notify_all();
                  });
}

void JsonGateway::Stream(const google::protobuf::MethodDescriptor* method, const http::HttpRequest& request,
                         std::shared_ptr<http::ResponseWriter> writer) {
  // The body is a sequence of JSON objects, one request each.
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  std::vector<grpc::ByteBuffer> requests;
  std::istringstream body(request.body);
  for (body >> std::ws; body.peek() != std::char_traits<char>::eof(); body >> std::ws) {
    nlohmann::json j;
    try {
      body >> j;
    } catch (const nlohmann::json::exception& e) {
      // grpc-gateway: a body it cannot decode is an error without a gRPC code.
      writer->Send(ErrorResponse(grpc::StatusCode::UNKNOWN, e.what()));
      return;
    }
    std::unique_ptr<google::protobuf::Message> in(factory->GetPrototype(method->input_type())->New());
    grpc::Status parsed = ParseRequest(std::move(j), in.get());
    if (!parsed.ok()) {
      writer->Send(ErrorResponse(grpc::StatusCode::UNKNOWN, parsed.error_message()));
      return;
    }
    requests.push_back(ToByteBuffer(*in));
  }
  if (requests.empty()) requests.emplace_back();  // an empty body is the empty message
  auto stream = std::make_shared<StreamCall>(this, method, writer, std::move(requests));
  Authorize(request, stream->context());
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) {
      writer->Send(ErrorResponse(grpc::StatusCode::UNAVAILABLE, "etcdserver: server stopped"));
      return;
    }
    streams_.insert(stream);
  }
  writer->OnClose([weak = std::weak_ptr<StreamCall>(stream)] {
    if (auto s = weak.lock()) s->context()->TryCancel();
  });
  stub_.PrepareBidiStreamingCall(stream->context(), "/" + method->service()->full_name() + "/" + method->name(),
                                 grpc::StubOptions(), stream.get());
  stream->Start();
}

std::shared_ptr<JsonGateway::StreamCall> JsonGateway::Done(StreamCall* stream) {
  std::lock_guard<std::mutex> lock(mu_);
  std::shared_ptr<StreamCall> self = TakeOut(&streams_, stream);
  done_cv_.notify_all();
  return self;
}

}  // namespace cairn::api

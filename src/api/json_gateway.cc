#include "api/json_gateway.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/dynamic_message.h>
#include <google/protobuf/util/json_util.h>

#include <future>
#include <nlohmann/json.hpp>

#include "common/check.h"

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

}  // namespace

JsonGateway::JsonGateway(std::shared_ptr<grpc::Channel> channel) : channel_(channel), stub_(channel) {}

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
  for (const Route& route : kRoutes) {
    const auto* service = pool->FindServiceByName(route.service);
    CHECK(service != nullptr) << "no service " << route.service;
    const auto* method = service->FindMethodByName(route.method);
    CHECK(method != nullptr) << "no method " << route.method << " in " << route.service;
    listener->Handle("POST", route.path, [this, method](const http::HttpRequest& r) { return Call(method, r); });
  }
  // grpc-gateway's answer for a path it has no binding for.
  listener->Handle("POST", "/v3/", [](const http::HttpRequest&) { return http::TextResponse(404, "Not Found\n"); });
}

void JsonGateway::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  stopped_ = true;
  for (grpc::ClientContext* c : in_flight_) c->TryCancel();
}

http::HttpResponse JsonGateway::Call(const google::protobuf::MethodDescriptor* method,
                                     const http::HttpRequest& request) {
  auto* factory = google::protobuf::MessageFactory::generated_factory();
  std::unique_ptr<google::protobuf::Message> in(factory->GetPrototype(method->input_type())->New());
  if (request.body.find_first_not_of(" \t\r\n") != std::string::npos) {
    nlohmann::json j = nlohmann::json::parse(request.body, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return ErrorResponse(grpc::StatusCode::INVALID_ARGUMENT, "invalid JSON in the request body");
    if (!j.is_object()) {
      return ErrorResponse(grpc::StatusCode::INVALID_ARGUMENT, "the request body is not a JSON object");
    }
    std::string error = DropUnknownFields(j, method->input_type());
    if (!error.empty()) return ErrorResponse(grpc::StatusCode::INVALID_ARGUMENT, error);
    auto parsed = google::protobuf::util::JsonStringToMessage(
        j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace), in.get());
    if (!parsed.ok()) return ErrorResponse(grpc::StatusCode::INVALID_ARGUMENT, std::string(parsed.message()));
  }

  grpc::ClientContext context;
  std::string auth(request.Header("Authorization"));
  if (!auth.empty()) context.AddMetadata("authorization", auth);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopped_) return ErrorResponse(grpc::StatusCode::UNAVAILABLE, "etcdserver: server stopped");
    in_flight_.insert(&context);
  }
  const std::string wire = in->SerializeAsString();
  grpc::Slice slice(wire);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  std::promise<grpc::Status> done;
  stub_.UnaryCall(&context, "/" + method->service()->full_name() + "/" + method->name(), grpc::StubOptions(),
                  &request_buffer, &response_buffer, [&done](grpc::Status s) { done.set_value(std::move(s)); });
  const grpc::Status status = done.get_future().get();
  {
    std::lock_guard<std::mutex> lock(mu_);
    in_flight_.erase(&context);
  }
  if (!status.ok()) return ErrorResponse(status.error_code(), status.error_message());

  std::unique_ptr<google::protobuf::Message> out(factory->GetPrototype(method->output_type())->New());
  if (!out->ParseFromString(FromByteBuffer(response_buffer))) {
    return ErrorResponse(grpc::StatusCode::INTERNAL, "cannot parse the response of " + method->full_name());
  }
  google::protobuf::util::JsonPrintOptions print;
  print.preserve_proto_field_names = true;
  std::string json;
  auto printed = google::protobuf::util::MessageToJsonString(*out, &json, print);
  if (!printed.ok()) return ErrorResponse(grpc::StatusCode::INTERNAL, std::string(printed.message()));
  return JsonResponse(200, std::move(json));
}

}  // namespace cairn::api

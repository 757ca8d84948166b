// Unary request messages that cairn parses itself rather than gRPC.
//
// gRPC C++ answers a request whose bytes do not parse as the method's message
// with UNIMPLEMENTED and no message (its CallbackUnaryHandler drops the
// deserialization status); etcd (grpc-go) answers INTERNAL "grpc: error
// unmarshalling request: <reason>". gRPC C++ also parses with protobuf's
// default recursion limit, which refuses valid nested txns that etcd applies
// (common/proto_parse.h).
//
// So every unary method of cairn's services is registered with ParsedRequest
// as its request type: its SerializationTraits never fail, they only take the
// bytes, and the handler that ParsesRequests registers parses them with the
// service's recursion limit, answers etcd's error when they do not parse, and
// otherwise calls the service's typed method as the generated code would. The
// typed methods (KvService::Range, ...) stay as they are. A method served on
// gRPC's async API instead (KV's writes, api/async_unary.h) receives the same
// ParsedRequest and its server calls ParseAsync, which makes the same checks.
//
// Every unary method and server stream is registered so, implemented or not,
// which lets the metrics interceptor know that the received message of a call
// without a client stream is a ParsedRequest. Client streams (Watch,
// LeaseKeepAlive) are registered raw and parse each message themselves.
#pragma once

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/support/proto_buffer_reader.h>

#include <algorithm>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/check.h"

namespace cairn::api {

// Why a request did not parse.
struct ParseError {
  std::string reason;
  bool too_deep = false;  // well-formed as far as read, but nested deeper than allowed
};

// The request of a unary call, as gRPC received it. Lives until the call is
// done (gRPC owns it), so the message parsed from it may be used until then.
class ParsedRequest {
 public:
  // Bytes received, as counted before parsing.
  size_t wire_bytes() const { return wire_bytes_; }

  // Parses the received bytes into a new M owned by this request; the bytes
  // are released. Returns nullptr and sets *error when they are not an M.
  // Called once, by the method's handler.
  template <class M>
  M* Parse(int recursion_limit, ParseError* error) const {
    auto message = std::make_unique<M>();
    if (!ParseInto(recursion_limit, message.get(), error)) return nullptr;
    M* raw = message.get();
    message_ = std::move(message);
    return raw;
  }

 private:
  friend class grpc::SerializationTraits<ParsedRequest, void>;

  bool ParseInto(int recursion_limit, google::protobuf::Message* out, ParseError* error) const;

  // The handler gets a const request (gRPC's signature); parsing is the one
  // change it makes.
  mutable grpc::ByteBuffer bytes_;
  mutable std::unique_ptr<google::protobuf::Message> message_;
  size_t wire_bytes_ = 0;
};

// The status etcd (grpc-go) answers a unary request that does not parse.
grpc::Status UnmarshalError(const std::string& reason);

// The status etcd (grpc-go) ends a stream with when a message it receives
// does not parse (the reason follows after a space).
grpc::Status StreamUnmarshalError(const std::string& reason);

// A server stream refused before it began.
template <class Response>
class RefusedWriteReactor final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit RefusedWriteReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

// Ends a bidi stream at once with `status`.
template <class Request, class Response>
class RefusedBidiReactor final : public grpc::ServerBidiReactor<Request, Response> {
 public:
  explicit RefusedBidiReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

inline grpc::Status NotSupportedForLearner() {
  return grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: rpc not supported for learner");
}

// A mixin for a generated callback service (etcdserverpb::KV::CallbackService)
// that registers its unary methods with ParsedRequest.
//
// REQUIRES: the derived constructor calls ParseRequest once per implemented
// unary method, then ParseRemainingRequests.
template <class Base>
class ParsesRequests : public Base {
 protected:
  // `service` is the full name ("etcdserverpb.KV"); requests are parsed with
  // at most `recursion_limit` nested messages.
  ParsesRequests(const char* service, int recursion_limit)
      : service_(google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service)),
        recursion_limit_(recursion_limit) {
    CHECK(service_ != nullptr) << "no service " << service;
  }

  // Registers `method` (the service's typed handler for the method `name`).
  // A request nested deeper than the recursion limit is answered with
  // `too_deep` if given (etcd refuses it for another reason), else as one
  // that does not parse.
  template <class Self, class Request, class Response>
  void ParseRequest(const char* name,
                    grpc::ServerUnaryReactor* (Self::*method)(grpc::CallbackServerContext*,
                                                              const Request*, Response*),
                    std::optional<grpc::Status> too_deep = std::nullopt) {
    const google::protobuf::MethodDescriptor* m = FindUnary(name);
    CHECK(m->input_type() == Request::descriptor()) << m->full_name() << " takes another request";
    CHECK(m->output_type() == Response::descriptor()) << m->full_name() << " gives another response";
    Self* self = static_cast<Self*>(this);
    this->MarkMethodCallback(
        m->index(), new grpc::internal::CallbackUnaryHandler<ParsedRequest, Response>(
                        [self, method, too_deep](grpc::CallbackServerContext* context, const ParsedRequest* in,
                                                 Response* response) {
                          grpc::Status refusal;
                          const Request* request = self->template CheckAndParse<Request>(*context, *in, too_deep,
                                                                                         &refusal);
                          if (request == nullptr) {
                            auto* reactor = context->DefaultReactor();
                            reactor->Finish(refusal);
                            return reactor;
                          }
                          return (self->*method)(context, request, response);
                        }));
    registered_.push_back(m);
  }

  // Registers `method`, the typed handler for the server stream `name`.
  template <class Self, class Request, class Response>
  void ParseRequest(const char* name, grpc::ServerWriteReactor<Response>* (
                                          Self::*method)(grpc::CallbackServerContext*, const Request*)) {
    const google::protobuf::MethodDescriptor* m = service_->FindMethodByName(name);
    CHECK(m != nullptr) << "no method " << name << " in " << service_->full_name();
    CHECK(!m->client_streaming() && m->server_streaming()) << m->full_name() << " is no server stream";
    CHECK(m->input_type() == Request::descriptor()) << m->full_name() << " takes another request";
    Self* self = static_cast<Self*>(this);
    const int limit = recursion_limit_;
    this->MarkMethodCallback(
        m->index(),
        new grpc::internal::CallbackServerStreamingHandler<ParsedRequest, Response>(
            [self, method, limit](grpc::CallbackServerContext* context,
                                  const ParsedRequest* in) -> grpc::ServerWriteReactor<Response>* {
              if (self->MissingRequiredLeader(context)) {
                return new RefusedWriteReactor<Response>(
                    grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader"));
              }
              ParseError error;
              const Request* request = in->Parse<Request>(limit, &error);
              if (request == nullptr) {
                return new RefusedWriteReactor<Response>(StreamUnmarshalError(error.reason));
              }
              if (self->RefusedForLearner(*request)) return new RefusedWriteReactor<Response>(NotSupportedForLearner());
              return (self->*method)(context, request);
            }));
    registered_.push_back(m);
  }

  // etcd's `hasleader` metadata: a call that carries "hasleader: true" is
  // answered "etcdserver: no leader" while `leader_known` says there is none
  // (clientv3.WithRequireLeader). Set in the derived constructor.
  void SetLeaderCheck(std::function<bool()> leader_known) { leader_known_ = std::move(leader_known); }
  bool MissingRequiredLeader(const grpc::ServerContextBase* context) const {
    if (!leader_known_ || leader_known_()) return false;
    auto range = context->client_metadata().equal_range("hasleader");
    for (auto it = range.first; it != range.second; ++it) {
      if (it->second == "true") return true;
    }
    return false;
  }

  // etcd's learner rule: while `is_learner` says so, a request `allowed`
  // does not accept is answered "etcdserver: rpc not supported for
  // learner" (etcd serves a learner only Status, serializable Range and the
  // Snapshot stream). Set in the derived constructor; without `allowed`
  // nothing is served to a learner.
  void SetLearnerCheck(std::function<bool()> is_learner,
                       std::function<bool(const google::protobuf::Message&)> allowed = nullptr) {
    is_learner_ = std::move(is_learner);
    learner_allowed_ = std::move(allowed);
  }
  bool IsLearner() const { return is_learner_ && is_learner_(); }
  bool RefusedForLearner(const google::protobuf::Message& request) const {
    return IsLearner() && !(learner_allowed_ && learner_allowed_(request));
  }

  // Leaves the unary method `name` to gRPC's async API (the generated
  // WithAsyncMethod_ base marked it so): ParseRemainingRequests skips it, and
  // its calls are served with ParseAsync. Returns its index.
  int ServeAsync(const char* name) {
    const google::protobuf::MethodDescriptor* m = FindUnary(name);
    registered_.push_back(m);
    return m->index();
  }
  // For a call of an async method that arrived: CheckAndParse, answering
  // the call when it refuses. Returns the request, or nullptr once answered
  // (`Call` has context, request and Finish).
  template <class Request, class Call>
  const Request* ParseAsync(Call* call, const std::optional<grpc::Status>& too_deep = std::nullopt) const {
    grpc::Status refusal;
    const Request* request = CheckAndParse<Request>(call->context, call->request, too_deep, &refusal);
    if (request == nullptr) call->Finish(refusal);
    return request;
  }

  // What every unary call is checked for before its typed method: etcd's
  // "no leader" for a call that requires one, the unmarshal error (or
  // `too_deep`, see ParseRequest), the learner rule. Returns the parsed
  // request, or nullptr with the answer in *refusal.
  template <class Request>
  const Request* CheckAndParse(const grpc::ServerContextBase& context, const ParsedRequest& in,
                               const std::optional<grpc::Status>& too_deep, grpc::Status* refusal) const {
    if (MissingRequiredLeader(&context)) {
      *refusal = grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader");
      return nullptr;
    }
    ParseError error;
    const Request* request = in.template Parse<Request>(recursion_limit_, &error);
    if (request == nullptr) {
      *refusal = error.too_deep && too_deep ? *too_deep : UnmarshalError(error.reason);
      return nullptr;
    }
    if (RefusedForLearner(*request)) {
      *refusal = NotSupportedForLearner();
      return nullptr;
    }
    return request;
  }

 public:
  // Asks gRPC for a call of the async unary method `index` (see ServeAsync).
  template <class Response>
  void RequestAsyncCall(int index, grpc::ServerContext* context, ParsedRequest* request,
                        grpc::ServerAsyncResponseWriter<Response>* writer, grpc::CompletionQueue* answers,
                        grpc::ServerCompletionQueue* arrivals, void* tag) {
    this->RequestAsyncUnary(index, context, request, writer, answers, arrivals, tag);
  }

 protected:
  // The index of method `name`, for registering client streams by hand.
  int MethodIndex(const char* name) const {
    const google::protobuf::MethodDescriptor* m = service_->FindMethodByName(name);
    CHECK(m != nullptr) << "no method " << name << " in " << service_->full_name();
    return m->index();
  }

  // Registers the unary methods cairn does not implement: they answer
  // UNIMPLEMENTED, as before, without parsing.
  void ParseRemainingRequests() {
    for (int i = 0; i < service_->method_count(); i++) {
      const google::protobuf::MethodDescriptor* m = service_->method(i);
      if (m->client_streaming()) continue;
      CHECK(!m->server_streaming() || std::find(registered_.begin(), registered_.end(), m) !=
                                          registered_.end())
          << m->full_name() << ": a server stream must be registered with ParseRequest";
      if (std::find(registered_.begin(), registered_.end(), m) != registered_.end()) continue;
      this->MarkMethodCallback(
          i, new grpc::internal::CallbackUnaryHandler<ParsedRequest, grpc::ByteBuffer>(
                 [](grpc::CallbackServerContext* context, const ParsedRequest*, grpc::ByteBuffer*) {
                   auto* reactor = context->DefaultReactor();
                   reactor->Finish(grpc::Status(grpc::StatusCode::UNIMPLEMENTED, ""));
                   return reactor;
                 }));
    }
  }

 private:
  const google::protobuf::MethodDescriptor* FindUnary(const char* name) const {
    const google::protobuf::MethodDescriptor* m = service_->FindMethodByName(name);
    CHECK(m != nullptr) << "no method " << name << " in " << service_->full_name();
    CHECK(!m->client_streaming() && !m->server_streaming()) << m->full_name() << " is a stream";
    return m;
  }

  const google::protobuf::ServiceDescriptor* const service_;
  const int recursion_limit_;
  std::vector<const google::protobuf::MethodDescriptor*> registered_;
  std::function<bool()> leader_known_;
  std::function<bool()> is_learner_;
  std::function<bool(const google::protobuf::Message&)> learner_allowed_;
};

}  // namespace cairn::api

namespace grpc {

// Takes the bytes as they are; cairn parses them (see above).
template <>
class SerializationTraits<cairn::api::ParsedRequest, void> {
 public:
  static Status Serialize(const cairn::api::ParsedRequest& /*msg*/, ByteBuffer* /*bb*/,
                          bool* /*own_buffer*/) {
    return Status(StatusCode::INTERNAL, "a ParsedRequest is never sent");
  }
  static Status Deserialize(ByteBuffer* buffer, cairn::api::ParsedRequest* msg) {
    msg->wire_bytes_ = buffer->Length();
    msg->bytes_.Swap(buffer);
    return Status::OK;
  }
};

}  // namespace grpc

// What every gRPC service of a member shares: the node, the limits, and the
// one place where a cairn Status becomes a wire error.
//
// Thread-safe: read-only after construction (the pointees are thread-safe).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <string>

#include "apply/auth_store.h"
#include "cairnpb/internal.pb.h"
#include "common/metrics.h"
#include "common/status.h"
#include "etcdserverpb/rpc.pb.h"
#include "server/node.h"

namespace cairn::api {

struct ApiLimits {
  int max_txn_ops = 128;                      // --max-txn-ops
  size_t max_request_bytes = 1536 * 1024;     // --max-request-bytes
  int64_t quota_backend_bytes = 2LL << 30;    // --quota-backend-bytes (0 = default 2 GiB)
};

struct ApiContext {
  server::Node* node = nullptr;
  Metrics* metrics = nullptr;
  ApiLimits limits;
  std::string name;
  std::vector<std::string> client_urls;
  std::vector<std::string> peer_urls;
  std::string version = "3.5.0";
  // Since when (steady-clock ms, 0 = not connected) a peer has answered its
  // probes, and the clock it uses: etcd's "unhealthy cluster" checks.
  std::function<int64_t(uint64_t member_id)> peer_connected_since_ms;
  std::function<int64_t()> now_ms;
  // Whether this member is a learner (kept by the server from the member
  // table; etcd serves a learner only a few RPCs).
  std::function<bool()> is_learner;
  bool IsLearner() const { return is_learner && is_learner(); }
  // --bcrypt-cost.
  int bcrypt_cost = 10;
  // --client-cert-auth on an https URL: the CN of the verified client
  // certificate of the gRPC peer `peer` (grpc::ServerContext::peer()), ""
  // if none. Unset: no certificate identities.
  std::function<std::string(const std::string& peer)> tls_common_name;

  apply::AuthStore* auth() const { return node->applier()->auth(); }
  // etcd's AuthInfoFromCtx: no credentials when auth is off or none came;
  // the token's user (metadata "token", or "authorization" from the JSON
  // gateway) at the store's revision; else, with --client-cert-auth, the
  // client certificate's CN; "etcdserver: invalid auth token" for a token
  // this member does not know.
  Result<apply::AuthInfo> AuthInfoOf(const grpc::ServerContextBase& context) const;
  // etcd's requireAuthInfo: once auth is on, a call needs a user
  // ("etcdserver: user name is empty" without one).
  Status RequireUser(const grpc::ServerContextBase& context) const;
  // etcd's IsAdminPermitted on the caller: once auth is on, root only.
  Status RequireRoot(const grpc::ServerContextBase& context) const;

  // Fills cluster_id, member_id, raft_term, and the revision if it is 0.
  void FillHeader(etcdserverpb::ResponseHeader* h) const {
    FillClusterHeader(h);
    if (h->revision() == 0) h->set_revision(node->kv()->CurrentRevision());
  }
  // etcd's ClusterServer.header(): the member RPCs' header has no revision.
  void FillClusterHeader(etcdserverpb::ResponseHeader* h) const {
    h->set_cluster_id(node->ids().cluster_id);
    h->set_member_id(node->ids().member_id);
    h->set_raft_term(node->raft_term());
  }
};

inline grpc::Status ToGrpc(const Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(static_cast<int>(s.code())), s.message());
}

inline Status FromResponse(const cairnpb::InternalResponse& r) {
  if (r.error_code() == 0) return Status::Ok();
  return Status(static_cast<Code>(r.error_code()), r.error_message());
}

// Finishes a unary call at once with `s` (reads and validation failures).
inline grpc::ServerUnaryReactor* FinishNow(grpc::CallbackServerContext* context, const Status& s) {
  auto* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpc(s));
  return reactor;
}

// Runs `read` (returns a Status; fills the response) and gives its status to
// `answer`, once. A linearizable read waits until this member reflects every
// write acknowledged before it (Node::LinearizableRead); a serializable one
// reads this member's state at once.
template <typename Read, typename Answer>
void ReadThenAnswer(const ApiContext* ctx, bool linearizable, Read read, Answer answer) {
  if (!linearizable) return answer(ToGrpc(read()));
  ctx->node->LinearizableRead([read = std::move(read), answer](const Status& s) mutable {
    answer(ToGrpc(s.ok() ? read() : s));
  });
}

// ReadThenAnswer for a callback call: finishes its reactor.
template <typename Read>
grpc::ServerUnaryReactor* ReadAndFinish(const ApiContext* ctx, grpc::CallbackServerContext* context,
                                        bool linearizable, Read read) {
  auto* reactor = context->DefaultReactor();
  ReadThenAnswer(ctx, linearizable, std::move(read), [reactor](const grpc::Status& s) { reactor->Finish(s); });
  return reactor;
}

// Proposes `req` after the size and quota checks etcd makes before Raft;
// `done` runs once, with the refusal or (from the apply thread) the applied
// response and its status.
void ProposeChecked(const ApiContext& ctx, cairnpb::InternalRequest req, bool needs_space,
                    std::function<void(const Status&, const cairnpb::InternalResponse&)> done);

// ProposeChecked, then finishes `reactor` with `on_applied`'s status.
void ProposeAndFinish(const ApiContext& ctx, cairnpb::InternalRequest req, bool needs_space,
                      grpc::ServerUnaryReactor* reactor,
                      std::function<Status(const cairnpb::InternalResponse&)> on_applied);

// The unary write RPCs' common shape: propose `req` with the caller's auth
// (the apply checks the permissions) and, once applied, copy the response
// `take(applied)` returns into `response` and fill its header; `answer` gets
// the call's status once (the refusal, or OK).
template <typename Response, typename Take, typename Answer>
void ProposeAndAnswer(const ApiContext* ctx, const grpc::ServerContextBase& context, cairnpb::InternalRequest req,
                      bool needs_space, Response* response, Take take, Answer answer) {
  auto who = ctx->AuthInfoOf(context);
  if (!who.ok()) return answer(ToGrpc(who.status()));
  req.set_auth_user(who->user);
  req.set_auth_revision(who->revision);
  ProposeChecked(*ctx, std::move(req), needs_space,
                 [ctx, response, take, answer](const Status& status, const cairnpb::InternalResponse& applied) {
                   if (!status.ok()) return answer(ToGrpc(status));
                   *response = take(applied);
                   ctx->FillHeader(response->mutable_header());
                   answer(grpc::Status::OK);
                 });
}

// ProposeAndAnswer for a callback call: finishes its reactor, which it
// returns for the handler to return.
template <typename Response, typename Take>
grpc::ServerUnaryReactor* ProposeUnary(const ApiContext* ctx, grpc::CallbackServerContext* context,
                                       cairnpb::InternalRequest req, bool needs_space,
                                       Response* response, Take take) {
  auto* reactor = context->DefaultReactor();
  ProposeAndAnswer(ctx, *context, std::move(req), needs_space, response, take,
                   [reactor](const grpc::Status& s) { reactor->Finish(s); });
  return reactor;
}

}  // namespace cairn::api

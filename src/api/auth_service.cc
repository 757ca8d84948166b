#include "api/auth_service.h"

#include "common/base64.h"
#include "common/logging.h"

namespace cairn::api {
namespace {

constexpr int kRecursionLimit = 16;

// A change with a header-only response.
template <typename Response>
grpc::ServerUnaryReactor* ProposeChange(const ApiContext* ctx, grpc::CallbackServerContext* context,
                                        cairnpb::InternalRequest req, Response* response) {
  return ProposeUnary(ctx, context, std::move(req), false, response,
                      [](const cairnpb::InternalResponse&) { return Response{}; });
}

// A linearizable read of the auth store by `who`: `check` says whether the
// caller may (etcd's authApplierV3 checks), `read` fills the response.
template <typename Response, typename Check, typename Read>
grpc::ServerUnaryReactor* ReadAuth(const ApiContext* ctx, grpc::CallbackServerContext* context, Response* response,
                                   Check check, Read read) {
  auto who = ctx->AuthInfoOf(*context);
  if (!who.ok()) return FinishNow(context, who.status());
  return ReadAndFinish(ctx, context, /*linearizable=*/true,
                       [ctx, response, who = *who, check, read]() -> Status {
                         if (ctx->auth()->enabled()) {
                           if (Status s = check(who); !s.ok()) return s;
                         }
                         Status s = read(response);
                         if (s.ok()) ctx->FillHeader(response->mutable_header());
                         return s;
                       });
}

}  // namespace

AuthService::AuthService(const ApiContext* ctx) : ParsesRequests("etcdserverpb.Auth", kRecursionLimit), ctx_(ctx) {
  ParseRequest("AuthEnable", &AuthService::AuthEnable);
  ParseRequest("AuthDisable", &AuthService::AuthDisable);
  ParseRequest("AuthStatus", &AuthService::AuthStatus);
  ParseRequest("Authenticate", &AuthService::Authenticate);
  ParseRequest("UserAdd", &AuthService::UserAdd);
  ParseRequest("UserGet", &AuthService::UserGet);
  ParseRequest("UserList", &AuthService::UserList);
  ParseRequest("UserDelete", &AuthService::UserDelete);
  ParseRequest("UserChangePassword", &AuthService::UserChangePassword);
  ParseRequest("UserGrantRole", &AuthService::UserGrantRole);
  ParseRequest("UserRevokeRole", &AuthService::UserRevokeRole);
  ParseRequest("RoleAdd", &AuthService::RoleAdd);
  ParseRequest("RoleGet", &AuthService::RoleGet);
  ParseRequest("RoleList", &AuthService::RoleList);
  ParseRequest("RoleDelete", &AuthService::RoleDelete);
  ParseRequest("RoleGrantPermission", &AuthService::RoleGrantPermission);
  ParseRequest("RoleRevokePermission", &AuthService::RoleRevokePermission);
  SetLeaderCheck([ctx] { return ctx->node->leader_id() != 0; });
  SetLearnerCheck([ctx] { return ctx->IsLearner(); });
  ParseRemainingRequests();
}

grpc::ServerUnaryReactor* AuthService::AuthEnable(grpc::CallbackServerContext* context,
                                                  const etcdserverpb::AuthEnableRequest* request,
                                                  etcdserverpb::AuthEnableResponse* response) {
  cairnpb::InternalRequest req;
  *req.mutable_auth_enable() = *request;
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::AuthDisable(grpc::CallbackServerContext* context,
                                                   const etcdserverpb::AuthDisableRequest* request,
                                                   etcdserverpb::AuthDisableResponse* response) {
  cairnpb::InternalRequest req;
  *req.mutable_auth_disable() = *request;
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::AuthStatus(grpc::CallbackServerContext* context,
                                                  const etcdserverpb::AuthStatusRequest*,
                                                  etcdserverpb::AuthStatusResponse* response) {
  const ApiContext* ctx = ctx_;
  return ReadAuth(
      ctx_, context, response, [ctx](const apply::AuthInfo& who) { return ctx->auth()->IsAdminPermitted(who); },
      [ctx](etcdserverpb::AuthStatusResponse* r) {
        r->set_enabled(ctx->auth()->enabled());
        r->set_authrevision(ctx->auth()->revision());
        return Status::Ok();
      });
}

grpc::ServerUnaryReactor* AuthService::Authenticate(grpc::CallbackServerContext* context,
                                                    const etcdserverpb::AuthenticateRequest* request,
                                                    etcdserverpb::AuthenticateResponse* response) {
  // The password is checked here, by the member asked (bcrypt is slow on
  // purpose); the log entry carries no password, only the token's prefix.
  if (ctx_->auth()->enabled() && !guard_.Allowed(request->name())) {
    ctx_->metrics->auth().throttled_logins_total->Increment();
    return FinishNow(context, errors::AuthFailed());
  }
  auto checked = ctx_->auth()->CheckPassword(request->name(), request->password());
  if (!checked.ok()) {
    if (checked.status().message() != errors::AuthNotEnabled().message()) {
      guard_.Failed(request->name());
      ctx_->metrics->auth().failed_logins_total->Increment();
      CAIRN_LOG(kWarn) << "invalid authentication was requested (user \"" << request->name() << "\" from "
                       << context->peer() << "): " << checked.status().message();
    }
    return FinishNow(context, checked.status());
  }
  guard_.Succeeded(request->name());
  cairnpb::InternalRequest req;
  req.mutable_authenticate()->set_name(request->name());
  req.mutable_authenticate()->set_simple_token(apply::AuthStore::NewTokenPrefix());
  auto* reactor = context->DefaultReactor();
  const ApiContext* ctx = ctx_;
  ProposeAndFinish(*ctx_, std::move(req), false, reactor, [ctx, response](const cairnpb::InternalResponse& r) {
    response->set_token(r.authenticate().token());
    ctx->FillHeader(response->mutable_header());
    return Status::Ok();
  });
  return reactor;
}

grpc::ServerUnaryReactor* AuthService::UserAdd(grpc::CallbackServerContext* context,
                                               const etcdserverpb::AuthUserAddRequest* request,
                                               etcdserverpb::AuthUserAddResponse* response) {
  cairnpb::InternalRequest req;
  auto* add = req.mutable_user_add();
  *add = *request;
  if (!request->has_options() || !request->options().no_password()) {
    auto hash = apply::BcryptHash(request->password(), ctx_->bcrypt_cost);
    if (!hash.ok()) return FinishNow(context, hash.status());
    add->set_hashedpassword(Base64Encode(*hash));
    add->clear_password();
  }
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::UserChangePassword(grpc::CallbackServerContext* context,
                                                          const etcdserverpb::AuthUserChangePasswordRequest* request,
                                                          etcdserverpb::AuthUserChangePasswordResponse* response) {
  cairnpb::InternalRequest req;
  auto* change = req.mutable_user_change_password();
  *change = *request;
  auto hash = apply::BcryptHash(request->password(), ctx_->bcrypt_cost);
  if (!hash.ok()) return FinishNow(context, hash.status());
  change->set_hashedpassword(Base64Encode(*hash));
  change->clear_password();
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::UserDelete(grpc::CallbackServerContext* context,
                                                  const etcdserverpb::AuthUserDeleteRequest* request,
                                                  etcdserverpb::AuthUserDeleteResponse* response) {
  cairnpb::InternalRequest req;
  *req.mutable_user_delete() = *request;
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::UserGrantRole(grpc::CallbackServerContext* context,
                                                     const etcdserverpb::AuthUserGrantRoleRequest* request,
                                                     etcdserverpb::AuthUserGrantRoleResponse* response) {
  cairnpb::InternalRequest req;
  *req.mutable_user_grant_role() = *request;
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::UserRevokeRole(grpc::CallbackServerContext* context,
                                                      const etcdserverpb::AuthUserRevokeRoleRequest* request,
                                                      etcdserverpb::AuthUserRevokeRoleResponse* response) {
  cairnpb::InternalRequest req;
  *req.mutable_user_revoke_role() = *request;
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::RoleAdd(grpc::CallbackServerContext* context,
                                               const etcdserverpb::AuthRoleAddRequest* request,
                                               etcdserverpb::AuthRoleAddResponse* response) {
  cairnpb::InternalRequest req;
  *req.mutable_role_add() = *request;
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::RoleDelete(grpc::CallbackServerContext* context,
                                                  const etcdserverpb::AuthRoleDeleteRequest* request,
                                                  etcdserverpb::AuthRoleDeleteResponse* response) {
  cairnpb::InternalRequest req;
  *req.mutable_role_delete() = *request;
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::RoleGrantPermission(grpc::CallbackServerContext* context,
                                                           const etcdserverpb::AuthRoleGrantPermissionRequest* request,
                                                           etcdserverpb::AuthRoleGrantPermissionResponse* response) {
  cairnpb::InternalRequest req;
  *req.mutable_role_grant_permission() = *request;
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::RoleRevokePermission(
    grpc::CallbackServerContext* context, const etcdserverpb::AuthRoleRevokePermissionRequest* request,
    etcdserverpb::AuthRoleRevokePermissionResponse* response) {
  cairnpb::InternalRequest req;
  *req.mutable_role_revoke_permission() = *request;
  return ProposeChange(ctx_, context, std::move(req), response);
}

grpc::ServerUnaryReactor* AuthService::UserGet(grpc::CallbackServerContext* context,
                                               const etcdserverpb::AuthUserGetRequest* request,
                                               etcdserverpb::AuthUserGetResponse* response) {
  const ApiContext* ctx = ctx_;
  const std::string name = request->name();
  return ReadAuth(
      ctx_, context, response,
      [ctx, name](const apply::AuthInfo& who) {
        Status s = ctx->auth()->IsAdminPermitted(who);
        return !s.ok() && name != who.user ? s : Status::Ok();
      },
      [ctx, name](etcdserverpb::AuthUserGetResponse* r) {
        auto got = ctx->auth()->UserGet(name);
        if (!got.ok()) return got.status();
        *r = std::move(*got);
        return Status::Ok();
      });
}

grpc::ServerUnaryReactor* AuthService::UserList(grpc::CallbackServerContext* context,
                                                const etcdserverpb::AuthUserListRequest*,
                                                etcdserverpb::AuthUserListResponse* response) {
  const ApiContext* ctx = ctx_;
  return ReadAuth(
      ctx_, context, response, [ctx](const apply::AuthInfo& who) { return ctx->auth()->IsAdminPermitted(who); },
      [ctx](etcdserverpb::AuthUserListResponse* r) {
        *r = ctx->auth()->UserList();
        return Status::Ok();
      });
}

grpc::ServerUnaryReactor* AuthService::RoleGet(grpc::CallbackServerContext* context,
                                               const etcdserverpb::AuthRoleGetRequest* request,
                                               etcdserverpb::AuthRoleGetResponse* response) {
  const ApiContext* ctx = ctx_;
  const std::string role = request->role();
  return ReadAuth(
      ctx_, context, response,
      [ctx, role](const apply::AuthInfo& who) {
        Status s = ctx->auth()->IsAdminPermitted(who);
        return !s.ok() && !ctx->auth()->HasRole(who.user, role) ? s : Status::Ok();
      },
      [ctx, role](etcdserverpb::AuthRoleGetResponse* r) {
        auto got = ctx->auth()->RoleGet(role);
        if (!got.ok()) return got.status();
        *r = std::move(*got);
        return Status::Ok();
      });
}

grpc::ServerUnaryReactor* AuthService::RoleList(grpc::CallbackServerContext* context,
                                                const etcdserverpb::AuthRoleListRequest*,
                                                etcdserverpb::AuthRoleListResponse* response) {
  const ApiContext* ctx = ctx_;
  return ReadAuth(
      ctx_, context, response, [ctx](const apply::AuthInfo& who) { return ctx->auth()->IsAdminPermitted(who); },
      [ctx](etcdserverpb::AuthRoleListResponse* r) {
        *r = ctx->auth()->RoleList();
        return Status::Ok();
      });
}

}  // namespace cairn::api

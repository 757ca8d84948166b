// etcd's Auth service: users, roles, permissions, enable/disable and login,
// as etcd 3.5's v3_server.go and apply_auth.go do them. Changes go through
// Raft (the apply checks that the caller is root); the reads (UserGet,
// UserList, RoleGet, RoleList, AuthStatus) are linearizable reads of this
// member's auth store with etcd's checks (root, or the user itself, or a
// role it has). Passwords are hashed here with bcrypt (--bcrypt-cost)
// before they are proposed, so the log holds no password.
#pragma once

#include "api/api_context.h"
#include "api/login_guard.h"
#include "api/parsed_request.h"
#include "etcdserverpb/rpc.grpc.pb.h"

namespace cairn::api {

class AuthService final : public ParsesRequests<etcdserverpb::Auth::CallbackService> {
 public:
  explicit AuthService(const ApiContext* ctx);

#define CAIRN_AUTH_METHOD(Name, Request, Response)                                          \
  grpc::ServerUnaryReactor* Name(grpc::CallbackServerContext* context,                      \
                                 const etcdserverpb::Request* request,                      \
                                 etcdserverpb::Response* response) override;
  CAIRN_AUTH_METHOD(AuthEnable, AuthEnableRequest, AuthEnableResponse)
  CAIRN_AUTH_METHOD(AuthDisable, AuthDisableRequest, AuthDisableResponse)
  CAIRN_AUTH_METHOD(AuthStatus, AuthStatusRequest, AuthStatusResponse)
  CAIRN_AUTH_METHOD(Authenticate, AuthenticateRequest, AuthenticateResponse)
  CAIRN_AUTH_METHOD(UserAdd, AuthUserAddRequest, AuthUserAddResponse)
  CAIRN_AUTH_METHOD(UserGet, AuthUserGetRequest, AuthUserGetResponse)
  CAIRN_AUTH_METHOD(UserList, AuthUserListRequest, AuthUserListResponse)
  CAIRN_AUTH_METHOD(UserDelete, AuthUserDeleteRequest, AuthUserDeleteResponse)
  CAIRN_AUTH_METHOD(UserChangePassword, AuthUserChangePasswordRequest, AuthUserChangePasswordResponse)
  CAIRN_AUTH_METHOD(UserGrantRole, AuthUserGrantRoleRequest, AuthUserGrantRoleResponse)
  CAIRN_AUTH_METHOD(UserRevokeRole, AuthUserRevokeRoleRequest, AuthUserRevokeRoleResponse)
  CAIRN_AUTH_METHOD(RoleAdd, AuthRoleAddRequest, AuthRoleAddResponse)
  CAIRN_AUTH_METHOD(RoleGet, AuthRoleGetRequest, AuthRoleGetResponse)
  CAIRN_AUTH_METHOD(RoleList, AuthRoleListRequest, AuthRoleListResponse)
  CAIRN_AUTH_METHOD(RoleDelete, AuthRoleDeleteRequest, AuthRoleDeleteResponse)
  CAIRN_AUTH_METHOD(RoleGrantPermission, AuthRoleGrantPermissionRequest, AuthRoleGrantPermissionResponse)
  CAIRN_AUTH_METHOD(RoleRevokePermission, AuthRoleRevokePermissionRequest, AuthRoleRevokePermissionResponse)
#undef CAIRN_AUTH_METHOD

 private:
  const ApiContext* ctx_;
  LoginGuard guard_;
};

}  // namespace cairn::api

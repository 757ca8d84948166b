// The auth store: users, roles, their key permissions, whether auth is on,
// and the auth revision, exactly as etcd's server/auth/store.go keeps them.
//
// Replicated: every change is a log entry applied here on every member, in
// log order (the Applier calls the mutators from the apply thread; each
// validates first and changes nothing on an error). Persisted in the
// database's kMeta column under "auth/" (users and roles as authpb.User /
// authpb.Role, the same records etcd keeps in its authUsers / authRoles
// buckets), so a restart or a snapshot brings it back with the data.
//
// Permission checks follow etcd's isOpPermitted: off -> allowed; no user
// (revision 0) -> "user name is empty"; a request checked against an older
// auth revision than the store's -> "revision of auth store is old"; the
// root role -> everything; otherwise the union of the user's roles'
// permissions must cover the whole key range (adjacent grants join, as
// etcd's interval tree does), or contain the key for a single-key request.
//
// Simple tokens (etcd's --auth-token simple) are member-local, in memory
// (as etcd's): assigned when an Authenticate entry is applied, so every
// member knows every token; each use extends it by the TTL; a user's tokens
// go when the user is deleted or its password changes, all go when auth is
// disabled. At most kMaxTokens are kept (the oldest go first).
//
// Thread-safety: mutators on the apply thread; everything else from any
// thread (a shared mutex).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "apply/jwt_tokens.h"
#include "authpb/auth.pb.h"
#include "common/status.h"
#include "etcdserverpb/rpc.pb.h"
#include "storage/engine.h"

namespace cairn::apply {

// Who makes a request: a user name and the auth revision it was checked
// against (etcd's AuthInfo). Empty user and revision 0: no credentials.
struct AuthInfo {
  std::string user;
  uint64_t revision = 0;
};

// bcrypt, as etcd uses it (golang.org/x/crypto/bcrypt, "$2a$" hashes), on
// libxcrypt. Hash is slow on purpose (cost 10: ~50-100 ms).
Result<std::string> BcryptHash(std::string_view password, int cost);
bool BcryptMatches(std::string_view hash, std::string_view password);

// The auth store as a database holds it (for etcd-format snapshots).
struct StoredAuth {
  bool enabled = false;
  uint64_t revision = 1;
  std::vector<authpb::User> users;  // by name
  std::vector<authpb::Role> roles;  // by name
};

class AuthStore {
 public:
  static constexpr size_t kMaxTokens = 100000;

  // Reads the stored auth state of `engine` at `snapshot` (null: now).
  static Result<StoredAuth> ReadStored(storage::Engine* engine, const storage::Snapshot* snapshot);
  // Stages `stored` as the auth state of a database being made (an import).
  static void WriteStored(storage::WriteBatch* batch, const StoredAuth& stored);

  explicit AuthStore(storage::Engine* engine);

  // Loads the stored state (again after a snapshot replaced the database).
  Status Open();

  // --- replicated changes (apply thread), staged in `batch` -------------
  Status Enable(storage::WriteBatch* batch);
  void Disable(storage::WriteBatch* batch);
  Status UserAdd(storage::WriteBatch* batch, const etcdserverpb::AuthUserAddRequest& r);
  Status UserDelete(storage::WriteBatch* batch, const etcdserverpb::AuthUserDeleteRequest& r);
  Status UserChangePassword(storage::WriteBatch* batch, const etcdserverpb::AuthUserChangePasswordRequest& r);
  Status UserGrantRole(storage::WriteBatch* batch, const etcdserverpb::AuthUserGrantRoleRequest& r);
  Status UserRevokeRole(storage::WriteBatch* batch, const etcdserverpb::AuthUserRevokeRoleRequest& r);
  Status RoleAdd(storage::WriteBatch* batch, const etcdserverpb::AuthRoleAddRequest& r);
  Status RoleDelete(storage::WriteBatch* batch, const etcdserverpb::AuthRoleDeleteRequest& r);
  Status RoleGrantPermission(storage::WriteBatch* batch, const etcdserverpb::AuthRoleGrantPermissionRequest& r);
  Status RoleRevokePermission(storage::WriteBatch* batch, const etcdserverpb::AuthRoleRevokePermissionRequest& r);
  // An Authenticate entry: the password was checked by the proposer; this
  // checks the user still may log in and returns its token: `simple_token`
  // assigned on this member, or (--auth-token jwt) a signed JWT.
  Result<std::string> Authenticate(const std::string& name, const std::string& simple_token);

  // --- reads (any thread) ------------------------------------------------
  bool enabled() const;
  uint64_t revision() const;
  Result<etcdserverpb::AuthUserGetResponse> UserGet(const std::string& name) const;
  etcdserverpb::AuthUserListResponse UserList() const;
  Result<etcdserverpb::AuthRoleGetResponse> RoleGet(const std::string& role) const;
  etcdserverpb::AuthRoleListResponse RoleList() const;
  bool HasRole(const std::string& user, const std::string& role) const;
  // The password check before an Authenticate is proposed: the auth
  // revision it was made at, or etcd's error.
  Result<uint64_t> CheckPassword(const std::string& name, const std::string& password) const;

  Status IsRangePermitted(const AuthInfo& ai, std::string_view key, std::string_view range_end) const;
  Status IsPutPermitted(const AuthInfo& ai, std::string_view key) const;
  Status IsDeleteRangePermitted(const AuthInfo& ai, std::string_view key, std::string_view range_end) const;
  Status IsAdminPermitted(const AuthInfo& ai) const;

  // --- simple tokens (member-local) --------------------------------------
  // 16 random letters; the proposer sends it, the apply appends ".<index>".
  static std::string NewTokenPrefix();
  // Who a token names: a simple token's user at the current revision (and
  // the token is extended), a JWT's claims; nullopt for an unknown,
  // expired or forged token.
  std::optional<AuthInfo> TokenInfo(const std::string& token);
  void set_token_ttl(std::chrono::seconds ttl);
  // --auth-token jwt: tokens are JWTs from `jwt` instead of simple tokens.
  // Set before serving.
  void set_jwt(std::unique_ptr<JwtTokens> jwt) {
    std::lock_guard<std::mutex> tl(tokens_mu_);
    jwt_ = std::move(jwt);
  }

  // For snapshots: every user and role as stored.
  std::vector<authpb::User> Users() const;
  std::vector<authpb::Role> Roles() const;

 private:
  using Interval = std::pair<std::string, std::string>;  // [begin, end); end "" = no end
  struct Perms {
    std::vector<Interval> read, write;  // merged, sorted, disjoint
  };
  enum class Access { kRead, kWrite };

  Status Check(const AuthInfo& ai, std::string_view key, std::string_view range_end, Access access) const;
  void PutUser(storage::WriteBatch* batch, const authpb::User& user);
  void PutRole(storage::WriteBatch* batch, const authpb::Role& role);
  void CommitRevision(storage::WriteBatch* batch);
  void RefreshPermsLocked();
  void InvalidateUserTokens(const std::string& user);
  static bool HasRootRole(const authpb::User& user);

  storage::Engine* const engine_;
  mutable std::shared_mutex mu_;
  bool enabled_ = false;                          // GUARDED_BY(mu_)
  uint64_t revision_ = 1;                         // GUARDED_BY(mu_)
  std::map<std::string, authpb::User> users_;     // GUARDED_BY(mu_)
  std::map<std::string, authpb::Role> roles_;     // GUARDED_BY(mu_)
  std::map<std::string, Perms> perms_;            // GUARDED_BY(mu_), by user

  struct Token {
    std::string user;
    std::chrono::steady_clock::time_point expires;
  };
  mutable std::mutex tokens_mu_;
  std::unordered_map<std::string, Token> tokens_;  // GUARDED_BY(tokens_mu_)
  std::chrono::seconds token_ttl_{300};            // GUARDED_BY(tokens_mu_)
  std::shared_ptr<const JwtTokens> jwt_;           // GUARDED_BY(tokens_mu_)
  std::shared_ptr<const JwtTokens> Jwt() const {
    std::lock_guard<std::mutex> tl(tokens_mu_);
    return jwt_;
  }
};

}  // namespace cairn::apply

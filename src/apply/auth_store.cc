#include "apply/auth_store.h"

#include <crypt.h>
#include <openssl/rand.h>

#include <algorithm>
#include <cstring>

#include "common/base64.h"
#include "common/logging.h"

namespace cairn::apply {

using storage::Column;

namespace {

constexpr std::string_view kEnabledKey = "auth/enabled";
constexpr std::string_view kRevisionKey = "auth/revision";
constexpr std::string_view kUserPrefix = "auth/user/";
constexpr std::string_view kRolePrefix = "auth/role/";
constexpr std::string_view kRootUser = "root";
constexpr std::string_view kRootRole = "root";

std::string UserKey(std::string_view name) { return std::string(kUserPrefix) + std::string(name); }
std::string RoleKey(std::string_view name) { return std::string(kRolePrefix) + std::string(name); }

// etcd's isValidPermissionRange.
bool ValidPermissionRange(std::string_view key, std::string_view range_end) {
  if (key.empty()) return false;
  if (range_end.empty()) return true;
  if (range_end == std::string_view("\0", 1)) return true;  // from key on
  return key < range_end;
}

// An interval end: "" means no end (+infinity).
bool EndBefore(const std::string& a, const std::string& b) {  // a < b
  if (a.empty()) return false;
  if (b.empty()) return true;
  return a < b;
}

}  // namespace

namespace {
// etcd's selectPassword: the proposer's hash (base64), or, in an entry from
// before proposers hashed (etcd < 3.5 wrote those too), the password itself.
Result<std::string> SelectPassword(const std::string& password, const std::string& hashed) {
  if (!password.empty() && hashed.empty()) {
    auto hash = BcryptHash(password, 10);
    if (!hash.ok()) return errors::NoPasswordUser();
    return *hash;
  }
  // etcd 3.5 sends the bcrypt hash as Go's base64.StdEncoding.
  auto decoded = Base64Decode(hashed);
  if (!decoded) return errors::NoPasswordUser();
  return *decoded;
}
}  // namespace

Result<std::string> BcryptHash(std::string_view password, int cost) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (crypt_gensalt_rn("$2a$", static_cast<unsigned long>(cost), nullptr, 0, salt, sizeof(salt)) == nullptr) {
    return Status(Code::kInternal, std::string("bcrypt: cannot make a salt: ") + std::strerror(errno));
  }
  struct crypt_data data;
  std::memset(&data, 0, sizeof(data));
  const std::string phrase(password);
  const char* hash = crypt_rn(phrase.c_str(), salt, &data, sizeof(data));
  if (hash == nullptr || hash[0] == '*') return Status(Code::kInternal, "bcrypt: cannot hash the password");
  return std::string(hash);
}

bool BcryptMatches(std::string_view hash, std::string_view password) {
  if (hash.size() < 7 || hash[0] != '$' || hash[1] != '2') return false;
  struct crypt_data data;
  std::memset(&data, 0, sizeof(data));
  const std::string setting(hash), phrase(password);
  const char* out = crypt_rn(phrase.c_str(), setting.c_str(), &data, sizeof(data));
  if (out == nullptr || out[0] == '*') return false;
  const size_t n = std::strlen(out);
  if (n != hash.size()) return false;
  unsigned char diff = 0;  // constant time
  for (size_t i = 0; i < n; i++) diff |= static_cast<unsigned char>(out[i] ^ hash[i]);
  return diff == 0;
}

AuthStore::AuthStore(storage::Engine* engine) : engine_(engine) {}

Result<StoredAuth> AuthStore::ReadStored(storage::Engine* engine, const storage::Snapshot* snapshot) {
  StoredAuth out;
  std::string v;
  auto found = engine->Get(Column::kMeta, kEnabledKey, &v, snapshot);
  if (!found.ok()) return found.status();
  out.enabled = *found && v == "1";
  found = engine->Get(Column::kMeta, kRevisionKey, &v, snapshot);
  if (!found.ok()) return found.status();
  if (*found) {
    if (v.size() != 8) return Status(Code::kDataLoss, "auth: malformed revision");
    out.revision = storage::DecodeFixed64BE(v);
  }
  auto it = engine->NewIterator(Column::kMeta, snapshot);
  for (it->Seek(kUserPrefix); it->Valid() && it->key().starts_with(kUserPrefix); it->Next()) {
    authpb::User u;
    if (!u.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Status(Code::kDataLoss, "auth: malformed user record");
    }
    out.users.push_back(std::move(u));
  }
  for (it->Seek(kRolePrefix); it->Valid() && it->key().starts_with(kRolePrefix); it->Next()) {
    authpb::Role r;
    if (!r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Status(Code::kDataLoss, "auth: malformed role record");
    }
    out.roles.push_back(std::move(r));
  }
  if (!it->status().ok()) return it->status();
  return out;
}

void AuthStore::WriteStored(storage::WriteBatch* batch, const StoredAuth& stored) {
  batch->Put(Column::kMeta, kEnabledKey, stored.enabled ? "1" : "0");
  std::string rev;
  storage::PutFixed64BE(&rev, stored.revision);
  batch->Put(Column::kMeta, kRevisionKey, rev);
  for (const auto& u : stored.users) batch->Put(Column::kMeta, UserKey(u.name()), u.SerializeAsString());
  for (const auto& r : stored.roles) batch->Put(Column::kMeta, RoleKey(r.name()), r.SerializeAsString());
}

Status AuthStore::Open() {
  auto stored = ReadStored(engine_, nullptr);
  if (!stored.ok()) return stored.status();
  std::unique_lock<std::shared_mutex> lock(mu_);
  enabled_ = stored->enabled;
  revision_ = stored->revision;
  users_.clear();
  roles_.clear();
  for (auto& u : stored->users) users_[u.name()] = std::move(u);
  for (auto& r : stored->roles) roles_[r.name()] = std::move(r);
  RefreshPermsLocked();
  lock.unlock();
  std::lock_guard<std::mutex> tl(tokens_mu_);
  tokens_.clear();
  return Status::Ok();
}

bool AuthStore::HasRootRole(const authpb::User& user) {
  return std::find(user.roles().begin(), user.roles().end(), kRootRole) != user.roles().end();
}

void AuthStore::PutUser(storage::WriteBatch* batch, const authpb::User& user) {
  batch->Put(Column::kMeta, UserKey(user.name()), user.SerializeAsString());
  users_[user.name()] = user;
}

void AuthStore::PutRole(storage::WriteBatch* batch, const authpb::Role& role) {
  batch->Put(Column::kMeta, RoleKey(role.name()), role.SerializeAsString());
  roles_[role.name()] = role;
}

void AuthStore::CommitRevision(storage::WriteBatch* batch) {
  revision_++;
  std::string v;
  storage::PutFixed64BE(&v, revision_);
  batch->Put(Column::kMeta, kRevisionKey, v);
}

// etcd's refreshRangePermCache / getMergedPerms.
void AuthStore::RefreshPermsLocked() {
  perms_.clear();
  for (const auto& [name, user] : users_) {
    std::vector<Interval> read, write;
    for (const auto& role_name : user.roles()) {
      auto r = roles_.find(role_name);
      if (r == roles_.end()) continue;
      for (const auto& p : r->second.keypermission()) {
        Interval iv;
        iv.first = p.key();
        if (p.range_end().empty()) {
          iv.second = p.key() + std::string(1, '\0');  // a point
        } else if (p.range_end() == std::string(1, '\0')) {
          iv.second = "";  // from key on
        } else {
          iv.second = p.range_end();
        }
        if (p.permtype() == authpb::Permission::READ || p.permtype() == authpb::Permission::READWRITE) {
          read.push_back(iv);
        }
        if (p.permtype() == authpb::Permission::WRITE || p.permtype() == authpb::Permission::READWRITE) {
          write.push_back(iv);
        }
      }
    }
    auto merge = [](std::vector<Interval> v) {
      std::sort(v.begin(), v.end(), [](const Interval& a, const Interval& b) { return a.first < b.first; });
      std::vector<Interval> out;
      for (auto& iv : v) {
        // Joins when it starts at or before the current end (adjacent too).
        if (!out.empty() && !EndBefore(out.back().second, iv.first)) {
          if (EndBefore(out.back().second, iv.second)) out.back().second = iv.second;
        } else {
          out.push_back(std::move(iv));
        }
      }
      return out;
    };
    perms_[name] = Perms{merge(std::move(read)), merge(std::move(write))};
  }
}

Status AuthStore::Enable(storage::WriteBatch* batch) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (enabled_) return Status::Ok();
  auto root = users_.find(std::string(kRootUser));
  if (root == users_.end()) return errors::RootUserNotExist();
  if (!HasRootRole(root->second)) return errors::RootRoleNotExist();
  batch->Put(Column::kMeta, kEnabledKey, "1");
  enabled_ = true;
  return Status::Ok();
}

void AuthStore::Disable(storage::WriteBatch* batch) {
  {
    std::unique_lock<std::shared_mutex> lock(mu_);
    if (!enabled_) return;
    batch->Put(Column::kMeta, kEnabledKey, "0");
    CommitRevision(batch);
    enabled_ = false;
  }
  std::lock_guard<std::mutex> tl(tokens_mu_);
  tokens_.clear();
}

Status AuthStore::UserAdd(storage::WriteBatch* batch, const etcdserverpb::AuthUserAddRequest& r) {
  if (r.name().empty()) return errors::UserEmpty();
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (users_.count(r.name())) return errors::UserAlreadyExist();
  authpb::User user;
  user.set_name(r.name());
  user.mutable_options()->set_no_password(r.has_options() && r.options().no_password());
  if (!user.options().no_password()) {
    auto password = SelectPassword(r.password(), r.hashedpassword());
    if (!password.ok()) return password.status();
    user.set_password(*password);
  }
  PutUser(batch, user);
  CommitRevision(batch);
  RefreshPermsLocked();
  return Status::Ok();
}

Status AuthStore::UserDelete(storage::WriteBatch* batch, const etcdserverpb::AuthUserDeleteRequest& r) {
  {
    std::unique_lock<std::shared_mutex> lock(mu_);
    if (enabled_ && r.name() == kRootUser) return errors::InvalidAuthMgmt();
    if (!users_.count(r.name())) return errors::UserNotFound();
    batch->Delete(Column::kMeta, UserKey(r.name()));
    users_.erase(r.name());
    CommitRevision(batch);
    RefreshPermsLocked();
  }
  InvalidateUserTokens(r.name());
  return Status::Ok();
}

Status AuthStore::UserChangePassword(storage::WriteBatch* batch,
                                     const etcdserverpb::AuthUserChangePasswordRequest& r) {
  {
    std::unique_lock<std::shared_mutex> lock(mu_);
    auto it = users_.find(r.name());
    if (it == users_.end()) return errors::UserNotFound();
    authpb::User user = it->second;
    user.clear_password();
    if (!user.has_options() || !user.options().no_password()) {
      auto password = SelectPassword(r.password(), r.hashedpassword());
      if (!password.ok()) return password.status();
      user.set_password(*password);
    }
    PutUser(batch, user);
    CommitRevision(batch);
    RefreshPermsLocked();
  }
  InvalidateUserTokens(r.name());
  return Status::Ok();
}

Status AuthStore::UserGrantRole(storage::WriteBatch* batch, const etcdserverpb::AuthUserGrantRoleRequest& r) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = users_.find(r.user());
  if (it == users_.end()) return errors::UserNotFound();
  if (r.role() != kRootRole && !roles_.count(r.role())) return errors::RoleNotFound();
  authpb::User user = it->second;
  std::vector<std::string> roles(user.roles().begin(), user.roles().end());
  if (std::binary_search(roles.begin(), roles.end(), r.role())) return Status::Ok();  // etcd ignores it
  roles.push_back(r.role());
  std::sort(roles.begin(), roles.end());
  user.clear_roles();
  for (auto& role : roles) user.add_roles(role);
  PutUser(batch, user);
  CommitRevision(batch);
  RefreshPermsLocked();
  return Status::Ok();
}

Status AuthStore::UserRevokeRole(storage::WriteBatch* batch, const etcdserverpb::AuthUserRevokeRoleRequest& r) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (enabled_ && r.name() == kRootUser && r.role() == kRootRole) return errors::InvalidAuthMgmt();
  auto it = users_.find(r.name());
  if (it == users_.end()) return errors::UserNotFound();
  authpb::User user = it->second;
  user.clear_roles();
  for (const auto& role : it->second.roles()) {
    if (role != r.role()) user.add_roles(role);
  }
  if (user.roles_size() == it->second.roles_size()) return errors::RoleNotGranted();
  PutUser(batch, user);
  CommitRevision(batch);
  RefreshPermsLocked();
  return Status::Ok();
}

Status AuthStore::RoleAdd(storage::WriteBatch* batch, const etcdserverpb::AuthRoleAddRequest& r) {
  if (r.name().empty()) return errors::RoleEmpty();
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (roles_.count(r.name())) return errors::RoleAlreadyExist();
  authpb::Role role;
  role.set_name(r.name());
  PutRole(batch, role);
  CommitRevision(batch);
  return Status::Ok();
}

Status AuthStore::RoleDelete(storage::WriteBatch* batch, const etcdserverpb::AuthRoleDeleteRequest& r) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (enabled_ && r.role() == kRootRole) return errors::InvalidAuthMgmt();
  if (!roles_.count(r.role())) return errors::RoleNotFound();
  batch->Delete(Column::kMeta, RoleKey(r.role()));
  roles_.erase(r.role());
  std::vector<authpb::User> changed;
  for (const auto& [name, user] : users_) {
    if (std::find(user.roles().begin(), user.roles().end(), r.role()) == user.roles().end()) continue;
    authpb::User u = user;
    u.clear_roles();
    for (const auto& role : user.roles()) {
      if (role != r.role()) u.add_roles(role);
    }
    changed.push_back(std::move(u));
  }
  for (const auto& u : changed) PutUser(batch, u);
  CommitRevision(batch);
  RefreshPermsLocked();
  return Status::Ok();
}

Status AuthStore::RoleGrantPermission(storage::WriteBatch* batch,
                                      const etcdserverpb::AuthRoleGrantPermissionRequest& r) {
  if (!r.has_perm()) return errors::PermissionNotGiven();
  if (!ValidPermissionRange(r.perm().key(), r.perm().range_end())) return errors::InvalidAuthMgmt();
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = roles_.find(r.name());
  if (it == roles_.end()) return errors::RoleNotFound();
  authpb::Role role = it->second;
  auto* perms = role.mutable_keypermission();
  // etcd keeps them sorted by key; the first with this key and range end is updated.
  auto pos = std::lower_bound(perms->begin(), perms->end(), r.perm().key(),
                              [](const authpb::Permission& p, const std::string& key) { return p.key() < key; });
  if (pos != perms->end() && pos->key() == r.perm().key() && pos->range_end() == r.perm().range_end()) {
    pos->set_permtype(r.perm().permtype());
  } else {
    authpb::Permission p;
    p.set_key(r.perm().key());
    p.set_range_end(r.perm().range_end());
    p.set_permtype(r.perm().permtype());
    *perms->Add() = std::move(p);
    std::stable_sort(perms->begin(), perms->end(),
                     [](const authpb::Permission& a, const authpb::Permission& b) { return a.key() < b.key(); });
  }
  PutRole(batch, role);
  CommitRevision(batch);
  RefreshPermsLocked();
  return Status::Ok();
}

Status AuthStore::RoleRevokePermission(storage::WriteBatch* batch,
                                       const etcdserverpb::AuthRoleRevokePermissionRequest& r) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = roles_.find(r.role());
  if (it == roles_.end()) return errors::RoleNotFound();
  authpb::Role role;
  role.set_name(it->second.name());
  for (const auto& p : it->second.keypermission()) {
    if (p.key() != r.key() || p.range_end() != r.range_end()) *role.add_keypermission() = p;
  }
  if (role.keypermission_size() == it->second.keypermission_size()) return errors::PermissionNotGranted();
  PutRole(batch, role);
  CommitRevision(batch);
  RefreshPermsLocked();
  return Status::Ok();
}

Result<std::string> AuthStore::Authenticate(const std::string& name, const std::string& token) {
  std::string user;
  uint64_t revision;
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (!enabled_) return errors::AuthNotEnabled();
    auto it = users_.find(name);
    if (it == users_.end()) return errors::AuthFailed();
    if (it->second.has_options() && it->second.options().no_password()) return errors::AuthFailed();
    user = name;
    revision = revision_;
  }
  if (auto jwt = Jwt()) return jwt->Sign(user, revision);
  std::lock_guard<std::mutex> tl(tokens_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (tokens_.size() >= kMaxTokens) {
    // Drop the expired ones, then the one closest to expiry.
    for (auto it = tokens_.begin(); it != tokens_.end();) {
      it = it->second.expires <= now ? tokens_.erase(it) : std::next(it);
    }
    if (tokens_.size() >= kMaxTokens) {
      auto oldest = std::min_element(tokens_.begin(), tokens_.end(),
                                     [](const auto& a, const auto& b) { return a.second.expires < b.second.expires; });
      tokens_.erase(oldest);
    }
  }
  tokens_[token] = Token{user, now + token_ttl_};
  return token;
}

bool AuthStore::enabled() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return enabled_;
}

uint64_t AuthStore::revision() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  return revision_;
}

Result<etcdserverpb::AuthUserGetResponse> AuthStore::UserGet(const std::string& name) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = users_.find(name);
  if (it == users_.end()) return errors::UserNotFound();
  etcdserverpb::AuthUserGetResponse resp;
  for (const auto& r : it->second.roles()) resp.add_roles(r);
  return resp;
}

etcdserverpb::AuthUserListResponse AuthStore::UserList() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  etcdserverpb::AuthUserListResponse resp;
  for (const auto& [name, u] : users_) resp.add_users(name);
  return resp;
}

Result<etcdserverpb::AuthRoleGetResponse> AuthStore::RoleGet(const std::string& role) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = roles_.find(role);
  if (it == roles_.end()) return errors::RoleNotFound();
  etcdserverpb::AuthRoleGetResponse resp;
  for (const auto& p : it->second.keypermission()) *resp.add_perm() = p;
  return resp;
}

etcdserverpb::AuthRoleListResponse AuthStore::RoleList() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  etcdserverpb::AuthRoleListResponse resp;
  for (const auto& [name, r] : roles_) resp.add_roles(name);
  return resp;
}

bool AuthStore::HasRole(const std::string& user, const std::string& role) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = users_.find(user);
  if (it == users_.end()) return false;
  return std::find(it->second.roles().begin(), it->second.roles().end(), role) != it->second.roles().end();
}

Result<uint64_t> AuthStore::CheckPassword(const std::string& name, const std::string& password) const {
  std::string hash;
  uint64_t revision;
  {
    std::shared_lock<std::shared_mutex> lock(mu_);
    if (!enabled_) return errors::AuthNotEnabled();
    auto it = users_.find(name);
    if (it == users_.end()) return errors::AuthFailed();
    if (it->second.has_options() && it->second.options().no_password()) return errors::NoPasswordUser();
    hash = it->second.password();
    revision = revision_;
  }
  // Outside the lock: bcrypt is slow on purpose.
  if (!BcryptMatches(hash, password)) return errors::AuthFailed();
  return revision;
}

Status AuthStore::Check(const AuthInfo& ai, std::string_view key, std::string_view range_end,
                        Access access) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  if (!enabled_) return Status::Ok();
  if (ai.revision == 0) return errors::UserEmpty();
  if (ai.revision < revision_) return errors::AuthOldRevision();
  auto u = users_.find(ai.user);
  if (u == users_.end()) return errors::PermissionDenied();
  if (HasRootRole(u->second)) return Status::Ok();
  auto p = perms_.find(ai.user);
  if (p == perms_.end()) return errors::PermissionDenied();
  const std::vector<Interval>& ivs = access == Access::kRead ? p->second.read : p->second.write;
  // The last interval starting at or before key.
  auto it = std::upper_bound(ivs.begin(), ivs.end(), key,
                             [](std::string_view k, const Interval& iv) { return k < iv.first; });
  if (it == ivs.begin()) return errors::PermissionDenied();
  const Interval& iv = *std::prev(it);
  if (range_end.empty()) {
    // One key: inside the interval?
    if (iv.second.empty() || std::string_view(key) < std::string_view(iv.second)) return Status::Ok();
    return errors::PermissionDenied();
  }
  const bool open_ended = range_end == std::string_view("\0", 1);
  if (!open_ended && range_end <= key) return errors::PermissionDenied();  // covers nothing
  if (iv.second.empty()) return Status::Ok();
  if (!open_ended && range_end <= std::string_view(iv.second)) return Status::Ok();
  return errors::PermissionDenied();
}

Status AuthStore::IsRangePermitted(const AuthInfo& ai, std::string_view key, std::string_view range_end) const {
  return Check(ai, key, range_end, Access::kRead);
}

Status AuthStore::IsPutPermitted(const AuthInfo& ai, std::string_view key) const {
  return Check(ai, key, {}, Access::kWrite);
}

Status AuthStore::IsDeleteRangePermitted(const AuthInfo& ai, std::string_view key,
                                         std::string_view range_end) const {
  return Check(ai, key, range_end, Access::kWrite);
}

Status AuthStore::IsAdminPermitted(const AuthInfo& ai) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  if (!enabled_) return Status::Ok();
  if (ai.user.empty()) return errors::UserEmpty();
  auto u = users_.find(ai.user);
  if (u == users_.end()) return errors::UserNotFound();
  if (!HasRootRole(u->second)) return errors::PermissionDenied();
  return Status::Ok();
}

std::string AuthStore::NewTokenPrefix() {
  static const char kLetters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
  unsigned char random[16];
  RAND_bytes(random, sizeof(random));
  std::string out;
  for (unsigned char c : random) out.push_back(kLetters[c % 52]);
  return out;
}

std::optional<AuthInfo> AuthStore::TokenInfo(const std::string& token) {
  if (auto jwt = Jwt()) {
    auto claims = jwt->Verify(token);
    if (!claims) return std::nullopt;
    return AuthInfo{claims->user, claims->revision};
  }
  const uint64_t current = revision();
  std::lock_guard<std::mutex> tl(tokens_mu_);
  auto it = tokens_.find(token);
  if (it == tokens_.end()) return std::nullopt;
  const auto now = std::chrono::steady_clock::now();
  if (it->second.expires <= now) {
    tokens_.erase(it);
    return std::nullopt;
  }
  it->second.expires = now + token_ttl_;
  return AuthInfo{it->second.user, current};
}

void AuthStore::set_token_ttl(std::chrono::seconds ttl) {
  std::lock_guard<std::mutex> tl(tokens_mu_);
  token_ttl_ = ttl;
}

void AuthStore::InvalidateUserTokens(const std::string& user) {
  std::lock_guard<std::mutex> tl(tokens_mu_);
  for (auto it = tokens_.begin(); it != tokens_.end();) {
    it = it->second.user == user ? tokens_.erase(it) : std::next(it);
  }
}

std::vector<authpb::User> AuthStore::Users() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::vector<authpb::User> out;
  for (const auto& [n, u] : users_) out.push_back(u);
  return out;
}

std::vector<authpb::Role> AuthStore::Roles() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::vector<authpb::Role> out;
  for (const auto& [n, r] : roles_) out.push_back(r);
  return out;
}

}  // namespace cairn::apply

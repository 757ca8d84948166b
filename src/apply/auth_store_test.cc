#include "apply/auth_store.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "storage/engine.h"

namespace cairn::apply {
namespace {

class AuthStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("auth_store_test_" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    storage::EngineOptions options;
    options.path = dir_.string();
    auto e = storage::Engine::Open(options);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(*e);
    store_ = std::make_unique<AuthStore>(engine_.get());
    ASSERT_TRUE(store_->Open().ok());
  }
  void TearDown() override {
    store_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  // Applies one change and commits it.
  template <typename F>
  Status Change(F f) {
    storage::WriteBatch batch(engine_.get());
    Status s = f(&batch);
    if (s.ok()) EXPECT_TRUE(engine_->Write(batch, /*sync=*/false).ok());
    return s;
  }
  void AddUser(const std::string& name, const std::string& password) {
    etcdserverpb::AuthUserAddRequest r;
    r.set_name(name);
    r.set_password(password);  // hashed by the store (an old-style entry)
    ASSERT_TRUE(Change([&](storage::WriteBatch* b) { return store_->UserAdd(b, r); }).ok());
  }
  void AddRole(const std::string& name) {
    etcdserverpb::AuthRoleAddRequest r;
    r.set_name(name);
    ASSERT_TRUE(Change([&](storage::WriteBatch* b) { return store_->RoleAdd(b, r); }).ok());
  }
  void Grant(const std::string& role, const std::string& key, const std::string& end, authpb::Permission::Type t) {
    etcdserverpb::AuthRoleGrantPermissionRequest r;
    r.set_name(role);
    r.mutable_perm()->set_key(key);
    r.mutable_perm()->set_range_end(end);
    r.mutable_perm()->set_permtype(t);
    ASSERT_TRUE(Change([&](storage::WriteBatch* b) { return store_->RoleGrantPermission(b, r); }).ok());
  }
  void GrantRole(const std::string& user, const std::string& role) {
    etcdserverpb::AuthUserGrantRoleRequest r;
    r.set_user(user);
    r.set_role(role);
    ASSERT_TRUE(Change([&](storage::WriteBatch* b) { return store_->UserGrantRole(b, r); }).ok());
  }
  AuthInfo As(const std::string& user) { return AuthInfo{user, store_->revision()}; }

  std::filesystem::path dir_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<AuthStore> store_;
};

TEST_F(AuthStoreTest, EnableNeedsRootWithTheRootRole) {
  EXPECT_EQ(Change([&](storage::WriteBatch* b) { return store_->Enable(b); }).message(),
            "etcdserver: root user does not exist");
  AddUser("root", "pw");
  EXPECT_EQ(Change([&](storage::WriteBatch* b) { return store_->Enable(b); }).message(),
            "etcdserver: root user does not have root role");
  GrantRole("root", "root");  // the root role need not exist (etcd)
  EXPECT_TRUE(Change([&](storage::WriteBatch* b) { return store_->Enable(b); }).ok());
  EXPECT_TRUE(store_->enabled());
}

TEST_F(AuthStoreTest, PermissionsJoinAdjacentRangesAndCheckPointsAndRanges) {
  AddUser("root", "pw");
  GrantRole("root", "root");
  AddUser("u", "pw");
  AddRole("r1");
  AddRole("r2");
  Grant("r1", "a", "c", authpb::Permission::READ);
  Grant("r2", "c", "e", authpb::Permission::READWRITE);
  Grant("r2", "k", "", authpb::Permission::WRITE);         // one key
  Grant("r2", "x", std::string(1, '\0'), authpb::Permission::READ);  // from x on
  GrantRole("u", "r1");
  GrantRole("u", "r2");
  ASSERT_TRUE(Change([&](storage::WriteBatch* b) { return store_->Enable(b); }).ok());
  const AuthInfo u = As("u");
  EXPECT_TRUE(store_->IsRangePermitted(u, "a", "e").ok());   // [a,c) + [c,e) join
  EXPECT_TRUE(store_->IsRangePermitted(u, "b", "").ok());
  EXPECT_FALSE(store_->IsRangePermitted(u, "a", "f").ok());
  EXPECT_FALSE(store_->IsPutPermitted(u, "b").ok());         // read only there
  EXPECT_TRUE(store_->IsPutPermitted(u, "d").ok());
  EXPECT_TRUE(store_->IsPutPermitted(u, "k").ok());
  EXPECT_FALSE(store_->IsPutPermitted(u, "k0").ok());
  EXPECT_TRUE(store_->IsRangePermitted(u, "y", std::string(1, '\0')).ok());
  EXPECT_TRUE(store_->IsRangePermitted(u, "zzz", "").ok());
  EXPECT_FALSE(store_->IsRangePermitted(u, "w", std::string(1, '\0')).ok());
  EXPECT_EQ(store_->IsRangePermitted(AuthInfo{}, "a", "").message(), "etcdserver: user name is empty");
  EXPECT_EQ(store_->IsRangePermitted(AuthInfo{"u", 1}, "a", "").message(),
            "etcdserver: revision of auth store is old");
  EXPECT_EQ(store_->IsPutPermitted(u, "zz").message(), "etcdserver: permission denied");
  EXPECT_TRUE(store_->IsPutPermitted(As("root"), "anything").ok());
  EXPECT_TRUE(store_->IsAdminPermitted(As("root")).ok());
  EXPECT_EQ(store_->IsAdminPermitted(u).message(), "etcdserver: permission denied");
}

TEST_F(AuthStoreTest, SurvivesReopenAndChecksPasswords) {
  AddUser("root", "s3cret");
  GrantRole("root", "root");
  ASSERT_TRUE(Change([&](storage::WriteBatch* b) { return store_->Enable(b); }).ok());
  const uint64_t rev = store_->revision();
  store_ = std::make_unique<AuthStore>(engine_.get());
  ASSERT_TRUE(store_->Open().ok());
  EXPECT_TRUE(store_->enabled());
  EXPECT_EQ(store_->revision(), rev);
  EXPECT_TRUE(store_->CheckPassword("root", "s3cret").ok());
  EXPECT_EQ(store_->CheckPassword("root", "nope").status().message(),
            "etcdserver: authentication failed, invalid user ID or password");
  EXPECT_EQ(store_->CheckPassword("who", "x").status().message(),
            "etcdserver: authentication failed, invalid user ID or password");
}

TEST_F(AuthStoreTest, TokensGoWithTheUserAndWithAuth) {
  AddUser("root", "pw");
  GrantRole("root", "root");
  AddUser("u", "pw");
  ASSERT_TRUE(Change([&](storage::WriteBatch* b) { return store_->Enable(b); }).ok());
  ASSERT_TRUE(store_->Authenticate("u", "tok.1").ok());
  ASSERT_TRUE(store_->Authenticate("root", "tok.2").ok());
  EXPECT_EQ(*store_->Authenticate("u", "tok.3"), "tok.3");
  EXPECT_EQ(store_->TokenInfo("tok.1").value_or(AuthInfo{}).user, "u");
  etcdserverpb::AuthUserDeleteRequest del;
  del.set_name("u");
  ASSERT_TRUE(Change([&](storage::WriteBatch* b) { return store_->UserDelete(b, del); }).ok());
  EXPECT_FALSE(store_->TokenInfo("tok.1").has_value());
  EXPECT_TRUE(store_->TokenInfo("tok.2").has_value());
  ASSERT_TRUE(Change([&](storage::WriteBatch* b) {
                store_->Disable(b);
                return Status::Ok();
              }).ok());
  EXPECT_FALSE(store_->TokenInfo("tok.2").has_value());
}

TEST(Bcrypt, HashesAsGoDoesAndChecks) {
  auto h = BcryptHash("hunter2", 4);
  ASSERT_TRUE(h.ok());
  EXPECT_TRUE(h->starts_with("$2a$04$")) << *h;
  EXPECT_TRUE(BcryptMatches(*h, "hunter2"));
  EXPECT_FALSE(BcryptMatches(*h, "hunter3"));
  EXPECT_FALSE(BcryptMatches("", "hunter2"));
  EXPECT_FALSE(BcryptMatches("not a hash", "hunter2"));
}

}  // namespace
}  // namespace cairn::apply

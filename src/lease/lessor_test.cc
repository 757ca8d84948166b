#include "lease/lessor.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace cairn::lease {
namespace {

using Ids = std::vector<int64_t>;

class LessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/lessor_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    storage::EngineOptions eo;
    eo.path = dir_ + "/db";
    auto engine = storage::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
    NewLessor();
  }
  void TearDown() override {
    lessor_.reset();
    engine_.reset();
    std::filesystem::remove_all(dir_);
  }

  // A new lessor over the same engine, as after a restart.
  void NewLessor(LessorOptions options = LessorOptions()) {
    lessor_ = std::make_unique<Lessor>(engine_.get(), &clock_, options);
    Status s = lessor_->Open();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }

  // Grants and commits, as the applier does.
  Result<LeaseInfo> Grant(int64_t id, int64_t ttl_seconds) {
    storage::WriteBatch batch(engine_.get());
    auto r = lessor_->Grant(&batch, id, ttl_seconds);
    EXPECT_TRUE(engine_->Write(batch, false).ok());
    return r;
  }
  Status Revoke(int64_t id) {
    storage::WriteBatch batch(engine_.get());
    Status s = lessor_->Revoke(&batch, id);
    EXPECT_TRUE(engine_->Write(batch, false).ok());
    return s;
  }

  std::string dir_;
  ManualClock clock_{1000000};
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<Lessor> lessor_;
};

TEST_F(LessorTest, GrantAppliesMinimumAndMaximumTtl) {
  auto r = Grant(1, 60);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->id, 1);
  EXPECT_EQ(r->granted_ttl_seconds, 60);
  EXPECT_EQ(r->remaining_ms, 60000);
  // Below the minimum (and zero, and negative): raised to it.
  EXPECT_EQ(Grant(2, 1)->granted_ttl_seconds, 2);
  EXPECT_EQ(Grant(3, 0)->granted_ttl_seconds, 2);
  EXPECT_EQ(Grant(4, -5)->granted_ttl_seconds, 2);
  // etcd's MaxLeaseTTL is allowed, one more is not.
  EXPECT_EQ(Grant(5, 9000000000LL)->granted_ttl_seconds, 9000000000LL);
  EXPECT_EQ(Grant(6, 9000000001LL).status(), errors::LeaseTTLTooLarge());
  EXPECT_FALSE(lessor_->Exists(6));
  // An id that exists already.
  EXPECT_EQ(Grant(1, 10).status(), errors::LeaseExist());
  EXPECT_EQ(lessor_->Get(1)->granted_ttl_seconds, 60);
  EXPECT_EQ(lessor_->List(), (Ids{1, 2, 3, 4, 5}));
  EXPECT_EQ(lessor_->size(), 5u);
}

TEST_F(LessorTest, OptionsChangeTheLimits) {
  LessorOptions options;
  options.min_ttl_seconds = 5;
  options.max_ttl_seconds = 100;
  NewLessor(options);
  EXPECT_EQ(Grant(1, 3)->granted_ttl_seconds, 5);
  EXPECT_EQ(Grant(2, 100)->granted_ttl_seconds, 100);
  EXPECT_EQ(Grant(3, 101).status(), errors::LeaseTTLTooLarge());
}

TEST_F(LessorTest, ExpiryFollowsTheClock) {
  ASSERT_TRUE(Grant(7, 10).ok());
  ASSERT_TRUE(Grant(8, 20).ok());
  EXPECT_TRUE(lessor_->Expired(10).empty());
  clock_.AdvanceMs(9999);
  EXPECT_TRUE(lessor_->Expired(10).empty());
  EXPECT_EQ(lessor_->Get(7)->remaining_ms, 1);
  clock_.AdvanceMs(1);
  EXPECT_EQ(lessor_->Expired(10), Ids{7});
  EXPECT_EQ(lessor_->Get(7)->remaining_ms, 0);
  // Expiry only reports: the lease exists until revoked through the log.
  EXPECT_TRUE(lessor_->Exists(7));
  // Reported again only after the retry interval.
  EXPECT_TRUE(lessor_->Expired(10, 3000).empty());
  clock_.AdvanceMs(2999);
  EXPECT_TRUE(lessor_->Expired(10, 3000).empty());
  clock_.AdvanceMs(1);
  EXPECT_EQ(lessor_->Expired(10, 3000), Ids{7});
  // At most `max` at a time.
  clock_.AdvanceMs(20000);
  EXPECT_EQ(lessor_->Expired(1, 3000), Ids{7});   // in id order, at most one
  EXPECT_EQ(lessor_->Expired(10, 3000), Ids{8});  // 7 was reported just now
}

TEST_F(LessorTest, ExpiredRespectsMax) {
  for (int64_t id = 1; id <= 5; id++) ASSERT_TRUE(Grant(id, 2).ok());
  clock_.AdvanceMs(2000);
  EXPECT_EQ(lessor_->Expired(2), (Ids{1, 2}));
  EXPECT_EQ(lessor_->Expired(2), (Ids{3, 4}));
  EXPECT_EQ(lessor_->Expired(2), (Ids{5}));
  EXPECT_TRUE(lessor_->Expired(2).empty());
}

TEST_F(LessorTest, RenewMovesTheDeadline) {
  ASSERT_TRUE(Grant(1, 10).ok());
  clock_.AdvanceMs(8000);
  auto ttl = lessor_->Renew(1);
  ASSERT_TRUE(ttl.ok());
  EXPECT_EQ(*ttl, 10);
  EXPECT_EQ(lessor_->Get(1)->remaining_ms, 10000);
  clock_.AdvanceMs(9999);
  EXPECT_TRUE(lessor_->Expired(10).empty());
  clock_.AdvanceMs(1);
  EXPECT_EQ(lessor_->Expired(10), Ids{1});
  // A renewal after the report clears it: the next expiry is reported at once.
  ASSERT_TRUE(lessor_->Renew(1).ok());
  clock_.AdvanceMs(10000);
  EXPECT_EQ(lessor_->Expired(10), Ids{1});
  EXPECT_EQ(lessor_->Renew(99).status(), errors::LeaseNotFound());
  EXPECT_EQ(lessor_->Get(99).status(), errors::LeaseNotFound());
  EXPECT_FALSE(lessor_->Exists(99));
}

TEST_F(LessorTest, OpenRestoresLeasesWithFreshDeadlines) {
  ASSERT_TRUE(Grant(1, 10).ok());
  ASSERT_TRUE(Grant(2, 30).ok());
  ASSERT_TRUE(Grant(3, 1).ok());  // stored with the granted (minimum) TTL
  clock_.AdvanceMs(25000);
  EXPECT_EQ(lessor_->Expired(10), (Ids{1, 3}));
  NewLessor();
  EXPECT_EQ(lessor_->List(), (Ids{1, 2, 3}));
  EXPECT_EQ(lessor_->Get(1)->remaining_ms, 10000);
  EXPECT_EQ(lessor_->Get(2)->remaining_ms, 30000);
  EXPECT_EQ(lessor_->Get(3)->granted_ttl_seconds, 2);
  EXPECT_TRUE(lessor_->Expired(10).empty());
  clock_.AdvanceMs(2000);
  EXPECT_EQ(lessor_->Expired(10), Ids{3});
  clock_.AdvanceMs(8000);
  EXPECT_EQ(lessor_->Expired(10), (Ids{1, 3}));  // 3 again: its report is older than the retry
}

TEST_F(LessorTest, RevokeRemovesTheLease) {
  ASSERT_TRUE(Grant(1, 10).ok());
  ASSERT_TRUE(Grant(2, 10).ok());
  ASSERT_TRUE(Revoke(1).ok());
  EXPECT_FALSE(lessor_->Exists(1));
  EXPECT_EQ(Revoke(1), errors::LeaseNotFound());
  EXPECT_EQ(lessor_->List(), Ids{2});
  clock_.AdvanceMs(10000);
  EXPECT_EQ(lessor_->Expired(10), Ids{2});  // a revoked lease never expires
  NewLessor();
  EXPECT_EQ(lessor_->List(), Ids{2});
  // The id may be granted again.
  EXPECT_TRUE(Grant(1, 5).ok());
}

// The in-memory state follows the staged batch right away (the applier
// commits it before answering); only committed grants survive a restart.
TEST_F(LessorTest, OnlyCommittedGrantsArePersisted) {
  {
    storage::WriteBatch dropped(engine_.get());
    ASSERT_TRUE(lessor_->Grant(&dropped, 5, 10).ok());
    EXPECT_TRUE(lessor_->Exists(5));
  }
  NewLessor();
  EXPECT_FALSE(lessor_->Exists(5));
}

TEST_F(LessorTest, LargeIdsRoundTrip) {
  const int64_t big = (int64_t{1} << 62) + 12345;
  ASSERT_TRUE(Grant(big, 10).ok());
  ASSERT_TRUE(Grant(3, 10).ok());
  NewLessor();
  EXPECT_TRUE(lessor_->Exists(big));
  EXPECT_TRUE(lessor_->Exists(3));
  EXPECT_EQ(LeaseRowKey(1).size(), 8u);
  EXPECT_LT(LeaseRowKey(1), LeaseRowKey(2));
}

TEST_F(LessorTest, OpenRefusesAMalformedRecord) {
  storage::WriteBatch batch(engine_.get());
  batch.Put(storage::Column::kLease, LeaseRowKey(1), "short");
  ASSERT_TRUE(engine_->Write(batch, false).ok());
  Lessor fresh(engine_.get(), &clock_, LessorOptions());
  Status s = fresh.Open();
  EXPECT_EQ(s.code(), Code::kDataLoss) << s.ToString();
}

}  // namespace
}  // namespace cairn::lease

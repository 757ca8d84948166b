// Tests of etcd's KV request semantics (kv_ops) and of the applier that runs
// them from the log. References are to etcd 3.4's etcdserver/api/v3rpc/key.go
// (validation) and etcdserver/apply.go (execution).
#include "apply/kv_ops.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "apply/applier.h"

namespace cairn::apply {
namespace {

using etcdserverpb::Compare;
using etcdserverpb::DeleteRangeRequest;
using etcdserverpb::PutRequest;
using etcdserverpb::RangeRequest;
using etcdserverpb::RequestOp;
using etcdserverpb::TxnRequest;
using etcdserverpb::TxnResponse;
using Strings = std::vector<std::string>;

const std::string kFromKey(1, '\0');

// ------------------------------------------------------------ builders

PutRequest MakePut(const std::string& key, const std::string& value, int64_t lease = 0) {
  PutRequest p;
  p.set_key(key);
  p.set_value(value);
  p.set_lease(lease);
  return p;
}
RangeRequest MakeRange(const std::string& key, const std::string& end = "") {
  RangeRequest r;
  r.set_key(key);
  r.set_range_end(end);
  return r;
}
DeleteRangeRequest MakeDelete(const std::string& key, const std::string& end = "") {
  DeleteRangeRequest d;
  d.set_key(key);
  d.set_range_end(end);
  return d;
}
RequestOp OpPut(const std::string& key, const std::string& value = "v", int64_t lease = 0) {
  RequestOp op;
  *op.mutable_request_put() = MakePut(key, value, lease);
  return op;
}
RequestOp OpRange(const std::string& key, const std::string& end = "") {
  RequestOp op;
  *op.mutable_request_range() = MakeRange(key, end);
  return op;
}
RequestOp OpDelete(const std::string& key, const std::string& end = "") {
  RequestOp op;
  *op.mutable_request_delete_range() = MakeDelete(key, end);
  return op;
}
RequestOp OpTxn(const TxnRequest& t) {
  RequestOp op;
  *op.mutable_request_txn() = t;
  return op;
}
TxnRequest MakeTxn(std::vector<Compare> compares, std::vector<RequestOp> success,
                   std::vector<RequestOp> failure = {}) {
  TxnRequest t;
  for (auto& c : compares) *t.add_compare() = std::move(c);
  for (auto& op : success) *t.add_success() = std::move(op);
  for (auto& op : failure) *t.add_failure() = std::move(op);
  return t;
}
Compare CmpValue(const std::string& key, Compare::CompareResult result, const std::string& value) {
  Compare c;
  c.set_key(key);
  c.set_target(Compare::VALUE);
  c.set_result(result);
  c.set_value(value);
  return c;
}
Compare CmpInt(const std::string& key, Compare::CompareTarget target, Compare::CompareResult result,
               int64_t v) {
  Compare c;
  c.set_key(key);
  c.set_target(target);
  c.set_result(result);
  switch (target) {
    case Compare::VERSION:
      c.set_version(v);
      break;
    case Compare::CREATE:
      c.set_create_revision(v);
      break;
    case Compare::MOD:
      c.set_mod_revision(v);
      break;
    case Compare::LEASE:
      c.set_lease(v);
      break;
    default:
      ADD_FAILURE() << "not an integer target";
  }
  return c;
}

// ------------------------------------------------------------ fixture

class KvOpsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/kv_ops_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    Open();
  }
  void TearDown() override {
    Close();
    std::filesystem::remove_all(dir_);
  }
  void Open() {
    storage::EngineOptions eo;
    eo.path = dir_ + "/db";
    auto engine = storage::Engine::Open(eo);
    ASSERT_TRUE(engine.ok()) << engine.status().ToString();
    engine_ = std::move(engine).value();
    kv_ = std::make_unique<mvcc::KvStore>(engine_.get());
    ASSERT_TRUE(kv_->Open().ok());
    lessor_ = std::make_unique<lease::Lessor>(engine_.get(), &clock_, lease::LessorOptions());
    ASSERT_TRUE(lessor_->Open().ok());
  }
  void Close() {
    lessor_.reset();
    kv_.reset();
    engine_.reset();
  }

  // Write requests run in their own write transaction and are committed.
  template <typename F>
  auto Write(F body) -> decltype(body(std::declval<mvcc::WriteTxn&>())) {
    storage::WriteBatch batch(engine_.get());
    mvcc::WriteTxn txn(kv_.get(), &batch);
    auto r = body(txn);
    if (r.ok()) {
      EXPECT_TRUE(kv_->Commit(batch, txn.end_rev(), false).ok());
    }
    return r;
  }
  Result<etcdserverpb::PutResponse> DoPut(const PutRequest& p) {
    return Write([&](mvcc::WriteTxn& t) { return apply::Put(t, *lessor_, p); });
  }
  int64_t Put(const std::string& key, const std::string& value, int64_t lease = 0) {
    auto r = DoPut(MakePut(key, value, lease));
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->header().revision() : 0;
  }
  Result<etcdserverpb::DeleteRangeResponse> DoDelete(const DeleteRangeRequest& d) {
    return Write([&](mvcc::WriteTxn& t) { return DeleteRange(t, d); });
  }
  Result<etcdserverpb::RangeResponse> DoRange(const RangeRequest& r) {
    auto view = kv_->Read();
    return Range(*view, r);
  }
  Strings RangeKeys(const RangeRequest& r) {
    auto resp = DoRange(r);
    EXPECT_TRUE(resp.ok()) << resp.status().ToString();
    Strings out;
    if (resp.ok()) {
      for (const auto& kv : resp->kvs()) out.push_back(kv.key());
    }
    return out;
  }
  // As the server does: read-only txns on a read view, others in a write txn.
  Result<TxnResponse> DoTxn(const TxnRequest& t) {
    if (IsTxnReadOnly(t)) {
      auto view = kv_->Read();
      return Txn(*view, nullptr, *lessor_, t);
    }
    return Write([&](mvcc::WriteTxn& w) { return Txn(w, &w, *lessor_, t); });
  }
  bool Succeeded(const TxnRequest& t) {
    auto r = DoTxn(t);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() && r->succeeded();
  }
  void Compact(int64_t rev) {
    storage::WriteBatch batch(engine_.get());
    ASSERT_TRUE(kv_->ScheduleCompaction(&batch, rev).ok());
    ASSERT_TRUE(kv_->Commit(batch, kv_->CurrentRevision(), false).ok());
    kv_->SetCompactRevisionAfterCommit(rev);
    ASSERT_TRUE(kv_->CompactPhysical(rev).ok());
  }
  void GrantLease(int64_t id, int64_t ttl) {
    storage::WriteBatch batch(engine_.get());
    ASSERT_TRUE(lessor_->Grant(&batch, id, ttl).ok());
    ASSERT_TRUE(engine_->Write(batch, false).ok());
  }

  std::string dir_;
  ManualClock clock_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<mvcc::KvStore> kv_;
  std::unique_ptr<lease::Lessor> lessor_;
};

// ------------------------------------------------------------ validation

TEST(CheckRequestTest, PutErrorsInEtcdsOrder) {
  EXPECT_TRUE(CheckPutRequest(MakePut("k", "v")).ok());
  EXPECT_EQ(CheckPutRequest(MakePut("", "v")), errors::EmptyKey());
  PutRequest p = MakePut("k", "v", 5);
  p.set_ignore_value(true);
  EXPECT_EQ(CheckPutRequest(p), errors::ValueProvided());
  p.set_ignore_lease(true);
  EXPECT_EQ(CheckPutRequest(p), errors::ValueProvided());  // value is checked before lease
  p.set_value("");
  EXPECT_EQ(CheckPutRequest(p), errors::LeaseProvided());
  p.set_lease(0);
  EXPECT_TRUE(CheckPutRequest(p).ok());
  p.set_key("");
  p.set_value("v");
  EXPECT_EQ(CheckPutRequest(p), errors::EmptyKey());  // the key before anything else
}

TEST(CheckRequestTest, RangeAndDeleteNeedAKey) {
  EXPECT_EQ(CheckRangeRequest(MakeRange("")), errors::EmptyKey());
  EXPECT_EQ(CheckRangeRequest(MakeRange("", "z")), errors::EmptyKey());
  EXPECT_TRUE(CheckRangeRequest(MakeRange(kFromKey, kFromKey)).ok());
  EXPECT_EQ(CheckDeleteRequest(MakeDelete("")), errors::EmptyKey());
  EXPECT_TRUE(CheckDeleteRequest(MakeDelete("a", "b")).ok());
}

TEST(CheckRequestTest, TxnTooManyOpsAndEmptyKeys) {
  // The op count is the largest of compares, success and failure.
  auto three = MakeTxn({CmpValue("a", Compare::EQUAL, "x"), CmpValue("b", Compare::EQUAL, "x")},
                       {OpPut("a"), OpPut("b"), OpPut("c")}, {OpPut("d")});
  EXPECT_TRUE(CheckTxnRequest(three, 3).ok());
  EXPECT_EQ(CheckTxnRequest(three, 2), errors::TooManyOps());
  auto compares = MakeTxn({CmpValue("a", Compare::EQUAL, "x"), CmpValue("b", Compare::EQUAL, "x"),
                           CmpValue("c", Compare::EQUAL, "x")},
                          {});
  EXPECT_EQ(CheckTxnRequest(compares, 2), errors::TooManyOps());
  // The count comes before the empty keys.
  auto empty_and_many =
      MakeTxn({CmpValue("", Compare::EQUAL, "x")}, {OpPut(""), OpPut("b"), OpPut("c")});
  EXPECT_EQ(CheckTxnRequest(empty_and_many, 2), errors::TooManyOps());
  EXPECT_EQ(CheckTxnRequest(empty_and_many, 3), errors::EmptyKey());
  // A compare's empty key, then success, then failure.
  EXPECT_EQ(CheckTxnRequest(MakeTxn({CmpValue("", Compare::EQUAL, "x")}, {RequestOp()}), 8),
            errors::EmptyKey());
  EXPECT_EQ(CheckTxnRequest(MakeTxn({}, {RequestOp()}, {OpPut("")}), 8), errors::KeyNotFound());
  EXPECT_EQ(CheckTxnRequest(MakeTxn({}, {OpRange("")}, {RequestOp()}), 8), errors::EmptyKey());
  EXPECT_EQ(CheckTxnRequest(MakeTxn({}, {OpDelete("")}), 8), errors::EmptyKey());
  // An empty op is etcd's "key not found".
  EXPECT_EQ(CheckTxnRequest(MakeTxn({}, {}, {RequestOp()}), 8), errors::KeyNotFound());
  // Put flags are validated inside txns too.
  RequestOp bad_put = OpPut("k", "v");
  bad_put.mutable_request_put()->set_ignore_value(true);
  EXPECT_EQ(CheckTxnRequest(MakeTxn({}, {bad_put}), 8), errors::ValueProvided());
  // Shape errors are reported before duplicate keys.
  EXPECT_EQ(CheckTxnRequest(MakeTxn({}, {OpPut("a"), OpPut("a"), OpPut("")}), 8),
            errors::EmptyKey());
}

TEST(CheckRequestTest, NestedTxnGetsTheRemainingOpBudget) {
  auto inner = MakeTxn({}, {OpPut("x"), OpPut("y")});
  auto outer = MakeTxn({}, {OpTxn(inner), OpPut("z")});
  // etcd passes maxTxnOps - opc down: 4 - 2 leaves 2 for the inner txn.
  EXPECT_TRUE(CheckTxnRequest(outer, 4).ok());
  EXPECT_EQ(CheckTxnRequest(outer, 3), errors::TooManyOps());
  auto bad_inner = MakeTxn({CmpValue("", Compare::EQUAL, "")}, {});
  EXPECT_EQ(CheckTxnRequest(MakeTxn({}, {OpTxn(bad_inner)}), 8), errors::EmptyKey());
}

// etcd's checkIntervals: a key may be put at most once and never be both put
// and deleted in one txn; then and else of one nested txn may overlap.
TEST(CheckRequestTest, DuplicateKeyIntervalRules) {
  struct Case {
    const char* name;
    TxnRequest txn;
    bool ok;
  };
  auto nested = [](std::vector<RequestOp> then_ops, std::vector<RequestOp> else_ops = {}) {
    return OpTxn(MakeTxn({}, std::move(then_ops), std::move(else_ops)));
  };
  const std::vector<Case> cases = {
      {"two puts", MakeTxn({}, {OpPut("k"), OpPut("k")}), false},
      {"puts of different keys", MakeTxn({}, {OpPut("k"), OpPut("l")}), true},
      {"put and point delete", MakeTxn({}, {OpPut("k"), OpDelete("k")}), false},
      {"delete before put", MakeTxn({}, {OpDelete("k"), OpPut("k")}), false},
      {"put inside a deleted range", MakeTxn({}, {OpPut("k"), OpDelete("a", "z")}), false},
      {"put at the range's end", MakeTxn({}, {OpPut("z"), OpDelete("a", "z")}), true},
      {"put at the range's start", MakeTxn({}, {OpPut("a"), OpDelete("a", "z")}), false},
      {"put beside a point delete", MakeTxn({}, {OpPut(std::string("k\0", 2)), OpDelete("k")}),
       true},
      // ["k", "\0") is an empty interval to etcd: the from-key delete passes.
      {"put and from-key delete", MakeTxn({}, {OpPut("k"), OpDelete("k", kFromKey)}), true},
      {"put and from-key delete before it", MakeTxn({}, {OpPut("m"), OpDelete("k", kFromKey)}),
       true},
      {"two deletes", MakeTxn({}, {OpDelete("k"), OpDelete("a", "z")}), true},
      {"ranges and puts", MakeTxn({}, {OpRange("k"), OpPut("k")}), true},
      {"then and else of one nested txn", MakeTxn({}, {nested({OpPut("k")}, {OpPut("k")})}), true},
      {"nested put and outer put", MakeTxn({}, {nested({OpPut("k")}), OpPut("k")}), false},
      {"nested else put and outer put", MakeTxn({}, {nested({}, {OpPut("k")}), OpPut("k")}), false},
      {"two nested txns put", MakeTxn({}, {nested({OpPut("k")}), nested({OpPut("k")})}), false},
      {"then of one, else of another",
       MakeTxn({}, {nested({OpPut("k")}), nested({}, {OpPut("k")})}), false},
      {"outer delete, nested put", MakeTxn({}, {OpDelete("a", "z"), nested({OpPut("k")})}), false},
      {"nested delete, outer put", MakeTxn({}, {nested({OpDelete("k")}), OpPut("k")}), false},
      {"nested else delete, outer put", MakeTxn({}, {nested({}, {OpDelete("k")}), OpPut("k")}),
       false},
      {"nested delete, later nested put",
       MakeTxn({}, {nested({OpDelete("k")}), nested({OpPut("k")})}), false},
      // etcd checks a nested txn's puts before its deletes join the set.
      {"nested put, later nested delete",
       MakeTxn({}, {nested({OpPut("k")}), nested({OpDelete("k")})}), true},
      {"deeply nested duplicate", MakeTxn({}, {nested({nested({OpPut("k")})}), OpPut("k")}), false},
      {"nested put and delete inside", MakeTxn({}, {nested({OpPut("k"), OpDelete("k")})}), false},
  };
  for (const auto& c : cases) {
    Status s = CheckTxnRequest(c.txn, 128);
    if (c.ok) {
      EXPECT_TRUE(s.ok()) << c.name << ": " << s.ToString();
    } else {
      EXPECT_EQ(s, errors::DuplicateKey()) << c.name;
    }
  }
  // Success and failure of the top-level txn are checked apart.
  EXPECT_TRUE(CheckTxnRequest(MakeTxn({}, {OpPut("k")}, {OpPut("k")}), 128).ok());
  EXPECT_TRUE(CheckTxnRequest(MakeTxn({}, {OpPut("k")}, {OpDelete("k")}), 128).ok());
  EXPECT_EQ(CheckTxnRequest(MakeTxn({}, {}, {OpPut("k"), OpPut("k")}), 128),
            errors::DuplicateKey());
}

TEST(CheckRequestTest, TxnReadOnly) {
  EXPECT_TRUE(
      IsTxnReadOnly(MakeTxn({CmpValue("a", Compare::EQUAL, "")}, {OpRange("a")}, {OpRange("b")})));
  EXPECT_TRUE(IsTxnReadOnly(MakeTxn({}, {OpTxn(MakeTxn({}, {OpRange("a")}))})));
  EXPECT_FALSE(IsTxnReadOnly(MakeTxn({}, {OpRange("a")}, {OpPut("b")})));
  EXPECT_FALSE(IsTxnReadOnly(MakeTxn({}, {OpDelete("a")})));
  EXPECT_FALSE(IsTxnReadOnly(MakeTxn({}, {}, {OpTxn(MakeTxn({}, {}, {OpDelete("a")}))})));
}

// ------------------------------------------------------------ Range

class RangeTest : public KvOpsTest {
 protected:
  // rev 2: b=3, 3: a=5, 4: d=1, 5: c=4, 6: a=2 (a: version 2, create 3)
  void SetUp() override {
    KvOpsTest::SetUp();
    Put("b", "3");
    Put("a", "5");
    Put("d", "1");
    Put("c", "4");
    Put("a", "2");
  }
  RangeRequest All() { return MakeRange("a", "z"); }
};

TEST_F(RangeTest, SortByEveryTarget) {
  auto sorted = [&](RangeRequest::SortTarget target, RangeRequest::SortOrder order) {
    RangeRequest r = All();
    r.set_sort_target(target);
    r.set_sort_order(order);
    return RangeKeys(r);
  };
  EXPECT_EQ(sorted(RangeRequest::KEY, RangeRequest::NONE), (Strings{"a", "b", "c", "d"}));
  EXPECT_EQ(sorted(RangeRequest::KEY, RangeRequest::ASCEND), (Strings{"a", "b", "c", "d"}));
  EXPECT_EQ(sorted(RangeRequest::KEY, RangeRequest::DESCEND), (Strings{"d", "c", "b", "a"}));
  EXPECT_EQ(sorted(RangeRequest::VALUE, RangeRequest::ASCEND), (Strings{"d", "a", "b", "c"}));
  EXPECT_EQ(sorted(RangeRequest::VALUE, RangeRequest::DESCEND), (Strings{"c", "b", "a", "d"}));
  EXPECT_EQ(sorted(RangeRequest::CREATE, RangeRequest::ASCEND), (Strings{"b", "a", "d", "c"}));
  EXPECT_EQ(sorted(RangeRequest::CREATE, RangeRequest::DESCEND), (Strings{"c", "d", "a", "b"}));
  EXPECT_EQ(sorted(RangeRequest::MOD, RangeRequest::ASCEND), (Strings{"b", "d", "c", "a"}));
  EXPECT_EQ(sorted(RangeRequest::MOD, RangeRequest::DESCEND), (Strings{"a", "c", "d", "b"}));
  // A target other than KEY with order NONE sorts ascending (etcd).
  EXPECT_EQ(sorted(RangeRequest::MOD, RangeRequest::NONE), (Strings{"b", "d", "c", "a"}));
  EXPECT_EQ(sorted(RangeRequest::VALUE, RangeRequest::NONE), (Strings{"d", "a", "b", "c"}));
  // VERSION: a is the only key at version 2.
  auto by_version = sorted(RangeRequest::VERSION, RangeRequest::DESCEND);
  ASSERT_EQ(by_version.size(), 4u);
  EXPECT_EQ(by_version[0], "a");
  by_version = sorted(RangeRequest::VERSION, RangeRequest::ASCEND);
  EXPECT_EQ(by_version.back(), "a");
}

TEST_F(RangeTest, LimitMoreAndCount) {
  RangeRequest r = All();
  r.set_limit(2);
  auto resp = DoRange(r);
  ASSERT_TRUE(resp.ok());
  ASSERT_EQ(resp->kvs_size(), 2);
  EXPECT_EQ(resp->kvs(0).key(), "a");
  EXPECT_TRUE(resp->more());
  EXPECT_EQ(resp->count(), 4);
  EXPECT_EQ(resp->header().revision(), 6);
  // A limit equal to the number of keys: no more.
  r.set_limit(4);
  resp = DoRange(r);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->kvs_size(), 4);
  EXPECT_FALSE(resp->more());
  r.set_limit(3);
  EXPECT_TRUE(DoRange(r)->more());
  // Sorting happens before the limit: the two newest.
  r.set_limit(2);
  r.set_sort_target(RangeRequest::MOD);
  r.set_sort_order(RangeRequest::DESCEND);
  resp = DoRange(r);
  ASSERT_TRUE(resp.ok());
  ASSERT_EQ(resp->kvs_size(), 2);
  EXPECT_EQ(resp->kvs(0).key(), "a");
  EXPECT_EQ(resp->kvs(1).key(), "c");
  EXPECT_TRUE(resp->more());
  EXPECT_EQ(resp->count(), 4);
  // count_only: no kvs, no more.
  RangeRequest c = All();
  c.set_count_only(true);
  c.set_limit(1);
  resp = DoRange(c);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(resp->kvs_size(), 0);
  EXPECT_EQ(resp->count(), 4);
  EXPECT_FALSE(resp->more());
  // keys_only drops values, nothing else.
  RangeRequest k = MakeRange("a");
  k.set_keys_only(true);
  resp = DoRange(k);
  ASSERT_TRUE(resp.ok());
  ASSERT_EQ(resp->kvs_size(), 1);
  EXPECT_EQ(resp->kvs(0).value(), "");
  EXPECT_EQ(resp->kvs(0).version(), 2);
  EXPECT_EQ(resp->kvs(0).mod_revision(), 6);
}

TEST_F(RangeTest, FiltersDoNotChangeTheCount) {
  RangeRequest r = All();
  r.set_min_mod_revision(4);
  EXPECT_EQ(RangeKeys(r), (Strings{"a", "c", "d"}));
  r.set_max_mod_revision(5);
  EXPECT_EQ(RangeKeys(r), (Strings{"c", "d"}));
  EXPECT_EQ(DoRange(r)->count(), 4);  // etcd: the count before filtering
  RangeRequest c = All();
  c.set_min_create_revision(3);
  c.set_max_create_revision(4);
  EXPECT_EQ(RangeKeys(c), (Strings{"a", "d"}));
  // With a limit the filters apply before the truncation.
  c.set_limit(1);
  auto resp = DoRange(c);
  ASSERT_EQ(resp->kvs_size(), 1);
  EXPECT_EQ(resp->kvs(0).key(), "a");
  EXPECT_TRUE(resp->more());
}

TEST_F(RangeTest, RevisionsAndErrors) {
  RangeRequest r = All();
  r.set_revision(3);
  auto resp = DoRange(r);
  ASSERT_TRUE(resp.ok());
  EXPECT_EQ(RangeKeys(r), (Strings{"a", "b"}));
  EXPECT_EQ(resp->kvs(0).value(), "5");
  EXPECT_EQ(resp->header().revision(), 6);  // the current revision, as etcd
  r.set_revision(7);
  EXPECT_EQ(DoRange(r).status(), errors::FutureRev());
  Compact(4);
  r.set_revision(3);
  EXPECT_EQ(DoRange(r).status(), errors::Compacted());
  r.set_revision(4);
  EXPECT_EQ(RangeKeys(r), (Strings{"a", "b", "d"}));
  // From key and all keys.
  EXPECT_EQ(RangeKeys(MakeRange("c", kFromKey)), (Strings{"c", "d"}));
  EXPECT_EQ(RangeKeys(MakeRange(kFromKey, kFromKey)), (Strings{"a", "b", "c", "d"}));
}

// ------------------------------------------------------------ Put / Delete

TEST_F(KvOpsTest, PutPrevKvAndIgnoreFlags) {
  GrantLease(9, 60);
  auto r = DoPut(MakePut("k", "v1", 9));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), 2);
  EXPECT_FALSE(r->has_prev_kv());
  PutRequest p = MakePut("k", "v2");
  p.set_prev_kv(true);
  r = DoPut(p);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->prev_kv().value(), "v1");
  EXPECT_EQ(r->prev_kv().lease(), 9);
  EXPECT_EQ(r->header().revision(), 3);
  // ignore_value keeps the value, ignore_lease the lease.
  p = MakePut("k", "", 9);
  p.set_ignore_value(true);
  ASSERT_TRUE(DoPut(p).ok());
  auto got = DoRange(MakeRange("k"));
  EXPECT_EQ(got->kvs(0).value(), "v2");
  EXPECT_EQ(got->kvs(0).lease(), 9);
  p = MakePut("k", "v3");
  p.set_ignore_lease(true);
  ASSERT_TRUE(DoPut(p).ok());
  got = DoRange(MakeRange("k"));
  EXPECT_EQ(got->kvs(0).value(), "v3");
  EXPECT_EQ(got->kvs(0).lease(), 9);
  EXPECT_EQ(got->kvs(0).version(), 4);
  // Both need an existing key.
  p = MakePut("missing", "");
  p.set_ignore_value(true);
  EXPECT_EQ(DoPut(p).status(), errors::KeyNotFound());
  p = MakePut("missing", "v");
  p.set_ignore_lease(true);
  EXPECT_EQ(DoPut(p).status(), errors::KeyNotFound());
  EXPECT_EQ(kv_->CurrentRevision(), 5);
}

TEST_F(KvOpsTest, DeleteRangeCountsAndPrevKvs) {
  Put("a", "1");
  Put("b", "2");
  Put("c", "3");
  DeleteRangeRequest d = MakeDelete("a", "c");
  d.set_prev_kv(true);
  auto r = DoDelete(d);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted(), 2);
  ASSERT_EQ(r->prev_kvs_size(), 2);
  EXPECT_EQ(r->prev_kvs(1).value(), "2");
  EXPECT_EQ(r->header().revision(), 5);
  // Nothing to delete: the current revision, nothing changes.
  r = DoDelete(MakeDelete("a"));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted(), 0);
  EXPECT_EQ(r->prev_kvs_size(), 0);
  EXPECT_EQ(r->header().revision(), 5);
  EXPECT_EQ(kv_->CurrentRevision(), 5);
  r = DoDelete(MakeDelete("a", kFromKey));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deleted(), 1);
  EXPECT_EQ(r->prev_kvs_size(), 0);  // not asked for
}

// ------------------------------------------------------------ Txn

TEST_F(KvOpsTest, CompareSemantics) {
  GrantLease(5, 60);
  Put("k", "m", 5);  // 2
  Put("k", "m");     // 3: version 2, lease 0
  Put("j", "z");     // 4
  struct Case {
    const char* name;
    Compare cmp;
    bool want;
  };
  const std::vector<Case> cases = {
      {"value equal", CmpValue("k", Compare::EQUAL, "m"), true},
      {"value not equal", CmpValue("k", Compare::NOT_EQUAL, "m"), false},
      {"value greater", CmpValue("k", Compare::GREATER, "a"), true},
      {"value less", CmpValue("k", Compare::LESS, "mm"), true},
      {"value less (prefix)", CmpValue("k", Compare::LESS, "m"), false},
      // VALUE on a missing key is always false, whatever the operator.
      {"missing value equal empty", CmpValue("nope", Compare::EQUAL, ""), false},
      {"missing value not equal", CmpValue("nope", Compare::NOT_EQUAL, "x"), false},
      {"missing value less", CmpValue("nope", Compare::LESS, "x"), false},
      // Other targets compare a missing key as all zeros.
      {"missing create == 0", CmpInt("nope", Compare::CREATE, Compare::EQUAL, 0), true},
      {"missing version == 0", CmpInt("nope", Compare::VERSION, Compare::EQUAL, 0), true},
      {"missing mod < 1", CmpInt("nope", Compare::MOD, Compare::LESS, 1), true},
      {"missing lease == 0", CmpInt("nope", Compare::LEASE, Compare::EQUAL, 0), true},
      {"version", CmpInt("k", Compare::VERSION, Compare::EQUAL, 2), true},
      {"create", CmpInt("k", Compare::CREATE, Compare::EQUAL, 2), true},
      {"mod", CmpInt("k", Compare::MOD, Compare::GREATER, 2), true},
      {"mod not equal", CmpInt("k", Compare::MOD, Compare::NOT_EQUAL, 3), false},
      {"lease cleared", CmpInt("k", Compare::LEASE, Compare::EQUAL, 0), true},
      // A range: every key must satisfy the compare.
      {"range all",
       [] {
         Compare c = CmpInt("a", Compare::VERSION, Compare::GREATER, 0);
         c.set_range_end("z");
         return c;
       }(),
       true},
      {"range one fails",
       [] {
         Compare c = CmpValue("a", Compare::EQUAL, "m");
         c.set_range_end("z");
         return c;
       }(),
       false},
      {"range from key",
       [] {
         Compare c = CmpInt("k", Compare::MOD, Compare::EQUAL, 3);
         c.set_range_end(kFromKey);
         return c;
       }(),
       true},
      {"empty range, value",
       [] {
         Compare c = CmpValue("x", Compare::NOT_EQUAL, "q");
         c.set_range_end("y");
         return c;
       }(),
       false},
      {"empty range, create",
       [] {
         Compare c = CmpInt("x", Compare::CREATE, Compare::EQUAL, 0);
         c.set_range_end("y");
         return c;
       }(),
       true},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(Succeeded(MakeTxn({c.cmp}, {})), c.want) << c.name;
  }
  // The target union unset compares with zero / the empty value.
  Compare unset;
  unset.set_key("k");
  unset.set_target(Compare::MOD);
  unset.set_result(Compare::GREATER);
  EXPECT_TRUE(Succeeded(MakeTxn({unset}, {})));
  unset.set_target(Compare::VALUE);
  EXPECT_TRUE(Succeeded(MakeTxn({unset}, {})));  // "m" > ""
  // All compares must hold.
  EXPECT_FALSE(Succeeded(
      MakeTxn({CmpValue("k", Compare::EQUAL, "m"), CmpValue("j", Compare::EQUAL, "m")}, {})));
  EXPECT_TRUE(Succeeded(MakeTxn({}, {})));  // no compare: success
  EXPECT_EQ(kv_->CurrentRevision(), 4);
}

// The headers kv_ops produces carry a revision and nothing else: the API
// layer fills cluster, member and term of the top-level header only, so the
// responses inside a txn keep just their revision, as etcd's.
::testing::AssertionResult OnlyRevision(const etcdserverpb::ResponseHeader& h, int64_t revision) {
  if (h.revision() == revision && h.cluster_id() == 0 && h.member_id() == 0 && h.raft_term() == 0) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "header " << h.ShortDebugString() << ", want revision " << revision << " only";
}

TEST_F(KvOpsTest, TxnBranchesResponsesAndHeaders) {
  Put("k", "1");  // 2
  auto t =
      MakeTxn({CmpValue("k", Compare::EQUAL, "1")},
              {OpPut("k", "2"), OpRange("k"), OpDelete("gone"), OpPut("n", "x")}, {OpRange("k")});
  auto r = DoTxn(t);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->succeeded());
  EXPECT_EQ(r->header().revision(), 3);
  ASSERT_EQ(r->responses_size(), 4);
  EXPECT_TRUE(OnlyRevision(r->header(), 3));
  EXPECT_TRUE(OnlyRevision(r->responses(0).response_put().header(), 3));
  // The range sees the txn's own put.
  EXPECT_EQ(r->responses(1).response_range().kvs(0).value(), "2");
  EXPECT_TRUE(OnlyRevision(r->responses(1).response_range().header(), 3));
  EXPECT_EQ(r->responses(2).response_delete_range().deleted(), 0);
  EXPECT_TRUE(OnlyRevision(r->responses(2).response_delete_range().header(), 3));
  EXPECT_TRUE(OnlyRevision(r->responses(3).response_put().header(), 3));
  // One revision for the whole txn.
  EXPECT_EQ(kv_->CurrentRevision(), 3);
  EXPECT_EQ(DoRange(MakeRange("n"))->kvs(0).mod_revision(), 3);

  // The failure branch.
  r = DoTxn(t);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->succeeded());
  ASSERT_EQ(r->responses_size(), 1);
  EXPECT_EQ(r->responses(0).response_range().kvs(0).value(), "2");
  EXPECT_EQ(r->header().revision(), 3);
  // A read-only txn answers at the read view's revision.
  r = DoTxn(MakeTxn({}, {OpRange("k")}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), 3);
  // A write txn that changes nothing keeps the revision.
  r = DoTxn(MakeTxn({}, {OpDelete("nothing")}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->header().revision(), 3);
  EXPECT_EQ(kv_->CurrentRevision(), 3);
}

// etcd's newTxnResp gives a nested txn response an empty header: the API
// layer fills only the top-level one, so a nested header never carries
// cluster, member or term (nor, in etcd 3.4, a revision); its own ops carry
// their revisions.
TEST_F(KvOpsTest, NestedTxnPathAndHeaders) {
  Put("k", "1");  // 2
  auto inner_ok = MakeTxn({CmpValue("k", Compare::EQUAL, "1")}, {OpPut("a", "x"), OpRange("a")},
                          {OpPut("b", "x")});
  auto inner_fail = MakeTxn({CmpValue("k", Compare::EQUAL, "nope")}, {OpPut("c", "x")},
                            {OpRange("k"), OpTxn(MakeTxn({}, {OpPut("d", "x")}))});
  // The compares of nested txns see the state before the txn: the outer put
  // of k does not change which branch the inner ones take.
  auto outer = MakeTxn({}, {OpPut("k", "2"), OpTxn(inner_ok), OpTxn(inner_fail)});
  auto r = DoTxn(outer);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->header().revision(), 3);
  ASSERT_EQ(r->responses_size(), 3);
  const TxnResponse& first = r->responses(1).response_txn();
  EXPECT_TRUE(first.succeeded());
  EXPECT_TRUE(first.has_header());
  EXPECT_TRUE(OnlyRevision(first.header(), 0));
  ASSERT_EQ(first.responses_size(), 2);
  EXPECT_TRUE(OnlyRevision(first.responses(0).response_put().header(), 3));
  EXPECT_TRUE(OnlyRevision(first.responses(1).response_range().header(), 3));
  EXPECT_EQ(first.responses(1).response_range().kvs(0).value(), "x");
  const TxnResponse& second = r->responses(2).response_txn();
  EXPECT_FALSE(second.succeeded());
  EXPECT_TRUE(OnlyRevision(second.header(), 0));
  ASSERT_EQ(second.responses_size(), 2);
  EXPECT_EQ(second.responses(0).response_range().kvs(0).value(), "2");
  const TxnResponse& third = second.responses(1).response_txn();
  EXPECT_TRUE(third.succeeded());
  EXPECT_TRUE(OnlyRevision(third.header(), 0));
  EXPECT_EQ(third.responses(0).response_put().header().revision(), 3);
  Strings keys = RangeKeys(MakeRange("a", "z"));
  EXPECT_EQ(keys, (Strings{"a", "d", "k"}));
}

TEST_F(KvOpsTest, TxnRequestErrorsOnTheTakenPathOnly) {
  Put("k", "1");  // 2
  Put("k", "2");  // 3
  Put("k", "3");  // 4
  auto bad_lease = OpPut("x", "v", 777);
  RequestOp ignore_missing = OpPut("missing", "");
  ignore_missing.mutable_request_put()->set_ignore_value(true);
  RequestOp future = OpRange("k");
  future.mutable_request_range()->set_revision(5);
  RequestOp old = OpRange("k");
  old.mutable_request_range()->set_revision(2);

  EXPECT_EQ(DoTxn(MakeTxn({}, {OpPut("y"), bad_lease})).status(), errors::LeaseNotFound());
  EXPECT_EQ(DoTxn(MakeTxn({}, {ignore_missing})).status(), errors::KeyNotFound());
  EXPECT_EQ(DoTxn(MakeTxn({}, {OpPut("y"), future})).status(), errors::FutureRev());
  EXPECT_EQ(DoTxn(MakeTxn({}, {future})).status(), errors::FutureRev());  // read-only
  EXPECT_EQ(DoTxn(MakeTxn({}, {OpTxn(MakeTxn({}, {bad_lease}))})).status(),
            errors::LeaseNotFound());
  // Nothing of a failed txn is applied.
  EXPECT_EQ(kv_->CurrentRevision(), 4);
  EXPECT_TRUE(RangeKeys(MakeRange("y")).empty());
  // Errors in the branch not taken do not matter.
  auto r = DoTxn(MakeTxn({CmpValue("k", Compare::EQUAL, "3")}, {OpPut("y")},
                         {bad_lease, ignore_missing, future}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_TRUE(r->succeeded());
  Compact(3);
  EXPECT_EQ(DoTxn(MakeTxn({}, {old})).status(), errors::Compacted());
  old.mutable_request_range()->set_revision(3);
  r = DoTxn(MakeTxn({}, {old}));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->responses(0).response_range().kvs(0).value(), "2");
  GrantLease(777, 60);
  EXPECT_TRUE(DoTxn(MakeTxn({}, {bad_lease})).ok());
}

// A put and a from-key delete of the same key in one txn (allowed by etcd's
// interval check) leaves the key deleted.
TEST_F(KvOpsTest, PutThenFromKeyDeleteInOneTxn) {
  Put("k", "old");
  auto t = MakeTxn({}, {OpPut("k", "new"), OpDelete("k", kFromKey)});
  ASSERT_TRUE(CheckTxnRequest(t, 128).ok());
  auto r = DoTxn(t);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->responses(1).response_delete_range().deleted(), 1);
  EXPECT_TRUE(RangeKeys(MakeRange("k")).empty());
  EXPECT_EQ(kv_->CurrentRevision(), 3);
}

// ------------------------------------------------------------ Applier

constexpr uint64_t kMemberId = 42;

class ApplierTest : public KvOpsTest {
 protected:
  void SetUp() override {
    KvOpsTest::SetUp();
    NewApplier();
  }
  void TearDown() override {
    applier_.reset();
    KvOpsTest::TearDown();
  }
  void NewApplier() {
    applier_ = std::make_unique<Applier>(engine_.get(), kv_.get(), lessor_.get(), kMemberId);
    ASSERT_TRUE(applier_->Open().ok());
  }
  void Restart() {
    applier_.reset();
    Close();
    Open();
    NewApplier();
  }
  ApplyResult Apply(const cairnpb::InternalRequest& req) {
    return applier_->Apply(applier_->applied_index() + 1, req);
  }
  static cairnpb::InternalRequest PutReq(const std::string& k, const std::string& v,
                                         int64_t lease = 0) {
    cairnpb::InternalRequest req;
    *req.mutable_put() = MakePut(k, v, lease);
    return req;
  }
  static cairnpb::InternalRequest DeleteReq(const std::string& k, const std::string& end = "") {
    cairnpb::InternalRequest req;
    *req.mutable_delete_range() = MakeDelete(k, end);
    return req;
  }
  static cairnpb::InternalRequest TxnReq(const TxnRequest& t) {
    cairnpb::InternalRequest req;
    *req.mutable_txn() = t;
    return req;
  }
  static cairnpb::InternalRequest GrantReq(int64_t id, int64_t ttl) {
    cairnpb::InternalRequest req;
    req.mutable_lease_grant()->set_id(id);
    req.mutable_lease_grant()->set_ttl(ttl);
    return req;
  }
  static cairnpb::InternalRequest RevokeReq(int64_t id) {
    cairnpb::InternalRequest req;
    req.mutable_lease_revoke()->set_id(id);
    return req;
  }
  static cairnpb::InternalRequest CompactReq(int64_t rev) {
    cairnpb::InternalRequest req;
    req.mutable_compaction()->set_revision(rev);
    return req;
  }
  static cairnpb::InternalRequest AlarmReq(etcdserverpb::AlarmRequest::AlarmAction action,
                                           etcdserverpb::AlarmType alarm, uint64_t member) {
    cairnpb::InternalRequest req;
    req.mutable_alarm()->set_action(action);
    req.mutable_alarm()->set_alarm(alarm);
    req.mutable_alarm()->set_memberid(member);
    return req;
  }
  static Status ErrorOf(const ApplyResult& r) {
    return Status(static_cast<Code>(r.response.error_code()), r.response.error_message());
  }

  std::unique_ptr<Applier> applier_;
};

TEST_F(ApplierTest, AppliedIndexIsPersistedWithTheEffects) {
  EXPECT_EQ(applier_->applied_index(), 0u);
  auto r = Apply(PutReq("a", "1"));
  EXPECT_EQ(r.response.error_code(), 0);
  EXPECT_EQ(r.revision, 2);
  EXPECT_EQ(r.response.put().header().revision(), 2);
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].kv().key(), "a");
  EXPECT_EQ(applier_->applied_index(), 1u);
  r = Apply(PutReq("a", "2"));
  ASSERT_EQ(r.events.size(), 1u);
  EXPECT_EQ(r.events[0].prev_kv().value(), "1");
  r = Apply(DeleteReq("zzz"));  // a no-op still takes its index
  EXPECT_EQ(r.revision, 3);
  EXPECT_TRUE(r.events.empty());
  Restart();
  EXPECT_EQ(applier_->applied_index(), 3u);
  EXPECT_EQ(kv_->CurrentRevision(), 3);
  EXPECT_EQ(DoRange(MakeRange("a"))->kvs(0).value(), "2");
}

TEST_F(ApplierTest, AFailedRequestLeavesNoChangeButItsIndex) {
  Apply(PutReq("a", "1"));  // index 1, rev 2
  std::vector<std::pair<cairnpb::InternalRequest, Status>> failing = {
      {PutReq("b", "1", 12345), errors::LeaseNotFound()},
      {TxnReq(MakeTxn({}, {OpPut("b", "1"), OpPut("c", "1", 12345)})), errors::LeaseNotFound()},
      {TxnReq([] {
         RequestOp future = OpRange("a");
         future.mutable_request_range()->set_revision(99);
         return MakeTxn({}, {OpDelete("a"), future});
       }()),
       errors::FutureRev()},
      {[] {
         cairnpb::InternalRequest req = PutReq("missing", "");
         req.mutable_put()->set_ignore_value(true);
         return req;
       }(),
       errors::KeyNotFound()},
      {CompactReq(99), errors::FutureRev()},
      {RevokeReq(4242), errors::LeaseNotFound()},
  };
  uint64_t index = applier_->applied_index();
  for (const auto& [req, want] : failing) {
    auto r = Apply(req);
    EXPECT_EQ(ErrorOf(r), want) << req.ShortDebugString();
    EXPECT_TRUE(r.events.empty());
    EXPECT_EQ(r.revision, 2);
    EXPECT_EQ(applier_->applied_index(), ++index);
  }
  EXPECT_EQ(kv_->CurrentRevision(), 2);
  EXPECT_EQ(RangeKeys(MakeRange(kFromKey, kFromKey)), Strings{"a"});
  Restart();
  EXPECT_EQ(applier_->applied_index(), index);
  EXPECT_EQ(kv_->CurrentRevision(), 2);
  EXPECT_EQ(RangeKeys(MakeRange(kFromKey, kFromKey)), Strings{"a"});
}

TEST_F(ApplierTest, NoSpaceAlarmBlocksPutsButNotDeletes) {
  Apply(PutReq("a", "1"));
  Apply(PutReq("b", "1"));
  Apply(GrantReq(7, 60));
  EXPECT_FALSE(applier_->NoSpaceAlarm());
  auto r = Apply(AlarmReq(etcdserverpb::AlarmRequest::ACTIVATE, etcdserverpb::NOSPACE, kMemberId));
  ASSERT_EQ(r.response.alarm().alarms_size(), 1);
  EXPECT_TRUE(applier_->NoSpaceAlarm());
  const int64_t rev = kv_->CurrentRevision();

  EXPECT_EQ(ErrorOf(Apply(PutReq("c", "1"))), errors::NoSpace());
  // A put in either branch blocks a txn, as etcd's quota cost (costTxn).
  EXPECT_EQ(ErrorOf(Apply(TxnReq(MakeTxn({}, {OpRange("a")}, {OpPut("c")})))), errors::NoSpace());
  // So does a put in a nested txn. Stricter than etcd 3.4, whose costTxnReq
  // only counts top-level puts and so lets a nested put through.
  EXPECT_EQ(ErrorOf(Apply(TxnReq(MakeTxn({}, {OpRange("a")}, {OpTxn(MakeTxn({}, {OpPut("c")}))})))),
            errors::NoSpace());
  EXPECT_EQ(ErrorOf(Apply(GrantReq(8, 60))), errors::NoSpace());
  EXPECT_EQ(kv_->CurrentRevision(), rev);
  // Deletes, delete-only txns, revokes and compactions still work.
  r = Apply(DeleteReq("a"));
  EXPECT_EQ(r.response.error_code(), 0);
  EXPECT_EQ(r.response.delete_range().deleted(), 1);
  r = Apply(TxnReq(MakeTxn({}, {OpDelete("b"), OpRange("b")})));
  EXPECT_EQ(r.response.error_code(), 0);
  EXPECT_EQ(Apply(RevokeReq(7)).response.error_code(), 0);
  EXPECT_EQ(Apply(CompactReq(rev)).response.error_code(), 0);
  EXPECT_EQ(kv_->CurrentRevision(), rev + 2);

  // The alarm is part of the replicated state: it survives a restart.
  Restart();
  EXPECT_TRUE(applier_->NoSpaceAlarm());
  EXPECT_EQ(ErrorOf(Apply(PutReq("c", "1"))), errors::NoSpace());
  r = Apply(AlarmReq(etcdserverpb::AlarmRequest::GET, etcdserverpb::NONE, 0));
  ASSERT_EQ(r.response.alarm().alarms_size(), 1);
  EXPECT_EQ(r.response.alarm().alarms(0).memberid(), kMemberId);
  r = Apply(AlarmReq(etcdserverpb::AlarmRequest::DEACTIVATE, etcdserverpb::NOSPACE, kMemberId));
  EXPECT_EQ(r.response.alarm().alarms_size(), 1);
  EXPECT_FALSE(applier_->NoSpaceAlarm());
  EXPECT_EQ(Apply(PutReq("c", "1")).response.error_code(), 0);
  Restart();
  EXPECT_FALSE(applier_->NoSpaceAlarm());
}

TEST_F(ApplierTest, EmptyEntryOnlyMovesTheAppliedIndex) {
  Apply(PutReq("a", "1"));
  const int64_t rev = kv_->CurrentRevision();
  const uint64_t index = applier_->applied_index();
  auto r = Apply(cairnpb::InternalRequest());  // a new leader's no-op
  EXPECT_EQ(r.response.error_code(), 0);
  EXPECT_TRUE(r.events.empty());
  EXPECT_EQ(kv_->CurrentRevision(), rev);
  EXPECT_EQ(applier_->applied_index(), index + 1);
}

TEST_F(ApplierTest, MemberChangesKeepTheMemberTable) {
  cairnpb::InternalRequest add;
  add.mutable_member_change()->set_type(cairnpb::MemberChange::ADD_LEARNER);
  add.mutable_member_change()->mutable_member()->set_id(7);
  add.mutable_member_change()->mutable_member()->set_name("m7");
  add.mutable_member_change()->mutable_member()->add_peer_urls("http://h7:2380");
  EXPECT_EQ(Apply(add).response.error_code(), 0);
  cairnpb::InternalRequest promote;
  promote.mutable_member_change()->set_type(cairnpb::MemberChange::ADD_VOTER);
  promote.mutable_member_change()->mutable_member()->set_id(7);
  Apply(promote);
  Restart();
  auto members = applier_->Members();
  ASSERT_EQ(members.size(), 1u);
  EXPECT_EQ(members[0].name(), "m7");  // kept through the promotion
  EXPECT_FALSE(members[0].is_learner());
  cairnpb::InternalRequest remove;
  remove.mutable_member_change()->set_type(cairnpb::MemberChange::REMOVE);
  remove.mutable_member_change()->mutable_member()->set_id(7);
  Apply(remove);
  Restart();
  EXPECT_TRUE(applier_->Members().empty());
  EXPECT_TRUE(applier_->IsRemoved(7));
  EXPECT_FALSE(applier_->IsRemoved(8));
}

TEST_F(ApplierTest, LeaseRevokeDeletesAttachedKeysInOneRevision) {
  Apply(GrantReq(7, 60));
  Apply(PutReq("a", "1", 7));
  Apply(PutReq("b", "1", 7));
  Apply(PutReq("c", "1"));
  EXPECT_EQ(ErrorOf(Apply(GrantReq(7, 60))), errors::LeaseExist());
  auto r = Apply(RevokeReq(7));
  EXPECT_EQ(r.response.error_code(), 0);
  EXPECT_EQ(r.revision, 5);
  ASSERT_EQ(r.events.size(), 2u);
  EXPECT_EQ(r.events[0].type(), mvccpb::Event::DELETE);
  EXPECT_EQ(r.events[1].prev_kv().key(), "b");
  EXPECT_FALSE(lessor_->Exists(7));
  EXPECT_EQ(RangeKeys(MakeRange(kFromKey, kFromKey)), Strings{"c"});
  // A revoked lease with no keys left changes no revision.
  Apply(GrantReq(8, 60));
  r = Apply(RevokeReq(8));
  EXPECT_EQ(r.revision, 5);
}

TEST_F(ApplierTest, CompactionThroughTheLog) {
  Apply(PutReq("a", "1"));
  Apply(PutReq("a", "2"));
  Apply(PutReq("a", "3"));
  auto r = Apply(CompactReq(3));
  EXPECT_EQ(r.response.error_code(), 0);
  EXPECT_EQ(kv_->CompactRevision(), 3);
  RangeRequest old = MakeRange("a");
  old.set_revision(2);
  EXPECT_EQ(DoRange(old).status(), errors::Compacted());
  EXPECT_EQ(ErrorOf(Apply(CompactReq(3))), errors::Compacted());
  Restart();
  EXPECT_EQ(kv_->CompactRevision(), 3);
}

// ApplyBatch: several entries, one atomic write (a compaction splits it).
class ApplyBatchTest : public ApplierTest {
 protected:
  struct Answer {
    size_t i;
    ApplyResult result;
    int64_t committed_rev;  // the store's revision when answered
    Strings visible;        // the keys a reader saw when answered
  };
  std::vector<Answer> ApplyAll(const std::vector<cairnpb::InternalRequest>& reqs) {
    std::vector<const cairnpb::InternalRequest*> ptrs;
    for (const auto& r : reqs) ptrs.push_back(&r);
    std::vector<Answer> out;
    applier_->ApplyBatch(applier_->applied_index() + 1, ptrs, [&](size_t i, ApplyResult& r) {
      out.push_back({i, r, kv_->CurrentRevision(), RangeKeys(MakeRange(kFromKey, kFromKey))});
    });
    return out;
  }
};

TEST_F(ApplyBatchTest, EntriesAreAnsweredInOrderWithTheirOwnRevisions) {
  Apply(GrantReq(7, 60));  // index 1
  RequestOp keep_value = OpPut("a", "");
  keep_value.mutable_request_put()->set_ignore_value(true);
  auto answers = ApplyAll({
      PutReq("a", "1"),                                                             // rev 2
      PutReq("x", "1", 999),                                                        // fails
      TxnReq(MakeTxn({CmpValue("a", Compare::EQUAL, "1")}, {OpPut("b", "1", 7)})),  // rev 3
      TxnReq(MakeTxn({}, {keep_value})),  // rev 4: sees a from this batch
      DeleteReq("nothing"),               // no change
      DeleteReq("a"),                     // rev 5
  });
  ASSERT_EQ(answers.size(), 6u);
  const int64_t want_rev[] = {2, 2, 3, 4, 4, 5};
  for (size_t i = 0; i < answers.size(); i++) {
    EXPECT_EQ(answers[i].i, i);
    EXPECT_EQ(answers[i].result.revision, want_rev[i]) << i;
    // Answered only once committed: the whole batch is one write.
    EXPECT_EQ(answers[i].committed_rev, 5) << i;
  }
  EXPECT_EQ(ErrorOf(answers[1].result), errors::LeaseNotFound());
  EXPECT_TRUE(answers[1].result.events.empty());
  EXPECT_TRUE(answers[2].result.response.txn().succeeded());
  EXPECT_EQ(answers[3].result.events[0].kv().value(), "1");
  EXPECT_EQ(answers[3].result.events[0].kv().version(), 2);
  EXPECT_EQ(answers[3].result.events[0].prev_kv().mod_revision(), 2);
  EXPECT_TRUE(answers[4].result.events.empty());
  EXPECT_EQ(answers[4].result.response.delete_range().header().revision(), 4);
  EXPECT_EQ(answers[5].result.events[0].prev_kv().value(), "1");
  EXPECT_EQ(applier_->applied_index(), 7u);
  EXPECT_EQ(RangeKeys(MakeRange(kFromKey, kFromKey)), Strings{"b"});

  // The change log replays exactly the events that were published.
  std::vector<mvccpb::Event> published;
  for (const auto& a : answers) {
    published.insert(published.end(), a.result.events.begin(), a.result.events.end());
  }
  int64_t next = 0;
  auto replay = kv_->Read()->Events(2, 5, 100, true, &next);
  ASSERT_TRUE(replay.ok());
  ASSERT_EQ(replay->size(), published.size());
  for (size_t i = 0; i < published.size(); i++) {
    EXPECT_EQ((*replay)[i].ShortDebugString(), published[i].ShortDebugString()) << i;
  }
  Restart();
  EXPECT_EQ(applier_->applied_index(), 7u);
  EXPECT_EQ(kv_->CurrentRevision(), 5);
}

TEST_F(ApplyBatchTest, AFailedEntryIsRolledBackAloneAndTakesNoRevision) {
  RequestOp future = OpRange("a");
  future.mutable_request_range()->set_revision(50);
  auto answers = ApplyAll({
      PutReq("a", "1"),
      TxnReq(MakeTxn({}, {OpPut("b", "1"), future})),
      GrantReq(3, 60),
      GrantReq(3, 60),  // exists: fails
      PutReq("c", "1", 3),
  });
  ASSERT_EQ(answers.size(), 5u);
  EXPECT_EQ(ErrorOf(answers[1].result), errors::FutureRev());
  EXPECT_EQ(ErrorOf(answers[3].result), errors::LeaseExist());
  EXPECT_EQ(answers[4].result.revision, 3);
  EXPECT_EQ(RangeKeys(MakeRange(kFromKey, kFromKey)), (Strings{"a", "c"}));
  EXPECT_EQ(answers[4].result.events[0].kv().lease(), 3);
  Restart();
  EXPECT_TRUE(lessor_->Exists(3));
  EXPECT_EQ(kv_->CurrentRevision(), 3);
}

// A compaction commits what came before it, then itself, and is physically
// done before it is answered.
TEST_F(ApplyBatchTest, ACompactionSplitsTheBatch) {
  RangeRequest at2 = MakeRange("a");
  at2.set_revision(2);
  auto answers = ApplyAll({
      PutReq("a", "1"),  // 2
      PutReq("a", "2"),  // 3
      CompactReq(3),     // a revision written in this very batch
      PutReq("a", "3"),  // 4
      CompactReq(9),     // future: fails, the batch goes on
      PutReq("b", "1"),  // 5
  });
  ASSERT_EQ(answers.size(), 6u);
  EXPECT_EQ(answers[0].committed_rev, 3);  // committed before the compaction
  EXPECT_EQ(answers[1].committed_rev, 3);
  EXPECT_EQ(answers[2].result.response.error_code(), 0)
      << answers[2].result.response.error_message();
  EXPECT_EQ(answers[2].committed_rev, 3);
  EXPECT_EQ(answers[3].committed_rev, 4);  // the next compaction commits it, even one that fails
  EXPECT_EQ(ErrorOf(answers[4].result), errors::FutureRev());
  EXPECT_EQ(answers[5].result.revision, 5);
  EXPECT_EQ(answers[5].committed_rev, 5);
  EXPECT_EQ(kv_->CompactRevision(), 3);
  EXPECT_EQ(DoRange(at2).status(), errors::Compacted());
  EXPECT_EQ(applier_->applied_index(), 6u);
  Restart();
  EXPECT_EQ(kv_->CompactRevision(), 3);
  EXPECT_EQ(applier_->applied_index(), 6u);
}

TEST_F(ApplyBatchTest, AlarmsAndLeasesTakeEffectWithinTheBatch) {
  auto answers = ApplyAll({
      GrantReq(5, 60), PutReq("k", "1", 5),  // 2
      PutReq("j", "1"),                      // 3
      RevokeReq(5),                          // 4: deletes k
      PutReq("k", "2", 5),                   // the lease is gone
      AlarmReq(etcdserverpb::AlarmRequest::ACTIVATE, etcdserverpb::NOSPACE, kMemberId),
      PutReq("m", "1"),  // blocked
      DeleteReq("j"),    // 5: allowed
  });
  ASSERT_EQ(answers.size(), 8u);
  EXPECT_EQ(answers[3].result.revision, 4);
  ASSERT_EQ(answers[3].result.events.size(), 1u);
  EXPECT_EQ(answers[3].result.events[0].kv().key(), "k");
  EXPECT_EQ(ErrorOf(answers[4].result), errors::LeaseNotFound());
  EXPECT_EQ(ErrorOf(answers[6].result), errors::NoSpace());
  EXPECT_EQ(answers[7].result.revision, 5);
  EXPECT_TRUE(RangeKeys(MakeRange(kFromKey, kFromKey)).empty());
}

// The order check comes before anything is touched, so no storage is needed
// (and the re-executed child of a threadsafe death test leaves no temp dir).
TEST(ApplierDeathTest, ApplyingOutOfOrderStopsTheProcess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  Applier applier(nullptr, nullptr, nullptr, kMemberId);
  cairnpb::InternalRequest req;
  *req.mutable_put() = MakePut("a", "1");
  EXPECT_DEATH(applier.Apply(2, req), "apply out of order: 2 after 0");
}

}  // namespace
}  // namespace cairn::apply

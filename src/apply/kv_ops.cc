#include "apply/kv_ops.h"

#include <algorithm>
#include <set>
#include <string>
#include <vector>

#include "common/check.h"

namespace cairn::apply {

using etcdserverpb::Compare;
using etcdserverpb::RangeRequest;
using etcdserverpb::RequestOp;

Status InvalidSortOption() { return {Code::kInvalidArgument, "etcdserver: invalid sort option"}; }

Status CheckRangeRequest(const RangeRequest& r) {
  if (r.key().empty()) return errors::EmptyKey();
  return Status::Ok();
}

Status CheckPutRequest(const etcdserverpb::PutRequest& r) {
  if (r.key().empty()) return errors::EmptyKey();
  if (r.ignore_value() && !r.value().empty()) return errors::ValueProvided();
  if (r.ignore_lease() && r.lease() != 0) return errors::LeaseProvided();
  return Status::Ok();
}

Status CheckDeleteRequest(const etcdserverpb::DeleteRangeRequest& r) {
  if (r.key().empty()) return errors::EmptyKey();
  return Status::Ok();
}

namespace {

Status CheckTxnShape(const etcdserverpb::TxnRequest& r, int max_txn_ops);

Status CheckRequestOp(const RequestOp& u, int max_txn_ops) {
  switch (u.request_case()) {
    case RequestOp::kRequestRange: return CheckRangeRequest(u.request_range());
    case RequestOp::kRequestPut: return CheckPutRequest(u.request_put());
    case RequestOp::kRequestDeleteRange: return CheckDeleteRequest(u.request_delete_range());
    case RequestOp::kRequestTxn: return CheckTxnShape(u.request_txn(), max_txn_ops);
    default: return errors::KeyNotFound();  // empty op, as etcd
  }
}

// Half-open string intervals as etcd's adt.StringAffineInterval: an empty end
// is +infinity. A point k is [k, k+"\0").
struct Interval {
  std::string begin, end;
};
bool Contains(const Interval& iv, const std::string& point) {
  if (point < iv.begin) return false;
  if (iv.end.empty()) return true;
  return point < iv.end;
}
bool AnyContains(const std::vector<Interval>& dels, const std::string& point) {
  for (const auto& iv : dels) {
    if (Contains(iv, point)) return true;
  }
  return false;
}

// etcd's checkIntervals: no key may be put twice or put and deleted in one
// txn (across nested txns; then/else branches of one nested txn may overlap).
Status CheckIntervals(const google::protobuf::RepeatedPtrField<RequestOp>& reqs,
                      std::set<std::string>* puts_out, std::vector<Interval>* dels_out) {
  std::vector<Interval> dels;
  for (const auto& req : reqs) {
    if (req.request_case() != RequestOp::kRequestDeleteRange) continue;
    const auto& d = req.request_delete_range();
    if (!d.range_end().empty()) {
      dels.push_back({d.key(), d.range_end()});
    } else {
      dels.push_back({d.key(), d.key() + std::string(1, '\0')});
    }
  }
  std::set<std::string> puts;
  for (const auto& req : reqs) {
    if (req.request_case() != RequestOp::kRequestTxn) continue;
    std::set<std::string> puts_then, puts_else;
    std::vector<Interval> dels_then, dels_else;
    Status s = CheckIntervals(req.request_txn().success(), &puts_then, &dels_then);
    if (!s.ok()) return s;
    s = CheckIntervals(req.request_txn().failure(), &puts_else, &dels_else);
    if (!s.ok()) return s;
    for (const auto& k : puts_then) {
      if (puts.count(k) || AnyContains(dels, k)) return errors::DuplicateKey();
      puts.insert(k);
    }
    for (const auto& k : puts_else) {
      if (puts.count(k) && !puts_then.count(k)) return errors::DuplicateKey();
      if (AnyContains(dels, k)) return errors::DuplicateKey();
      puts.insert(k);
    }
    dels.insert(dels.end(), dels_then.begin(), dels_then.end());
    dels.insert(dels.end(), dels_else.begin(), dels_else.end());
  }
  for (const auto& req : reqs) {
    if (req.request_case() != RequestOp::kRequestPut) continue;
    const std::string& k = req.request_put().key();
    if (puts.count(k) || AnyContains(dels, k)) return errors::DuplicateKey();
    puts.insert(k);
  }
  if (puts_out) *puts_out = std::move(puts);
  if (dels_out) *dels_out = std::move(dels);
  return Status::Ok();
}

Status CheckTxnShape(const etcdserverpb::TxnRequest& r, int max_txn_ops) {
  int opc = r.compare_size();
  opc = std::max(opc, r.success_size());
  opc = std::max(opc, r.failure_size());
  if (opc > max_txn_ops) return errors::TooManyOps();
  for (const auto& c : r.compare()) {
    if (c.key().empty()) return errors::EmptyKey();
  }
  for (const auto& u : r.success()) {
    Status s = CheckRequestOp(u, max_txn_ops - opc);
    if (!s.ok()) return s;
  }
  for (const auto& u : r.failure()) {
    Status s = CheckRequestOp(u, max_txn_ops - opc);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

}  // namespace

Status CheckTxnRequest(const etcdserverpb::TxnRequest& r, int max_txn_ops) {
  Status s = CheckTxnShape(r, max_txn_ops);
  if (!s.ok()) return s;
  // After the shape check, to avoid quadratic work on oversized requests.
  s = CheckIntervals(r.success(), nullptr, nullptr);
  if (!s.ok()) return s;
  return CheckIntervals(r.failure(), nullptr, nullptr);
}

bool IsTxnReadOnly(const etcdserverpb::TxnRequest& r) {
  auto ro = [](const google::protobuf::RepeatedPtrField<RequestOp>& ops) {
    for (const auto& u : ops) {
      switch (u.request_case()) {
        case RequestOp::kRequestPut:
        case RequestOp::kRequestDeleteRange: return false;
        case RequestOp::kRequestTxn:
          if (!IsTxnReadOnly(u.request_txn())) return false;
          break;
        default: break;
      }
    }
    return true;
  };
  return ro(r.success()) && ro(r.failure());
}

// ------------------------------------------------------------------ Range

namespace {
template <typename F>
void Prune(std::vector<mvccpb::KeyValue>* kvs, F drop) {
  kvs->erase(std::remove_if(kvs->begin(), kvs->end(), drop), kvs->end());
}
}  // namespace

Result<etcdserverpb::RangeResponse> Range(mvcc::ReadView& view, const RangeRequest& r) {
  int64_t limit = r.limit();
  if (r.sort_order() != RangeRequest::NONE || r.min_mod_revision() != 0 ||
      r.max_mod_revision() != 0 || r.min_create_revision() != 0 ||
      r.max_create_revision() != 0) {
    limit = 0;  // fetch everything; sort and truncate afterwards
  }
  if (limit > 0) limit++;  // one extra for `more`

  mvcc::RangeOptions ro;
  ro.limit = limit;
  ro.rev = r.revision();
  ro.count_only = r.count_only();
  auto rr = view.Range(r.key(), r.range_end(), ro);
  if (!rr.ok()) return rr.status();
  auto& kvs = rr->kvs;

  if (r.max_mod_revision() != 0) {
    Prune(&kvs, [&](const mvccpb::KeyValue& kv) { return kv.mod_revision() > r.max_mod_revision(); });
  }
  if (r.min_mod_revision() != 0) {
    Prune(&kvs, [&](const mvccpb::KeyValue& kv) { return kv.mod_revision() < r.min_mod_revision(); });
  }
  if (r.max_create_revision() != 0) {
    Prune(&kvs, [&](const mvccpb::KeyValue& kv) {
      return kv.create_revision() > r.max_create_revision();
    });
  }
  if (r.min_create_revision() != 0) {
    Prune(&kvs, [&](const mvccpb::KeyValue& kv) {
      return kv.create_revision() < r.min_create_revision();
    });
  }

  auto order = r.sort_order();
  if (r.sort_target() != RangeRequest::KEY && order == RangeRequest::NONE) {
    order = RangeRequest::ASCEND;
  }
  if (order == RangeRequest::ASCEND || order == RangeRequest::DESCEND) {
    auto less = [&](const mvccpb::KeyValue& a, const mvccpb::KeyValue& b) {
      switch (r.sort_target()) {
        case RangeRequest::KEY: return a.key() < b.key();
        case RangeRequest::VERSION: return a.version() < b.version();
        case RangeRequest::CREATE: return a.create_revision() < b.create_revision();
        case RangeRequest::MOD: return a.mod_revision() < b.mod_revision();
        case RangeRequest::VALUE: return a.value() < b.value();
        default: return false;
      }
    };
    if (order == RangeRequest::ASCEND) {
      std::stable_sort(kvs.begin(), kvs.end(), less);
    } else {
      std::stable_sort(kvs.begin(), kvs.end(),
                       [&](const mvccpb::KeyValue& a, const mvccpb::KeyValue& b) { return less(b, a); });
    }
  }

  etcdserverpb::RangeResponse resp;
  if (r.limit() > 0 && static_cast<int64_t>(kvs.size()) > r.limit()) {
    kvs.resize(r.limit());
    resp.set_more(true);
  }
  resp.mutable_header()->set_revision(rr->rev);
  resp.set_count(rr->count);
  for (auto& kv : kvs) {
    if (r.keys_only()) kv.clear_value();
    *resp.add_kvs() = std::move(kv);
  }
  return resp;
}

// ------------------------------------------------------------ Put / Delete

Result<etcdserverpb::PutResponse> Put(mvcc::WriteTxn& txn, const lease::Lessor& lessor,
                                      const etcdserverpb::PutRequest& p) {
  etcdserverpb::PutResponse resp;
  std::string value = p.value();
  int64_t lease_id = p.lease();
  mvccpb::KeyValue prev;
  bool have_prev = false;
  if (p.ignore_value() || p.ignore_lease() || p.prev_kv()) {
    auto found = txn.Get(p.key(), &prev);
    if (!found.ok()) return found.status();
    have_prev = *found;
  }
  if ((p.ignore_value() || p.ignore_lease()) && !have_prev) return errors::KeyNotFound();
  if (p.ignore_value()) value = prev.value();
  if (p.ignore_lease()) lease_id = prev.lease();
  if (p.prev_kv() && have_prev) *resp.mutable_prev_kv() = prev;
  auto rev = txn.Put(p.key(), value, lease_id);
  if (!rev.ok()) return rev.status();
  resp.mutable_header()->set_revision(*rev);
  return resp;
}

Result<etcdserverpb::DeleteRangeResponse> DeleteRange(mvcc::WriteTxn& txn,
                                                      const etcdserverpb::DeleteRangeRequest& d) {
  etcdserverpb::DeleteRangeResponse resp;
  if (d.prev_kv()) {
    auto rr = txn.Range(d.key(), d.range_end(), mvcc::RangeOptions{});
    if (!rr.ok()) return rr.status();
    for (auto& kv : rr->kvs) *resp.add_prev_kvs() = std::move(kv);
  }
  auto res = txn.DeleteRange(d.key(), d.range_end());
  if (!res.ok()) return res.status();
  resp.set_deleted(res->first);
  resp.mutable_header()->set_revision(res->second);
  return resp;
}

// -------------------------------------------------------------------- Txn

namespace {

int CompareInt(int64_t a, int64_t b) { return a < b ? -1 : (a > b ? 1 : 0); }

bool CompareKV(const Compare& c, const mvccpb::KeyValue& kv) {
  int result = 0;
  switch (c.target()) {
    case Compare::VALUE: {
      const std::string empty;
      const std::string& v = c.target_union_case() == Compare::kValue ? c.value() : empty;
      int cmp = kv.value().compare(v);
      result = cmp < 0 ? -1 : (cmp > 0 ? 1 : 0);
      break;
    }
    case Compare::CREATE:
      result = CompareInt(kv.create_revision(),
                          c.target_union_case() == Compare::kCreateRevision ? c.create_revision() : 0);
      break;
    case Compare::MOD:
      result = CompareInt(kv.mod_revision(),
                          c.target_union_case() == Compare::kModRevision ? c.mod_revision() : 0);
      break;
    case Compare::VERSION:
      result = CompareInt(kv.version(), c.target_union_case() == Compare::kVersion ? c.version() : 0);
      break;
    case Compare::LEASE:
      result = CompareInt(kv.lease(), c.target_union_case() == Compare::kLease ? c.lease() : 0);
      break;
    default: break;
  }
  switch (c.result()) {
    case Compare::EQUAL: return result == 0;
    case Compare::NOT_EQUAL: return result != 0;
    case Compare::GREATER: return result > 0;
    case Compare::LESS: return result < 0;
    default: return true;
  }
}

bool ApplyCompare(mvcc::ReadView& view, const Compare& c) {
  auto rr = view.Range(c.key(), c.range_end(), mvcc::RangeOptions{});
  if (!rr.ok()) return false;
  if (rr->kvs.empty()) {
    if (c.target() == Compare::VALUE) return false;
    return CompareKV(c, mvccpb::KeyValue());
  }
  for (const auto& kv : rr->kvs) {
    if (!CompareKV(c, kv)) return false;
  }
  return true;
}

// The branch taken by every txn, nested ones included, in pre-order.
void CompareToPath(mvcc::ReadView& view, const etcdserverpb::TxnRequest& r, std::vector<bool>* path) {
  bool ok = true;
  for (const auto& c : r.compare()) {
    if (!ApplyCompare(view, c)) {
      ok = false;
      break;
    }
  }
  path->push_back(ok);
  const auto& ops = ok ? r.success() : r.failure();
  for (const auto& op : ops) {
    if (op.request_case() == RequestOp::kRequestTxn) CompareToPath(view, op.request_txn(), path);
  }
}

template <typename F>
Status CheckRequests(const etcdserverpb::TxnRequest& r, const std::vector<bool>& path, size_t* pos,
                     F check) {
  bool ok = path[(*pos)++];
  const auto& ops = ok ? r.success() : r.failure();
  for (const auto& op : ops) {
    if (op.request_case() == RequestOp::kRequestTxn) {
      Status s = CheckRequests(op.request_txn(), path, pos, check);
      if (!s.ok()) return s;
      continue;
    }
    Status s = check(op);
    if (!s.ok()) return s;
  }
  return Status::Ok();
}

Status ApplyTxn(mvcc::ReadView& view, mvcc::WriteTxn* write, const lease::Lessor& lessor,
                const etcdserverpb::TxnRequest& r, const std::vector<bool>& path, size_t* pos,
                etcdserverpb::TxnResponse* resp) {
  bool ok = path[(*pos)++];
  resp->set_succeeded(ok);
  resp->mutable_header();
  const auto& ops = ok ? r.success() : r.failure();
  for (const auto& op : ops) {
    auto* out = resp->add_responses();
    switch (op.request_case()) {
      case RequestOp::kRequestRange: {
        auto rr = Range(view, op.request_range());
        CHECK(rr.ok()) << "unexpected error during txn: " << rr.status().ToString();
        *out->mutable_response_range() = std::move(*rr);
        break;
      }
      case RequestOp::kRequestPut: {
        CHECK(write != nullptr) << "put in a read-only txn";
        auto pr = Put(*write, lessor, op.request_put());
        CHECK(pr.ok()) << "unexpected error during txn: " << pr.status().ToString();
        *out->mutable_response_put() = std::move(*pr);
        break;
      }
      case RequestOp::kRequestDeleteRange: {
        CHECK(write != nullptr) << "delete in a read-only txn";
        auto dr = DeleteRange(*write, op.request_delete_range());
        CHECK(dr.ok()) << "unexpected error during txn: " << dr.status().ToString();
        *out->mutable_response_delete_range() = std::move(*dr);
        break;
      }
      case RequestOp::kRequestTxn: {
        Status s = ApplyTxn(view, write, lessor, op.request_txn(), path, pos,
                            out->mutable_response_txn());
        if (!s.ok()) return s;
        break;
      }
      default: break;
    }
  }
  return Status::Ok();
}

}  // namespace

Result<etcdserverpb::TxnResponse> Txn(mvcc::ReadView& view, mvcc::WriteTxn* write,
                                      const lease::Lessor& lessor,
                                      const etcdserverpb::TxnRequest& r) {
  std::vector<bool> path;
  CompareToPath(view, r, &path);
  if (write != nullptr) {
    size_t pos = 0;
    Status s = CheckRequests(r, path, &pos, [&](const RequestOp& op) -> Status {
      if (op.request_case() != RequestOp::kRequestPut) return Status::Ok();
      const auto& p = op.request_put();
      if (p.ignore_value() || p.ignore_lease()) {
        auto rr = view.Range(p.key(), "", mvcc::RangeOptions{});
        if (!rr.ok()) return rr.status();
        if (rr->kvs.empty()) return errors::KeyNotFound();
      }
      if (p.lease() != 0 && !lessor.Exists(p.lease())) return errors::LeaseNotFound();
      return Status::Ok();
    });
    if (!s.ok()) return s;
  }
  {
    size_t pos = 0;
    const int64_t rev = view.Rev(), first = view.FirstRev();
    Status s = CheckRequests(r, path, &pos, [&](const RequestOp& op) -> Status {
      if (op.request_case() != RequestOp::kRequestRange) return Status::Ok();
      int64_t want = op.request_range().revision();
      if (want == 0) return Status::Ok();
      if (want > rev) return errors::FutureRev();
      if (want < first) return errors::Compacted();
      return Status::Ok();
    });
    if (!s.ok()) return s;
  }
  etcdserverpb::TxnResponse resp;
  size_t pos = 0;
  Status s = ApplyTxn(view, write, lessor, r, path, &pos, &resp);
  if (!s.ok()) return s;
  int64_t rev = write ? write->end_rev() : view.Rev();
  resp.mutable_header()->set_revision(rev);
  return resp;
}

}  // namespace cairn::apply

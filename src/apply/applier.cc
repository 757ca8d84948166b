#include "apply/applier.h"

#include "apply/kv_ops.h"
#include "common/check.h"
#include "common/logging.h"

namespace cairn::apply {

using storage::Column;

namespace {
constexpr std::string_view kMetaAppliedIndex = "applied_index";
constexpr std::string_view kMetaAlarms = "alarms";
// Member table: kMemberPrefix + BE64(id) -> cairnpb.Member; removed ids are
// kept (kRemovedPrefix + BE64(id)) so their messages can be refused for ever.
constexpr std::string_view kMemberPrefix = "member/";
constexpr std::string_view kRemovedPrefix = "removed/";

std::string MemberKey(std::string_view prefix, uint64_t id) {
  std::string k(prefix);
  storage::PutFixed64BE(&k, id);
  return k;
}

void SetError(cairnpb::InternalResponse* resp, const Status& s) {
  resp->set_error_code(static_cast<int>(s.code()));
  resp->set_error_message(s.message());
}

bool TxnHasPut(const etcdserverpb::TxnRequest& r) {
  auto check = [](const auto& ops) {
    for (const auto& op : ops) {
      if (op.request_case() == etcdserverpb::RequestOp::kRequestPut) return true;
      if (op.request_case() == etcdserverpb::RequestOp::kRequestTxn && TxnHasPut(op.request_txn())) {
        return true;
      }
    }
    return false;
  };
  return check(r.success()) || check(r.failure());
}
}  // namespace

Applier::Applier(storage::Engine* engine, mvcc::KvStore* kv, lease::Lessor* lessor,
                 uint64_t member_id)
    : engine_(engine), kv_(kv), lessor_(lessor), member_id_(member_id), auth_(engine) {}

Status Applier::Open() {
  auto applied = AppliedIndexOf(engine_);
  if (!applied.ok()) return applied.status();
  if (Status s = auth_.Open(); !s.ok()) return s;
  applied_index_ = *applied;
  std::string v;
  auto found = engine_->Get(Column::kMeta, kMetaAlarms, &v);
  if (!found.ok()) return found.status();
  if (*found) {
    etcdserverpb::AlarmResponse stored;
    if (!stored.ParseFromString(v)) return Status(Code::kDataLoss, "apply: malformed alarms");
    std::lock_guard<std::mutex> lock(alarms_mu_);
    alarms_.assign(stored.alarms().begin(), stored.alarms().end());
  } else {
    std::lock_guard<std::mutex> lock(alarms_mu_);
    alarms_.clear();
  }
  auto it = engine_->NewIterator(Column::kMeta);
  std::lock_guard<std::mutex> lock(members_mu_);
  // Open runs again after a snapshot from the leader replaced the database.
  members_.clear();
  removed_.clear();
  for (it->Seek(kMemberPrefix); it->Valid() && it->key().starts_with(kMemberPrefix); it->Next()) {
    cairnpb::Member m;
    if (!m.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Status(Code::kDataLoss, "apply: malformed member record");
    }
    members_[m.id()] = std::move(m);
  }
  for (it->Seek(kRemovedPrefix); it->Valid() && it->key().starts_with(kRemovedPrefix); it->Next()) {
    removed_.insert(storage::DecodeFixed64BE(it->key().substr(kRemovedPrefix.size())));
  }
  return it->status();
}

bool Applier::IsMemberTableKey(std::string_view key) {
  return key.starts_with(kMemberPrefix) || key.starts_with(kRemovedPrefix);
}

void Applier::PutMember(storage::WriteBatch* batch, const cairnpb::Member& member) {
  batch->Put(Column::kMeta, MemberKey(kMemberPrefix, member.id()), member.SerializeAsString());
}

void Applier::PutAppliedIndex(storage::WriteBatch* batch, uint64_t index) {
  std::string v;
  storage::PutFixed64BE(&v, index);
  batch->Put(Column::kMeta, kMetaAppliedIndex, v);
}

Result<std::vector<cairnpb::Member>> Applier::MembersOf(storage::Engine* engine, const storage::Snapshot* snapshot,
                                                        std::vector<uint64_t>* removed) {
  std::vector<cairnpb::Member> members;
  auto it = engine->NewIterator(Column::kMeta, snapshot);
  for (it->Seek(kMemberPrefix); it->Valid() && it->key().starts_with(kMemberPrefix); it->Next()) {
    cairnpb::Member m;
    if (!m.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
      return Status(Code::kDataLoss, "apply: malformed member record");
    }
    members.push_back(std::move(m));
  }
  for (it->Seek(kRemovedPrefix); it->Valid() && it->key().starts_with(kRemovedPrefix); it->Next()) {
    if (it->key().size() != kRemovedPrefix.size() + 8) return Status(Code::kDataLoss, "apply: malformed removed id");
    removed->push_back(storage::DecodeFixed64BE(it->key().substr(kRemovedPrefix.size())));
  }
  if (!it->status().ok()) return it->status();
  return members;
}

Result<uint64_t> Applier::AppliedIndexOf(storage::Engine* engine, const storage::Snapshot* snapshot) {
  std::string v;
  auto found = engine->Get(Column::kMeta, kMetaAppliedIndex, &v, snapshot);
  if (!found.ok()) return found.status();
  if (!*found) return uint64_t{0};
  if (v.size() != 8) return Status(Code::kDataLoss, "corrupt applied index record");
  return storage::DecodeFixed64BE(v);
}

std::vector<cairnpb::Member> Applier::Members() const {
  std::lock_guard<std::mutex> lock(members_mu_);
  std::vector<cairnpb::Member> out;
  for (const auto& [id, m] : members_) out.push_back(m);
  return out;
}

bool Applier::IsRemoved(uint64_t id) const {
  std::lock_guard<std::mutex> lock(members_mu_);
  return removed_.count(id) != 0;
}

void Applier::ApplyMemberChange(storage::WriteBatch* batch, const cairnpb::MemberChange& change) {
  const uint64_t id = change.member().id();
  std::lock_guard<std::mutex> lock(members_mu_);
  if (change.type() == cairnpb::MemberChange::REMOVE) {
    members_.erase(id);
    removed_.insert(id);
    batch->Delete(Column::kMeta, MemberKey(kMemberPrefix, id));
    batch->Put(Column::kMeta, MemberKey(kRemovedPrefix, id), "");
    return;
  }
  auto existing = members_.find(id);
  if (change.type() == cairnpb::MemberChange::UPDATE_PEER_URLS) {
    // Checked by the member that proposed it; a member removed meanwhile
    // stays removed.
    if (existing == members_.end()) return;
    *existing->second.mutable_peer_urls() = change.member().peer_urls();
    batch->Put(Column::kMeta, MemberKey(kMemberPrefix, id), existing->second.SerializeAsString());
    return;
  }
  cairnpb::Member m = change.member();
  // A promotion or demotion carries no member details: keep the known ones.
  if (existing != members_.end() && m.name().empty() && m.peer_urls().empty()) {
    m = existing->second;
  }
  m.set_is_learner(change.type() == cairnpb::MemberChange::ADD_LEARNER);
  batch->Put(Column::kMeta, MemberKey(kMemberPrefix, id), m.SerializeAsString());
  members_[id] = std::move(m);
}

void Applier::ApplyMemberAttributes(storage::WriteBatch* batch, const cairnpb::Member& attributes) {
  std::lock_guard<std::mutex> lock(members_mu_);
  if (removed_.count(attributes.id())) return;
  cairnpb::Member& m = members_[attributes.id()];
  m.set_id(attributes.id());
  m.set_name(attributes.name());
  *m.mutable_client_urls() = attributes.client_urls();
  // A data dir of the single-member version has no member record: the
  // member's own peer URLs fill it in.
  if (m.peer_urls().empty()) *m.mutable_peer_urls() = attributes.peer_urls();
  batch->Put(Column::kMeta, MemberKey(kMemberPrefix, m.id()), m.SerializeAsString());
}

std::vector<etcdserverpb::AlarmMember> Applier::Alarms() const {
  std::lock_guard<std::mutex> lock(alarms_mu_);
  return alarms_;
}

bool Applier::NoSpaceAlarm() const {
  std::lock_guard<std::mutex> lock(alarms_mu_);
  for (const auto& a : alarms_) {
    if (a.alarm() == etcdserverpb::NOSPACE) return true;
  }
  return false;
}

void Applier::ApplyAlarm(storage::WriteBatch* batch, const etcdserverpb::AlarmRequest& r,
                         etcdserverpb::AlarmResponse* resp) {
  std::lock_guard<std::mutex> lock(alarms_mu_);
  bool changed = false;
  switch (r.action()) {
    case etcdserverpb::AlarmRequest::GET:
      for (const auto& a : alarms_) {
        if (r.alarm() == etcdserverpb::NONE || a.alarm() == r.alarm()) *resp->add_alarms() = a;
      }
      break;
    case etcdserverpb::AlarmRequest::ACTIVATE: {
      if (r.alarm() == etcdserverpb::NONE) break;
      bool exists = false;
      for (const auto& a : alarms_) {
        if (a.memberid() == r.memberid() && a.alarm() == r.alarm()) exists = true;
      }
      etcdserverpb::AlarmMember m;
      m.set_memberid(r.memberid());
      m.set_alarm(r.alarm());
      if (!exists) {
        alarms_.push_back(m);
        changed = true;
      }
      *resp->add_alarms() = m;
      break;
    }
    case etcdserverpb::AlarmRequest::DEACTIVATE: {
      for (auto it = alarms_.begin(); it != alarms_.end(); ++it) {
        if (it->memberid() == r.memberid() && it->alarm() == r.alarm()) {
          *resp->add_alarms() = *it;
          alarms_.erase(it);
          changed = true;
          break;
        }
      }
      break;
    }
    default: break;
  }
  if (changed) {
    etcdserverpb::AlarmResponse stored;
    for (const auto& a : alarms_) *stored.add_alarms() = a;
    batch->Put(Column::kMeta, kMetaAlarms, stored.SerializeAsString());
  }
}

int64_t Applier::Stage(storage::WriteBatch* batch, int64_t* rev, uint64_t index,
                       const cairnpb::InternalRequest& req, ApplyResult* out) {
  batch->SetSavePoint();
  mvcc::WriteTxn txn(kv_, batch, *rev);
  auto* resp = &out->response;
  int64_t compact_to = -1;  // -1: not a compaction (0 is a valid target)

  bool no_space = NoSpaceAlarm();
  const AuthInfo ai{req.auth_user(), req.auth_revision()};
  if (Status denied = CheckPermissions(txn, ai, req); !denied.ok()) {
    SetError(resp, denied);
  } else if (StageAuth(batch, index, req, resp)) {
    // done: an auth change (no MVCC change)
  } else switch (req.request_case()) {
    case cairnpb::InternalRequest::kPut: {
      if (no_space) { SetError(resp, errors::NoSpace()); break; }
      if (req.put().lease() != 0 && !lessor_->Exists(req.put().lease())) {
        SetError(resp, errors::LeaseNotFound());
        break;
      }
      auto r = Put(txn, *lessor_, req.put());
      if (!r.ok()) SetError(resp, r.status()); else *resp->mutable_put() = std::move(*r);
      break;
    }
    case cairnpb::InternalRequest::kDeleteRange: {
      auto r = DeleteRange(txn, req.delete_range());
      if (!r.ok()) SetError(resp, r.status()); else *resp->mutable_delete_range() = std::move(*r);
      break;
    }
    case cairnpb::InternalRequest::kTxn: {
      if (no_space && TxnHasPut(req.txn())) { SetError(resp, errors::NoSpace()); break; }
      auto r = Txn(txn, &txn, *lessor_, req.txn());
      if (!r.ok()) SetError(resp, r.status()); else *resp->mutable_txn() = std::move(*r);
      break;
    }
    case cairnpb::InternalRequest::kCompaction: {
      Status s = kv_->ScheduleCompaction(batch, req.compaction().revision());
      if (!s.ok()) { SetError(resp, s); break; }
      compact_to = req.compaction().revision();
      resp->mutable_compaction()->mutable_header();
      break;
    }
    case cairnpb::InternalRequest::kLeaseGrant: {
      if (no_space) { SetError(resp, errors::NoSpace()); break; }
      auto r = lessor_->Grant(batch, req.lease_grant().id(), req.lease_grant().ttl());
      if (!r.ok()) { SetError(resp, r.status()); break; }
      resp->mutable_lease_grant()->set_id(r->id);
      resp->mutable_lease_grant()->set_ttl(r->granted_ttl_seconds);
      resp->mutable_lease_grant()->mutable_header();
      break;
    }
    case cairnpb::InternalRequest::kLeaseRevoke: {
      int64_t id = req.lease_revoke().id();
      if (!lessor_->Exists(id)) { SetError(resp, errors::LeaseNotFound()); break; }
      auto keys = txn.LeaseKeys(id);
      CHECK(keys.ok()) << keys.status().ToString();
      for (const auto& k : *keys) {
        auto d = txn.DeleteRange(k, "");
        CHECK(d.ok()) << d.status().ToString();
      }
      Status s = lessor_->Revoke(batch, id);
      CHECK(s.ok()) << s.ToString();
      resp->mutable_lease_revoke()->mutable_header();
      break;
    }
    case cairnpb::InternalRequest::kAlarm:
      ApplyAlarm(batch, req.alarm(), resp->mutable_alarm());
      resp->mutable_alarm()->mutable_header();
      break;
    case cairnpb::InternalRequest::kMemberChange:
      ApplyMemberChange(batch, req.member_change());
      break;
    case cairnpb::InternalRequest::kMemberAttributes:
      ApplyMemberAttributes(batch, req.member_attributes());
      break;
    case cairnpb::InternalRequest::REQUEST_NOT_SET:
      break;  // a new leader's empty entry: only the index moves
    default:
      break;  // auth changes: StageAuth
  }

  // A failed request leaves no change but its index: every failure is found
  // before the request's first change or rolls the request back here.
  if (resp->error_code() != 0) {
    batch->RollbackToSavePoint();
    compact_to = -1;
  } else {
    batch->PopSavePoint();
    out->events = txn.changes();
    *rev = txn.end_rev();
  }
  out->revision = *rev;
  std::string idx;
  storage::PutFixed64BE(&idx, index);
  batch->Put(Column::kMeta, kMetaAppliedIndex, idx);
  return compact_to;
}

namespace {
bool NeedsAdmin(const cairnpb::InternalRequest& req) {
  switch (req.request_case()) {
    case cairnpb::InternalRequest::kAuthEnable:
    case cairnpb::InternalRequest::kAuthDisable:
    case cairnpb::InternalRequest::kUserAdd:
    case cairnpb::InternalRequest::kUserDelete:
    case cairnpb::InternalRequest::kUserChangePassword:
    case cairnpb::InternalRequest::kUserGrantRole:
    case cairnpb::InternalRequest::kUserRevokeRole:
    case cairnpb::InternalRequest::kRoleAdd:
    case cairnpb::InternalRequest::kRoleDelete:
    case cairnpb::InternalRequest::kRoleGrantPermission:
    case cairnpb::InternalRequest::kRoleRevokePermission:
      return true;
    default:
      return false;
  }
}
}  // namespace

Status Applier::CheckLeaseKeys(mvcc::WriteTxn& txn, const AuthInfo& ai, int64_t lease) {
  if (lease == 0 || !lessor_->Exists(lease)) return Status::Ok();
  if (auth_.IsAdminPermitted(ai).ok()) return Status::Ok();  // also: auth off
  auto keys = txn.LeaseKeys(lease);
  if (!keys.ok()) return keys.status();
  for (const auto& k : *keys) {
    if (Status s = auth_.IsPutPermitted(ai, k); !s.ok()) return s;
  }
  return Status::Ok();
}

Status Applier::CheckPut(mvcc::WriteTxn& txn, const AuthInfo& ai, const etcdserverpb::PutRequest& r) {
  if (Status s = auth_.IsPutPermitted(ai, r.key()); !s.ok()) return s;
  if (Status s = CheckLeaseKeys(txn, ai, r.lease()); !s.ok()) return s;
  if (r.prev_kv()) return auth_.IsRangePermitted(ai, r.key(), "");
  return Status::Ok();
}

Status Applier::CheckTxn(mvcc::WriteTxn& txn, const AuthInfo& ai, const etcdserverpb::TxnRequest& r) {
  for (const auto& c : r.compare()) {
    if (Status s = auth_.IsRangePermitted(ai, c.key(), c.range_end()); !s.ok()) return s;
  }
  for (const auto* ops : {&r.success(), &r.failure()}) {
    for (const auto& op : *ops) {
      Status s;
      switch (op.request_case()) {
        case etcdserverpb::RequestOp::kRequestRange:
          s = auth_.IsRangePermitted(ai, op.request_range().key(), op.request_range().range_end());
          break;
        case etcdserverpb::RequestOp::kRequestPut:
          s = CheckPut(txn, ai, op.request_put());
          break;
        case etcdserverpb::RequestOp::kRequestDeleteRange: {
          const auto& d = op.request_delete_range();
          if (d.prev_kv()) s = auth_.IsRangePermitted(ai, d.key(), d.range_end());
          if (s.ok()) s = auth_.IsDeleteRangePermitted(ai, d.key(), d.range_end());
          break;
        }
        case etcdserverpb::RequestOp::kRequestTxn:
          s = CheckTxn(txn, ai, op.request_txn());
          break;
        default:
          break;
      }
      if (!s.ok()) return s;
    }
  }
  return Status::Ok();
}

Status Applier::CheckPermissions(mvcc::WriteTxn& txn, const AuthInfo& ai, const cairnpb::InternalRequest& req) {
  if (!auth_.enabled()) return Status::Ok();
  if (NeedsAdmin(req)) return auth_.IsAdminPermitted(ai);
  switch (req.request_case()) {
    case cairnpb::InternalRequest::kPut:
      return CheckPut(txn, ai, req.put());
    case cairnpb::InternalRequest::kDeleteRange: {
      const auto& d = req.delete_range();
      if (Status s = auth_.IsDeleteRangePermitted(ai, d.key(), d.range_end()); !s.ok()) return s;
      if (d.prev_kv()) return auth_.IsRangePermitted(ai, d.key(), d.range_end());
      return Status::Ok();
    }
    case cairnpb::InternalRequest::kTxn:
      return CheckTxn(txn, ai, req.txn());
    case cairnpb::InternalRequest::kLeaseRevoke:
      return CheckLeaseKeys(txn, ai, req.lease_revoke().id());
    default:
      return Status::Ok();
  }
}

namespace {
// One line per auth change for the log (the audit trail of who changed what).
std::string DescribeAuthChange(const cairnpb::InternalRequest& req) {
  auto range = [](const std::string& key, const std::string& end) {
    if (end.empty()) return "key " + key;
    if (end == std::string(1, '\0')) return "keys from " + key;
    return "range [" + key + ", " + end + ")";
  };
  switch (req.request_case()) {
    case cairnpb::InternalRequest::kAuthEnable: return "enabled auth";
    case cairnpb::InternalRequest::kAuthDisable: return "disabled auth";
    case cairnpb::InternalRequest::kUserAdd:
      return "added user " + req.user_add().name() +
             (req.user_add().options().no_password() ? " (no password)" : "");
    case cairnpb::InternalRequest::kUserDelete: return "deleted user " + req.user_delete().name();
    case cairnpb::InternalRequest::kUserChangePassword:
      return "changed the password of user " + req.user_change_password().name();
    case cairnpb::InternalRequest::kUserGrantRole:
      return "granted role " + req.user_grant_role().role() + " to user " + req.user_grant_role().user();
    case cairnpb::InternalRequest::kUserRevokeRole:
      return "revoked role " + req.user_revoke_role().role() + " from user " + req.user_revoke_role().name();
    case cairnpb::InternalRequest::kRoleAdd: return "added role " + req.role_add().name();
    case cairnpb::InternalRequest::kRoleDelete: return "deleted role " + req.role_delete().role();
    case cairnpb::InternalRequest::kRoleGrantPermission: {
      const auto& p = req.role_grant_permission().perm();
      return "granted " + authpb::Permission::Type_Name(p.permtype()) + " on " + range(p.key(), p.range_end()) +
             " to role " + req.role_grant_permission().name();
    }
    case cairnpb::InternalRequest::kRoleRevokePermission: {
      const auto& r = req.role_revoke_permission();
      return "revoked the permission on " + range(r.key(), r.range_end()) + " from role " + r.role();
    }
    default: return "";
  }
}
}  // namespace

bool Applier::StageAuth(storage::WriteBatch* batch, uint64_t index, const cairnpb::InternalRequest& req,
                        cairnpb::InternalResponse* resp) {
  Status s;
  switch (req.request_case()) {
    case cairnpb::InternalRequest::kAuthEnable:
      s = auth_.Enable(batch);
      break;
    case cairnpb::InternalRequest::kAuthDisable:
      auth_.Disable(batch);
      break;
    case cairnpb::InternalRequest::kAuthenticate: {
      auto token = auth_.Authenticate(req.authenticate().name(),
                                      req.authenticate().simple_token() + "." + std::to_string(index));
      if (token.ok()) {
        resp->mutable_authenticate()->set_token(*token);
      } else {
        s = token.status();
      }
      break;
    }
    case cairnpb::InternalRequest::kUserAdd:
      s = auth_.UserAdd(batch, req.user_add());
      break;
    case cairnpb::InternalRequest::kUserDelete:
      s = auth_.UserDelete(batch, req.user_delete());
      break;
    case cairnpb::InternalRequest::kUserChangePassword:
      s = auth_.UserChangePassword(batch, req.user_change_password());
      break;
    case cairnpb::InternalRequest::kUserGrantRole:
      s = auth_.UserGrantRole(batch, req.user_grant_role());
      break;
    case cairnpb::InternalRequest::kUserRevokeRole:
      s = auth_.UserRevokeRole(batch, req.user_revoke_role());
      break;
    case cairnpb::InternalRequest::kRoleAdd:
      s = auth_.RoleAdd(batch, req.role_add());
      break;
    case cairnpb::InternalRequest::kRoleDelete:
      s = auth_.RoleDelete(batch, req.role_delete());
      break;
    case cairnpb::InternalRequest::kRoleGrantPermission:
      s = auth_.RoleGrantPermission(batch, req.role_grant_permission());
      break;
    case cairnpb::InternalRequest::kRoleRevokePermission:
      s = auth_.RoleRevokePermission(batch, req.role_revoke_permission());
      break;
    default:
      return false;
  }
  if (!s.ok()) {
    SetError(resp, s);
  } else if (req.request_case() != cairnpb::InternalRequest::kAuthenticate) {
    CAIRN_LOG(kInfo) << "auth: " << DescribeAuthChange(req) << " (by "
                     << (req.auth_user().empty() ? std::string("a client while auth was off") : "user " + req.auth_user())
                     << ", entry " << index << ", auth revision " << auth_.revision() << ")";
  }
  return true;
}

void Applier::ApplyBatch(uint64_t first_index,
                         const std::vector<const cairnpb::InternalRequest*>& requests,
                         const std::function<void(size_t, ApplyResult&)>& on_committed) {
  CHECK(first_index == applied_index_ + 1)
      << "apply out of order: " << first_index << " after " << applied_index_;
  std::vector<ApplyResult> results(requests.size());
  storage::WriteBatch batch(engine_);
  int64_t rev = kv_->CurrentRevision();
  size_t committed = 0;  // results[0, committed) are answered
  // Commits what is staged and answers entries [committed, upto). A
  // compaction's new revision floor is set before anyone is answered, and its
  // physical part is done before it is answered (etcd's physical=true).
  auto commit = [&](size_t upto, int64_t compact_to) {
    if (committed == upto) return;
    Status s = kv_->Commit(batch, rev, /*sync=*/false);
    CHECK(s.ok()) << "apply: storage write failed: " << s.ToString();
    batch.Clear();
    applied_index_ = first_index + upto - 1;
    if (compact_to >= 0) {
      kv_->SetCompactRevisionAfterCommit(compact_to);
      Status cs = kv_->CompactPhysical(compact_to);
      CHECK(cs.ok()) << "apply: compaction failed: " << cs.ToString();
    }
    for (; committed < upto; committed++) on_committed(committed, results[committed]);
  };
  for (size_t i = 0; i < requests.size(); i++) {
    if (requests[i]->request_case() == cairnpb::InternalRequest::kCompaction) commit(i, -1);
    int64_t compact_to = Stage(&batch, &rev, first_index + i, *requests[i], &results[i]);
    if (compact_to >= 0) commit(i + 1, compact_to);
  }
  commit(requests.size(), -1);
}

ApplyResult Applier::Apply(uint64_t index, const cairnpb::InternalRequest& req) {
  ApplyResult out;
  ApplyBatch(index, {&req}, [&](size_t, ApplyResult& r) { out = std::move(r); });
  return out;
}

}  // namespace cairn::apply

// Applier: the deterministic state machine. Applies one log entry at a time,
// in log order, to the MVCC store, the lessor and the alarms, and persists the
// entry's index in the same atomic batch as its effects, so a restart neither
// loses nor re-applies an entry.
//
// Thread: apply thread only (Open may run before it starts).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "apply/auth_store.h"
#include "cairnpb/internal.pb.h"
#include "common/status.h"
#include "lease/lessor.h"
#include "mvcc/kv_store.h"
#include "storage/engine.h"

namespace cairn::apply {

struct ApplyResult {
  cairnpb::InternalResponse response;
  int64_t revision = 0;                // the store's revision right after the entry
  std::vector<mvccpb::Event> events;   // changes of the entry, prev_kv filled
};

class Applier {
 public:
  Applier(storage::Engine* engine, mvcc::KvStore* kv, lease::Lessor* lessor, uint64_t member_id);

  Status Open();
  uint64_t applied_index() const { return applied_index_; }

  // Applies the entries at first_index, first_index+1, ... (first_index must
  // be applied_index()+1) and commits them with one atomic write (a
  // compaction commits what came before it, then itself). Expected failures
  // (a compare on a missing lease...) are in the responses and leave no
  // change; a storage failure stops the process, since the state would be
  // unknown. `on_committed` runs for each entry, in order, once its effects
  // are committed and visible to readers.
  void ApplyBatch(uint64_t first_index, const std::vector<const cairnpb::InternalRequest*>& requests,
                  const std::function<void(size_t i, ApplyResult&)>& on_committed);
  ApplyResult Apply(uint64_t index, const cairnpb::InternalRequest& request);

  // Users, roles and permissions (thread-safe; the mutators are for the
  // apply thread).
  AuthStore* auth() { return &auth_; }

  // Alarms (thread-safe copy).
  std::vector<etcdserverpb::AlarmMember> Alarms() const;
  bool NoSpaceAlarm() const;

  // The member table (thread-safe copies): members by id, and whether `id`
  // was removed (its messages are refused for ever; ids are never reused).
  std::vector<cairnpb::Member> Members() const;
  bool IsRemoved(uint64_t id) const;

  // The member table's records in column kMeta, for a restore that makes a
  // database the start of a new cluster: whether `key` is one (a member or
  // a removed id), and a member's record as Open reads it back.
  static bool IsMemberTableKey(std::string_view key);
  static void PutMember(storage::WriteBatch* batch, const cairnpb::Member& member);
  // The applied index a database holds (0 if none).
  static Result<uint64_t> AppliedIndexOf(storage::Engine* engine, const storage::Snapshot* snapshot = nullptr);
  // The member table at `snapshot`: members, and ids removed.
  static Result<std::vector<cairnpb::Member>> MembersOf(storage::Engine* engine, const storage::Snapshot* snapshot,
                                                        std::vector<uint64_t>* removed);
  // Stages `index` as the applied index of a database being made (an import).
  static void PutAppliedIndex(storage::WriteBatch* batch, uint64_t index);

 private:
  // Stages one entry in `batch` as a WriteTxn beginning at `*rev`; advances
  // `*rev` unless the entry failed (then its changes are rolled back).
  // Returns the revision to compact to, or -1.
  int64_t Stage(storage::WriteBatch* batch, int64_t* rev, uint64_t index,
                const cairnpb::InternalRequest& req, ApplyResult* out);
  void ApplyAlarm(storage::WriteBatch* batch, const etcdserverpb::AlarmRequest& r,
                  etcdserverpb::AlarmResponse* resp);
  void ApplyMemberChange(storage::WriteBatch* batch, const cairnpb::MemberChange& change);
  void ApplyMemberAttributes(storage::WriteBatch* batch, const cairnpb::Member& attributes);
  // The auth changes; false if `req` is none of them.
  bool StageAuth(storage::WriteBatch* batch, uint64_t index, const cairnpb::InternalRequest& req,
                 cairnpb::InternalResponse* resp);
  // etcd's checks of the entry's user (authApplierV3): Put, DeleteRange,
  // Txn (recursively), LeaseRevoke.
  Status CheckPermissions(mvcc::WriteTxn& txn, const AuthInfo& ai, const cairnpb::InternalRequest& req);
  Status CheckPut(mvcc::WriteTxn& txn, const AuthInfo& ai, const etcdserverpb::PutRequest& r);
  Status CheckTxn(mvcc::WriteTxn& txn, const AuthInfo& ai, const etcdserverpb::TxnRequest& r);
  Status CheckLeaseKeys(mvcc::WriteTxn& txn, const AuthInfo& ai, int64_t lease);

  storage::Engine* engine_;
  mvcc::KvStore* kv_;
  lease::Lessor* lessor_;
  uint64_t member_id_;
  uint64_t applied_index_ = 0;
  AuthStore auth_;
  mutable std::mutex alarms_mu_;
  std::vector<etcdserverpb::AlarmMember> alarms_;  // GUARDED_BY(alarms_mu_)
  mutable std::mutex members_mu_;
  std::map<uint64_t, cairnpb::Member> members_;   // GUARDED_BY(members_mu_)
  std::set<uint64_t> removed_;                     // GUARDED_BY(members_mu_)
};

}  // namespace cairn::apply

#include "server/restore.h"

#include <filesystem>
#include <map>

#include "apply/applier.h"
#include "cairnpb/internal.pb.h"
#include "server/etcd_snapshot.h"
#include "server/log_store.h"
#include "server/member_id.h"
#include "server/meta_keys.h"
#include "storage/engine.h"
#include "storage/snapshot_stream.h"

namespace cairn::server {

using storage::Column;

namespace {

// What belongs to the old cluster: its ids, its log and its member table.
bool KeepFromSnapshot(Column column, std::string_view key) {
  if (column != Column::kMeta) return true;
  return !(key == meta::kClusterId || key == meta::kMemberId || key == meta::kLogBase ||
           key == meta::kInstalling || apply::Applier::IsMemberTableKey(key));
}

Result<RestoredMember> WriteNewCluster(const std::string& db_path, const NewCluster& cluster) {
  storage::EngineOptions eo;
  eo.path = db_path;
  eo.create_if_missing = false;
  eo.block_cache_bytes = 8 << 20;
  auto engine = storage::Engine::Open(eo);
  if (!engine.ok()) return engine.status();
  auto applied = apply::Applier::AppliedIndexOf(engine->get());
  if (!applied.ok()) return applied.status();

  RestoredMember out;
  out.applied_index = *applied;
  // In member id order, as a new cluster's founders (Node::Bootstrap).
  std::map<uint64_t, cairnpb::Member> members;
  for (const auto& [name, urls] : cluster.members) {
    cairnpb::Member m;
    m.set_id(ComputeMemberId(urls, cluster.token));
    m.set_name(name);
    for (const auto& u : urls) m.add_peer_urls(u);
    if (name == cluster.name) out.member_id = m.id();
    members[m.id()] = std::move(m);
  }
  if (out.member_id == 0) {
    return Status(Code::kInvalidArgument,
                  "couldn't find local name \"" + cluster.name + "\" in the initial cluster configuration");
  }
  std::vector<uint64_t> ids;
  for (const auto& [id, m] : members) ids.push_back(id);
  out.cluster_id = ComputeClusterId(ids);

  storage::WriteBatch batch(engine->get());
  meta::PutIds(&batch, out.cluster_id, out.member_id);
  for (const auto& [id, m] : members) apply::Applier::PutMember(&batch, m);
  // The log starts after the applied index, every member a voter; the
  // term is the one a new cluster's founding entries have.
  LogBase base;
  base.index = out.applied_index;
  base.term = 1;
  base.conf_state.voters = ids;
  batch.Put(Column::kMeta, meta::kLogBase, base.Encode());
  Status s = (*engine)->Write(batch, /*sync=*/true);
  if (!s.ok()) return s;
  return out;
}

}  // namespace

Result<RestoredMember> RestoreMember(const std::string& snapshot_path, const std::string& db_path,
                                     const NewCluster& cluster, bool skip_hash_check) {
  std::vector<std::string> warnings;
  const bool from_etcd = IsEtcdSnapshot(snapshot_path);
  if (from_etcd) {
    auto imported = ImportEtcdSnapshot(snapshot_path, db_path, skip_hash_check);
    if (!imported.ok()) return imported.status();
    warnings = imported->warnings;
  } else {
    Status s = storage::RestoreSnapshot(snapshot_path, db_path, KeepFromSnapshot);
    if (!s.ok()) return s;
  }
  auto restored = WriteNewCluster(db_path, cluster);
  if (restored.ok()) {
    restored->from_etcd = from_etcd;
    restored->warnings = std::move(warnings);
  }
  if (!restored.ok()) {
    std::error_code ec;
    std::filesystem::remove_all(db_path, ec);
  }
  return restored;
}

}  // namespace cairn::server

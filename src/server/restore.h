// A member of a NEW cluster made from a snapshot, as `etcdutl snapshot
// restore` makes one: the snapshot's data, the new cluster's member and
// cluster ids (computed from --initial-cluster and the token exactly as a
// new cluster's, so they are the same on every member restored with the
// same flags), its member table, and a Raft log that starts right after the
// snapshot's applied index with every member a voter. Every member restored
// from the same file with the same flags thus starts from the same state
// and the same log base, and they form the cluster without a snapshot
// between them.
//
// Thread-safety: pure function over files nobody else has open.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace cairn::server {

struct NewCluster {
  std::string name;  // this member's, one of `members`
  // --initial-cluster, parsed (ServerConfig::InitialMembers): name -> peer URLs.
  std::vector<std::pair<std::string, std::vector<std::string>>> members;
  std::string token;  // --initial-cluster-token
};

struct RestoredMember {
  uint64_t member_id = 0;
  uint64_t cluster_id = 0;
  uint64_t applied_index = 0;  // where the new log starts
  bool from_etcd = false;      // the file was an etcd snapshot (server/etcd_snapshot.h)
  std::vector<std::string> warnings;  // what an etcd snapshot held that was not restored
};

// Verifies `snapshot_path` (a cairn snapshot, or an etcd one: a bbolt file,
// whose hash is required unless `skip_hash_check`, as etcdctl's restore) and
// creates the database `db_path` (which must not exist or be empty) from it
// as member `cluster.name` of `cluster`. On failure nothing is left at
// `db_path`.
Result<RestoredMember> RestoreMember(const std::string& snapshot_path, const std::string& db_path,
                                     const NewCluster& cluster, bool skip_hash_check = false);

}  // namespace cairn::server

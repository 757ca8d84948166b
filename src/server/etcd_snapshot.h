// etcd's snapshot files (what `etcdctl snapshot save` writes from a real etcd:
// its bbolt backend, then the SHA-256 of it) read into a cairn database, so
// a team moves its data from etcd to cairn with the file it already has.
//
// What is read, bucket by bucket (etcd's server/mvcc/buckets):
//  - key: every kept version, keyed BE64(main) '_' BE64(sub) ['t' for a
//    deletion], valued an mvccpb.KeyValue: each becomes a cairn version at
//    the same revision with the same create revision, version and lease, so
//    every kept revision reads as on etcd;
//  - meta: consistent_index (the applied index), finishedCompactRev and
//    scheduledCompactRev (the compacted revision);
//  - lease: every lease with its granted TTL, and the keys attached to it
//    (those whose latest version names it), as etcd's restore reattaches them.
// Not read: members and cluster (the restored member starts a new cluster
// from its flags, as etcdctl's restore does), alarms, and auth (cairn has no
// users or roles yet: their presence is reported as a warning).
//
// Thread-safety: pure functions over files nobody else has open.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace cairn::server {

struct EtcdImport {
  int64_t revision = 0;          // the current revision
  int64_t compact_revision = 0;  // 0: never compacted
  int64_t versions = 0;          // records of the key bucket
  int64_t leases = 0;
  uint64_t consistent_index = 0;
  std::vector<std::string> warnings;  // what was not carried over
};

// Whether the file at `path` starts as a bbolt database (an etcd snapshot or
// member.db) rather than a cairn snapshot.
bool IsEtcdSnapshot(const std::string& path);

// Checks the SHA-256 trailer as etcdctl's restore does (a file without one
// is refused unless `skip_hash_check`), then creates the database `db_path`
// (which must not exist or be empty) from the snapshot. A truncated or
// corrupt file is refused with DataLoss; on any failure nothing is left at
// `db_path`.
Result<EtcdImport> ImportEtcdSnapshot(const std::string& path, const std::string& db_path, bool skip_hash_check);

}  // namespace cairn::server

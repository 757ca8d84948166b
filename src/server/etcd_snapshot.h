// etcd's snapshot files (what `etcdctl snapshot save` writes from a real etcd:
// its bbolt backend, then the SHA-256 of it), both ways: read into a cairn
// database, so a team moves its data from etcd to cairn with the file it
// already has, and written from one (EtcdSnapshotStream, what cairn's
// Maintenance.Snapshot sends), so `etcdctl snapshot restore` and a real etcd
// take cairn's data back.
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
// Written: the same buckets, as etcd 3.5 writes them: key (every version
// the database keeps, deletions as a KeyValue holding only the key), lease
// (ID and TTL), members and members_removed (the member table, as JSON),
// meta (consistent_index = the applied index, the compaction), cluster
// (clusterVersion), auth (authRevision; no users or roles), alarm (empty).
//
// Thread-safety: the functions are pure over files nobody else has open; an
// EtcdSnapshotStream belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "storage/engine.h"

namespace cairn::bolt {
class BoltWriter;
}

namespace cairn::server {

// The etcd snapshot of a database at one point in time, as a byte stream
// (bbolt pages, then the SHA-256 of them). The data is read twice, once to
// lay the pages out (the meta pages, first in the file, say where the root
// is) and once to send them, so nothing is staged on disk and memory stays
// at about a MiB.
class EtcdSnapshotStream {
 public:
  // Reads at `snapshot`, which the stream keeps.
  EtcdSnapshotStream(storage::Engine* engine, std::shared_ptr<const storage::Snapshot> snapshot);
  ~EtcdSnapshotStream();
  // Appends up to `max_bytes` of the stream to `out`; false once done.
  Result<bool> NextChunk(std::string* out, size_t max_bytes);
  bool done() const { return done_; }
  // The stream's length; known once NextChunk has been called.
  uint64_t total_bytes() const { return total_bytes_; }

  class Records;

 private:
  storage::Engine* engine_;
  std::shared_ptr<const storage::Snapshot> snapshot_;
  std::unique_ptr<Records> records_;
  std::unique_ptr<bolt::BoltWriter> writer_;
  std::string pending_;
  struct Hasher;
  std::unique_ptr<Hasher> hasher_;
  bool planned_ = false;
  bool fed_ = false;
  bool done_ = false;
  uint64_t total_bytes_ = 0;
};

// Writes the etcd snapshot of `engine` at `snapshot` to `path` (a new file).
Status WriteEtcdSnapshot(storage::Engine* engine, std::shared_ptr<const storage::Snapshot> snapshot,
                         const std::string& path);

struct EtcdImport {
  int64_t revision = 0;          // the current revision
  int64_t compact_revision = 0;  // 0: never compacted
  int64_t versions = 0;          // records of the key bucket
  int64_t leases = 0;
  uint64_t consistent_index = 0;
  size_t users = 0, roles = 0;   // auth records carried over
  bool auth_enabled = false;
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

// Node: owns a member's threads and its one mutation path, which runs
// through the Raft core even on a single member (no second code path).
//
//   Propose() -> waiter (keyed by the request id carried in the entry)
//             -> RaftHost inbox (bounded) -> raft thread: batch, append to
//                the log (src/wal/, one fdatasync per Ready), replicate
//             -> committed entries -> ApplyWorker queue (bounded)
//             -> apply thread: apply, publish watch events, complete waiter.
//
// Ordering that matters: log write (fdatasync) -> apply -> publish events to
// watchers -> answer the client. So an answered write is durable, visible to
// any later read, and its watch events are queued before the answer leaves.
// The apply writes to RocksDB (the data and the applied index, atomically)
// are not synced: after a restart the core hands out again the committed
// entries past the applied index, and log entries are dropped only after a
// RocksDB WAL sync has made everything applied before them durable.
//
// Threads: Propose() and the accessors are thread-safe. Callbacks run on the
// apply thread (applied), the raft thread (refused, timed out) or the
// caller's (refused at once), and must not block.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "apply/applier.h"
#include "cairnpb/internal.pb.h"
#include "common/bounded_queue.h"
#include "common/clock.h"
#include "lease/lessor.h"
#include "mvcc/kv_store.h"
#include "storage/engine.h"
#include "server/apply_worker.h"
#include "server/log_store.h"
#include "server/raft_host.h"
#include "server/waiters.h"
#include "wal/wal.h"

namespace cairn::server {

struct NodeOptions {
  std::string data_dir;
  std::string name = "default";
  // This member's advertised URLs and the cluster token: a new data dir's
  // member id is computed from them as etcd computes it.
  std::vector<std::string> peer_urls = {"http://localhost:2380"};
  std::vector<std::string> client_urls = {"http://localhost:2379"};
  std::string initial_cluster_token = "etcd-cluster";
  // The founding members (name, peer URLs), this one included; empty: this
  // member alone. Used only when the data dir is new.
  std::vector<std::pair<std::string, std::vector<std::string>>> initial_members;
  // --initial-cluster-state existing: a new data dir joins a running cluster.
  // `fetch_cluster` asks the peers of --initial-cluster for the cluster id
  // and the member table (etcd's GetClusterFromRemotePeers); this member's
  // id is the one whose peer URLs are `peer_urls`.
  bool join_existing = false;
  struct RemoteCluster {
    uint64_t cluster_id = 0;
    std::vector<cairnpb::Member> members;
  };
  std::function<Result<RemoteCluster>()> fetch_cluster;
  // etcd's --heartbeat-interval (one Raft tick) and --election-timeout.
  int64_t heartbeat_interval_ms = 100;
  int64_t election_timeout_ms = 1000;
  // Proposals are refused ("too many requests") while the committed index is
  // this far ahead of the applied one (etcd: 5000).
  uint64_t max_apply_gap = 5000;
  // Proposals waiting for the log; more are refused with "too many requests".
  size_t max_pending_proposals = 16384;
  // Most proposals appended as one batch.
  size_t max_batch_entries = 1024;
  // Log entries kept behind the applied index (for a later Raft follower);
  // whole segments are released, so up to a segment more stays.
  uint64_t log_retention_entries = 10000;
  // Bytes of one log segment file (preallocated and zero-filled).
  uint64_t log_segment_bytes = 64ULL << 20;
  // How often expired leases are looked for.
  int64_t lease_check_interval_ms = 200;
  // Free disk space kept back: below it, writes that add data are refused
  // with NOSPACE before the disk is actually full (RocksDB's own out-of-space
  // paths are not something to rely on, and a restart needs room). 0 = a
  // quarter of the file system, at least 128 MiB and at most 256 MiB.
  uint64_t disk_reserve_bytes = 0;
  lease::LessorOptions lessor;
};

struct NodeIds {
  uint64_t cluster_id = 0;
  uint64_t member_id = 0;
};

// Hooks the API layer installs; all run on the apply thread.
struct NodeHooks {
  // On the apply thread after each batch it applied, and every 100 ms while
  // idle (ApplyWorkerHooks::after_batch).
  std::function<void()> after_apply_batch;
  // After each committed revision with changes.
  std::function<void(int64_t rev, const std::vector<mvccpb::Event>& events)> on_events;
  // Durations of the log's write and fdatasync of a batch, and of the apply
  // commit of a batch of `entries`, in seconds.
  std::function<void(double seconds)> on_log_sync;
  std::function<void(double seconds, size_t entries)> on_apply_commit;
  // The known leader or the term changed (raft thread).
  std::function<void(uint64_t leader, uint64_t term)> on_leader_change;
  // A membership change entry was applied (apply thread).
  std::function<void(const cairnpb::MemberChange& change)> on_member_change;
  // A snapshot from the leader replaced the state (raft thread): the store
  // jumped to `revision`, the member table may have changed.
  std::function<void(int64_t revision)> on_snapshot_installed;
};

class Node {
 public:
  using Callback = std::function<void(const cairnpb::InternalResponse&)>;

  explicit Node(NodeOptions options);
  ~Node();

  // Opens (or creates) the data dir and starts the threads. Refuses a folder
  // that is not cairn's.
  // `transport` (not owned, may be null for a member without peers) must
  // outlive the node.
  Status Start(NodeHooks hooks, Transport* transport = nullptr);
  // Publishes this member's attributes through the log (retrying until a
  // leader takes them) and returns once that entry is applied here: then
  // everything committed before this start is applied too, and the member may
  // serve clients (etcd serves only after publishing). Blocks until then or
  // until Stop().
  Status Publish();
  void Stop();

  // Proposes `request`; `done` runs exactly once with the applied response or
  // an error (too many requests, no leader, timed out, leader changed,
  // stopping).
  void Propose(cairnpb::InternalRequest request, Callback done);
  // Proposes a membership change (checked by the caller against the member
  // table): ADD_VOTER / ADD_LEARNER (also a promotion) / REMOVE as a Raft
  // membership change, UPDATE_PEER_URLS as an ordinary entry. `done` runs
  // once the change is applied here, or with an error.
  void ProposeMemberChange(cairnpb::MemberChange change, Callback done);

  // A linearizable read: `done` runs with OK when this member's state
  // reflects every write acknowledged before the call (ReadIndex: the leader
  // confirms its commit index with a quorum, then this member applies up to
  // it), or with etcd's error. On the only voter of a cluster, which has no
  // rival leader and answers writes only once applied, that holds already:
  // `done` runs at once on the caller's thread. Otherwise it runs on a read
  // thread of the node.
  void LinearizableRead(std::function<void(const Status&)> done);
  // The leader refused the proposal this member forwarded as `id`.
  void FailForwarded(uint64_t id, const Status& status) { waiters_.Fail(id, status); }

  // Snapshots for followers behind the log. TakeSnapshotImage (raft
  // thread, through the LogStore) pins the database as it is now and returns
  // its applied index; SnapshotImage(index) hands that image to the peer
  // transport to stream (nullptr if a newer one replaced it: the leader asks
  // again).
  Result<uint64_t> TakeSnapshotImage();
  std::shared_ptr<const storage::Snapshot> SnapshotImage(uint64_t index) const;
  // Where received snapshot images are stored until installed.
  std::string snapshot_dir() const;

  // A keep-alive: renews the lease here and, on a follower, on the leader
  // (whose deadlines alone decide expiry). Returns the TTL or LeaseNotFound.
  Result<int64_t> RenewLease(int64_t id);

  mvcc::KvStore* kv() const { return kv_.get(); }
  // The raft host, for the peer transport's incoming messages.
  RaftHost* raft() const { return raft_.get(); }
  lease::Lessor* lessor() const { return lessor_.get(); }
  storage::Engine* engine() const { return engine_.get(); }
  apply::Applier* applier() const { return applier_.get(); }
  const NodeIds& ids() const { return ids_; }
  uint64_t applied_index() const { return apply_ ? apply_->applied_index() : 0; }
  uint64_t commit_index() const { return raft_ ? raft_->commit_index() : 0; }
  uint64_t raft_term() const { return raft_ ? raft_->term() : 0; }
  uint64_t leader_id() const { return raft_ ? raft_->leader() : 0; }
  bool is_leader() const { return raft_ && raft_->is_leader(); }
  size_t pending_proposals() const { return waiters_.size(); }
  // Proposals of this member that failed (refused, timed out, lost in a
  // leader change): etcd_server_proposals_failed_total.
  // The member table a joining member fetched from a peer (empty otherwise):
  // whom to talk to before its own table is replicated.
  const std::vector<cairnpb::Member>& remote_members() const { return remote_members_; }
  uint64_t proposals_failed() const { return waiters_.failed() + proposals_refused_.load(); }
  int64_t NextLeaseId();
  // True when the data dir's file system is inside its reserve (refreshed
  // every 100 ms).
  bool DiskLow() const { return disk_low_.load() || log_full_.load(); }
  // The database's size (Engine::TotalSizeBytes), refreshed every 100 ms and
  // after each applied batch's commit: cheap enough to check on every write.
  uint64_t DbSizeBytes() const { return db_size_bytes_.load(); }
  // Measures the size now (a dozen RocksDB property reads): for the rare
  // check that would refuse a write, so a stale cached size (e.g. just after
  // a defragment) never raises a false alarm.
  uint64_t RefreshDbSizeBytes() {
    db_size_bytes_ = engine_->TotalSizeBytes();
    return db_size_bytes_.load();
  }

  // Runs `fn` every `interval_ms` on a thread the node owns until Stop().
  void AddPeriodic(std::string name, int64_t interval_ms, std::function<void()> fn);

 private:
  class NoPeers;
  Status OpenStorage();
  Status ReplayLegacyLog();
  Status OpenLog();
  // A data dir of the single-member version: its log holds plain requests.
  Status ConvertPreRaftLog(LogBase* base);
  Status Bootstrap(LogBase* base);
  // --initial-cluster-state existing: the ids from the running cluster.
  Status AdoptRemoteIds();
  std::vector<std::pair<std::string, std::vector<std::string>>> FoundingMembers() const;
  Status StartRaft();
  // Replaces the state machine with a received image (Ready::snapshot).
  Status InstallSnapshot(const raft::Snapshot& snapshot);
  // Rewrites the database from the image file and saves `base` with it.
  Status ReplaceDatabase(const std::string& image_path, const LogBase& base);
  // An install interrupted by a crash is finished from its image.
  Status FinishInterruptedInstall();
  void LeaseLoop();
  void CheckDisk();

  NodeOptions options_;
  NodeHooks hooks_;
  SystemClock clock_;
  NodeIds ids_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<mvcc::KvStore> kv_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<apply::Applier> applier_;
  std::unique_ptr<wal::Wal> wal_;  // raft thread after Start; Maintain() on log-segments
  std::unique_ptr<LogStore> log_store_;
  std::unique_ptr<Transport> no_peers_;
  Transport* transport_ = nullptr;
  Waiters waiters_;
  std::unique_ptr<ApplyWorker> apply_;
  std::unique_ptr<RaftHost> raft_;
  bool legacy_log_found_ = false;  // the data dir had entries in column kLog
  std::atomic<uint64_t> lease_id_counter_{0};
  std::atomic<uint64_t> request_id_counter_{0};
  std::atomic<uint64_t> proposals_refused_{0};  // before a waiter was added
  std::vector<cairnpb::Member> remote_members_;  // set before Start returns
  std::atomic<bool> disk_low_{false};
  std::atomic<bool> log_full_{false};  // the log could not take a batch
  std::atomic<uint64_t> db_size_bytes_{0};
  std::atomic<bool> stopping_{false};
  std::vector<std::thread> periodic_threads_;
  mutable std::mutex image_mu_;
  uint64_t image_index_ = 0;                            // GUARDED_BY(image_mu_)
  std::shared_ptr<const storage::Snapshot> image_;      // GUARDED_BY(image_mu_)
  // Continuations of confirmed linearizable reads (they read the store).
  BoundedQueue<std::function<void()>> read_queue_{4096};
  std::vector<std::thread> read_threads_;
};

}  // namespace cairn::server

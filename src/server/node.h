// Node: owns a member's threads and its one mutation path.
//
// Every change is a cairnpb::InternalRequest. Propose() puts it in a bounded
// queue; the apply thread takes a batch of proposals, appends them to the
// write-ahead log (src/wal/, in <data-dir>/wal) and makes them durable with
// ONE fdatasync (group commit), then applies each entry in index order
// through the Applier and only then completes the proposal's callback. Raft
// (a later issue) replaces the log step and nothing else.
//
// Ordering that matters: log write (fdatasync) -> apply -> publish events to
// watchers -> answer the client. So an answered write is durable, visible to
// any later read, and its watch events are queued before the answer leaves.
// The apply writes to RocksDB (the data and the applied index, atomically)
// are not synced: a restart re-applies the log past the applied index, and
// log segments are released only after a RocksDB WAL sync has made
// everything applied before them durable.
//
// Threads: Propose() and the accessors are thread-safe. Callbacks run on the
// apply thread and must not block.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
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
#include "wal/wal.h"

namespace cairn::server {

struct NodeOptions {
  std::string data_dir;
  std::string name = "default";
  // Proposals waiting for the log; more are refused with "too many requests".
  size_t max_pending_proposals = 16384;
  // Most entries appended by one synced log write.
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
  // After each committed revision with changes.
  std::function<void(int64_t rev, const std::vector<mvccpb::Event>& events)> on_events;
  // Durations of the log's write and fdatasync of a batch, and of the apply
  // commit of a batch of `entries`, in seconds.
  std::function<void(double seconds)> on_log_sync;
  std::function<void(double seconds, size_t entries)> on_apply_commit;
};

class Node {
 public:
  using Callback = std::function<void(const cairnpb::InternalResponse&)>;

  explicit Node(NodeOptions options);
  ~Node();

  // Opens (or creates) the data dir, replays un-applied log entries and
  // starts the threads. Refuses a folder that is not cairn's.
  Status Start(NodeHooks hooks);
  void Stop();

  // Queues `request`; `done` runs exactly once, on the apply thread, with the
  // applied response or an error (queue full, stopping, too large).
  void Propose(cairnpb::InternalRequest request, Callback done);

  mvcc::KvStore* kv() const { return kv_.get(); }
  lease::Lessor* lessor() const { return lessor_.get(); }
  storage::Engine* engine() const { return engine_.get(); }
  apply::Applier* applier() const { return applier_.get(); }
  const NodeIds& ids() const { return ids_; }
  uint64_t applied_index() const { return applied_index_.load(); }
  uint64_t raft_term() const { return 2; }
  size_t pending_proposals() const { return queue_.size(); }
  int64_t NextLeaseId();
  // True when the data dir's file system is inside its reserve (refreshed
  // every 100 ms).
  bool DiskLow() const { return disk_low_.load(); }
  // The database's size (Engine::TotalSizeBytes), refreshed every 100 ms and
  // after each applied batch's commit: cheap enough to check on every write.
  uint64_t DbSizeBytes() const { return db_size_bytes_.load(); }

  // Runs `fn` every `interval_ms` on a thread the node owns until Stop().
  void AddPeriodic(std::string name, int64_t interval_ms, std::function<void()> fn);

 private:
  struct Proposal {
    cairnpb::InternalRequest request;
    Callback done;
  };
  Status OpenStorage();
  Status ReplayLegacyLog();
  Status OpenLog();
  Status Replay();
  void ReleaseLog();
  void ApplyLoop();
  void LeaseLoop();

  NodeOptions options_;
  NodeHooks hooks_;
  SystemClock clock_;
  NodeIds ids_;
  std::unique_ptr<storage::Engine> engine_;
  std::unique_ptr<mvcc::KvStore> kv_;
  std::unique_ptr<lease::Lessor> lessor_;
  std::unique_ptr<apply::Applier> applier_;
  std::unique_ptr<wal::Wal> wal_;  // apply thread after Start; Maintain() on log-segments
  BoundedQueue<Proposal> queue_;
  uint64_t last_log_index_ = 0;  // apply thread only after Start
  bool legacy_log_found_ = false;  // the data dir had entries in column kLog
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<uint64_t> lease_id_counter_{0};
  void CheckDisk();
  std::atomic<bool> disk_low_{false};
  std::atomic<uint64_t> db_size_bytes_{0};
  std::atomic<bool> stopping_{false};
  std::thread apply_thread_;
  std::vector<std::thread> periodic_threads_;
};

}  // namespace cairn::server

// ApplyWorker: the thread that applies committed entries to the state
// machine (etcd's applyAll; ClickHouse Keeper's state machine side), apart
// from the raft thread so that an fsync and an apply run at the same time.
//
// For each batch the raft host hands over, in log order: decode the entries
// (a client's InternalRequest; a leader's empty no-op; a membership change),
// apply them with one atomic database write (Applier::ApplyBatch), then per
// entry publish its watch events and only then complete its waiter. So a
// client's answer comes after its change is visible to every later read and
// its events are queued for every watcher, as on a single node before.
//
// The queue from the raft host is bounded in batches; the raft host blocks
// when it is full, and the API refuses proposals once committed - applied
// passes `max_apply_gap` (etcd: 5000, "too many requests").
//
// Thread-safety: Push and the accessors are thread-safe; hooks run on the
// apply thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "apply/applier.h"
#include "common/bounded_queue.h"
#include "raft/message.h"
#include "server/waiters.h"

namespace cairn::server {

struct ApplyWorkerHooks {
  // After each committed revision with changes.
  std::function<void(int64_t rev, const std::vector<mvccpb::Event>& events)> on_events;
  // The database commit of a batch of `entries` took `seconds`.
  std::function<void(double seconds, size_t entries)> on_apply_commit;
  // After each batch applied (its answers given), and every 100 ms while
  // there is nothing to apply.
  std::function<void()> after_batch;
  // A membership change entry was applied.
  std::function<void(const cairnpb::MemberChange& change)> on_member_change;
};

class ApplyWorker {
 public:
  // Not owned; must outlive the worker.
  ApplyWorker(apply::Applier* applier, Waiters* waiters, ApplyWorkerHooks hooks,
              size_t max_queued_batches = 256);
  ~ApplyWorker();

  void Start();
  // Stops after the batch in progress; queued batches are not applied (they
  // are in the log and applied again after a restart).
  void Stop();

  // Waits for room; false once stopping.
  bool Push(std::vector<raft::Entry> entries);

  uint64_t applied_index() const { return applied_index_.load(); }

  // Returns once every batch pushed so far is applied (the raft thread,
  // before it replaces the state machine with a snapshot; it is the only
  // producer, so nothing new arrives meanwhile). False if the worker stops.
  bool WaitIdle();
  // The state machine was replaced by a snapshot at `index`.
  void SetApplied(uint64_t index);

  // Runs each of `callbacks` with OK once `index` is applied (at once if it
  // is), on the apply thread or the caller's; with "server stopped" if the
  // worker stops first.
  using ReadCallback = std::function<void(const Status&)>;
  void WhenApplied(uint64_t index, std::vector<ReadCallback> callbacks);

 private:
  void RunApplied();
  void Loop();
  void ApplyEntries(std::vector<raft::Entry>& entries);

  apply::Applier* const applier_;
  Waiters* const waiters_;
  ApplyWorkerHooks hooks_;
  BoundedQueue<std::vector<raft::Entry>> queue_;
  std::atomic<uint64_t> applied_index_{0};
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> pushed_batches_{0};   // by Push
  std::atomic<uint64_t> applied_batches_{0};  // by the apply thread
  std::mutex waiting_mu_;
  std::multimap<uint64_t, ReadCallback> waiting_;  // GUARDED_BY(waiting_mu_)
  bool stopped_ = false;                            // GUARDED_BY(waiting_mu_)
  std::thread thread_;
};

// The InternalRequest an entry carries (empty for a no-op). DataLoss if the
// entry cannot be decoded: a committed entry that does not parse means the
// log is corrupt.
Result<cairnpb::InternalRequest> DecodeEntry(const raft::Entry& entry);

}  // namespace cairn::server

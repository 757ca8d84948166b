// Waiters: the proposals of this member that somebody is waiting for, keyed
// by the request id carried in the entry (InternalRequest.id), as etcd's
// wait.Wait keyed by the InternalRaftRequest header id.
//
// A waiter ends exactly once, in one of these ways:
//   * Complete(id): the apply worker applied the entry carrying `id`;
//   * FailAt(index, term): the apply worker applied index `index` with a
//     term other than the one this member's leader gave the proposal: the
//     proposal was lost in a leader change ("etcdserver: leader changed");
//   * Fail(id): the proposal was refused before it reached the log;
//   * ExpireBefore(now): its deadline passed ("etcdserver: request timed
//     out");
//   * FailAll: the member stops.
// Callbacks run on the calling thread, outside the lock, and must not block.
//
// Thread-safety: every method is thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <unordered_map>

#include "cairnpb/internal.pb.h"
#include "common/status.h"

namespace cairn::server {

class Waiters {
 public:
  using Callback = std::function<void(const cairnpb::InternalResponse&)>;

  // Registers `done` for `id`, to time out at `deadline_ms` (a Clock time).
  // REQUIRES: `id` is not waiting already.
  void Add(uint64_t id, int64_t deadline_ms, Callback done);
  // The leader accepted the proposal at (`term`, `index`).
  void SetPosition(uint64_t id, uint64_t term, uint64_t index);
  // The proposal went to the leader (a follower forwarded it).
  void MarkForwarded(uint64_t id);

  // Ends the waiter of `id` (if any) with `response`.
  void Complete(uint64_t id, const cairnpb::InternalResponse& response);
  // Entry `index` was applied with `term`: a waiter placed at that index with
  // another term lost its entry.
  void FailAt(uint64_t index, uint64_t term);
  void Fail(uint64_t id, const Status& status);
  // Fails every waiter whose deadline is before `now_ms`.
  void ExpireBefore(int64_t now_ms);
  void FailAll(const Status& status);

  size_t size() const;
  // Waiters that ended in a failure (etcd_server_proposals_failed_total).
  uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }

  static cairnpb::InternalResponse ErrorResponse(const Status& status);

 private:
  struct Waiter {
    Callback done;
    int64_t deadline_ms = 0;
    uint64_t term = 0;
    uint64_t index = 0;
    bool proposed = false;  // accepted by the leader here, or forwarded to it
  };
  // Removes `id` and returns its callback (empty if none). REQUIRES: mu_.
  Callback TakeLocked(uint64_t id);

  mutable std::mutex mu_;
  std::unordered_map<uint64_t, Waiter> by_id_;     // GUARDED_BY(mu_)
  std::multimap<int64_t, uint64_t> by_deadline_;   // GUARDED_BY(mu_)
  std::map<uint64_t, uint64_t> by_index_;          // GUARDED_BY(mu_): index -> id
  std::atomic<uint64_t> failed_{0};
};

}  // namespace cairn::server

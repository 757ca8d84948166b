// The leader's view of one follower: how far its log matches, what to send
// next, and the flow-control state (etcd-raft's tracker.Progress).
//
//   kProbe:     the leader does not know where the follower's log ends; it
//               sends one Append per heartbeat interval and waits for the answer.
//   kReplicate: the follower is in sync; Appends are pipelined (next is
//               advanced optimistically) within the Inflights window.
//   kSnapshot:  a snapshot is on its way; nothing else is sent until it is
//               acknowledged or reported failed.
//
// Internal to the Raft core. Thread-safety: none.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cairn::raft {

enum class ProgressState { kProbe, kReplicate, kSnapshot };
const char* ProgressStateName(ProgressState state);

// The Append messages in flight to one follower: a ring of (last index, bytes)
// bounded by a message count and a byte total.
class Inflights {
 public:
  Inflights(size_t max_msgs, uint64_t max_bytes) : max_msgs_(max_msgs), max_bytes_(max_bytes) {}

  // REQUIRES: !Full(); indexes increasing.
  void Add(uint64_t last_index, uint64_t bytes);
  // Frees every message whose last index is <= `index` (acknowledged).
  void FreeLE(uint64_t index);
  // Frees the oldest message (a heartbeat answer while the window is full:
  // lets one more Append probe whether the follower is still there).
  void FreeFirstOne();
  void Reset();
  bool Full() const { return count_ == max_msgs_ || (max_bytes_ != 0 && bytes_ >= max_bytes_); }
  size_t count() const { return count_; }
  uint64_t bytes() const { return bytes_; }

 private:
  struct Item {
    uint64_t index;
    uint64_t bytes;
  };
  const size_t max_msgs_;
  const uint64_t max_bytes_;
  std::vector<Item> ring_;  // grows up to max_msgs_
  size_t start_ = 0;
  size_t count_ = 0;
  uint64_t bytes_ = 0;
};

struct Progress {
  Progress(uint64_t next_index, size_t max_inflight_msgs, uint64_t max_inflight_bytes)
      : next(next_index), inflights(max_inflight_msgs, max_inflight_bytes) {}

  uint64_t match = 0;  // highest index known replicated (durable) on the follower
  uint64_t next = 1;   // next index to send
  ProgressState state = ProgressState::kProbe;
  // In kSnapshot: the index of the snapshot being sent.
  uint64_t pending_snapshot = 0;
  // Heard from since the last check-quorum round.
  bool recent_active = false;
  // In kProbe: an Append was sent and not answered; wait (until the next
  // heartbeat response) before sending another.
  bool probe_sent = false;
  bool is_learner = false;
  Inflights inflights;

  void BecomeProbe();
  void BecomeReplicate();
  void BecomeSnapshot(uint64_t snapshot_index);
  // An acknowledgment up to `index`; returns false if it is stale.
  bool MaybeUpdate(uint64_t index);
  // Records an Append with `count` entries ending at `last_index` and `bytes`
  // of payload (count 0: an empty Append, still a probe).
  void SentAppend(size_t count, uint64_t last_index, uint64_t bytes);
  // A rejection of the Append after `rejected`, hinting that the follower's
  // log may match up to `match_hint`. Returns false if the rejection is stale.
  bool MaybeDecrTo(uint64_t rejected, uint64_t match_hint);
  // Whether sending more Appends is blocked by flow control.
  bool IsPaused() const;
  std::string ToString() const;
};

}  // namespace cairn::raft

// Membership changes, one at a time (Raft thesis §4.1).
//
// Each change adds or removes at most one voter, so any majority of the old
// voter set and any majority of the new one intersect. A node uses the latest
// membership in its log, committed or not: a change takes effect on every node
// as soon as the entry is appended, and is undone if the entry is truncated.
// The leader allows a new change only once the previous one is committed and
// it has committed an entry of its own term (the fix to the single-server
// change bug described on raft-dev, 2015). Learners receive the log but never
// vote or count towards a quorum; adding or removing them does not change the
// voter set.
//
// Internal to the Raft core except for ApplyConfChange/ValidateConfChange,
// which a host may use to predict the effect of a change.
//
// Thread-safety: none (MembershipLog); the functions are pure.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "common/status.h"
#include "raft/message.h"

namespace cairn::raft {

// Whether `change` is allowed from `current` (leader side, before proposing).
Status ValidateConfChange(const ConfState& current, const ConfChange& change);
// The membership after `change`. A change ValidateConfChange rejects (which a
// correct leader never appends) leaves the membership unchanged, so every node
// computes the same result from the same log.
ConfState ApplyConfChange(const ConfState& current, const ConfChange& change);

// The memberships along one node's log: a base (at the snapshot, or the
// empty membership before index 1) plus one entry per membership change
// entry after it.
class MembershipLog {
 public:
  void Reset(uint64_t base_index, ConfState base);
  // Records the change carried by `entry` if it is a conf change entry.
  // REQUIRES: entry.index greater than every recorded change.
  void Append(const Entry& entry);
  // Forgets changes at index >= `index` (their entries were overwritten).
  void TruncateFrom(uint64_t index);
  // Folds changes at index <= `index` into the base; they can no longer be
  // truncated (committed) and nobody asks for older memberships (applied).
  void CompactTo(uint64_t index);

  const ConfState& Current() const;
  // The index of the latest change (the base index if none).
  uint64_t LastChangeIndex() const;
  // The membership in effect at `index`. kCompacted if older than the base.
  Result<ConfState> At(uint64_t index) const;

 private:
  uint64_t base_index_ = 0;
  ConfState base_;
  std::vector<std::pair<uint64_t, ConfState>> changes_;  // ascending index
};

}  // namespace cairn::raft

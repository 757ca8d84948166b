// An in-memory Storage: for tests, the simulator and the benchmark, and as
// the in-memory cache a disk-backed host fills after each fsync.
//
// Thread-safety: none (see storage.h).
#pragma once

#include <cstdint>
#include <vector>

#include "raft/storage.h"

namespace cairn::raft {

class MemoryStorage final : public Storage {
 public:
  MemoryStorage();

  // --- Writes (host side). ---

  // Writes the initial membership as committed entries 1..n of term 1 (voters
  // first, then learners), and HardState{term 1, commit n}. Every founding
  // member bootstraps with the same ConfState, so their logs agree; a node that
  // joins later starts empty and receives these entries (or a snapshot).
  // REQUIRES: the storage is empty.
  Status Bootstrap(const ConfState& initial);
  void SetHardState(const HardState& hard_state) { hard_state_ = hard_state; }
  // Appends entries, replacing any existing suffix from entries.front().index.
  // Entries at or below the compaction point are ignored.
  // REQUIRES: entries contiguous and entries.front().index <= LastIndex() + 1.
  Status Append(const std::vector<Entry>& entries);
  // The same, moving the entries in (e.g. std::move(ready.entries)).
  Status Append(std::vector<Entry>&& entries);
  // Replaces the whole contents with the snapshot. kSnapshotOutOfDate if it is
  // older than the current snapshot.
  Status ApplySnapshot(const Snapshot& snapshot);
  // Records a snapshot of the state machine at `index` (which the host has
  // applied). kSnapshotOutOfDate if not newer than the current one.
  // REQUIRES: index <= LastIndex().
  Status CreateSnapshot(uint64_t index, const ConfState& conf_state, std::string data);
  // Discards entries up to and including `index`. kCompacted if already
  // compacted that far. REQUIRES: index <= LastIndex().
  Status Compact(uint64_t index);

  const HardState& hard_state() const { return hard_state_; }
  const Snapshot& snapshot() const { return snapshot_; }

  // --- Storage. ---
  Result<InitialState> GetInitialState() const override;
  Result<std::vector<Entry>> Entries(uint64_t lo, uint64_t hi, uint64_t max_bytes) const override;
  Result<uint64_t> Term(uint64_t index) const override;
  uint64_t FirstIndex() const override { return entries_.front().index + 1; }
  uint64_t LastIndex() const override { return entries_.front().index + entries_.size() - 1; }
  Result<Snapshot> GetSnapshot() const override { return snapshot_; }

 private:
  HardState hard_state_;
  Snapshot snapshot_;
  // entries_[0] is a placeholder for the last compacted entry (index and term
  // only), so entries_[i] has index entries_[0].index + i.
  std::vector<Entry> entries_;
};

}  // namespace cairn::raft

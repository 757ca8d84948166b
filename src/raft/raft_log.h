// The Raft log as one node sees it: the durable prefix in Storage followed by
// the unstable tail (a snapshot and/or entries not yet acknowledged durable).
//
//   storage: [first .. offset-1]      unstable: [offset .. last]
//                                      ^ entries handed to the host for
//                                        persistence but not yet acknowledged
//                                        end at offset_in_progress - 1
//
// Also tracks the commit index and how far committed entries have been handed
// to the host (applying) and acknowledged applied (applied).
//
// Internal to the Raft core. Thread-safety: none.
#pragma once

#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "common/status.h"
#include "raft/message.h"
#include "raft/storage.h"

namespace cairn::raft {

class Unstable {
 public:
  // Index of the first entry; entries_[i] has index offset_ + i.
  uint64_t offset() const { return offset_; }
  const std::vector<Entry>& entries() const { return entries_; }
  const std::optional<Snapshot>& snapshot() const { return snapshot_; }

  void Reset(uint64_t offset);
  std::optional<uint64_t> MaybeFirstIndex() const;
  std::optional<uint64_t> MaybeLastIndex() const;
  std::optional<uint64_t> MaybeTerm(uint64_t index) const;

  // The host acknowledged (index, term) durable: drop entries up to it, unless
  // the entry has since been overwritten by one of another term.
  void StableTo(uint64_t index, uint64_t term);
  void StableSnapTo(uint64_t index);
  void Restore(const Snapshot& snapshot);
  // Appends, replacing any entries from entries.front().index on.
  void TruncateAndAppend(std::vector<Entry> entries);
  // Entries in [lo, hi). REQUIRES: offset_ <= lo <= hi <= last + 1.
  void Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes, std::vector<Entry>* out) const;

  // What has not yet been handed to the host for persistence.
  bool HasEntriesToPersist() const { return offset_in_progress_ < offset_ + entries_.size(); }
  bool HasSnapshotToPersist() const { return snapshot_.has_value() && !snapshot_in_progress_; }
  std::vector<Entry> EntriesToPersist() const;
  // Marks everything handed out for persistence.
  void AcceptInProgress();
  // Everything below this index is durable or handed out for persistence.
  uint64_t offset_in_progress() const { return offset_in_progress_; }

 private:
  std::optional<Snapshot> snapshot_;
  bool snapshot_in_progress_ = false;
  std::vector<Entry> entries_;
  uint64_t offset_ = 1;
  uint64_t offset_in_progress_ = 1;
};

class RaftLog {
 public:
  RaftLog(Storage* storage, uint64_t max_committed_bytes_per_ready);
  // Loads the indexes from storage. `applied` is the host's applied index.
  Status Init(uint64_t committed, uint64_t applied);

  uint64_t FirstIndex() const;
  uint64_t LastIndex() const;
  uint64_t LastTerm() const;
  // Term of entry `index` in [FirstIndex() - 1, LastIndex()]; kCompacted
  // below, kUnavailable above.
  Result<uint64_t> Term(uint64_t index) const;
  bool MatchTerm(uint64_t index, uint64_t term) const;
  // §5.4.1: is a log ending at (last_index, last_term) at least as up to date?
  bool IsUpToDate(uint64_t last_index, uint64_t last_term) const;

  // Appends, replacing any entries from entries.front().index on (the
  // follower has found the conflict; see Raft::HandleAppend). Returns the new
  // last index. REQUIRES: entries.front().index > committed().
  uint64_t Append(std::vector<Entry> entries);
  // The index of the first entry that does not match our log (0: none).
  uint64_t FindConflict(const std::vector<Entry>& entries) const;
  // The largest index <= `index` whose term is <= `term`, with that term (term
  // 0 if unknown because compacted): where a log whose entry at `index` has
  // term `term` can first agree with ours. The conflict hint of a rejection.
  std::pair<uint64_t, uint64_t> FindConflictByTerm(uint64_t index, uint64_t term) const;

  // Entries in [lo, hi), at most max_bytes but at least one.
  Result<std::vector<Entry>> Slice(uint64_t lo, uint64_t hi, uint64_t max_bytes) const;
  Result<std::vector<Entry>> EntriesFrom(uint64_t lo, uint64_t max_bytes) const;

  uint64_t committed() const { return committed_; }
  uint64_t applied() const { return applied_; }
  uint64_t applying() const { return applying_; }
  void CommitTo(uint64_t index);
  // Commits `index` if it is newer and its entry has `term`.
  bool MaybeCommit(uint64_t index, uint64_t term);
  void AppliedTo(uint64_t index);

  // --- Persistence bookkeeping. ---
  bool HasEntriesToPersist() const { return unstable_.HasEntriesToPersist(); }
  bool HasSnapshotToPersist() const { return unstable_.HasSnapshotToPersist(); }
  std::vector<Entry> EntriesToPersist() const { return unstable_.EntriesToPersist(); }
  const std::optional<Snapshot>& UnstableSnapshot() const { return unstable_.snapshot(); }
  // Marks the unstable tail handed to the host; a handed-out snapshot counts as
  // applying (the host applies it before later committed entries).
  void AcceptInProgress();
  void StableTo(uint64_t index, uint64_t term) { unstable_.StableTo(index, term); }
  void StableSnapTo(uint64_t index) { unstable_.StableSnapTo(index); }
  // The highest index known durable and part of this log (0 while a snapshot
  // is not yet durable).
  uint64_t PersistedIndex() const;

  // Committed entries that may be handed to the host for applying: after the
  // ones already handed out, and only entries already handed out for
  // persistence (the host applies them after they are durable).
  bool HasNextCommittedEntries() const;
  std::vector<Entry> NextCommittedEntries() const;
  // The host now has committed entries up to `index` (from a Ready).
  void AcceptApplying(uint64_t index);

  // Replaces the log with a snapshot's (follower installing a snapshot).
  void Restore(const Snapshot& snapshot);
  // The unstable snapshot if any, else storage's.
  Result<Snapshot> GetSnapshot() const;

 private:
  uint64_t MaxApplyIndex() const;

  Storage* const storage_;
  const uint64_t max_committed_bytes_per_ready_;
  Unstable unstable_;
  uint64_t committed_ = 0;
  uint64_t applying_ = 0;
  uint64_t applied_ = 0;
};

}  // namespace cairn::raft
